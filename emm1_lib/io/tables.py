"""Reading E-MM1 CSV files into Arrow with pyarrow.csv, with errors that name the file and the line.

Whole tables (infos, triplets) are read multi-threaded in one call; the large grouping files are
read by byte range, so one file becomes many independent shards (parallel preparation, streaming,
multi-node) and memory stays bounded by the shard size.
"""
import csv
import io
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import BinaryIO, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from emm1_lib.errors import EMM1DataError
from emm1_lib.errors import Violation
from emm1_lib.errors import raise_first
from emm1_lib.io.fs import file_size
from emm1_lib.io.fs import is_remote
from emm1_lib.io.fs import open_binary
from emm1_lib.io.ids import check_ids
from emm1_lib.io.ids import is_id_column

# Grouping rows are short lines of integers, so a byte range of this size holds ~500k rows.
DEFAULT_SHARD_BYTES = 16 << 20
_READ_BLOCK_BYTES = 16 << 20
# Blocks of the streaming reader (`iter_csv_batches`): its memory is a fixed number of blocks whatever the file's
# size, but a large number (measured with pyarrow 26: ~40 blocks of Arrow memory, read ahead), so blocks are small.
# 1 MiB parses text.csv as fast as 4 MiB and holds ~40 MB instead of ~160 MB. The price: a record over 1 MiB makes
# the read start again with doubled blocks (below), one or two passes more than from 4 MiB; results are the same.
_STREAM_BLOCK_BYTES = 1 << 20
# A record must fit in a block (pyarrow: "straddling object straddles two block boundaries"). Blocks double,
# re-reading the file, until the longest record fits, up to this size; a longer record is refused naming its line.
MAX_BLOCK_BYTES = 256 << 20
# Bytes counted at a time: numpy's comparison scratch stays in cache (~4x faster than bytes.count).
_COUNT_BLOCK_BYTES = 1 << 18
# A header line is read in pieces of this size, up to the limit.
_HEADER_PIECE_BYTES = 16 << 10
_HEADER_LIMIT_BYTES = 1 << 20
_QUOTE = ord('"')
_NEWLINE = ord("\n")
# Whole tables hold free text: a caption may contain a line break inside quotes. Without this option
# pyarrow cuts blocks at any line break; a cut inside quotes fails the read or, at a "\r\n", changes the
# value without a word.
_WHOLE_TABLE_PARSE = pacsv.ParseOptions(newlines_in_values=True)
# pyarrow names the failing record only when it reads on one thread ("Row #N", header = 1).
_ROW_NUMBER = re.compile(r"Row #(\d+): ")
_STRADDLING = "straddling object"
# Python's csv module (used to locate lines in error messages) refuses fields over 128 KiB by default;
# a long caption is valid, and must not be mistaken for broken quoting.
csv.field_size_limit(max(csv.field_size_limit(), (1 << 31) - 1))


def read_header(path: str) -> List[str]:
    """The column names on the first line of a CSV file (a UTF-8 byte-order mark is ignored)."""
    try:
        with open_binary(path) as f:
            first_line = _first_line(f)
    except FileNotFoundError as err:
        raise EMM1DataError(f"{path}: file not found.", file=path, code="missing_file") from err
    try:
        text = first_line.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise EMM1DataError(f"{path}: the header line is not UTF-8 ({err}). Re-encode the file as UTF-8.",
                            file=path, line=1, code="unreadable") from err
    if not text.strip():
        raise EMM1DataError(f"{path}: the file is empty; expected a CSV header line.", file=path, line=1,
                            code="unreadable")
    return next(csv.reader([text]))


def _first_line(f, limit: int = _HEADER_LIMIT_BYTES) -> bytes:
    """The bytes before the first line break (at most `limit`), read in small pieces: a remote file fetches
    what is read, and a header is short."""
    # read(), not readline(size): fsspec's remote files take no size for readline
    data = b""
    while len(data) < limit:
        piece = f.read(min(_HEADER_PIECE_BYTES, limit - len(data)))
        data += piece
        if not piece or b"\n" in piece:
            break
    return data.split(b"\n", 1)[0]


def has_data_rows(path: str) -> bool:
    """Whether anything but line breaks follows the header line (pyarrow skips empty lines)."""
    in_header = True
    with open_binary(path) as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            if in_header:
                header_end = block.find(b"\n")
                if header_end < 0:
                    continue
                block, in_header = block[header_end + 1:], False
            if block.strip(b"\r\n"):
                return True
    return False


