"""E-MM1: captions linked to images, audio, video and point clouds (E-MM1:100M and E-MM1:1M).

Configs:
- `phase1_nn1` … `phase1_nn16`: E-MM1:100M, one row per caption with its k-th nearest image,
  audio clip, video and point cloud (`nn_{k}/data_groups.csv` joined with `infos/*.csv`).
- `phase1_all`: all 16 neighbours (`nn_index` 1–16), ~107 M rows at full scale.
- `phase2_triplets`: E-MM1:1M, human-rated (caption, paired item, annotated item) triplets.

Usage (today's `datasets`): `import emm1; datasets.load_dataset("emm1", "phase1_nn1", data_dir=..., root_data_path=...)`.
Usage (`datasets` 3.6): `datasets.load_dataset("path/to/emm1.py", "phase1_nn1", data_dir=..., trust_remote_code=True)`.
Three generations of the metadata are accepted: the CSVs of the seed draft and of the release, and the
pre-joined Parquet files of the Hub copy; `data_dir` may be local or a URL (`hf://datasets/...`).
"""
import os
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.table import cast_table_to_features

from emm1_lib.io.column_store import writable_folder
from emm1_lib.builders.compat import builder_kwargs
from emm1_lib.builders.compat import check_data_dir_exists
from emm1_lib.builders.compat import table_key
from emm1_lib.builders.job_reports import merged_job_counts
from emm1_lib.builders.job_reports import write_job_counts
from emm1_lib.builders.parameters import check_flag
from emm1_lib.builders.parameters import check_integer
from emm1_lib.builders.parameters import check_media_option_values
from emm1_lib.errors import DanglingIdWarning
from emm1_lib.errors import EMM1DataError
from emm1_lib.errors import MissingRoleWarning
from emm1_lib.errors import raise_first
from emm1_lib.media.features import media_feature
from emm1_lib.schema.layout import EMM1_CITATION
from emm1_lib.schema.layout import EMM1_HOMEPAGE
from emm1_lib.schema.layout import MODALITIES
from emm1_lib.schema.layout import NUM_NEIGHBOURS
from emm1_lib.schema.layout import PHASE1_FOLDERS
from emm1_lib.schema.layout import PHASE2_FOLDERS
from emm1_lib.schema.layout import PROVENANCE_COLUMNS
from emm1_lib.io.fs import exists
from emm1_lib.schema.layout import find_split_dir
from emm1_lib.io.fs import is_remote
from emm1_lib.io.fs import join
from emm1_lib.io.fs import normalize_root
from emm1_lib.schema.ids import DanglingCount
from emm1_lib.schema.infos import MediaInfo
from emm1_lib.schema.infos import TextInfo
from emm1_lib.media.files import check_on_missing_media
from emm1_lib.io.tables import DEFAULT_SHARD_BYTES
from emm1_lib.io.tables import byte_ranges
from emm1_lib.io.tables import check_columns
from emm1_lib.io.tables import range_row_line
from emm1_lib.io.tables import read_csv_range
from emm1_lib.io.tables import read_header
from emm1_lib.schema import prejoined
from emm1_lib.schema import rules
from emm1_lib.schema.layout import PHASE2_ROLES
from emm1_lib.schema.layout import locate_split_dir
from emm1_lib.schema.triplets import DEFAULT_ANNOTATION_LABELS
from emm1_lib.schema.triplets import annotation_codes_for
from emm1_lib.schema.triplets import annotation_values
from emm1_lib.schema.triplets import is_integer
from emm1_lib.schema.triplets import normalize_triplets
from emm1_lib.schema.triplets import read_annotation_labels
from emm1_lib.schema.triplets import select_triplets

_LICENSE = "ODC-By 1.0 for the database; every media item keeps its source licence (column *_dataset_license)."
PHASE1_CONFIG_NAMES = tuple(f"phase1_nn{k}" for k in range(1, NUM_NEIGHBOURS + 1))


