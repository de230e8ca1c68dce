"""Writing fetched files safely and recording what happened to each.

A file reaches its final path only whole and decoded: bytes go to a temporary file in the destination
folder (`.emm1-partial-*`, same file system), are decoded as their modality with the project's decoders
(`media.features`), then `os.replace`d into place. A kill at any moment leaves either no file or the whole
file at the final path; stale temporary files are removed by the next run. The manifest (JSON lines beside
ROOT) records per item: status, bytes, sha256, source, error, attempts.
"""
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from typing import Dict, Iterable, Optional

import pyarrow as pa

PARTIAL_PREFIX = ".emm1-partial-"


class UnsafeDestinationError(PermissionError):
    """A destination resolves (through a symlinked folder) outside ROOT: nothing was written."""


def manifest_path(root: str) -> str:
    """`ROOT.download-manifest.jsonl`, beside the media root (not inside it: the tree holds only media)."""
    return os.path.abspath(root).rstrip(os.sep) + ".download-manifest.jsonl"


def _inside(path: str, real_root: str) -> bool:
    return path == real_root or path.startswith(real_root + os.sep)


def checked_destination(root: str, relative: str) -> str:
    """`root/relative` with its folder created, refused (nothing created) when the folder resolves outside `root`
    (a save folder that is a symlink to elsewhere, say)."""
    real_root = os.path.realpath(root)
    path = os.path.join(real_root, relative)
    folder = os.path.dirname(path)
    existing = folder
    while not os.path.lexists(existing) and _inside(os.path.dirname(existing), real_root):
        existing = os.path.dirname(existing)
    for probe in (existing, folder):  # before creating anything, then what was created
        real = os.path.realpath(probe)
        if not _inside(real, real_root):
            raise UnsafeDestinationError(
                f"{path}: {probe} resolves to {real}, outside the media root {real_root}; nothing was written. "
                "Remove the symlink or choose another --root-data-path.")
        if probe is existing:
            os.makedirs(folder, exist_ok=True)
    return path


def decode_check(path: str, modality: str) -> None:
    """Raise (`MediaDecodeError` and friends) unless `path` decodes as `modality` with the builders' decoders."""
    from emm1_lib.media.features import media_feature

    decoded = media_feature(modality).decode_example({"path": path, "bytes": None})
    if modality == "video":
        try:
            next(iter(decoded))  # the first frame: a container with an undecodable stream fails here
        finally:
            decoded.close()


def write_verified(destination: str, chunks: Iterable[bytes], modality: str, verify: bool = True) -> Dict[str, object]:
    """Stream `chunks` to a temporary file beside `destination`, decode-check it, then move it into place.

    Returns `{"bytes", "sha256"}`. On any error the temporary file is removed and the error propagates.
    """
    folder, name = os.path.split(destination)
    temporary = os.path.join(folder, f"{PARTIAL_PREFIX}{uuid.uuid4().hex[:12]}-{name}")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(temporary, "xb") as f:
            for chunk in chunks:
                f.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        if verify:
            decode_check(temporary, modality)
        os.replace(temporary, destination)
    except BaseException:
        try:
            os.remove(temporary)
        except OSError:
            pass
        raise
    return {"bytes": size, "sha256": digest.hexdigest()}


def partial_folder(destination: str) -> str:
    """A new temporary folder beside `destination` (`.emm1-partial-*`, removed by `remove_partials` after a kill),
    for fetchers that produce a file with an external tool (yt-dlp and FFmpeg) before `commit_file`."""
    folder, name = os.path.split(destination)
    path = os.path.join(folder, f"{PARTIAL_PREFIX}{uuid.uuid4().hex[:12]}-{name}.d")
    os.mkdir(path)
    return path