def missing_names(wanted: Iterable[str], present: Iterable[str]) -> List[str]:
    """The names of `wanted` absent from `present`, in `wanted` order."""
    present = set(present)
    return [name for name in wanted if name not in present]


def column_violations(path: str, header: Sequence[str], required: Sequence[str],
                      known: Optional[Sequence[str]] = None) -> List[Violation]:
    """The header rules: every `required` column present (`missing_column`), no name twice (`repeated_column`);
    with `known`, columns neither required nor known are a note (`extra_column`: the readers ignore them)."""
    found: List[Violation] = []
    missing = missing_names(required, header)
    if missing:
        found.append(Violation(
            "missing_column", path,
            f"{path}: missing required column(s) {missing}; the header has {list(header)}. "
            "Check that this is the right file for this config (both the seed and the released "
            "schemas of UPSTREAM.md are accepted).",
            lines=(1,), values=tuple(missing), count=len(missing),
        ))
    repeated = sorted(name for name, count in Counter(header).items() if count > 1)
    if repeated:
        found.append(Violation(
            "repeated_column", path,
            f"{path}: column(s) {repeated} appear more than once in the header {list(header)}; which one a "
            "reader takes is arbitrary. Rename or remove the extra column.",
            lines=(1,), values=tuple(repeated), count=len(repeated),
        ))
    if known is not None:
        extra = [c for c in header if c not in known and c not in required]
        if extra:
            found.append(Violation(
                "extra_column", path, f"{path}: column(s) {extra} are not used by the builders (ignored).",
                severity="note", lines=(1,), values=tuple(extra), count=len(extra),
                summary=f"column(s) {extra} are not used by the builders (ignored).",
            ))
    return found


def check_columns(path: str, header: Sequence[str], required: Sequence[str]) -> None:
    """Raise naming the file and the columns when any of `required` is absent from `header`, or a name repeats."""
    raise_first(column_violations(path, header, required))


def _convert_options(header: Sequence[str], column_types: Dict[str, pa.DataType]) -> pacsv.ConvertOptions:
    wanted = [name for name in column_types if name in header]
    return pacsv.ConvertOptions(
        column_types={name: column_types[name] for name in wanted},
        include_columns=wanted,
    )


# ---------------------------------------------------------------------------------------------- ids


def id_columns(header: Sequence[str], column_types: Dict[str, pa.DataType]) -> List[str]:
    """The integer columns of `column_types` present in `header` that hold ids (`emm1_lib.io.ids.is_id_column`)."""
    return [name for name, kind in column_types.items()
            if name in header and pa.types.is_integer(kind) and is_id_column(name)]


def _ids_as_text(column_types: Dict[str, pa.DataType], ids: Sequence[str]) -> Dict[str, pa.DataType]:
    """`column_types` with the id columns read as text: pyarrow's int64 reader accepts hex and null spellings."""
    return {name: (pa.string() if name in ids else kind) for name, kind in column_types.items()}


def _with_checked_ids(path: str, table, ids: Sequence[str], column_types: Dict[str, pa.DataType],
                      line_of_row: Callable[[int], Optional[int]], missing_is_error: bool = False):
    """`table` (a Table or RecordBatch read with `_ids_as_text`) with its id columns as integers, or the id rule's
    first error (`emm1_lib.io.ids`). `line_of_row(row)` locates a row's file line (error path only)."""
    def lines_of(rows: np.ndarray) -> Tuple[int, ...]:
        line = line_of_row(int(rows[0])) if len(rows) else None
        return (line,) if line is not None else ()

    for name in ids:
        values, found = check_ids(path, name, table.column(name), lines_of, missing_is_error)
        raise_first(found)
        if values.type != column_types[name]:
            values = values.cast(column_types[name])
        index = table.schema.get_field_index(name)
        if isinstance(table, pa.RecordBatch):  # RecordBatch.set_column is younger than the pyarrow we support
            columns = list(table.columns)
            columns[index] = values
            table = pa.RecordBatch.from_arrays(columns, schema=table.schema.set(index, pa.field(name, values.type)))
        else:
            table = table.set_column(index, pa.field(name, values.type), values)
    return table


