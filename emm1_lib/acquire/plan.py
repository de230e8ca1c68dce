"""The download plan: which media files the chosen configs reference, where each comes from and where it goes.

Built with Arrow over whole columns: the ids a config references (`pc.unique` over the grouping, triplet or
EShot files) select infos rows with `pc.is_in`; no per-row Python. The destination of an item is the builders'
formula, `ROOT/save_folder/{modality folder}/file_name` (`schema.paths`), after `schema.rules.unsafe_path_parts`
refused path parts that could leave ROOT. A plan is a list of independent `Task`s (one source, one shard),
so a distributed engine can run them as they are.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emm1_lib.errors import EMM1DataError, raise_first
from emm1_lib.io.fs import exists, join
from emm1_lib.io.tables import read_csv_table, read_header
from emm1_lib.schema import rules
from emm1_lib.schema.eshot_files import CATEGORY_FILES, ID_COLUMNS, INFO_FILES, locate_eshot_dir, read_category_ids
from emm1_lib.schema.layout import MODALITIES, NUM_NEIGHBOURS, PHASE1_FOLDERS, PHASE2_FOLDERS, locate_split_dir
from emm1_lib.schema.paths import join_media_paths

PHASE1_CONFIGS = tuple(f"phase1_nn{k}" for k in range(1, NUM_NEIGHBOURS + 1))
CONFIGS = PHASE1_CONFIGS + ("phase1_all", "phase2_triplets", "eshot_audio", "eshot_points")
# Source names of the EShot rows, whose info tables have no `source_dataset` column.
ESHOT_SOURCES = {"audio": "EShot audio", "points": "EShot points"}
# One row per planned file; `destination` is relative to ROOT (`save_folder/{folder}/file_name`).
ITEM_SCHEMA = pa.schema([
    ("modality", pa.string()), ("id", pa.int64()), ("source", pa.string()), ("file_id", pa.string()),
    ("youtube_id", pa.string()), ("start_time", pa.float64()), ("end_time", pa.float64()),
    ("destination", pa.string()), ("split", pa.string()),
])
DEFAULT_SHARD_ITEMS = 1000


@dataclass
class Task:
    """One independent unit of work: items of one source (a shard of them), fetched by one mechanism."""

    source: str
    shard: int
    items: pa.Table  # ITEM_SCHEMA rows


@dataclass
class Plan:
    """Every planned file (`items`, ITEM_SCHEMA) and the sources the metadata names with their counts."""

    items: pa.Table
    source_counts: Dict[str, int] = field(default_factory=dict)

    def tasks(self, shard_items: int = DEFAULT_SHARD_ITEMS, whole: Sequence[str] = ()) -> List[Task]:
        """The plan cut into independent tasks: per source (in name order), shards of at most `shard_items`;
        the sources named in `whole` (streamed archives, read once for all their items) in one task each."""
        tasks = []
        sources = self.items["source"]
        for source in sorted(self.source_counts):
            rows = self.items.filter(pc.equal(sources, source))
            size = max(rows.num_rows, 1) if source in whole else shard_items
            for shard, start in enumerate(range(0, rows.num_rows, size)):
                tasks.append(Task(source, shard, rows.slice(start, size)))
        return tasks


def _unique_ids(columns: List[pa.ChunkedArray]) -> pa.Array:
    if not columns:
        return pa.array([], pa.int64())
    values = pa.chunked_array([c for col in columns for c in col.chunks], pa.int64())
    return pc.unique(values.drop_null())


def _released_infos_error(path: str) -> EMM1DataError:
    return EMM1DataError(
        f"{path}: no 'source_dataset' column. This is the seed draft's infos table, which carries no source columns "
        "(source_dataset, file_id, youtube_id, start_time, end_time), so nothing says where its media come from. "
        "`emm1 download` needs the released metadata (e-mm1_100m/, e-mm1_1m/, eshot/ from the Hub).",
        file=path, code="seed_schema",
    )


def _infos_items(split_dir: str, split: str, modality: str, ids: pa.Array) -> pa.Table:
    """The infos rows of `modality` whose id is in `ids`, as ITEM_SCHEMA rows."""
    path = join(split_dir, "infos", f"{modality}.csv")
    header = read_header(path)
    id_column = f"encord_{modality}_id"
    if "source_dataset" not in header:
        raise _released_infos_error(path)
    types = {id_column: pa.int64(), "source_dataset": pa.string(), "file_id": pa.string(), "youtube_id": pa.string(),
             "start_time": pa.float64(), "end_time": pa.float64(), "save_folder": pa.string(), "file_name": pa.string()}
    table = read_csv_table(path, types, required=[id_column, "source_dataset", "save_folder", "file_name"])
    table = table.filter(pc.is_in(table[id_column], value_set=ids))
    raise_first(rules.unsafe_path_parts(table, ["save_folder", "file_name"], path, id_column))
    return _as_items(table, modality, id_column, table["source_dataset"], split)


def _as_items(table: pa.Table, modality: str, id_column: str, source, split: str) -> pa.Table:
    n = table.num_rows

    def column(name: str, type_: pa.DataType):
        if name in table.column_names:
            return table[name].cast(type_)
        return pa.nulls(n, type_)

    destination = join_media_paths("", table["save_folder"].combine_chunks(), modality,
                                   table["file_name"].combine_chunks()) if n else pa.array([], pa.string())
    if n:
        destination = pc.utf8_slice_codeunits(destination, 1)  # drop the empty root's "/"
    if isinstance(source, str):
        source = pa.array([source] * n, pa.string())
    return pa.table({
        "modality": pa.array([modality] * n, pa.string()), "id": column(id_column, pa.int64()),
        "source": source, "file_id": column("file_id", pa.string()), "youtube_id": column("youtube_id", pa.string()),
        "start_time": column("start_time", pa.float64()), "end_time": column("end_time", pa.float64()),
        "destination": destination, "split": pa.array([split] * n, pa.string()),
    }, schema=ITEM_SCHEMA)


def _phase1_ids(split_dir: str, ks: Sequence[int], modalities: Sequence[str]) -> Dict[str, pa.Array]:
    found: Dict[str, List[pa.ChunkedArray]] = {m: [] for m in modalities}
    for k in ks:
        path = join(split_dir, f"nn_{k}", "data_groups.csv")
        columns = [f"encord_{m}_id" for m in modalities]
        table = read_csv_table(path, {c: pa.int64() for c in columns}, required=columns)
        for m in modalities:
            found[m].append(table[f"encord_{m}_id"])
    return {m: _unique_ids(cols) for m, cols in found.items()}


def _phase2_ids(split_dir: str, modalities: Sequence[str]) -> Dict[str, pa.Array]:
    path = join(split_dir, "triplets.csv")
    if "paired_modality" not in read_header(path):
        raise _released_infos_error(join(split_dir, "infos", "image.csv"))
    types = {"paired_modality": pa.string(), "annotated_modality": pa.string(),
             "encord_paired_id": pa.int64(), "encord_annotated_id": pa.int64()}
    table = read_csv_table(path, types, required=list(types))
    out = {}
    for m in modalities:
        parts = [table["encord_paired_id"].filter(pc.equal(table["paired_modality"], m)),
                 table["encord_annotated_id"].filter(pc.equal(table["annotated_modality"], m))]
        out[m] = _unique_ids(parts)
    return out


def _eshot_items(eshot_dir: str, modality: str) -> pa.Table:
    path = join(eshot_dir, INFO_FILES[modality])
    header = read_header(path)
    if "file_name" not in header:
        raise EMM1DataError(
            f"{path}: no 'file_name'/'save_folder' columns: this is the seed draft's EShot table, whose media ship "
            "inside the EShot folder. `emm1 download` needs the released EShot metadata.", file=path, code="seed_schema")
    id_column = ID_COLUMNS[modality]
    types = {id_column: pa.int64(), "file_id": pa.string(), "youtube_id": pa.string(), "start_time": pa.float64(),
             "end_time": pa.float64(), "save_folder": pa.string(), "file_name": pa.string()}
    table = read_csv_table(path, types, required=[id_column, "save_folder", "file_name"])
    by_category = read_category_ids(join(eshot_dir, CATEGORY_FILES[modality]), modality)
    ids = pa.array(np.concatenate(list(by_category.values()) or [np.zeros(0, np.int64)]), pa.int64())
    table = table.filter(pc.is_in(table[id_column], value_set=ids))
    raise_first(rules.unsafe_path_parts(table, ["save_folder", "file_name"], path, id_column))
    return _as_items(table, modality, id_column, ESHOT_SOURCES[modality], "eshot")


def build_plan(data_dir: str, configs: Optional[Sequence[str]] = None, modalities: Optional[Sequence[str]] = None,
               sources: Optional[Sequence[str]] = None, limit: Optional[int] = None) -> Plan:
    """The media files referenced by `configs` (default: every config) of the released metadata under `data_dir`.

    Args:
        data_dir: the metadata folder (holding `e-mm1_100m/`, `e-mm1_1m/`, `eshot/`, or one of them).
        configs: config names (`CONFIGS`); None: all.
        modalities: keep these modalities (None: all).
        sources: keep these `source_dataset` values (EShot rows: "EShot audio", "EShot points"); None: all.
        limit: keep the first `limit` items of each source (table order), for a trial run.

    Items are unique by destination (phase 1 and 2 share save folders). Raises `EMM1DataError` naming the
    file for seed-draft metadata, unsafe path parts or unreadable tables, and `ValueError` for unknown configs.
    """
    configs = list(configs or CONFIGS)
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown config(s) {unknown}; choose from {list(CONFIGS)}")
    modalities = list(modalities or MODALITIES)
    bad = [m for m in modalities if m not in MODALITIES]
    if bad:
        raise ValueError(f"unknown modality(ies) {bad}; choose from {list(MODALITIES)}")
    parts: List[pa.Table] = []
    ks = sorted({int(c[len("phase1_nn"):]) for c in configs if c in PHASE1_CONFIGS}
                | (set(range(1, NUM_NEIGHBOURS + 1)) if "phase1_all" in configs else set()))
    if ks:
        split_dir = _split_dir(data_dir, PHASE1_FOLDERS, "nn_1/data_groups.csv", "phase 1")
        ks = [k for k in ks if exists(join(split_dir, f"nn_{k}", "data_groups.csv"))] or ks
        for m, ids in _phase1_ids(split_dir, ks, modalities).items():
            parts.append(_infos_items(split_dir, "phase1", m, ids))
    if "phase2_triplets" in configs:
        split_dir = _split_dir(data_dir, PHASE2_FOLDERS, "triplets.csv", "phase 2")
        for m, ids in _phase2_ids(split_dir, modalities).items():
            parts.append(_infos_items(split_dir, "phase2", m, ids))
    for modality in ("audio", "points"):
        if f"eshot_{modality}" in configs and modality in modalities:
            eshot_dir = locate_eshot_dir(data_dir)
            if eshot_dir is None:
                raise EMM1DataError(f"{data_dir}: no EShot folder (eshot/) for config eshot_{modality}.",
                                    file=data_dir, code="missing_file")
            parts.append(_eshot_items(eshot_dir, modality))
    items = pa.concat_tables(parts) if parts else ITEM_SCHEMA.empty_table()
    items = _unique_by(items, "destination")
    counts = _counts(items)
    if sources is not None:
        items = items.filter(pc.is_in(items["source"], value_set=pa.array(list(sources), pa.string())))
    if limit is not None:
        items = _first_per_source(items, limit)
    return Plan(items, {s: n for s, n in _counts(items).items()}) if sources or limit is not None else Plan(items, counts)


def _split_dir(data_dir: str, folders, marker: str, what: str) -> str:
    found = locate_split_dir(data_dir, folders, [marker])
    if found is None:
        raise EMM1DataError(f"{what}: no {marker} under {data_dir} or its {' / '.join(folders)} folder.",
                            file=data_dir, code="missing_file")
    return found


def _unique_by(items: pa.Table, column: str) -> pa.Table:
    if not items.num_rows:
        return items
    numbered = items.append_column("_row", pa.array(np.arange(items.num_rows, dtype=np.int64)))
    first = numbered.group_by(column).aggregate([("_row", "min")])["_row_min"].to_numpy()
    return items.take(pa.array(np.sort(first)))


def _counts(items: pa.Table) -> Dict[str, int]:
    if not items.num_rows:
        return {}
    counted = pc.value_counts(items["source"].fill_null("<no source_dataset>"))
    return {v["values"].as_py(): v["counts"].as_py() for v in counted}


def _first_per_source(items: pa.Table, limit: int) -> pa.Table:
    if not items.num_rows:
        return items
    codes = pc.dictionary_encode(items["source"].fill_null("")).combine_chunks().indices.to_numpy()
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.searchsorted(sorted_codes, sorted_codes, side="left")
    rank = np.empty(len(codes), np.int64)
    rank[order] = np.arange(len(codes)) - starts
    return items.filter(pa.array(rank < limit))