@dataclass
class EMM1Config(datasets.BuilderConfig):
    """BuilderConfig for E-MM1.

    Args:
        nn_index (`int`, *optional*): which neighbour file `nn_{k}/data_groups.csv` a phase-1 config
            reads (set by `phase1_nn{k}`; None for `phase1_all` and `phase2_triplets`).
        data_dir (`str`): the metadata folder: `e-mm1_100m/` or `encord_phase_1_dataset/` for phase 1,
            `e-mm1_1m/` or `encord_phase_2_dataset/` for phase 2, or a parent folder holding them; or the
            pre-joined Parquet copy (`E-MM1-100M/` with `data/nn_01.parquet`…, `E-MM1-1M/` with
            `data/audio_to_image.parquet`…). Local path or URL, e.g. `"hf://datasets/encord-team/E-MM1-100M"`.
        root_data_path (`str`, *optional*): the media root; file paths are
            `root_data_path/save_folder/{modality folder}/file_name`. Defaults to the `ROOT_DATA_PATH`
            environment variable.
        modalities (`list[str]`): subset of `image`, `audio`, `video`, `points` (default all). Phase 2
            keeps the triplets whose paired and annotated modalities are both in the set.
        media_folders (`dict[str, str]`): per-modality folder name replacing `{modality}` in paths, e.g.
            `{"audio": "video"}` where the released download guide keeps audio `.mp4` under `video/`.
        decode (`bool`): whether media columns decode on access (False gives `{"path", "bytes"}`).
        on_missing_media (`str`): `"error"` (default) raises naming the file when a media file is
            missing at decode time; `"null"` decodes it to None.
        allow_outside_root (`bool`): decoding refuses local media that resolve (through symlinks) outside
            `root_data_path`; True allows them (your own links to another disk).
        media_options (`dict[str, dict]`): per-modality options of the media features, e.g.
            `{"points": {"num_points": 2048, "normalize": True}, "audio": {"sampling_rate": 16000}}`.
            A key that is no modality, or an unknown option name, is an error.
        annotations (`list`, *optional*): phase 2 only: keep triplets with these labels, given as names
            (`"Good Match"`) or codes (`1`).
        batch_size (`int`): rows per Arrow table built and written at a time (bounds memory).
        shard_bytes (`int`): phase 1 reads each grouping CSV as byte ranges of this size; each range
            is a shard for `num_proc` preparation, streaming workers and multi-node splitting.
        file_path_columns (`bool`): phase 1, CSV and pre-joined input alike: also store each media path as a
            `{m}_file_path` string column. Default False: the media column `{m}` already holds the path, so
            it is stored once (a `phase1_nn1` row is ~540 instead of ~740 bytes; `phase1_all` writes ~58
            instead of ~80 GB at full size; writing is the largest cost of preparation). True gives the
            layout with both, e.g. `load_dataset("emm1", "phase1_nn1", ..., file_path_columns=True)` and
            `row["image_file_path"]`. Without the column, read the path from the media column:
            with `decode=False`, `row["image"]["path"]`; or, decoding on, all paths at once without
            decoding: `pyarrow.compute.struct_field(ds.with_format("arrow")["image"], "path")`.
            Phase 2's `paired_file_path`/`annotated_file_path` are always stored. `emm1 export` always writes
            the `{m}_file_path` columns (the Hub copy keeps paths only there) and refuses this option; publish
            with it: `push_to_hub` embeds the media and keeps only each file's name, so without this option a
            directly pushed copy loses the paths' folders.
        provenance_labels (`bool`): phase 1: store `{m}_source_dataset` and `{m}_dataset_license` as
            `ClassLabel`s (names: the distinct values of the infos tables, sorted; known once the infos
            are read, so `builder.info.features` shows strings before preparation) instead of
            repeating the strings on every row.
        infos_cache (`bool`): keep an Arrow form of the infos tables under `<cache_dir>/emm1-infos/` (the columns
            read: 1.44 GB for the benchmark's real-sized tree, the captions uncompressed, the media tables
            LZ4-compressed), reused by every config, process and run while the
            CSVs are unchanged (size, modification time, inode and their first and last 64 KiB), so the
            tables are parsed once, not per config. Local CSVs and a local cache only. False parses them each time.
    """

    nn_index: Optional[int] = None
    root_data_path: Optional[str] = None
    modalities: List[str] = field(default_factory=lambda: list(MODALITIES))
    media_folders: Dict[str, str] = field(default_factory=dict)
    decode: bool = True
    on_missing_media: str = "error"
    media_options: Dict[str, dict] = field(default_factory=dict)
    allow_outside_root: bool = False
    annotations: Optional[List] = None
    batch_size: int = 100_000
    shard_bytes: int = DEFAULT_SHARD_BYTES
    file_path_columns: bool = False
    provenance_labels: bool = False
    infos_cache: bool = True

    @property
    def is_phase1(self) -> bool:
        return self.name.startswith("phase1")


# Media infos tables read on the captions' thread while this one reads the others (`_infos`).
_READ_BESIDE_TEXT = ("audio",)
# Threads building the media columns of a phase-1 table, beside the thread that builds its text columns.
_TABLE_WORKERS = 2


def prefetched(items: Iterator) -> Iterator:
    """Yield from `items`, computing the next item in a background thread while the caller handles this one.

    Arrow and numpy kernels release the GIL, so on a second core table N+1 is built (CSV range
    parsed, ids looked up, paths joined) while `datasets` casts and writes table N. One table
    ahead: memory grows by one table. Errors surface in the caller, at the item that raised.
    """
    done = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="emm1-prefetch") as pool:
        pending = pool.submit(next, items, done)
        while True:
            item = pending.result()
            if item is done:
                return
            pending = pool.submit(next, items, done)
            yield item


def _require_rows(path: str) -> None:
    """Name the file when it holds no data row: datasets would only say 'Instruction "train" corresponds to no data'."""
    raise_first(rules.data_rows(path))


def _check_nn_index(groups: pa.Table, groups_file: str, start: int, end: int) -> None:
    """nn_index is a neighbour rank 1-16, stored as int8: name the line instead of a bare ArrowInvalid from the cast."""
    where = rules.Rows(locate=lambda row: range_row_line(groups_file, start, end, row), span=f" (in bytes {start}-{end})")
    raise_first(rules.nn_index(groups["nn_index"], groups["encord_text_id"], groups_file, where))


def _check_modalities(config: EMM1Config) -> List[str]:
    unknown = [m for m in config.modalities if m not in MODALITIES]
    if unknown or not config.modalities:
        raise ValueError(f"{config.name}: modalities={config.modalities!r}; choose from {list(MODALITIES)}.")
    unknown_folders = [m for m in config.media_folders if m not in MODALITIES]
    if unknown_folders:
        raise ValueError(f"{config.name}: media_folders has unknown modalities {unknown_folders}.")
    check_media_options(config.name, config.media_options, MODALITIES)
    check_on_missing_media(config.on_missing_media)
    _check_parameters(config)
    return [m for m in MODALITIES if m in config.modalities]  # canonical order


def _check_parameters(config: EMM1Config) -> None:
    """The numeric and yes/no parameters, and the annotation filter's values (which need no file to check)."""
    check_integer(config.name, "batch_size", config.batch_size, 1)
    check_integer(config.name, "shard_bytes", config.shard_bytes, 1)
    check_integer(config.name, "nn_index", config.nn_index, 1, NUM_NEIGHBOURS, optional=True)
    for flag in ("decode", "allow_outside_root", "file_path_columns", "provenance_labels", "infos_cache"):
        check_flag(config.name, flag, getattr(config, flag))
    if config.annotations is not None:
        try:
            annotation_values(config.annotations)
        except ValueError as error:
            raise ValueError(f"{config.name}: {error}") from None


