"""Publish E-MM1 as a Hub dataset repository (Parquet + dataset card); `emm1.resolve` reads it back.

`export(out_dir, data_dir)` prepares each config with the project's builders and writes a
folder laid out as a Hub dataset repository::

    out_dir/
      README.md                                   # dataset card: YAML configs + dataset_info, prose
      phase1_nn1/train-00000-of-00016.parquet     # size-bounded shards, bounded row groups
      ...
      phase2_triplets/train-00000-of-00001.parquet

Stock `datasets` (no import of this project) loads it: `load_dataset(out_dir, "phase1_nn1")`,
`streaming=True`, `get_dataset_config_names(out_dir)`, and the same from the Hub after
`huggingface_hub.upload_folder`.

Media columns: stock `datasets` cannot know the project's decoding features, so the export
stores every media path once, as a string **relative to the data root**
(`save_folder/{modality folder}/file_name`) in the `*_file_path` columns, and drops the media
columns that the builders derive from them. `emm1.resolve(ds, root)` (`emm1_lib.builders.resolve`)
makes the paths absolute and adds the media columns back with the project's decoding features.

`cli(argv)` is `emm1 export ...`.
"""
import argparse
import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Any
from typing import Dict
from typing import Iterator
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets.table import cast_table_to_features

from emm1_lib.tools.cli import media_folder_arg
from emm1_lib.builders.registry import builder_config_names
from emm1_lib.builders.registry import path_column_options
from emm1_lib.errors import EMM1DataError
from emm1_lib.tools.hub_card import DEFAULT_REPO_ID
from emm1_lib.tools.hub_card import CardConfig
from emm1_lib.tools.hub_card import human_bytes
from emm1_lib.tools.hub_card import render_card
from emm1_lib.schema.layout import MODALITIES
from emm1_lib.schema.layout import PATH_SUFFIX
from emm1_lib.io.fs import normalize_root
from emm1_lib.schema.layout import NUM_NEIGHBOURS
from emm1_lib.schema.layout import PHASE1_FOLDERS
from emm1_lib.schema.layout import PHASE2_FOLDERS
from emm1_lib.schema.layout import find_split_dir
from emm1_lib.schema.prejoined import write_prejoined_phase1
from emm1_lib.schema.prejoined import write_prejoined_phase2
from emm1_lib.schema.roles import HUB_DATA_FOLDER
from emm1_lib.schema.roles import HUB_PHASE1_FOLDERS
from emm1_lib.schema.roles import HUB_PHASE2_FOLDERS

DEFAULT_MAX_SHARD_BYTES = 256 << 20
DEFAULT_ROW_GROUP_ROWS = 100_000
# Older `datasets` stream one shard per Parquet file, so large configs get at least this many files.
DEFAULT_MIN_FILES = 16
# Builders need a media root to build paths; the export strips it again, so any fixed root works
# and the media files need not be present.
_EXPORT_ROOT = normalize_root(os.path.join(os.sep, "emm1-export-root"))
_STAGING_PREFIX = ".emm1-export-"
# Written by `export_media` (shard row ranges and content hashes of an export with the media inside).
MANIFEST_FILE = "emm1-manifest.json"



# -- writing Parquet ----------------------------------------------------------------------------


@dataclass
class ExportedConfig:
    """One exported config: where its files are and what they hold."""

    name: str
    features: datasets.Features
    splits: Dict[str, int]
    split_bytes: Dict[str, int]
    files: Dict[str, List[str]]  # split -> files relative to the export folder, "/"-separated
    file_bytes: int
    row_groups: int
    description: str = ""

    @property
    def num_rows(self) -> int:
        return sum(self.splits.values())

    def card_config(self) -> CardConfig:
        return CardConfig.of(self)


@dataclass
class ExportResult:
    """What `export` wrote: the folder, its card and the configs."""

    out_dir: str
    card_path: str
    configs: List[ExportedConfig]


def export_features(features: datasets.Features) -> datasets.Features:
    """The stock features of an export: the builder's, without media columns (paths are strings)."""
    return datasets.Features({name: f for name, f in features.items() if name not in MODALITIES})


