"""Reading E-MM1 CSV files into Arrow with pyarrow.csv, with errors that name the file and the row.

Whole tables (infos, triplets) are read multi-threaded in one call; the large grouping files are
read by byte range, so one file becomes many independent shards (parallel preparation, streaming,
multi-node) and memory stays bounded by the shard size.
"""
import csv
import os
from typing import Dict, List, Optional, Sequence, Tuple

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv

from .errors import EMM1DataError
from .layout import is_remote, missing_names

# Grouping rows are short lines of integers, so a byte range of this size holds ~500k rows.
DEFAULT_SHARD_BYTES = 16 << 20
_READ_BLOCK_BYTES = 16 << 20


def open_binary(path: str):
    """Open a local path or a URL for binary reading."""
    if is_remote(path):
        return fsspec.open(path, "rb").open()
    return open(path, "rb")


def file_size(path: str) -> int:
    """Size in bytes of a local or remote file."""
    if is_remote(path):
        fs, fs_path = fsspec.core.url_to_fs(path)
        return int(fs.size(fs_path))
    return os.path.getsize(path)


def read_header(path: str) -> List[str]:
    """The column names on the first line of a CSV file (a UTF-8 byte-order mark is ignored)."""
    try:
        with open_binary(path) as f:
            # read(), not readline(size): fsspec's remote files take no size for readline
            first_line = f.read(1 << 20).split(b"\n", 1)[0]
    except FileNotFoundError as err:
        raise EMM1DataError(f"{path}: file not found.") from err
    try:
        text = first_line.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise EMM1DataError(f"{path}: the header line is not UTF-8 ({err}). Re-encode the file as UTF-8.") from err
    if not text.strip():
        raise EMM1DataError(f"{path}: the file is empty; expected a CSV header line.")
    return next(csv.reader([text]))


def check_columns(path: str, header: Sequence[str], required: Sequence[str]) -> None:
    """Raise naming the file and the columns when any of `required` is absent from `header`."""
    missing = missing_names(required, header)
    if missing:
        raise EMM1DataError(
            f"{path}: missing required column(s) {missing}; the header has {list(header)}. "
            "Check that this is the right file for this config (both the seed and the released "
            "schemas of UPSTREAM.md are accepted)."
        )


def _convert_options(header: Sequence[str], column_types: Dict[str, pa.DataType]) -> pacsv.ConvertOptions:
    wanted = [name for name in column_types if name in header]
    return pacsv.ConvertOptions(
        column_types={name: column_types[name] for name in wanted},
        include_columns=wanted,
    )


def _wrap_arrow_error(path: str, err: Exception, start_byte: int = 0) -> EMM1DataError:
    where = f" (in the rows from byte {start_byte} on)" if start_byte > 0 else ""
    return EMM1DataError(
        f"{path}{where}: could not parse the CSV: {err}. Fix or remove the offending row; "
        "`emm1 validate` reports every problem of a metadata tree at once."
    )


def read_csv_table(
    path: str,
    column_types: Dict[str, pa.DataType],
    required: Sequence[str],
) -> pa.Table:
    """Read the columns of `column_types` present in the CSV at `path` (those in `required` must be)."""
    header = read_header(path)
    check_columns(path, header, required)
    read_options = pacsv.ReadOptions(block_size=_READ_BLOCK_BYTES)
    convert_options = _convert_options(header, column_types)
    try:
        if not is_remote(path):
            # A local path is read by Arrow's own file reader: no GIL, no Python bytes per block.
            return pacsv.read_csv(path, read_options=read_options, convert_options=convert_options)
        with open_binary(path) as f:
            return pacsv.read_csv(f, read_options=read_options, convert_options=convert_options)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise _wrap_arrow_error(path, err) from err


def byte_ranges(path: str, shard_bytes: int = DEFAULT_SHARD_BYTES) -> List[Tuple[int, int]]:
    """Split a file into `[start, end)` byte ranges of about `shard_bytes` each (at least one)."""
    size = file_size(path)
    shard_bytes = max(1, int(shard_bytes))
    starts = list(range(0, size, shard_bytes)) or [0]
    return [(start, min(start + shard_bytes, size)) for start in starts]


def _read_line_aligned(f, start: int, end: int) -> bytes:
    """The whole lines that *start* inside `[start, end)`: each line belongs to exactly one range."""
    if start > 0:
        f.seek(start - 1)
        if f.read(1) != b"\n":
            f.readline()  # finish the line that began in the previous range
    else:
        f.seek(0)
    position = f.tell()
    if position >= end:
        return b""
    chunk = f.read(end - position)
    if not chunk.endswith(b"\n"):
        chunk += f.readline()  # the last line started inside the range: it is ours
    return chunk


def read_csv_range(
    path: str,
    start: int,
    end: int,
    header: Sequence[str],
    column_types: Dict[str, pa.DataType],
) -> Optional[pa.Table]:
    """Read the rows of a CSV whose lines start in `[start, end)` (the header line is skipped).

    Safe for files without quoted newlines, which holds for the all-integer grouping files.
    Returns None when the range holds no row.
    """
    with open_binary(path) as f:
        chunk = _read_line_aligned(f, start, end)
    first = 0
    if start == 0:  # skip the header line (a view, not a copy of the range)
        first = chunk.find(b"\n") + 1 if b"\n" in chunk else len(chunk)
    if not chunk[first:first + 4096].strip() and not chunk[first:].strip():
        return None
    try:
        return pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(chunk)[first:]),
            read_options=pacsv.ReadOptions(column_names=list(header), block_size=_READ_BLOCK_BYTES),
            convert_options=_convert_options(header, column_types),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise _wrap_arrow_error(path, err, start_byte=start) from err
