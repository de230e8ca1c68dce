"""Running a plan: skip what is present, fetch the rest in parallel, verify, record, summarise.

`download(plan, root, sources, options)` runs every task of the plan on one machine with a thread pool;
`run_task` runs one task and is what a distributed engine would call per task (tasks are independent:
each writes only its own items' files and appends its own manifest records).
"""
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emm1_lib.acquire.fetchers import FetchError, RemoteZip, TarScan, fetch_url, hub_file_url, hub_files, item_chunks, \
    scan_parquet, stream_tar
from emm1_lib.acquire.plan import Plan, Task
from emm1_lib.acquire.sources import HUB_KINDS, STREAMED_KINDS, TAR_KINDS, ZIP_KINDS, Source
from emm1_lib.acquire.store import Manifest, TarIndex, UnsafeDestinationError, checked_destination, commit_file, \
    decode_check, manifest_path, partial_folder, remove_partials, tar_index_path, write_verified


@dataclass
class DownloadOptions:
    """How to run a plan.

    Attributes:
        workers: threads fetching in parallel.
        per_host: at most this many requests to one host at a time (None: `workers`).
        timeout: seconds to connect and between bytes received (a stalled server fails the attempt).
        retries: further attempts after a retryable failure (timeouts, 5xx, cut bodies), with backoff.
        backoff: seconds before the first retry, doubled for each next one.
        verify: decode each file as its modality before it counts (and before it reaches its final path).
        check_space: refuse to start when the bytes known to come exceed the free space under ROOT.
        progress: tqdm bars per source on stderr.
        shard_items: items per task.
    """

    workers: int = 8
    per_host: Optional[int] = None
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5
    verify: bool = True
    check_space: bool = True
    progress: bool = False
    shard_items: int = 1000


@dataclass
class SourceReport:
    """Counts of one source; `expected_bytes` is known for archives (zip directory sizes; the Hub's file sizes of
    streamed archives, then an upper bound: `bytes_at_most`), else None."""

    source: str
    mechanism: str
    needed: int = 0
    present: int = 0
    fetched: int = 0
    failed: int = 0
    not_fetchable: int = 0
    expected_bytes: Optional[int] = None
    bytes_at_most: bool = False
    bytes: int = 0
    errors: List[str] = field(default_factory=list)

    @property
    def to_fetch(self) -> int:
        return self.needed - self.present - self.not_fetchable


class InsufficientSpaceError(OSError):
    """The files known to come do not fit in the free space under ROOT."""


def unavailable_reason(source: Optional[Source], name: str) -> Optional[str]:
    """Why the items of source `name` cannot be fetched here (no entry, a kind not supported, a missing optional
    package), or None."""
    if source is None:
        return f"source {name!r} has no entry in the sources file (add one with --sources-file)"
    if not source.supported:
        return f"source {name!r}: kind {source.kind} is not supported yet"
    if source.kind == "youtube":
        try:
            from emm1_lib.acquire.youtube import ffmpeg_exe, require_yt_dlp

            require_yt_dlp()
            ffmpeg_exe()
        except ImportError as err:
            return f"source {name!r}: {err}"
    return None


def present_mask(items: pa.Table, root: str, manifest: Manifest) -> np.ndarray:
    """True per item whose file is at its destination and recorded whole ("ok" with the same size) in the manifest."""
    status = manifest.last_status()
    ok = status.filter(pc.equal(status["status"], "ok"))
    positions = pc.index_in(items["destination"], value_set=ok["destination"]).fill_null(-1).to_numpy()
    recorded = positions >= 0
    sizes = ok["bytes"].to_numpy(zero_copy_only=False)
    mask = np.zeros(items.num_rows, dtype=bool)
    destinations = items["destination"].to_pylist()
    real_root = os.path.realpath(root)
    for i in np.flatnonzero(recorded):
        try:
            mask[i] = os.stat(os.path.join(real_root, destinations[i])).st_size == sizes[int(positions[i])]
        except OSError:
            pass
    return mask