def check_media_options(config_name: str, media_options: Dict[str, dict], modalities: Sequence[str]) -> None:
    """`media_options` is `{modality: {option: value}}`: a key that is no modality, or unknown option names, are errors.

    Options of a modality that the config does not load are checked too: nothing given is silently ignored.
    """
    unknown = [key for key in media_options if key not in modalities]
    if unknown:
        raise ValueError(
            f"{config_name}: media_options has unknown modalities {unknown}; the keys are modalities, "
            f"from {list(modalities)}, e.g. {{'points': {{'num_points': 2048}}}}."
        )
    for modality, options in media_options.items():
        if not isinstance(options, dict):
            raise ValueError(f"{config_name}: media_options[{modality!r}] must be a dict of options, got {options!r}.")
        check_media_option_values(config_name, f"media_options[{modality!r}]", options)
        media_feature(modality, **options)  # raises naming the options this modality accepts


class EMM1(datasets.ArrowBasedBuilder):
    """E-MM1:100M nearest-neighbour groups and E-MM1:1M human-rated triplets, with resolved media paths."""

    BUILDER_CONFIG_CLASS = EMM1Config
    BUILDER_CONFIGS = [
        EMM1Config(name=name, nn_index=k, description=f"E-MM1:100M, nearest neighbour number {k} of every caption.")
        for k, name in enumerate(PHASE1_CONFIG_NAMES, start=1)
    ] + [
        EMM1Config(name="phase1_all", description="E-MM1:100M, all 16 nearest neighbours (nn_index 1-16)."),
        EMM1Config(name="phase2_triplets", description="E-MM1:1M, human-rated caption / paired / annotated triplets."),
    ]
    DEFAULT_CONFIG_NAME = "phase1_nn1"
    # Rows per Arrow record batch written. The library's default (1,000) splits each 100k-row table into
    # 100 record batches of ~60 buffers each, and every buffer is a Python-level file write: 5 M writes
    # for phase1_nn1. Rows here are small (paths, not media bytes), so write whole tables.
    DEFAULT_WRITER_BATCH_SIZE = 100_000

    def __init__(self, *args, **kwargs):
        kwargs = builder_kwargs("emm1", args, kwargs)
        annotations = kwargs.get("annotations")
        if isinstance(annotations, (list, tuple)):
            # numpy integer codes as Python ints: the same filter gives the same config id, hence the same cache
            kwargs["annotations"] = [int(v) if is_integer(v) else v for v in annotations]
        super().__init__(**kwargs)

    def __getstate__(self):
        # Infos tables are loaded lazily in each worker; never ship them through pickle.
        state = self.__dict__.copy()
        state["_infos_cache"] = {}
        return state

    # -- schema -------------------------------------------------------------------------------

    def _media_feature(self, modality: str):
        options = dict(self.config.media_options.get(modality, {}))
        root = self.config.root_data_path  # not self._root(): features exist before a root is required
        media_root = normalize_root(root) if root and not self.config.allow_outside_root else None
        return media_feature(
            modality, decode=self.config.decode, on_missing_media=self.config.on_missing_media,
            media_root=media_root, **options
        )

    def _info(self) -> datasets.DatasetInfo:
        modalities = _check_modalities(self.config)
        features = {"encord_text_id": datasets.Value("int64"), "caption": datasets.Value("string")}
        if self.config.is_phase1:
            features["nn_index"] = datasets.Value("int8")
            for m in modalities:
                features[f"encord_{m}_id"] = datasets.Value("int64")
                if self.config.file_path_columns:
                    features[f"{m}_file_path"] = datasets.Value("string")
                features[m] = self._media_feature(m)
                for column in PROVENANCE_COLUMNS:
                    # With provenance_labels, _split_generators swaps in ClassLabels once the names are known.
                    features[f"{m}_{column}"] = datasets.Value("string")
        else:
            features.update(
                {
                    "paired_modality": datasets.Value("string"),
                    "annotated_modality": datasets.Value("string"),
                    "encord_paired_id": datasets.Value("int64"),
                    "encord_annotated_id": datasets.Value("int64"),
                    "paired_file_path": datasets.Value("string"),
                    "annotated_file_path": datasets.Value("string"),
                    # The names come from annotation_mapping.csv: _split_generators sets them (no file is read
                    # here, where the builder is made); until then, the documented defaults.
                    "annotation": datasets.ClassLabel(names=list(DEFAULT_ANNOTATION_LABELS.values())),
                }
            )
            for m in modalities:
                features[m] = self._media_feature(m)
        return datasets.DatasetInfo(
            description=__doc__,
            features=datasets.Features(features),
            homepage=EMM1_HOMEPAGE,
            license=_LICENSE,
            citation=EMM1_CITATION,
        )

    def _annotation_mapping(self, split_dir: Optional[str]) -> Dict[int, str]:
        """`{code: label}` from `annotation_mapping.csv`, or the documented defaults when it is absent.

        Read once per split folder and process: labels, the `annotations` filter and generation all ask,
        and on the Hub each read is a probe and a download.
        """
        mappings = self.__dict__.setdefault("_annotation_mappings", {})
        if split_dir not in mappings:
            mapping_file = join(split_dir, "annotation_mapping.csv") if split_dir else None
            if mapping_file and exists(mapping_file):
                mappings[split_dir] = read_annotation_labels(mapping_file)
            else:
                mappings[split_dir] = dict(DEFAULT_ANNOTATION_LABELS)
        return dict(mappings[split_dir])

    # -- locating files -----------------------------------------------------------------------

    def _root(self) -> str:
        root = self.config.root_data_path  # $ROOT_DATA_PATH already resolved into it by __init__
        if not root:
            raise ValueError(
                f"{self.config.name}: no media root. Pass root_data_path=... or set the ROOT_DATA_PATH "
                "environment variable to the folder that holds save_folder/{modality}/file_name."
            )
        return normalize_root(root)

    def _data_dir(self) -> str:
        if self.config.is_phase1:
            marker, folders = f"nn_{self.config.nn_index or 1}/data_groups.csv", PHASE1_FOLDERS
        else:
            marker, folders = "triplets.csv", PHASE2_FOLDERS
        hint = (f"Pass data_dir= the E-MM1 metadata folder holding {marker} ({' or '.join(folders)}), "
                "or a parent holding it.")
        if not self.config.data_dir:
            raise ValueError(f"{self.config.name}: no data_dir. {hint}")
        check_data_dir_exists(self.config.data_dir, f"config {self.config.name}: data_dir", hint)
        return self.config.data_dir

    def _phase2_dir(self) -> str:
        return find_split_dir(self._data_dir(), PHASE2_FOLDERS, "triplets.csv", f"config {self.config.name}")

    def _folder(self, modality: str) -> str:
        return self.config.media_folders.get(modality, modality)

    def _infos(self, split_dir: str, modalities: Sequence[str],
               with_text: bool = True) -> Tuple[Optional[TextInfo], Dict[str, MediaInfo]]:
        """The text and media infos tables of a split folder, read once per process.

        `with_text=False` reads only the media tables (ClassLabel names need no captions); a later
        call with text reads just the captions.
        """
        cache = self.__dict__.setdefault("_infos_cache", {})
        key = (split_dir, tuple(modalities))
        text, media = cache.get(key, (None, None))
        if media is not None and (text is not None or not with_text):
            return text, media
        cache.clear()  # one split's tables at a time bounds memory
        infos_dir = join(split_dir, "infos")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="emm1-text") as pool:
            # The captions stream (one block at a time, into an Arrow file: ~1.2 GB that need
            # not stay resident) on one core while the media tables are read.
            cache_folder = self._infos_cache_folder()
            if with_text:
                text = pool.submit(TextInfo.read, join(infos_dir, "text.csv"), spill_folder=self._spill_folder(),
                                   cache_folder=cache_folder)

            def read(m: str) -> MediaInfo:
                return MediaInfo.read(join(infos_dir, f"{m}.csv"), m, PROVENANCE_COLUMNS, cache_folder=cache_folder)

            needed = list(modalities) if media is None else []
            # The text thread also reads audio.csv when this one has other tables to read: it balances the two
            # threads (text.csv is the largest file).
            beside = {m: pool.submit(read, m) for m in needed
                      if with_text and m in _READ_BESIDE_TEXT and len(needed) > 1}
            try:
                here = {m: read(m) for m in needed if m not in beside}
            except BaseException:
                for pending in beside.values():
                    pending.cancel()
                raise
            if with_text:
                text = text.result()  # the captions' error first: it was read first
            if media is None:
                media = {m: beside[m].result() if m in beside else here[m] for m in modalities}
        cache[key] = (text, media)
        # The CSV reader's freed blocks stay with the allocator; hand them back before the long
        # phase of building tables.
        pa.default_memory_pool().release_unused()
        return text, media

    def _spill_folder(self) -> Optional[str]:
        """A local folder for the captions' Arrow file: beside the cache (None: keep them in memory).

        `<cache>/emm1-tmp/`, or while a preparation runs its own subfolder there (see `_prepare_split`).
        """
        if getattr(self, "_preparation_folder", None):
            return self._preparation_folder
        return self._scratch_root()

    def _infos_cache_folder(self) -> Optional[str]:
        """Where the Arrow form of the infos tables is kept between configs, processes and runs
        (`<cache>/emm1-infos/`, see `emm1_lib.io.table_cache`); None when the cache is remote or read-only."""
        cache_root = getattr(self, "_cache_dir_root", None)
        if not self.config.infos_cache or not cache_root or is_remote(cache_root):
            return None
        return writable_folder(os.path.join(cache_root, "emm1-infos"))

    def _scratch_root(self) -> Optional[str]:
        cache_root = getattr(self, "_cache_dir_root", None)
        if not cache_root or is_remote(cache_root):
            return None
        return writable_folder(os.path.join(cache_root, "emm1-tmp"))

    def _close_infos(self) -> None:
        """Drop the infos tables and delete the captions' file now (not when, or if, the builder is collected)."""
        text, _ = next(iter(self.__dict__.pop("_infos_cache", {}).values()), (None, None))
        close = getattr(getattr(text, "captions", None), "close", None)
        if close is not None:
            close()  # deletes the file only in the process that wrote it

    def _prepare_split(self, split_generator, *args, **kwargs):
        if (kwargs.get("num_proc") or 1) > 1:
            # Each worker reads the infos itself (they are not pickled): the parent's copy, loaded for
            # ClassLabel names, would only add a third copy to the machine's memory. With the infos cache, the
            # first worker parses each table and the others wait for it and map its cache entry (`io.table_cache`).
            self._close_infos()
        # The captions' files of this preparation (one per num_proc worker) go to a folder of its own, removed
        # at the end whatever happens: a failing job makes the pool terminate the other workers (SIGTERM), which
        # then cannot delete their files themselves.
        scratch_root = self._scratch_root()
        self._preparation_folder = tempfile.mkdtemp(prefix="prepare-", dir=scratch_root) if scratch_root else None
        # With num_proc, the jobs' dangling-id counts come back through files (see job_reports): a warning
        # raised in a pool worker never reaches the caller. Beside the captions' files, or (remote cache) in
        # the system's temporary folder: the workers run on this machine.
        self._job_counts_folder = None
        if (kwargs.get("num_proc") or 1) > 1:
            self._job_counts_folder = self._preparation_folder or tempfile.mkdtemp(prefix="emm1-prepare-")
        try:
            result = super()._prepare_split(split_generator, *args, **kwargs)
            if self._job_counts_folder:
                self._warn_dangling(merged_job_counts(self._job_counts_folder))
            return result
        finally:
            # Prepared (or failed): the infos tables and the captions' file are not needed any more.
            # (Streaming keeps them between iterations: an epoch would otherwise read them again.)
            self._close_infos()
            for folder in {self._preparation_folder, self._job_counts_folder} - {None}:
                shutil.rmtree(folder, ignore_errors=True)
            self._preparation_folder = None
            self._job_counts_folder = None

    def _prepare_split_single(self, *args, **kwargs):
        # A job of a preparation; with num_proc, in a pool worker, which the pool ends with SIGTERM: the
        # worker's captions file is deleted when its job ends, not left to exit hooks that do not run.
        self._job_id = kwargs.get("job_id", 0)  # names the job's dangling-id counts (job order is data order)
        try:
            yield from super()._prepare_split_single(*args, **kwargs)
        finally:
            self._close_infos()

    # -- splits -------------------------------------------------------------------------------

    def _split_generators(self, dl_manager):
        modalities = _check_modalities(self.config)
        self._data_dir()  # fail before any work when the metadata folder is not given or absent
        self._root()  # or when the media root is unknown
        prejoined_dir = self._prejoined_dir()
        if prejoined_dir is not None:
            return self._prejoined_split_generators(prejoined_dir, modalities)
        if not self.config.is_phase1:
            split_dir = self._phase2_dir()
            _require_rows(join(split_dir, "triplets.csv"))
            self._set_annotation_labels(split_dir)
            if self.config.annotations:  # a bad filter value fails here, before any data is read
                annotation_codes_for(self.config.annotations, list(self._annotation_mapping(split_dir)), self.info.features["annotation"].names)
            return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"split_dir": split_dir})]
        nn_indices = [self.config.nn_index] if self.config.nn_index else list(range(1, NUM_NEIGHBOURS + 1))
        split_dir = find_split_dir(
            self._data_dir(), PHASE1_FOLDERS, f"nn_{nn_indices[0]}/data_groups.csv", f"config {self.config.name}"
        )
        required = ["encord_text_id"] + [f"encord_{m}_id" for m in modalities]
        shards: List[Tuple[str, int, int, int]] = []
        headers: Dict[str, Tuple[str, ...]] = {}
        for k in nn_indices:
            groups_file = join(split_dir, f"nn_{k}", "data_groups.csv")
            if not exists(groups_file):
                raise EMM1DataError(f"config {self.config.name}: {groups_file} not found (neighbour file nn_{k}).")
            headers[groups_file] = tuple(read_header(groups_file))
            check_columns(groups_file, headers[groups_file], required)
            _require_rows(groups_file)
            shards += [(groups_file, start, end, k) for start, end in byte_ranges(groups_file, self.config.shard_bytes)]
        if self.config.provenance_labels:
            self._set_provenance_labels(self._infos(split_dir, modalities, with_text=False)[1])
        return [
            datasets.SplitGenerator(
                name=datasets.Split.TRAIN,
                # `shards` is the only list: datasets splits it across processes, workers and nodes.
                gen_kwargs={"split_dir": split_dir, "headers": headers, "shards": shards},
            )
        ]

    def _set_annotation_labels(self, split_dir: str) -> None:
        """Name the `annotation` ClassLabel after annotation_mapping.csv, ordered by code (index i is the i-th code).

        Set here rather than in `_info`, like the provenance labels below, so making a builder reads no file.
        """
        features = dict(self.info.features)
        features["annotation"] = datasets.ClassLabel(names=list(self._annotation_mapping(split_dir).values()))
        self.info.features = datasets.Features(features)

    def _set_provenance_labels(self, media: Dict[str, MediaInfo]) -> None:
        """Make the provenance columns ClassLabels named by the infos tables' distinct values.

        Set here, as the packaged Parquet builder sets its features: prepared data (and its cached
        info), streaming and num_proc workers all see them, since this runs before any of them.
        """
        features = dict(self.info.features)
        for m, info in media.items():
            for column in PROVENANCE_COLUMNS:
                names = info.extra_names(column) if column in info.extras else []
                features[f"{m}_{column}"] = datasets.ClassLabel(names=names)
        self.info.features = datasets.Features(features)

    def _generate_tables(self, split_dir: str, headers=None, shards=None, prejoined_files=None):
        if prejoined_files is not None:
            yield from self._generate_prejoined(split_dir, shards, prejoined_files)
        elif self.config.is_phase1:
            yield from self._generate_phase1(split_dir, headers, shards)
        else:
            yield from self._generate_phase2(split_dir)

    # -- phase 1 ------------------------------------------------------------------------------

    def _generate_phase1(self, split_dir: str, headers: Dict[str, Tuple[str, ...]], shards) -> Iterator:
        modalities = _check_modalities(self.config)
        text, media = self._infos(split_dir, modalities)
        root = self._root()
        group_types = {c: pa.int64() for c in ["encord_text_id", "nn_index"] + [f"encord_{m}_id" for m in modalities]}
        dangling = {"text": DanglingCount("encord_text_id", text.source)}
        dangling.update({m: DanglingCount(f"encord_{m}_id", media[m].source) for m in modalities})

        def ranges():
            for shard_index, (groups_file, start, end, k) in enumerate(shards):
                groups = read_csv_range(groups_file, start, end, headers[groups_file], group_types)
                if groups is None:
                    continue
                if "nn_index" in groups.column_names:
                    _check_nn_index(groups, groups_file, start, end)
                yield shard_index, k, groups

        def tables(pool):
            # The next byte range is parsed while this one's tables are built, so neither the table
            # threads nor the writer wait for a parse.
            for shard_index, k, groups in prefetched(ranges()):
                for batch_index, batch in enumerate(groups.to_batches(max_chunksize=self.config.batch_size)):
                    yield table_key(shard_index, batch_index), self._phase1_table(batch, k, text, media, root, dangling, pool)

        # The modalities of a table are built side by side: Arrow's gathers and joins release the GIL,
        # and the main thread mostly waits for the next table (writing is the lighter half).
        with ThreadPoolExecutor(max_workers=_TABLE_WORKERS, thread_name_prefix="emm1-table") as pool:
            yield from prefetched(tables(pool))
        self._report_dangling(dangling.values())

    def _phase1_table(self, groups, k: int, text: TextInfo, media: Dict[str, MediaInfo], root: str, dangling,
                      pool: Optional[ThreadPoolExecutor] = None) -> pa.Table:
        """One output table; with a `pool`, the media modalities are built on it while this thread does the text."""

        def media_columns(m: str) -> Dict[str, pa.Array]:
            info = media[m]
            ids = groups.column(f"encord_{m}_id")
            positions = info.lookup.positions(ids)
            dangling[m].add(ids, positions)  # one counter per modality: no two threads share one
            paths = info.file_paths(positions, root, self._folder(m))
            columns = {f"encord_{m}_id": ids}
            if self.config.file_path_columns:
                columns[f"{m}_file_path"] = paths
            columns[m] = paths
            for column in PROVENANCE_COLUMNS:
                columns[f"{m}_{column}"] = self._provenance(info, column, positions, self.info.features[f"{m}_{column}"])
            return columns

        pending = [pool.submit(media_columns, m) for m in media] if pool is not None else None
        text_ids = groups.column("encord_text_id")
        text_positions = text.lookup.positions(text_ids)
        dangling["text"].add(text_ids, text_positions)
        if "nn_index" in groups.schema.names:
            nn_index = groups.column("nn_index")
        else:  # the seed draft's files carry no nn_index column: it is the folder's k
            nn_index = pa.array([k] * len(groups), pa.int8())
        columns = {"encord_text_id": text_ids, "caption": text.caption_at(text_positions), "nn_index": nn_index}
        for part in ([f.result() for f in pending] if pending is not None else map(media_columns, media)):
            columns.update(part)
        return cast_table_to_features(pa.table(columns), self.info.features)

    @staticmethod
    def _provenance(info: MediaInfo, column: str, positions: pa.Array, feature) -> pa.Array:
        """A provenance column at `positions`: strings, or ClassLabel indices; null when the infos lack it."""
        label = isinstance(feature, datasets.ClassLabel)
        if column not in info.extras:
            return pa.nulls(len(positions), pa.int64() if label else pa.string())
        return info.extra_codes(column, positions, feature.names) if label else info.extra(column, positions)

    # -- phase 2 ------------------------------------------------------------------------------

    def _generate_phase2(self, split_dir: str) -> Iterator:
        modalities = _check_modalities(self.config)
        triplets_file = join(split_dir, "triplets.csv")
        labels = self.info.features["annotation"].names
        codes = list(self._annotation_mapping(split_dir))
        triplets = normalize_triplets(triplets_file, codes)
        triplets = select_triplets(triplets, modalities, self.config.annotations, codes, labels, triplets_file)
        involved = sorted(set(pc.unique(triplets["paired_modality"]).to_pylist()) | set(pc.unique(triplets["annotated_modality"]).to_pylist()))
        text, media = self._infos(split_dir, involved)
        root = self._root()
        dangling = {"text": DanglingCount("encord_text_id", text.source)}
        for role in ("paired", "annotated"):
            dangling.update({(role, m): DanglingCount(f"encord_{role}_id ({m})", media[m].source) for m in involved})
        for batch_index, batch in enumerate(triplets.to_batches(max_chunksize=self.config.batch_size)):
            yield table_key(0, batch_index), self._phase2_table(batch, text, media, root, modalities, dangling)
        self._report_dangling(dangling.values())

    def _phase2_table(self, triplets, text: TextInfo, media: Dict[str, MediaInfo], root: str, modalities, dangling) -> pa.Table:
        text_ids = triplets.column("encord_text_id")
        text_positions = text.lookup.positions(text_ids)
        dangling["text"].add(text_ids, text_positions)
        n = len(triplets)
        paths = {}
        for role in ("paired", "annotated"):
            role_modality = triplets.column(f"{role}_modality")
            ids = triplets.column(f"encord_{role}_id")
            role_paths = pa.nulls(n, pa.string())
            for m, info in media.items():
                is_m = pc.equal(role_modality, m)
                ids_m = pc.if_else(is_m, ids, pa.scalar(None, pa.int64()))
                positions = info.lookup.positions(ids_m)
                dangling[(role, m)].add(ids_m, positions)
                role_paths = pc.if_else(is_m, info.file_paths(positions, root, self._folder(m)), role_paths)
            paths[role] = role_paths
        columns = {
            "encord_text_id": text_ids,
            "caption": text.caption_at(text_positions),
            "paired_modality": triplets.column("paired_modality"),
            "annotated_modality": triplets.column("annotated_modality"),
            "encord_paired_id": triplets.column("encord_paired_id"),
            "encord_annotated_id": triplets.column("encord_annotated_id"),
            "paired_file_path": paths["paired"],
            "annotated_file_path": paths["annotated"],
            "annotation": triplets.column("annotation"),
        }
        for m in modalities:
            in_paired = pc.equal(triplets.column("paired_modality"), m)
            in_annotated = pc.equal(triplets.column("annotated_modality"), m)
            columns[m] = pc.if_else(
                in_paired, paths["paired"], pc.if_else(in_annotated, paths["annotated"], pa.scalar(None, pa.string()))
            )
        return cast_table_to_features(pa.table(columns), self.info.features)

    # -- the pre-joined Parquet generation (the official Hub copy) ------------------------------

    def _prejoined_dir(self) -> Optional[str]:
        """The folder of this config's pre-joined Parquet files, when `data_dir` holds no CSV generation for it
        (None: read the CSVs). Neither generation: an error naming every place tried for both."""
        data_dir = self._data_dir()
        phase1 = self.config.is_phase1
        marker, folders = (f"nn_{self.config.nn_index or 1}/data_groups.csv", PHASE1_FOLDERS) if phase1 \
            else ("triplets.csv", PHASE2_FOLDERS)
        if locate_split_dir(data_dir, folders, [marker]) is not None:
            return None
        found = prejoined.locate_prejoined_dir(data_dir, phase1)
        if found is not None:
            return found
        try:
            find_split_dir(data_dir, folders, marker, f"config {self.config.name}")
        except EMM1DataError as err:
            files = "nn_01.parquet ... nn_16.parquet" if phase1 else "{paired}_to_{annotated}.parquet"
            tried = "\n  ".join(prejoined.prejoined_candidates(data_dir, phase1))
            raise EMM1DataError(f"{err}\nNor the pre-joined Parquet generation (the Hub copy): no {files} in\n  {tried}",
                                file=err.file, code=err.code) from None
        return None  # pragma: no cover - find_split_dir raised above

    def _prejoined_split_generators(self, folder: str, modalities: List[str]):
        """Shards = (file, row group): `num_proc`, streaming workers and nodes spread over files x row groups."""
        phase1 = self.config.is_phase1
        found = prejoined.prejoined_files(folder, phase1)
        if phase1:
            keys = [self.config.nn_index] if self.config.nn_index else list(range(1, NUM_NEIGHBOURS + 1))
            absent = [k for k in keys if k not in found]
            if absent:
                missing = join(folder, prejoined.phase1_file_name(absent[0]))
                raise EMM1DataError(
                    f"config {self.config.name}: {missing} not found (neighbour file nn_{absent[0]:02d}); {folder} holds "
                    f"the neighbour files {sorted(found)}.", file=missing, code="missing_file")
        else:  # a triplet is kept when both its modalities are wanted: so is a pair's file
            keys = [key for key in sorted(found) if key[0] in modalities and key[1] in modalities]
        files = [prejoined.describe_file(path, key, modalities) for key in keys for path in found[key]]
        missing_roles: Dict[str, List[str]] = {}
        for described in files:
            raise_first(prejoined.file_violations(described))
            for role in described.columns.missing_optional:
                missing_roles.setdefault(role.describe(), []).append(described.path)
        if missing_roles:
            paths = sorted({p for ps in missing_roles.values() for p in ps})
            warnings.warn(
                f"{self.config.name}: the pre-joined files ({paths[0]}{f' and {len(paths) - 1} more' if len(paths) > 1 else ''}) "
                f"have no column for {', '.join(missing_roles)}; those output columns are null.",
                MissingRoleWarning, stacklevel=2)
        features = dict(self.info.features)
        if not phase1:
            mapping = prejoined.annotation_mapping(folder)
            features["annotation"] = datasets.ClassLabel(names=list(mapping.values()))
            if self.config.annotations:  # a bad filter value fails here, before any data is read
                annotation_codes_for(self.config.annotations, list(mapping), features["annotation"].names)
        elif self.config.provenance_labels:
            for m in modalities:
                for column in PROVENANCE_COLUMNS:
                    names = sorted({v for d in files for v in prejoined.distinct_strings(d, f"{m}.{column}")})
                    features[f"{m}_{column}"] = datasets.ClassLabel(names=names)
        self.info.features = datasets.Features(features)
        shards = [(d.path, index, start) for d in files for index, start in enumerate(d.row_group_starts())]
        return [datasets.SplitGenerator(
            name=datasets.Split.TRAIN,
            # `shards` is the only list: datasets splits it across processes, workers and nodes.
            gen_kwargs={"split_dir": folder, "shards": shards, "prejoined_files": {d.path: d for d in files}},
        )]

    def _generate_prejoined(self, folder: str, shards, files: Dict[str, "prejoined.PrejoinedFile"]) -> Iterator:
        """No join: each row group streams in batches of `batch_size` rows, paths are joined on whole columns."""
        modalities = _check_modalities(self.config)
        root = self._root()
        phase1 = self.config.is_phase1
        mapping = None if phase1 else prejoined.annotation_mapping(folder)
        dangling: Dict[str, Tuple[DanglingCount, set]] = {}  # id column -> its count, the files with dangling ids

        def tables():
            for shard_index, (path, row_group, first_row) in enumerate(shards):
                described = files[path]
                row = first_row
                batch_rows = prejoined.pipelined_batch_rows(described.row_groups[row_group], self.config.batch_size)
                for batch_index, batch in enumerate(prejoined.iter_row_group(described, row_group, batch_rows)):
                    where = rules.Rows.parquet(row, span=f" (row group {row_group})")
                    row += batch.num_rows
                    if phase1:
                        table = self._prejoined_phase1_table(batch, described, where, root, modalities, dangling, pool)
                    else:
                        table = self._prejoined_phase2_table(batch, described, where, root, modalities, dangling, mapping)
                    yield table_key(shard_index, batch_index), table

        # The next batch is read and built (its modalities side by side: Arrow's kernels release the GIL) while
        # `datasets` writes this one's table. Memory: those two batches, together at most one row group's rows
        # (`pipelined_batch_rows`; a row group is decoded one batch at a time), never a whole file.
        with ThreadPoolExecutor(max_workers=_TABLE_WORKERS, thread_name_prefix="emm1-table") as pool:
            yield from prefetched(tables())
        for column, (count, files) in dangling.items():
            if count.count:
                what = "caption" if column == "encord_text_id" else "save folder or file name"
                files = sorted(files)
                where = files[0] + (f" and {len(files) - 1} more file(s)" if len(files) > 1 else "")
                warnings.warn(
                    f"{self.config.name}: {count.count} {column} value(s) in {where} have no {what} "
                    f"(e.g. {count.examples}); those rows are kept with null paths/captions. `emm1 validate` lists them all.",
                    DanglingIdWarning, stacklevel=2)

    def _count_prejoined_dangling(self, dangling, path: str, column: str, ids: pa.Array, values: pa.Array) -> None:
        """A valid id whose joined value is null: the pre-joined form of an id without an infos row (one count per
        id column over all files, as the CSV route counts one per infos table)."""
        count, files = dangling.setdefault(column, (DanglingCount(column, path), set()))
        before = count.count
        count.add(ids, values)
        if count.count > before:
            files.add(path)

    def _prejoined_media(self, batch, described, owner: str, modality: str, where, root: str, dangling):
        """(ids, paths) of one item of a batch: the unsafe-part rule first, then the README path formula."""
        n = batch.num_rows
        raise_first(prejoined.unsafe_parts(batch, described, owner, where))
        ids = prejoined.as_int64(prejoined.role_column(batch, described, f"{owner}.id"), n)
        paths = prejoined.media_paths(root, self._folder(modality), prejoined.role_column(batch, described, f"{owner}.save_folder"),
                                      prejoined.role_column(batch, described, f"{owner}.file_name"), n)
        column = described.columns.get(f"{owner}.id") or f"encord_{owner}_id"
        self._count_prejoined_dangling(dangling, described.path, column, ids, paths)
        return ids, paths

    def _prejoined_text(self, batch, described, dangling) -> Tuple[pa.Array, pa.Array]:
        n = batch.num_rows
        text_ids = prejoined.as_int64(prejoined.role_column(batch, described, "text.id"), n)
        caption = prejoined.as_strings(prejoined.role_column(batch, described, "text.caption"), n)
        self._count_prejoined_dangling(dangling, described.path, "encord_text_id", text_ids, caption)
        return text_ids, caption

    def _prejoined_phase1_table(self, batch, described, where, root: str, modalities, dangling,
                                pool: Optional[ThreadPoolExecutor] = None) -> pa.Table:
        """One output table; with a `pool`, the modalities are built on it while this thread does the text."""
        n = batch.num_rows

        def media_columns(m: str) -> Dict[str, pa.Array]:
            ids, paths = self._prejoined_media(batch, described, m, m, where, root, dangling)
            columns = {f"encord_{m}_id": ids}
            if self.config.file_path_columns:
                columns[f"{m}_file_path"] = paths
            columns[m] = paths
            for column in PROVENANCE_COLUMNS:
                values = prejoined.role_column(batch, described, f"{m}.{column}")
                feature = self.info.features[f"{m}_{column}"]
                if isinstance(feature, datasets.ClassLabel):
                    columns[f"{m}_{column}"] = prejoined.label_codes(values, feature.names, n)
                else:
                    columns[f"{m}_{column}"] = prejoined.as_strings(values, n)
            return columns

        pending = [pool.submit(media_columns, m) for m in modalities] if pool is not None else None
        text_ids, caption = self._prejoined_text(batch, described, dangling)
        nn_index = prejoined.role_column(batch, described, "nn_index")
        if nn_index is not None:
            raise_first(rules.nn_index(nn_index, text_ids, described.path, where))
        else:  # the file name's k
            nn_index = pa.array(np.full(n, described.key, dtype=np.int8))
        columns = {"encord_text_id": text_ids, "caption": caption, "nn_index": nn_index}
        for part in ([f.result() for f in pending] if pending is not None else map(media_columns, modalities)):
            columns.update(part)
        return cast_table_to_features(pa.table(columns), self.info.features)

    def _prejoined_phase2_table(self, batch, described, where, root: str, modalities, dangling,
                                mapping: Dict[int, str]) -> pa.Table:
        codes, labels = list(mapping), self.info.features["annotation"].names
        text_ids = prejoined.as_int64(prejoined.role_column(batch, described, "text.id"), batch.num_rows)
        annotation = prejoined.role_column(batch, described, "annotation")
        explicit = {role: (described.columns.get(f"{role}.modality"), modality,
                           prejoined.role_column(batch, described, f"{role}.modality"))
                    for role, modality in zip(PHASE2_ROLES, described.key) if described.columns.get(f"{role}.modality")}
        raise_first(rules.prejoined_triplets(described.path, explicit, annotation, codes, labels, text_ids, where))
        index = prejoined.annotation_index(annotation, codes, labels)
        if self.config.annotations:
            wanted = [codes.index(c) for c in annotation_codes_for(self.config.annotations, codes, labels)]
            keep = pc.is_in(index, value_set=pa.array(wanted, pa.int64()))
            batch, index = batch.filter(keep), index.filter(keep)
        n = batch.num_rows
        text_ids, caption = self._prejoined_text(batch, described, dangling)
        items = {role: self._prejoined_media(batch, described, role, modality, where, root, dangling)
                 for role, modality in zip(PHASE2_ROLES, described.key)}
        paired, annotated = described.key
        columns = {
            "encord_text_id": text_ids,
            "caption": caption,
            "paired_modality": pa.array([paired] * n, pa.string()),
            "annotated_modality": pa.array([annotated] * n, pa.string()),
            "encord_paired_id": items["paired"][0],
            "encord_annotated_id": items["annotated"][0],
            "paired_file_path": items["paired"][1],
            "annotated_file_path": items["annotated"][1],
            "annotation": index,
        }
        for m in modalities:
            columns[m] = items["paired"][1] if m == paired else items["annotated"][1] if m == annotated \
                else pa.nulls(n, pa.string())
        return cast_table_to_features(pa.table(columns), self.info.features)

    # -- reporting ----------------------------------------------------------------------------

    def _report_dangling(self, counts: Iterable[DanglingCount]) -> None:
        """At the end of a read: warn, or, in a job of a num_proc preparation, record the counts for the
        preparing process to merge and warn once (`_prepare_split`)."""
        folder = getattr(self, "_job_counts_folder", None)
        if folder:
            write_job_counts(folder, getattr(self, "_job_id", 0), counts)
        else:
            self._warn_dangling(counts)

    def _warn_dangling(self, counts: Iterable[DanglingCount]) -> None:
        """One warning per id column with dangling ids: rows are kept, their looked-up values are null."""
        for count in counts:
            if count.count:
                message = (
                    f"{self.config.name}: {count.count} {count.column} value(s) have no row in {count.infos_file} "
                    f"(e.g. {count.examples}); those rows are kept with null paths/captions. "
                    "`emm1 validate` lists them all."
                )
                warnings.warn(message, DanglingIdWarning, stacklevel=2)

