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
from dataclasses import dataclass
from dataclasses import field
from typing import Dict
from typing import Optional

import datasets
import pyarrow as pa
from datasets.table import cast_table_to_features

from emm1_lib.builders.compat import builder_kwargs
from emm1_lib.builders.compat import check_data_dir_exists
from emm1_lib.builders.compat import table_key
from emm1_lib.builders.parameters import check_flag
from emm1_lib.builders.parameters import check_media_option_values
from emm1_lib.errors import raise_first
from emm1_lib.schema.eshot_files import CATEGORY_FILES
from emm1_lib.schema.eshot_files import ESHOT_MODALITIES
from emm1_lib.schema.eshot_files import ID_COLUMNS
from emm1_lib.schema.eshot_files import RELEASED_MEDIA_FOLDERS
from emm1_lib.schema.eshot_files import UncategorisedRowWarning
from emm1_lib.schema.eshot_files import find_eshot_dir
from emm1_lib.schema.eshot_files import labelled_rows
from emm1_lib.schema.eshot_files import seed_media_paths
from emm1_lib.schema.eshot_files import parent_dir
from emm1_lib.schema.eshot_files import read_categories
from emm1_lib.media.features import media_feature
from emm1_lib.schema.layout import EMM1_CITATION
from emm1_lib.schema.layout import EMM1_HOMEPAGE
from emm1_lib.io.fs import normalize_root
from emm1_lib.media.files import check_on_missing_media
from emm1_lib.schema.paths import join_media_paths

logger = datasets.utils.logging.get_logger(__name__)

__all__ = ["EShot", "EShotConfig", "UncategorisedRowWarning"]

