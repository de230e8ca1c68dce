"""E-MM1:1M `phase2_triplets`: both schema generations, filters, and equality with the polars recipe."""
import os
import re
import warnings
from itertools import permutations

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import emm1
from emm1_lib.errors import DanglingIdWarning
from emm1_lib.errors import EMM1DataError
from recipes import phase2_recipe

MODALITIES = ("image", "audio", "video", "points")


def _prepare(tree, hf_cache, data_dir=None, **kwargs):
    kwargs.setdefault("decode", False)
    builder = emm1.EMM1(
        config_name="phase2_triplets", data_dir=data_dir or tree.metadata_dir, root_data_path=tree.root, cache_dir=hf_cache, **kwargs
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        builder.download_and_prepare()
    return builder.as_dataset(split="train")


def _rows(ds):
    """Builder rows in the recipe's terms, as a sorted list (the comparison is order-insensitive)."""
    names = ds.features["annotation"].names
    codes = {name: code for code, name in enumerate(names, start=1)}  # annotation_mapping.csv: 1..3 in order
    return sorted(
        (r["encord_text_id"], r["paired_modality"], r["annotated_modality"], r["encord_paired_id"], r["encord_annotated_id"],
         r["paired_file_path"], r["annotated_file_path"], codes[names[r["annotation"]]], r["caption"])
        for r in ds
    )


def _recipe_rows(tree, modalities):
    df = phase2_recipe(tree.phase2_dir, tree.root, modalities)
    return sorted(tuple(row) for row in df.select(
        "encord_text_id", "modality_1", "modality_2", "id_1", "id_2", "modality_1_file_path", "modality_2_file_path",
        "annotation", "caption",
    ).iter_rows())


@pytest.mark.parametrize("modalities", [["points", "audio"], list(MODALITIES)])
def test_equals_polars_recipe(sample_tree, hf_cache, modalities):
    """The seed's points<->audio example (and all pairs): same rows both directions, duplicates kept."""
    ds = _prepare(sample_tree, hf_cache, modalities=modalities)
    expected = _recipe_rows(sample_tree, modalities)
    assert _rows(ds) == expected
    assert len(expected) > 0 and {r[1] for r in expected} <= set(modalities)


def test_schema_and_media_columns(released_tree, hf_cache):
    ds = _prepare(released_tree, hf_cache)
    assert ds.features["annotation"].names == ["Good Match", "Partial Match", "Bad Match"]
    for row in ds:
        for m in MODALITIES:
            expected = {row["paired_modality"]: row["paired_file_path"], row["annotated_modality"]: row["annotated_file_path"]}
            assert (row[m] or {}).get("path") == expected.get(m)


def test_pairs_cover_both_directions(released_tree, hf_cache):
    ds = _prepare(released_tree, hf_cache)
    pairs = set(zip(ds["paired_modality"], ds["annotated_modality"]))
    assert ("audio", "points") in pairs and ("points", "audio") in pairs
    assert all(a != b for a, b in pairs)


def test_annotation_filter_by_name_and_code(released_tree, hf_cache):
    everything = _prepare(released_tree, hf_cache)
    good = _prepare(released_tree, hf_cache + "-good", annotations=["Good Match"])
    also_good = _prepare(released_tree, hf_cache + "-code", annotations=[1])
    assert len(good) == everything["annotation"].count(0) > 0
    assert good["encord_text_id"] == also_good["encord_text_id"]
    with pytest.raises(ValueError, match="unknown value 'Great'"):
        _prepare(released_tree, hf_cache + "-bad", annotations=["Great"])


def test_labels_come_from_annotation_mapping(released_tree, hf_cache, tmp_path):
    copy = tmp_path / "e-mm1_1m"
    os.makedirs(copy / "infos")
    for name in ("triplets.csv", *(f"infos/{m}.csv" for m in (*MODALITIES, "text"))):
        (copy / name).write_bytes(open(os.path.join(released_tree.phase2_dir, name), "rb").read())
    (copy / "annotation_mapping.csv").write_text("code,label\n1,Good\n2,Partial\n3,No Match\n")
    ds = _prepare(released_tree, hf_cache, data_dir=str(copy))
    assert ds.features["annotation"].names == ["Good", "Partial", "No Match"]
    os.remove(copy / "annotation_mapping.csv")  # absent file: the documented defaults
    ds = _prepare(released_tree, hf_cache + "-defaults", data_dir=str(copy))
    assert ds.features["annotation"].names == ["Good Match", "Partial Match", "Bad Match"]


def _data_error(error: BaseException) -> EMM1DataError:
    """The EMM1DataError behind an error (datasets wraps errors raised while generating)."""
    while not isinstance(error, EMM1DataError) and error.__cause__ is not None:
        error = error.__cause__
    assert isinstance(error, EMM1DataError), error
    return error


def _edited_tree(tree, tmp_path, edit):
    """A copy of the phase-2 folder whose triplets.csv is `edit(table)`."""
    copy = tmp_path / "e-mm1_1m"
    os.makedirs(copy / "infos")
    for name in ("annotation_mapping.csv", *(f"infos/{m}.csv" for m in (*MODALITIES, "text"))):
        (copy / name).write_bytes(open(os.path.join(tree.phase2_dir, name), "rb").read())
    table = pacsv.read_csv(os.path.join(tree.phase2_dir, "triplets.csv"))
    pacsv.write_csv(edit(table), str(copy / "triplets.csv"))
    return str(copy)


def _set(table, column, row, value):
    values = table[column].to_pylist()
    values[row] = value
    return table.set_column(table.schema.get_field_index(column), column, pa.array(values, table[column].type))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: _set(t, "paired_modality", 3, "smell"), r"data row 4 \(line 5.*unknown paired_modality 'smell'"),
        (lambda t: _set(t, "annotation", 5, 7), r"data row 6 \(line 7.*unknown annotation code 7"),
        (lambda t: _set(t, "annotated_modality", 2, t["paired_modality"][2].as_py()), r"data row 3 .*paired and annotated modality are both"),
        (lambda t: t.drop_columns(["encord_annotated_id"]), r"missing required column\(s\) \['encord_annotated_id'\]"),
        (lambda t: t.drop_columns(["paired_modality"]), r"neither the released triplets schema"),
    ],
)
def test_bad_triplets_name_file_and_row(released_tree, hf_cache, tmp_path, edit, message):
    data_dir = _edited_tree(released_tree, tmp_path, edit)
    with pytest.raises(Exception) as raised:
        _prepare(released_tree, hf_cache, data_dir=data_dir)
    error = _data_error(raised.value)
    assert re.search(message, str(error)) and "triplets.csv" in str(error)


def test_seed_rows_missing_id_columns_are_named(seed_tree, hf_cache, tmp_path):
    data_dir = _edited_tree(seed_tree, tmp_path, lambda t: t.drop_columns(["annotation"]))
    with pytest.raises(Exception) as raised:
        _prepare(seed_tree, hf_cache, data_dir=data_dir)
    assert "missing required column(s) ['annotation']" in str(_data_error(raised.value))


def test_every_direction_of_the_seed_pairs(seed_tree, hf_cache):
    ds = _prepare(seed_tree, hf_cache)
    assert set(zip(ds["paired_modality"], ds["annotated_modality"])) <= set(permutations(MODALITIES, 2))
    assert len(ds) == len(_recipe_rows(seed_tree, list(MODALITIES)))
