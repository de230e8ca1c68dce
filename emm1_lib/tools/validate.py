"""`emm1 validate`: check an E-MM1 metadata tree (and, optionally, its media) and report every problem.

The builders stop at the first problem, with an error naming the file and the row. The validator
reads the same files with the same readers (`tables`, `paths`, `lookup`, `triplets`) but keeps
going: when a shared reader refuses a table, the table is re-read in a diagnostic mode that lists
*every* offending line (ragged rows, bytes that are not UTF-8, ids that are not integers), leaves
those lines out and checks the rest. The report says, per split and modality: rows, ids that are
missing/negative/duplicated in the infos tables, dangling ids (no infos row: the builder keeps the
row with nulls and counts them), unsafe path parts, and with `check_media` missing media files and
files that resolve (through symlinks) outside the media root.

Severity follows the builders: an *error* is something `download_and_prepare` (or decoding, for
media) refuses; a *warning* is a documented, counted skip (dangling ids become nulls) or a value the builder keeps
but that looks wrong (an nn_index other than the k of its folder nn_k); a *note* is
information (extra columns, identical duplicate rows, which are kept).

Python: `report = validate_tree(data_dir, root_data_path=None, check_media=False)`, then
`report.ok`, `report.errors`, `report.to_text()`, `report.to_dict()`.
Command line: `emm1 validate DATA_DIR [--root-data-path R] [--check-media] [--json]`; exit status
0 when there are no errors, 1 otherwise (2 for bad arguments).
"""
import argparse
import io
import json
import os
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from emm1_lib.tools.cli import media_folder_arg
from emm1_lib.errors import EMM1DataError
from emm1_lib.schema.layout import ESHOT_FOLDERS, MODALITIES, NUM_NEIGHBOURS, PHASE1_FOLDERS, PHASE2_FOLDERS
from emm1_lib.schema.layout import PROVENANCE_COLUMNS
from emm1_lib.io.tables import missing_names
from emm1_lib.io.fs import exists, is_remote, join, normalize_root
from emm1_lib.schema.infos import DanglingCount, IdLookup
from emm1_lib.media.files import check_on_missing_media
from emm1_lib.schema.paths import join_media_paths
from emm1_lib.io.tables import DEFAULT_SHARD_BYTES, byte_ranges, check_columns, open_binary, read_csv_range
from emm1_lib.io.tables import first_bad_quote_line, read_csv_table, read_header
from emm1_lib.schema.triplets import DEFAULT_ANNOTATION_LABELS, RELEASED_COLUMNS, SEED_COLUMNS, read_annotation_labels

try:  # a public name once paths.py exports it (see the README, "Safety"); the regex is the builder's either way
    from emm1_lib.schema.paths import unsafe_mask as _unsafe_mask
except ImportError:  # pragma: no cover - depends on the shared module's version
    from emm1_lib.schema.paths import _unsafe_mask

SEVERITIES = ("error", "warning", "note")
# How many line numbers / values a finding lists (counts are always exact; dangling ids are all listed).
MAX_LISTED = 50
DEFAULT_WORKERS = 16
_BLOCK = 16 << 20
_INT64_MAX = 2**63 - 1


# ---------------------------------------------------------------------------------------------- report


@dataclass
class Finding:
    """One problem: what (`code`), where (`file`, 1-based `lines`, header = line 1) and how many."""

    severity: str
    code: str
    file: str
    message: str
    lines: List[int] = field(default_factory=list)
    values: List[Any] = field(default_factory=list)
    count: int = 1
    split: Optional[str] = None
    modality: Optional[str] = None

    def to_text(self, base: Optional[str] = None) -> str:
        where = _rel(self.file, base) if base else self.file
        if self.lines:
            more = f" (+{self.count - len(self.lines)} more)" if self.count > len(self.lines) else ""
            where += f" line{'s' if len(self.lines) > 1 else ''} {', '.join(map(str, self.lines[:10]))}"
            where += " ..." if len(self.lines) > 10 else ""
            where += more
        return f"{self.severity.upper():7} [{self.code}] {where}: {self.message}"


@dataclass
class ModalityStats:
    """Per split and modality (`text` included): the infos table and the references to it."""

    infos_file: Optional[str] = None
    infos_rows: int = 0
    invalid_ids: int = 0  # infos rows whose id is missing, negative or not an integer
    duplicate_ids: List[int] = field(default_factory=list)  # ids on more than one infos row (join ambiguous)
    unsafe_paths: int = 0  # infos rows whose save_folder/file_name is refused
    references: int = 0  # non-null ids pointing at this modality in grouping / triplet / category files
    null_references: int = 0  # empty id cells in rows that need one
    dangling: int = 0  # references with no infos row (kept by the builder, looked-up values null)
    dangling_ids: List[int] = field(default_factory=list)  # every distinct dangling id, sorted
    media_checked: int = 0
    missing_media: int = 0
    outside_root: int = 0  # media that resolve (symlinks) outside the media root


@dataclass
class SplitReport:
    """One metadata folder: `phase1` (E-MM1:100M), `phase2` (E-MM1:1M) or `eshot`."""

    name: str
    path: str
    schema: Optional[str] = None  # "released" or "seed", detected from the headers
    tables: Dict[str, int] = field(default_factory=dict)  # file -> data rows checked
    duplicate_rows: Dict[str, int] = field(default_factory=dict)  # grouping file -> identical extra rows (kept)
    modalities: Dict[str, ModalityStats] = field(default_factory=dict)

    def stats(self, modality: str) -> ModalityStats:
        return self.modalities.setdefault(modality, ModalityStats())


