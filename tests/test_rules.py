"""The rule functions of `emm1_lib.schema.rules` on their own: what they accept, and the violations they return."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emm1_lib.errors import EMM1DataError, Violation, raise_first
from emm1_lib.schema import rules
from emm1_lib.schema.eshot_files import read_category_ids


def reader_reads(cell: str):
    """What the CSV reader makes of `cell` in an int64 column: ("ok", value) or ("error", None)."""
    quoted = '"' + cell.replace('"', '""') + '"'  # quoted: the cell's text reaches the converter as is
    data = b"a,b\n" + quoted.encode() + b",1\n"
    try:
        table = pacsv.read_csv(pa.BufferReader(data),
                               convert_options=pacsv.ConvertOptions(column_types={"a": pa.int64()}))
    except pa.ArrowInvalid:
        return "error", None
    return "ok", table["a"][0].as_py()


CELLS = ["7", " 7", "7\t", "+7", "-7", "007", "-0", "", "NA", "null", "N/A", "nan", " NA", " ", "1_0", "1e3", "1.0",
         "²", "٣", "0x10", "0X1f", "-0x10", "0x", "0xFFFFFFFFFFFFFFFF", "0x10000000000000000", "0x00000000000000000001",
         "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
         "00000000000000000000009223372036854775807", "--7", "- 7", "7 7", "\u00a07", "abc"]


@pytest.mark.parametrize("cell", CELLS)
def test_id_grammar_is_the_readers(cell):
    values, invalid = rules.int64_cells(pa.array([cell]))
    verdict, value = reader_reads(cell)
    assert bool(invalid[0]) == (verdict == "error")
    assert values[0].as_py() == value


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from(list("0123456789-+xXaAfF \t.e") + ["NA", "0x", "9223372036854775807"]),
                max_size=8).map("".join))
def test_id_grammar_matches_the_reader_on_random_cells(cell):
    values, invalid = rules.int64_cells(pa.array([cell]))
    verdict, value = reader_reads(cell)
    assert (bool(invalid[0]), values[0].as_py()) == (verdict == "error", value)


def test_violations_raise_the_first_error_and_return_the_rest():
    note = Violation("extra_column", "f.csv", "f.csv: extra", severity="note")
    first = Violation("bad_value", "f.csv", "f.csv: first", lines=(4, 9), count=2)
    with pytest.raises(EMM1DataError, match="f.csv: first") as raised:
        raise_first([note, first, Violation("bad_value", "g.csv", "g.csv: second")])
    assert (raised.value.file, raised.value.line, raised.value.code) == ("f.csv", 4, "bad_value")
    assert raise_first([note]) == [note]
    assert first.describe() == "f.csv: first"


def test_nn_index_rule_reads_nothing_more_when_every_rank_is_fine():
    located = []
    where = rules.Rows(locate=lambda row: located.append(row) or row + 100)
    ranks = pa.array([1, 16, 3], pa.int64())
    assert rules.nn_index(ranks, pa.array([5, 6, 7]), "nn_1.csv", where) == []
    [bad] = rules.nn_index(pa.array([1, 17, None]), pa.array([5, 6, 7]), "nn_1.csv", where)
    assert located == [1, 1] and bad.count == 2 and bad.lines == (101,)  # only the first row is located
    assert bad.message.startswith("nn_1.csv, line 101: nn_index 17 (encord_text_id=6)")
    assert [v.code for v in rules.nn_index(ranks, pa.array([5, 6, 7]), "nn_1.csv", rules.Rows(), folder_k=1)] \
        == ["nn_index_mismatch"]


@pytest.mark.parametrize("value", ["²", "٣", "0x1G", -3, 2**70, 1.5, True, None, [1]])
def test_category_json_values_that_are_not_ids(tmp_path, value):
    path = tmp_path / "category_to_audio_ids.json"
    path.write_text(json.dumps({"bell": [1, value]}, ensure_ascii=False))
    with pytest.raises(EMM1DataError, match=r"category 'bell' lists .*, which is not a non-negative integer") as raised:
        read_category_ids(str(path), "audio")
    assert raised.value.file == str(path) and raised.value.code == "bad_json"


def test_category_json_collects_every_problem_in_document_order():
    data = {"a": [1, "2", " 3 "], "b": "x", "c": [2, "²", 4, 4], "d": [9]}
    mapping, found = rules.category_lists(data, "j.json", "eshot_audio_id")
    assert [(v.code, v.count) for v in found] == [("bad_json", 1), ("bad_json", 1), ("duplicate_id", 2)]
    assert "category 'b' maps to str" in found[0].message
    assert found[1].values == ("'c': " + json.dumps("²"),) and "category 'c' lists '²'" in found[1].message
    assert {k: v.tolist() for k, v in mapping.items()} == {"a": [1, 2, 3], "c": [4], "d": [9]}


def test_seed_media_ids_are_decimal_stems():
    by_id, found = rules.media_by_id(["0007.wav", "8.flac", "².wav", ".DS_Store", "12.a.b"], "eshot/audio")
    assert by_id == {7: "0007.wav", 8: "8.flac", 12: "12.a.b"} and found == []
    by_id, [clash] = rules.media_by_id(["7.wav", "0007.wav"], "eshot/audio")
    assert clash.code == "duplicate_media" and "two media files for id 7" in clash.message


def test_annotation_mapping_refuses_repeated_labels():
    table = pa.table({"annotation": [1, 2, 3], "label": ["Good", "Good", "Bad"]})
    [found] = rules.annotation_mapping(table, "annotation_mapping.csv")
    assert found.code == "bad_mapping" and found.lines == (2, 3) and "label names must be unique" in found.message


def test_infos_id_rule_lists_every_row():
    ids = pa.chunked_array([[5, None, 7], [5, -1, 8, 7]], pa.int64())
    invalid, duplicate = rules.infos_ids(ids, "image.csv", "encord_image_id")
    assert invalid.lines == (3, 6) and invalid.message.startswith("image.csv: data row 2 (line 3) has a missing")
    assert duplicate.lines == (2, 4, 5, 8) and duplicate.values == (5, 7) and "ambiguous" in duplicate.message


def test_unsafe_path_rule_on_dictionary_columns():
    table = pa.table({"encord_image_id": [1, 2, 3], "save_folder": pa.array(["ok", "../up", "../up"]).dictionary_encode()})
    [found] = rules.unsafe_path_parts(table, ["save_folder", "file_name"], "image.csv", "encord_image_id")
    assert found.lines == (3, 4) and found.count == 2 and "encord_image_id=2" in found.message
    assert np.array_equal(found.values, ("encord_image_id=2: '../up'", "encord_image_id=3: '../up'"))
