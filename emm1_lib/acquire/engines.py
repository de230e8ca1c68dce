"""Running a plan on a Dask distributed cluster: `emm1 download ... --engine dask --scheduler tcp://HOST:PORT`.

The client does what only it can do once: plan, count what is present under ROOT, survey the sources. Then every
task of the plan (one source and shard: a range of URL rows, a range of an archive's members, a whole streamed
archive) becomes one Dask task. A worker runs it with the single-machine code (`run.run_task`, its thread pool of
`--workers` fetches), writing straight into the shared ROOT through `store.write_verified` (temporary file, decode
check, `os.replace`), and returns the task's manifest records; the client appends them to the manifest as tasks
finish. So:

- tasks partition the items: two tasks never write the same final file;
- a task run again (Dask retries it after an error, or the scheduler reschedules it when its worker dies) rewrites
  its files atomically, and only a finished task's records reach the manifest: a killed worker loses nothing;
- the partial files a killed worker left are removed once every task has finished;
- the client holds the plan and the records of finished tasks, never media bytes.

Workers need ROOT at the same path as the client (a shared file system), `emm1_lib` installed, and their own
network access and Hub credentials (`HF_TOKEN`, `HF_ENDPOINT` in the worker's environment). Progress comes from
the workers as Dask events (`Worker.log_event`) and is shown per source on the client's terminal.
"""
import collections
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, TextIO, Tuple, Union

from emm1_lib.acquire.plan import Plan, Task
from emm1_lib.acquire.run import DownloadOptions, SourceReport, _Run, count_record, destination_folders, prepare, \
    record_not_fetchable, run_task
from emm1_lib.acquire.sources import STREAMED_KINDS, Source
from emm1_lib.acquire.store import remove_partials

PROGRESS_TOPIC = "emm1-download-progress"
# Seconds between a task's progress events (and the last one when it ends).
PROGRESS_EVERY = 0.5


@dataclass
class DaskOptions:
    """How to use the cluster.

    Attributes:
        scheduler: the scheduler's address (`tcp://HOST:PORT`, what `dask scheduler` prints).
        task_retries: further runs of a task that raised (Dask's `retries=`); a task whose worker died is
            rescheduled by the scheduler (up to its `distributed.scheduler.allowed-failures`, 3 by default).
        connect_timeout: seconds to wait for the scheduler.
    """

    scheduler: str
    task_retries: int = 3
    connect_timeout: float = 30.0


# ---------------------------------------------------------------- on the workers

_RUNS: "collections.OrderedDict[str, _Run]" = collections.OrderedDict()
_RUNS_LOCK = threading.Lock()


def _worker_run(token: str, root: str, sources: Dict[str, Source], options: DownloadOptions) -> _Run:
    """This process's state of one download (archive directories read once, the per-host limits), shared by the
    tasks of that download it runs; the last few downloads are kept."""
    with _RUNS_LOCK:
        run = _RUNS.get(token)
        if run is None:
            run = _RUNS[token] = _Run(root, sources, options, manifest=None)  # records go back to the client
            while len(_RUNS) > 4:
                _RUNS.popitem(last=False)
        return run


def fetch_task(token: str, key: str, task: Task, root: str, sources: Dict[str, Source],
               options: DownloadOptions) -> List[Dict[str, object]]:
    """Run one task on a worker; returns its manifest records. Sends progress events (items, bytes, failed)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # called outside a worker (a test, a debugger)
        worker = None
    run = _worker_run(token, root, sources, options)
    report = SourceReport(task.source, "")
    records: List[Dict[str, object]] = []
    last = [0.0]

    def send(force: bool = False) -> None:
        now = time.monotonic()
        if worker is not None and (force or now - last[0] >= PROGRESS_EVERY):
            last[0] = now
            worker.log_event(PROGRESS_TOPIC, {"token": token, "key": key, "source": task.source,
                                              "items": report.fetched + report.failed, "bytes": report.bytes,
                                              "failed": report.failed})

    with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        run_task(task, run, pool, report, on_done=lambda record: send(), sink=records.append)
    send(force=True)
    return records


# ---------------------------------------------------------------- on the client


class ClusterProgress:
    """Per source: items and bytes done, from the workers' events while tasks run and from the results of the
    finished tasks (which replace their events: a task run twice is counted once). Shown as tqdm bars on `out`."""

    def __init__(self, totals: Dict[str, int], show: bool, out: TextIO):
        self.totals = totals
        self._running: Dict[str, Tuple[str, int, int, int]] = {}  # key -> (source, items, bytes, failed)
        self._done: Dict[str, List[int]] = {s: [0, 0, 0] for s in totals}
        self._finished: set = set()
        self._lock = threading.Lock()
        self._bars: Dict[str, object] = {}
        if show:
            from tqdm.auto import tqdm

            self._bars = {s: tqdm(total=n, desc=s, unit="file", file=out, leave=True) for s, n in totals.items() if n}

    def event(self, event) -> None:
        """A worker's progress event (`Client.subscribe_topic` handler: `(timestamp, msg)`)."""
        msg = event[1]
        with self._lock:
            if msg["key"] not in self._finished:  # a late event of a finished task is already counted
                self._running[msg["key"]] = (msg["source"], msg["items"], msg["bytes"], msg["failed"])
        self.show()

    def finished(self, key: str, source: str, report: SourceReport) -> None:
        with self._lock:
            self._finished.add(key)
            self._running.pop(key, None)
            done = self._done.setdefault(source, [0, 0, 0])
            done[0] += report.fetched + report.failed
            done[1] += report.bytes
            done[2] += report.failed
        self.show()

    def counts(self) -> Dict[str, Tuple[int, int, int]]:
        """Per source: (items done, bytes, failed)."""
        with self._lock:
            out = {s: list(v) for s, v in self._done.items()}
            for source, items, size, failed in self._running.values():
                entry = out.setdefault(source, [0, 0, 0])
                entry[0] += items
                entry[1] += size
                entry[2] += failed
        return {s: (v[0], v[1], v[2]) for s, v in out.items()}

    def show(self) -> None:
        for source, (items, size, failed) in self.counts().items():
            bar = self._bars.get(source)
            if bar is not None:
                bar.n = min(items, bar.total)
                bar.set_postfix_str(f"{size / 1e6:.1f} MB, {failed} failed", refresh=False)
                bar.refresh()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def dashboard_link(client) -> Optional[str]:
    """The scheduler's dashboard URL, or None when it runs none (bokeh not installed there)."""
    info = client.scheduler_info()
    port = (info.get("services") or {}).get("dashboard")
    if not port:
        return None
    from distributed.utils import format_dashboard_link

    host = info["address"].split("://")[-1].rsplit(":", 1)[0]
    return format_dashboard_link(host, port)


