"""Media paths: `root / save_folder / {modality folder} / file_name`, built on whole Arrow columns.

Path parts come from CSVs that other people edited, so each part is checked before it is used:
no `..` component, no absolute path or drive, no `~`, no control characters (NUL included).
A refused value is an error naming the file, the row and the value — it never reaches `open`.
"""
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc

from .errors import EMM1DataError

# RE2 syntax (pyarrow.compute): a `..` component, an absolute or drive path, a leading `~`, control chars.
_UNSAFE_PART = r"(^|[/\\])\.\.([/\\]|$)|^[/\\]|^[A-Za-z]:|^~|[\x00-\x1f\x7f]"


def _unsafe_mask(values: pa.Array, allow_empty: bool) -> pa.Array:
    if pa.types.is_dictionary(values.type):
        # Check each distinct value once, then spread the verdict over the rows.
        return pc.take(_unsafe_mask(values.dictionary, allow_empty), values.indices)
    unsafe = pc.match_substring_regex(values, _UNSAFE_PART)
    if not allow_empty:
        unsafe = pc.or_(unsafe, pc.equal(pc.utf8_length(values), 0))
    return pc.fill_null(unsafe, False)


def first_unsafe_row(values: pa.Array, allow_empty: bool = False) -> Optional[int]:
    """Index of the first value that could escape the data root (or is empty), or None."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    index = pc.index(_unsafe_mask(values, allow_empty), True).as_py()
    return None if index < 0 else index


def check_path_parts(table: pa.Table, columns, source: str, id_column: str) -> None:
    """Raise an `EMM1DataError` naming file, row, id and value for the first unsafe path part."""
    for column in columns:
        if column not in table.column_names:
            continue
        row = first_unsafe_row(table[column])
        if row is None:
            continue
        value = table[column][row].as_py()
        row_id = table[id_column][row].as_py() if id_column in table.column_names else None
        raise EMM1DataError(
            f"{source}: data row {row + 1} (line {row + 2}, {id_column}={row_id}): unsafe {column} {value!r}. "
            "Media paths must stay under the data root: no '..' component, no absolute path, no '~', "
            "no control characters, not empty. Fix the row in the CSV."
        )


def join_media_paths(root: str, save_folder: pa.Array, folder: str, file_name: pa.Array) -> pa.Array:
    """`root/save_folder/folder/file_name` per row (null where any part is null), the README formula."""
    if pa.types.is_dictionary(save_folder.type):
        save_folder = save_folder.cast(pa.string())
    prefix = pa.scalar(root.rstrip("/"), pa.string())
    return pc.binary_join_element_wise(prefix, save_folder, pa.scalar(folder, pa.string()), file_name, "/")