@dataclass
class Report:
    """Everything `validate_tree` found. `ok` is True when there is no error."""

    data_dir: str
    root_data_path: Optional[str]
    check_media: bool
    splits: List[SplitReport] = field(default_factory=list)
    findings: List[Finding] = field(default_factory=list)

    @property
    def errors(self) -> List[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> List[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def split(self, name: str) -> SplitReport:
        """The report of split `phase1`, `phase2` or `eshot` (KeyError when it was not found)."""
        for s in self.splits:
            if s.name == name:
                return s
        raise KeyError(f"no split {name!r} in this report (found {[s.name for s in self.splits]})")

    def find(self, code: Optional[str] = None, file: Optional[str] = None, severity: Optional[str] = None) -> List[Finding]:
        """Findings matching a code, a file (suffix match, e.g. "infos/image.csv") and a severity."""
        out = []
        for f in self.findings:
            if code is not None and f.code != code:
                continue
            if severity is not None and f.severity != severity:
                continue
            if file is not None and not f.file.replace(os.sep, "/").endswith(file.replace(os.sep, "/")):
                continue
            out.append(f)
        return out

    def to_dict(self) -> Dict[str, Any]:
        return {
            "data_dir": self.data_dir,
            "root_data_path": self.root_data_path,
            "check_media": self.check_media,
            "ok": self.ok,
            "num_errors": len(self.errors),
            "num_warnings": len(self.warnings),
            "splits": [asdict(s) for s in self.splits],
            "findings": [asdict(f) for f in self.findings],
        }

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def to_text(self) -> str:
        out = [f"E-MM1 validation of {self.data_dir}"]
        out.append(f"media root: {self.root_data_path or '(none)'}; media checked: {'yes' if self.check_media else 'no'}")
        columns = ("infos_rows", "invalid_ids", "duplicate_ids", "unsafe_paths", "references", "null_references", "dangling")
        if self.check_media:
            columns += ("media_checked", "missing_media", "outside_root")
        for s in self.splits:
            out.append("")
            out.append(f"{s.name}: {s.path} ({s.schema or 'unknown'} schema)")
            for table, rows in s.tables.items():
                dup = s.duplicate_rows.get(table)
                out.append(f"  {_rel(table, s.path):<34} {rows:>12,} rows" + (f"  ({dup:,} identical duplicate rows, kept)" if dup else ""))
            header = "  " + f"{'modality':<9}" + "".join(f"{c:>16}" for c in columns)
            out.append(header)
            for m, st in s.modalities.items():
                cells = [len(getattr(st, c)) if isinstance(getattr(st, c), list) else getattr(st, c) for c in columns]
                out.append("  " + f"{m:<9}" + "".join(f"{v:>16,}" for v in cells))
                if st.dangling_ids:
                    shown = ", ".join(map(str, st.dangling_ids[:20]))
                    more = f" ... ({len(st.dangling_ids) - 20} more; --json lists all)" if len(st.dangling_ids) > 20 else ""
                    out.append(f"  {'':<9} dangling ids: {shown}{more}")
        for severity in SEVERITIES:
            found = [f for f in self.findings if f.severity == severity]
            if found:
                out.append("")
                out.append(f"{severity}s ({len(found)}):")
                out.extend("  " + f.to_text(self.data_dir) for f in found)
        out.append("")
        verdict = "OK" if self.ok else "FAILED"
        out.append(f"{verdict}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return "\n".join(out)


def _rel(path: str, base: str) -> str:
    try:
        rel = os.path.relpath(path, base) if not is_remote(path) else path
    except ValueError:  # another drive on Windows
        return path
    return path if rel.startswith("..") else rel


class _Context:
    """Collects findings; helpers keep the call sites short."""

    def __init__(self, report: Report):
        self.report = report

    def add(self, severity: str, code: str, file: str, message: str, lines: Sequence[int] = (), values: Sequence = (),
            count: Optional[int] = None, split: Optional[str] = None, modality: Optional[str] = None) -> Finding:
        lines = [int(x) for x in list(lines)[:MAX_LISTED]]
        values = [_plain(v) for v in list(values)[:MAX_LISTED]]
        finding = Finding(severity, code, file, message, lines, values, count if count is not None else max(1, len(lines)),
                          split, modality)
        self.report.findings.append(finding)
        return finding

    def error(self, *args, **kwargs) -> Finding:
        return self.add("error", *args, **kwargs)

    def warning(self, *args, **kwargs) -> Finding:
        return self.add("warning", *args, **kwargs)

    def note(self, *args, **kwargs) -> Finding:
        return self.add("note", *args, **kwargs)


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value


# ---------------------------------------------------------------------------------------------- CSV layer


@dataclass
class _Table:
    """A table that was read, with the file line of each row (None: row i is on line i + 2)."""

    path: str
    header: List[str]
    table: pa.Table
    lines: Optional[np.ndarray] = None

    def line(self, row: int) -> int:
        return int(self.lines[row]) if self.lines is not None else row + 2

    def lines_of(self, rows: Iterable[int]) -> List[int]:
        return [self.line(int(r)) for r in rows]

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


def _is_int_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t)


def _parse_int(value: Optional[bytes]) -> Tuple[bool, Optional[int]]:
    """(valid, value) the way pyarrow's CSV int64 conversion reads a cell: blank is null."""
    if value is None:
        return True, None
    text = value.strip()
    if not text:
        return True, None
    digits = text[1:] if text[:1] == b"-" else text
    if not digits.isdigit():
        return False, None
    number = int(text)
    if not -_INT64_MAX - 1 <= number <= _INT64_MAX:
        return False, None
    return True, number


def _diagnose_csv(ctx: _Context, path: str, header: List[str], types: Dict[str, pa.DataType], reason: str,
                  split: Optional[str], modality: Optional[str], source: Optional[bytes] = None,
                  first_line: int = 1, explained: bool = False) -> Optional[_Table]:
    """Re-read a CSV a shared reader refused, listing every bad line; return the good rows.

    Every wanted column is read as bytes with pyarrow's `invalid_row_handler` (rows with the wrong
    number of fields are recorded and skipped), then each cell is checked (UTF-8; integers for id
    columns). Bad lines are reported and left out; the remaining rows get the wanted types.
    `source` (bytes, no header line) with `first_line` reads a byte range of a larger file.
    `reason` (the shared reader's refusal) is reported as `unparsable` when no bad line is found, unless
    the caller already reported it (`explained`).
    """
    wanted = [c for c in types if c in header]
    skipped: List[Tuple[int, int, str]] = []

    def on_invalid(row) -> str:
        skipped.append((row.number, row.actual_columns, row.text))
        return "skip"

    read_options = pacsv.ReadOptions(use_threads=False, block_size=_BLOCK,
                                     column_names=list(header) if source is not None else None)
    try:
        stream = io.BytesIO(source) if source is not None else open_binary(path)
        with stream:
            raw = pacsv.read_csv(
                stream,
                read_options=read_options,
                parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(column_types={c: pa.binary() for c in wanted}, include_columns=wanted),
            )
    except (pa.ArrowException, OSError, ValueError) as err:
        ctx.error("unparsable", path, f"{reason} The file cannot be read even field by field: {err}",
                  split=split, modality=modality)
        return None
    # record numbers: with a header, the first data record is 2; a headerless byte range starts at 1
    offset = first_line - 1 if source is not None else 0
    total = raw.num_rows + len(skipped)
    record0 = 1 if source is not None else 2
    skipped_records = sorted(r[0] for r in skipped if r[0] is not None and r[0] >= 0)
    all_records = np.arange(record0, record0 + total, dtype=np.int64)
    kept_lines = np.setdiff1d(all_records, np.array(skipped_records, dtype=np.int64), assume_unique=True) + offset
    if len(kept_lines) != raw.num_rows:  # record numbers unknown: fall back to positions
        kept_lines = np.arange(record0, record0 + raw.num_rows, dtype=np.int64) + offset
    found_any = False
    if skipped:
        found_any = True
        ctx.error(
            "ragged_row", path,
            f"{len(skipped)} line(s) do not have the {len(header)} fields of the header (e.g. "
            f"{skipped[0][2][:80]!r} has {skipped[0][1]}); a stray comma or quote is the usual cause. "
            "These lines are left out of the other checks.",
            lines=[r[0] + offset for r in skipped], values=[r[2][:200] for r in skipped], count=len(skipped),
            split=split, modality=modality,
        )
    bad = np.zeros(raw.num_rows, dtype=bool)
    columns: Dict[str, pa.Array] = {}
    for name in wanted:
        cells = raw[name].combine_chunks()
        try:
            text = cells.cast(pa.string())
            invalid_utf8: List[int] = []
        except pa.ArrowInvalid:
            invalid_utf8 = []
            values = cells.to_pylist()
            for i, v in enumerate(values):
                if v is not None:
                    try:
                        v.decode("utf-8")
                    except UnicodeDecodeError:
                        invalid_utf8.append(i)
            text = None
        if invalid_utf8:
            found_any = True
            bad[invalid_utf8] = True
            ctx.error(
                "not_utf8", path,
                f"column {name!r}: {len(invalid_utf8)} value(s) are not valid UTF-8. Re-encode the file as UTF-8; "
                "these lines are left out of the other checks.",
                lines=kept_lines[invalid_utf8], values=[cells[i].as_py()[:80] for i in invalid_utf8],
                count=len(invalid_utf8), split=split, modality=modality,
            )
        if _is_int_type(types[name]):
            parsed: List[Optional[int]] = []
            not_int: List[int] = []
            for i, v in enumerate(cells.to_pylist()):
                valid, number = _parse_int(v)
                parsed.append(number)
                if not valid:
                    not_int.append(i)
            if not_int:
                found_any = True
                bad[not_int] = True
                ctx.error(
                    "not_integer", path,
                    f"column {name!r}: {len(not_int)} value(s) are not integers in the int64 range. "
                    "These lines are left out of the other checks.",
                    lines=kept_lines[not_int], values=[cells[i].as_py()[:40] for i in not_int], count=len(not_int),
                    split=split, modality=modality,
                )
            columns[name] = pa.array(parsed, pa.int64())
        else:
            if text is None:
                text = pa.array([None if v is None else v.decode("utf-8", "replace") for v in cells.to_pylist()], pa.string())
            columns[name] = text
    if not found_any and not explained:
        ctx.error("unparsable", path, reason, split=split, modality=modality)
    keep = ~bad
    table = pa.table({name: columns[name] for name in wanted} if wanted else {"_": pa.nulls(raw.num_rows)})
    table = table.filter(pa.array(keep))
    return _Table(path, list(header), table, kept_lines[keep])


def _read_table(ctx: _Context, path: str, types: Dict[str, pa.DataType], required: Sequence[str],
                known: Sequence[str], split: str, modality: Optional[str], split_report: SplitReport) -> Optional[_Table]:
    """Read a whole CSV with the builder's reader, falling back to the diagnostic reader.

    Broken quoting is found by the shared reader (it refuses an odd number of double quotes) and located
    with its own `first_bad_quote_line`: one `unbalanced_quote` finding, with the line, carrying the
    reader's message; the diagnostic reader then lists the other bad lines.
    """
    try:
        header = read_header(path)
    except EMM1DataError as err:
        ctx.error("unreadable", path, str(err), split=split, modality=modality)
        return None
    if not _check_header(ctx, path, header, required, known, split, modality):
        return None
    try:
        table = _Table(path, header, read_csv_table(path, types, required))
    except EMM1DataError as err:
        quote_line = first_bad_quote_line(path)
        if quote_line is not None:
            ctx.error("unbalanced_quote", path, str(err), lines=[quote_line], split=split, modality=modality)
        table = _diagnose_csv(ctx, path, header, types, str(err), split, modality, explained=quote_line is not None)
    if table is not None:
        split_report.tables[path] = table.num_rows
    return table


def _check_header(ctx: _Context, path: str, header: List[str], required: Sequence[str], known: Sequence[str],
                  split: str, modality: Optional[str]) -> bool:
    """Report missing (error), repeated (error) and unknown (note) columns; False when unusable.

    The shared reader's `check_columns` decides and words both errors; it stops at the first (missing
    before repeated), so it is asked about the repeated names alone (nothing required) as well."""
    ok = True
    checks = [("repeated_column", ())] + ([("missing_column", required)] if missing_names(required, header) else [])
    for code, needed in checks:
        try:
            check_columns(path, header, needed)
        except EMM1DataError as err:
            ctx.error(code, path, str(err), lines=[1], split=split, modality=modality)
            ok = False
    extra = [c for c in header if c not in known and c not in required]
    if extra:
        ctx.note("extra_column", path, f"column(s) {extra} are not used by the builders (ignored).",
                 lines=[1], values=extra, split=split, modality=modality)
    return ok


# ---------------------------------------------------------------------------------------------- infos tables


@dataclass
class _Infos:
    """What the reference checks need of one infos table."""

    path: str
    id_column: str
    known_ids: pa.Array  # distinct valid ids
    lookup: Optional[IdLookup]  # the builder's lookup when it could be built (no invalid or duplicate id)
    table: Optional[_Table] = None

    def found(self, ids: pa.Array) -> pa.Array:
        """Boolean per id: has an infos row (null ids give null)."""
        if self.lookup is not None:
            return pc.is_valid(self.lookup.positions(ids))
        return pc.if_else(pc.is_valid(ids), pc.is_in(ids, value_set=self.known_ids), pa.scalar(None, pa.bool_()))


def _check_ids(ctx: _Context, t: _Table, id_column: str, stats: ModalityStats, split: str, modality: str) -> _Infos:
    """Missing/negative ids and duplicated ids of an infos table (every one), then the builder's lookup."""
    ids = t.table[id_column].combine_chunks()
    values = ids.to_numpy(zero_copy_only=False) if ids.null_count == 0 else pc.fill_null(ids, -1).to_numpy()
    invalid = np.flatnonzero(values < 0)
    if len(invalid):
        stats.invalid_ids += len(invalid)
        ctx.error("invalid_id", t.path,
                  f"{len(invalid)} row(s) have a missing or negative {id_column}; every infos row needs a "
                  "non-negative integer id.", lines=t.lines_of(invalid), values=[ids[int(i)].as_py() for i in invalid],
                  count=len(invalid), split=split, modality=modality)
    valid = values[values >= 0]
    unique, counts = np.unique(valid, return_counts=True)
    duplicated = unique[counts > 1]
    if len(duplicated):
        stats.duplicate_ids = duplicated.tolist()
        rows = np.flatnonzero(np.isin(values, duplicated))
        ctx.error("duplicate_id", t.path,
                  f"{len(duplicated)} {id_column} value(s) appear on more than one row ({duplicated[:10].tolist()}"
                  f"{' ...' if len(duplicated) > 10 else ''}), so a join on them is ambiguous. Remove the duplicate rows.",
                  lines=t.lines_of(rows), values=duplicated.tolist(), count=len(rows), split=split, modality=modality)
    lookup = None
    if not len(invalid) and not len(duplicated):
        try:
            lookup = IdLookup(ids, t.path, id_column)
        except EMM1DataError as err:  # pragma: no cover - the checks above cover what it refuses
            ctx.error("invalid_id", t.path, str(err), split=split, modality=modality)
    return _Infos(t.path, id_column, pa.array(unique, pa.int64()), lookup, t)


def _unsafe_rows(t: _Table, column: str) -> np.ndarray:
    values = t.table[column]
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if not pa.types.is_string(values.type) and not pa.types.is_dictionary(values.type):
        values = values.cast(pa.string())
    mask = _unsafe_mask(values, False)
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False))


