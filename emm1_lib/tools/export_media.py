"""`emm1 export --embed-media`: a Hub dataset repository whose shards hold the media bytes.

`export_media(out_dir, data_dir, root_data_path, configs, licenses=[...])` prepares each config with
the builders (decode off) and writes, per config and split, shards whose media columns are
`{bytes, path}` structs: `bytes` the file's content when its licence is allowed (`LicensePolicy`,
schema/licenses.py), else null; `path` always the path relative to the media root
(`save_folder/{modality folder}/file_name`), as in the `*_file_path` columns, which stay.

Feature types, in the Parquet schema metadata and the card's `dataset_info`, are the stock ones so
stock `datasets`, the Hub viewer and other readers recognise them: `image` -> `datasets.Image`,
`audio` -> `datasets.Audio`, `video` -> `datasets.Video`, `points` -> a plain
`{bytes: binary, path: string}` struct (a custom feature type in the metadata would make stock
`datasets` refuse the whole repo). `emm1.resolve(ds)` turns all four into the project's decoding
features (`EMM1PointCloud` for points; no torch needed).

Layout and sizes: `{config}/{split}-{i:05d}-of-{n:05d}.parquet` (or `.tar` with `fmt="webdataset"`),
each at most `max_shard_bytes` (default 500 MB, `datasets`' `MAX_SHARD_SIZE`), in row groups of
`row_group_rows` rows (default: the `datasets` convention for media, 100 rows, 10 when the config has
video), media bytes stored uncompressed (they are compressed formats) and the other columns zstd.

Memory: workers (threads) write one shard each; a worker holds one row group at a time.

Only new bytes move: `emm1-manifest.json` records per shard its row range and a content hash (SHA-256
of the shard's rows with their embedded bytes). A re-export into the same folder plans the same row
ranges when the rows are the same and rewrites only shards whose hash changed (more media arrived, a
licence allowed); unchanged shard files are left untouched, so `hf upload` sends only the changed ones.
When the new bytes push a planned range over the size bound, the split is planned anew in shards of equal
size, which moves every cut: then every shard of that split is rewritten.

WebDataset (`fmt="webdataset"`): tar shards with, per row, `{key}.json` (every non-media column,
relative paths, licences) and `{key}.{modality}.{ext}` for each embedded item (`000000012.image.jpg`,
`000000012.audio.mp4`, `000000012.video.mp4`, `000000012.points.npy`); keys are the row's index in its
split, zero-padded, so member names are plain ASCII.
"""
import concurrent.futures
import hashlib
import io
import json
import math
import os
import re
import tarfile
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Dict
from typing import Iterable
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets.table import cast_table_to_features

from emm1_lib.builders.registry import builder_config_names
from emm1_lib.builders.registry import path_column_options
from emm1_lib.errors import EMM1DataError
from emm1_lib.io.fs import normalize_root
from emm1_lib.media.files import check_on_missing_media
from emm1_lib.media.files import resolve_media
from emm1_lib.schema.layout import MODALITIES
from emm1_lib.schema.layout import PATH_SUFFIX
from emm1_lib.schema.licenses import UNRECORDED
from emm1_lib.schema.licenses import LicensePolicy
from emm1_lib.schema.licenses import license_policy
from emm1_lib.tools.export import MANIFEST_FILE
from emm1_lib.tools.export import _check_out_dir
from emm1_lib.tools.export import _relative_paths
from emm1_lib.tools.hub_card import DEFAULT_REPO_ID
from emm1_lib.tools.hub_card import CardConfig
from emm1_lib.tools.hub_card import embedded_media_section
from emm1_lib.tools.hub_card import render_card

DEFAULT_MEDIA_SHARD_BYTES = 500 * 10**6  # datasets.config.MAX_SHARD_SIZE ("500MB")
# datasets' PARQUET_ROW_GROUP_SIZE_FOR_{IMAGE,AUDIO,BINARY,VIDEO}_DATASETS (3.x): small row groups, so a
# streaming reader (and the Hub viewer) fetches a few rows' media, not a whole shard's.
MEDIA_ROW_GROUP_ROWS = {"image": 100, "audio": 100, "points": 100, "video": 10}
DEFAULT_NUM_WORKERS = 4
MANIFEST_VERSION = 1
FORMATS = ("parquet", "webdataset")
_EXTENSIONS = {"parquet": "parquet", "webdataset": "tar"}
# Estimated shard bytes stay under this share of the bound: Parquet pages, footer and tar headers add a little.
_PLAN_HEADROOM = 0.95
_SAFE_EXT = re.compile(r"^[a-z0-9]{1,10}$")
POINTS_STORAGE = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}


