"""The data rules of E-MM1, written once: each checks whole Arrow columns and returns `Violation`s.

The builders raise the first error (`raise_first`: an `EMM1DataError` naming the file, the line or row,
the id and what to do); `emm1 validate` calls the same functions and reports every violation. A rule
never raises for bad data. Rules on the builders' hot path find *that* something is wrong in the
pass the builder already makes (e.g. `pc.min_max`), and only then compute rows, lines and messages.

Rules that the CSV readers enforce while reading live with them and are re-exported here: the header rules
(required / repeated columns, `emm1_lib.io.tables.column_violations`), the grouping files' quote rule
(`quoted_line_break_violations`) and the id rule (`emm1_lib.io.ids`: `id_cells`, `parse_ids`, `id_violations`).
"""
import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from emm1_lib.errors import Violation
from emm1_lib.io.ids import ID_HINT
from emm1_lib.io.ids import id_cells
from emm1_lib.io.ids import id_violations
from emm1_lib.io.ids import is_id_column
from emm1_lib.io.ids import parse_ids
from emm1_lib.io.tables import column_violations
from emm1_lib.io.tables import has_data_rows
from emm1_lib.io.tables import quoted_line_break_violations
from emm1_lib.schema.layout import MODALITIES
from emm1_lib.schema.layout import NUM_NEIGHBOURS
from emm1_lib.schema.layout import TRIPLET_COLUMNS
from emm1_lib.schema.paths import unsafe_mask
from emm1_lib.schema.roles import ColumnMap

# A column as a table holds it (chunked) or as one array.
Column = Union[pa.Array, pa.ChunkedArray]
# How many offending values a violation lists (counts are always exact; duplicated and dangling ids: all).
MAX_VALUES = 50
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Rows:
    """Where the rows of a checked table sit in their file, for the lines of violations.

    Attributes:
        lines: the file line (1-based, header = 1) of each row. None: row i is on line i + `start` (a file
            read from its start, one line per record).
        locate: for a table read from a byte range: finds the line of one row on demand (slow, so only the
            first offending row gets a line).
        span: added after the line in messages, e.g. " (in bytes 0-16777216)".
        start: the number of row 0 when `lines` and `locate` are None (2: the line after a CSV header).
        unit: what the numbers count: "line" (CSV files) or "row" (Parquet files: 1-based rows of the file).
    """

    lines: Optional[np.ndarray] = None
    locate: Optional[Callable[[int], Optional[int]]] = None
    span: str = ""
    start: int = 2
    unit: str = "line"

    @classmethod
    def parquet(cls, first_row: int, span: str = "") -> "Rows":
        """Rows of a Parquet batch whose row 0 is row `first_row` (0-based) of its file: numbered from 1."""
        return cls(span=span, start=first_row + 1, unit="row")

    def line(self, row: int) -> Optional[int]:
        """The file line (or Parquet row number) of row `row`."""
        if self.lines is not None:
            return int(self.lines[row])
        if self.locate is not None:
            return self.locate(int(row))
        return int(row) + self.start

    def lines_of(self, rows: np.ndarray) -> Tuple[int, ...]:
        """The file lines of `rows` (only the first one's when lines are located on demand)."""
        if self.lines is not None:
            return tuple(int(x) for x in self.lines[rows])
        if self.locate is not None:
            line = self.locate(int(rows[0])) if len(rows) else None
            return (line,) if line is not None else ()
        return tuple(int(x) + self.start for x in rows)


def _numpy(mask) -> np.ndarray:
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def _flat(values):
    if isinstance(values, pa.ChunkedArray):  # one chunk: a view, not a copy
        return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    return values