def _file_line_of_row(path: str, row: int) -> Optional[int]:
    """The file line of data row `row` (0-based) of a whole-file read (header = record 1). Slow: error path only."""
    with open_binary(path) as f:
        return _line_of_record(f, row + 2)


# ---------------------------------------------------------------------------------------------- counting bytes


def _count_byte_in(data, value: int, compare: np.ufunc = np.equal) -> int:
    """How many bytes of `data` (bytes-like) equal `value` (or compare to it so, e.g. `np.greater`)."""
    values = np.frombuffer(data, np.uint8)
    scratch = np.empty(min(len(values), _COUNT_BLOCK_BYTES), bool)
    total = 0
    for start in range(0, len(values), _COUNT_BLOCK_BYTES):
        piece = values[start:start + _COUNT_BLOCK_BYTES]
        total += int(np.count_nonzero(compare(piece, value, out=scratch[:len(piece)])))
    return total


def _count_byte(path: str, value: int, limit: Optional[int] = None) -> int:
    """How many of the first `limit` bytes (all by default) of the file at `path` equal `value`."""
    buffer = bytearray(_COUNT_BLOCK_BYTES)
    view = memoryview(buffer)
    remaining = file_size(path) if limit is None else limit
    total = 0
    with open_binary(path) as f:
        while remaining > 0:
            size = f.readinto(view[:min(remaining, len(buffer))])
            if not size:
                break
            total += _count_byte_in(view[:size], value)
            remaining -= size
    return total


class _QuoteCountingFile:
    """A remote file as pyarrow reads it, counting double quotes on the way (one download, not two).

    A block never ends in "\r": pyarrow drops the "\n" of a quoted "\r\n" that a block boundary cuts
    (apache/arrow#51368), so a trailing "\r" is held back for the next read.
    """

    def __init__(self, f: BinaryIO):
        self._f = f
        self._held = b""
        self.quotes = 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        wanted = size - len(self._held) if size > 0 else size  # never more than asked for
        data = self._f.read(wanted) if wanted else b""
        self.quotes += _count_byte_in(data, _QUOTE)
        block, self._held = self._held + data, b""
        if len(block) > 1 and block.endswith(b"\r"):
            block, self._held = block[:-1], block[-1:]
        return block

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def _splits_crlf(f: BinaryIO, offset: int) -> bool:
    f.seek(offset - 1)
    return f.read(2) == b"\r\n"


def _block_size_keeping_crlf(path: str, block_size: int) -> int:
    """A block size at whose multiples no "\r\n" of the local file at `path` is cut in two.

    pyarrow silently drops the "\n" of a quoted "\r\n" cut by a block boundary (apache/arrow#51368).
    A few 2-byte reads per try; a CRLF file needs a second try about once in three at full size.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        while any(_splits_crlf(f, offset) for offset in range(block_size, size, block_size)):
            block_size += 1
    return block_size


# ---------------------------------------------------------------------------------------------- locating lines


def _line_of_record(source: BinaryIO, record: int) -> Optional[int]:
    """The line on which CSV record `record` starts (both 1-based; empty lines are not records, as in pyarrow).

    Python's csv module, so quoted line breaks count as lines: slow, for error messages only.
    """
    reader = csv.reader(io.TextIOWrapper(source, encoding="utf-8-sig", errors="replace", newline=""))
    start, seen = 1, 0
    try:
        for fields in reader:
            if fields:
                seen += 1
                if seen == record:
                    return start
            start = reader.line_num + 1
    except csv.Error:
        pass
    return None


def _first_failing_record(read_on_one_thread: Callable[[], object], err: Exception) -> Tuple[Optional[int], Exception]:
    """The record number of a failed read and the error naming it, from reading again on one thread."""
    try:
        read_on_one_thread()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as single:
        found = _ROW_NUMBER.search(str(single))
        if found:
            return int(found.group(1)), single
    return None, err


def _parse_error(path: str, err: Exception, line: Optional[int], start_byte: int = 0) -> EMM1DataError:
    if line:
        where = f", line {line}"
    else:
        where = f" (in the rows from byte {start_byte} on)" if start_byte > 0 else ""
    reason = _ROW_NUMBER.sub("", str(err))  # a record number: the line says it better
    return EMM1DataError(
        f"{path}{where}: could not parse the CSV: {reason}. Fix or remove the offending row; "
        "`emm1 validate` reports every problem of a metadata tree at once.",
        file=path, line=line or None, code="unparsable",
    )


def first_bad_quote_line(path: str) -> Optional[int]:
    """The line (1-based, header = 1) where the first record with broken quoting starts: a quote never
    closed, text after a closing quote, or an odd number of quotes; None when the quoting is sound.

    Python's strict csv parser: slow, so call it only once a read was refused (the reader's error message
    and `emm1 validate` use it to name the line)."""
    with open_binary(path) as f:
        text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="replace", newline="")
        record_lines: List[str] = []

        def lines():
            for line in text:
                record_lines.append(line)
                yield line

        reader = csv.reader(lines(), strict=True)
        start = 1
        try:
            for _ in reader:
                if sum(line.count('"') for line in record_lines) % 2:
                    return start
                start = reader.line_num + 1
                record_lines.clear()
        except csv.Error:
            return start
    return None


def _unbalanced_quote_error(path: str) -> EMM1DataError:
    line = first_bad_quote_line(path)
    where = f", line {line}" if line else ""
    return EMM1DataError(
        f"{path}{where}: the file has an odd number of double quotes, so a quoted field is never closed (or a stray "
        "quote sits in a value); a CSV reader then merges the lines after it into one value and those rows are "
        "lost. Fix the quoting of that row.",
        file=path, line=line, code="unbalanced_quote",
    )


def _is_straddling(err: Exception) -> bool:
    """pyarrow's error for a record longer than its block."""
    return _STRADDLING in str(err)