def stock_media_feature(modality: str) -> Any:
    """The stock `datasets` feature an embedded media column is published with (see the module docstring)."""
    if modality == "image":
        return datasets.Image()
    if modality == "audio":
        return datasets.Audio()
    if modality == "video" and hasattr(datasets, "Video"):
        return datasets.Video()
    return dict(POINTS_STORAGE)


def embedded_features(features: datasets.Features) -> datasets.Features:
    """Published features of a builder's features: media columns as stock features, everything else kept."""
    return datasets.Features({name: stock_media_feature(name) if name in MODALITIES else f
                              for name, f in features.items()})


def default_row_group_rows(media: Sequence[str]) -> int:
    """Rows per row group for a config with these media columns (the `datasets` convention; 100 without media)."""
    return min([MEDIA_ROW_GROUP_ROWS[m] for m in media] or [100])


# -- results --------------------------------------------------------------------------------------


@dataclass
class MediaCounts:
    """Items of one modality and licence: embedded, left out by the licence policy, missing on disk."""

    embedded: int = 0
    excluded: int = 0
    missing: int = 0
    embedded_bytes: int = 0

    def add(self, other: "MediaCounts") -> None:
        self.embedded += other.embedded
        self.excluded += other.excluded
        self.missing += other.missing
        self.embedded_bytes += other.embedded_bytes


CountKey = Tuple[str, str]  # (modality, licence as written, or UNRECORDED)


@dataclass
class MediaExportedConfig:
    """One exported config: its files per split, rows, bytes, and what was written or kept this run."""

    name: str
    features: datasets.Features
    description: str
    splits: Dict[str, int] = field(default_factory=dict)
    split_bytes: Dict[str, int] = field(default_factory=dict)
    files: Dict[str, List[str]] = field(default_factory=dict)  # split -> files relative to out_dir
    file_bytes: int = 0
    written: List[str] = field(default_factory=list)  # files (re)written by this run
    kept: List[str] = field(default_factory=list)  # files left untouched (content unchanged)
    counts: Dict[CountKey, MediaCounts] = field(default_factory=dict)

    def card_config(self) -> CardConfig:
        return CardConfig.of(self)


@dataclass
class MediaExportResult:
    """What `export_media` wrote: the folder, its card, manifest and configs."""

    out_dir: str
    card_path: str
    manifest_path: str
    configs: List[MediaExportedConfig]
    policy: LicensePolicy

    @property
    def written(self) -> List[str]:
        return [f for c in self.configs for f in c.written]

    @property
    def kept(self) -> List[str]:
        return [f for c in self.configs for f in c.kept]


# -- one row group: embed, count, hash -------------------------------------------------------------


@dataclass
class _SplitJob:
    config: str
    split: str
    table: pa.Table  # the prepared split (memory-mapped), media paths absolute under `root`
    features: datasets.Features  # published features
    media: List[str]
    root: str
    policy: LicensePolicy
    on_missing_media: str
    fmt: str
    row_group_rows: int


def _path_field(column: pa.ChunkedArray) -> pa.Array:
    """The `path` of a `{bytes, path}` column, null where the struct is null."""
    array = column.combine_chunks()
    return pc.if_else(array.is_valid(), array.field("path"), pa.scalar(None, pa.string()))


def _licenses(table: pa.Table, modality: str) -> Optional[pa.Array]:
    name = f"{modality}_dataset_license"
    return table[name].combine_chunks() if name in table.column_names else None


def _read_item(path: str, job: _SplitJob, where: str) -> Optional[bytes]:
    """A media file's bytes; None when missing and on_missing_media="null". Refuses files outside the root."""
    try:
        source = resolve_media({"bytes": None, "path": path}, job.on_missing_media, None, job.root)
    except FileNotFoundError as err:
        raise type(err)(f"{where}: {err} Download it, or pass on_missing_media='null' (--on-missing-media null) "
                        "to publish its path without bytes.") from err
    if source is None:
        return None
    with source.open() as f:
        return f.read()