def _check_paths(ctx: _Context, t: _Table, id_column: str, stats: ModalityStats, split: str, modality: str,
                 columns: Sequence[str] = ("save_folder", "file_name")) -> np.ndarray:
    """Every unsafe path part (the builder's rule, `paths.check_path_parts`); returns the bad rows."""
    bad_rows = np.zeros(t.num_rows, dtype=bool)
    for column in columns:
        if column not in t.table.column_names:
            continue
        rows = _unsafe_rows(t, column)
        if not len(rows):
            continue
        bad_rows[rows] = True
        ids = t.table[id_column] if id_column in t.table.column_names else None
        examples = [f"{id_column}={ids[int(r)].as_py() if ids is not None else '?'}: {t.table[column][int(r)].as_py()!r}"
                    for r in rows[:MAX_LISTED]]
        ctx.error("unsafe_path", t.path,
                  f"{len(rows)} unsafe {column} value(s). Media paths must stay under the data root: no '..' component, "
                  "no absolute path or drive, no '~', no control characters, not empty.",
                  lines=t.lines_of(rows), values=examples, count=len(rows), split=split, modality=modality)
    stats.unsafe_paths = int(bad_rows.sum())
    return bad_rows


def _read_media_infos(ctx: _Context, split: SplitReport, modality: str, path: str,
                      extra_columns: Sequence[str] = PROVENANCE_COLUMNS) -> Optional[_Infos]:
    stats = split.stats(modality)
    stats.infos_file = path
    if not exists(path):
        ctx.error("missing_file", path, f"{path} not found: the {modality} infos table of {split.name}.",
                  split=split.name, modality=modality)
        return None
    id_column = f"encord_{modality}_id"
    types = {id_column: pa.int64(), "save_folder": pa.string(), "file_name": pa.string()}
    types.update({c: pa.string() for c in extra_columns})
    known = list(types) + ["file_id", "youtube_id", "start_time", "end_time"]
    t = _read_table(ctx, path, types, [id_column, "save_folder", "file_name"], known, split.name, modality, split)
    if t is None:
        return None
    stats.infos_rows = t.num_rows
    infos = _check_ids(ctx, t, id_column, stats, split.name, modality)
    bad = _check_paths(ctx, t, id_column, stats, split.name, modality)
    infos.table = _Table(t.path, t.header, t.table.filter(pa.array(~bad)), None if t.lines is None else t.lines[~bad]) \
        if bad.any() else t
    return infos


