"""Reading a table as the builders do, and when their reader refuses it, reading it again to list every bad line.

The shared readers (`emm1_lib.io.tables`) stop at the first problem. The diagnostic reader reads every wanted
column as bytes with pyarrow's `invalid_row_handler` (rows with the wrong number of fields are recorded and
skipped), then checks each cell: UTF-8, the id rule for id columns (`rules.id_violations`) and for other
integer columns the reader's own grammar (`rules.int64_cells`). Bad lines are reported and left out; the rest
keep the wanted types and are checked.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from emm1_lib.errors import EMM1DataError
from emm1_lib.io.tables import column_violations
from emm1_lib.io.tables import first_bad_quote_line
from emm1_lib.io.tables import open_binary
from emm1_lib.io.tables import read_csv_table
from emm1_lib.io.tables import read_header
from emm1_lib.schema import rules
from emm1_lib.tools.validate.report import Collector, SplitReport

_BLOCK = 16 << 20
_UTF8_PIECE = 4096  # rows cast to text at a time once a column holds bytes that are not UTF-8


@dataclass
class Table:
    """A table that was read, with the file line of each row (None: row i is on line i + 2)."""

    path: str
    header: List[str]
    table: pa.Table
    lines: Optional[np.ndarray] = None

    def line(self, row: int) -> int:
        return int(self.lines[row]) if self.lines is not None else row + 2

    def lines_of(self, rows: Iterable[int]) -> List[int]:
        return [self.line(int(r)) for r in rows]

    def all_lines(self) -> np.ndarray:
        return self.lines if self.lines is not None else np.arange(2, self.num_rows + 2, dtype=np.int64)

    @property
    def rows(self) -> rules.Rows:
        """Where the rows are, for the rules."""
        return rules.Rows(lines=self.lines)

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def without(self, bad: np.ndarray) -> "Table":
        """The table without the rows where `bad` is True."""
        if not bad.any():
            return self
        return Table(self.path, self.header, self.table.filter(pa.array(~bad)), self.all_lines()[~bad])


def _not_utf8(cells: pa.Array) -> np.ndarray:
    """Boolean per cell: bytes that are not UTF-8. Pieces that cast cleanly cost one cast; only a piece that
    fails is checked value by value."""
    bad = np.zeros(len(cells), dtype=bool)
    try:
        cells.cast(pa.string())
        return bad
    except pa.ArrowInvalid:
        pass
    for start in range(0, len(cells), _UTF8_PIECE):
        piece = cells.slice(start, _UTF8_PIECE)
        try:
            piece.cast(pa.string())
            continue
        except pa.ArrowInvalid:
            pass
        for i, value in enumerate(piece.to_pylist()):
            if value is not None:
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError:
                    bad[start + i] = True
    return bad


def diagnose_csv(ctx: Collector, path: str, header: List[str], types: Dict[str, pa.DataType], reason: str,
                 split: Optional[str], modality: Optional[str], explained: bool = False,
                 missing_ids_are_errors: bool = False) -> Optional[Table]:
    """Re-read a CSV the shared reader refused, listing every bad line; return the good rows.

    `reason` (the shared reader's refusal) is reported as `unparsable` when no bad line is found, unless
    the caller already reported it (`explained`). Id columns follow the id rule (`rules.id_violations`); with
    `missing_ids_are_errors` (grouping files) an empty id is an error too, as the grouping reader has it.
    """
    wanted = [c for c in types if c in header]
    skipped: List[Tuple[int, int, str]] = []

    def on_invalid(row) -> str:
        skipped.append((row.number, row.actual_columns, row.text))
        return "skip"

    read_options = pacsv.ReadOptions(use_threads=False, block_size=_BLOCK)
    try:
        with open_binary(path) as stream:
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
    # record numbers: with a header, the first data record is 2
    total = raw.num_rows + len(skipped)
    skipped_records = sorted(r[0] for r in skipped if r[0] is not None and r[0] >= 0)
    all_records = np.arange(2, 2 + total, dtype=np.int64)
    kept_lines = np.setdiff1d(all_records, np.array(skipped_records, dtype=np.int64), assume_unique=True)
    if len(kept_lines) != raw.num_rows:  # record numbers unknown: fall back to positions
        kept_lines = np.arange(2, 2 + raw.num_rows, dtype=np.int64)
    found_any = False
    if skipped:
        found_any = True
        ctx.error(
            "ragged_row", path,
            f"{len(skipped)} line(s) do not have the {len(header)} fields of the header (e.g. "
            f"{skipped[0][2][:80]!r} has {skipped[0][1]}); a stray comma or quote is the usual cause. "
            "These lines are left out of the other checks.",
            lines=[r[0] for r in skipped], values=[r[2][:200] for r in skipped], count=len(skipped),
            split=split, modality=modality,
        )
    bad = np.zeros(raw.num_rows, dtype=bool)
    columns: Dict[str, pa.Array] = {}
    for name in wanted:
        cells = raw[name].combine_chunks()
        invalid_utf8 = np.flatnonzero(_not_utf8(cells))
        if len(invalid_utf8):
            found_any = True
            bad[invalid_utf8] = True
            ctx.error(
                "not_utf8", path,
                f"column {name!r}: {len(invalid_utf8)} value(s) are not valid UTF-8. Re-encode the file as UTF-8; "
                "these lines are left out of the other checks.",
                lines=kept_lines[invalid_utf8], values=[cells[int(i)].as_py()[:80] for i in invalid_utf8[:50]],
                count=len(invalid_utf8), split=split, modality=modality,
            )
            cells = pc.if_else(pa.array(bad), pa.scalar(None, cells.type), cells)
        text = cells.cast(pa.string())
        if pa.types.is_integer(types[name]) and rules.is_id_column(name):
            values, invalid = rules.parse_ids(text)  # the readers' id rule, every cell
            violations = rules.id_violations(path, name, text, values, invalid, lambda rows: kept_lines[rows],
                                             missing_ids_are_errors, ignore=bad.copy())
            if violations:
                found_any = True
                ctx.violations(violations, split, modality)
                if invalid is not None:
                    bad |= invalid
                if missing_ids_are_errors:
                    bad |= pc.is_null(values).to_numpy(zero_copy_only=False)
            columns[name] = values
        elif pa.types.is_integer(types[name]):
            values, not_int = rules.int64_cells(text)  # the reader's grammar, every cell
            not_int = np.flatnonzero(not_int)
            if len(not_int):
                found_any = True
                bad[not_int] = True
                ctx.error(
                    "not_integer", path,
                    f"column {name!r}: {len(not_int)} value(s) are not integers in the int64 range. "
                    "These lines are left out of the other checks.",
                    lines=kept_lines[not_int], values=[text[int(i)].as_py()[:40] for i in not_int[:50]],
                    count=len(not_int), split=split, modality=modality,
                )
            columns[name] = values
        else:
            columns[name] = text
    if not found_any and not explained:
        ctx.error("unparsable", path, reason, split=split, modality=modality)
    table = pa.table({name: columns[name] for name in wanted} if wanted else {"_": pa.nulls(raw.num_rows)})
    return Table(path, list(header), table.filter(pa.array(~bad)), kept_lines[~bad])


def check_header(ctx: Collector, path: str, header: List[str], required: Sequence[str], known: Sequence[str],
                 split: str, modality: Optional[str]) -> bool:
    """Missing and repeated columns (errors), unknown ones (note): the readers' header rule. False when unusable."""
    return ctx.violations(column_violations(path, header, required, known), split, modality)


def read_header_or_report(ctx: Collector, path: str, split: str, modality: Optional[str] = None) -> Optional[List[str]]:
    """The header, or None after reporting why it cannot be read."""
    try:
        return read_header(path)
    except EMM1DataError as err:
        ctx.error("unreadable", path, str(err), lines=[err.line] if err.line else [], split=split, modality=modality)
        return None


def read_table(ctx: Collector, path: str, types: Dict[str, pa.DataType], required: Sequence[str],
               known: Sequence[str], split: str, modality: Optional[str], split_report: SplitReport,
               reader: Optional[Callable[[], pa.Table]] = None) -> Optional[Table]:
    """Read a whole CSV with the builder's reader (`reader`, default `read_csv_table`), falling back to the
    diagnostic reader.

    Broken quoting is found by the shared reader (it refuses an odd number of double quotes) and located
    with its own `first_bad_quote_line`: one `unbalanced_quote` finding, with the line, carrying the
    reader's message; the diagnostic reader then lists the other bad lines. A record too long for the
    reader is one finding with its line (the diagnostic reader could not read it either).
    """
    header = read_header_or_report(ctx, path, split, modality)
    if header is None:
        return None
    if not check_header(ctx, path, header, required, known, split, modality):
        return None
    try:
        table = Table(path, header, reader() if reader is not None else read_csv_table(path, types, required))
    except EMM1DataError as err:
        if err.code == "record_too_large":
            ctx.error(err.code, path, str(err), lines=[err.line] if err.line else [], split=split, modality=modality)
            return None
        quote_line = err.line if err.code == "unbalanced_quote" else first_bad_quote_line(path)
        if quote_line is not None:
            ctx.error("unbalanced_quote", path, str(err), lines=[quote_line], split=split, modality=modality)
        table = diagnose_csv(ctx, path, header, types, str(err), split, modality, explained=quote_line is not None)
    if table is not None:
        split_report.tables[path] = table.num_rows
    return table