def adopt_existing(items: pa.Table, present: np.ndarray, root: str, manifest: Manifest, workers: int,
                   verify: bool = True) -> np.ndarray:
    """Files already at their destination without an "ok" record (media copied in by hand, an older tool):
    each that decodes as its modality is recorded "ok" (bytes, sha256) and counted present; returns the new mask.
    A file that does not decode stays not present and is fetched again (replaced atomically)."""
    import hashlib

    real_root = os.path.realpath(root)
    missing = np.flatnonzero(~present)
    destinations = items["destination"].take(pa.array(missing, pa.int64())).to_pylist()
    candidates = [i for i, d in zip(missing, destinations) if os.path.isfile(os.path.join(real_root, d))]
    if not candidates:
        return present
    rows = items.take(pa.array(candidates, pa.int64())).to_pylist()

    def check(item: Dict[str, object]) -> Optional[Dict[str, object]]:
        path = os.path.join(real_root, str(item["destination"]))
        try:
            if verify:
                decode_check(path, str(item["modality"]))
            with open(path, "rb") as f:
                data = f.read()
        except Exception:
            return None
        return {"destination": item["destination"], "source": item["source"], "modality": item["modality"],
                "id": item["id"], "file_id": item["file_id"], "status": "ok", "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(), "attempts": 0, "error": None, "adopted": True}

    present = present.copy()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, record in zip(candidates, pool.map(check, rows)):
            if record is not None:
                manifest.append(record)
                present[i] = True
    return present


class _Hosts:
    """One semaphore per host: `per_host` requests at a time."""

    def __init__(self, per_host: int):
        self.per_host = per_host
        self._lock = threading.Lock()
        self._by_host: Dict[str, threading.BoundedSemaphore] = {}

    def __call__(self, url: str) -> threading.BoundedSemaphore:
        host = urlsplit(url).netloc
        with self._lock:
            if host not in self._by_host:
                self._by_host[host] = threading.BoundedSemaphore(self.per_host)
            return self._by_host[host]


class _Run:
    """State shared by the tasks of one run."""

    def __init__(self, root: str, sources: Dict[str, Source], options: DownloadOptions, manifest: Manifest):
        self.root = root
        self.sources = sources
        self.options = options
        self.manifest = manifest
        self.hosts = _Hosts(options.per_host or options.workers)
        self.archives: Dict[str, object] = {}
        self._archive_lock = threading.Lock()
        self._key_locks: Dict[str, threading.Lock] = {}

    def _once(self, key: str, make: Callable[[], object]) -> object:
        """`make()` once per run for `key` (a FetchError is remembered and re-raised to every caller). One lock
        per key: reading one source's archive directories does not hold up another source's."""
        with self._archive_lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self.archives:
                try:
                    self.archives[key] = make()
                except FetchError as err:
                    self.archives[key] = err
            found = self.archives[key]
        if isinstance(found, FetchError):
            raise found
        return found

    def tar_index(self) -> TarIndex:
        """The members seen in tar archives by earlier runs (`ROOT.download-tar-index.jsonl`), loaded once."""
        return self._once("tar-index", lambda: TarIndex(tar_index_path(self.root)))  # type: ignore[return-value]

    def hub_listing(self, source: Source, sizes: bool = False) -> List[Tuple[str, Optional[int]]]:
        """`(path, size)` of the source's Hub files (its `patterns` matched against the repo listing), once per run.
        Plain paths are not looked up unless `sizes` (their size is None then); a listing with sizes serves both."""
        if f"listing-sized:{source.name}" in self.archives:
            sizes = True
        key = f"listing-sized:{source.name}" if sizes else f"listing:{source.name}"
        return self._once(key, lambda: hub_files(source, sizes))  # type: ignore[return-value]

    def locations(self, source: Source) -> List[Tuple[str, Optional[Dict[str, str]]]]:
        """`(url, headers)` of each archive of the source, in reading order: its location(s), or its Hub files'
        resolve URLs with huggingface_hub's auth headers."""
        if source.kind in HUB_KINDS:
            return [hub_file_url(source, path) for path, _ in self.hub_listing(source)]
        return [(url, None) for url in source.locations]

    def zips(self, source: Source) -> List[RemoteZip]:
        """The directories of the source's zip archives, each read once per run."""
        def make() -> List[RemoteZip]:
            return [RemoteZip(url, self.options.timeout, headers) for url, headers in self.locations(source)]

        return self._once(f"zips:{source.name}", make)  # type: ignore[return-value]

    def archive(self, source: Source, member: Optional[str] = None) -> RemoteZip:
        """The zip of the source holding `member` (the first of its zips when None or held by none: reading it
        then fails naming the member)."""
        archives = self.zips(source)
        if member is not None:
            for archive in archives:
                if member in archive.members:
                    return archive
        if len(archives) != 1:
            raise FetchError(f"no member {member!r} in the {len(archives)} zips of {source.mechanism()}")
        return archives[0]

    def fetch(self, source: Source, item: Dict[str, object]) -> bytes:
        if source.kind == "url":
            url = str(item["file_id"] or "")
            if not url.startswith(("http://", "https://")):
                raise FetchError(f"file_id {url!r} is not an http(s) URL")
            with self.hosts(url):
                return fetch_url(url, self.options.timeout)
        try:
            member = source.member_name(str(item["file_id"]))
        except (ValueError, KeyError, IndexError) as err:
            raise FetchError(f"file_id {item['file_id']!r} does not fit the member template {source.member!r}: {err}")
        archive = self.archive(source, member)
        with self.hosts(archive.url):
            return archive.read(member)

    def fetch_clip(self, source: Source, item: Dict[str, object], destination: str) -> Dict[str, object]:
        """A YouTube section, made by yt-dlp and FFmpeg in a temporary folder beside `destination`, then
        decode-checked and moved into place; returns `{"bytes", "sha256"}`."""
        from emm1_lib.acquire.youtube import clip_url, fetch_clip

        url = clip_url(str(source.location or ""), str(item["youtube_id"] or ""))
        workdir = partial_folder(destination)
        try:
            with self.hosts(url):
                produced = fetch_clip(url, item["start_time"], item["end_time"], str(item["modality"]), workdir,
                                      os.path.splitext(destination)[1] or ".mp4", self.options.timeout)
            return commit_file(produced, destination, str(item["modality"]), self.options.verify)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def one(self, source: Source, item: Dict[str, object]) -> Dict[str, object]:
        """Fetch, verify and place one item, with retries; returns its manifest record."""
        record = {"destination": item["destination"], "source": source.name, "modality": item["modality"],
                  "id": item["id"], "file_id": item["file_id"]}
        attempt = 0
        while True:
            attempt += 1
            try:
                destination = checked_destination(self.root, str(item["destination"]))
                if source.kind == "youtube":
                    written = self.fetch_clip(source, item, destination)
                else:
                    body = self.fetch(source, item)
                    written = write_verified(destination, item_chunks(body), str(item["modality"]), self.options.verify)
                return {**record, "status": "ok", **written, "attempts": attempt, "error": None}
            except FetchError as err:
                if err.retry and attempt <= self.options.retries:
                    time.sleep(self.options.backoff * 2 ** (attempt - 1))
                    continue
                return {**record, "status": "failed", "attempts": attempt, "error": str(err)}
            except UnsafeDestinationError as err:
                return {**record, "status": "failed", "attempts": attempt, "error": str(err)}
            except Exception as err:  # a decode failure: the content is not what the metadata says
                return {**record, "status": "failed", "attempts": attempt,
                        "error": f"downloaded content does not decode as {item['modality']}: {type(err).__name__}: {err}"}


def _streamed_records(run: _Run, source: Source, rows: List[Dict[str, object]], pool: ThreadPoolExecutor):
    """Read the source's archives once each (`stream_tar`, `scan_parquet`), placing every wanted member; yields a
    manifest record per item.

    A broken stream is retried (with backoff) for the members still missing; members never seen fail."""
    by_member: Dict[str, List[Dict[str, object]]] = {}
    records = []
    for item in rows:
        base = {"destination": item["destination"], "source": source.name, "modality": item["modality"],
                "id": item["id"], "file_id": item["file_id"]}
        try:
            by_member.setdefault(source.member_name(str(item["file_id"])), []).append(item)
        except (ValueError, KeyError, IndexError) as err:
            records.append({**base, "status": "failed", "attempts": 0,
                            "error": f"file_id {item['file_id']!r} does not fit the member template {source.member!r}: {err}"})
    yield from records

    def place(item: Dict[str, object], body: bytes) -> Dict[str, object]:
        base = {"destination": item["destination"], "source": source.name, "modality": item["modality"],
                "id": item["id"], "file_id": item["file_id"]}
        try:
            destination = checked_destination(run.root, str(item["destination"]))
            written = write_verified(destination, item_chunks(body), str(item["modality"]), run.options.verify)
            return {**base, "status": "ok", **written, "attempts": 1, "error": None}
        except Exception as err:
            return {**base, "status": "failed", "attempts": 1, "error": f"{type(err).__name__}: {err}"}

    try:
        locations = run.locations(source) if by_member else []
        problem_text = None
    except FetchError as err:  # the Hub listing failed: every item fails with its reason
        locations, problem_text = [], str(err)
    index = run.tar_index() if source.kind in TAR_KINDS else None
    if index is not None:  # archives known to hold a needed member first, those read to the end without one last
        names = set(by_member)
        locations.sort(key=lambda loc: 0 if index.holds(loc[0], names) else (2 if index.known(loc[0]) is not None else 1))
    read: List[str] = []
    skipped: List[str] = []
    for url, headers in locations:
        if not by_member:
            break
        known = index.known(url) if index is not None else None
        if known is not None and not any(name in known for name in by_member):
            skipped.append(url)  # read to its end before: holds none of the members still needed
            continue
        attempt = 0
        while by_member:
            attempt += 1
            placing = []
            scanned = TarScan() if index is not None else None
            try:
                with run.hosts(url):
                    if source.kind in TAR_KINDS:
                        scan = stream_tar(url, run.options.timeout, set(by_member), headers, scanned)
                    else:
                        scan = scan_parquet(url, run.options.timeout, set(by_member), headers)
                    for name, body, problem in scan:
                        for item in by_member.pop(name):
                            if problem is not None:
                                yield {"destination": item["destination"], "source": source.name, "modality": item["modality"],
                                       "id": item["id"], "file_id": item["file_id"], "status": "failed", "attempts": attempt,
                                       "error": problem}
                            else:
                                placing.append(pool.submit(place, item, body))
                read.append(url)
                break
            except FetchError as err:
                problem_text = str(err)
                if not (err.retry and attempt <= run.options.retries):
                    break
                time.sleep(run.options.backoff * 2 ** (attempt - 1))
            finally:
                if scanned is not None and scanned.names:
                    index.record(url, scanned.complete, scanned.names)
                for future in placing:
                    yield future.result()
    reason = "not found in " + (", ".join(read) or "no archive")
    if skipped:
        reason += (f"; {len(skipped)} other archive(s) were read to the end by an earlier run without it "
                   f"({index.path}: delete it to scan them again)")
    if problem_text:
        reason = f"{reason}; {problem_text}" if read or skipped else problem_text
    for items in by_member.values():
        for item in items:
            yield {"destination": item["destination"], "source": source.name, "modality": item["modality"],
                   "id": item["id"], "file_id": item["file_id"], "status": "failed", "attempts": 1,
                   "error": f"member {source.member_name(str(item['file_id']))!r}: {reason}"}


_COUNTING = threading.Lock()


def run_task(task: Task, run: _Run, pool: ThreadPoolExecutor, report: SourceReport,
             on_done: Optional[Callable[[Dict[str, object]], None]] = None,
             sink: Optional[Callable[[Dict[str, object]], None]] = None) -> None:
    """Fetch every item of `task` on `pool`, appending a manifest record per item and counting into `report`.

    `sink` receives each record instead of the run's manifest (a distributed worker returns them to the client)."""
    source = run.sources[task.source]
    rows = task.items.to_pylist()
    if source.kind in STREAMED_KINDS:
        records = _streamed_records(run, source, rows, pool)
    else:
        records = pool.map(lambda item: run.one(source, item), rows)
    sink = sink or run.manifest.append
    for record in records:
        sink(record)
        with _COUNTING:  # the tasks of one source may run side by side
            count_record(report, record)
            if on_done is not None:
                on_done(record)


def survey(plan: Plan, root: str, sources: Dict[str, Source], options: DownloadOptions,
           archive_sizes: bool = True, present: Optional[np.ndarray] = None, run: Optional[_Run] = None
           ) -> Dict[str, SourceReport]:
    """Per source: needed, present, the mechanism and (archives, when `archive_sizes`) the bytes to transfer.

    `present`: the items already there (`present_mask`), when the caller has it. `run`: the run whose archive
    directories and Hub listings to use (and keep for fetching), else a new one.
    """
    manifest = Manifest(manifest_path(root))
    if present is None:
        present = present_mask(plan.items, root, manifest) if os.path.isdir(root) else np.zeros(plan.items.num_rows, bool)
    reports: Dict[str, SourceReport] = {}
    run = run or _Run(root, sources, options, manifest)
    for name in sorted(plan.source_counts):
        rows = pc.equal(plan.items["source"], name).to_numpy(zero_copy_only=False)
        source = sources.get(name)
        mechanism = source.mechanism() if source else "no entry in the sources file: add one with --sources-file"
        report = SourceReport(name, mechanism, needed=int(rows.sum()), present=int((rows & present).sum()))
        reason = unavailable_reason(source, name)
        if reason is not None:
            report.not_fetchable = report.needed - report.present
            if source is not None and source.supported:  # a missing optional package: say which
                report.mechanism = f"{mechanism}: {reason}"
        elif source.kind in ZIP_KINDS and archive_sizes and report.to_fetch:
            try:
                archives = run.zips(source)
                wanted = plan.items.filter(pa.array(rows & ~present))["file_id"].to_pylist()
                members = {}
                for archive in reversed(archives):  # the first archive holding a member is the one read
                    members.update(archive.members)
                infos = [members.get(source.member_name(str(f))) for f in wanted]
                report.expected_bytes = sum(i.compress_size + 30 + len(i.filename) for i in infos if i is not None)
            except (FetchError, ValueError) as err:
                report.errors.append(str(err))
        elif source.kind in HUB_KINDS and archive_sizes and report.to_fetch:
            # streamed archives: the Hub's file sizes (a tar is read until its last needed member, Parquet
            # files only in the row groups holding one: both at most these bytes)
            try:
                report.expected_bytes = sum(size or 0 for _, size in run.hub_listing(source, sizes=True))
                report.bytes_at_most = True
            except FetchError as err:
                report.errors.append(str(err))
        reports[name] = report
    return reports


def prepare(plan: Plan, root: str, sources: Dict[str, Source], options: DownloadOptions
            ) -> Tuple[Manifest, Plan, Dict[str, SourceReport], "_Run"]:
    """What every engine does before fetching: create ROOT, remove partial files a killed run left, count the
    items already present (adopting decodable files without a record), survey the sources, check free space.

    Returns the open manifest, the plan of the items still to fetch, a report per source and the run whose archive
    directories and Hub listings the survey read (kept for fetching on this machine)."""
    os.makedirs(root, exist_ok=True)
    manifest = Manifest(manifest_path(root))
    remove_partials(destination_folders(plan, root), root)
    present = adopt_existing(plan.items, present_mask(plan.items, root, manifest), root, manifest, options.workers,
                             options.verify)
    run = _Run(root, sources, options, manifest)
    reports = survey(plan, root, sources, options, archive_sizes=options.check_space, present=present, run=run)
    # what will be stored: zip members (streamed archives are not stored, only their few needed members)
    expected = sum(r.expected_bytes or 0 for r in reports.values() if not r.bytes_at_most)
    free = shutil.disk_usage(root).free
    if options.check_space and expected > free:
        manifest.close()
        raise InsufficientSpaceError(f"{root}: {expected} bytes to fetch from archives but only {free} free; "
                                     "free space or pass a smaller --limit / fewer --configs.")
    todo = plan.items.filter(pa.array(~present))
    return manifest, Plan(todo, {s: 1 for s in plan.source_counts}), reports, run


def destination_folders(plan: Plan, root: str) -> List[str]:
    """The folders the plan's files go to (where partial files of a killed run may lie)."""
    return sorted({os.path.dirname(os.path.join(root, d)) for d in pc.unique(plan.items["destination"]).to_pylist()})


def record_not_fetchable(task: Task, sources: Dict[str, Source], manifest: Manifest, report: SourceReport) -> bool:
    """When the task's source cannot be fetched here (`unavailable_reason`), record its items "not_fetchable" with
    the reason and return True (the engine skips the task); else False."""
    reason = unavailable_reason(sources.get(task.source), task.source)
    if reason is None:
        return False
    for item in task.items.select(["destination", "modality", "id", "file_id"]).to_pylist():
        manifest.append({**item, "source": task.source, "status": "not_fetchable", "error": reason})
    if reason not in report.errors:
        report.errors.append(reason)
    return True


def count_record(report: SourceReport, record: Dict[str, object]) -> None:
    """Add one item's outcome to its source's report."""
    if record["status"] == "ok":
        report.fetched += 1
        report.bytes += int(record["bytes"])
    else:
        report.failed += 1
        if len(report.errors) < 5:
            report.errors.append(f"{record['destination']}: {record['error']}")


def download(plan: Plan, root: str, sources: Dict[str, Source], options: DownloadOptions = DownloadOptions()
             ) -> Dict[str, SourceReport]:
    """Fetch every planned item not yet present into `root`; returns a report per source.

    Items of sources without an entry or of kinds not supported yet are recorded in the manifest as
    "not_fetchable" with the reason. Raises `InsufficientSpaceError` before fetching anything when the bytes
    known to come (archive members) exceed the free space under `root`.
    """
    manifest, todo_plan, reports, run = prepare(plan, root, sources, options)
    bars: Dict[str, object] = {}
    streamed = [name for name, s in sources.items() if s.kind in STREAMED_KINDS]
    tasks = todo_plan.tasks(options.shard_items, whole=streamed)
    pool = ThreadPoolExecutor(max_workers=max(1, options.workers), thread_name_prefix="emm1-fetch")
    # Tasks run side by side: each streamed archive task on its own runner (a slow archive holds only its runner,
    # never the URL, zip or YouTube items), the other tasks two at a time (one draining while the next fills the pool).
    stream_runners = ThreadPoolExecutor(max_workers=max(1, sum(t.source in streamed for t in tasks)),
                                        thread_name_prefix="emm1-stream")
    runners = ThreadPoolExecutor(max_workers=2, thread_name_prefix="emm1-task")
    try:
        running = []
        for task in tasks:
            report = reports[task.source]
            if record_not_fetchable(task, sources, manifest, report):
                continue
            on_done: Optional[Callable] = None
            if options.progress:
                from tqdm.auto import tqdm

                if task.source not in bars:
                    bars[task.source] = tqdm(total=report.to_fetch, desc=task.source, unit="file", leave=True)
                bar = bars[task.source]

                def update_bar(record, bar=bar, report=report):
                    bar.update(1)
                    bar.set_postfix_str(f"{report.bytes / 1e6:.1f} MB, {report.failed} failed", refresh=False)

                on_done = update_bar
            chosen = stream_runners if task.source in streamed else runners
            running.append(chosen.submit(run_task, task, run, pool, report, on_done))
        for future in running:
            future.result()
    except BaseException:
        for executor in (stream_runners, runners, pool):
            executor.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        for executor in (stream_runners, runners, pool):
            executor.shutdown(wait=True)
        for bar in bars.values():
            bar.close()
        manifest.close()
    return reports


def format_reports(reports: Dict[str, SourceReport], dry_run: bool = False) -> str:
    """The summary table (and, for a dry run, what would be fetched)."""
    if dry_run:
        header = f"{'source':<22} {'needed':>8} {'present':>8} {'to fetch':>8} {'bytes':>12}  mechanism"
        lines = [header, "-" * len(header)]
        for r in reports.values():
            size = "?" if r.expected_bytes is None else ("<=" if r.bytes_at_most else "") + str(r.expected_bytes)
            lines.append(f"{r.source:<22} {r.needed:>8} {r.present:>8} {r.to_fetch:>8} {size:>12}  {r.mechanism}")
        return "\n".join(lines)
    header = f"{'source':<22} {'needed':>8} {'present':>8} {'fetched':>8} {'failed':>8} {'skipped':>8} {'MB':>9}"
    lines = [header, "-" * len(header)]
    for r in reports.values():
        lines.append(f"{r.source:<22} {r.needed:>8} {r.present:>8} {r.fetched:>8} {r.failed:>8} "
                     f"{r.not_fetchable:>8} {r.bytes / 1e6:>9.2f}")
        lines += [f"    {e}" for e in r.errors]
    return "\n".join(lines)