def _embed(job: _SplitJob, start: int, stop: int) -> Tuple[pa.Table, Dict[CountKey, MediaCounts]]:
    """Rows [start, stop) as published: relative paths, allowed media embedded; and the counts per licence."""
    table = job.table.slice(start, stop - start)
    prefix = [job.root + "/"]
    where = f"{job.config}/{job.split} rows {start}-{stop - 1}"
    counts: Dict[CountKey, MediaCounts] = {}
    columns: Dict[str, pa.Array] = {}
    for name in job.features:
        if name.endswith(PATH_SUFFIX):
            columns[name] = _relative_paths(table[name], prefix, where)
        elif name in job.media:
            absolute = _path_field(table[name])
            relative = _relative_paths(absolute, prefix, where)
            licenses = _licenses(table, name)
            allowed = pc.and_(job.policy.allows(licenses, len(absolute)), absolute.is_valid()).to_numpy(zero_copy_only=False)
            valid = absolute.is_valid().to_numpy(zero_copy_only=False)
            paths = absolute.to_pylist()
            names = licenses.to_pylist() if licenses is not None else [None] * len(paths)
            data: List[Optional[bytes]] = [None] * len(paths)
            for i in np.flatnonzero(valid):  # one file read per embedded item
                key = (name, names[i] if names[i] is not None else UNRECORDED)
                entry = counts.setdefault(key, MediaCounts())
                if not allowed[i]:
                    entry.excluded += 1
                    continue
                data[i] = _read_item(paths[i], job, f"{where}, row {start + i}, column {name}")
                if data[i] is None:
                    entry.missing += 1
                else:
                    entry.embedded += 1
                    entry.embedded_bytes += len(data[i])
            columns[name] = pa.StructArray.from_arrays(
                [pa.array(data, pa.binary()), relative], ["bytes", "path"], mask=pc.invert(absolute.is_valid()))
        else:
            columns[name] = table[name]
    out = pa.Table.from_arrays([columns[n] for n in job.features], names=list(job.features))
    return cast_table_to_features(out, job.features), counts


def _hash_table(digest: "hashlib._Hash", table: pa.Table) -> None:
    """Feed a row group's content (Arrow IPC: deterministic for the same rows and types) to `digest`."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    digest.update(sink.getvalue())


def _row_groups(start: int, stop: int, rows: int) -> Iterable[Tuple[int, int]]:
    for a in range(start, stop, rows):
        yield a, min(a + rows, stop)


def _content_hash(job: _SplitJob, start: int, stop: int) -> Tuple[str, Dict[CountKey, MediaCounts]]:
    """SHA-256 of the rows [start, stop) as published (format included), and their counts; writes nothing."""
    digest = hashlib.sha256(f"{job.fmt}\n".encode())
    counts: Dict[CountKey, MediaCounts] = {}
    for a, b in _row_groups(start, stop, job.row_group_rows):
        table, part = _embed(job, a, b)
        _hash_table(digest, table)
        _merge(counts, part)
    return digest.hexdigest(), counts


def _merge(into: Dict[CountKey, MediaCounts], part: Dict[CountKey, MediaCounts]) -> None:
    for key, value in part.items():
        into.setdefault(key, MediaCounts()).add(value)


# -- writers ----------------------------------------------------------------------------------------


def _parquet_writer(path: str, features: datasets.Features, media: Sequence[str]) -> pq.ParquetWriter:
    compression: Dict[str, str] = {}
    for name, feature in features.items():
        if name in media:
            compression[f"{name}.bytes"] = "NONE"  # JPEG, MP4, FLAC ... gain nothing from zstd
            compression[f"{name}.path"] = "ZSTD"
        else:
            compression[name] = "ZSTD"
    schema = features.arrow_schema  # with the `huggingface` features metadata: stock types, see module docstring
    leaves = _leaf_compression(schema, compression)
    # No min/max statistics of media columns: they would copy up to two files' bytes into every page header.
    statistics = [leaf for leaf in leaves if leaf.split(".")[0] not in media]
    return pq.ParquetWriter(path, schema, compression=leaves, write_statistics=statistics, write_page_index=True)


def _leaf_compression(schema: pa.Schema, wanted: Dict[str, str]) -> Dict[str, str]:
    """pyarrow wants the compression of every leaf column by its dotted path; ClassLabel etc. are leaves too."""
    out: Dict[str, str] = {}

    def visit(prefix: str, dtype: pa.DataType, top: str) -> None:
        if pa.types.is_struct(dtype):
            for i in range(dtype.num_fields):
                child = dtype.field(i)
                visit(f"{prefix}.{child.name}", child.type, top)
        elif pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
            visit(f"{prefix}.list.element", dtype.value_type, top)
        else:
            out[prefix] = wanted.get(prefix, wanted.get(top, "ZSTD"))

    for f in schema:
        visit(f.name, f.type, f.name)
    return out


def _member_ext(relative_path: Optional[str]) -> str:
    ext = os.path.splitext(relative_path or "")[1].lstrip(".").lower()
    return ext if _SAFE_EXT.match(ext) else "bin"


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # deterministic archives: the same rows give the same bytes
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _write_tar_rows(tar: tarfile.TarFile, table: pa.Table, first_row: int, media: Sequence[str]) -> None:
    rows = table.to_pylist()
    for offset, row in enumerate(rows):
        key = f"{first_row + offset:09d}"
        meta = {}
        for name, value in row.items():
            if name in media:
                embedded = value is not None and value.get("bytes") is not None
                meta[name] = {"path": value.get("path") if value else None,
                              "member": f"{key}.{name}.{_member_ext(value['path'])}" if embedded else None}
                if embedded:
                    _tar_add(tar, meta[name]["member"], value["bytes"])
            else:
                meta[name] = value
        _tar_add(tar, f"{key}.json", json.dumps(meta, ensure_ascii=False, default=str).encode())


def _temporary_name(path: str) -> str:
    """Where `path` is written before it is renamed into place: hidden (a leading dot), so that after a kill no
    data-files glob of the card (`{split}-*`) and no upload picks up a half-written shard."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.tmp")