def plain_value(value: Any) -> Any:
    """A numpy scalar as its Python value, bytes as text: what a report or a message can show."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value


def _values(column, rows: np.ndarray) -> Tuple[Any, ...]:
    return tuple(plain_value(v) for v in _flat(column).take(pa.array(rows[:MAX_VALUES], pa.int64())).to_pylist())


def _row_at(path: str, rows: Rows, row: int, what: Optional[str] = None) -> str:
    """`path: data row R (line L, what)`: where a row-level message starts (`path: row R (what)` in Parquet)."""
    if rows.unit == "row":
        return f"{path}: row {rows.line(row)}" + (f" ({what})" if what else "") + rows.span
    inside = f"line {rows.line(row)}" + (f", {what}" if what else "")
    return f"{path}: data row {row + 1} ({inside}){rows.span}"


# ---------------------------------------------------------------------------------------------- files


def data_rows(path: str) -> List[Violation]:
    """A grouping or triplets file must hold data rows: a header alone is a truncated download (`no_data_rows`)."""
    if has_data_rows(path):
        return []
    return [Violation(
        "no_data_rows", path,
        f"{path}: the file has no data rows (at most a header), so there is nothing to prepare. "
        "Is it truncated? Download it again.",
        summary="the file has no data rows (at most a header): every config reading it fails. Is it truncated? "
                "Download it again.",
    )]


def triplets_schema(path: str, header: Sequence[str]) -> Tuple[Optional[str], List[Violation]]:
    """The generation of a `triplets.csv` header ("released" or "seed"), or None and a `missing_column` violation."""
    if "paired_modality" in header:
        return "released", []
    if "modality_1" in header:
        return "seed", []
    message = (f"neither the released triplets schema ({', '.join(TRIPLET_COLUMNS['released'])}) nor the seed's "
               f"({', '.join(TRIPLET_COLUMNS['seed'])}, encord_{{modality}}_id); the header has {list(header)}.")
    return None, [Violation("missing_column", path, f"{path}: {message}", lines=(1,), summary=message)]


# ---------------------------------------------------------------------------------------------- ids


# The CSV reader's null spellings: an int64 cell holding one of them is read as null.
_NULL_VALUES = pa.array(pacsv.ConvertOptions().null_values, pa.string())


def int64_cells(cells: Column) -> Tuple[pa.Array, np.ndarray]:
    """Read text cells as the CSV reader reads an int64 column that holds no ids (`nn_index`, annotation codes):
    the values (null for null cells and invalid ones) and a boolean mask of the invalid ones. Id columns follow
    the stricter id rule (`id_cells`).

    The reader's grammar: a null spelling (`""`, `NA`, `null`, ... exactly) is null; otherwise, after
    trimming spaces and tabs, an optional `-` and decimal digits within int64 (leading zeros allowed), or `0x`
    and 1-16 hex digits (two's complement: `0xFFFFFFFFFFFFFFFF` is -1). `+7`, `1e3`, `1.0`, `²` are refused.
    """
    cells = _flat(cells)
    if not pa.types.is_string(cells.type) and not pa.types.is_large_string(cells.type):
        cells = cells.cast(pa.string())
    is_null = pc.fill_null(pc.is_in(cells, value_set=_NULL_VALUES), True)
    trimmed = pc.utf8_trim(cells, " \t")
    decimal = pc.match_substring_regex(trimmed, r"^-?[0-9]+$")
    digits = pc.replace_substring_regex(trimmed, r"^-?0*", "")
    width = pc.utf8_length(digits)
    limit = pc.if_else(pc.starts_with(trimmed, "-"), pa.scalar(str(_INT64_MAX + 1)), pa.scalar(str(_INT64_MAX)))
    decimal_fits = pc.or_(pc.less(width, 19), pc.and_(pc.equal(width, 19), pc.less_equal(digits, limit)))
    hexadecimal = pc.match_substring_regex(trimmed, r"^0[xX][0-9a-fA-F]+$")
    hex_fits = pc.less_equal(pc.utf8_length(trimmed), 18)  # "0x" and at most 16 digits, leading zeros included
    valid = pc.or_(pc.and_(decimal, decimal_fits), pc.and_(hexadecimal, hex_fits))
    valid = pc.fill_null(pc.and_(pc.invert(is_null), valid), False)
    values = pc.cast(pc.if_else(valid, trimmed, pa.scalar(None, pa.string())), pa.int64())
    return values, pc.and_(pc.invert(is_null), pc.invert(valid)).to_numpy(zero_copy_only=False)


def infos_ids(ids: Column, path: str, id_column: str, rows: Rows = Rows()) -> List[Violation]:
    """Every infos row needs a non-negative integer id (`invalid_id`), each id on one row only (`duplicate_id`)."""
    ids = _flat(ids)
    if ids.type != pa.int64():
        ids = ids.cast(pa.int64())
    values = pc.fill_null(ids, -1).to_numpy(zero_copy_only=False)
    found: List[Violation] = []
    invalid = np.flatnonzero(values < 0)
    if len(invalid):
        first = int(invalid[0])
        found.append(Violation(
            "invalid_id", path,
            f"{_row_at(path, rows, first)} has a missing or negative {id_column}. "
            "Every infos row needs a non-negative integer id.",
            lines=rows.lines_of(invalid), values=_values(ids, invalid), count=len(invalid),
            summary=f"{{count}} row(s) have a missing or negative {id_column}; every infos row needs a "
                    "non-negative integer id.",
        ))
    valid = values[values >= 0]
    unique, counts = np.unique(valid, return_counts=True)
    duplicated = unique[counts > 1]
    if len(duplicated):
        dup_rows = np.flatnonzero(np.isin(values, duplicated))
        listed = f"{duplicated[:10].tolist()}{' ...' if len(duplicated) > 10 else ''}"
        found.append(Violation(
            "duplicate_id", path,
            f"{path}: {len(duplicated)} {id_column} value(s) appear on more than one row (e.g. {duplicated[:5].tolist()}; "
            f"lines {', '.join(map(str, rows.lines_of(dup_rows[:4])))}), so a join on them is ambiguous. "
            "Remove the duplicate rows.",
            lines=rows.lines_of(dup_rows), values=tuple(duplicated.tolist()), count=len(dup_rows),
            summary=f"{len(duplicated)} {id_column} value(s) appear on more than one row ({listed}), so a join on "
                    "them is ambiguous. Remove the duplicate rows.",
        ))
    return found


# ---------------------------------------------------------------------------------------------- paths


_UNSAFE_HINT = ("Media paths must stay under the data root: no '..' component, no absolute path or drive, no '~', "
                "no control characters, not empty.")


def unsafe_path_parts(table: pa.Table, columns: Sequence[str], path: str, id_column: str,
                      rows: Rows = Rows()) -> List[Violation]:
    """Path parts (`save_folder`, `file_name`) that could escape the data root, or are empty (`unsafe_path`),
    one violation per column. The mask is `emm1_lib.schema.paths.unsafe_mask`."""
    found: List[Violation] = []
    for column in columns:
        if column not in table.column_names:
            continue
        values = _flat(table[column])
        if not pa.types.is_string(values.type) and not pa.types.is_dictionary(values.type):
            values = values.cast(pa.string())
        mask = unsafe_mask(values)
        if not pc.any(mask).as_py():
            continue
        bad = np.flatnonzero(_numpy(mask))
        ids = _flat(table[id_column]) if id_column in table.column_names else None
        first = int(bad[0])
        first_id = ids[first].as_py() if ids is not None else None
        examples = tuple(
            f"{id_column}={ids[int(r)].as_py() if ids is not None else '?'}: {values[int(r)].as_py()!r}"
            for r in bad[:MAX_VALUES]
        )
        found.append(Violation(
            "unsafe_path", path,
            f"{_row_at(path, rows, first, f'{id_column}={first_id}')}: unsafe {column} {values[first].as_py()!r}. "
            f"{_UNSAFE_HINT} Fix the row in the {'CSV' if rows.unit == 'line' else 'file'}.",
            lines=rows.lines_of(bad), values=examples, count=len(bad),
            summary=f"{{count}} unsafe {column} value(s). {_UNSAFE_HINT}",
        ))
    return found


def stored_media_paths(values: Column, where: str, row_numbers: Optional[Sequence[int]] = None) -> List[Violation]:
    """Media paths stored relative to the media root (an export's `*_file_path` after a Hub round trip) that
    could escape it (`unsafe_path`): the rule of the parts they were built from, applied to the whole path.
    `row_numbers` gives the dataset row of each value (default: its position)."""
    values = _flat(values)
    values = values.cast(pa.string()) if not pa.types.is_string(values.type) else values
    mask = unsafe_mask(values)
    if not pc.any(mask).as_py():
        return []
    bad = np.flatnonzero(_numpy(mask))
    rows = [row_numbers[int(r)] if row_numbers is not None else int(r) for r in bad]
    return [Violation(
        "unsafe_path", where,
        f"{where}: row {rows[0]}: unsafe stored path {values[int(bad[0])].as_py()!r}. A media path stored relative "
        f"to the media root must stay under it. {_UNSAFE_HINT} Fix or drop the row.",
        values=tuple(values[int(r)].as_py() for r in bad[:MAX_VALUES]), count=len(bad),
    )]


# ---------------------------------------------------------------------------------------------- phase 1


def nn_index(values: Column, text_ids: Column, path: str, rows: Rows, folder_k: Optional[int] = None) -> List[Violation]:
    """`nn_index` is a neighbour rank 1-16 (`bad_value`, an error: the column is int8 1-16). With `folder_k`,
    a rank other than the k of the folder `nn_k` is a warning (`nn_index_mismatch`: the builder keeps it).

    One `min_max` pass when every value is fine; rows and lines are computed only when one is not.
    """
    extremes = pc.min_max(values)
    low, high = extremes["min"].as_py(), extremes["max"].as_py()
    if values.null_count == 0 and low is not None and 1 <= low and high <= NUM_NEIGHBOURS:
        if folder_k is None or low == high == folder_k:
            return []
    found: List[Violation] = []
    in_range = pc.fill_null(pc.and_(pc.greater_equal(values, 1), pc.less_equal(values, NUM_NEIGHBOURS)), False)
    bad = np.flatnonzero(~_numpy(in_range))
    if len(bad):
        first = int(bad[0])
        found.append(Violation(
            "bad_value", path,
            f"{path}, {rows.unit} {rows.line(first)}{rows.span}: nn_index {_flat(values)[first].as_py()} "
            f"(encord_text_id={_flat(text_ids)[first].as_py()}) is not a neighbour rank 1-{NUM_NEIGHBOURS}.",
            lines=rows.lines_of(bad), values=_values(values, bad), count=len(bad),
            summary=f"{{count}} row(s) have an nn_index that is not a neighbour rank 1-{NUM_NEIGHBOURS} (or none); "
                    "the builder refuses the file (its nn_index column is int8 1-16).",
        ))
    if folder_k is not None:
        other = np.flatnonzero(_numpy(pc.and_(in_range, pc.not_equal(values, folder_k))))
        if len(other):
            first = int(other[0])
            found.append(Violation(
                "nn_index_mismatch", path,
                f"{path}, {rows.unit} {rows.line(first)}{rows.span}: nn_index {_flat(values)[first].as_py()} in the "
                f"{'folder' if rows.unit == 'line' else 'file of'} nn_{folder_k}; the builder keeps the file's value.",
                severity="warning", lines=rows.lines_of(other), values=_values(values, other), count=len(other),
                summary=f"{{count}} row(s) have an nn_index other than {folder_k}, the neighbour rank of the folder "
                        f"nn_{folder_k}; the builder does not check this and keeps the file's value.",
            ))
    return found


# ---------------------------------------------------------------------------------------------- phase 2


def triplet_roles(schema: str) -> Tuple[str, str]:
    """The columns holding the paired and the annotated modality in a `triplets.csv` of `schema`."""
    return ("paired_modality", "annotated_modality") if schema == "released" else ("modality_1", "modality_2")


def triplet_ids(table: pa.Table, schema: str, path: str, rows: Rows = Rows()) -> List[Violation]:
    """Every triplet names its caption and its two items (`missing_id`, one violation per column): an empty
    `encord_text_id`, `encord_paired_id` or `encord_annotated_id` (released), or an empty `encord_text_id` or
    `encord_{m}_id` of the row's `modality_1` / `modality_2` (seed, whose other per-modality columns are blank
    by design). The reader has already refused cells that are not ids."""
    if schema == "released":
        masks = [(c, pc.is_null(table[c])) for c in ("encord_text_id", "encord_paired_id", "encord_annotated_id")]
    else:
        masks = [("encord_text_id", pc.is_null(table["encord_text_id"]))]
        for m in MODALITIES:
            column = f"encord_{m}_id"
            uses = pc.or_(pc.equal(table["modality_1"], m), pc.equal(table["modality_2"], m))
            if column in table.column_names:
                masks.append((column, pc.and_(uses, pc.is_null(table[column]))))
            else:
                masks.append((column, uses))
    text_ids = _flat(table["encord_text_id"])
    found: List[Violation] = []
    for column, mask in masks:
        bad = np.flatnonzero(_numpy(mask))
        if not len(bad):
            continue
        first = int(bad[0])
        found.append(Violation(
            "missing_id", path,
            f"{_row_at(path, rows, first, f'encord_text_id={text_ids[first].as_py()}')}: {column} is empty. Every "
            "triplet names its caption and its two items: fill the id in or remove the row.",
            lines=rows.lines_of(bad), count=len(bad),
            summary=f"{{count}} row(s) have an empty {column}; every triplet needs it (the builders refuse the file).",
        ))
    return found


def triplet_rows(table: pa.Table, schema: str, path: str, codes: Sequence[int], rows: Rows = Rows()) -> List[Violation]:
    """Row rules of `triplets.csv` (as read, either generation), in the order the builder checks them:
    ids present (`triplet_ids`), known modalities, two different modalities, known annotation codes (`bad_value`
    errors); for the seed, `annotated_modality` != `modality_2` is a warning (the annotated item is taken from
    `modality_2`)."""
    paired_column, annotated_column = triplet_roles(schema)
    paired, annotated = table[paired_column], table[annotated_column]
    text_ids = _flat(table["encord_text_id"])
    checks = []
    for column in (paired_column, annotated_column):
        checks.append((pc.invert(pc.is_in(table[column], value_set=pa.array(MODALITIES))), table[column],
                       lambda v, c=column: f"unknown {c} {v!r}", f"Expected one of {list(MODALITIES)}.",
                       f"unknown {column} (expected one of {list(MODALITIES)})"))
    checks.append((pc.equal(paired, annotated), paired,
                   lambda v: f"paired and annotated modality are both {v!r}", "A triplet links two different modalities.",
                   "paired and annotated modality are the same"))
    checks.append((pc.invert(pc.is_in(table["annotation"], value_set=pa.array(list(codes), pa.int64()))),
                   table["annotation"], lambda v: f"unknown annotation code {v!r}",
                   f"Known codes (annotation_mapping.csv): {list(codes)}.", f"unknown annotation code (known: {list(codes)})"))
    found: List[Violation] = triplet_ids(table, schema, path, rows)
    for mask, column, what, hint, summary in checks:
        bad = np.flatnonzero(_numpy(mask))
        if not len(bad):
            continue
        first = int(bad[0])
        found.append(Violation(
            "bad_value", path,
            f"{_row_at(path, rows, first, f'encord_text_id={text_ids[first].as_py()}')}: "
            f"{what(_flat(column)[first].as_py())}. {hint}",
            lines=rows.lines_of(bad), values=_values(column, bad), count=len(bad),
            summary=f"{{count}} row(s): {summary}.",
        ))
    if schema == "seed":
        disagree = np.flatnonzero(_numpy(pc.not_equal(table["annotated_modality"], annotated)))
        if len(disagree):
            found.append(Violation(
                "bad_value", path,
                f"{path}: {len(disagree)} row(s) have annotated_modality != modality_2; the annotated item is taken "
                "from modality_2 (the candidate shown to annotators), as in the seed's example.",
                severity="warning", lines=rows.lines_of(disagree), values=_values(table["annotated_modality"], disagree),
                count=len(disagree),
                summary="{count} row(s) have annotated_modality != modality_2; the builder takes the annotated item "
                        "from modality_2.",
            ))
    return found


def annotation_mapping_header(path: str, header: Sequence[str]) -> List[Violation]:
    """`annotation_mapping.csv` has two columns: the integer code, then the label (`bad_mapping`)."""
    if len(header) >= 2:
        return []
    return [Violation("bad_mapping", path, f"{path}: expected two columns (code, label); the header has {list(header)}.",
                      lines=(1,))]


def annotation_mapping(table: pa.Table, path: str, rows: Rows = Rows()) -> List[Violation]:
    """Codes (first column) are unique integers and label names (second column) unique and present
    (`bad_mapping`): a label is a `ClassLabel` name, and two codes with one name cannot be told apart."""
    code_column, label_column = table.column_names[:2]
    found: List[Violation] = []
    for column, what in ((code_column, "annotation codes must be unique integers"),
                         (label_column, "label names must be unique and not empty")):
        values = _flat(table[column])
        if column == label_column:
            values = pc.if_else(pc.equal(pc.utf8_length(values), 0), pa.scalar(None, values.type), values)
        counts = pc.value_counts(values)
        repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
        bad = np.flatnonzero(_numpy(pc.or_(pc.is_null(values), pc.is_in(values, value_set=repeated))))
        if not len(bad):
            continue
        listed = _flat(table[column]).to_pylist()
        found.append(Violation(
            "bad_mapping", path,
            f"{path}: {what}; got {listed} (line {rows.line(int(bad[0]))}). Fix the file: each code needs its own label.",
            lines=rows.lines_of(bad), values=_values(table[column], bad), count=len(bad),
            summary=f"{what}; got {listed[:MAX_VALUES]}.",
        ))
    return found


# ---------------------------------------------------------------------------------------------- EShot


def json_problem(path: str, err: Exception) -> Violation:
    """A category JSON that cannot be read as JSON (`bad_json`), with the line when the parser knows it."""
    if isinstance(err, json.JSONDecodeError):
        what = f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        lines: Tuple[int, ...] = (err.lineno,)
    elif isinstance(err, UnicodeDecodeError):
        what, lines = f"not valid JSON (not UTF-8: {err})", ()
    else:
        what, lines = f"not valid JSON ({err})", ()
    return Violation("bad_json", path, f"{path}: {what}; expected {{category: [ids]}}.", lines=lines,
                     summary=f"{what}; expected {{category: [ids]}}.")


def _json_ids(values: List[Any]) -> Tuple[np.ndarray, np.ndarray]:
    """(ids, valid) of JSON values: an id is a non-negative int64, as a JSON integer or as text in the id
    grammar of the CSV files (`id_cells`: no hex, no empty string)."""
    ids = np.full(len(values), -1, dtype=np.int64)
    valid = np.zeros(len(values), dtype=bool)
    text = [i for i, v in enumerate(values) if isinstance(v, str)]
    numbers = [i for i, v in enumerate(values)
               if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _INT64_MAX]
    if numbers:
        ids[numbers] = [values[i] for i in numbers]
        valid[numbers] = True
    if text:
        parsed, invalid = id_cells(pa.array([values[i] for i in text], pa.string()))
        parsed = pc.fill_null(parsed, -1).to_numpy(zero_copy_only=False)
        ok = ~invalid & (parsed >= 0)
        ids[np.asarray(text)[ok]] = parsed[ok]
        valid[np.asarray(text)[ok]] = True
    return ids, valid


def category_lists(data: Any, path: str, id_column: str) -> Tuple[Optional[Dict[str, np.ndarray]], List[Violation]]:
    """`{category: int64 ids}` of a parsed category JSON and its violations, in document order: not an object,
    a category that is not a list, a value that is not an id (`bad_json`), an id listed twice (`duplicate_id`).

    Ids that break a rule are left out of the mapping (None when the file is not an object at all).
    """
    if not isinstance(data, dict):
        message = f"expected a JSON object {{category: [ids]}}, got {type(data).__name__}."
        return None, [Violation("bad_json", path, f"{path}: {message}", summary=message)]
    order: List[Tuple[int, Violation]] = []  # (position of the first occurrence, violation)
    not_lists = [(i, c, v) for i, (c, v) in enumerate(data.items()) if not isinstance(v, list)]
    categories = [(c, v) for c, v in data.items() if isinstance(v, list)]
    flat = [value for _, ids in categories for value in ids]
    owner = np.repeat(np.arange(len(categories)), [len(ids) for _, ids in categories]).astype(np.int64)
    starts = {c: i for i, (c, _) in enumerate(data.items())}
    ids, valid = _json_ids(flat)
    if not_lists:
        _, category, value = not_lists[0]
        order.append((starts[category], Violation(
            "bad_json", path,
            f"{path}: category {category!r} maps to {type(value).__name__}, expected a list of ids.",
            values=tuple(f"{c!r}: {json.dumps(v)[:80]}" for _, c, v in not_lists[:MAX_VALUES]), count=len(not_lists),
            summary="{count} categories do not map to a list of ids.",
        )))
    bad = np.flatnonzero(~valid)
    if len(bad):
        first = int(bad[0])
        category = categories[owner[first]][0]
        order.append((starts[category], Violation(
            "bad_json", path,
            f"{path}: category {category!r} lists {flat[first]!r}, which is not a non-negative integer {id_column}. "
            "Fix the JSON: ids are integers (or digit strings).",
            values=tuple(f"{categories[owner[int(i)]][0]!r}: {json.dumps(flat[int(i)])[:80]}" for i in bad[:MAX_VALUES]),
            count=len(bad),
            summary="{count} value(s) are not non-negative integer ids (category: value).",
        )))
    good = np.flatnonzero(valid)
    _, first_seen = np.unique(ids[good], return_index=True)
    repeated = np.setdiff1d(np.arange(len(good)), first_seen)  # positions in `good` of second listings
    if len(repeated):
        first_of = {int(ids[good[int(i)]]): int(good[int(i)]) for i in first_seen}
        described = []
        for r in repeated[:MAX_VALUES]:
            position = int(good[int(r)])
            earlier = categories[owner[first_of[int(ids[position])]]][0]
            described.append(f"{int(ids[position])} ({earlier!r} and {categories[owner[position]][0]!r})")
        position = int(good[int(repeated[0])])
        number, category = int(ids[position]), categories[owner[position]][0]
        earlier = categories[owner[first_of[number]]][0]
        where = "twice in the same category" if earlier == category else f"under two categories, {earlier!r} and {category!r}"
        order.append((starts[category], Violation(
            "duplicate_id", path,
            f"{path}: {id_column} {number} is listed {where}; every sample needs one category.",
            values=tuple(described), count=len(repeated),
            summary="{count} id(s) are listed more than once (every sample needs exactly one category; the EShot "
                    "builder refuses this).",
        )))
    keep = np.zeros(len(flat), dtype=bool)
    keep[good[first_seen]] = True
    mapping = {str(c): ids[(owner == i) & keep] for i, (c, _) in enumerate(categories)}
    return mapping, [v for _, v in sorted(order, key=lambda item: item[0])]


def category_rows(info_ids: Column, by_category: Dict[str, np.ndarray], info_file: str, json_file: str, id_column: str,
                  rows: Rows = Rows()) -> List[Violation]:
    """Every id of a category JSON has an info row (`dangling_id`, an error: a labelled sample without its
    file); info rows listed under no category are left out (`uncategorised`, a warning)."""
    listed = np.concatenate([v for v in by_category.values()] or [np.zeros(0, np.int64)])
    names = np.repeat(np.array(list(by_category), dtype=object), [len(v) for v in by_category.values()])
    info_ids = _flat(info_ids)
    found: List[Violation] = []
    absent = np.flatnonzero(~np.isin(listed, pc.drop_null(info_ids).to_numpy(zero_copy_only=False)))
    if len(absent):
        examples = ", ".join(f"{int(listed[i])} (category {names[i]!r})" for i in absent[:5])
        found.append(Violation(
            "dangling_id", json_file,
            f"{json_file}: {len(absent)} {id_column} value(s) have no row in {info_file}: {examples}"
            f"{' ...' if len(absent) > 5 else ''}. Add the rows to the CSV or remove the ids from the JSON.",
            values=tuple(sorted(set(listed[absent].tolist()))), count=len(absent),  # all: the report lists them
            summary=f"{{count}} {id_column} value(s) have no row in {info_file}; the EShot builder refuses this "
                    "(a labelled sample without its file).",
        ))
    unlisted = np.flatnonzero(_numpy(pc.invert(pc.is_in(info_ids, value_set=pa.array(listed, pa.int64())))))
    if len(unlisted):
        shown = _values(info_ids, unlisted[:5])
        found.append(Violation(
            "uncategorised", info_file,
            f"{info_file}: {len(unlisted)} row(s) are listed under no category in {json_file} "
            f"({id_column} {', '.join(map(str, shown))}{' ...' if len(unlisted) > 5 else ''}); "
            "they have no label and are left out of the benchmark.",
            severity="warning", lines=rows.lines_of(unlisted), values=_values(info_ids, unlisted), count=len(unlisted),
            summary=f"{{count}} row(s) are listed under no category in {json_file}; the EShot builder leaves them out "
                    "(UncategorisedRowWarning).",
        ))
    return found


def media_by_id(names: Sequence[str], folder: str) -> Tuple[Dict[int, str], List[Violation]]:
    """`{id: file name}` of a seed-schema EShot media folder, whose files are named by id with any extension.

    The id is the part of the name before the first dot, in ASCII decimal digits, read as an integer (`7.wav`
    and `0007.wav` are both id 7); other files (`.DS_Store`, `README`, `².wav`) are ignored. Two files for one
    id are an error (`duplicate_media`) naming both; the first (by name) is kept.
    """
    by_id: Dict[int, str] = {}
    clashes: List[Tuple[int, str, str]] = []
    for name in sorted(names):
        stem = name.split(".", 1)[0]
        if not (stem.isascii() and stem.isdigit()):
            continue
        key = int(stem)
        if key in by_id:
            clashes.append((key, by_id[key], name))
            continue
        by_id[key] = name
    if not clashes:
        return by_id, []
    key, kept, other = clashes[0]
    return by_id, [Violation(
        "duplicate_media", folder, f"{folder}: two media files for id {key} ({kept!r} and {other!r}); keep one.",
        values=tuple(f"{k}: {a!r} and {b!r}" for k, a, b in clashes[:MAX_VALUES]), count=len(clashes),
        summary="{count} id(s) have two media files (the builder refuses: which one is meant is unknown); keep one.",
    )]


def missing_seed_media(ids: Column, names: Sequence[Optional[str]], folder: str, id_column: str, info_file: str,
                       rows: Rows = Rows()) -> List[Violation]:
    """Seed-schema EShot ids without a media file in `folder` (`missing_media`, a warning: their path is null)."""
    missing = np.flatnonzero(np.array([n is None for n in names], dtype=bool))
    if not len(missing):
        return []
    shown = _values(ids, missing[:5])
    return [Violation(
        "missing_media", info_file,
        f"{len(missing)} {id_column} value(s) have no media file in {folder} (e.g. {list(shown)}); their paths are null.",
        severity="warning", lines=rows.lines_of(missing), values=_values(ids, missing), count=len(missing),
        summary=f"{{count}} {id_column} value(s) have no media file in {folder} (named by id, any extension); "
                "the EShot builder gives them a null path.",
    )]


# ---------------------------------------------------------------------------------------------- pre-joined Parquet


def prejoined_columns(column_map: ColumnMap) -> List[Violation]:
    """The columns of a pre-joined Parquet file (`emm1_lib.schema.roles`): two columns filling one role
    (`repeated_column`) and a required role no column fills (`missing_column`) are errors, the latter listing the
    file's columns and every role expected; an optional role without a column is a warning (`missing_role`:
    the builder's output column is null)."""
    path = column_map.file
    found: List[Violation] = []
    for key, columns in column_map.ambiguous.items():
        role = next(r for r in column_map.roles if r.key == key)
        found.append(Violation(
            "repeated_column", path,
            f"{path}: columns {columns} all fill the role {role.describe()}; which one is meant is unknown. Keep one.",
            values=tuple(columns), count=len(columns),
            summary=f"columns {columns} all fill the role {role.describe()}; keep one.",
        ))
    missing = column_map.missing_required
    if missing:
        expected = "; ".join(f"{r.describe()}{'' if r.required else ' [optional]'}" for r in column_map.roles)
        what = (f"no column for {', '.join(r.describe() for r in missing)}, so this is not a pre-joined E-MM1 layout "
                f"the reader knows. The file's columns: {column_map.found}. Roles expected (accepted names, "
                f"case-insensitive): {expected}.")
        found.append(Violation("missing_column", path, f"{path}: {what}", values=tuple(r.key for r in missing),
                               count=len(missing), summary=what))
    optional = column_map.missing_optional
    if optional:
        what = (f"no column for {', '.join(r.describe() for r in optional)}: the builder fills those output "
                "columns with nulls.")
        found.append(Violation("missing_role", path, f"{path}: {what}", severity="warning",
                               values=tuple(r.key for r in optional), count=len(optional), summary=what))
    return found


def prejoined_rows(path: str, num_rows: int) -> List[Violation]:
    """A pre-joined file must hold rows (`no_data_rows`), as a grouping or triplets CSV must."""
    if num_rows:
        return []
    return [Violation(
        "no_data_rows", path, f"{path}: the file has no rows, so there is nothing to prepare. Is it truncated? "
        "Download it again.",
        summary="the file has no rows: every config reading it fails. Is it truncated? Download it again.",
    )]


def prejoined_pair(path: str, paired: str, annotated: str) -> List[Violation]:
    """A `{paired}_to_{annotated}.parquet` file links two different modalities (`bad_value`)."""
    if paired != annotated:
        return []
    what = (f"the file name pairs {paired!r} with itself; a triplet links two different modalities. Rename the file "
            "after its pair, e.g. audio_to_image.parquet.")
    return [Violation("bad_value", path, f"{path}: {what}", values=(paired,), summary=what)]


def _row_violation(path: str, rows: Rows, bad: np.ndarray, column: Column, text_ids: Optional[Column], what: str,
                   hint: str, summary: str) -> Violation:
    first = int(bad[0])
    where = f"encord_text_id={_flat(text_ids)[first].as_py()}" if text_ids is not None else None
    return Violation(
        "bad_value", path, f"{_row_at(path, rows, first, where)}: {what.format(_flat(column)[first].as_py())}. {hint}",
        lines=rows.lines_of(bad), values=_values(column, bad), count=len(bad), summary=f"{{count}} row(s): {summary}.",
    )


def prejoined_triplets(path: str, modalities: Dict[str, Tuple[str, str, Column]], annotation: Column,
                       codes: Sequence[int], labels: Sequence[str], text_ids: Optional[Column] = None,
                       rows: Rows = Rows()) -> List[Violation]:
    """Row rules of a `{paired}_to_{annotated}.parquet` file (`bad_value` errors): an explicit modality column
    (`modalities`: role -> (column, the file's modality, values)) must hold the file's modality; `annotation` is a
    known code (integers, `annotation_mapping.csv`) or a known label (text)."""
    found: List[Violation] = []
    for role, (column, expected, values) in modalities.items():
        bad = np.flatnonzero(~_numpy(pc.equal(values, expected)))
        if len(bad):
            found.append(_row_violation(
                path, rows, bad, values, text_ids, f"{column} {{!r}} in a file of {role} modality {expected!r}",
                "A file holds one modality pair, the one its name gives.", f"{column} is not {expected!r} (the file name's)"))
    kind = _flat(annotation).type
    if pa.types.is_dictionary(kind):
        annotation, kind = _flat(annotation).cast(kind.value_type), kind.value_type
    if pa.types.is_integer(kind):
        known = pa.array(list(codes), pa.int64())
        bad = np.flatnonzero(~_numpy(pc.is_in(_flat(annotation).cast(pa.int64()), value_set=known)))
        what, hint, summary = ("unknown annotation code {!r}", f"Known codes (annotation_mapping.csv): {list(codes)}.",
                               f"unknown annotation code (known: {list(codes)})")
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        bad = np.flatnonzero(~_numpy(pc.is_in(annotation, value_set=pa.array(list(labels), pa.string()))))
        what, hint, summary = ("unknown annotation label {!r}", f"Known labels (annotation_mapping.csv): {list(labels)}.",
                               f"unknown annotation label (known: {list(labels)})")
    else:
        return found + [Violation("bad_value", path, f"{path}: the annotation column holds {kind}; expected integer "
                                  f"codes {list(codes)} or labels {list(labels)}.", values=(str(kind),))]
    if len(bad):
        found.append(_row_violation(path, rows, bad, annotation, text_ids, what, hint, summary))
    return found


__all__ = [
    "annotation_mapping", "annotation_mapping_header", "category_lists", "category_rows", "Column",
    "column_violations", "data_rows", "id_cells", "ID_HINT", "id_violations", "infos_ids", "int64_cells",
    "is_id_column", "json_problem", "MAX_VALUES", "media_by_id", "missing_seed_media", "nn_index", "parse_ids",
    "prejoined_columns", "prejoined_pair", "prejoined_rows", "prejoined_triplets", "quoted_line_break_violations",
    "Rows", "stored_media_paths", "triplet_ids", "triplet_roles", "triplet_rows", "triplets_schema",
    "unsafe_path_parts",
]