def longest_record(path: str) -> Tuple[Optional[int], int]:
    """The line (1-based, header = 1) where the longest record starts, and its length in characters.

    Python's csv module: slow, for the error message of a refused record only.
    """
    with open_binary(path) as f:
        reader = csv.reader(io.TextIOWrapper(f, encoding="utf-8-sig", errors="replace", newline=""))
        start, best_line, best = 1, None, -1
        try:
            for fields in reader:
                size = sum(len(value) for value in fields) + max(len(fields) - 1, 0)
                if fields and size > best:
                    best_line, best = start, size
                start = reader.line_num + 1
        except csv.Error:
            pass
    return best_line, max(best, 0)


def _record_too_large_error(path: str, block_size: int) -> EMM1DataError:
    line, size = longest_record(path)
    where = f", line {line}" if line else ""
    return EMM1DataError(
        f"{path}{where}: a record of {size:,} characters does not fit in the CSV reader's largest block "
        f"({block_size:,} bytes; see MAX_BLOCK_BYTES). A value this long is almost certainly a broken file "
        "(captions are a few hundred bytes): fix or remove that row.",
        file=path, line=line, code="record_too_large",
    )


# ---------------------------------------------------------------------------------------------- whole tables


@contextmanager
def _counting_quotes(path: str, read_options: pacsv.ReadOptions) -> Iterator[Tuple[object, Callable[[], int]]]:
    """What pyarrow should read `path` from, and a function giving the file's number of double quotes
    once it is read (odd: a quote is never closed). Sets a block size that cuts no quoted CRLF."""
    if is_remote(path):
        with open_binary(path) as f:
            counted = _QuoteCountingFile(f)
            yield counted, lambda: counted.quotes
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="emm1-quotes") as pool:
        # Counted beside Arrow's reader, whose quote-aware block splitting is serial and leaves a core idle.
        quotes = pool.submit(_count_byte, path, _QUOTE)
        read_options.block_size = _block_size_keeping_crlf(path, read_options.block_size)
        # A local path is read by Arrow's own file reader: no GIL, no Python bytes per block.
        yield path, quotes.result


def _read_counting_quotes(path: str, read_options: pacsv.ReadOptions,
                          convert_options: pacsv.ConvertOptions) -> Tuple[pa.Table, int]:
    """The table, and the number of double quotes in the file. The block grows (the file is read again)
    while a record is longer than it, up to `MAX_BLOCK_BYTES`."""
    block_size = read_options.block_size
    while True:
        read_options.block_size = block_size
        try:
            with _counting_quotes(path, read_options) as (source, quote_count):
                table = pacsv.read_csv(source, read_options=read_options, parse_options=_WHOLE_TABLE_PARSE,
                                       convert_options=convert_options)
                return table, quote_count()
        except pa.ArrowInvalid as err:
            if not _is_straddling(err):
                raise
            if block_size >= MAX_BLOCK_BYTES:
                raise _record_too_large_error(path, block_size) from err
            block_size = min(2 * block_size, MAX_BLOCK_BYTES)


