"""E-MM1:1M `triplets.csv` in both schema generations, normalised to one schema.

Seed draft (long format): `encord_text_id, modality_1, modality_2, annotated_modality,
encord_{m}_id` (one column per modality; a row fills the two that apply), `annotation`.
Released: `encord_text_id, paired_modality, annotated_modality, encord_paired_id,
encord_annotated_id, annotation`. Both become the released columns; `annotation` stays the code.
"""
import numbers
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emm1_lib.errors import Violation
from emm1_lib.errors import raise_first
from emm1_lib.io.tables import read_csv_table
from emm1_lib.io.tables import read_header
from emm1_lib.schema import rules
from emm1_lib.schema.layout import MODALITIES
from emm1_lib.schema.layout import TRIPLET_COLUMNS

# annotation_mapping.csv of the release; the seed calls 3 "No Match" in one sentence, "Bad Match" in another.
DEFAULT_ANNOTATION_LABELS: Dict[int, str] = {1: "Good Match", 2: "Partial Match", 3: "Bad Match"}
RELEASED_COLUMNS = TRIPLET_COLUMNS["released"]
SEED_COLUMNS = TRIPLET_COLUMNS["seed"]


def read_annotation_mapping(path: str) -> Tuple[Dict[int, str], List[Violation]]:
    """`{code: label}` from `annotation_mapping.csv` (first column the integer code, second the label), by code,
    and the violations of its rules (`rules.annotation_mapping`). A file that cannot be read raises."""
    header = read_header(path)
    raise_first(rules.annotation_mapping_header(path, header))
    table = read_csv_table(path, {header[0]: pa.int64(), header[1]: pa.string()}, required=header[:2])
    table = table.select(header[:2])
    codes, labels = table[header[0]].to_pylist(), table[header[1]].to_pylist()
    mapping = {code: label for code, label in sorted(zip(codes, labels), key=lambda item: (item[0] is None, item[0] or 0))}
    return mapping, rules.annotation_mapping(table, path)


def read_annotation_labels(path: str) -> Dict[int, str]:
    """`{code: label}` from `annotation_mapping.csv`, by code; raises `EMM1DataError` when a rule is broken."""
    mapping, violations = read_annotation_mapping(path)
    raise_first(violations)
    return mapping


def triplet_types(schema: str, header: Sequence[str]) -> Dict[str, pa.DataType]:
    """The columns read from a `triplets.csv` of `schema` ("released" or "seed") and their types."""
    if schema == "released":
        types = {c: pa.int64() for c in ("encord_text_id", "encord_paired_id", "encord_annotated_id", "annotation")}
        types.update({"paired_modality": pa.string(), "annotated_modality": pa.string()})
        return types
    types = {c: pa.string() for c in ("modality_1", "modality_2", "annotated_modality")}
    types.update({"encord_text_id": pa.int64(), "annotation": pa.int64()})
    types.update({f"encord_{m}_id": pa.int64() for m in MODALITIES if f"encord_{m}_id" in header})
    return types


def read_triplets(path: str) -> Tuple[pa.Table, str]:
    """`triplets.csv` as written (either generation) and its generation; raises when the header fits neither."""
    header = read_header(path)
    schema, violations = rules.triplets_schema(path, header)
    raise_first(violations)
    return read_csv_table(path, triplet_types(schema, header), required=TRIPLET_COLUMNS[schema]), schema


def to_released(table: pa.Table, schema: str) -> pa.Table:
    """The released columns of a `triplets.csv` table of either generation (the seed's annotated item is
    `modality_2`'s, as in the seed's example)."""
    if schema == "released":
        return table.select(list(RELEASED_COLUMNS))
    paired_ids = pa.nulls(len(table), pa.int64())
    annotated_ids = pa.nulls(len(table), pa.int64())
    for m in MODALITIES:
        column = f"encord_{m}_id"
        if column not in table.column_names:
            continue
        paired_ids = pc.if_else(pc.equal(table["modality_1"], m), table[column], paired_ids)
        annotated_ids = pc.if_else(pc.equal(table["modality_2"], m), table[column], annotated_ids)
    return pa.table(
        {
            "encord_text_id": table["encord_text_id"],
            "paired_modality": table["modality_1"],
            "annotated_modality": table["modality_2"],
            "encord_paired_id": paired_ids,
            "encord_annotated_id": annotated_ids,
            "annotation": table["annotation"],
        }
    )


def normalize_triplets(path: str, codes: Sequence[int]) -> pa.Table:
    """Read `triplets.csv` of either generation into the released columns, checking every row (`rules.triplet_rows`)."""
    table, schema = read_triplets(path)
    for warning in raise_first(rules.triplet_rows(table, schema, path, codes)):
        warnings.warn(warning.message, stacklevel=2)
    return to_released(table, schema)


def is_integer(value) -> bool:
    """An integer, Python's or numpy's (`np.int64(1)` from an array); a bool is none (True would count as 1)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def annotation_values(annotations: Sequence) -> List[Union[int, str]]:
    """The `annotations` filter as a list of label names (str) and codes (int; numpy integers become int).

    Raises `ValueError` naming the first value that is neither, and when `annotations` is no list or tuple
    (a bare `"Good Match"` would be read as its letters). Needs no file: builders check it before reading.
    """
    if not isinstance(annotations, (list, tuple)):
        raise ValueError(f"annotations={annotations!r}: give a list of label names (e.g. ['Good Match']) "
                         "or integer codes (e.g. [1]).")
    values: List[Union[int, str]] = []
    for value in annotations:
        if isinstance(value, str):
            values.append(str(value))
        elif is_integer(value):
            values.append(int(value))
        else:
            raise ValueError(f"annotations: {value!r} ({type(value).__name__}) is neither a label name (str) nor "
                             "an integer code; give names such as 'Good Match' or codes such as 1.")
    return values


def annotation_codes_for(annotations: Sequence, codes: Sequence[int], labels: Sequence[str]) -> List[int]:
    """Codes of the wanted annotations, each given as a label name or an integer code."""
    wanted = []
    for value in annotation_values(annotations):
        if isinstance(value, str) and value in labels:
            wanted.append(codes[list(labels).index(value)])
        elif isinstance(value, int) and value in codes:
            wanted.append(value)
        else:
            raise ValueError(f"annotations: unknown value {value!r}; use labels {list(labels)} or codes {list(codes)}.")
    return wanted


def select_triplets(
    table: pa.Table,
    modalities: Sequence[str],
    annotations: Optional[Sequence],
    codes: Sequence[int],
    labels: Sequence[str],
    path: str,
) -> pa.Table:
    """Keep the triplets whose two modalities are in `modalities` (and labels in `annotations`);
    `annotation` becomes the ClassLabel index (position of the code in `codes`). Duplicates are kept."""
    wanted_modalities = pa.array(list(modalities))
    keep = pc.and_(
        pc.is_in(table["paired_modality"], value_set=wanted_modalities),
        pc.is_in(table["annotated_modality"], value_set=wanted_modalities),
    )
    if annotations:
        wanted_codes = pa.array(annotation_codes_for(annotations, codes, labels), pa.int64())
        keep = pc.and_(keep, pc.is_in(table["annotation"], value_set=wanted_codes))
    table = table.filter(keep)
    label_index = pc.index_in(table["annotation"], value_set=pa.array(list(codes), pa.int64()))
    return table.set_column(table.schema.get_field_index("annotation"), "annotation", label_index.cast(pa.int64()))