def _write_shard(job: _SplitJob, start: int, stop: int, path: str) -> Tuple[str, Dict[CountKey, MediaCounts], int]:
    """Write rows [start, stop) to `path` (via a temporary file); (content hash, counts, Arrow bytes)."""
    temp = _temporary_name(path)
    digest = hashlib.sha256(f"{job.fmt}\n".encode())
    counts: Dict[CountKey, MediaCounts] = {}
    arrow_bytes = 0
    try:
        if job.fmt == "parquet":
            writer = _parquet_writer(temp, job.features, job.media)
            try:
                for a, b in _row_groups(start, stop, job.row_group_rows):
                    table, part = _embed(job, a, b)
                    _hash_table(digest, table)
                    _merge(counts, part)
                    arrow_bytes += table.nbytes
                    writer.write_table(table, row_group_size=b - a)
                if start == stop:  # an empty split still gets one (empty) file, so it loads
                    writer.write_table(job.features.arrow_schema.empty_table())
            finally:
                writer.close()
        else:
            with tarfile.open(temp, "w", format=tarfile.USTAR_FORMAT) as tar:
                for a, b in _row_groups(start, stop, job.row_group_rows):
                    table, part = _embed(job, a, b)
                    _hash_table(digest, table)
                    _merge(counts, part)
                    arrow_bytes += table.nbytes
                    _write_tar_rows(tar, table, a, job.media)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    return digest.hexdigest(), counts, arrow_bytes


# -- planning ---------------------------------------------------------------------------------------


def _row_estimates(job: _SplitJob) -> np.ndarray:
    """Estimated published bytes per row: the sizes of the files that would be embedded, plus the row's
    Arrow bytes. Files missing now count with their modality's mean size (they may arrive later)."""
    n = job.table.num_rows
    sizes = np.zeros(n, dtype=np.int64)
    non_media = [c for c in job.features if c not in job.media and c in job.table.column_names]
    if n and non_media:
        sizes += math.ceil(job.table.select(non_media).nbytes / n)
    for name in job.media:
        absolute = _path_field(job.table[name])
        allowed = pc.and_(job.policy.allows(_licenses(job.table, name), n), absolute.is_valid())
        index = np.flatnonzero(allowed.to_numpy(zero_copy_only=False))
        paths = pc.take(absolute, pa.array(index, pa.int64())).to_pylist()
        found = np.array([_size_or_minus1(p) for p in paths], dtype=np.int64)
        present = found[found >= 0]
        mean = int(present.mean()) if len(present) else 0
        sizes[index] += np.where(found >= 0, found, mean)
    return sizes