def _read_text_infos(ctx: _Context, split: SplitReport, path: str) -> Optional[_Infos]:
    stats = split.stats("text")
    stats.infos_file = path
    if not exists(path):
        ctx.error("missing_file", path, f"{path} not found: the captions of {split.name}.", split=split.name, modality="text")
        return None
    types = {"encord_text_id": pa.int64(), "caption": pa.string()}
    t = _read_table(ctx, path, types, list(types), list(types), split.name, "text", split)
    if t is None:
        return None
    stats.infos_rows = t.num_rows
    captions = t.table["caption"]
    multiline = np.flatnonzero(pc.fill_null(pc.match_substring(captions, "\n"), False).to_numpy(zero_copy_only=False))
    if len(multiline):
        ctx.note("multiline_value", path,
                 f"{len(multiline)} caption(s) span several lines. That is valid CSV, but if it is not intended a stray "
                 "quote merged the following rows into one caption.", lines=t.lines_of(multiline),
                 count=len(multiline), split=split.name, modality="text")
    return _check_ids(ctx, t, "encord_text_id", stats, split.name, "text")


# ---------------------------------------------------------------------------------------------- references


@dataclass
class _RefAccumulator:
    """References of one id column in one file: counts and the distinct dangling ids."""

    infos: Optional[_Infos]
    counter: DanglingCount
    references: int = 0
    nulls: int = 0
    negative: int = 0
    dangling_ids: List[np.ndarray] = field(default_factory=list)
    dangling_lines: List[np.ndarray] = field(default_factory=list)

    def add(self, ids: pa.Array, lines: np.ndarray, needed: Optional[pa.Array] = None) -> None:
        """Count `ids` (null where a row has no id of this modality unless `needed` says it should)."""
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        valid = pc.is_valid(ids)
        self.references += pc.sum(valid).as_py() or 0
        if needed is not None:
            self.nulls += pc.sum(pc.and_(needed, pc.invert(valid))).as_py() or 0
        else:
            self.nulls += ids.null_count
        self.negative += pc.sum(pc.less(ids, 0)).as_py() or 0
        if self.infos is None:
            return
        found = self.infos.found(ids)
        positions = pc.if_else(found, pa.scalar(0, pa.int32()), pa.scalar(None, pa.int32()))
        self.counter.add(ids, positions)  # the builder's DanglingCount: same number as its warning
        missing = pc.fill_null(pc.and_(valid, pc.invert(pc.fill_null(found, False))), False)
        if pc.any(missing).as_py():
            mask = missing.to_numpy(zero_copy_only=False)
            self.dangling_ids.append(pc.filter(ids, missing).to_numpy())
            self.dangling_lines.append(lines[mask])


def _flush_references(ctx: _Context, file: str, column: str, acc: _RefAccumulator, stats: ModalityStats,
                      split: str, modality: str) -> None:
    stats.references += acc.references
    stats.null_references += acc.nulls
    if acc.nulls:
        ctx.warning("null_id", file, f"{acc.nulls} row(s) have an empty {column}; the builder keeps them with null "
                    f"{modality} values.", count=acc.nulls, split=split, modality=modality)
    if acc.negative:
        ctx.warning("negative_id", file, f"{acc.negative} {column} value(s) are negative (no infos row can match them; "
                    "counted as dangling).", count=acc.negative, split=split, modality=modality)
    if acc.counter.count:
        ids = np.unique(np.concatenate(acc.dangling_ids))
        lines = np.sort(np.concatenate(acc.dangling_lines))
        stats.dangling += acc.counter.count
        stats.dangling_ids = sorted(set(stats.dangling_ids) | set(ids.tolist()))
        ctx.warning("dangling_id", file,
                    f"{acc.counter.count} {column} value(s) ({len(ids)} distinct) have no row in "
                    f"{acc.infos.path if acc.infos else 'the infos table'}; the builder keeps those rows with null "
                    "paths/captions and counts them in a DanglingIdWarning.",
                    lines=lines, values=ids.tolist(), count=acc.counter.count, split=split, modality=modality)