def _relative_paths(column: pa.ChunkedArray, prefixes: Sequence[str], where: str) -> pa.ChunkedArray:
    """Strip the media root from a path column: each non-null path must start with one of `prefixes`
    (tried in order), and loses the first that it starts with."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    out = pa.nulls(len(column), pa.string())
    left = pc.is_valid(column)
    for prefix in prefixes:
        hit = pc.and_(left, pc.fill_null(pc.starts_with(column, prefix), False))
        out = pc.if_else(hit, pc.utf8_slice_codeunits(column, len(prefix)), out)
        left = pc.and_(left, pc.invert(hit))
    if pc.any(left).as_py():
        example = pc.filter(column, left)[0].as_py()
        raise EMM1DataError(
            f"{where}: path {example!r} is under none of {list(prefixes)}; cannot store it relative to the data "
            "root. Pass data_dir= the data root (the folder holding the dataset folders and the media)."
        )
    return out


def _export_table(table: pa.Table, features: datasets.Features, prefixes: Sequence[str], where: str) -> pa.Table:
    columns = []
    for name in features:
        column = table[name]
        if name.endswith(PATH_SUFFIX):
            column = _relative_paths(column, prefixes, where)
        columns.append(column)
    return cast_table_to_features(pa.Table.from_arrays(columns, names=list(features)), features)


def _plan_files(num_rows: int, arrow_bytes: int, max_shard_bytes: int, row_group_rows: int, min_files: int) -> int:
    """Rows per file (whole row groups): files stay under `max_shard_bytes` (estimated from the Arrow
    size, an upper bound of the compressed Parquet) and there are at least `min_files` when there
    are that many row groups."""
    row_groups = max(1, math.ceil(num_rows / row_group_rows))
    by_size = math.ceil(arrow_bytes / max_shard_bytes) if arrow_bytes else 1
    files = max(1, min(row_groups, max(by_size, min_files)))
    return max(1, row_groups // files) * row_group_rows  # rounding down keeps at least `files` files


def _iter_tables(dataset: datasets.Dataset, batch_size: int) -> Iterator[pa.Table]:
    """Arrow tables of `batch_size` rows (the last one shorter), read from the memory-mapped dataset."""
    for table in dataset.with_format("arrow").iter(batch_size=batch_size):
        yield table


def write_split(
    dataset: datasets.Dataset,
    config_dir: str,
    split: str,
    features: datasets.Features,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    min_files: int = DEFAULT_MIN_FILES,
    compression: str = "zstd",
    path_prefixes: Sequence[str] = (_EXPORT_ROOT + "/",),
) -> Tuple[List[str], int, int, int]:
    """Write one prepared split as `{split}-0000k-of-0000n.parquet` files under `config_dir`.

    Row groups hold at most `row_group_rows` rows; a file is closed when it has its planned
    rows or when the next row group (estimated as the largest so far) would take it past
    `max_shard_bytes`, so files stay under the bound unless one row group alone exceeds it. Path columns lose the first of `path_prefixes` they start with.
    Returns (file names, Parquet bytes, Arrow bytes, row groups).
    """
    os.makedirs(config_dir, exist_ok=True)
    schema = features.arrow_schema  # carries the `huggingface` features metadata (ClassLabel names...)
    rows_per_file = _plan_files(len(dataset), dataset.data.nbytes, max_shard_bytes, row_group_rows, min_files)
    temp_files: List[str] = []
    writer: Optional[pq.ParquetWriter] = None
    sink = None
    rows_in_file = 0
    parquet_bytes = arrow_bytes = row_groups = 0
    largest_row_group = 0  # compressed bytes: a file is closed before the next row group could overflow it

    def close() -> None:
        nonlocal writer, sink, parquet_bytes
        if writer is not None:
            writer.close()
            sink.close()
            parquet_bytes += os.path.getsize(temp_files[-1])
            writer = sink = None

    try:
        for table in _iter_tables(dataset, row_group_rows):
            if writer is not None and (
                rows_in_file >= rows_per_file or sink.tell() + largest_row_group > max_shard_bytes
            ):
                close()
            if writer is None:
                temp_files.append(os.path.join(config_dir, f".{split}-{len(temp_files):05d}.parquet.tmp"))
                sink = open(temp_files[-1], "wb")
                writer = pq.ParquetWriter(sink, schema, compression=compression, write_page_index=True)
                rows_in_file = 0
            table = _export_table(table, features, path_prefixes, f"{os.path.basename(config_dir)}/{split}")
            before = sink.tell()
            writer.write_table(table, row_group_size=row_group_rows)
            largest_row_group = max(largest_row_group, sink.tell() - before)
            rows_in_file += table.num_rows
            arrow_bytes += table.nbytes
            row_groups += 1
        if writer is None:  # an empty split still gets one (empty) file, so it loads
            temp_files.append(os.path.join(config_dir, f".{split}-00000.parquet.tmp"))
            sink = open(temp_files[-1], "wb")
            writer = pq.ParquetWriter(sink, schema, compression=compression)
        close()
    finally:
        if writer is not None:
            writer.close()
            sink.close()
    names = []
    for index, temp in enumerate(temp_files):
        name = f"{split}-{index:05d}-of-{len(temp_files):05d}.parquet"
        os.replace(temp, os.path.join(config_dir, name))
        names.append(name)
    return names, parquet_bytes, arrow_bytes, row_groups


# -- export -------------------------------------------------------------------------------------


def _check_out_dir(out_dir: str, configs: Sequence[str], overwrite: bool) -> None:
    if not os.path.exists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise EMM1DataError(f"{out_dir}: exists and is not a folder; pick a folder for the export.")
    # Hidden entries (.git, .gitattributes, .cache of a cloned Hub repo) are left alone.
    present = [e for e in os.listdir(out_dir) if not e.startswith(".")]
    if present and not overwrite:
        raise EMM1DataError(
            f"{out_dir}: folder is not empty ({', '.join(sorted(present)[:5])}{', ...' if len(present) > 5 else ''}). "
            "Export into an empty folder or a clone of the Hub repo, or pass overwrite=True (--overwrite) "
            f"to replace README.md and the folders of the exported configs."
        )
    stale = [e for e in present if os.path.isdir(os.path.join(out_dir, e)) and e not in configs]
    if stale:
        raise EMM1DataError(
            f"{out_dir}: holds folders of configs not in this export ({', '.join(sorted(stale))}); the new card "
            "would not list them. Export them too, or remove them."
        )


def export(
    out_dir: str,
    data_dir: str,
    configs: Optional[Sequence[str]] = None,
    *,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    min_files: int = DEFAULT_MIN_FILES,
    cache_dir: Optional[str] = None,
    num_proc: Optional[int] = None,
    repo_id: str = DEFAULT_REPO_ID,
    overwrite: bool = False,
    card_dir: Optional[str] = None,
    **builder_kwargs: Any,
) -> ExportResult:
    """Write E-MM1 configs as a Hub dataset repository: Parquet shards per config and a `README.md` card.

    Args:
        out_dir: the folder to write (created; must be empty, or `overwrite=True`).
        data_dir: the E-MM1 metadata folder (a parent of `e-mm1_100m/`, `e-mm1_1m/`, ...), local or URL.
            Media files are not needed: paths are stored relative to the data root.
        configs: config names (default: every config of the builders, `phase1_nn1` ... `phase2_triplets`).
        max_shard_bytes: upper bound of a Parquet file's size.
        row_group_rows: rows per Parquet row group (the unit of streaming reads and of resharding).
        min_files: at least this many files per split when it has that many row groups (older
            `datasets` stream one shard per file).
        cache_dir: `datasets` cache for the prepared configs (default: the `datasets` cache).
        num_proc: processes for preparing each config.
        repo_id: the Hub repository id shown in the card's usage examples.
        overwrite: replace `README.md` and the exported configs' folders of an existing export.
        card_dir: folder with `README.template.md` and `citations.bib` (default: the project's `dataset_card/`).
        **builder_kwargs: builder config parameters, e.g. `modalities`, `media_folders`, `shard_bytes`.

    Returns:
        `ExportResult` with the card path and, per config, files, rows and sizes.
    """
    if max_shard_bytes <= 0 or row_group_rows <= 0 or min_files <= 0:
        raise ValueError("max_shard_bytes, row_group_rows and min_files must be positive.")
    for key in ("root_data_path", "decode", "data_dir", "config_name", "name"):
        if key in builder_kwargs:
            raise TypeError(f"export() sets {key} itself; media paths are stored relative to the data root.")
    if "file_path_columns" in builder_kwargs:
        # The export drops the media columns: without the path columns its rows would have no media path.
        raise TypeError("export() sets file_path_columns itself: the Hub copy keeps the media paths only in the "
                        "*_file_path columns, so they are always written. Leave the option out.")
    available = builder_config_names()
    names = list(configs) if configs else list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"Unknown config(s) {unknown}; the builders have {list(available)}.")
    out_dir = os.path.abspath(os.path.expanduser(out_dir))
    _check_out_dir(out_dir, names, overwrite)
    os.makedirs(out_dir, exist_ok=True)
    # Builders put media under the root we pass; seed-schema EShot lists media under its own folder,
    # so paths under data_dir (the data root) are accepted too.
    prefixes = [_EXPORT_ROOT + "/", normalize_root(os.fspath(data_dir)) + "/"]
    staging = tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=out_dir)
    exported: List[ExportedConfig] = []
    citation = homepage = ""
    try:
        for name in names:
            builder = available[name](
                config_name=name, data_dir=data_dir, root_data_path=_EXPORT_ROOT, decode=False,
                cache_dir=cache_dir, **path_column_options(name), **builder_kwargs,
            )
            builder.download_and_prepare(num_proc=num_proc)
            citation = citation or builder.info.citation or ""
            homepage = homepage or builder.info.homepage or ""
            features = export_features(builder.info.features)
            entry = ExportedConfig(name, features, {}, {}, {}, 0, 0, builder.config.description or "")
            for split, dataset in builder.as_dataset().items():
                files, parquet_bytes, arrow_bytes, row_groups = write_split(
                    dataset, os.path.join(staging, name), str(split), features,
                    max_shard_bytes=max_shard_bytes, row_group_rows=row_group_rows, min_files=min_files,
                    path_prefixes=prefixes,
                )
                entry.splits[str(split)] = len(dataset)
                entry.split_bytes[str(split)] = arrow_bytes
                entry.files[str(split)] = [f"{name}/{f}" for f in files]
                entry.file_bytes += parquet_bytes
                entry.row_groups += row_groups
            exported.append(entry)
        card = render_card(
            [e.card_config() for e in exported], repo_id=repo_id, default_config=names[0], citation=citation,
            homepage=homepage, max_shard_bytes=max_shard_bytes, row_group_rows=row_group_rows,
            media_folders=builder_kwargs.get("media_folders"), card_dir=card_dir,
        )
        for name in names:  # move into place only once everything was written
            target = os.path.join(out_dir, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.replace(os.path.join(staging, name), target)
        # An export with the media inside was replaced (its config folders are gone or rewritten): its manifest
        # would still describe media shards, and a later `--embed-media` export would compare against them.
        for leftover in (MANIFEST_FILE, MANIFEST_FILE + ".tmp"):
            if os.path.isfile(os.path.join(out_dir, leftover)):
                os.remove(os.path.join(out_dir, leftover))
        card_path = os.path.join(out_dir, "README.md")
        with open(card_path, "w", encoding="utf-8") as f:
            f.write(card)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(out_dir, card_path, exported)


# -- the pre-joined layout of the Hub copy ------------------------------------------------------

HUB_REPOS = {"phase1": HUB_PHASE1_FOLDERS[0], "phase2": HUB_PHASE2_FOLDERS[0]}


@dataclass
class HubExportResult:
    """What `export_hub` wrote: per repository folder (`E-MM1-100M`, `E-MM1-1M`), its Parquet files and rows."""

    out_dir: str
    files: Dict[str, List[str]]  # repository folder -> files relative to it, "/"-separated
    rows: Dict[str, int]  # file (relative to out_dir) -> rows


def _hub_card(repo: str, files: Sequence[str]) -> str:
    """A dataset card whose `configs:` block names each Parquet file, so stock `datasets` loads them by name."""
    lines = ["---", "configs:"]
    for index, name in enumerate(files):
        lines += [f"- config_name: {name.rsplit('/', 1)[-1].split('.')[0]}", f"  data_files: {name}"]
        if index == 0:
            lines.append("  default: true")
    lines += ["---", "", f"# {repo}", "",
              "E-MM1 metadata pre-joined: each row holds the caption and the save folder, file name and provenance "
              "of its media items (" + ("one file per neighbour rank `nn_01` ... `nn_16`" if repo == HUB_REPOS["phase1"]
                                       else "one file per paired -> annotated modality pair") + ").",
              "Media paths are `ROOT_DATA_PATH/save_folder/{modality}/file_name`. The `emm1` builder reads this "
              "folder as its `data_dir`.", ""]
    return "\n".join(lines)


def export_hub(
    out_dir: str,
    data_dir: str,
    configs: Optional[Sequence[str]] = None,
    *,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    overwrite: bool = False,
) -> HubExportResult:
    """Write the pre-joined Parquet generation (the layout of the official Hub copy) from a CSV generation.

    `out_dir/E-MM1-100M/data/nn_{01..16}.parquet` (phase-1 configs) and
    `out_dir/E-MM1-1M/data/{paired}_to_{annotated}.parquet` plus `annotation_mapping.csv` (`phase2_triplets`),
    each repository folder with a `README.md` whose `configs:` name the files: what a maintainer would push.
    The builders read either folder (or `out_dir`) as `data_dir`. Parquet as the export writes it (zstd,
    row groups of `row_group_rows`, page index).

    Args:
        out_dir: the folder to write (created; must be empty, or `overwrite=True`).
        data_dir: the E-MM1 metadata folder of a CSV generation (seed or released), local or URL.
        configs: which files: `phase1_nn{k}` (one rank), `phase1_all` (all 16), `phase2_triplets` (every pair);
            default all.
        row_group_rows: rows per Parquet row group (the builder's unit of sharding).
        overwrite: replace the repository folders of an existing export.
    """
    if row_group_rows <= 0:
        raise ValueError("row_group_rows must be positive.")
    available = builder_config_names()
    names = list(configs) if configs else [n for n in available if not n.startswith("eshot")]
    unknown = [n for n in names if n not in available or n.startswith("eshot")]
    if unknown:
        raise ValueError(f"Unknown config(s) for the hub layout {unknown}; choose from "
                         f"{[n for n in available if not n.startswith('eshot')]} (EShot stays CSV/JSON, as released).")
    nn_indices = sorted({k for n in names for k in (range(1, NUM_NEIGHBOURS + 1) if n == "phase1_all"
                                                     else [int(n[len("phase1_nn"):])] if n.startswith("phase1_nn") else [])})
    repos = ([HUB_REPOS["phase1"]] if nn_indices else []) + ([HUB_REPOS["phase2"]] if "phase2_triplets" in names else [])
    out_dir = os.path.abspath(os.path.expanduser(out_dir))
    _check_out_dir(out_dir, repos, overwrite)
    os.makedirs(out_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=out_dir)
    result = HubExportResult(out_dir, {}, {})
    try:
        for repo in repos:
            repo_dir = os.path.join(staging, repo)
            data = os.path.join(repo_dir, HUB_DATA_FOLDER)
            if repo == HUB_REPOS["phase1"]:
                split_dir = find_split_dir(data_dir, PHASE1_FOLDERS, f"nn_{nn_indices[0]}/data_groups.csv", "export --layout hub")
                written = write_prejoined_phase1(split_dir, data, nn_indices, row_group_rows)
            else:
                split_dir = find_split_dir(data_dir, PHASE2_FOLDERS, "triplets.csv", "export --layout hub")
                written = write_prejoined_phase2(split_dir, data, row_group_rows)
            files = [f"{HUB_DATA_FOLDER}/{os.path.basename(p)}" for p in written]
            with open(os.path.join(repo_dir, "README.md"), "w", encoding="utf-8") as f:
                f.write(_hub_card(repo, files))
            result.files[repo] = files
            for path, name in zip(written, files):
                result.rows[f"{repo}/{name}"] = pq.ParquetFile(path).metadata.num_rows
        for repo in repos:  # move into place only once everything was written
            target = os.path.join(out_dir, repo)
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.replace(os.path.join(staging, repo), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


# -- command line -------------------------------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """`"256MiB"`, `"1G"`, `"1048576"` -> bytes (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 256MiB, 1G, 1048576)")
    unit = (match.group(2) or "").lower().rstrip("b").rstrip("i")
    return int(float(match.group(1)) * _UNITS[unit])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emm1 export",
        description="Write E-MM1 configs as a Hugging Face Hub dataset repository (Parquet shards + README.md card).",
    )
    parser.add_argument("--to", required=True, dest="out_dir", help="output folder (empty, or a clone of the Hub repo)")
    parser.add_argument("--data-dir", required=True, help="E-MM1 metadata folder (parent of e-mm1_100m/, e-mm1_1m/); path or URL")
    parser.add_argument("--configs", nargs="+", metavar="CONFIG", help="configs to export (default: all)")
    parser.add_argument("--max-shard-bytes", type=parse_size, default=None,
                        help=f"upper bound of a shard file (default {human_bytes(DEFAULT_MAX_SHARD_BYTES)}; "
                             "500 MB with --embed-media)")
    parser.add_argument("--row-group-rows", type=int, default=None,
                        help=f"rows per Parquet row group (default {DEFAULT_ROW_GROUP_ROWS}; with --embed-media the "
                             "datasets convention for media: 100, 10 when the config has video)")
    parser.add_argument("--min-files", type=int, default=DEFAULT_MIN_FILES,
                        help=f"at least this many files per large split (default {DEFAULT_MIN_FILES})")
    parser.add_argument("--modalities", nargs="+", choices=MODALITIES, help="media modalities to keep (default all)")
    parser.add_argument("--media-folder", action="append", type=media_folder_arg, default=[], metavar="MODALITY=FOLDER",
                        help="per-modality folder name in paths, e.g. audio=video (repeatable)")
    parser.add_argument("--repo-id", default=DEFAULT_REPO_ID, help="Hub repo id shown in the card's examples")
    parser.add_argument("--cache-dir", help="datasets cache for the prepared configs")
    parser.add_argument("--num-proc", type=int, help="processes for preparing each config")
    parser.add_argument("--overwrite", action="store_true", help="replace README.md and the exported configs' folders")
    parser.add_argument("--layout", choices=("configs", "hub"), default="configs",
                        help="configs: one folder of prepared Parquet shards per config, with a card (default); hub: the "
                             "pre-joined files of the official Hub copy, E-MM1-100M/data/nn_01.parquet ... and "
                             "E-MM1-1M/data/{paired}_to_{annotated}.parquet")
    media = parser.add_argument_group(
        "media", "--embed-media: shards hold the media bytes (emm1_lib/tools/export_media.py); which items is chosen "
                 "by licence with exactly one of --licenses, --redistributable-only, --all-licenses")
    media.add_argument("--embed-media", action="store_true", help="embed the media files' bytes in the shards")
    media.add_argument("--root-data-path", help="the local media root (save_folder/{modality folder}/file_name below it)")
    media.add_argument("--licenses", nargs="+", metavar="LICENSE",
                       help='embed items under these source licences, e.g. --licenses "CC BY 4.0" MIT')
    media.add_argument("--redistributable-only", action="store_true",
                       help="embed items under the documented allow-list (emm1_lib/schema/licenses.py, docs/publishing.md)")
    media.add_argument("--all-licenses", action="store_true", help="embed every item, whatever its licence")
    media.add_argument("--format", choices=("parquet", "webdataset"), default="parquet", dest="fmt",
                       help="parquet (default) or webdataset tar shards")
    media.add_argument("--on-missing-media", choices=("error", "null"), default="error",
                       help="a missing media file stops the export (error, default) or is published without bytes (null)")
    media.add_argument("--num-workers", type=int, default=4, help="shards written at once (default 4)")
    return parser


def _cli_media(parser: argparse.ArgumentParser, args: argparse.Namespace, builder_kwargs: Dict[str, Any]) -> int:
    """`emm1 export --embed-media`."""
    from emm1_lib.tools.export_media import DEFAULT_MEDIA_SHARD_BYTES
    from emm1_lib.tools.export_media import export_media

    if not args.root_data_path:
        parser.error("--embed-media needs --root-data-path, the folder holding the media files.")
    try:
        result = export_media(
            args.out_dir, args.data_dir, args.root_data_path, args.configs, licenses=args.licenses,
            redistributable_only=args.redistributable_only, all_licenses=args.all_licenses, fmt=args.fmt,
            max_shard_bytes=args.max_shard_bytes or DEFAULT_MEDIA_SHARD_BYTES, row_group_rows=args.row_group_rows,
            num_workers=args.num_workers, on_missing_media=args.on_missing_media, cache_dir=args.cache_dir,
            num_proc=args.num_proc, repo_id=args.repo_id, overwrite=args.overwrite, **builder_kwargs,
        )
    except (EMM1DataError, ValueError, TypeError, OSError) as err:
        print(f"emm1 export: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {result.out_dir} ({len(result.written)} shard files written, {len(result.kept)} unchanged)")
    for c in result.configs:
        embedded = sum(v.embedded for v in c.counts.values())
        items = sum(v.embedded + v.excluded + v.missing for v in c.counts.values())
        print(f"  {c.name:<16} {sum(c.splits.values()):>12,} rows  {sum(len(v) for v in c.files.values()):>4} files  "
              f"{embedded:,}/{items:,} media items embedded  {human_bytes(c.file_bytes)}")
    print(f"  card: {result.card_path}\n  manifest: {result.manifest_path}")
    return 0


def cli(argv: Optional[List[str]] = None) -> int:
    """`emm1 export --to DIR --data-dir PATH [--configs ...]`: returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    media_flags = [flag for flag, on in (("--root-data-path", args.root_data_path), ("--licenses", args.licenses),
                                         ("--redistributable-only", args.redistributable_only),
                                         ("--all-licenses", args.all_licenses), ("--format", args.fmt != "parquet"),
                                         ("--on-missing-media", args.on_missing_media != "error")) if on]
    if media_flags and not args.embed_media:
        parser.error(f"{', '.join(media_flags)}: only with --embed-media.")
    if args.layout == "hub":
        if args.embed_media:
            parser.error("--embed-media writes prepared configs; it does not combine with --layout hub.")
        return _cli_hub(parser, args)
    builder_kwargs: Dict[str, Any] = {}
    if args.modalities:
        builder_kwargs["modalities"] = args.modalities
    if args.media_folder:
        builder_kwargs["media_folders"] = dict(args.media_folder)
    if args.embed_media:
        return _cli_media(parser, args, builder_kwargs)
    try:
        result = export(
            args.out_dir, args.data_dir, args.configs, max_shard_bytes=args.max_shard_bytes or DEFAULT_MAX_SHARD_BYTES,
            row_group_rows=args.row_group_rows or DEFAULT_ROW_GROUP_ROWS, min_files=args.min_files, cache_dir=args.cache_dir,
            num_proc=args.num_proc, repo_id=args.repo_id, overwrite=args.overwrite, **builder_kwargs,
        )
    except (EMM1DataError, ValueError, TypeError, OSError) as err:
        print(f"emm1 export: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {result.out_dir}")
    for c in result.configs:
        files = sum(len(v) for v in c.files.values())
        print(f"  {c.name:<16} {c.num_rows:>12,} rows  {files:>4} files  {c.row_groups:>5} row groups  "
              f"{human_bytes(c.file_bytes)}")
    print(f"  card: {result.card_path}")
    return 0


def _cli_hub(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`emm1 export --layout hub`: the pre-joined files; options that only shape prepared configs are refused."""
    defaults = parser.parse_args(["--to", "x", "--data-dir", "x"])
    unused = [flag for flag, name in (("--modalities", "modalities"), ("--media-folder", "media_folder"),
                                      ("--max-shard-bytes", "max_shard_bytes"), ("--min-files", "min_files"),
                                      ("--repo-id", "repo_id"), ("--cache-dir", "cache_dir"), ("--num-proc", "num_proc"))
              if getattr(args, name) != getattr(defaults, name)]
    if unused:
        parser.error(f"{', '.join(unused)}: not used by --layout hub (one file per neighbour rank or modality pair, "
                     "every modality, paths as save_folder + file_name).")
    try:
        result = export_hub(args.out_dir, args.data_dir, args.configs,
                            row_group_rows=args.row_group_rows or DEFAULT_ROW_GROUP_ROWS,
                            overwrite=args.overwrite)
    except (EMM1DataError, ValueError, OSError) as err:
        print(f"emm1 export: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {result.out_dir}")
    for name, rows in result.rows.items():
        print(f"  {name:<40} {rows:>12,} rows")
    return 0
