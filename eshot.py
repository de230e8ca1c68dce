"""EShot: zero-shot audio <-> point-cloud classification benchmark of E-MM1 (112 categories, ~3,500 samples).

Configs (split `test`):
- `eshot_audio`: one row per audio clip: `eshot_audio_id`, `category`, `audio_file_path`, `audio` (decoded on
  access), `youtube_id`, `start_time`, `end_time`.
- `eshot_points`: one row per point cloud: `eshot_point_id`, `category`, `points_file_path`, `points`, `file_id`.

`category` is a `ClassLabel` over the sorted union of the categories of `category_to_audio_ids.json` and
`category_to_point_ids.json`, so a category has the same id in both configs. Rows are sorted by id: that is the
"dataset order" of embeddings files given to `eshot evaluate`.

Both schema generations are read (detected from the CSV headers):
- seed draft: `eshot_audio_id, youtube_id, start_time, end_time` and `eshot_point_id, object_id`; media in
  `eshot/audio/` and `eshot/point-clouds/`, named by id with any extension;
- release: `file_name, save_folder` added, points `eshot_point_id, file_id, file_name, save_folder`; media at
  `root_data_path/save_folder/{audio|points}/file_name` (the released example's `ROOT/eshot/audio/file_name`).

Usage (today's `datasets`): `import eshot; datasets.load_dataset("eshot", "eshot_audio", data_dir=...)`.
Usage (`datasets` 3.6):
`datasets.load_dataset("path/to/eshot.py", "eshot_audio", data_dir=..., trust_remote_code=True)`.
Evaluate with the `metrics/eshot` metric (see its card).
"""
import json
import os
import warnings
from dataclasses import dataclass
from dataclasses import field
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

import datasets
import numpy as np
import pyarrow as pa
from datasets.table import cast_table_to_features

from emm1_lib.compat import register_builder_module
from emm1_lib.compat import table_key
from emm1_lib.errors import EMM1DataError
from emm1_lib.features import media_feature
from emm1_lib.layout import ESHOT_FOLDERS
from emm1_lib.layout import find_split_dir
from emm1_lib.layout import is_remote
from emm1_lib.layout import join
from emm1_lib.layout import normalize_root
from emm1_lib.lookup import IdLookup
from emm1_lib.paths import check_path_parts
from emm1_lib.paths import join_media_paths
from emm1_lib.tables import open_binary
from emm1_lib.tables import read_csv_table
from emm1_lib.tables import read_header

logger = datasets.utils.logging.get_logger(__name__)

_CITATION = """\
@misc{emm1_2025,
  title  = {E-MM1: The World's Largest Multimodal Dataset},
  author = {Encord},
  year   = {2025},
  url    = {https://data.encord.com/e-mm1/explorer}
}
"""
_HOMEPAGE = "https://data.encord.com/e-mm1/explorer"
_LICENSE = "ODC-By 1.0 for the database; every media item keeps the licence of its source (YouTube, Objaverse)."

ESHOT_MODALITIES = ("audio", "points")
CATEGORY_FILES = {"audio": "category_to_audio_ids.json", "points": "category_to_point_ids.json"}
INFO_FILES = {"audio": "eshot_audio_info.csv", "points": "eshot_points_info.csv"}
ID_COLUMNS = {"audio": "eshot_audio_id", "points": "eshot_point_id"}
# Media folders (under the EShot folder for the seed schema, under root/save_folder for the release).
SEED_MEDIA_FOLDERS = {"audio": "audio", "points": "point-clouds"}
RELEASED_MEDIA_FOLDERS = {"audio": "audio", "points": "points"}


class UncategorisedRowWarning(UserWarning):
    """Rows of an EShot info CSV listed under no category: they have no label and are left out of the split."""