def _row_hashes(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    """A 64-bit hash per row of integer columns (for counting identical rows; nulls hash as a marker)."""
    h = np.full(table.num_rows, 0x9E3779B97F4A7C15, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in columns:
            col = table[name]
            col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            if pa.types.is_integer(col.type):
                v = pc.fill_null(col.cast(pa.int64()), -(2**62)).to_numpy(zero_copy_only=False).view(np.uint64)
            else:
                v = np.array([hash(x) & 0xFFFFFFFFFFFFFFFF for x in col.to_pylist()], dtype=np.uint64)
            h = (h ^ v) * np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
    return h


def _duplicate_count(hashes: List[np.ndarray]) -> int:
    if not hashes:
        return 0
    allh = np.concatenate(hashes)
    return int(len(allh) - len(np.unique(allh)))


# ---------------------------------------------------------------------------------------------- phase 1


def _phase1_state() -> Dict[str, list]:
    """What the shards of one grouping file add up: rows, row hashes, and the lines and values of nn_index
    outside 1-16 (`bad_nn`) or in range but not the folder's k (`other_nn`)."""
    return {"rows": 0, "hashes": [], "bad_nn": [], "bad_nn_values": [], "other_nn": [], "other_nn_values": []}


def _validate_phase1(ctx: _Context, split: SplitReport, modalities: Sequence[str], shard_bytes: int,
                     check_media: bool) -> Dict[str, _Infos]:
    infos_dir = join(split.path, "infos")
    text = _read_text_infos(ctx, split, join(infos_dir, "text.csv"))
    media = {m: _read_media_infos(ctx, split, m, join(infos_dir, f"{m}.csv")) for m in modalities}
    id_columns = {"text": "encord_text_id", **{m: f"encord_{m}_id" for m in modalities}}
    required = list(id_columns.values())
    types = {c: pa.int64() for c in required + ["nn_index"]}
    present = [k for k in range(1, NUM_NEIGHBOURS + 1) if exists(join(split.path, f"nn_{k}", "data_groups.csv"))]
    missing = [k for k in range(1, NUM_NEIGHBOURS + 1) if k not in present]
    if not present:
        ctx.error("missing_file", join(split.path, "nn_1", "data_groups.csv"),
                  "no nn_{k}/data_groups.csv at all: every phase1 config needs its grouping file.", split=split.name)
    elif missing:
        ctx.warning("missing_file", join(split.path, f"nn_{missing[0]}", "data_groups.csv"),
                    f"grouping files of neighbours {missing} are missing: configs "
                    f"{', '.join(f'phase1_nn{k}' for k in missing)} and phase1_all will fail; the others work.",
                    values=missing, count=len(missing), split=split.name)
    for k in present:
        path = join(split.path, f"nn_{k}", "data_groups.csv")
        try:
            header = read_header(path)
        except EMM1DataError as err:
            ctx.error("unreadable", path, str(err), split=split.name)
            continue
        if split.schema is None:
            split.schema = "released" if "nn_index" in header else "seed"
        if not _check_header(ctx, path, header, required, required + ["nn_index"], split.name, None):
            continue
        infos_of = {"text": text, **media}
        accs = {m: _RefAccumulator(infos_of[m], DanglingCount(id_columns[m], infos_of[m].path if infos_of[m] else ""))
                for m in id_columns}
        state = _phase1_state()

        def consume(t: _Table) -> None:
            lines = t.lines if t.lines is not None else np.arange(2, t.num_rows + 2, dtype=np.int64)
            lines = lines + 0
            state["rows"] += t.num_rows
            for m, column in id_columns.items():
                accs[m].add(t.table[column], lines)
            if "nn_index" in t.table.column_names:
                nn = t.table["nn_index"]
                # the builder refuses a rank outside 1-16 (or none) and keeps any other value as it is
                in_range = pc.fill_null(pc.and_(pc.greater_equal(nn, 1), pc.less_equal(nn, NUM_NEIGHBOURS)), False)
                for kind, mask in (("bad_nn", pc.invert(in_range)), ("other_nn", pc.and_(in_range, pc.not_equal(nn, k)))):
                    rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
                    if len(rows):
                        state[kind].append(lines[rows])
                        state[kind + "_values"].extend(pc.take(nn, pa.array(rows[:MAX_LISTED])).to_pylist())
            state["hashes"].append(_row_hashes(t.table, [c for c in t.table.column_names]))

        failed = None
        for start, end in byte_ranges(path, shard_bytes):
            try:
                shard = read_csv_range(path, start, end, header, types)
            except EMM1DataError as err:
                failed = str(err)
                break
            if shard is not None:
                first = state["rows"] + 2
                consume(_Table(path, header, shard, np.arange(first, first + shard.num_rows, dtype=np.int64)))
        if failed is not None:  # start again on the whole file, listing every bad line
            for m in accs:
                accs[m] = _RefAccumulator(infos_of[m], DanglingCount(id_columns[m], infos_of[m].path if infos_of[m] else ""))
            state = _phase1_state()
            t = _diagnose_csv(ctx, path, header, types, failed, split.name, None)
            if t is None:
                continue
            consume(t)
        split.tables[path] = state["rows"]
        for m, column in id_columns.items():
            _flush_references(ctx, path, column, accs[m], split.stats(m), split.name, m)
        nn_findings = (
            ("bad_nn", "error", "bad_value", f"an nn_index that is not a neighbour rank 1-{NUM_NEIGHBOURS} (or none); "
             "the builder refuses the file (its nn_index column is int8 1-16)."),
            ("other_nn", "warning", "nn_index_mismatch", f"an nn_index other than {k}, the neighbour rank of the folder "
             f"nn_{k}; the builder does not check this and keeps the file's value."),
        )
        for kind, severity, code, what in nn_findings:
            if state[kind]:
                lines = np.concatenate(state[kind])
                ctx.add(severity, code, path, f"{len(lines)} row(s) have {what}", lines=lines,
                        values=state[kind + "_values"][:MAX_LISTED], count=len(lines), split=split.name)
        dup = _duplicate_count(state["hashes"])
        if dup:
            split.duplicate_rows[path] = dup
            ctx.note("duplicate_rows", path, f"{dup} row(s) repeat an earlier row exactly; the builder keeps them "
                     "(nothing is dropped).", count=dup, split=split.name)
    return {m: i for m, i in media.items() if i is not None}


# ---------------------------------------------------------------------------------------------- phase 2


def _validate_phase2(ctx: _Context, split: SplitReport, modalities: Sequence[str]) -> Dict[str, _Infos]:
    mapping_path = join(split.path, "annotation_mapping.csv")
    codes = list(DEFAULT_ANNOTATION_LABELS)
    if exists(mapping_path):
        try:
            codes = list(read_annotation_labels(mapping_path))
            split.tables[mapping_path] = len(codes)
        except EMM1DataError as err:
            ctx.error("bad_mapping", mapping_path, str(err), split=split.name)
    else:
        ctx.note("missing_file", mapping_path, "no annotation_mapping.csv: the builders use the released labels "
                 f"{DEFAULT_ANNOTATION_LABELS}.", split=split.name)
    infos_dir = join(split.path, "infos")
    text = _read_text_infos(ctx, split, join(infos_dir, "text.csv"))
    path = join(split.path, "triplets.csv")
    try:
        header = read_header(path)
    except EMM1DataError as err:
        ctx.error("unreadable", path, str(err), split=split.name)
        header = None
    table = None
    if header is not None:
        if "paired_modality" in header:
            split.schema = "released"
            types = {c: pa.int64() for c in ("encord_text_id", "encord_paired_id", "encord_annotated_id", "annotation")}
            types.update({"paired_modality": pa.string(), "annotated_modality": pa.string()})
            required = list(RELEASED_COLUMNS)
        elif "modality_1" in header:
            split.schema = "seed"
            types = {c: pa.string() for c in ("modality_1", "modality_2", "annotated_modality")}
            types.update({"encord_text_id": pa.int64(), "annotation": pa.int64()})
            types.update({f"encord_{m}_id": pa.int64() for m in MODALITIES})
            required = list(SEED_COLUMNS)
        else:
            ctx.error("missing_column", path,
                      f"neither the released triplets schema ({', '.join(RELEASED_COLUMNS)}) nor the seed's "
                      f"({', '.join(SEED_COLUMNS)}, encord_{{modality}}_id); the header has {header}.",
                      lines=[1], split=split.name)
            types = None
        if types is not None:
            table = _read_table(ctx, path, types, required, list(types), split.name, None, split)
    media: Dict[str, _Infos] = {}
    if table is None:
        media = {m: i for m in modalities if (i := _read_media_infos(ctx, split, m, join(infos_dir, f"{m}.csv")))}
        return media
    t = table.table
    if split.schema == "seed":
        paired_mod, annotated_mod = t["modality_1"], t["modality_2"]
        paired_ids = pa.nulls(t.num_rows, pa.int64())
        annotated_ids = pa.nulls(t.num_rows, pa.int64())
        for m in MODALITIES:
            column = f"encord_{m}_id"
            if column in t.column_names:
                paired_ids = pc.if_else(pc.equal(paired_mod, m), t[column], paired_ids)
                annotated_ids = pc.if_else(pc.equal(annotated_mod, m), t[column], annotated_ids)
        disagree = np.flatnonzero(pc.fill_null(pc.not_equal(t["annotated_modality"], annotated_mod), False)
                                  .to_numpy(zero_copy_only=False))
        if len(disagree):
            ctx.warning("bad_value", path, f"{len(disagree)} row(s) have annotated_modality != modality_2; the builder "
                        "takes the annotated item from modality_2.", lines=table.lines_of(disagree),
                        count=len(disagree), split=split.name)
    else:
        paired_mod, annotated_mod = t["paired_modality"], t["annotated_modality"]
        paired_ids, annotated_ids = t["encord_paired_id"], t["encord_annotated_id"]
    lines = table.lines if table.lines is not None else np.arange(2, t.num_rows + 2, dtype=np.int64)
    # row checks of triplets.normalize_triplets, every row
    checks = []
    for name, column in (("paired", paired_mod), ("annotated", annotated_mod)):
        checks.append((pc.invert(pc.is_in(column, value_set=pa.array(MODALITIES))),
                       f"unknown {name} modality (expected one of {list(MODALITIES)})", column))
    checks.append((pc.equal(paired_mod, annotated_mod), "paired and annotated modality are the same", paired_mod))
    checks.append((pc.invert(pc.is_in(t["annotation"], value_set=pa.array(codes, pa.int64()))),
                   f"unknown annotation code (known: {codes})", t["annotation"]))
    for mask, what, column in checks:
        rows = np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))
        if len(rows):
            ctx.error("bad_value", path, f"{len(rows)} row(s): {what}.", lines=table.lines_of(rows),
                      values=pc.take(column, pa.array(rows[:MAX_LISTED])).to_pylist(), count=len(rows), split=split.name)
    dup = _duplicate_count([_row_hashes(t, t.column_names)])
    if dup:
        split.duplicate_rows[path] = dup
        ctx.note("duplicate_rows", path, f"{dup} row(s) repeat an earlier row exactly; the builder keeps them.",
                 count=dup, split=split.name)
    involved = [m for m in modalities
                if pc.any(pc.or_(pc.equal(paired_mod, m), pc.equal(annotated_mod, m))).as_py()]
    media = {m: i for m in involved if (i := _read_media_infos(ctx, split, m, join(infos_dir, f"{m}.csv")))}
    text_acc = _RefAccumulator(text, DanglingCount("encord_text_id", text.path if text else ""))
    text_acc.add(t["encord_text_id"], lines)
    _flush_references(ctx, path, "encord_text_id", text_acc, split.stats("text"), split.name, "text")
    for m in involved:
        acc = _RefAccumulator(media.get(m), DanglingCount(f"{m} ids", media[m].path if m in media else ""))
        for role, role_mod, role_ids in (("paired", paired_mod, paired_ids), ("annotated", annotated_mod, annotated_ids)):
            is_m = pc.fill_null(pc.equal(role_mod, m), False)
            ids_m = pc.if_else(is_m, role_ids, pa.scalar(None, pa.int64()))
            acc.add(ids_m, lines, needed=is_m)
        column = f"encord_{m}_id" if split.schema == "seed" else f"encord_paired_id/encord_annotated_id ({m})"
        _flush_references(ctx, path, column, acc, split.stats(m), split.name, m)
    return media


