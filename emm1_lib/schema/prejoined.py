"""The pre-joined Parquet generation (the official Hub copy): finding its files, reading them by role, writing them.

Layout (UPSTREAM.md, "The official Hub copy"): `encord-team/E-MM1-100M` holds `data/nn_{01..16}.parquet`, one
file per neighbour rank, each row a caption with its k-th image, audio clip, video and point cloud already
joined; `encord-team/E-MM1-1M` holds `data/{paired}_to_{annotated}.parquet`, one file per modality pair. Columns
are found by role (`emm1_lib.schema.roles`); the data rules are `emm1_lib.schema.rules` (`prejoined_*`).

`data_dir` may be the repository root (holding `data/`), the `data/` folder itself, or a parent holding the
repository under its Hub name (`E-MM1-100M/`, `E-MM1-1M/`) or a CSV generation's split folder name. Files may
be local or URLs (fsspec), read by row group: only the footer and the wanted columns of one row group at a time.

Writing (`write_prejoined_phase1/2`): the same joins from a CSV generation, as `emm1 sample --schema hub`
and `emm1 export --layout hub` produce them (what a maintainer would push).
"""
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from emm1_lib.errors import EMM1DataError
from emm1_lib.errors import Violation
from emm1_lib.errors import raise_first
from emm1_lib.io.fs import exists
from emm1_lib.io.fs import is_remote
from emm1_lib.io.fs import join
from emm1_lib.io.fs import open_binary
from emm1_lib.io.fs import url_to_fs
from emm1_lib.io.tables import byte_ranges
from emm1_lib.io.tables import check_columns
from emm1_lib.io.tables import read_csv_range
from emm1_lib.io.tables import read_header
from emm1_lib.schema import rules
from emm1_lib.schema.infos import MediaInfo
from emm1_lib.schema.infos import TextInfo
from emm1_lib.schema.layout import MODALITIES
from emm1_lib.schema.layout import PHASE1_FOLDERS
from emm1_lib.schema.layout import PHASE2_FOLDERS
from emm1_lib.schema.layout import PROVENANCE_COLUMNS
from emm1_lib.schema.layout import split_dir_candidates
from emm1_lib.schema.paths import join_media_paths
from emm1_lib.schema.paths import join_prefixed_paths
from emm1_lib.schema.paths import unsafe_mask
from emm1_lib.schema.roles import HUB_DATA_FOLDER
from emm1_lib.schema.roles import HUB_PHASE1_FOLDERS
from emm1_lib.schema.roles import HUB_PHASE2_FOLDERS
from emm1_lib.schema.roles import ColumnMap
from emm1_lib.schema.roles import file_key
from emm1_lib.schema.roles import phase1_file_name
from emm1_lib.schema.roles import phase1_roles
from emm1_lib.schema.roles import phase2_file_name
from emm1_lib.schema.roles import phase2_roles
from emm1_lib.schema.roles import resolve_columns
from emm1_lib.schema.triplets import DEFAULT_ANNOTATION_LABELS
from emm1_lib.schema.triplets import normalize_triplets
from emm1_lib.schema.triplets import read_annotation_labels

# Parquet conventions of what this project writes (the export's): zstd, bounded row groups, a page index.
PARQUET_COMPRESSION = "zstd"
ROW_GROUP_ROWS = 100_000
MAPPING_FILE = "annotation_mapping.csv"
# Columns read as Parquet dictionaries: a handful of distinct values, so paths are joined once per value.
_DICTIONARY_FIELDS = ("save_folder",) + PROVENANCE_COLUMNS
FileKey = Union[int, Tuple[str, str]]


# -- finding the files ------------------------------------------------------------------------------


def _phase(phase1: bool) -> str:
    return "phase1" if phase1 else "phase2"


def list_names(folder: str) -> List[str]:
    """The names of the files in a local folder or under a URL (empty when it does not exist or is no folder)."""
    if not is_remote(folder):
        try:
            return sorted(entry.name for entry in os.scandir(folder) if entry.is_file())
        except OSError:
            return []
    fs, fs_path = url_to_fs(folder)  # the Hub repo's token and clear errors, as for the CSV generations
    try:
        entries = fs.ls(fs_path, detail=True)
    except (OSError, ValueError):  # FileNotFoundError included
        return []
    return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "file")