_LICENSE = "ODC-By 1.0 for the database; every media item keeps the licence of its source (YouTube, Objaverse)."

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
            "normalize": True}` for points or `{"sampling_rate": 16000}` for audio; or, as for E-MM1, options per
            modality, `{"audio": {"sampling_rate": 16000}, "points": {"num_points": 2048}}` (one dict serves both
            configs). Unknown modalities and option names are errors.
        allow_outside_root (`bool`): decoding refuses local media that resolve (through symlinks) outside the
            media root; True allows them (your own links to another disk).
    """

    modality: str = "audio"
    root_data_path: Optional[str] = None
    media_folders: Dict[str, str] = field(default_factory=dict)
    decode: bool = True
    on_missing_media: str = "error"
    media_options: Dict[str, object] = field(default_factory=dict)
    allow_outside_root: bool = False


class EShot(datasets.ArrowBasedBuilder):
    """EShot benchmark: audio clips and point clouds of 112 categories, with their resolved media paths."""

    BUILDER_CONFIG_CLASS = EShotConfig
    BUILDER_CONFIGS = [
        EShotConfig(name="eshot_audio", modality="audio", description="EShot audio clips with their category."),
        EShotConfig(name="eshot_points", modality="points", description="EShot point clouds with their category."),
    ]
    DEFAULT_CONFIG_NAME = "eshot_audio"

    def __init__(self, *args, **kwargs):
        super().__init__(**builder_kwargs("eshot", args, kwargs))

    def _check_config(self) -> str:
        modality = self.config.modality
        if modality not in ESHOT_MODALITIES:
            raise ValueError(f"{self.config.name}: modality={modality!r}; choose from {list(ESHOT_MODALITIES)}.")
        unknown = [m for m in self.config.media_folders if m not in ESHOT_MODALITIES]
        if unknown:
            raise ValueError(f"{self.config.name}: media_folders has unknown modalities {unknown}.")
        check_on_missing_media(self.config.on_missing_media)
        for flag in ("decode", "allow_outside_root"):
            check_flag(self.config.name, flag, getattr(self.config, flag))
        self._media_options()
        return modality

    def _media_options(self) -> Dict[str, object]:
        """This config's media feature options: `media_options` itself, or its entry for this modality.

        Both forms are accepted, `{"num_points": 2048}` and E-MM1's per-modality `{"points": {"num_points": 2048}}`
        (one dict for both configs); in the second, a key that is no EShot modality is an error.
        """
        options = dict(self.config.media_options or {})
        if not any(isinstance(value, dict) or key in ESHOT_MODALITIES for key, value in options.items()):
            check_media_option_values(self.config.name, "media_options", options)
            return options  # option names are checked by the media feature
        unknown = [key for key in options if key not in ESHOT_MODALITIES]
        if unknown:
            raise ValueError(
                f"{self.config.name}: media_options has unknown modalities {unknown}; give options per modality "
                f"with keys from {list(ESHOT_MODALITIES)}, or this modality's options alone, e.g. "
                "{'num_points': 2048}."
            )
        not_dicts = [key for key, value in options.items() if not isinstance(value, dict)]
        if not_dicts:
            raise ValueError(f"{self.config.name}: media_options[{not_dicts[0]!r}] must be a dict of options.")
        for modality, modality_options in options.items():
            check_media_option_values(self.config.name, f"media_options[{modality!r}]", modality_options)
            media_feature(modality, **modality_options)  # the other config's options are checked as well
        return dict(options.get(self.config.modality, {}))

    def _eshot_dir(self) -> str:
        hint = (f"Pass data_dir= the eshot/ folder (holding {CATEGORY_FILES['audio']}, {CATEGORY_FILES['points']} "
                "and the info CSVs) or a parent holding it.")
        if not self.config.data_dir:
            raise ValueError(f"{self.config.name}: no data_dir. {hint}")
        check_data_dir_exists(self.config.data_dir, f"{self.config.name}: data_dir", hint)
        return find_eshot_dir(self.config.data_dir)

    def _media_root(self, eshot_dir: str) -> str:
        """`root_data_path` (or `$ROOT_DATA_PATH`), else the folder holding `eshot/` (the released layout)."""
        root = self.config.root_data_path
        return normalize_root(root) if root else parent_dir(eshot_dir)

    def _media_feature(self, media_root: Optional[str]):
        return media_feature(
            self.config.modality,
            decode=self.config.decode,
            on_missing_media=self.config.on_missing_media,
            media_root=None if self.config.allow_outside_root else media_root,
            **self._media_options(),
        )

    def _info(self) -> datasets.DatasetInfo:
        # No file is read here (datasets calls _info when the builder is made, before any data is asked for):
        # the category names and the media root come from the data, so _split_generators sets them.
        modality = self._check_config()
        id_column = ID_COLUMNS[modality]
        root = self.config.root_data_path
        features = {
            id_column: datasets.Value("int64"),
            "category": datasets.ClassLabel(names=[]),
            f"{modality}_file_path": datasets.Value("string"),
            modality: self._media_feature(normalize_root(root) if root else None),
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
            homepage=EMM1_HOMEPAGE,
            license=_LICENSE,
            citation=EMM1_CITATION,
        )

    def _split_generators(self, dl_manager):
        modality = self._check_config()
        eshot_dir = self._eshot_dir()
        categories = read_categories(eshot_dir)
        # Read and check the (small) metadata and media paths here, so a data error surfaces as itself (not wrapped
        # in a generation error) before any generation.
        rows, schema = labelled_rows(eshot_dir, modality, categories)
        paths = self._media_paths(rows, schema, eshot_dir)
        # Set here, as the packaged Parquet builder sets its features: prepared data (and its cached info),
        # streaming and its workers all see them, since this runs before any of them. Seed media live in the
        # eshot/ folder itself, so that folder is their root.
        features = dict(self.info.features)
        features["category"] = datasets.ClassLabel(names=categories)
        features[modality] = self._media_feature(self._media_root(eshot_dir) if schema == "released" else eshot_dir)
        self.info.features = datasets.Features(features)
        return [datasets.SplitGenerator(name=datasets.Split.TEST, gen_kwargs={"rows": rows, "paths": paths})]

    def _media_paths(self, rows: pa.Table, schema: str, eshot_dir: str) -> pa.Array:
        modality = self.config.modality
        if schema == "released":
            folder = self.config.media_folders.get(modality, RELEASED_MEDIA_FOLDERS[modality])
            root = self._media_root(eshot_dir)
            save_folder = rows["save_folder"].combine_chunks()
            return join_media_paths(root, save_folder, folder, rows["file_name"].combine_chunks())
        paths, violations = seed_media_paths(eshot_dir, modality, rows[ID_COLUMNS[modality]],
                                             self.config.media_folders.get(modality))
        for warning in raise_first(violations):
            logger.warning(f"{self.config.name}: {warning.message}")
        return pa.array(paths, pa.string())

    def _generate_tables(self, rows: pa.Table, paths: pa.Array):
        modality = self._check_config()
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