def commit_file(produced: str, destination: str, modality: str, verify: bool = True) -> Dict[str, object]:
    """Decode-check `produced` (a finished file on the destination's file system, e.g. in a `partial_folder`),
    then move it to `destination`. Returns `{"bytes", "sha256"}`; on an error nothing reaches `destination`."""
    digest = hashlib.sha256()
    size = 0
    with open(produced, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    if verify:
        decode_check(produced, modality)
    os.replace(produced, destination)
    return {"bytes": size, "sha256": digest.hexdigest()}


def remove_partials(folders: Iterable[str], root: str) -> int:
    """Delete temporary files and folders a killed run left in `folders`; returns how many. A folder that resolves
    outside `root` (a save folder that is a symlink to elsewhere) is not touched: nothing was written there."""
    removed = 0
    real_root = os.path.realpath(root)
    for folder in folders:
        if not _inside(os.path.realpath(folder), real_root):
            continue
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.startswith(PARTIAL_PREFIX):
                path = os.path.join(folder, name)
                try:
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path)
                    else:
                        os.remove(path)
                    removed += 1
                except OSError:
                    pass
    return removed


class Manifest:
    """Append-only JSON lines, one record per attempt outcome; the last record of a destination wins."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._file = None

    def _records(self) -> pa.Table:
        """Every record (destination, status, bytes), in file order; a last line cut by a kill is left out."""
        columns = {"destination": pa.string(), "status": pa.string(), "bytes": pa.int64()}
        empty = pa.table({name: pa.array([], type_) for name, type_ in columns.items()})
        if not os.path.exists(self.path) or os.path.getsize(self.path) == 0:
            return empty
        import pyarrow.json as pajson

        schema = pa.schema(list(columns.items()))
        options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        try:
            return pajson.read_json(self.path, parse_options=options).select(list(columns))
        except pa.ArrowInvalid:  # a line cut short by a kill: read the whole lines one by one
            records = []
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        continue
            rows = [r for r in records if isinstance(r, dict) and "destination" in r]
            return pa.table({name: pa.array([r.get(name) for r in rows], type_) for name, type_ in columns.items()})

    def last_status(self) -> pa.Table:
        """Columns destination, status, bytes of each destination's last record."""
        import numpy as np

        table = self._records()
        if table.num_rows == 0:
            return table
        numbered = table.select(["destination"]).append_column("_row", pa.array(np.arange(table.num_rows)))
        last = numbered.group_by("destination").aggregate([("_row", "max")])["_row_max"]
        return table.take(last)

    def append(self, record: Dict[str, object]) -> None:
        record = {**record, "time": round(time.time(), 3)}
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            if self._file is None:
                os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def tar_index_path(root: str) -> str:
    """`ROOT.download-tar-index.jsonl`, beside the manifest: which members each tar archive holds."""
    return os.path.abspath(root).rstrip(os.sep) + ".download-tar-index.jsonl"


class TarIndex:
    """The member base names seen in each tar archive (by URL), and whether it was read to its end.

    JSON lines, one per read: `{"archive": url, "complete": bool, "members": [names]}`. A rerun skips an archive
    read to the end that holds none of the names it still needs, and reads first the archives known to hold
    some. Delete the file to make every archive be scanned again (after an archive changed upstream).
    """

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self.complete: Dict[str, frozenset] = {}
        self.partial: Dict[str, set] = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        self._add(str(entry["archive"]), bool(entry["complete"]), entry["members"])
                    except (ValueError, KeyError, TypeError):  # a line cut by a kill
                        continue

    def _add(self, archive: str, complete: bool, members: Iterable[str]) -> None:
        if complete:
            self.complete[archive] = frozenset(members)
            self.partial.pop(archive, None)
        elif archive not in self.complete:
            self.partial.setdefault(archive, set()).update(members)

    def known(self, archive: str) -> Optional[frozenset]:
        """The members of `archive` when it was read to its end before, else None."""
        return self.complete.get(archive)

    def holds(self, archive: str, names: Iterable[str]) -> bool:
        """True when `archive` is known (from a complete or partial read) to hold one of `names`."""
        seen = self.complete.get(archive) or self.partial.get(archive) or ()
        return any(n in seen for n in names)

    def record(self, archive: str, complete: bool, members: Iterable[str]) -> None:
        members = sorted(members)
        line = json.dumps({"archive": archive, "complete": complete, "members": members}, ensure_ascii=False) + "\n"
        with self._lock:
            self._add(archive, complete, members)
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            # one write() of the whole line: appends of other processes (a distributed run) do not interleave
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)