@dataclass
class EShotConfig(datasets.BuilderConfig):
    """BuilderConfig for EShot.

    Args:
        modality (`str`): `"audio"` (config `eshot_audio`) or `"points"` (config `eshot_points`).
        data_dir (`str`): the `eshot/` folder (holding the category JSONs and info CSVs), or a parent holding it.
            Local path or URL.
        root_data_path (`str`, *optional*): media root of the released schema: paths are
            `root_data_path/save_folder/{media folder}/file_name`. Defaults to the `ROOT_DATA_PATH` environment
            variable, else the parent of the `eshot/` folder (the released layout `ROOT/eshot/audio/...`). The seed
            schema ignores it: its media live in the `eshot/` folder itself.
        media_folders (`dict[str, str]`): per-modality folder name replacing the default (`audio`, and `points` for
            the release or `point-clouds` for the seed), e.g. `{"points": "point-clouds"}`.
        decode (`bool`): whether the media column decodes on access (False gives `{"path", "bytes"}`).
        on_missing_media (`str`): `"error"` (default) raises naming the file when a media file is missing at decode
            time; `"null"` decodes it to None.
        media_options (`dict`): options of this modality's media feature, e.g. `{"num_points": 2048,
            "normalize": True}` for points or `{"sampling_rate": 16000}` for audio.
    """

    modality: str = "audio"
    root_data_path: Optional[str] = None
    media_folders: Dict[str, str] = field(default_factory=dict)
    decode: bool = True
    on_missing_media: str = "error"
    media_options: Dict[str, object] = field(default_factory=dict)


# -- reading the EShot folder (also used by `eshot evaluate`) ----------------------------------------------------


def find_eshot_dir(data_dir: str) -> str:
    """The EShot folder: `data_dir` itself or `data_dir/eshot` (the one holding `category_to_audio_ids.json`)."""
    return find_split_dir(data_dir, ESHOT_FOLDERS, CATEGORY_FILES["audio"], "EShot")


def read_category_ids(path: str, modality: str) -> Dict[str, np.ndarray]:
    """`{category: int64 ids}` from a category JSON; errors name the file, the category and the id.

    Raises `EMM1DataError` when the file is not a `{str: [int, ...]}` object or an id is listed twice.
    """
    try:
        with open_binary(path) as f:
            mapping = json.loads(f.read().decode("utf-8-sig"))
    except FileNotFoundError as err:
        raise EMM1DataError(f"{path}: file not found (EShot needs it for the {modality} labels).") from err
    except (UnicodeDecodeError, ValueError) as err:
        raise EMM1DataError(f"{path}: not valid JSON ({err}); expected {{category: [ids]}}.") from err
    if not isinstance(mapping, dict):
        raise EMM1DataError(f"{path}: expected a JSON object {{category: [ids]}}, got {type(mapping).__name__}.")
    out: Dict[str, np.ndarray] = {}
    seen: Dict[int, str] = {}
    for category, ids in mapping.items():
        if not isinstance(ids, list):
            raise EMM1DataError(f"{path}: category {category!r} maps to {type(ids).__name__}, expected a list of ids.")
        values = []
        for value in ids:
            if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
                raise EMM1DataError(
                    f"{path}: category {category!r} lists {value!r}, which is not a non-negative integer "
                    f"{ID_COLUMNS[modality]}."
                )
            number = int(value)
            if number in seen:
                where = "twice in the same category" if seen[number] == category else (
                    f"under two categories, {seen[number]!r} and {category!r}"
                )
                raise EMM1DataError(
                    f"{path}: {ID_COLUMNS[modality]} {number} is listed {where}; every sample needs one category."
                )
            seen[number] = category
            values.append(number)
        out[str(category)] = np.asarray(values, dtype=np.int64)
    return out


def read_categories(eshot_dir: str) -> List[str]:
    """The sorted union of the categories of both category JSONs: the `ClassLabel` names of both configs."""
    names = set()
    for modality in ESHOT_MODALITIES:
        names.update(read_category_ids(join(eshot_dir, CATEGORY_FILES[modality]), modality))
    return sorted(names)


def _schema_of(info_file: str, modality: str) -> str:
    header = read_header(info_file)
    return "released" if "file_name" in header else "seed"


def read_info_table(eshot_dir: str, modality: str) -> Tuple[pa.Table, str]:
    """The info CSV of `modality` with its columns normalised, and the schema generation it was written in.

    Columns: the id, `youtube_id, start_time, end_time` (audio) or `file_id` (points, `object_id` in the seed),
    and `file_name, save_folder` (released schema only, checked to be safe path parts).
    """
    path = join(eshot_dir, INFO_FILES[modality])
    id_column = ID_COLUMNS[modality]
    schema = _schema_of(path, modality)
    if modality == "audio":
        types = {id_column: pa.int64(), "youtube_id": pa.string(), "start_time": pa.float64(), "end_time": pa.float64()}
        required = [id_column, "youtube_id", "start_time", "end_time"]
    else:
        source_column = "file_id" if schema == "released" else "object_id"
        types = {id_column: pa.int64(), source_column: pa.string()}
        required = [id_column, source_column]
    if schema == "released":
        types.update({"file_name": pa.string(), "save_folder": pa.string()})
        required += ["file_name", "save_folder"]
    table = read_csv_table(path, types, required=required)
    if modality == "points" and schema == "seed":
        table = table.rename_columns(["file_id" if name == "object_id" else name for name in table.column_names])
    if schema == "released":
        check_path_parts(table, ["save_folder", "file_name"], path, id_column)
    return table, schema