def _whole_table_error(path: str, err: Exception, convert_options: pacsv.ConvertOptions) -> EMM1DataError:
    """The error of a failed whole-table read, with the line (computed only now: the happy path pays nothing)."""
    if _count_byte(path, _QUOTE) % 2:
        return _unbalanced_quote_error(path)  # the likely cause of whatever pyarrow saw

    def read_on_one_thread() -> None:
        with open_binary(path) as f:
            pacsv.read_csv(f, read_options=pacsv.ReadOptions(block_size=_READ_BLOCK_BYTES, use_threads=False),
                           parse_options=_WHOLE_TABLE_PARSE, convert_options=convert_options)

    record, err = _first_failing_record(read_on_one_thread, err)
    line = None
    if record is not None:
        with open_binary(path) as f:
            line = _line_of_record(f, record)
    return _parse_error(path, err, line)


def read_csv_table(
    path: str,
    column_types: Dict[str, pa.DataType],
    required: Sequence[str],
) -> pa.Table:
    """Read the columns of `column_types` present in the CSV at `path` (those in `required` must be).

    Quoted values may span lines. A file with an odd number of double quotes is refused: a quote
    left open makes pyarrow merge every following line into one value without a word. Id columns
    (`emm1_lib.io.ids`) hold decimal integers, empty cells giving null (each table's rule decides).
    """
    header = read_header(path)
    check_columns(path, header, required)
    ids = id_columns(header, column_types)
    read_options = pacsv.ReadOptions(block_size=_READ_BLOCK_BYTES)
    convert_options = _convert_options(header, _ids_as_text(column_types, ids))
    try:
        table, quotes = _read_counting_quotes(path, read_options, convert_options)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise _whole_table_error(path, err, convert_options) from err
    if quotes % 2:
        raise _unbalanced_quote_error(path)
    return _with_checked_ids(path, table, ids, column_types, lambda row: _file_line_of_row(path, row))


def iter_csv_batches(
    path: str,
    column_types: Dict[str, pa.DataType],
    required: Sequence[str],
) -> Iterator[pa.RecordBatch]:
    """`read_csv_table`, batch by batch: Arrow's streaming reader parses one block at a time.

    For a table whose consumer keeps a fraction of it (or moves it out of memory): the whole-table
    reader holds every block's parse state until the end. Same checks and errors as `read_csv_table`;
    the quote check runs after the last batch, so consume them all before trusting any.
    """
    header = read_header(path)
    check_columns(path, header, required)
    ids = id_columns(header, column_types)
    convert_options = _convert_options(header, _ids_as_text(column_types, ids))
    block_size = _STREAM_BLOCK_BYTES
    done = 0  # rows already yielded: a read with a larger block skips them
    while True:
        read_options = pacsv.ReadOptions(block_size=block_size)
        with _counting_quotes(path, read_options) as (source, quote_count):
            try:
                skip = done
                for batch in pacsv.open_csv(source, read_options=read_options, parse_options=_WHOLE_TABLE_PARSE,
                                            convert_options=convert_options):
                    if skip >= batch.num_rows:
                        skip -= batch.num_rows
                        continue
                    batch, skip = batch.slice(skip), 0
                    try:
                        batch = _with_checked_ids(path, batch, ids, column_types,
                                                  lambda row, before=done: _file_line_of_row(path, before + row))
                    except EMM1DataError as err:  # an open quote (checked at the end) would explain it: say that
                        if _count_byte(path, _QUOTE) % 2:
                            raise _unbalanced_quote_error(path) from err
                        raise
                    done += batch.num_rows
                    yield batch
            except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
                if not _is_straddling(err):
                    raise _whole_table_error(path, err, convert_options) from err
                if block_size >= MAX_BLOCK_BYTES:
                    raise _record_too_large_error(path, block_size) from err
                block_size = min(2 * block_size, MAX_BLOCK_BYTES)
                continue
            if quote_count() % 2:
                raise _unbalanced_quote_error(path)
        return


