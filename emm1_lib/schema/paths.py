"""Media paths: `root / save_folder / {modality folder} / file_name`, built on whole Arrow columns.

Path parts come from CSVs that other people edited, so each part is checked before it is used:
no `..` component, no absolute path or drive, no `~`, no control characters (NUL included).
A refused value is an error naming the file, the row and the value — it never reaches `open`
(the rule `emm1_lib.schema.rules.unsafe_path_parts` reports it; this module has the mask and the formula).
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# RE2 syntax (pyarrow.compute): a `..` component, an absolute or drive path, a leading `~`, control chars.
_UNSAFE_PART = r"(^|[/\\])\.\.([/\\]|$)|^[/\\]|^[A-Za-z]:|^~|[\x00-\x1f\x7f]"


# Every match of `_UNSAFE_PART` needs "..", one of "/\\:~" or a control character. Plain ASCII text
# without them cannot match, and bytes.translate/find rule that out ~3x faster than the regex runs.
_PLAIN_BYTES = bytes(b for b in range(0x20, 0x7F) if chr(b) not in "/\\:~")
_SCAN_BYTES = 16 << 20  # scan the character data in pieces: bounded temporary memory


def _may_match_unsafe(values: pa.Array) -> bool:
    """False when no value can match `_UNSAFE_PART`; True when the regex must decide (or non-ASCII text)."""
    if values.type != pa.string() or len(values) == 0:
        return True  # other layouts: let the regex decide
    _, offsets_buffer, data_buffer = values.buffers()
    if data_buffer is None:
        return False
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32, count=len(values) + 1, offset=4 * values.offset)
    data = memoryview(data_buffer)[int(offsets[0]):int(offsets[-1])]
    for start in range(0, len(data), _SCAN_BYTES):
        piece = data[start:start + _SCAN_BYTES + 1].tobytes()  # one byte of overlap catches ".." across pieces
        if b".." in piece or piece.translate(None, _PLAIN_BYTES):
            return True
    return False


def unsafe_mask(values: pa.Array, allow_empty: bool = False) -> pa.Array:
    """Boolean per value: True where it could escape the data root (or is empty, unless `allow_empty`); null is False."""
    if pa.types.is_dictionary(values.type):
        # Check each distinct value once, then spread the verdict over the rows.
        return pc.take(unsafe_mask(values.dictionary, allow_empty), values.indices)
    if not _may_match_unsafe(values):
        unsafe = pa.array(np.zeros(len(values), dtype=bool)) if allow_empty else pc.equal(pc.utf8_length(values), 0)
        return pc.fill_null(unsafe, False)
    unsafe = pc.match_substring_regex(values, _UNSAFE_PART)
    if not allow_empty:
        unsafe = pc.or_(unsafe, pc.equal(pc.utf8_length(values), 0))
    return pc.fill_null(unsafe, False)


def join_media_paths(root: str, save_folder: pa.Array, folder: str, file_name: pa.Array) -> pa.Array:
    """`root/save_folder/folder/file_name` per row (null where any part is null), the README formula."""
    if pa.types.is_dictionary(save_folder.type):
        save_folder = save_folder.cast(pa.string())
    prefix = pa.scalar(root.rstrip("/"), pa.string())
    return pc.binary_join_element_wise(prefix, save_folder, pa.scalar(folder, pa.string()), file_name, "/")


def join_prefixed_paths(prefixes: pa.Array, prefix_codes: pa.Array, file_name: pa.Array) -> pa.Array:
    """`prefixes[code] + file_name` per row (null where either is null).

    With `prefixes = join_media_paths(root, distinct save folders, folder, "")` this is the README
    formula, but joins two columns per row instead of four: save_folder has a handful of values.
    """
    return pc.binary_join_element_wise(prefixes.take(prefix_codes), file_name, pa.scalar("", pa.string()))


def join_under_root(root: str, relative: pa.Array) -> pa.Array:
    """`root/relative` per row (null stays null): the media path of a path stored relative to the media root
    (an export's `save_folder/{modality folder}/file_name`). Check the stored paths first with
    `rules.stored_media_paths`: they come from whoever wrote the export."""
    if isinstance(relative, pa.ChunkedArray):
        relative = relative.combine_chunks()
    return pc.binary_join_element_wise(pa.scalar(root.rstrip("/"), pa.string()), relative.cast(pa.string()), "/")
