"""A cached Arrow form of what a reader took from a local CSV file, reused across configs, processes and runs.

Parsing E-MM1:100M's infos tables (2.6 GB of CSV) is most of what preparing one config costs, and every
config of a split reads the same tables. After a checked read, the reader's columns go to an Arrow IPC file
(with the codec the reader asks for, if any) in a cache folder (the builder uses
`<datasets cache>/emm1-infos/`); the next read reads that file instead of parsing. A cache entry is named after the CSV's absolute path and what was read from it (columns,
types), and stamped with the CSV's size, modification time, inode and a hash of its first and last 64 KiB:
an entry whose stamp differs from the file's is not used (and is replaced by the next write), so an edited
or replaced CSV is parsed again. Entries are written to a temporary file in the same folder and renamed into
place, so a reader never sees half a file; a lock beside the entry makes concurrent readers of a missing entry
(num_proc workers) wait for the first one's parse and map its result instead of all parsing at once.
Only local files are cached (a remote file's stamp would cost a request per read).
"""
import contextlib
import hashlib
import json
import os
import tempfile
from typing import Callable, Iterable, Iterator, Optional

import filelock
import pyarrow as pa

from emm1_lib.io import column_store
from emm1_lib.io.fs import is_remote

# Bump when what an entry holds changes: older entries are then not used (they are named apart).
CACHE_FORMAT = 1
_STAMP_KEY = b"emm1.source_stamp"
_CODEC_KEY = b"emm1.codec"  # the buffers' compression: another environment sharing the cache may lack it
_EDGE_BYTES = 64 << 10


def source_stamp(path: str) -> Optional[dict]:
    """What identifies the content of the local file at `path` cheaply (None when it cannot be read)."""
    try:
        st = os.stat(path)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            digest.update(f.read(_EDGE_BYTES))
            if st.st_size > _EDGE_BYTES:
                f.seek(max(_EDGE_BYTES, st.st_size - _EDGE_BYTES))
                digest.update(f.read(_EDGE_BYTES))
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino, "edges": digest.hexdigest()}


def _entry_prefix(folder: str, source: str, what: str) -> str:
    """What every entry (and the lock) for `what` (a description of the columns read) of `source` starts with."""
    key = json.dumps([CACHE_FORMAT, os.path.abspath(source), what])
    stem = os.path.splitext(os.path.basename(source))[0]
    return os.path.join(folder, f"{stem}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:24]}")


def entry_path(folder: str, source: str, what: str, stamp: dict) -> str:
    """The cache file for `what` of the CSV at `source` as it was when `stamp` was taken. The stamp is part of the
    name, so an entry is never replaced under a reader that still maps it: an edited CSV gets a new entry."""
    digest = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return f"{_entry_prefix(folder, source, what)}-{digest}.arrow"


def _remove_other_entries(path: str, prefix: str) -> None:
    """Entries of earlier versions of the CSV: a process still reading one fails loudly (the file is gone) rather
    than reading another version's rows."""
    folder = os.path.dirname(prefix)
    start = os.path.basename(prefix) + "-"
    for name in os.listdir(folder):
        other = os.path.join(folder, name)
        if name.startswith(start) and name.endswith(".arrow") and other != path:
            with contextlib.suppress(OSError):
                os.remove(other)


def cacheable(folder: Optional[str], source: str) -> bool:
    return bool(folder) and not is_remote(source) and not is_remote(folder)


@contextlib.contextmanager
def locked(folder: Optional[str], source: str, what: str) -> Iterator[None]:
    """Hold the entry's lock (`<entry>.lock`): check for the entry, and parse and write it when missing, inside.
    Without a usable cache (or when the lock file cannot be made) nothing is locked."""
    if not cacheable(folder, source):
        yield
        return
    try:
        os.makedirs(folder, exist_ok=True)
        lock = filelock.FileLock(_entry_prefix(folder, source, what) + ".lock")
        lock.acquire()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()


def open_entry(folder: Optional[str], source: str, what: str) -> Optional[str]:
    """The path of a usable cache entry for `what` of `source` (its stamp matches the file's), else None."""
    if not cacheable(folder, source):
        return None
    current = source_stamp(source)
    if current is None:
        return None
    path = entry_path(folder, source, what, current)
    try:
        with pa.memory_map(path) as mapped:
            metadata = pa.ipc.open_file(mapped).schema.metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None  # absent, or not a whole Arrow file: parse the CSV
    stamp = metadata.get(_STAMP_KEY)
    if stamp is None or json.loads(stamp) != current:
        return None
    codec = metadata.get(_CODEC_KEY, b"").decode("utf-8")
    if codec and not column_store.codec_available(codec):
        return None  # written by a pyarrow with this codec; this one parses the CSV and writes an entry it can read
    return path


def write_entry(folder: Optional[str], source: str, what: str, schema: pa.Schema,
                batches: Iterable[pa.RecordBatch], stamp: Optional[dict], codec: Optional[str] = None) -> Optional[str]:
    """Write `batches` (consumed one at a time) as the cache entry of `what` of `source`, compressed with `codec`
    when this pyarrow has it; return its path.

    `stamp` is `source_stamp(source)` taken *before* the read that produced the batches: when the file
    changed during the read, the entry is not published. Returns None (nothing published) in that case or
    when the folder is not writable; the batches are consumed either way. Errors raised by the batches
    (a refused CSV) propagate and leave no entry.
    """
    if not cacheable(folder, source) or stamp is None:
        for _ in batches:
            pass
        return None
    options = column_store.scratch_ipc_options(codec)
    schema = schema.with_metadata({**(schema.metadata or {}), _STAMP_KEY: json.dumps(stamp).encode("utf-8"),
                                   _CODEC_KEY: (options.compression or "").encode("utf-8")})
    try:
        os.makedirs(folder, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=".writing-", suffix=".arrow", dir=folder)
        os.close(handle)
    except OSError:
        for _ in batches:
            pass
        return None
    try:
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema, options=options) as writer:
            for batch in batches:
                writer.write_batch(batch)
        if source_stamp(source) != stamp:
            os.remove(tmp)
            return None
        path = entry_path(folder, source, what, stamp)
        try:
            os.replace(tmp, path)
        except PermissionError:  # Windows: another process has the old entry open; it stays until next time
            os.remove(tmp)
            return None
        _remove_other_entries(path, _entry_prefix(folder, source, what))
        return path
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise


def read_entry(path: str) -> pa.Table:
    """The whole entry as a table in memory: one sequential read. (Mapped instead, the random gathers of a
    preparation would fault its pages in one by one, from disk once writing the output has evicted them.)"""
    with pa.OSFile(path) as f:
        return pa.ipc.open_file(f).read_all()


def column_of_batches(path: str, column: int, each: Callable[[pa.Array], object]) -> list:
    """`each(column)` for every batch of the entry, in order, the column copied out of the batch: Arrow's reader
    allocates one buffer the size of a batch's whole body and the column is a view of it, which would keep every
    other column of the entry (the captions) in memory."""
    with pa.OSFile(path) as f:
        reader = pa.ipc.open_file(f, options=pa.ipc.IpcReadOptions(included_fields=[column]))
        return [each(pa.concat_arrays([reader.get_batch(i).column(0)])) for i in range(reader.num_record_batches)]
