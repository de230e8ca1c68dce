"""Reading an EShot folder: category JSONs, info CSVs of both schema generations, labelled rows in dataset order.

Shared by the `eshot` builder (`eshot.py`) and `eshot evaluate` (`emm1_lib.tools.eshot_cli`), so the CLI's "dataset
order" (rows sorted by id) and labels are exactly the builder's. Errors name the file, the category and the id.
"""
import json
import os
import warnings
from typing import Dict
from typing import List
from typing import Tuple

import numpy as np
import pyarrow as pa

from emm1_lib.errors import EMM1DataError
from emm1_lib.schema.layout import ESHOT_FOLDERS
from emm1_lib.schema.layout import find_split_dir
from emm1_lib.io.fs import is_remote
from emm1_lib.io.fs import join
from emm1_lib.io.fs import normalize_root
from emm1_lib.schema.infos import IdLookup
from emm1_lib.schema.paths import check_path_parts
from emm1_lib.io.tables import open_binary
from emm1_lib.io.tables import read_csv_table
from emm1_lib.io.tables import read_header

ESHOT_MODALITIES = ("audio", "points")
CATEGORY_FILES = {"audio": "category_to_audio_ids.json", "points": "category_to_point_ids.json"}
INFO_FILES = {"audio": "eshot_audio_info.csv", "points": "eshot_points_info.csv"}
ID_COLUMNS = {"audio": "eshot_audio_id", "points": "eshot_point_id"}
# Media folders (under the EShot folder for the seed schema, under root/save_folder for the release).
SEED_MEDIA_FOLDERS = {"audio": "audio", "points": "point-clouds"}
RELEASED_MEDIA_FOLDERS = {"audio": "audio", "points": "points"}


class UncategorisedRowWarning(UserWarning):
    """Rows of an EShot info CSV listed under no category: they have no label and are left out of the split."""


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


def parent_dir(path: str) -> str:
    """The folder holding `path` (local or URL)."""
    if is_remote(path):
        return path.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(normalize_root(path))


def media_files_by_id(folder: str) -> Dict[int, str]:
    """`{id: file name}` of a seed-schema media folder, whose files are named by id with any extension.

    The id is the part of the name before the first dot, read as an integer (so `7.wav` and `0007.wav` are both
    id 7); other files (`.DS_Store`, `README`) are ignored. Two files for one id are an error naming both.
    """
    if is_remote(folder):
        import fsspec

        fs, fs_path = fsspec.core.url_to_fs(folder)
        try:
            names = sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(fs_path, detail=False))
        except FileNotFoundError:
            names = []
    else:
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    by_id: Dict[int, str] = {}
    for name in names:
        stem = name.split(".", 1)[0]
        if not stem.isdigit():
            continue
        key = int(stem)
        if key in by_id:
            raise EMM1DataError(
                f"{folder}: two media files for id {key} ({by_id[key]!r} and {name!r}); keep one."
            )
        by_id[key] = name
    return by_id
