"""The rule functions of `emm1_lib.schema.rules` on their own: what they accept, and the violations they return."""
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emm1_lib.errors import EMM1DataError, Violation, raise_first
from emm1_lib.io import tables
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


# ---------------------------------------------------------------------------------------------- the id rule


def reference_id(cell: str):
    """The documented id grammar, written plainly: ("ok", value), ("empty", None) or ("error", None)."""
    if cell == "":
        return "empty", None
    found = re.fullmatch(r"[ \t]*(-?[0-9]+)[ \t]*", cell, flags=re.ASCII)
    if found is None or not -2**63 <= int(found.group(1)) < 2**63:
        return "error", None
    return "ok", int(found.group(1))


ID_CELLS = CELLS + ["NaN", "-nan", "#N/A", "NULL", "0x", "0xG", "\u0663\u0664", "\uff17", "\u2077", "1.", ".5", "--0",
                    "7-", "1 2", "\t-12\t", "0", "-0000", "18446744073709551616", "0b101", "0o7", "1_000"]


@pytest.mark.parametrize("cell", ID_CELLS)
def test_id_rule_is_the_documented_grammar(cell):
    values, invalid = rules.id_cells(pa.array([cell]))
    verdict, value = reference_id(cell)
    assert bool(invalid[0]) == (verdict == "error")
    assert values[0].as_py() == value


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from(list("0123456789-+xXaAfF \t.eN٣²") + ["NA", "0x", "9223372036854775807", ""]),
                max_size=8).map("".join))
def test_id_rule_on_random_cells(cell):
    values, invalid = rules.id_cells(pa.array([cell]))
    verdict, value = reference_id(cell)
    assert (bool(invalid[0]), values[0].as_py()) == (verdict == "error", value)
    fast, mask = rules.parse_ids(pa.array([cell]))  # the readers' byte check and cast, then the rule
    assert (mask is not None and bool(mask[0])) == (verdict == "error") and fast[0].as_py() == value


def read_ids_with(reader: str, path: str):
    """("ok", ids) or ("error", code, line, message) of reading `path` with one of the shared readers."""
    types = {"encord_image_id": pa.int64(), "file_name": pa.string()}
    try:
        if reader == "table":
            table = tables.read_csv_table(path, types, list(types))
        elif reader == "stream":
            table = pa.Table.from_batches(list(tables.iter_csv_batches(path, types, list(types))))
        else:
            header = tables.read_header(path)
            ranges = [tables.read_csv_range(path, start, end, header, {"encord_image_id": pa.int64()})
                      for start, end in tables.byte_ranges(path, 8)]
            table = pa.concat_tables([t for t in ranges if t is not None])
    except EMM1DataError as err:
        return "error", err.code, err.line, str(err)
    return "ok", table["encord_image_id"].to_pylist()


@pytest.mark.parametrize("reader", ["table", "stream", "range"])
@pytest.mark.parametrize("cell", ID_CELLS)
def test_the_readers_enforce_the_id_rule(tmp_path, reader, cell):
    """Whole tables, the streaming reader and byte ranges read an id cell as the rule says: the value, a missing id
    (null in tables, whose rules decide; refused in grouping ranges), or an error naming the line and the value."""
    quoted = '"' + cell.replace('"', '""') + '"'
    path = tmp_path / "image.csv"
    path.write_text(f'encord_image_id,file_name\n1,a.jpg\n{quoted},"b, x.jpg"\n3,c.jpg\n', encoding="utf-8")
    verdict, value = reference_id(cell)
    found = read_ids_with(reader, str(path))
    if verdict == "ok":
        assert found == ("ok", [1, value, 3])
    elif verdict == "empty" and reader != "range":
        assert found == ("ok", [1, None, 3])
    elif verdict == "empty":
        assert found[:3] == ("error", "missing_id", 3) and f"{path}, line 3: encord_image_id is empty" in found[3]
    else:
        assert found[:3] == ("error", "not_integer", 3)
        assert f"{path}, line 3: encord_image_id {cell!r} is not an id" in found[3]


def test_id_errors_after_quoted_line_breaks_name_the_file_line(tmp_path):
    path = tmp_path / "text.csv"
    path.write_bytes(b'encord_text_id,caption\n1,"two\nlines"\n2,"x"\n0x10,"hex"\n')
    for reader in ("table", "stream"):
        types = {"encord_text_id": pa.int64(), "caption": pa.string()}
        with pytest.raises(EMM1DataError, match=r"line 5: encord_text_id '0x10' is not an id"):
            if reader == "table":
                tables.read_csv_table(str(path), types, list(types))
            else:
                list(tables.iter_csv_batches(str(path), types, list(types)))


@pytest.mark.parametrize("value", ["0x10", "", "NaN", "null", "\u0663"])
def test_category_json_string_ids_follow_the_id_rule(tmp_path, value):
    path = tmp_path / "category_to_audio_ids.json"
    path.write_text(json.dumps({"bell": [1, value]}, ensure_ascii=False))
    with pytest.raises(EMM1DataError, match="which is not a non-negative integer") as raised:
        read_category_ids(str(path), "audio")
    assert raised.value.code == "bad_json"
    assert {k: v.tolist() for k, v in rules.category_lists({"bell": [" 3 ", "007", 4]}, "j", "eshot_audio_id")[0]
            .items()} == {"bell": [3, 7, 4]}


def test_id_columns_are_named_by_the_schema():
    assert all(rules.is_id_column(c) for c in ("encord_text_id", "encord_paired_id", "eshot_point_id", "eshot_audio_id"))
    assert not any(rules.is_id_column(c) for c in ("nn_index", "annotation", "file_id", "encord_text_ids", "youtube_id"))


def test_triplet_ids_rule_asks_only_the_columns_a_seed_row_uses():
    table = pa.table({"encord_text_id": [1, 2, None], "modality_1": ["image", "audio", "image"],
                      "modality_2": ["audio", "points", "audio"], "encord_image_id": [5, None, 6],
                      "encord_audio_id": [7, None, 8], "encord_points_id": [None, 9, None]})
    found = rules.triplet_ids(table, "seed", "triplets.csv")
    assert [(v.code, v.lines) for v in found] == [("missing_id", (4,)), ("missing_id", (3,))]
    assert "encord_text_id is empty" in found[0].message and "encord_audio_id is empty" in found[1].message
