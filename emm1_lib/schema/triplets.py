"""E-MM1:1M `triplets.csv` in both schema generations, normalised to one schema.

Seed draft (long format): `encord_text_id, modality_1, modality_2, annotated_modality,
encord_{m}_id` (one column per modality; a row fills the two that apply), `annotation`.
Released: `encord_text_id, paired_modality, annotated_modality, encord_paired_id,
encord_annotated_id, annotation`. Both become the released columns; `annotation` stays the code.
"""
import warnings
from typing import Dict, List, Optional, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from emm1_lib.errors import EMM1DataError
from emm1_lib.schema.layout import MODALITIES
from emm1_lib.io.tables import read_csv_table
from emm1_lib.io.tables import read_header

# annotation_mapping.csv of the release; the seed calls 3 "No Match" in one sentence, "Bad Match" in another.
DEFAULT_ANNOTATION_LABELS: Dict[int, str] = {1: "Good Match", 2: "Partial Match", 3: "Bad Match"}
RELEASED_COLUMNS = ("encord_text_id", "paired_modality", "annotated_modality", "encord_paired_id", "encord_annotated_id", "annotation")
SEED_COLUMNS = ("encord_text_id", "modality_1", "modality_2", "annotated_modality", "annotation")


def read_annotation_labels(path: str) -> Dict[int, str]:
    """`{code: label}` from `annotation_mapping.csv` (first column the integer code, second the label), by code."""
    header = read_header(path)
    if len(header) < 2:
        raise EMM1DataError(f"{path}: expected two columns (code, label); the header has {header}.")
    table = read_csv_table(path, {header[0]: pa.int64(), header[1]: pa.string()}, required=header[:2])
    codes, labels = table[header[0]].to_pylist(), table[header[1]].to_pylist()
    if None in codes or len(set(codes)) != len(codes):
        raise EMM1DataError(f"{path}: annotation codes must be unique integers; got {codes}.")
    return dict(sorted(zip(codes, labels)))


def _first_row_where(mask: pa.Array) -> int:
    return pc.index(pc.fill_null(mask, False), True).as_py()


def _raise_at(path: str, table: pa.Table, row: int, what: str, hint: str) -> None:
    raise EMM1DataError(
        f"{path}: data row {row + 1} (line {row + 2}, encord_text_id={table['encord_text_id'][row].as_py()}): {what}. {hint}"
    )


def _read_seed(path: str, header: Sequence[str]) -> pa.Table:
    id_columns = [f"encord_{m}_id" for m in MODALITIES if f"encord_{m}_id" in header]
    types = {c: pa.string() for c in ("modality_1", "modality_2", "annotated_modality")}
    types.update({"encord_text_id": pa.int64(), "annotation": pa.int64()})
    types.update({c: pa.int64() for c in id_columns})
    table = read_csv_table(path, types, required=SEED_COLUMNS)
    for column in ("modality_1", "modality_2"):
        _check_modality_values(path, table, column)
    paired_ids = pa.nulls(len(table), pa.int64())
    annotated_ids = pa.nulls(len(table), pa.int64())
    for m in MODALITIES:
        column = f"encord_{m}_id"
        if column not in table.column_names:
            continue
        paired_ids = pc.if_else(pc.equal(table["modality_1"], m), table[column], paired_ids)
        annotated_ids = pc.if_else(pc.equal(table["modality_2"], m), table[column], annotated_ids)
    disagree = pc.sum(pc.not_equal(table["annotated_modality"], table["modality_2"])).as_py() or 0
    if disagree:
        warnings.warn(
            f"{path}: {disagree} row(s) have annotated_modality != modality_2; the annotated item is taken "
            "from modality_2 (the candidate shown to annotators), as in the seed's example.",
            stacklevel=3,
        )
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


def _check_modality_values(path: str, table: pa.Table, column: str) -> None:
    unknown = pc.invert(pc.is_in(table[column], value_set=pa.array(MODALITIES)))
    row = _first_row_where(unknown)
    if row >= 0:
        _raise_at(path, table, row, f"unknown {column} {table[column][row].as_py()!r}", f"Expected one of {list(MODALITIES)}.")


def normalize_triplets(path: str, codes: Sequence[int]) -> pa.Table:
    """Read `triplets.csv` of either generation into the released columns, validating every row."""
    header = read_header(path)
    if "paired_modality" in header:
        types = {c: pa.int64() for c in ("encord_text_id", "encord_paired_id", "encord_annotated_id", "annotation")}
        types.update({"paired_modality": pa.string(), "annotated_modality": pa.string()})
        table = read_csv_table(path, types, required=RELEASED_COLUMNS).select(list(RELEASED_COLUMNS))
    elif "modality_1" in header:
        table = _read_seed(path, header)
    else:
        raise EMM1DataError(
            f"{path}: neither the released triplets schema ({', '.join(RELEASED_COLUMNS)}) nor the seed's "
            f"({', '.join(SEED_COLUMNS)}, encord_{{modality}}_id); the header has {header}."
        )
    for column in ("paired_modality", "annotated_modality"):
        _check_modality_values(path, table, column)
    row = _first_row_where(pc.equal(table["paired_modality"], table["annotated_modality"]))
    if row >= 0:
        _raise_at(path, table, row, f"paired and annotated modality are both {table['paired_modality'][row].as_py()!r}",
                  "A triplet links two different modalities.")
    row = _first_row_where(pc.invert(pc.is_in(table["annotation"], value_set=pa.array(list(codes), pa.int64()))))
    if row >= 0:
        _raise_at(path, table, row, f"unknown annotation code {table['annotation'][row].as_py()!r}",
                  f"Known codes (annotation_mapping.csv): {list(codes)}.")
    return table


def annotation_codes_for(annotations: Sequence, codes: Sequence[int], labels: Sequence[str]) -> List[int]:
    """Codes of the wanted annotations, each given as a label name or an integer code."""
    wanted = []
    for value in annotations:
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