def _size_or_minus1(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


def _plan(estimates: np.ndarray, max_shard_bytes: int, row_group_rows: int) -> List[Tuple[int, int]]:
    """Contiguous row ranges, cut at row-group boundaries, each estimated under the bound (a single row
    group larger than the bound gets a shard of its own): as few shards as fit, of about equal size.

    Equal, not filled up in order: streaming readers hand whole shards to DataLoader workers and nodes
    (shard i to worker i mod n), so a small remainder shard leaves a worker idle at the end of every pass."""
    n = len(estimates)
    if n == 0:
        return [(0, 0)]
    budget = max_shard_bytes * _PLAN_HEADROOM
    group_bytes = np.add.reduceat(estimates, np.arange(0, n, row_group_rows))
    cuts: List[int] = []  # in row groups
    first, total = 0, 0
    for g, size in enumerate(group_bytes):
        if g > first and total + size > budget:
            cuts.append(g)
            first, total = g, 0
        total += size
    balanced = _balanced_cuts(group_bytes, len(cuts) + 1, budget)
    cuts = balanced if balanced is not None else cuts
    bounds = [0] + [g * row_group_rows for g in cuts] + [n]
    return list(zip(bounds[:-1], bounds[1:]))


def _balanced_cuts(group_bytes: np.ndarray, shards: int, budget: float) -> Optional[List[int]]:
    """Row-group cuts into `shards` ranges of about equal bytes, or None when one would exceed `budget`."""
    if shards == 1:
        return []
    cumulative = np.cumsum(group_bytes)
    targets = cumulative[-1] * np.arange(1, shards) / shards
    after = np.searchsorted(cumulative, targets)  # the first group whose end reaches the target
    before = np.concatenate([[0], cumulative])[after]  # bytes before that group
    cuts = np.where(cumulative[after] - targets < targets - before, after + 1, after)
    cuts = np.clip(cuts, 1, len(group_bytes) - 1)
    if len(np.unique(cuts)) != len(cuts):
        return None
    sizes = np.diff(np.concatenate([[0], cumulative[cuts - 1], [cumulative[-1]]]))
    single = np.diff(np.concatenate([[0], cuts, [len(group_bytes)]])) == 1
    if np.any((sizes > budget) & ~single):
        return None
    return [int(c) for c in cuts]


def _rows_key(job: _SplitJob) -> str:
    """Identity of the split's rows (ids and paths, not media bytes): a re-export reuses the row ranges
    of the manifest only for the same rows."""
    digest = hashlib.sha256()
    keep = [c for c in job.features if c not in job.media and c in job.table.column_names]
    for a, b in _row_groups(0, job.table.num_rows, 100_000):
        _hash_table(digest, job.table.select(keep).slice(a, b - a))
    return digest.hexdigest()


def _shard_name(split: str, index: int, total: int, fmt: str) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.{_EXTENSIONS[fmt]}"


# -- export ----------------------------------------------------------------------------------------


def _load_manifest(out_dir: str) -> Optional[dict]:
    path = os.path.join(out_dir, MANIFEST_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except ValueError as err:
        raise EMM1DataError(f"{path}: not valid JSON ({err}); remove it (every shard is then rewritten).") from err
    if manifest.get("version") != MANIFEST_VERSION:
        return None
    return manifest


def _export_split(job: _SplitJob, out_dir: str, previous: Optional[dict], max_shard_bytes: int,
                  num_workers: int, entry: MediaExportedConfig) -> dict:
    """Write (or keep) the shards of one split; returns its manifest entry."""
    rows_key = _rows_key(job)
    estimates = _row_estimates(job)
    ranges: Optional[List[Tuple[int, int]]] = None
    old_shards: Dict[str, dict] = {}
    if previous and previous.get("rows_key") == rows_key and previous.get("row_group_rows") == job.row_group_rows:
        reused = [tuple(s["rows"]) for s in previous["shards"]]
        cumulative = np.concatenate([[0], np.cumsum(estimates)])
        if all(cumulative[b] - cumulative[a] <= max_shard_bytes * _PLAN_HEADROOM or b - a <= job.row_group_rows
               for a, b in reused):
            ranges = reused
            old_shards = {s["file"]: s for s in previous["shards"]}
    if ranges is None:
        ranges = _plan(estimates, max_shard_bytes, job.row_group_rows)
    config_dir = os.path.join(out_dir, job.config)
    os.makedirs(config_dir, exist_ok=True)
    names = [_shard_name(job.split, i, len(ranges), job.fmt) for i in range(len(ranges))]

    def work(i: int) -> dict:
        start, stop = ranges[i]
        path = os.path.join(config_dir, names[i])
        rel = f"{job.config}/{names[i]}"
        old = old_shards.get(rel)
        if old and os.path.isfile(path) and os.path.getsize(path) == old["bytes"]:
            content, counts = _content_hash(job, start, stop)
            if content == old["sha256"]:
                return {"file": rel, "rows": [start, stop], "sha256": content, "bytes": old["bytes"],
                        "arrow_bytes": old.get("arrow_bytes", 0), "counts": counts, "written": False}
        content, counts, arrow_bytes = _write_shard(job, start, stop, path)
        return {"file": rel, "rows": [start, stop], "sha256": content, "bytes": os.path.getsize(path),
                "arrow_bytes": arrow_bytes, "counts": counts, "written": True}

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        shards = list(pool.map(work, range(len(ranges))))
    keep = set(names)
    ours = re.compile(re.escape(job.split) + r"-\d{5}-of-\d{5}\.(parquet|tar)")
    for stale in os.listdir(config_dir):  # shards of an older plan or format of this split (the card's glob is split-*)
        if ours.fullmatch(stale) and stale not in keep:
            os.remove(os.path.join(config_dir, stale))
        elif stale.endswith(".tmp") and ours.fullmatch(stale[:-4].lstrip(".")):  # a killed run's half-written shard
            os.remove(os.path.join(config_dir, stale))
    entry.splits[job.split] = job.table.num_rows
    entry.split_bytes[job.split] = sum(s["arrow_bytes"] for s in shards)
    entry.files[job.split] = [s["file"] for s in shards]
    entry.file_bytes += sum(s["bytes"] for s in shards)
    for s in shards:
        (entry.written if s["written"] else entry.kept).append(s["file"])
        _merge(entry.counts, s.pop("counts"))
        s.pop("written")
    return {"rows_key": rows_key, "row_group_rows": job.row_group_rows, "shards": shards}


def export_media(
    out_dir: str,
    data_dir: str,
    root_data_path: str,
    configs: Optional[Sequence[str]] = None,
    *,
    licenses: Optional[Sequence[str]] = None,
    redistributable_only: bool = False,
    all_licenses: bool = False,
    fmt: str = "parquet",
    max_shard_bytes: int = DEFAULT_MEDIA_SHARD_BYTES,
    row_group_rows: Optional[int] = None,
    num_workers: int = DEFAULT_NUM_WORKERS,
    on_missing_media: str = "error",
    cache_dir: Optional[str] = None,
    num_proc: Optional[int] = None,
    repo_id: str = DEFAULT_REPO_ID,
    overwrite: bool = False,
    card_dir: Optional[str] = None,
    **builder_kwargs: Any,
) -> MediaExportResult:
    """Write E-MM1 configs as a Hub dataset repository with the media inside (see the module docstring).

    Args:
        out_dir: the folder to write: empty, a previous media export (only changed shards are rewritten),
            or any folder with `overwrite=True`.
        data_dir: the E-MM1 metadata folder (parent of `e-mm1_100m/`, `e-mm1_1m/`, `eshot/`), local or URL.
        root_data_path: the media root (`save_folder/{modality folder}/file_name` below it).
        configs: config names (default: every config of the builders).
        licenses: embed items whose `{modality}_dataset_license` is one of these (normalised spelling).
        redistributable_only: embed items under `schema.licenses.REDISTRIBUTABLE_LICENSES` only.
        all_licenses: embed every item. Exactly one of `licenses`, `redistributable_only`, `all_licenses`.
            Items not embedded keep their relative path with null bytes; items without a recorded licence
            (phase 2, EShot) are embedded only with `all_licenses`.
        fmt: "parquet" (default) or "webdataset" (tar shards).
        max_shard_bytes: upper bound of a shard file.
        row_group_rows: rows per row group (default by media: 100, 10 with video).
        num_workers: shards written at once (threads; each holds one row group).
        on_missing_media: "error" (a missing file stops the export, naming it) or "null" (published without bytes).
        cache_dir, num_proc: for preparing the configs with the builders.
        repo_id: the Hub repository id shown in the card.
        overwrite: write into a folder that is not empty and holds no manifest.
        card_dir: folder with the card template and citations (default: the project's `dataset_card/`).
        **builder_kwargs: builder config parameters (`modalities`, `media_folders`, ...).
    """
    policy = license_policy(licenses, redistributable_only, all_licenses)
    if fmt not in FORMATS:
        raise ValueError(f"fmt={fmt!r}; choose from {FORMATS}.")
    if max_shard_bytes <= 0 or (row_group_rows is not None and row_group_rows <= 0) or num_workers <= 0:
        raise ValueError("max_shard_bytes, row_group_rows and num_workers must be positive.")
    check_on_missing_media(on_missing_media)
    for key in ("decode", "data_dir", "config_name", "name"):
        if key in builder_kwargs:
            raise TypeError(f"export_media() sets {key} itself.")
    if "file_path_columns" in builder_kwargs:
        raise TypeError("export_media() sets file_path_columns itself: the published copy always has the "
                        "*_file_path columns beside the media. Leave the option out.")
    available = builder_config_names()
    names = list(configs) if configs else list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"Unknown config(s) {unknown}; the builders have {list(available)}.")
    if not root_data_path or not os.path.isdir(os.fspath(root_data_path)):
        raise EMM1DataError(f"root_data_path={root_data_path!r}: not a folder; give the local media root "
                            "(the folder holding save_folder/{modality folder}/file_name).")
    root = normalize_root(os.path.abspath(os.fspath(root_data_path)))
    out_dir = os.path.abspath(os.path.expanduser(out_dir))
    manifest = _load_manifest(out_dir)
    _check_out_dir(out_dir, names, overwrite or manifest is not None)
    os.makedirs(out_dir, exist_ok=True)
    previous = (manifest or {}).get("configs", {}) if (manifest or {}).get("format") == fmt else {}
    new_manifest: Dict[str, Any] = {"version": MANIFEST_VERSION, "format": fmt, "policy": policy.description,
                                    "max_shard_bytes": max_shard_bytes, "configs": {}}
    exported: List[MediaExportedConfig] = []
    citation = homepage = ""
    for name in names:
        # The published layout keeps the *_file_path columns beside the media, as the export without media does.
        builder = available[name](config_name=name, data_dir=data_dir, root_data_path=root, decode=False,
                                  cache_dir=cache_dir, **path_column_options(name), **builder_kwargs)
        builder.download_and_prepare(num_proc=num_proc)
        citation = citation or builder.info.citation or ""
        homepage = homepage or builder.info.homepage or ""
        media = [m for m in MODALITIES if m in builder.info.features]
        features = embedded_features(builder.info.features)
        rows = row_group_rows or default_row_group_rows(media)
        entry = MediaExportedConfig(name, features, builder.config.description or "")
        new_manifest["configs"][name] = {}
        for split, dataset in builder.as_dataset().items():
            if dataset._indices is not None:
                dataset = dataset.flatten_indices()
            job = _SplitJob(name, str(split), dataset.data.table, features, media, root, policy, on_missing_media,
                            fmt, rows)
            new_manifest["configs"][name][str(split)] = _export_split(
                job, out_dir, previous.get(name, {}).get(str(split)), max_shard_bytes, num_workers, entry)
        exported.append(entry)
    counts: Dict[CountKey, MediaCounts] = {}
    for entry in exported:
        _merge(counts, entry.counts)
    card = render_card(
        [e.card_config() for e in exported], repo_id=repo_id, default_config=names[0], citation=citation,
        homepage=homepage, max_shard_bytes=max_shard_bytes, row_group_rows=min(MEDIA_ROW_GROUP_ROWS.values()),
        media_folders=builder_kwargs.get("media_folders"), card_dir=card_dir, with_features=fmt == "parquet",
        extra=embedded_media_section(policy.description, {k: vars(v) for k, v in counts.items()}, fmt),
    )
    card_path = os.path.join(out_dir, "README.md")
    with open(_temporary_name(card_path), "w", encoding="utf-8") as f:
        f.write(card)
    os.replace(_temporary_name(card_path), card_path)
    manifest_path = os.path.join(out_dir, MANIFEST_FILE)
    with open(manifest_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(new_manifest, f, indent=1, sort_keys=True)
    os.replace(manifest_path + ".tmp", manifest_path)
    return MediaExportResult(out_dir, card_path, manifest_path, exported, policy)