def labelled_rows(eshot_dir: str, modality: str, categories: List[str]) -> Tuple[pa.Table, str]:
    """The info rows of `modality` that have a category, sorted by id, with a `category` index column.

    Raises `EMM1DataError` for a JSON id absent from the info CSV (naming it) or a duplicate info row; warns
    (`UncategorisedRowWarning`) about info rows listed under no category, which are left out.
    """
    table, schema = read_info_table(eshot_dir, modality)
    info_file = join(eshot_dir, INFO_FILES[modality])
    json_file = join(eshot_dir, CATEGORY_FILES[modality])
    id_column = ID_COLUMNS[modality]
    lookup = IdLookup(table[id_column], info_file, id_column)  # raises on duplicate ids
    by_category = read_category_ids(json_file, modality)
    category_index = {name: i for i, name in enumerate(categories)}
    ids = np.concatenate([v for v in by_category.values()] or [np.zeros(0, np.int64)])
    labels = np.concatenate(
        [np.full(len(v), category_index[c], np.int64) for c, v in by_category.items()] or [np.zeros(0, np.int64)]
    )
    positions = lookup.positions(pa.array(ids, pa.int64()))
    absent = np.flatnonzero(positions.is_null().to_numpy(zero_copy_only=False))
    if len(absent):
        examples = ", ".join(
            f"{int(ids[i])} (category {categories[labels[i]]!r})" for i in absent[:5]
        )
        raise EMM1DataError(
            f"{json_file}: {len(absent)} {id_column} value(s) have no row in {info_file}: {examples}"
            f"{' ...' if len(absent) > 5 else ''}. Add the rows to the CSV or remove the ids from the JSON."
        )
    row_positions = positions.to_numpy(zero_copy_only=False).astype(np.int64)
    listed = np.zeros(table.num_rows, dtype=bool)
    listed[row_positions] = True
    if not listed.all():
        unlisted = table[id_column].to_numpy()[~listed]
        message = (
            f"{info_file}: {len(unlisted)} row(s) are listed under no category in {json_file} "
            f"({id_column} {', '.join(map(str, unlisted[:5].tolist()))}{' ...' if len(unlisted) > 5 else ''}); "
            "they have no label and are left out of the benchmark."
        )
        warnings.warn(message, UncategorisedRowWarning, stacklevel=2)
    order = np.argsort(ids, kind="stable")
    rows = table.take(pa.array(row_positions[order]))
    rows = rows.append_column("category", pa.array(labels[order], pa.int64()))
    return rows, schema


def _parent(path: str) -> str:
    """The folder holding `path` (local or URL)."""
    if is_remote(path):
        return path.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(normalize_root(path))


def _list_media_stems(folder: str) -> Dict[str, str]:
    """`{stem: file name}` of a media folder (seed schema: files are named by id with any extension)."""
    if is_remote(folder):
        import fsspec

        fs, fs_path = fsspec.core.url_to_fs(folder)
        try:
            names = [entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(fs_path, detail=False)]
        except FileNotFoundError:
            names = []
    else:
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    stems: Dict[str, str] = {}
    for name in names:
        stem = name.split(".", 1)[0]
        if stem in stems:
            raise EMM1DataError(
                f"{folder}: two media files share the id {stem!r} ({stems[stem]!r} and {name!r}); keep one."
            )
        stems[stem] = name
    return stems