def download_dask(plan: Plan, root: str, sources: Dict[str, Source], options: DownloadOptions,
                  cluster: Union[DaskOptions, "object"], out: Optional[TextIO] = None,
                  on_progress: Optional[Callable[[Dict[str, Tuple[int, int, int]]], None]] = None
                  ) -> Dict[str, SourceReport]:
    """`run.download` on a Dask cluster: same tree, same manifest records, same reports.

    Args:
        plan, root, sources, options: as for `run.download` (`options.workers`: fetch threads per task on a worker;
            `options.shard_items`: items per task). ROOT must be the same path on the client and every worker.
        cluster: a `DaskOptions` (the client connects to its scheduler and disconnects at the end) or a connected
            `distributed.Client` (left open).
        out: where the progress bars and the dashboard link go (default: stderr).
        on_progress: called with the per-source (items, bytes, failed) when each task finishes.

    Raises `InsufficientSpaceError` before fetching, as `run.download`; a task that fails for good (after its
    retries, or whose workers kept dying) has each of its items recorded "failed" with the cluster's error.
    """
    from distributed import Client, as_completed

    out = out or sys.stderr
    manifest, todo_plan, reports, _ = prepare(plan, root, sources, options)
    own_client = isinstance(cluster, DaskOptions)
    retries = cluster.task_retries if own_client else DaskOptions("").task_retries
    token = uuid.uuid4().hex
    progress: Optional[ClusterProgress] = None
    client = None
    try:
        client = Client(cluster.scheduler, timeout=cluster.connect_timeout) if own_client else cluster
        link = dashboard_link(client)
        if link:
            print(f"dask dashboard: {link}", file=out)
        streamed = [name for name, s in sources.items() if s.kind in STREAMED_KINDS]
        tasks = [t for t in todo_plan.tasks(options.shard_items, whole=streamed)
                 if not record_not_fetchable(t, sources, manifest, reports[t.source])]
        totals: Dict[str, int] = {}
        for task in tasks:
            totals[task.source] = totals.get(task.source, 0) + task.items.num_rows
        progress = ClusterProgress(totals, options.progress, out)
        client.subscribe_topic(PROGRESS_TOPIC, lambda event: progress.event(event)
                               if event[1].get("token") == token else None)
        try:
            futures = {}
            for task in tasks:
                key = f"emm1-download-{token[:12]}-{task.source}-{task.shard}"
                futures[client.submit(fetch_task, token, key, task, root, sources, options, key=key, retries=retries,
                                      pure=False)] = task
            for future in as_completed(list(futures)):
                task = futures.pop(future)
                try:
                    records = future.result()
                except Exception as err:  # the task failed for good: its items are recorded, not dropped
                    error = f"task {future.key} failed on the cluster: {type(err).__name__}: {err}"
                    records = [{**item, "source": task.source, "status": "failed", "attempts": 0, "error": error}
                               for item in task.items.select(["destination", "modality", "id", "file_id"]).to_pylist()]
                done = SourceReport(task.source, "")
                for record in records:
                    manifest.append(record)
                    count_record(done, record)
                    count_record(reports[task.source], record)
                progress.finished(future.key, task.source, done)
                future.release()
                if on_progress is not None:
                    on_progress(progress.counts())
        finally:
            client.unsubscribe_topic(PROGRESS_TOPIC)
        # every task has finished: what a killed worker was writing is garbage now
        remove_partials(destination_folders(plan, root), root)
    finally:
        if progress is not None:
            progress.close()
        manifest.close()
        if own_client and client is not None:
            client.close()
    return reports
