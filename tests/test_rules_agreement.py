"""The builders and `emm1 validate` apply one rule set: on every case of the hostile corpus they agree.

Each case edits a small generated tree, then prepares the configs that read the edited split (the E-MM1
builder, or both EShot configs) and runs `validate_tree` on the whole tree. They agree when:
- the builder raises (an `EMM1DataError`, possibly wrapped by `datasets`) exactly when the report has an error;
- the builder's error names a file (`EMM1DataError.file`) that has an error finding, and when the error has a
  line, that finding lists it.
Anything else the builder raises (a bare `ValueError`, `OverflowError`, ...) fails the case.

Trees hold one neighbour file: a missing `nn_k` is a warning of the validator (configs that need it fail with
"not found", the others work), so only `phase1_nn1` is prepared for phase 1.
"""
import csv
import json
import os
import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import emm1
import eshot
from emm1_lib.errors import EMM1DataError
from emm1_lib.io import tables
from emm1_lib.testing.sample import generate_sample_tree
from emm1_lib.tools.validate import validate_tree

CONFIGS = {"phase1": ["phase1_nn1"], "phase2": ["phase2_triplets"], "eshot": ["eshot_audio", "eshot_points"]}


# ---------------------------------------------------------------------------------------------- editing a tree


def read_lines(path):
    with open(path, "rb") as f:
        return f.read().split(b"\n")


def write_lines(path, lines):
    with open(path, "wb") as f:
        f.write(b"\n".join(lines))


def edit_line(path, line, transform):
    lines = read_lines(path)
    lines[line - 1] = transform(lines[line - 1])
    write_lines(path, lines)