def coalesce_batches(batches: Iterable[pa.RecordBatch], min_bytes: int) -> Iterator[pa.RecordBatch]:
    """The rows of `batches`, in order, regrouped into record batches of at least `min_bytes` (the last may be smaller).

    The streaming reader's blocks are kept small for its memory; what is stored batch by batch (a column store, a
    cache entry) is gathered from a batch at a time, and each batch read costs a call and a decompression.
    """
    pending: List[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        size += batch.nbytes
        if size >= min_bytes:
            yield _one_batch(pending)
            pending, size = [], 0
    if pending:
        yield _one_batch(pending)


def _one_batch(batches: List[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


# ---------------------------------------------------------------------------------------------- byte ranges


def _odd_quote_line(blocks: Iterable[bytes]) -> Optional[int]:
    """The first line (1-based, of the text the blocks make up) holding an odd number of double quotes, or None.

    That line opens a quoted value which runs on past its line break (or holds a stray quote): every line up to
    the closing quote starts inside quotes. Vectorised per block; a block without quotes only counts its lines.
    """
    lines, parity = 0, 0
    for block in blocks:
        values = np.frombuffer(block, np.uint8)
        for start in range(0, len(values), _COUNT_BLOCK_BYTES):
            piece = values[start:start + _COUNT_BLOCK_BYTES]
            newlines = np.flatnonzero(piece == _NEWLINE)
            quotes = piece == _QUOTE
            if not quotes.any():
                lines += len(newlines)
                continue
            seen = np.cumsum(quotes, dtype=np.int32)  # quotes up to and including each byte
            odd = (seen[newlines] + parity) & 1
            if odd.any():
                return lines + int(np.argmax(odd)) + 1
            parity = (parity + int(seen[-1])) & 1
            lines += len(newlines)
    return lines + 1 if parity else None


def _file_blocks(path: str) -> Iterator[bytes]:
    with open_binary(path) as f:
        yield from iter(lambda: f.read(1 << 20), b"")


def quoted_line_break_line(path: str) -> Optional[int]:
    """The first line of the file at `path` with an odd number of double quotes (a quoted value spanning lines,
    or a stray quote), or None. A file whose data rows hold no quote (the usual grouping file, even with a
    quoted header) costs one byte count of it."""
    with open_binary(path) as f:
        header_line = f.read(1 << 20).split(b"\n", 1)[0]
    if header_line.count(b'"') % 2:
        return 1
    if _count_byte(path, _QUOTE) == header_line.count(b'"'):
        return None
    return _odd_quote_line(_file_blocks(path))


def quoted_line_break_violations(path: str) -> List[Violation]:
    """The grouping-file quote rule (`quoted_line_break`): no line holds an odd number of double quotes, i.e. no
    quoted value spans a line break. A grouping file is read as independent byte ranges (shards for streaming,
    `num_proc` and multi-node); a range cannot tell a line inside quotes from a row, so such a file would gain
    phantom rows. Grouping rows are integers, which need no line break: the file is refused."""
    line = quoted_line_break_line(path)
    if line is None:
        return []
    what = ("a double-quoted value starts here and runs past the end of the line (or a quote is stray). Grouping "
            "files hold integer rows; they are read as independent byte ranges, which cannot tell a line inside "
            "quotes from a row. Remove the line break (or the column holding it) or the stray quote.")
    return [Violation("quoted_line_break", path, f"{path}, line {line}: {what}", lines=(line,),
                      summary=f"line {line}: {what}")]


def byte_ranges(path: str, shard_bytes: int = DEFAULT_SHARD_BYTES, check_quotes: bool = True) -> List[Tuple[int, int]]:
    """Split a file into `[start, end)` byte ranges of about `shard_bytes` each (at least one).

    A range starts with the first line that starts in it, so a quoted value spanning lines would start phantom
    rows: with `check_quotes`, a local file breaking the quote rule (`quoted_line_break_violations`) is refused
    here, before any range is read, whatever reads them (processes, nodes, shuffled shard order). A remote file
    is not downloaded for this: `read_csv_range` refuses each range holding an offending line, which comes
    before any range it affects in file order.
    """
    if check_quotes and not is_remote(path):
        raise_first(quoted_line_break_violations(path))
    size = file_size(path)
    shard_bytes = max(1, int(shard_bytes))
    starts = list(range(0, size, shard_bytes)) or [0]
    return [(start, min(start + shard_bytes, size)) for start in starts]


def _read_line_aligned(f, start: int, end: int) -> Tuple[int, bytes]:
    """The offset and bytes of the whole lines that *start* inside `[start, end)`: each line belongs to
    exactly one range."""
    if start > 0:
        f.seek(start - 1)
        if f.read(1) != b"\n":
            f.readline()  # finish the line that began in the previous range
    else:
        f.seek(0)
    position = f.tell()
    if position >= end:
        return position, b""
    chunk = f.read(end - position)
    if not chunk.endswith(b"\n"):
        chunk += f.readline()  # the last line started inside the range: it is ours
    return position, chunk


def _chunk_line(path: str, position: int, chunk: bytes, record: int) -> Optional[int]:
    """The file line of record `record` (1-based) of a line-aligned chunk that starts at byte `position`."""
    in_chunk = _line_of_record(io.BytesIO(chunk), record)
    if in_chunk is None:
        return None
    return in_chunk + (_count_byte(path, _NEWLINE, limit=position) if position else 0)


def range_row_line(path: str, start: int, end: int, row: int) -> Optional[int]:
    """The file line of data row `row` (0-based) of the table `read_csv_range(path, start, end, ...)` returned."""
    with open_binary(path) as f:
        position, chunk = _read_line_aligned(f, start, end)
    header_lines = 1 if position == 0 else 0
    return _chunk_line(path, position, chunk, row + 1 + header_lines)


def _parse_rows(rows: pa.Buffer, header: Sequence[str], column_types: Dict[str, pa.DataType],
                use_threads: bool = True) -> pa.Table:
    read_options = pacsv.ReadOptions(column_names=list(header), block_size=_READ_BLOCK_BYTES, use_threads=use_threads)
    return pacsv.read_csv(pa.BufferReader(rows), read_options=read_options,
                          convert_options=_convert_options(header, column_types))


def _holds_letters(data) -> bool:
    """Whether bytes hold any byte above "9" (letters, non-ASCII): of the cells pyarrow's int64 reader accepts, those
    the id rule refuses have one ("0x10", "NA", "NaN", "#N/A", ...) or are empty (null). One compare per byte."""
    return bool(_count_byte_in(data, ord("9"), np.greater))


def _check_range_quotes(path: str, data) -> None:
    """Refuse a range holding a line with an odd number of quotes (`quoted_line_break`), naming the file's first:
    every range of the file reports the same line, whichever process reads it first."""
    if not _count_byte_in(data, _QUOTE):
        return
    if _odd_quote_line([data]) is not None:
        raise_first(quoted_line_break_violations(path))


def read_csv_range(
    path: str,
    start: int,
    end: int,
    header: Sequence[str],
    column_types: Dict[str, pa.DataType],
) -> Optional[pa.Table]:
    """Read the rows of a CSV whose lines start in `[start, end)` (the header line is skipped).

    For the all-integer grouping files: a line with an odd number of double quotes is refused
    (`quoted_line_break_violations`), as are id cells that are not decimal integers or are empty
    (`emm1_lib.io.ids`: hex and null spellings are found by a count of the range's letters, empty cells by the
    columns' null counts, then located). Returns None when the range holds no row.
    """
    with open_binary(path) as f:
        position, chunk = _read_line_aligned(f, start, end)
    first = 0
    if start == 0:  # skip the header line (a view, not a copy of the range)
        first = chunk.find(b"\n") + 1 if b"\n" in chunk else len(chunk)
    if not chunk[first:first + 4096].strip() and not chunk[first:].strip():
        return None
    data = memoryview(chunk)[first:]
    _check_range_quotes(path, data)
    rows = pa.py_buffer(chunk)[first:]
    header_lines = 1 if start == 0 else 0
    ids = id_columns(header, column_types)

    def check_ids_as_text() -> None:
        """Read the id columns again as text and raise the id rule's first error, if any."""
        table = _parse_rows(rows, header, _ids_as_text(column_types, ids))
        _with_checked_ids(path, table, ids, column_types,
                          lambda row: _chunk_line(path, position, chunk, row + 1 + header_lines), missing_is_error=True)

    try:
        table = _parse_rows(rows, header, column_types)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        try:
            check_ids_as_text()  # an id that is no integer: the id rule's words
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        record, err = _first_failing_record(lambda: _parse_rows(rows, header, column_types, use_threads=False), err)
        line = None if record is None else _chunk_line(path, position, chunk, record + header_lines)
        raise _parse_error(path, err, line, start_byte=start) from err
    if ids and (_holds_letters(data) or any(table.column(name).null_count for name in ids)):
        check_ids_as_text()
    return table