def prejoined_candidates(data_dir: str, phase1: bool) -> List[str]:
    """Folders that may hold a phase's Parquet files, in the order tried: each CSV-generation candidate folder
    and each Hub repository name below `data_dir`, its `data/` folder first."""
    folders = (PHASE1_FOLDERS + HUB_PHASE1_FOLDERS) if phase1 else (PHASE2_FOLDERS + HUB_PHASE2_FOLDERS)
    out: List[str] = []
    for base in split_dir_candidates(data_dir, folders):
        out += [join(base, HUB_DATA_FOLDER), base]
    return out


def prejoined_files(folder: str, phase1: bool) -> Dict[FileKey, List[str]]:
    """The pre-joined files of a phase in `folder`: {k or (paired, annotated): [paths, shards in name order]}."""
    found: Dict[FileKey, List[str]] = {}
    for name in list_names(folder):
        key = file_key(name)
        if key is not None and isinstance(key, int) == phase1:
            found.setdefault(key, []).append(join(folder, name))
    return found


def locate_prejoined_dir(data_dir: str, phase1: bool) -> Optional[str]:
    """The first candidate folder (`prejoined_candidates`) holding a pre-joined file of the phase, or None."""
    for candidate in prejoined_candidates(data_dir, phase1):
        if prejoined_files(candidate, phase1):
            return candidate
    return None


def mapping_file(folder: str) -> Optional[str]:
    """`annotation_mapping.csv` beside the E-MM1:1M Parquet files or in the repository root above `data/`."""
    places = [folder]
    if folder.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] == HUB_DATA_FOLDER:
        places.append(folder.rstrip("/\\")[: -len(HUB_DATA_FOLDER) - 1])
    for place in places:
        path = join(place, MAPPING_FILE)
        if exists(path):
            return path
    return None


def annotation_mapping(folder: str) -> Dict[int, str]:
    """`{code: label}` of the E-MM1:1M Parquet files in `folder` (the documented defaults without a mapping file)."""
    path = mapping_file(folder)
    return read_annotation_labels(path) if path else dict(DEFAULT_ANNOTATION_LABELS)


# -- reading ----------------------------------------------------------------------------------------


@contextmanager
def open_parquet(path: str, read_dictionary: Sequence[str] = ()) -> Iterator[pq.ParquetFile]:
    """A Parquet file, local or remote (byte ranges: the footer, then the column chunks read), closed on exit."""
    try:  # a local file is read by Arrow's own reader, without the GIL
        # remote: small read-ahead blocks, so the footer and one row group's column chunks are all that is fetched
        source = open_binary(path) if is_remote(path) else pa.OSFile(path, "rb")
    except FileNotFoundError as err:
        raise EMM1DataError(f"{path}: file not found.", file=path, code="missing_file") from err
    try:
        try:
            parquet = pq.ParquetFile(source, read_dictionary=list(read_dictionary) or None)
        except (pa.ArrowException, OSError) as err:
            raise EMM1DataError(f"{path}: not a readable Parquet file ({err}). Download it again.", file=path,
                                code="unreadable") from err
        yield parquet
    finally:
        source.close()


@dataclass
class PrejoinedFile:
    """One pre-joined file: what its name says, its columns by role and its row groups (rows in each)."""

    path: str
    key: FileKey
    columns: ColumnMap
    row_groups: List[int]

    @property
    def num_rows(self) -> int:
        return sum(self.row_groups)

    def row_group_starts(self) -> List[int]:
        """The file row (0-based) of each row group's first row."""
        return [int(x) for x in np.cumsum([0] + self.row_groups[:-1])]

    def dictionary_columns(self) -> List[str]:
        """Columns read as dictionaries (save folders, provenance)."""
        return [c for key, c in self.columns.columns.items() if key.rsplit(".", 1)[-1] in _DICTIONARY_FIELDS]


def describe_file(path: str, key: FileKey, modalities: Sequence[str] = MODALITIES) -> PrejoinedFile:
    """Read a pre-joined file's footer: its columns matched to the roles of its phase, and its row groups."""
    with open_parquet(path) as f:
        names = list(f.schema_arrow.names)
        row_groups = [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)]
    if isinstance(key, int):
        column_map = resolve_columns(path, names, phase1_roles(modalities), {"nn_index": key})
    else:
        column_map = resolve_columns(path, names, phase2_roles(*key),
                                     {"paired.modality": key[0], "annotated.modality": key[1]})
    return PrejoinedFile(path, key, column_map, row_groups)


def file_violations(described: PrejoinedFile) -> List[Violation]:
    """The file-level rules of a pre-joined file: rows present, pair of two modalities, columns by role."""
    found = rules.prejoined_rows(described.path, described.num_rows)
    if not isinstance(described.key, int):
        found += rules.prejoined_pair(described.path, *described.key)
    return found + rules.prejoined_columns(described.columns)