# ---------------------------------------------------------------------------------------------- EShot


_ESHOT = {  # modality -> (info csv, id column, category json, released media folder, seed media folder)
    "audio": ("eshot_audio_info.csv", "eshot_audio_id", "category_to_audio_ids.json", "audio", "audio"),
    "points": ("eshot_points_info.csv", "eshot_point_id", "category_to_point_ids.json", "points", "point-clouds"),
}


def _read_category_json(ctx: _Context, path: str, split: str, modality: str) -> Optional[Dict[str, List[int]]]:
    try:
        with open_binary(path) as f:
            data = json.loads(f.read().decode("utf-8-sig"))
    except json.JSONDecodeError as err:
        ctx.error("bad_json", path, f"not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}.",
                  lines=[err.lineno], split=split, modality=modality)
        return None
    except UnicodeDecodeError as err:
        ctx.error("bad_json", path, f"not UTF-8: {err}.", split=split, modality=modality)
        return None
    except OSError as err:
        ctx.error("unreadable", path, f"cannot read: {err}.", split=split, modality=modality)
        return None
    if not isinstance(data, dict):
        ctx.error("bad_json", path, f"expected an object {{category: [ids]}}, got {type(data).__name__}.",
                  split=split, modality=modality)
        return None
    out: Dict[str, List[int]] = {}
    bad: List[str] = []
    seen: Dict[int, str] = {}
    repeated: List[str] = []
    for category, ids in data.items():
        if not isinstance(ids, list):
            bad.append(f"{category!r}: {json.dumps(ids)[:80]}")
            continue
        values = []
        for value in ids:  # the EShot builder's rule: non-negative integers (digit strings accepted)
            if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
                bad.append(f"{category!r}: {json.dumps(value)[:80]}")
                continue
            number = int(value)
            if number in seen:
                repeated.append(f"{number} ({seen[number]!r} and {category!r})")
                continue
            seen[number] = category
            values.append(number)
        out[category] = values
    if bad:
        ctx.error("bad_json", path, f"{len(bad)} value(s) are not lists of non-negative integer ids (category: value).",
                  values=bad, count=len(bad), split=split, modality=modality)
    if repeated:
        ctx.error("duplicate_id", path, f"{len(repeated)} id(s) are listed more than once (every sample needs exactly "
                  "one category; the EShot builder refuses this).", values=repeated, count=len(repeated),
                  split=split, modality=modality)
    return out


