"""The id grammar of E-MM1's files, on whole Arrow columns: what an `encord_*_id` / `eshot_*_id` cell may hold.

An id is an optionally negative ASCII decimal integer within int64: `7`, `007`, `-3` (spaces or tabs around
it are trimmed, as pyarrow trims them). Everything else a cell can hold is refused (`not_integer`), where
pyarrow's int64 reader would accept some of it: hex (`0x10` would be 16), a null spelling (`NA`, `NaN`,
`N/A`, `null` would be null), a float or exponent (`1.5`, `1e3`), `+7`, digits of other scripts (`٣`, `²`),
a value beyond int64. An empty cell is a missing id: a null value, which each file's rule refuses
(`missing_id` for grouping and triplet rows, `invalid_id` for infos rows).

The readers (`emm1_lib.io.tables`) check this at byte speed: an id column is read as text, its character
data must hold only ASCII digits and `-` (one `bytes.translate`), and Arrow's cast to int64 must succeed
(it refuses the empty cell, a lone or inner `-` and overflow). Only a column failing that is checked cell by
cell (`id_cells`, vectorised) to name the offending rows. `emm1_lib.schema.rules` re-exports this rule;
`emm1 validate` applies it to every cell.
"""
import re
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emm1_lib.errors import Violation

Column = Union[pa.Array, pa.ChunkedArray]
# The columns holding ids: encord_text_id, encord_image_id, encord_paired_id, eshot_audio_id, eshot_point_id, ...
ID_COLUMN = re.compile(r"(?:encord|eshot)_[a-z0-9_]+_id")
ID_HINT = ("Ids are ASCII decimal integers with an optional leading '-' (no hex such as 0x10, no float or exponent, "
           "no '+', no NA/NaN/null, no digits of other scripts).")
# How many offending values a violation lists (counts are exact).
MAX_VALUES = 50
_INT64_MAX = 2**63 - 1
_ID_BYTES = b"0123456789-"
_SCAN_BYTES = 16 << 20  # character data checked in pieces: bounded temporary memory


def is_id_column(name: str) -> bool:
    """Whether a column named `name` holds ids (`encord_*_id`, `eshot_*_id`)."""
    return ID_COLUMN.fullmatch(name) is not None


def _text(cells: Column) -> pa.Array:
    if isinstance(cells, pa.ChunkedArray):
        cells = cells.combine_chunks()
    if not pa.types.is_string(cells.type):
        cells = cells.cast(pa.string())
    return cells


def id_cells(cells: Column) -> Tuple[pa.Array, np.ndarray]:
    """The rule, cell by cell (vectorised): int64 values of text cells (null for empty and invalid cells) and a
    boolean mask of the invalid ones. An empty cell (`""`, or null) is not invalid: it is a missing id (null).

    Grammar: after trimming spaces and tabs, an optional `-` and ASCII digits (leading zeros allowed), within int64.
    """
    cells = _text(cells)
    trimmed = pc.utf8_trim(cells, " \t")
    decimal = pc.match_substring_regex(trimmed, r"^-?[0-9]+$")
    digits = pc.replace_substring_regex(trimmed, r"^-?0*", "")
    width = pc.utf8_length(digits)
    limit = pc.if_else(pc.starts_with(trimmed, "-"), pa.scalar(str(_INT64_MAX + 1)), pa.scalar(str(_INT64_MAX)))
    fits = pc.or_(pc.less(width, 19), pc.and_(pc.equal(width, 19), pc.less_equal(digits, limit)))
    valid = pc.fill_null(pc.and_(decimal, fits), False)
    empty = pc.fill_null(pc.equal(pc.binary_length(cells), 0), True)
    values = pc.cast(pc.if_else(valid, trimmed, pa.scalar(None, pa.string())), pa.int64())
    invalid = pc.and_(pc.invert(valid), pc.invert(empty))
    return values, invalid.to_numpy(zero_copy_only=False)


def _only_id_bytes(cells: pa.Array) -> bool:
    """Whether the character data of a string array holds nothing but ASCII digits and '-'."""
    _, offsets_buffer, data_buffer = cells.buffers()
    if data_buffer is None or len(cells) == 0:
        return True
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32, count=len(cells) + 1, offset=4 * cells.offset)
    data = memoryview(data_buffer)[int(offsets[0]):int(offsets[-1])]
    for start in range(0, len(data), _SCAN_BYTES):
        if data[start:start + _SCAN_BYTES].tobytes().translate(None, _ID_BYTES):
            return False
    return True


