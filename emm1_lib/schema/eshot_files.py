"""Reading an EShot folder: category JSONs, info CSVs of both schema generations, labelled rows in dataset order.

Shared by the `eshot` builder (`eshot.py`), `eshot evaluate` (`emm1_lib.tools.eshot_cli`) and `emm1 validate`, so the
CLI's "dataset order" (rows sorted by id), labels and verdicts are exactly the builder's. The rules themselves are in
`emm1_lib.schema.rules`; errors name the file, the category and the id.
"""
import json
import os
import warnings
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple

import numpy as np
import pyarrow as pa

from emm1_lib.errors import Violation
from emm1_lib.errors import raise_first
from emm1_lib.io.fs import is_remote
from emm1_lib.io.fs import join
from emm1_lib.io.fs import list_names
from emm1_lib.io.fs import normalize_root
from emm1_lib.io.tables import open_binary
from emm1_lib.io.tables import read_csv_table
from emm1_lib.io.tables import read_header
from emm1_lib.schema import rules
from emm1_lib.schema.ids import IdLookup
from emm1_lib.schema.layout import ESHOT_FOLDERS
from emm1_lib.schema.layout import find_split_dir
from emm1_lib.schema.layout import locate_split_dir

ESHOT_MODALITIES = ("audio", "points")
CATEGORY_FILES = {"audio": "category_to_audio_ids.json", "points": "category_to_point_ids.json"}
INFO_FILES = {"audio": "eshot_audio_info.csv", "points": "eshot_points_info.csv"}
ID_COLUMNS = {"audio": "eshot_audio_id", "points": "eshot_point_id"}
# Media folders (under the EShot folder for the seed schema, under root/save_folder for the release).
SEED_MEDIA_FOLDERS = {"audio": "audio", "points": "point-clouds"}
RELEASED_MEDIA_FOLDERS = {"audio": "audio", "points": "points"}
# Any of these files marks the EShot folder (a missing one is then named by the reader that needs it).
ESHOT_MARKERS = (CATEGORY_FILES["audio"], CATEGORY_FILES["points"], INFO_FILES["audio"], INFO_FILES["points"])


class UncategorisedRowWarning(UserWarning):
    """Rows of an EShot info CSV listed under no category: they have no label and are left out of the split."""


def find_eshot_dir(data_dir: str) -> str:
    """The EShot folder: `data_dir` itself or `data_dir/eshot` (the first holding any of `ESHOT_MARKERS`)."""
    return find_split_dir(data_dir, ESHOT_FOLDERS, ESHOT_MARKERS, "EShot")


def locate_eshot_dir(data_dir: str) -> Optional[str]:
    """`find_eshot_dir`, or None when there is no EShot folder."""
    return locate_split_dir(data_dir, ESHOT_FOLDERS, ESHOT_MARKERS)


def read_category_json(path: str, modality: str) -> Tuple[Optional[Dict[str, np.ndarray]], List[Violation]]:
    """`{category: int64 ids}` from a category JSON, and the violations of its rules (`rules.category_lists`):
    the one reader of the builder, `eshot evaluate` and `emm1 validate`. None when the file cannot be used."""
    try:
        with open_binary(path) as f:
            mapping = json.loads(f.read().decode("utf-8-sig"))
    except FileNotFoundError:
        return None, [Violation("missing_file", path,
                                f"{path}: file not found (EShot needs it for the {modality} labels).")]
    except (UnicodeDecodeError, ValueError) as err:
        return None, [rules.json_problem(path, err)]
    except OSError as err:
        return None, [Violation("unreadable", path, f"{path}: cannot read the file ({err}).")]
    return rules.category_lists(mapping, path, ID_COLUMNS[modality])


def read_category_ids(path: str, modality: str) -> Dict[str, np.ndarray]:
    """`{category: int64 ids}` from a category JSON; errors name the file, the category and the id.

    Raises `EMM1DataError` when the file is not a `{str: [int, ...]}` object or an id is listed twice.
    """
    mapping, violations = read_category_json(path, modality)
    raise_first(violations)
    return mapping