class EShot(datasets.ArrowBasedBuilder):
    """EShot benchmark: audio clips and point clouds of 112 categories, with their resolved media paths."""

    BUILDER_CONFIG_CLASS = EShotConfig
    BUILDER_CONFIGS = [
        EShotConfig(name="eshot_audio", modality="audio", description="EShot audio clips with their category."),
        EShotConfig(name="eshot_points", modality="points", description="EShot point clouds with their category."),
    ]
    DEFAULT_CONFIG_NAME = "eshot_audio"

    def _check_config(self) -> str:
        modality = self.config.modality
        if modality not in ESHOT_MODALITIES:
            raise ValueError(f"{self.config.name}: modality={modality!r}; choose from {list(ESHOT_MODALITIES)}.")
        unknown = [m for m in self.config.media_folders if m not in ESHOT_MODALITIES]
        if unknown:
            raise ValueError(f"{self.config.name}: media_folders has unknown modalities {unknown}.")
        if self.config.on_missing_media not in ("error", "null"):
            raise ValueError(
                f"{self.config.name}: on_missing_media={self.config.on_missing_media!r}; use 'error' or 'null'."
            )
        return modality

    def _eshot_dir(self) -> str:
        if not self.config.data_dir:
            raise ValueError(
                f"{self.config.name}: no data_dir. Pass data_dir= the eshot/ folder (holding "
                f"{CATEGORY_FILES['audio']}, {CATEGORY_FILES['points']} and the info CSVs) or a parent holding it."
            )
        return find_eshot_dir(self.config.data_dir)

    def _info(self) -> datasets.DatasetInfo:
        modality = self._check_config()
        id_column = ID_COLUMNS[modality]
        features = {
            id_column: datasets.Value("int64"),
            "category": datasets.ClassLabel(names=read_categories(self._eshot_dir())),
            f"{modality}_file_path": datasets.Value("string"),
            modality: media_feature(
                modality,
                decode=self.config.decode,
                on_missing_media=self.config.on_missing_media,
                **dict(self.config.media_options),
            ),
        }
        if modality == "audio":
            features.update(
                {
                    "youtube_id": datasets.Value("string"),
                    "start_time": datasets.Value("float64"),
                    "end_time": datasets.Value("float64"),
                }
            )
        else:
            features["file_id"] = datasets.Value("string")
        return datasets.DatasetInfo(
            description=__doc__,
            features=datasets.Features(features),
            homepage=_HOMEPAGE,
            license=_LICENSE,
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        modality = self._check_config()
        eshot_dir = self._eshot_dir()
        # Read and check the (small) metadata here, so a data error surfaces as itself before any generation.
        rows, schema = labelled_rows(eshot_dir, modality, self.info.features["category"].names)
        return [
            datasets.SplitGenerator(
                name=datasets.Split.TEST, gen_kwargs={"eshot_dir": eshot_dir, "rows": rows, "schema": schema}
            )
        ]

    def _media_paths(self, rows: pa.Table, schema: str, eshot_dir: str) -> pa.Array:
        modality = self.config.modality
        if schema == "released":
            folder = self.config.media_folders.get(modality, RELEASED_MEDIA_FOLDERS[modality])
            root = self.config.root_data_path or os.environ.get("ROOT_DATA_PATH")
            root = normalize_root(root) if root else _parent(eshot_dir)
            save_folder = rows["save_folder"].combine_chunks()
            return join_media_paths(root, save_folder, folder, rows["file_name"].combine_chunks())
        folder = join(eshot_dir, self.config.media_folders.get(modality, SEED_MEDIA_FOLDERS[modality]))
        stems = _list_media_stems(folder)
        ids = rows[ID_COLUMNS[modality]].to_pylist()
        names = [stems.get(str(i)) for i in ids]
        missing = [i for i, name in zip(ids, names) if name is None]
        if missing:
            logger.warning(
                f"{self.config.name}: {len(missing)} {ID_COLUMNS[modality]} value(s) have no media file in {folder} "
                f"(e.g. {missing[:5]}); their paths are null."
            )
        return pa.array([join(folder, name) if name is not None else None for name in names], pa.string())

    def _generate_tables(self, eshot_dir: str, rows: pa.Table, schema: str):
        modality = self._check_config()
        paths = self._media_paths(rows, schema, eshot_dir)
        id_column = ID_COLUMNS[modality]
        columns = {
            id_column: rows[id_column],
            "category": rows["category"],
            f"{modality}_file_path": paths,
            modality: paths,
        }
        if modality == "audio":
            columns.update({name: rows[name] for name in ("youtube_id", "start_time", "end_time")})
        else:
            columns["file_id"] = rows["file_id"]
        yield table_key(0, 0), cast_table_to_features(pa.table(columns), self.info.features)


if __name__ == "eshot":  # imported as a module (not as a datasets 3.6 script copy): load_dataset("eshot") finds it
    register_builder_module("eshot", __name__, __file__)