def _fast_ids(cells: pa.Array) -> Optional[pa.Array]:
    """The int64 values when every cell is a plain id (digits, optional leading '-'); None when any cell needs a look."""
    if not pa.types.is_string(cells.type) or cells.null_count or not _only_id_bytes(cells):
        return None
    try:
        return pc.cast(cells, pa.int64())  # refuses "", "-", "1-2" and values beyond int64
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def parse_ids(cells: Column) -> Tuple[Column, Optional[np.ndarray]]:
    """int64 values of id cells (empty cells null) and the mask of invalid cells (None when there is none).

    Chunk by chunk: a chunk of plain ids costs a byte scan and a cast; others go through `id_cells`.
    """
    chunks = cells.chunks if isinstance(cells, pa.ChunkedArray) else [cells]
    values: List[pa.Array] = []
    masks: List[np.ndarray] = []
    any_invalid = False
    for chunk in chunks:
        fast = _fast_ids(chunk)
        if fast is not None:
            values.append(fast)
            masks.append(np.zeros(len(chunk), dtype=bool))
            continue
        chunk_values, invalid = id_cells(chunk)
        values.append(chunk_values)
        masks.append(invalid)
        any_invalid = any_invalid or bool(invalid.any())
    mask = np.concatenate(masks) if any_invalid else None
    if isinstance(cells, pa.ChunkedArray):
        return pa.chunked_array(values, pa.int64()), mask
    return (values[0] if values else pa.array([], pa.int64())), mask


def id_violations(path: str, column: str, cells: Column, values: Column, invalid: Optional[np.ndarray],
                  lines_of: Callable[[np.ndarray], Sequence[int]], missing_is_error: bool,
                  ignore: Optional[np.ndarray] = None) -> List[Violation]:
    """The violations of one id column, given `parse_ids`' result: cells that are not ids (`not_integer`), and with
    `missing_is_error` empty cells (`missing_id`). `lines_of(rows)` gives the file lines of rows (it may locate
    only the first); rows where `ignore` is True (already refused for another reason) are left out."""
    found: List[Violation] = []
    if invalid is not None and ignore is not None:
        invalid = invalid & ~ignore
    if invalid is not None and invalid.any():
        bad = np.flatnonzero(invalid)
        text = _text(cells).take(pa.array(bad[:MAX_VALUES], pa.int64())).to_pylist()
        lines = tuple(lines_of(bad))
        where = f", line {lines[0]}" if lines else f", data row {int(bad[0]) + 1}"
        found.append(Violation(
            "not_integer", path,
            f"{path}{where}: {column} {text[0]!r} is not an id. {ID_HINT} Fix the row.",
            lines=lines, values=tuple(text), count=len(bad),
            summary=f"{{count}} {column} value(s) are not ids. {ID_HINT} These lines are left out of the other checks.",
        ))
    if missing_is_error and values.null_count:
        empty = pc.is_null(values)
        if isinstance(empty, pa.ChunkedArray):
            empty = empty.combine_chunks()
        empty = empty.to_numpy(zero_copy_only=False)
        if invalid is not None:
            empty &= ~invalid
        if ignore is not None:
            empty &= ~ignore
        rows = np.flatnonzero(empty)
        if len(rows):
            lines = tuple(lines_of(rows))
            where = f", line {lines[0]}" if lines else f", data row {int(rows[0]) + 1}"
            found.append(Violation(
                "missing_id", path,
                f"{path}{where}: {column} is empty. Every row needs its ids: fill it in or remove the row.",
                lines=lines, count=len(rows),
                summary=f"{{count}} row(s) have an empty {column}; every row needs its ids (the builders refuse the file).",
            ))
    return found


def check_ids(path: str, column: str, cells: Column, lines_of: Callable[[np.ndarray], Sequence[int]],
              missing_is_error: bool = False) -> Tuple[Column, List[Violation]]:
    """`parse_ids` and `id_violations` in one call: the int64 values of an id column and its violations."""
    values, invalid = parse_ids(cells)
    if invalid is None and not (missing_is_error and values.null_count):
        return values, []
    return values, id_violations(path, column, cells, values, invalid, lines_of, missing_is_error)