def read_categories(eshot_dir: str) -> List[str]:
    """The sorted union of the categories of both category JSONs: the `ClassLabel` names of both configs."""
    names = set()
    for modality in ESHOT_MODALITIES:
        names.update(read_category_ids(join(eshot_dir, CATEGORY_FILES[modality]), modality))
    return sorted(names)


def info_schema(header: Sequence[str]) -> str:
    """The generation of an EShot info CSV: "released" (it has `file_name`) or "seed"."""
    return "released" if "file_name" in header else "seed"


def info_columns(modality: str, schema: str) -> Dict[str, pa.DataType]:
    """The columns of the info CSV of `modality` in `schema`, and their types (all required)."""
    id_column = ID_COLUMNS[modality]
    if modality == "audio":
        types = {id_column: pa.int64(), "youtube_id": pa.string(), "start_time": pa.float64(), "end_time": pa.float64()}
    else:
        types = {id_column: pa.int64(), ("file_id" if schema == "released" else "object_id"): pa.string()}
    if schema == "released":
        types.update({"file_name": pa.string(), "save_folder": pa.string()})
    return types


def read_info_table(eshot_dir: str, modality: str) -> Tuple[pa.Table, str]:
    """The info CSV of `modality` with its columns normalised, and the schema generation it was written in.

    Columns: the id, `youtube_id, start_time, end_time` (audio) or `file_id` (points, `object_id` in the seed),
    and `file_name, save_folder` (released schema only, checked to be safe path parts).
    """
    path = join(eshot_dir, INFO_FILES[modality])
    schema = info_schema(read_header(path))
    types = info_columns(modality, schema)
    table = read_csv_table(path, types, required=list(types))
    if modality == "points" and schema == "seed":
        table = table.rename_columns(["file_id" if name == "object_id" else name for name in table.column_names])
    if schema == "released":
        raise_first(rules.unsafe_path_parts(table, ["save_folder", "file_name"], path, ID_COLUMNS[modality]))
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
    lookup = IdLookup(table[id_column], info_file, id_column)  # raises on missing or duplicate ids
    by_category = read_category_ids(json_file, modality)
    for warning in raise_first(rules.category_rows(table[id_column], by_category, info_file, json_file, id_column)):
        warnings.warn(warning.message, UncategorisedRowWarning, stacklevel=2)
    category_index = {name: i for i, name in enumerate(categories)}
    ids = np.concatenate([v for v in by_category.values()] or [np.zeros(0, np.int64)])
    labels = np.concatenate(
        [np.full(len(v), category_index[c], np.int64) for c, v in by_category.items()] or [np.zeros(0, np.int64)]
    )
    row_positions = lookup.positions(pa.array(ids, pa.int64())).to_numpy(zero_copy_only=False).astype(np.int64)
    order = np.argsort(ids, kind="stable")
    rows = table.take(pa.array(row_positions[order]))
    rows = rows.append_column("category", pa.array(labels[order], pa.int64()))
    return rows, schema


def parent_dir(path: str) -> str:
    """The folder holding `path` (local or URL)."""
    if is_remote(path):
        return path.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(normalize_root(path))


def list_folder(folder: str) -> List[str]:
    """The names in a local or remote folder (none when it does not exist)."""
    return list_names(folder)


def seed_media_paths(eshot_dir: str, modality: str, ids: rules.Column, folder_name: Optional[str] = None
                     ) -> Tuple[List[Optional[str]], List[Violation]]:
    """The media file of each id of a seed-schema EShot table (None where there is none), and the violations:
    two files for one id (error), ids without a file (warning). The builder and `emm1 validate` both use it."""
    folder = join(eshot_dir, folder_name or SEED_MEDIA_FOLDERS[modality])
    by_id, violations = rules.media_by_id(list_folder(folder), folder)
    names = [by_id.get(i) for i in ids.to_pylist()]
    violations += rules.missing_seed_media(ids, names, folder, ID_COLUMNS[modality], join(eshot_dir, INFO_FILES[modality]))
    return [join(folder, name) if name is not None else None for name in names], violations