def set_cell(path, line, column, value):
    """Set `column` on file line `line` (1-based, header = 1), re-quoting the row with csv."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    rows[line - 1][rows[0].index(column)] = value
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def cell(path, line, column):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[line - 1][rows[0].index(column)]


def keep_header_only(path):
    write_lines(path, [read_lines(path)[0], b""])


def edit_json(path, change):
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, "w") as f:
        json.dump(data, f, ensure_ascii=False)


def infos(tree, modality, phase=1):
    return os.path.join(tree.phase1_dir if phase == 1 else tree.phase2_dir, "infos", f"{modality}.csv")


def groups(tree):
    return os.path.join(tree.phase1_dir, "nn_1", "data_groups.csv")


def triplets(tree):
    return os.path.join(tree.phase2_dir, "triplets.csv")


def eshot_file(tree, name):
    return os.path.join(tree.eshot_dir, name)


def seed_audio(tree):
    """The seed EShot audio folder and its file of id 7."""
    folder = os.path.join(tree.eshot_dir, "audio")
    return folder, next(n for n in os.listdir(folder) if n.split(".")[0] == "7")


def pad_id_7(tree):
    folder, name = seed_audio(tree)
    os.rename(os.path.join(folder, name), os.path.join(folder, "000" + name))


def two_files_for_id_7(tree):
    folder, name = seed_audio(tree)
    with open(os.path.join(folder, name), "rb") as f:
        data = f.read()
    with open(os.path.join(folder, "0007.copy" + os.path.splitext(name)[1]), "wb") as f:
        f.write(data)


def add_column(path, name, value_of_line):
    """Append a column `name` to a CSV; `value_of_line(line)` is its value on file line `line` (2 = first data row)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    rows[0].append(name)
    for line, row in enumerate(rows[1:], start=2):
        row.append(value_of_line(line))
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def quote_everything(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows(rows)


def long_caption(size):
    def edit(tree):
        set_cell(infos(tree, "text"), 6, "caption", "y" * size)
    return edit


def hub_file(tree, phase=1, index=0):
    """A pre-joined Parquet file of a `schema="hub"` tree: nn_01.parquet, or the `index`-th pair file of phase 2."""
    folder = os.path.join(tree.phase1_dir if phase == 1 else tree.phase2_dir, "data")
    return os.path.join(folder, sorted(os.listdir(folder))[index])


def edit_parquet(path, change):
    table = pq.read_table(path)
    pq.write_table(change(table), path)


def set_parquet_cell(path, row, column, value):
    """Set `column` on row `row` (numbered from 1, as the findings number Parquet rows) of a Parquet file."""
    def change(table):
        values = table[column].to_pylist()
        values[row - 1] = value
        return table.set_column(table.column_names.index(column), column, pa.array(values, table.schema.field(column).type))
    edit_parquet(path, change)


def annotation_codes_with(row, code):
    def change(table):
        codes = pc.add(pc.index_in(table["annotation"], value_set=pa.array(["Good Match", "Partial Match", "Bad Match"])), 1)
        values = codes.to_pylist()
        values[row - 1] = code
        return table.set_column(table.column_names.index("annotation"), "annotation", pa.array(values, pa.int64()))
    return change


def with_modality_column(row, value):
    """An explicit paired_modality column holding the file name's modality, except `value` on `row`."""
    def edit(tree):
        path = hub_file(tree, phase=2)
        paired = os.path.basename(path).split("_to_")[0]

        def change(table):
            values = [paired] * table.num_rows
            values[row - 1] = value
            return table.append_column("paired_modality", pa.array(values))
        edit_parquet(path, change)
    return edit


# ---------------------------------------------------------------------------------------------- the corpus


@dataclass
class Case:
    name: str
    split: str  # which builder configs read the edited files: CONFIGS[split]
    edit: Callable
    schema: str = "released"
    media: bool = False
    check_media: bool = False


def _paired(tree):
    return "paired_modality" if tree.schema == "released" else "modality_1"


def _paired_id(tree):
    """The column holding the paired item's id on line 6 of `triplets.csv`."""
    if tree.schema == "released":
        return "encord_paired_id"
    return f"encord_{cell(triplets(tree), 6, 'modality_1')}_id"


CORPUS: List[Case] = [
    Case("clean_phase1", "phase1", lambda t: None),
    Case("clean_phase2_seed", "phase2", lambda t: None, schema="seed"),
    Case("clean_eshot_seed", "eshot", lambda t: None, schema="seed", media=True, check_media=True),
    # CSV structure
    Case("ragged_row", "phase1", lambda t: edit_line(infos(t, "image"), 4, lambda l: l + b",surplus")),
    Case("unterminated_quote_in_groups", "phase1", lambda t: edit_line(groups(t), 6, lambda l: l.replace(b",", b',"', 1))),
    Case("unterminated_caption", "phase1", lambda t: edit_line(infos(t, "text"), 5, lambda l: l + b' "and open')),
    Case("not_utf8_value", "phase1", lambda t: edit_line(infos(t, "text"), 7, lambda l: l[:-3] + b"\xff\xfe" + l[-3:])),
    Case("not_utf8_header", "phase1", lambda t: edit_line(infos(t, "image"), 1, lambda l: l.replace(b"file_name", b"file\xe9name"))),
    Case("empty_file", "phase1", lambda t: open(infos(t, "video"), "wb").close()),
    Case("missing_infos_file", "phase2", lambda t: os.remove(infos(t, "video", phase=2))),
    Case("no_metadata", "phase1", lambda t: [os.rename(d, d + ".moved") for d in (t.phase1_dir, t.phase2_dir, t.eshot_dir)]),
    Case("header_only_infos", "phase1", lambda t: keep_header_only(infos(t, "points"))),
    Case("header_only_nn_1", "phase1", lambda t: keep_header_only(groups(t))),
    Case("header_only_triplets", "phase2", lambda t: keep_header_only(triplets(t))),
    Case("caption_of_8_mib", "phase1", long_caption(8 << 20)),
    Case("caption_longer_than_the_largest_block", "phase1", long_caption(1 << 20)),  # with a small MAX_BLOCK_BYTES
    # columns
    Case("missing_column", "phase1", lambda t: edit_line(infos(t, "image"), 1, lambda l: l.replace(b"file_name", b"filename"))),
    Case("missing_grouping_column", "phase1",
         lambda t: edit_line(groups(t), 1, lambda l: l.replace(b"encord_points_id", b"encord_point_id"))),
    Case("repeated_column", "phase1", lambda t: write_lines(infos(t, "image"), [
        line + (b",file_name" if i == 0 else b",x.jpg") if line else line for i, line in enumerate(read_lines(infos(t, "image")))])),
    Case("extra_column", "phase1", lambda t: write_lines(infos(t, "image"), [
        line + (b",notes" if i == 0 else b",x") if line else line for i, line in enumerate(read_lines(infos(t, "image")))])),
    # ids
    *[Case(f"infos_id_{label}", "phase1", lambda t, v=value: set_cell(infos(t, "image"), 4, "encord_image_id", v))
      for label, value in [("abc", "abc"), ("decimal", "1.5"), ("exponent", "1e3"), ("plus", "+7"), ("huge", "9" * 20),
                           ("superscript", "²"), ("negative", "-5"), ("empty", ""), ("NA", "NA"), ("hex", "0x10"),
                           ("padded", " 12 ")]],
    *[Case(f"infos_id_{label}", "phase1", lambda t, v=value: set_cell(infos(t, "image"), 4, "encord_image_id", v))
      for label, value in [("NaN", "NaN"), ("N_A", "N/A"), ("null", "null"), ("arabic_indic", "\u0663"),
                           ("hex_upper", "0X1F"), ("minus_hex", "-0x10"), ("fullwidth", "\uff17"), ("space", " ")]],
    Case("caption_id_hex", "phase1", lambda t: set_cell(infos(t, "text"), 5, "encord_text_id", "0x10")),
    Case("grouping_id_not_integer", "phase1", lambda t: set_cell(groups(t), 9, "encord_audio_id", "12x")),
    Case("grouping_id_NA", "phase1", lambda t: set_cell(groups(t), 9, "encord_audio_id", "NA")),
    *[Case(f"grouping_id_{label}", "phase1", lambda t, v=value: set_cell(groups(t), 7, "encord_image_id", v))
      for label, value in [("hex", "0x10"), ("empty", ""), ("NaN", "NaN"), ("null", "null"), ("arabic_indic", "\u0663"),
                           ("exponent", "1e3")]],
    Case("grouping_text_id_hex", "phase1", lambda t: set_cell(groups(t), 12, "encord_text_id", "0X2")),
    # grouping files are read by byte range: a quoted line break would start phantom rows
    Case("grouping_quoted_line_break", "phase1", lambda t: add_column(
        groups(t), "notes", lambda line: "first line\n0,0,0,0,0,1,x" if line == 5 else "x")),
    Case("grouping_stray_quote", "phase1", lambda t: edit_line(groups(t), 8, lambda l: l + b',"')),
    Case("grouping_quoted_integers", "phase1", lambda t: quote_everything(groups(t))),
    Case("grouping_quoted_note_on_one_line", "phase1", lambda t: add_column(groups(t), "notes", lambda line: 'a "b", c')),
    Case("grouping_id_negative", "phase1", lambda t: set_cell(groups(t), 5, "encord_video_id", "-3")),
    Case("dangling_id", "phase1", lambda t: set_cell(groups(t), 3, "encord_image_id", "777777")),
    Case("duplicate_infos_id", "phase1",
         lambda t: set_cell(infos(t, "image"), 5, "encord_image_id", cell(infos(t, "image"), 2, "encord_image_id"))),
    Case("duplicate_caption_id", "phase1",
         lambda t: set_cell(infos(t, "text"), 9, "encord_text_id", cell(infos(t, "text"), 2, "encord_text_id"))),
    *[Case(f"nn_index_{label}", "phase1", lambda t, v=value: set_cell(groups(t), 4, "nn_index", v))
      for label, value in [("300", "300"), ("0", "0"), ("empty", ""), ("other_folder", "2")]],
    # unsafe paths
    *[Case(f"unsafe_{column}_{label}", "phase1", lambda t, c=column, v=value: set_cell(infos(t, "image"), 3, c, v))
      for column in ("file_name", "save_folder")
      for label, value in [("dotdot", "../../etc/passwd"), ("absolute", "/etc/passwd"), ("home", "~/x"),
                           ("nul", "x\x00.jpg"), ("empty", "")]],
    Case("unsafe_path_in_phase2", "phase2", lambda t: set_cell(infos(t, "points", phase=2), 2, "save_folder", "../out")),
    # triplets
    *[Case(f"triplet_{problem}_{schema}", "phase2", edit, schema=schema)
      for schema in ("released", "seed")
      for problem, edit in [
          ("unknown_modality", lambda t: set_cell(triplets(t), 6, _paired(t), "smell")),
          ("same_modality", lambda t: set_cell(triplets(t), 6, _paired(t),
                                               cell(triplets(t), 6, "annotated_modality" if t.schema == "released" else "modality_2"))),
          ("unknown_annotation", lambda t: set_cell(triplets(t), 6, "annotation", "7")),
          ("annotation_NA", lambda t: set_cell(triplets(t), 6, "annotation", "NA")),
          ("text_id_hex", lambda t: set_cell(triplets(t), 6, "encord_text_id", "0x10")),
          ("text_id_empty", lambda t: set_cell(triplets(t), 6, "encord_text_id", "")),
          ("item_id_empty", lambda t: set_cell(triplets(t), 6, _paired_id(t), "")),
          ("item_id_NaN", lambda t: set_cell(triplets(t), 6, _paired_id(t), "NaN")),
      ]],
    Case("triplets_of_neither_schema", "phase2",
         lambda t: edit_line(triplets(t), 1, lambda l: l.replace(b"paired_modality", b"modality_a"))),
    Case("annotation_codes_repeated", "phase2", lambda t: open(os.path.join(t.phase2_dir, "annotation_mapping.csv"), "w")
         .write("annotation,label\n1,Good Match\n1,Bad Match\n")),
    Case("annotation_labels_repeated", "phase2", lambda t: open(os.path.join(t.phase2_dir, "annotation_mapping.csv"), "w")
         .write("annotation,label\n1,Good\n2,Good\n3,Bad\n")),
    Case("annotation_mapping_one_column", "phase2", lambda t: open(os.path.join(t.phase2_dir, "annotation_mapping.csv"), "w")
         .write("annotation\n1\n")),
    # EShot
    *[Case(f"category_json_{label}", "eshot",
           lambda t, x=text: open(eshot_file(t, "category_to_audio_ids.json"), "wb").write(x))
      for label, text in [("truncated", b'{"bell": [0, 1], "bird": [2, 3]'), ("not_an_object", b'["bell"]'),
                          ("not_an_id", b'{"bell": [0, "one"], "bird": [2]}'), ("two_categories", b'{"bell": [0, 1], "bird": [1, 2]}'),
                          ("no_info_row", b'{"bell": [0, 999999]}'), ("not_utf8", b'\xff\xfe{}'),
                          ("superscript_two", '{"bell": [0, "\u00b2"]}'.encode()), ("beyond_int64", b'{"bell": [0, 1180591620717411303424]}'),
                          ("not_a_list", b'{"bell": 3}'), ("hex_string", b'{"bell": [0, "0x10"]}'),
                          ("empty_string", b'{"bell": [0, ""]}'), ("NaN_string", b'{"bell": [0, "NaN"]}')]],
    Case("category_json_missing", "eshot", lambda t: os.remove(eshot_file(t, "category_to_point_ids.json"))),
    Case("uncategorised_info_row", "eshot", lambda t: edit_json(eshot_file(t, "category_to_audio_ids.json"),
                                                                lambda d: d["bell"].pop())),
    Case("eshot_duplicate_info_row", "eshot", lambda t: write_lines(
        eshot_file(t, "eshot_points_info.csv"), read_lines(eshot_file(t, "eshot_points_info.csv"))[:-1]
        + [read_lines(eshot_file(t, "eshot_points_info.csv"))[1], b""])),
    Case("eshot_unsafe_file_name", "eshot", lambda t: set_cell(eshot_file(t, "eshot_audio_info.csv"), 3, "file_name", "../x")),
    *[Case(f"eshot_info_id_{label}", "eshot", lambda t, v=value: set_cell(eshot_file(t, "eshot_points_info.csv"), 3,
                                                                          "eshot_point_id", v))
      for label, value in [("hex", "0x1"), ("empty", ""), ("NA", "NA")]],
    Case("eshot_seed_media_0007", "eshot", pad_id_7, schema="seed", media=True, check_media=True),
    Case("eshot_seed_two_files_for_one_id", "eshot", two_files_for_id_7, schema="seed", media=True),
    Case("eshot_seed_missing_media", "eshot", lambda t: os.remove(os.path.join(*seed_audio(t))), schema="seed", media=True),
    # the pre-joined Parquet generation (the Hub copy)
    Case("clean_hub_phase1", "phase1", lambda t: None, schema="hub"),
    Case("clean_hub_phase2", "phase2", lambda t: None, schema="hub"),
    *[Case(f"hub_unsafe_{column}_{label}", "phase1", lambda t, c=column, v=value: set_parquet_cell(hub_file(t), 3, c, v),
           schema="hub")
      for column in ("file_name_image", "save_folder_audio")
      for label, value in [("dotdot", "../../etc/passwd"), ("absolute", "/etc/passwd"), ("empty", "")]],
    Case("hub_unsafe_path_in_phase2", "phase2", lambda t: set_parquet_cell(
        hub_file(t, phase=2), 2, [c for c in pq.read_schema(hub_file(t, phase=2)).names if c.startswith("file_name_")][0],
        "../x"), schema="hub"),
    *[Case(f"hub_nn_index_{label}", "phase1", lambda t, v=value: set_parquet_cell(hub_file(t), 4, "nn_index", v), schema="hub")
      for label, value in [("300", 300), ("0", 0), ("null", None), ("other_rank", 2)]],
    Case("hub_dangling_id", "phase1", lambda t: set_parquet_cell(hub_file(t), 5, "file_name_video", None), schema="hub"),
    Case("hub_missing_required_column", "phase1", lambda t: edit_parquet(hub_file(t), lambda x: x.drop_columns(["file_name_image"])),
         schema="hub"),
    Case("hub_missing_optional_column", "phase1",
         lambda t: edit_parquet(hub_file(t), lambda x: x.drop_columns(["source_dataset_image", "encord_text_id"])), schema="hub"),
    Case("hub_two_columns_for_one_role", "phase1",
         lambda t: edit_parquet(hub_file(t), lambda x: x.append_column("Caption_Text", x["caption"])), schema="hub"),
    Case("hub_unrecognised_layout", "phase2", lambda t: pq.write_table(pa.table({"a": [1], "b": ["x"]}), hub_file(t, phase=2)),
         schema="hub"),
    Case("hub_not_parquet", "phase1", lambda t: open(hub_file(t), "wb").write(b"PAR1 this is not parquet"), schema="hub"),
    Case("hub_no_rows", "phase1", lambda t: edit_parquet(hub_file(t), lambda x: x.slice(0, 0)), schema="hub"),
    Case("hub_pair_of_one_modality", "phase2",
         lambda t: os.rename(hub_file(t, phase=2), os.path.join(os.path.dirname(hub_file(t, phase=2)), "image_to_image.parquet")),
         schema="hub"),
    Case("hub_unknown_annotation_label", "phase2", lambda t: set_parquet_cell(hub_file(t, phase=2), 2, "annotation", "Meh"),
         schema="hub"),
    Case("hub_annotation_null", "phase2", lambda t: set_parquet_cell(hub_file(t, phase=2), 1, "annotation", None), schema="hub"),
    Case("hub_unknown_annotation_code", "phase2", lambda t: edit_parquet(hub_file(t, phase=2), annotation_codes_with(2, 7)),
         schema="hub"),
    Case("hub_annotation_codes", "phase2", lambda t: edit_parquet(hub_file(t, phase=2), annotation_codes_with(1, 1)),
         schema="hub"),
    Case("hub_modality_column_disagrees", "phase2", with_modality_column(2, "video"), schema="hub"),
]


# The builder's verdict on the cases this rule set was made for (None: prepared; else the rule it refuses by).
EXPECTED = {
    "header_only_nn_1": "no_data_rows", "header_only_triplets": "no_data_rows", "caption_of_8_mib": None,
    "caption_longer_than_the_largest_block": "record_too_large", "annotation_labels_repeated": "bad_mapping",
    "category_json_superscript_two": "bad_json", "category_json_beyond_int64": "bad_json", "infos_id_hex": "not_integer",
    "infos_id_NA": "not_integer", "eshot_seed_media_0007": None, "eshot_seed_two_files_for_one_id": "duplicate_media",
    # ids: decimal integers only, and present
    "infos_id_NaN": "not_integer", "infos_id_N_A": "not_integer", "infos_id_null": "not_integer",
    "infos_id_arabic_indic": "not_integer", "infos_id_hex_upper": "not_integer", "infos_id_minus_hex": "not_integer",
    "infos_id_empty": "invalid_id", "infos_id_padded": None, "caption_id_hex": "not_integer",
    "grouping_id_hex": "not_integer", "grouping_id_empty": "missing_id", "grouping_id_NaN": "not_integer",
    "grouping_id_null": "not_integer", "grouping_id_NA": "not_integer", "grouping_id_arabic_indic": "not_integer",
    "grouping_text_id_hex": "not_integer", "category_json_hex_string": "bad_json", "category_json_empty_string": "bad_json",
    "eshot_info_id_hex": "not_integer", "eshot_info_id_NA": "not_integer",
    **{f"triplet_{problem}_{schema}": code for schema in ("released", "seed")
       for problem, code in [("text_id_hex", "not_integer"), ("text_id_empty", "missing_id"),
                             ("item_id_empty", "missing_id"), ("item_id_NaN", "not_integer")]},
    # grouping files: no quoted value spans lines
    "grouping_quoted_line_break": "quoted_line_break", "grouping_stray_quote": "quoted_line_break",
    "grouping_quoted_integers": None, "grouping_quoted_note_on_one_line": None,
    "clean_hub_phase1": None, "clean_hub_phase2": None, "hub_unsafe_file_name_image_dotdot": "unsafe_path",
    "hub_unsafe_path_in_phase2": "unsafe_path", "hub_nn_index_300": "bad_value", "hub_nn_index_null": "bad_value",
    "hub_nn_index_other_rank": None, "hub_dangling_id": None, "hub_missing_required_column": "missing_column",
    "hub_missing_optional_column": None, "hub_two_columns_for_one_role": "repeated_column",
    "hub_unrecognised_layout": "missing_column", "hub_not_parquet": "unreadable", "hub_no_rows": "no_data_rows",
    "hub_pair_of_one_modality": "bad_value", "hub_unknown_annotation_label": "bad_value",
    "hub_annotation_null": "bad_value", "hub_unknown_annotation_code": "bad_value", "hub_annotation_codes": None,
    "hub_modality_column_disagrees": "bad_value",
}


# ---------------------------------------------------------------------------------------------- running both


def build(tree, config: str) -> Optional[EMM1DataError]:
    """Prepare `config`; the `EMM1DataError` it raised (dug out of `datasets`' wrapping), or None."""
    cls = eshot.EShot if config.startswith("eshot") else emm1.EMM1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            builder = cls(config_name=config, data_dir=tree.metadata_dir, root_data_path=tree.root, decode=False,
                          cache_dir=os.path.join(os.path.dirname(tree.root), f".hf-{config}"))
            builder.download_and_prepare()
    except Exception as error:  # noqa: BLE001 - anything but an EMM1DataError fails the case below
        seen = error
        while seen is not None and not isinstance(seen, EMM1DataError):
            seen = seen.__cause__ or seen.__context__
        if seen is None:
            raise AssertionError(f"{config}: the builder raised {error!r}, not an EMM1DataError") from error
        return seen
    return None


def same_file(a: str, b: str) -> bool:
    return os.path.normpath(a) == os.path.normpath(b)


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_builder_and_validate_agree(tmp_path, monkeypatch, case):
    if case.name == "caption_longer_than_the_largest_block":
        monkeypatch.setattr(tables, "_STREAM_BLOCK_BYTES", 1 << 16)
        monkeypatch.setattr(tables, "_READ_BLOCK_BYTES", 1 << 16)
        monkeypatch.setattr(tables, "MAX_BLOCK_BYTES", 1 << 18)
    tree = generate_sample_tree(str(tmp_path / "tree"), schema=case.schema, media=case.media, num_neighbours=1,
                                num_captions=12, num_media=6, num_triplets=24)
    case.edit(tree)
    errors = [e for e in (build(tree, config) for config in CONFIGS[case.split]) if e is not None]
    report = validate_tree(tree.metadata_dir, tree.root, check_media=case.check_media)
    if case.name in EXPECTED:
        assert (errors[0].code if errors else None) == EXPECTED[case.name], errors
    if not errors:
        assert report.ok, f"the builder accepts what validate refuses:\n{report.to_text()}"
        return
    error = errors[0]
    assert not report.ok, f"validate accepts what the builder refuses: {error}"
    assert error.file, f"the builder's error names no file: {error}"
    on_file = [f for f in report.errors if same_file(f.file, error.file)]
    assert on_file, f"the builder refused {error.file} ({error}); validate's errors:\n{report.to_text()}"
    if error.line is not None:
        assert any(error.line in f.lines for f in on_file), \
            f"the builder names line {error.line} of {error.file}; validate: {[(f.code, f.lines) for f in on_file]}"


def test_the_new_cases_are_errors_with_their_file(tmp_path):
    """Cases that reached users as an unnamed error or a false verdict before the rule set was shared."""
    outcomes = {}
    for name in ("header_only_nn_1", "header_only_triplets", "annotation_labels_repeated", "category_json_superscript_two",
                 "eshot_seed_two_files_for_one_id", "infos_id_hex", "caption_of_8_mib"):
        case = next(c for c in CORPUS if c.name == name)
        tree = generate_sample_tree(str(tmp_path / name), schema=case.schema, media=case.media, num_neighbours=1,
                                    num_captions=12, num_media=6, num_triplets=24)
        case.edit(tree)
        report = validate_tree(tree.metadata_dir)
        outcomes[name] = sorted({(f.code, os.path.basename(f.file)) for f in report.errors})
    assert outcomes == {
        "header_only_nn_1": [("no_data_rows", "data_groups.csv")],
        "header_only_triplets": [("no_data_rows", "triplets.csv")],
        "annotation_labels_repeated": [("bad_mapping", "annotation_mapping.csv")],
        "category_json_superscript_two": [("bad_json", "category_to_audio_ids.json")],
        "eshot_seed_two_files_for_one_id": [("duplicate_media", "audio")],
        "infos_id_hex": [("not_integer", "image.csv")],  # pyarrow would read 0x10 as 16: the id rule refuses it
        "caption_of_8_mib": [],
    }


def test_seed_media_named_with_leading_zeros_are_found(tmp_path):
    """The builder reads `0007.wav` as id 7; validate must find the same file, not report it missing."""
    tree = generate_sample_tree(str(tmp_path / "tree"), schema="seed", media=True, num_neighbours=1, num_captions=4,
                                num_media=2)
    pad_id_7(tree)
    builder = eshot.EShot(config_name="eshot_audio", data_dir=tree.metadata_dir, decode=False, cache_dir=str(tmp_path / "hf"))
    builder.download_and_prepare()
    ds = builder.as_dataset(split="test")
    path = dict(zip(ds["eshot_audio_id"], ds["audio_file_path"]))[7]
    assert os.path.basename(path).startswith("0007.")
    report = validate_tree(tree.metadata_dir, tree.root, check_media=True)
    assert report.ok and not report.find("missing_media"), report.to_text()