# Batches a preparation holds at once: the one `datasets` writes and the next, built meanwhile (`prefetched`).
PIPELINE_DEPTH = 2


def pipelined_batch_rows(row_group_rows: int, batch_size: int) -> int:
    """Rows per batch read from a row group, so that the batches in flight together hold at most one row group:
    `batch_size`, or a `PIPELINE_DEPTH`-th of the row group when that is smaller."""
    return max(1, min(batch_size, row_group_rows // PIPELINE_DEPTH))


def iter_row_group(described: PrejoinedFile, row_group: int, batch_size: int) -> Iterator[pa.RecordBatch]:
    """The record batches of one row group (the role columns only): at most `batch_size` rows decoded at a time."""
    with open_parquet(described.path, described.dictionary_columns()) as f:
        yield from f.iter_batches(batch_size=batch_size, row_groups=[row_group],
                                  columns=described.columns.read_columns(), use_threads=True)


def role_column(batch: pa.RecordBatch, described: PrejoinedFile, key: str) -> Optional[pa.Array]:
    """The column filling role `key` in a batch, or None when the file has none."""
    name = described.columns.get(key)
    return batch.column(name) if name is not None else None


def as_int64(values: Optional[pa.Array], n: int) -> pa.Array:
    """An id or rank column as int64 (nulls when the file has no such column)."""
    if values is None:
        return pa.nulls(n, pa.int64())
    return values if values.type == pa.int64() else values.cast(pa.int64())


def as_strings(values: Optional[pa.Array], n: int) -> pa.Array:
    """A text column as plain strings (dictionaries decoded; nulls when the file has no such column)."""
    if values is None:
        return pa.nulls(n, pa.string())
    if pa.types.is_dictionary(values.type):
        values = values.dictionary.take(values.indices)
    return values if values.type == pa.string() else values.cast(pa.string())


def media_paths(root: str, folder: str, save_folder: Optional[pa.Array], file_name: Optional[pa.Array], n: int) -> pa.Array:
    """`root/save_folder/folder/file_name` per row (null where a part is null): the README formula, the
    prefix joined once per distinct save folder."""
    if save_folder is None or file_name is None:
        return pa.nulls(n, pa.string())
    if not pa.types.is_dictionary(save_folder.type):
        save_folder = pc.dictionary_encode(save_folder)
    prefixes = join_media_paths(root, save_folder.dictionary.cast(pa.string()), folder, pa.scalar("", pa.string()))
    return join_prefixed_paths(prefixes, save_folder.indices, as_strings(file_name, n))


def unsafe_parts(batch: pa.RecordBatch, described: PrejoinedFile, owner: str, rows: rules.Rows) -> List[Violation]:
    """`rules.unsafe_path_parts` on one owner's save folder and file name columns (named as in the file)."""
    names = []
    for f in ("save_folder", "file_name"):
        name = described.columns.get(f"{owner}.{f}")
        if name is None:
            continue
        values = batch.column(name)
        if pa.types.is_dictionary(values.type) and not pc.any(unsafe_mask(values.dictionary)).as_py():
            continue  # no value of the dictionary is unsafe (nor empty), so no row is: skip the per-row mask
        names.append(name)
    if not names:
        return []
    id_name = described.columns.get(f"{owner}.id")
    present = {name: batch.column(name) for name in names + [id_name] if name is not None}
    return rules.unsafe_path_parts(pa.table(present), [n for n in names if n], described.path,
                                   id_name or "id", rows)


def annotation_index(values: pa.Array, codes: Sequence[int], labels: Sequence[str]) -> pa.Array:
    """The ClassLabel index of each annotation, given as a code (integers) or a label (text)."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary.take(values.indices)
    if pa.types.is_integer(values.type):
        return pc.index_in(values.cast(pa.int64()), value_set=pa.array(list(codes), pa.int64())).cast(pa.int64())
    return pc.index_in(values.cast(pa.string()), value_set=pa.array(list(labels), pa.string())).cast(pa.int64())


def label_codes(values: Optional[pa.Array], names: Sequence[str], n: int) -> pa.Array:
    """A text column as int64 indices into `names` (ClassLabel codes; null where a value is null or not a name)."""
    if values is None:
        return pa.nulls(n, pa.int64())
    value_set = pa.array(list(names), pa.string())
    if pa.types.is_dictionary(values.type):
        codes = pc.index_in(values.dictionary.cast(pa.string()), value_set=value_set).cast(pa.int64())
        return codes.take(values.indices)
    return pc.index_in(as_strings(values, n), value_set=value_set).cast(pa.int64())


def distinct_strings(described: PrejoinedFile, key: str) -> List[str]:
    """The distinct non-null values of one role's column over the whole file (ClassLabel names)."""
    name = described.columns.get(key)
    if name is None:
        return []
    found = set()
    with open_parquet(described.path, [name]) as f:
        for batch in f.iter_batches(columns=[name], batch_size=1 << 20):
            column = batch.column(0)
            values = column.dictionary if pa.types.is_dictionary(column.type) else pc.unique(column)
            found.update(v for v in values.cast(pa.string()).to_pylist() if v is not None)
    return sorted(found)


# -- writing (a CSV generation, joined) ---------------------------------------------------------------


def _media_parts(info: Optional[MediaInfo], ids: pa.Array, n: int) -> Dict[str, pa.Array]:
    """save_folder, file_name and provenance of the rows at `ids` (null where an id has no infos row)."""
    if info is None:
        return {f: pa.nulls(n, pa.string()) for f in ("save_folder", "file_name") + PROVENANCE_COLUMNS}
    positions = info.lookup.positions(ids)
    parts = {"save_folder": info.save_folder.take(positions), "file_name": info.file_name.take(positions)}
    for column in PROVENANCE_COLUMNS:
        parts[column] = info.extra(column, positions) if column in info.extras else pa.nulls(n, pa.string())
    return parts


def _infos(split_dir: str, modalities: Sequence[str]) -> Tuple[TextInfo, Dict[str, MediaInfo]]:
    infos_dir = join(split_dir, "infos")
    text = TextInfo.read(join(infos_dir, "text.csv"))
    media = {m: MediaInfo.read(join(infos_dir, f"{m}.csv"), m, PROVENANCE_COLUMNS) for m in modalities}
    return text, media


def prejoin_phase1(split_dir: str, k: int, text: TextInfo, media: Dict[str, MediaInfo]) -> Iterator[pa.Table]:
    """The rows of `nn_k/data_groups.csv` joined with the infos tables, in file order, as the Hub's `nn_k` file
    holds them: `encord_text_id, caption, nn_index` and per modality `encord_{m}_id, save_folder_{m},
    file_name_{m}, source_dataset_{m}, dataset_license_{m}`. A dangling id keeps its row, with null parts."""
    groups_file = join(split_dir, f"nn_{k}", "data_groups.csv")
    header = tuple(read_header(groups_file))
    check_columns(groups_file, header, ["encord_text_id"] + [f"encord_{m}_id" for m in MODALITIES])
    raise_first(rules.data_rows(groups_file))
    types = {c: pa.int64() for c in ["encord_text_id", "nn_index"] + [f"encord_{m}_id" for m in MODALITIES]}
    for start, end in byte_ranges(groups_file):
        groups = read_csv_range(groups_file, start, end, header, types)
        if groups is None:
            continue
        n = groups.num_rows
        if "nn_index" in groups.column_names:
            raise_first(rules.nn_index(groups["nn_index"], groups["encord_text_id"], groups_file,
                                       rules.Rows(span=f" (in bytes {start}-{end})")))
            nn_index = groups["nn_index"].combine_chunks()
        else:  # the seed draft's files carry no nn_index: it is the folder's k
            nn_index = pa.array(np.full(n, k, dtype=np.int64))
        text_ids = groups["encord_text_id"].combine_chunks()
        columns = {"encord_text_id": text_ids, "caption": text.caption_at(text.lookup.positions(text_ids)),
                   "nn_index": nn_index}
        for m in MODALITIES:
            ids = groups[f"encord_{m}_id"].combine_chunks()
            columns[f"encord_{m}_id"] = ids
            for part, values in _media_parts(media.get(m), ids, n).items():
                columns[f"{part}_{m}"] = values
        yield pa.table(columns)


def prejoin_phase2(split_dir: str) -> Iterator[Tuple[Tuple[str, str], pa.Table]]:
    """`triplets.csv` (either generation) joined with the infos tables, one table per (paired, annotated) pair
    in name order, rows in file order: `encord_text_id, caption, annotation` (the label) and per item its
    modality's `encord_{m}_id, save_folder_{m}, file_name_{m}, source_dataset_{m}, dataset_license_{m}`."""
    mapping_path = join(split_dir, MAPPING_FILE)
    mapping = read_annotation_labels(mapping_path) if exists(mapping_path) else dict(DEFAULT_ANNOTATION_LABELS)
    triplets = normalize_triplets(join(split_dir, "triplets.csv"), list(mapping))
    text, media = _infos(split_dir, MODALITIES)
    labels = pa.array(list(mapping.values()), pa.string())
    pairs = sorted(set(zip(triplets["paired_modality"].to_pylist(), triplets["annotated_modality"].to_pylist())))
    for paired, annotated in pairs:
        rows = triplets.filter(pc.and_(pc.equal(triplets["paired_modality"], paired),
                                       pc.equal(triplets["annotated_modality"], annotated)))
        n = rows.num_rows
        text_ids = rows["encord_text_id"].combine_chunks()
        code_index = pc.index_in(rows["annotation"], value_set=pa.array(list(mapping), pa.int64()))
        columns = {"encord_text_id": text_ids, "caption": text.caption_at(text.lookup.positions(text_ids)),
                   "annotation": labels.take(code_index)}
        for role, m in (("paired", paired), ("annotated", annotated)):
            ids = rows[f"encord_{role}_id"].combine_chunks()
            columns[f"encord_{m}_id"] = ids
            for part, values in _media_parts(media[m], ids, n).items():
                columns[f"{part}_{m}"] = values
        yield (paired, annotated), pa.table(columns)


def _plain_strings(table: pa.Table) -> pa.Table:
    """Dictionary columns as plain strings: the Hub copy's columns are plain (readers get dictionaries back
    by asking for them)."""
    columns = [as_strings(c.combine_chunks(), len(c)) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return pa.Table.from_arrays(columns, names=table.column_names)


def write_parquet(tables: Iterator[pa.Table], path: str, row_group_rows: int = ROW_GROUP_ROWS,
                  compression: str = PARQUET_COMPRESSION) -> int:
    """Write `tables` to one Parquet file (row groups of at most `row_group_rows` rows) atomically; its rows."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temp = path + ".tmp"
    writer: Optional[pq.ParquetWriter] = None
    rows = 0
    pending: List[pa.Table] = []
    pending_rows = 0

    def flush(final: bool) -> None:
        nonlocal pending, pending_rows, rows
        if not pending:
            return
        table = pa.concat_tables(pending)
        cut = table.num_rows if final else (table.num_rows // row_group_rows) * row_group_rows
        writer.write_table(table.slice(0, cut), row_group_size=row_group_rows)
        rows += cut
        pending = [table.slice(cut)] if cut < table.num_rows else []
        pending_rows = table.num_rows - cut

    try:
        for table in tables:
            table = _plain_strings(table)
            if writer is None:
                writer = pq.ParquetWriter(temp, table.schema, compression=compression, write_page_index=True)
            pending.append(table)
            pending_rows += table.num_rows
            if pending_rows >= row_group_rows:
                flush(final=False)
        if writer is None:
            raise EMM1DataError(f"{path}: nothing to write.", file=path)
        flush(final=True)
        writer.close()
        writer = None
        os.replace(temp, path)
    finally:
        if writer is not None:
            writer.close()
        if os.path.exists(temp):
            os.remove(temp)
    return rows


def write_prejoined_phase1(split_dir: str, out_dir: str, nn_indices: Sequence[int] = range(1, 17),
                           row_group_rows: int = ROW_GROUP_ROWS, compression: str = PARQUET_COMPRESSION) -> List[str]:
    """Write `out_dir/nn_{kk}.parquet` for each k from the CSV split folder `split_dir`; the paths written."""
    text, media = _infos(split_dir, MODALITIES)
    written = []
    for k in nn_indices:
        path = os.path.join(out_dir, phase1_file_name(k))
        write_parquet(prejoin_phase1(split_dir, k, text, media), path, row_group_rows, compression)
        written.append(path)
    return written


def write_prejoined_phase2(split_dir: str, out_dir: str, row_group_rows: int = ROW_GROUP_ROWS,
                           compression: str = PARQUET_COMPRESSION) -> List[str]:
    """Write `out_dir/{paired}_to_{annotated}.parquet` per pair from the CSV split folder `split_dir`, and its
    `annotation_mapping.csv` beside `out_dir` (the repository root, when `out_dir` is its `data/`)."""
    written = []
    for (paired, annotated), table in prejoin_phase2(split_dir):
        path = os.path.join(out_dir, phase2_file_name(paired, annotated))
        write_parquet(iter([table]), path, row_group_rows, compression)
        written.append(path)
    mapping_path = join(split_dir, MAPPING_FILE)
    if exists(mapping_path):
        root = os.path.dirname(os.path.abspath(out_dir)) if os.path.basename(os.path.abspath(out_dir)) == HUB_DATA_FOLDER \
            else out_dir
        shutil.copyfile(mapping_path, os.path.join(root, MAPPING_FILE))
    return written
