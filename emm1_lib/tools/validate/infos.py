"""Infos tables (ids, path parts) and the references grouping / triplet files make to them."""
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emm1_lib.errors import EMM1DataError
from emm1_lib.io.fs import exists
from emm1_lib.schema import rules
from emm1_lib.schema.ids import DanglingCount
from emm1_lib.schema.ids import IdLookup
from emm1_lib.schema.infos import TEXT_COLUMNS
from emm1_lib.schema.infos import media_columns
from emm1_lib.schema.infos import text_batches
from emm1_lib.schema.layout import PROVENANCE_COLUMNS
from emm1_lib.tools.validate.reading import Table, read_table
from emm1_lib.tools.validate.report import Collector, ModalityStats, SplitReport


@dataclass
class Infos:
    """What the reference checks need of one infos table."""

    path: str
    id_column: str
    known_ids: pa.Array  # distinct valid ids
    lookup: Optional[IdLookup]  # the builder's lookup when it could be built (no invalid or duplicate id)
    table: Optional[Table] = None

    def found(self, ids: pa.Array) -> pa.Array:
        """Boolean per id: has an infos row (null ids give null)."""
        if self.lookup is not None:
            return pc.is_valid(self.lookup.positions(ids))
        return pc.if_else(pc.is_valid(ids), pc.is_in(ids, value_set=self.known_ids), pa.scalar(None, pa.bool_()))


def check_ids(ctx: Collector, t: Table, id_column: str, stats: ModalityStats, split: str, modality: str) -> Infos:
    """The infos id rule (`rules.infos_ids`: missing/negative and duplicated ids, every row), then the builder's lookup."""
    ids = t.table[id_column].combine_chunks()
    violations = rules.infos_ids(ids, t.path, id_column, t.rows)
    ctx.violations(violations, split, modality)
    for v in violations:
        if v.code == "invalid_id":
            stats.invalid_ids += v.count
        elif v.code == "duplicate_id":
            stats.duplicate_ids = list(v.values)
    lookup = None
    if not violations:
        try:
            lookup = IdLookup(ids, t.path, id_column)
        except EMM1DataError as err:  # pragma: no cover - the rule above covers what it refuses
            ctx.error("invalid_id", t.path, str(err), split=split, modality=modality)
    known = pc.unique(pc.filter(ids, pc.fill_null(pc.greater_equal(ids, 0), False)))
    return Infos(t.path, id_column, known, lookup, t)


def check_paths(ctx: Collector, t: Table, id_column: str, stats: ModalityStats, split: str, modality: str,
                columns: Sequence[str] = ("save_folder", "file_name")) -> np.ndarray:
    """Every unsafe path part (`rules.unsafe_path_parts`); returns the bad rows."""
    violations = rules.unsafe_path_parts(t.table, columns, t.path, id_column, t.rows)
    ctx.violations(violations, split, modality)
    bad = np.isin(t.all_lines(), [line for v in violations for line in v.lines])
    stats.unsafe_paths = int(bad.sum())
    return bad


def read_media_infos(ctx: Collector, split: SplitReport, modality: str, path: str,
                     extra_columns: Sequence[str] = PROVENANCE_COLUMNS) -> Optional[Infos]:
    stats = split.stats(modality)
    stats.infos_file = path
    if not exists(path):
        ctx.error("missing_file", path, f"{path} not found: the {modality} infos table of {split.name}.",
                  split=split.name, modality=modality)
        return None
    required = media_columns(modality)
    types = {required[0]: pa.int64(), "save_folder": pa.string(), "file_name": pa.string()}
    types.update({c: pa.string() for c in extra_columns})
    known = list(types) + ["file_id", "youtube_id", "start_time", "end_time"]
    t = read_table(ctx, path, types, required, known, split.name, modality, split)
    if t is None:
        return None
    stats.infos_rows = t.num_rows
    infos = check_ids(ctx, t, required[0], stats, split.name, modality)
    infos.table = t.without(check_paths(ctx, t, required[0], stats, split.name, modality))
    return infos


def read_text_infos(ctx: Collector, split: SplitReport, path: str) -> Optional[Infos]:
    """`infos/text.csv`, read by the builder's streaming reader (same blocks, same limits)."""
    stats = split.stats("text")
    stats.infos_file = path
    if not exists(path):
        ctx.error("missing_file", path, f"{path} not found: the captions of {split.name}.", split=split.name, modality="text")
        return None
    columns = list(TEXT_COLUMNS)
    t = read_table(ctx, path, TEXT_COLUMNS, columns, columns, split.name, "text", split,
                   reader=lambda: pa.Table.from_batches(list(text_batches(path)), pa.schema(TEXT_COLUMNS)))
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
    return check_ids(ctx, t, "encord_text_id", stats, split.name, "text")


@dataclass
class References:
    """References of one id column in one file: counts and the distinct dangling ids."""

    infos: Optional[Infos]
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

    def flush(self, ctx: Collector, file: str, column: str, stats: ModalityStats, split: str, modality: str) -> None:
        """Add the counts to `stats` and report null, negative and dangling ids (warnings: the builder keeps the rows)."""
        stats.references += self.references
        stats.null_references += self.nulls
        if self.nulls:
            ctx.warning("null_id", file, f"{self.nulls} row(s) have an empty {column}; the builder keeps them with null "
                        f"{modality} values.", count=self.nulls, split=split, modality=modality)
        if self.negative:
            ctx.warning("negative_id", file, f"{self.negative} {column} value(s) are negative (no infos row can match "
                        "them; counted as dangling).", count=self.negative, split=split, modality=modality)
        if self.counter.count:
            ids = np.unique(np.concatenate(self.dangling_ids))
            lines = np.sort(np.concatenate(self.dangling_lines))
            stats.dangling += self.counter.count
            stats.dangling_ids = sorted(set(stats.dangling_ids) | set(ids.tolist()))
            ctx.warning("dangling_id", file,
                        f"{self.counter.count} {column} value(s) ({len(ids)} distinct) have no row in "
                        f"{self.infos.path if self.infos else 'the infos table'}; the builder keeps those rows with null "
                        "paths/captions and counts them in a DanglingIdWarning.",
                        lines=lines, values=ids.tolist(), count=self.counter.count, split=split, modality=modality)


def references_to(infos: Optional[Infos], column: str) -> References:
    """An empty `References` of `column` to `infos` (which may be missing: then nothing dangles)."""
    return References(infos, DanglingCount(column, infos.path if infos else ""))


def row_hashes(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    """A 64-bit hash per row (for counting identical rows; nulls hash as a marker)."""
    h = np.full(table.num_rows, 0x9E3779B97F4A7C15, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in columns:
            col = table[name]
            col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            if pa.types.is_integer(col.type):
                v = pc.fill_null(col.cast(pa.int64()), -(2**62)).to_numpy(zero_copy_only=False).view(np.uint64)
            else:  # text: its dictionary codes (equal strings, equal codes)
                codes = pc.fill_null(col.dictionary_encode().indices.cast(pa.int64()), -(2**62))
                v = codes.to_numpy(zero_copy_only=False).view(np.uint64)
            h = (h ^ v) * np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
    return h


def duplicate_count(hashes: List[np.ndarray]) -> int:
    if not hashes:
        return 0
    allh = np.concatenate(hashes)
    return int(len(allh) - len(np.unique(allh)))
