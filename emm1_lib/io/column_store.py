"""Where a large infos column lives while tables are built: in memory, or in an Arrow file on local disk.

The captions of E-MM1:100M are ~1.2 GB of Arrow strings, about half of what preparing a config
holds. `MappedColumn` writes them once to an Arrow IPC file on local disk and reads only the record
batches a gather needs, only while it runs: grouping files list captions in order, so a batch of
100k rows reads one or two 4 MB record batches, and the process's resident memory holds them
for milliseconds instead of for the whole preparation. The page cache keeps the file as it
keeps the CSV: memory the kernel reclaims at will, not the process's. `InMemoryColumn` is the same
gather over chunks held in memory (no writable local folder, e.g. streaming on a read-only machine).
"""
import multiprocessing.util
import os
import sys
import tempfile
import weakref
from typing import Callable, Iterable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def codec_available(codec: str) -> bool:
    """Whether this pyarrow was built with `codec` (a cache folder may be shared with one that was not)."""
    return pa.Codec.is_available(codec)


def scratch_ipc_options(codec: Optional[str] = None) -> pa.ipc.IpcWriteOptions:
    """How a column this package keeps on local disk is written: with `codec` (e.g. "lz4") when this pyarrow has
    it, else uncompressed. The reader needs nothing: an IPC file records its codec."""
    return pa.ipc.IpcWriteOptions(compression=codec if codec and codec_available(codec) else None)


def chunk_bounds(lengths: Iterable[int]) -> np.ndarray:
    """Start row of each chunk, then the total length."""
    return np.cumsum([0] + list(lengths), dtype=np.int64)


def take_chunked(chunk_at: Callable[[int], pa.Array], bounds: np.ndarray, value_type: pa.DataType,
                 positions: pa.Array) -> pa.Array:
    """`values.take(positions)` over chunks (`chunk_at(i)`, starting at row `bounds[i]`), as one array.

    Each chunk is gathered from separately, never concatenated (a contiguous copy of 700 MB of captions
    would double them for a moment); the pieces are put back in row order. Only the chunks holding a
    wanted row are asked for.
    """
    wanted = pc.fill_null(positions, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if len(wanted) == 0:
        return pa.array([], value_type)
    chunk_of = np.searchsorted(bounds, wanted, side="right") - 1  # -1 for null positions
    # Grouping files list captions in text.csv's order, so the rows' chunks usually come in order (often one
    # chunk): each chunk's rows are then one run of the result, and need no sort and no second gather.
    order = None if bool(np.all(chunk_of[1:] >= chunk_of[:-1])) else np.argsort(chunk_of, kind="stable")
    if order is not None:
        chunk_of, wanted = chunk_of[order], wanted[order]
    starts = np.flatnonzero(np.diff(chunk_of, prepend=chunk_of[0] - 1))
    ends = np.append(starts[1:], len(wanted))
    pieces = [pa.nulls(int(e - s), value_type) if chunk_of[s] < 0
              else chunk_at(int(chunk_of[s])).take(pa.array(wanted[s:e] - bounds[chunk_of[s]]))
              for s, e in zip(starts, ends)]
    gathered = pieces[0] if len(pieces) == 1 else pa.concat_arrays(pieces)
    if order is None:
        return gathered
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return gathered.take(pa.array(inverse))


class InMemoryColumn:
    """A column kept in its reader's chunks (no second, contiguous copy)."""

    def __init__(self, chunks: Iterable[pa.Array], value_type: pa.DataType):
        self.values = pa.chunked_array(list(chunks), value_type)
        self._bounds = chunk_bounds(len(chunk) for chunk in self.values.chunks)

    def take(self, positions: pa.Array) -> pa.Array:
        """The values at row `positions` (null positions give null)."""
        return take_chunked(self.values.chunk, self._bounds, self.values.type, positions)


class MappedColumn:
    """A column in an Arrow IPC file (one record batch per written chunk), mapped a gather at a time.

    The file is private to this object and to the process that wrote it: created in `folder`,
    deleted on `close()`, when the object is collected, or when that process ends, whichever comes
    first. A process ends without atexit handlers when it is a `multiprocessing` worker (a torch
    DataLoader's, a `num_proc` pool's): their own exit hooks delete the file then. A forked child
    that inherits the object may read the file but never deletes it.
    """

    def __init__(self, path: str, value_type: pa.DataType, bounds: np.ndarray, owned: bool = True):
        """`owned=False`: the file is someone else's (a shared cache entry): read it, never delete it."""
        self.path = path
        self.type = value_type
        self._bounds = bounds
        self._remove = weakref.finalize(self, _remove_own_file, path, os.getpid()) if owned else (lambda: None)
        if owned:
            _remove_at_worker_exit(self, self._remove)

    @classmethod
    def write(cls, chunks: Iterable[pa.Array], value_type: pa.DataType, folder: str,
              prefix: str = "emm1-column-") -> "MappedColumn":
        """Write `chunks` (consumed one at a time, so they can come straight from a streaming reader)."""
        os.makedirs(folder, exist_ok=True)
        handle, path = tempfile.mkstemp(prefix=prefix, suffix=".arrow", dir=folder)
        os.close(handle)
        schema = pa.schema([("values", value_type)])
        lengths = []
        try:
            with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, schema, options=scratch_ipc_options()) as writer:
                for chunk in chunks:
                    writer.write_batch(pa.record_batch([chunk], schema=schema))
                    lengths.append(len(chunk))
        except BaseException:
            _remove_file(path)
            raise
        return cls(path, value_type, chunk_bounds(lengths))

    def take(self, positions: pa.Array) -> pa.Array:
        """The values at row `positions` (null positions give null), reading only the batches that hold them."""
        # Read, not memory-mapped: a gather needs a few record batches, and reading them (one copy from the page
        # cache) costs less than mapping and faulting in their pages anew for every gather. The batches read are
        # freed when the gather returns: the result is a copy.
        with pa.OSFile(self.path) as f:
            # Only the values are read (and decompressed): a cache entry holds other columns beside them.
            reader = pa.ipc.open_file(f, options=pa.ipc.IpcReadOptions(included_fields=[0]))
            return take_chunked(lambda i: reader.get_batch(i).column(0), self._bounds, self.type, positions)

    def close(self) -> None:
        """Delete the file now rather than when the object is collected."""
        self._remove()


def _remove_file(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _remove_own_file(path: str, owner_pid: int) -> None:
    """Delete `path` if this process wrote it: a forked child's copy of the object must not delete its parent's file."""
    if os.getpid() == owner_pid:
        _remove_file(path)


# Worker processes of the standard library's `multiprocessing` and of its `multiprocess` fork (used by
# datasets' num_proc) end with os._exit after running their own exit finalizers, not atexit handlers.
_MULTIPROCESSING_UTILS = ("multiprocessing.util", "multiprocess.util")


def _remove_at_worker_exit(owner: object, remove: Callable[[], None]) -> None:
    """Run `remove` when this process ends as a multiprocessing worker (or `owner` is collected first)."""
    for name in _MULTIPROCESSING_UTILS:
        util = multiprocessing.util if name == "multiprocessing.util" else sys.modules.get(name)
        if util is not None:
            util.Finalize(owner, remove, exitpriority=0)


def writable_folder(folder: Optional[str]) -> Optional[str]:
    """`folder` when it exists (or can be created) and accepts files, else None."""
    if not folder:
        return None
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return folder
    except OSError:
        return None