def _validate_eshot(ctx: _Context, split: SplitReport) -> Dict[str, Tuple[_Infos, str]]:
    """The EShot builder's checks (`eshot.py`), every problem: info CSVs, category JSONs, their join."""
    media: Dict[str, Tuple[_Infos, str]] = {}
    for modality, (csv_name, id_column, json_name, released_folder, seed_folder) in _ESHOT.items():
        stats = split.stats(modality)
        path = join(split.path, csv_name)
        stats.infos_file = path
        if not exists(path):
            ctx.error("missing_file", path, f"{path} not found.", split=split.name, modality=modality)
            continue
        try:
            header = read_header(path)
        except EMM1DataError as err:
            ctx.error("unreadable", path, str(err), split=split.name, modality=modality)
            continue
        released = "file_name" in header
        split.schema = split.schema or ("released" if released else "seed")
        if modality == "audio":
            types = {id_column: pa.int64(), "youtube_id": pa.string(), "start_time": pa.float64(), "end_time": pa.float64()}
        else:
            types = {id_column: pa.int64(), ("file_id" if released else "object_id"): pa.string()}
        if released:
            types.update({"file_name": pa.string(), "save_folder": pa.string()})
        t = _read_table(ctx, path, types, list(types), list(types), split.name, modality, split)
        if t is None:
            continue
        stats.infos_rows = t.num_rows
        infos = _check_ids(ctx, t, id_column, stats, split.name, modality)
        bad = _check_paths(ctx, t, id_column, stats, split.name, modality) if released else np.zeros(t.num_rows, bool)
        if bad.any():
            infos.table = _Table(t.path, t.header, t.table.filter(pa.array(~bad)),
                                 None if t.lines is None else t.lines[~bad])
        media[modality] = (infos, released_folder if released else seed_folder)
        json_path = join(split.path, json_name)
        if not exists(json_path):
            ctx.error("missing_file", json_path, f"{json_path} not found.", split=split.name, modality=modality)
            continue
        categories = _read_category_json(ctx, json_path, split.name, modality)
        if categories is None:
            continue
        split.tables[json_path] = len(categories)
        listed = pa.array([i for v in categories.values() for i in v], pa.int64())
        stats.references += len(listed)
        found = pc.fill_null(infos.found(listed), False)
        absent = pc.filter(listed, pc.invert(found)).to_pylist()
        if absent:
            stats.dangling += len(absent)
            stats.dangling_ids = sorted(set(absent))
            ctx.error("dangling_id", json_path, f"{len(absent)} {id_column} value(s) have no row in {path}; the EShot "
                      "builder refuses this (a labelled sample without its file).", values=sorted(set(absent)),
                      count=len(absent), split=split.name, modality=modality)
        ids = t.table[id_column]
        unlisted = np.flatnonzero(pc.fill_null(pc.invert(pc.is_in(ids, value_set=listed)), False)
                                  .to_numpy(zero_copy_only=False))
        if len(unlisted):
            ctx.warning("uncategorised", path, f"{len(unlisted)} row(s) are listed under no category in {json_path}; "
                        "the EShot builder leaves them out (UncategorisedRowWarning).", lines=t.lines_of(unlisted),
                        values=pc.take(ids, pa.array(unlisted[:MAX_LISTED])).to_pylist(), count=len(unlisted),
                        split=split.name, modality=modality)
    return media


# ---------------------------------------------------------------------------------------------- media


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _stat_one(path: str, real_root: str, dir_real: Dict[str, str]) -> Optional[Tuple[str, str]]:
    """None when `path` is a regular file under the root; else ("missing" | "outside", detail)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing", "not found"
    except OSError as err:  # NotADirectoryError, PermissionError, name too long, ...
        return "missing", f"{type(err).__name__}: {err.strerror or err}"
    if stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(path)
        if not os.path.isfile(real):
            return "missing", f"broken symlink to {real}"
    elif not stat.S_ISREG(st.st_mode):
        return "missing", "not a regular file"
    else:
        parent = os.path.dirname(path)
        real = os.path.join(dir_real.get(parent) or os.path.realpath(parent), os.path.basename(path))
    if not _within(real, real_root):
        return "outside", real
    return None


def _check_media_files(ctx: _Context, jobs: List[tuple],
                       root: str, workers: int, on_missing_media: str, allow_outside_root: bool) -> None:
    """Stat every media file in parallel; missing and outside-root files are findings."""
    real_root = os.path.realpath(root)
    parents = sorted({os.path.dirname(item[0]) for job in jobs for item in job[2]})
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        dir_real = dict(zip(parents, pool.map(os.path.realpath, parents)))

        def run(batch: List[Tuple[str, str, int]]) -> List[Optional[Tuple[str, str]]]:
            return [_stat_one(item[0], real_root, dir_real) for item in batch]

        for split, m, items, *options in jobs:
            seed_eshot = bool(options and options[0])
            batches = [items[i:i + 256] for i in range(0, len(items), 256)]
            verdicts = [v for batch in pool.map(run, batches) for v in batch]
            stats = split.stats(m)
            stats.media_checked += len(items)
            missing = [(item, v[1]) for item, v in zip(items, verdicts) if v and v[0] == "missing"]
            outside = [(item, v[1]) for item, v in zip(items, verdicts) if v and v[0] == "outside"]
            stats.missing_media += len(missing)
            stats.outside_root += len(outside)
            for problems, code in ((missing, "missing_media"), (outside, "outside_root")):
                by_file: Dict[str, list] = {}
                for item, detail in problems:
                    by_file.setdefault(item[1], []).append((item, detail))
                for file, found in by_file.items():
                    (first, detail) = found[0]
                    if code == "missing_media":
                        severity = "error" if on_missing_media == "error" and not seed_eshot else "warning"
                        message = (f"{len(found)} {m} file(s) of this table do not exist under {root} (e.g. {first[0]}: "
                                   f"{detail}). " + ("The EShot builder gives them a null path." if seed_eshot else
                                   "Decoding them raises MissingMediaError unless on_missing_media='null'."))
                    else:
                        severity = "warning" if allow_outside_root else "error"
                        message = (f"{len(found)} {m} file(s) resolve through symlinks to outside the media root "
                                   f"{real_root} (e.g. {first[0]} -> {detail}). Decoding refuses files outside the root; "
                                   "pass allow_outside_root=True (--allow-outside-root) if the links are yours.")
                    ctx.add(severity, code, file, message, lines=[x[0][2] for x in found],
                            values=[x[0][0] for x in found], count=len(found), split=split.name, modality=m)


def _media_items(infos: _Infos, root: str, folder: str) -> List[Tuple[str, str, int]]:
    t = infos.table
    if t is None or not t.num_rows:
        return []
    save_folder = t.table["save_folder"].combine_chunks()
    file_name = t.table["file_name"].combine_chunks()
    paths = join_media_paths(root, save_folder, folder, file_name)  # the builder's formula
    lines = t.lines if t.lines is not None else np.arange(2, t.num_rows + 2)
    ids = t.table[infos.id_column].to_pylist()
    return [(os.path.normpath(p), t.path, int(line)) for p, line, i in zip(paths.to_pylist(), lines, ids) if p is not None]


def _eshot_seed_items(infos: _Infos, folder: str, ctx: _Context, split: SplitReport, modality: str):
    """Seed EShot media are `eshot/{folder}/{id}.*`: list the folder once, match stems."""
    t = infos.table
    lines = t.lines if t.lines is not None else np.arange(2, t.num_rows + 2)
    try:
        stems = {}
        for entry in os.scandir(folder):
            stems.setdefault(entry.name.split(".", 1)[0], entry.path)
    except OSError:
        stems = {}
    items = []
    for i, line in zip(t.table[infos.id_column].to_pylist(), lines):
        if i is None:
            continue
        items.append((stems.get(str(i), os.path.join(folder, f"{i}.*")), t.path, int(line)))
    return items


# ---------------------------------------------------------------------------------------------- entry points


def _find_dir(data_dir: str, names: Sequence[str], markers: Sequence[str]) -> Optional[str]:
    for candidate in [data_dir] + [join(data_dir, n) for n in names]:
        if any(exists(join(candidate, marker)) for marker in markers):
            return candidate
    return None


def validate_tree(
    data_dir: str,
    root_data_path: Optional[str] = None,
    check_media: bool = False,
    workers: int = DEFAULT_WORKERS,
    modalities: Optional[Sequence[str]] = None,
    media_folders: Optional[Dict[str, str]] = None,
    on_missing_media: str = "error",
    allow_outside_root: bool = False,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> Report:
    """Check an E-MM1 metadata tree and report every problem (it never raises for bad data).

    Args:
        data_dir: a split folder (`e-mm1_100m/`, `e-mm1_1m/`, `eshot/`, or their seed names) or a parent
            holding any of them, as the builders' `data_dir`.
        root_data_path: the media root (`root/save_folder/{modality}/file_name`); defaults to the
            `ROOT_DATA_PATH` environment variable. Needed only with `check_media`.
        check_media: also stat every media file of the infos tables (in parallel): missing files and
            files that resolve outside the media root (symlinks) are reported.
        workers: threads stat-ing media files.
        modalities: subset of `image`, `audio`, `video`, `points` to check (default all).
        media_folders: per-modality folder replacing `{modality}` in media paths, as the builders'.
        on_missing_media: "error" (default; missing media are errors, as decoding raises) or "null"
            (warnings, as decoding gives None).
        allow_outside_root: report media that resolve outside the root as warnings, not errors.
        shard_bytes: grouping files are read in byte ranges of this size (bounds memory).

    Returns:
        A `Report`: `ok`, `errors`, `warnings`, per-split/modality stats, `to_text()`, `to_dict()`.
    """
    unknown = [m for m in (modalities or []) if m not in MODALITIES]
    if unknown:
        raise ValueError(f"modalities: unknown {unknown}; choose from {list(MODALITIES)}")
    modalities = [m for m in MODALITIES if m in (modalities or MODALITIES)]
    check_on_missing_media(on_missing_media)
    media_folders = dict(media_folders or {})
    root = root_data_path or os.environ.get("ROOT_DATA_PATH")
    data_dir = normalize_root(data_dir)
    root = normalize_root(root) if root else None
    report = Report(data_dir=data_dir, root_data_path=root, check_media=check_media)
    ctx = _Context(report)
    if not is_remote(data_dir) and not os.path.isdir(data_dir):
        ctx.error("missing_file", data_dir, "data_dir is not a folder.")
        return report
    phase1_markers = [f"nn_{k}/data_groups.csv" for k in range(1, NUM_NEIGHBOURS + 1)]
    phase1 = _find_dir(data_dir, PHASE1_FOLDERS, phase1_markers)
    phase2 = _find_dir(data_dir, PHASE2_FOLDERS, ["triplets.csv"])
    eshot = _find_dir(data_dir, ESHOT_FOLDERS, ["eshot_audio_info.csv", "eshot_points_info.csv"])
    if not (phase1 or phase2 or eshot):
        names = ", ".join(PHASE1_FOLDERS + PHASE2_FOLDERS + ESHOT_FOLDERS)
        ctx.error("missing_file", data_dir, f"no E-MM1 metadata found: expected nn_k/data_groups.csv, triplets.csv or "
                  f"eshot_*_info.csv here or in one of {names}.")
        return report
    media_jobs: List[tuple] = []  # (split, modality, [(path, table file, line)], seed EShot?)
    want_media = check_media and root is not None and not is_remote(root)
    if check_media and root is None:
        ctx.error("no_media_root", data_dir, "check_media needs the media root: pass root_data_path= / "
                  "--root-data-path or set ROOT_DATA_PATH.")
    elif check_media and is_remote(root):
        ctx.note("remote_media", root, "media under a URL are not checked (local roots only).")
    for name, path, run in (("phase1", phase1, lambda s: _validate_phase1(ctx, s, modalities, shard_bytes, check_media)),
                            ("phase2", phase2, lambda s: _validate_phase2(ctx, s, modalities))):
        if path is None:
            continue
        split = SplitReport(name, path)
        report.splits.append(split)
        media = run(split)
        if want_media:
            for m, infos in media.items():
                media_jobs.append((split, m, _media_items(infos, root, media_folders.get(m, m))))
    if eshot is not None:
        split = SplitReport("eshot", eshot)
        report.splits.append(split)
        media = _validate_eshot(ctx, split)
        if want_media:
            for m, (infos, folder) in media.items():
                if split.schema == "released":
                    media_jobs.append((split, m, _media_items(infos, root, folder)))
                else:
                    media_jobs.append((split, m, _eshot_seed_items(infos, join(eshot, folder), ctx, split, m), True))
    if media_jobs:
        _check_media_files(ctx, media_jobs, root, workers, on_missing_media, allow_outside_root)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    report.findings.sort(key=lambda f: order[f.severity])  # stable: file order within a severity
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emm1 validate",
        description="Check an E-MM1 metadata tree (and with --check-media its media files) and report every problem. "
        "Exit status: 0 no errors, 1 errors found, 2 bad arguments.",
    )
    parser.add_argument("data_dir", help="e-mm1_100m/, e-mm1_1m/, eshot/ (or seed names), or a parent folder")
    parser.add_argument("--root-data-path", default=None, help="media root (default: $ROOT_DATA_PATH)")
    parser.add_argument("--check-media", action="store_true", help="stat every media file (in parallel)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="threads stat-ing media files")
    parser.add_argument("--modalities", nargs="+", choices=MODALITIES, default=None)
    parser.add_argument("--media-folder", action="append", type=media_folder_arg, default=[], metavar="MODALITY=FOLDER",
                        help="folder replacing {modality} in media paths, e.g. audio=video (repeatable)")
    parser.add_argument("--on-missing-media", choices=("error", "null"), default="error",
                        help="'null': missing media are warnings (as decoding gives None)")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="media resolving outside the root through symlinks are warnings, not errors")
    parser.add_argument("--shard-bytes", type=int, default=DEFAULT_SHARD_BYTES, help=argparse.SUPPRESS)
    return parser


def cli(argv: Optional[List[str]] = None) -> int:
    """`emm1 validate ...`: print the report (text or JSON); 0 when no errors, 1 otherwise."""
    parser = build_parser()
    args = parser.parse_args(argv)
    report = validate_tree(
        args.data_dir,
        root_data_path=args.root_data_path,
        check_media=args.check_media,
        workers=args.workers,
        modalities=args.modalities,
        media_folders=dict(args.media_folder),
        on_missing_media=args.on_missing_media,
        allow_outside_root=args.allow_outside_root,
        shard_bytes=args.shard_bytes,
    )
    print(report.to_json() if args.json else report.to_text())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(cli())
