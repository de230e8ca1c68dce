"""A corpus of broken and hostile inputs, each run through the real entry points with its expected outcome.

Entry points: the Arrow builder (`download_and_prepare` / `as_dataset`, decoding included), `validate_tree`,
and the media decoders. Every case ends in one of:
- a clear error (`EMM1DataError`, or a `MediaError` subclass for media) whose message names the file and the
  row / id / value, and a matching *error* finding of the validator with the line number;
- a documented, counted skip (dangling ids: null + `DanglingIdWarning`; the validator warns and counts);
- identical results (BOM, CRLF, extra columns).
Cases marked `xfail(strict=True)` document the expected behaviour that the shared code does not have yet (listed in
docs/safety.md). When a fix lands the test passes, the strict xfail turns into a failure, and the marker must be
removed.
"""
import csv
import io
import os
import warnings

import datasets
import numpy as np
import pyarrow.compute as pc
import pytest

import hostile_media

import emm1
from emm1_lib.errors import DanglingIdWarning
from emm1_lib.errors import EMM1DataError
from emm1_lib.media.features import media_feature
from emm1_lib.media.files import MediaDecodeError
from emm1_lib.media.files import MediaError
from emm1_lib.media.files import MediaOutsideRootError
from emm1_lib.media.files import UnsafePickleError
from emm1_lib.media.pointcloud import read_point_cloud
from emm1_lib.testing.sample import generate_sample_tree
from emm1_lib.tools.validate import validate_tree


# ---------------------------------------------------------------------------------------------- helpers


def small_tree(tmp_path, schema="released", media=False, name="tree"):
    """A metadata tree with one neighbour file (fast), 12 captions, 6 media per modality."""
    return generate_sample_tree(str(tmp_path / name), schema=schema, media=media, num_neighbours=1, num_captions=12,
                                num_media=6, num_triplets=24)


def prepare(tree, config="phase1_nn1", cache=None, **kwargs):
    kwargs.setdefault("decode", False)
    builder = emm1.EMM1(config_name=config, data_dir=tree.metadata_dir, root_data_path=tree.root,
                        cache_dir=cache or os.path.join(tree.root, f".hf-cache-{config}"), **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        builder.download_and_prepare()
    ds = builder.as_dataset(split="train")
    return ds, [w for w in caught if issubclass(w.category, DanglingIdWarning)]


def media_paths(ds, modality):
    """The paths held by a media column (phase 1 stores each path there only, by default), without decoding."""
    return pc.struct_field(ds.with_format("arrow")[modality], "path").to_pylist()


def behind(error: BaseException, kind=EMM1DataError) -> BaseException:
    """The error of `kind` in the cause chain (datasets wraps errors raised while generating)."""
    seen = error
    while seen is not None and not isinstance(seen, kind):
        seen = seen.__cause__ or seen.__context__
    assert isinstance(seen, kind), f"expected {kind.__name__} behind {error!r}"
    return seen


def data_error(tree, config="phase1_nn1", **kwargs) -> str:
    """Prepare and return the message of the EMM1DataError it raises (directly or wrapped by datasets)."""
    with pytest.raises(Exception) as raised:
        prepare(tree, config, **kwargs)
    return str(behind(raised.value))


def infos(tree, modality, phase=1):
    return os.path.join(tree.phase1_dir if phase == 1 else tree.phase2_dir, "infos", f"{modality}.csv")


def groups(tree, k=1):
    return os.path.join(tree.phase1_dir, f"nn_{k}", "data_groups.csv")


def read_lines(path):
    with open(path, "rb") as f:
        return f.read().split(b"\n")


def write_lines(path, lines):
    with open(path, "wb") as f:
        f.write(b"\n".join(lines))


def set_cell(path, line, column, value):
    """Set `column` on file line `line` (1-based, header = 1) to `value` (str), re-quoting the line with csv."""
    lines = read_lines(path)
    header = next(csv.reader([lines[0].decode("utf-8-sig")]))
    fields = next(csv.reader([lines[line - 1].decode()]))
    fields[header.index(column)] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)  # "\n" so that values holding one get quoted
    lines[line - 1] = out.getvalue()[:-1].encode()
    write_lines(path, lines)
    return fields


def cell(path, line, column):
    lines = read_lines(path)
    header = next(csv.reader([lines[0].decode("utf-8-sig")]))
    return next(csv.reader([lines[line - 1].decode()]))[header.index(column)]


def one(findings):
    assert len(findings) == 1, findings
    return findings[0]


def rel(path, tree):
    return os.path.relpath(path, tree.metadata_dir)


# ---------------------------------------------------------------------------------------------- CSV structure


def test_ragged_row(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "image")
    lines = read_lines(path)
    lines[3] += b",surplus"
    write_lines(path, lines)
    message = data_error(tree)
    assert path in message and "surplus" in message and "Expected 6 columns, got 7" in message
    finding = one(validate_tree(tree.metadata_dir).find("ragged_row", rel(path, tree)))
    assert finding.lines == [4] and finding.severity == "error"


def test_unterminated_quote_in_a_grouping_file_is_an_error(tmp_path):
    tree = small_tree(tmp_path)
    path = groups(tree)
    lines = read_lines(path)
    lines[5] = lines[5].replace(b",", b',"', 1)
    write_lines(path, lines)
    message = data_error(tree)  # the merged value is no integer
    assert path in message
    finding = one(validate_tree(tree.metadata_dir).find("ragged_row", rel(path, tree)))  # the quote swallows the file
    assert finding.lines == [6] and finding.severity == "error"


def _unterminated_caption(tree):
    path = infos(tree, "text")
    lines = read_lines(path)
    lines[4] = lines[4] + b' "and an opening quote'  # line 5; the rest of the file merges into this caption
    lines[4] = lines[4].replace(b',"', b",", 1) if lines[4].count(b'"') % 2 == 0 else lines[4]
    write_lines(path, lines)
    return path


def test_unterminated_quote_is_found_by_validate(tmp_path):
    tree = small_tree(tmp_path)
    path = _unterminated_caption(tree)
    report = validate_tree(tree.metadata_dir)
    finding = one(report.find("unbalanced_quote", rel(path, tree)))
    assert finding.severity == "error" and finding.lines == [5] and "line 5" in finding.message
    assert finding.message.count("odd number of double quotes") == 1  # the shared reader's words, once
    assert one(report.find(file=rel(path, tree), severity="error")) is finding  # no second `unparsable` finding


def test_unterminated_quote_is_refused_by_the_builder(tmp_path):
    tree = small_tree(tmp_path)
    path = _unterminated_caption(tree)
    message = data_error(tree)
    assert path in message and "quote" in message and "line 5" in message


def test_non_utf8_bytes(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "text")
    lines = read_lines(path)
    lines[6] = lines[6][:-3] + b"\xff\xfe" + lines[6][-3:]
    write_lines(path, lines)
    message = data_error(tree)
    assert path in message and "UTF8" in message
    finding = one(validate_tree(tree.metadata_dir).find("not_utf8", rel(path, tree)))
    assert finding.lines == [7]


def test_non_utf8_header(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "image")
    lines = read_lines(path)
    lines[0] = lines[0].replace(b"file_name", b"file\xe9name")
    write_lines(path, lines)
    message = data_error(tree)
    assert path in message and "not UTF-8" in message
    assert one(validate_tree(tree.metadata_dir).find("unreadable", rel(path, tree))).severity == "error"


@pytest.mark.parametrize("variant", ["bom", "crlf", "bom+crlf"])
def test_bom_and_crlf_files_read_the_same(tmp_path, variant):
    clean = small_tree(tmp_path, name="clean")
    tree = small_tree(tmp_path, name="edited")
    for path in [infos(tree, m) for m in ("text", "image", "audio", "video", "points")] + [groups(tree)]:
        with open(path, "rb") as f:
            data = f.read()
        if "crlf" in variant:
            data = data.replace(b"\n", b"\r\n")
        if "bom" in variant:
            data = b"\xef\xbb\xbf" + data
        with open(path, "wb") as f:
            f.write(data)
    expected, _ = prepare(clean)
    got, _ = prepare(tree)
    paths = lambda ds: [None if p is None else os.path.relpath(p, t) for p, t in
                        zip(media_paths(ds, "image"), [clean.root if ds is expected else tree.root] * len(ds))]
    assert got["encord_text_id"] == expected["encord_text_id"]
    assert got["caption"] == expected["caption"]
    assert paths(got) == paths(expected)
    assert validate_tree(tree.metadata_dir).ok


def test_empty_file(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "video")
    open(path, "wb").close()
    message = data_error(tree)
    assert path in message and "empty" in message
    assert one(validate_tree(tree.metadata_dir).find("unreadable", rel(path, tree))).severity == "error"


def test_header_only_infos_table_makes_every_id_dangling(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "points")
    write_lines(path, [read_lines(path)[0], b""])
    ds, dangling = prepare(tree)
    assert len(ds) == tree.num_captions and set(media_paths(ds, "points")) == {None}
    [warning] = [w for w in dangling if "encord_points_id" in str(w.message)]
    assert f"{tree.num_captions} encord_points_id value(s)" in str(warning.message)
    report = validate_tree(tree.metadata_dir)
    assert report.split("phase1").modalities["points"].dangling == tree.num_captions
    assert report.ok


def test_header_only_grouping_file(tmp_path):
    tree = small_tree(tmp_path)
    path = groups(tree)
    write_lines(path, [read_lines(path)[0], b""])
    with pytest.raises(EMM1DataError, match="no data rows") as raised:  # from _split_generators: not wrapped
        prepare(tree)
    assert path in str(raised.value)


def test_header_only_triplets_file(tmp_path):
    tree = small_tree(tmp_path)
    path = os.path.join(tree.phase2_dir, "triplets.csv")
    write_lines(path, [read_lines(path)[0], b"", b""])
    with pytest.raises(EMM1DataError, match="no data rows") as raised:
        prepare(tree, "phase2_triplets")
    assert path in str(raised.value)


# ---------------------------------------------------------------------------------------------- ids


@pytest.mark.parametrize("value", ["abc", "1.5", "1e3", "+7", "99999999999999999999"])
def test_id_that_is_not_an_int64_in_an_infos_table(tmp_path, value):
    tree = small_tree(tmp_path)
    path = infos(tree, "image")
    set_cell(path, 4, "encord_image_id", value)
    message = data_error(tree)
    assert path in message and value in message
    finding = one(validate_tree(tree.metadata_dir).find("not_integer", rel(path, tree)))
    assert finding.lines == [4] and finding.values == [value]


def test_id_that_is_not_an_integer_in_a_grouping_file(tmp_path):
    tree = small_tree(tmp_path)
    path = groups(tree)
    set_cell(path, 9, "encord_audio_id", "12x")
    message = data_error(tree)
    assert path in message and "12x" in message
    finding = one(validate_tree(tree.metadata_dir).find("not_integer", rel(path, tree)))
    assert finding.lines == [9]


def test_parse_errors_name_the_line(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "image")
    set_cell(path, 4, "encord_image_id", "abc")
    assert "line 4" in data_error(tree)


def test_negative_id_in_an_infos_table(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "audio")
    set_cell(path, 3, "encord_audio_id", "-5")
    message = data_error(tree)
    assert path in message and "data row 2 (line 3)" in message and "negative" in message
    finding = one(validate_tree(tree.metadata_dir).find("invalid_id", rel(path, tree)))
    assert finding.lines == [3] and finding.values == [-5]


def test_missing_id_in_an_infos_table(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "audio")
    set_cell(path, 6, "encord_audio_id", "")
    message = data_error(tree)
    assert path in message and "line 6" in message and "missing or negative" in message
    assert one(validate_tree(tree.metadata_dir).find("invalid_id", rel(path, tree))).lines == [6]


def test_huge_ids_use_the_sparse_lookup(tmp_path):
    """2**62 is a valid int64 id: the lookup must not allocate a dense table up to it; it joins normally."""
    tree = small_tree(tmp_path)
    huge = str(2**62)
    set_cell(infos(tree, "image"), 2, "encord_image_id", huge)
    set_cell(groups(tree), 2, "encord_image_id", huge)
    ds, _ = prepare(tree)
    assert ds["encord_image_id"][0] == 2**62 and media_paths(ds, "image")[0] is not None
    assert validate_tree(tree.metadata_dir).ok


@pytest.mark.parametrize("value", ["-3", str(2**63 - 1)])
def test_negative_or_huge_id_in_a_grouping_file_is_a_counted_dangling_id(tmp_path, value):
    tree = small_tree(tmp_path)
    set_cell(groups(tree), 5, "encord_video_id", value)
    ds, dangling = prepare(tree)
    assert ds["encord_video_id"][3] == int(value) and media_paths(ds, "video")[3] is None  # row kept, value null
    assert any("encord_video_id" in str(w.message) for w in dangling)
    report = validate_tree(tree.metadata_dir)
    finding = one(report.find("dangling_id", rel(groups(tree), tree)))
    assert finding.lines == [5] and finding.values == [int(value)]
    assert report.ok


def test_duplicate_ids_in_an_infos_table(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "image")
    first = cell(path, 2, "encord_image_id")
    set_cell(path, 5, "encord_image_id", first)
    message = data_error(tree)
    assert path in message and first in message and "ambiguous" in message
    finding = one(validate_tree(tree.metadata_dir).find("duplicate_id", rel(path, tree)))
    assert finding.lines == [2, 5] and finding.values == [int(first)]


def test_duplicate_caption_ids(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "text")
    first = cell(path, 2, "encord_text_id")
    set_cell(path, 9, "encord_text_id", first)
    message = data_error(tree)
    assert path in message and first in message
    assert one(validate_tree(tree.metadata_dir).find("duplicate_id", rel(path, tree))).lines == [2, 9]


@pytest.mark.parametrize("schema", ["released", "seed"])
def test_dangling_ids_are_null_and_counted(tmp_path, schema):
    tree = generate_sample_tree(str(tmp_path / "t"), schema=schema, media=False, num_neighbours=1, num_captions=12,
                                dangling=3)
    ds, dangling = prepare(tree)
    assert len(ds) == 12  # nothing dropped
    report = validate_tree(tree.metadata_dir)
    for m in ("image", "audio", "video", "points"):
        nulls = sum(p is None for p in media_paths(ds, m))
        assert nulls == 3
        [warning] = [w for w in dangling if f"encord_{m}_id" in str(w.message)]
        assert str(warning.message).startswith(f"phase1_nn1: {nulls} encord_{m}_id value(s)")
        assert report.split("phase1").modalities[m].dangling == nulls
    assert report.ok and report.warnings


# ---------------------------------------------------------------------------------------------- columns


def test_missing_column(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "image")
    lines = read_lines(path)
    lines[0] = lines[0].replace(b"file_name", b"filename")
    write_lines(path, lines)
    message = data_error(tree)
    assert path in message and "['file_name']" in message
    assert one(validate_tree(tree.metadata_dir).find("missing_column", rel(path, tree))).lines == [1]


def test_missing_grouping_column(tmp_path):
    tree = small_tree(tmp_path)
    path = groups(tree)
    lines = read_lines(path)
    lines[0] = lines[0].replace(b"encord_points_id", b"encord_point_id")
    write_lines(path, lines)
    assert "['encord_points_id']" in data_error(tree)
    assert validate_tree(tree.metadata_dir).find("missing_column", rel(path, tree))


def test_extra_columns_are_ignored(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "image")
    lines = read_lines(path)
    write_lines(path, [lines[0] + b",notes"] + [line + b",x" if line else line for line in lines[1:]])
    ds, _ = prepare(tree)
    assert len(ds) == tree.num_captions
    report = validate_tree(tree.metadata_dir)
    assert report.ok and one(report.find("extra_column", rel(path, tree))).severity == "note"


def test_repeated_column_is_refused(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "image")
    lines = read_lines(path)
    write_lines(path, [lines[0] + b",file_name"] + [line + b",../../etc/passwd" if line else line for line in lines[1:]])
    message = data_error(tree)
    assert path in message and "file_name" in message


def test_repeated_column_is_found_by_validate(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "image")
    lines = read_lines(path)
    write_lines(path, [lines[0] + b",file_name"] + [line + b",x.jpg" if line else line for line in lines[1:]])
    report = validate_tree(tree.metadata_dir)
    finding = one(report.find("repeated_column", rel(path, tree)))
    assert finding.severity == "error" and finding.lines == [1] and "file_name" in finding.message
    assert one(report.find(file=rel(path, tree), severity="error")) is finding


def test_repeated_and_missing_columns_are_both_found_by_validate(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "image")
    lines = read_lines(path)
    header = lines[0].replace(b"save_folder", b"file_name")  # save_folder missing, file_name twice
    write_lines(path, [header] + lines[1:])
    report = validate_tree(tree.metadata_dir)
    assert "save_folder" in one(report.find("missing_column", rel(path, tree))).message
    assert "file_name" in one(report.find("repeated_column", rel(path, tree))).message


def test_nn_index_out_of_range(tmp_path):
    tree = small_tree(tmp_path)
    path = groups(tree)
    set_cell(path, 4, "nn_index", "300")
    message = data_error(tree)
    assert path in message and "300" in message and "line 4" in message


def test_nn_index_out_of_range_is_found_by_validate(tmp_path):
    tree = small_tree(tmp_path)
    path = groups(tree)
    set_cell(path, 4, "nn_index", "300")
    report = validate_tree(tree.metadata_dir)
    finding = one(report.find("bad_value", rel(path, tree)))
    assert finding.severity == "error" and finding.lines == [4] and finding.values == [300]
    assert not report.find("nn_index_mismatch")  # one problem, one finding


def test_nn_index_of_another_folder_is_kept_and_warned_about(tmp_path):
    tree = small_tree(tmp_path)
    path = groups(tree)
    set_cell(path, 4, "nn_index", "2")  # a rank 1-16, but not the k of nn_1
    ds, _ = prepare(tree)
    assert sorted(set(ds["nn_index"])) == [1, 2]  # the builder keeps the file's value
    report = validate_tree(tree.metadata_dir)
    assert report.ok and report.exit_code == 0
    finding = one(report.find("nn_index_mismatch", rel(path, tree)))
    assert finding.severity == "warning" and finding.lines == [4] and finding.values == [2]


# ---------------------------------------------------------------------------------------------- unsafe paths


UNSAFE = {
    "dotdot": "../../../etc/passwd",
    "dotdot_inside": "a/../../b.jpg",
    "backslash_dotdot": "..\\..\\secret.jpg",
    "absolute": "/etc/passwd",
    "windows_drive": "C:\\Windows\\win.ini",
    "home": "~/.ssh/id_rsa",
    "nul": "x\x00.jpg",
    "escape": "x\x1b[2J.jpg",
    "newline": "x\n.jpg",
    "empty": "",
}


@pytest.mark.parametrize("column", ["file_name", "save_folder"])
@pytest.mark.parametrize("kind", sorted(UNSAFE))
def test_unsafe_path_parts_are_refused_with_their_row(tmp_path, kind, column):
    tree = small_tree(tmp_path)
    path = infos(tree, "image")
    item_id = cell(path, 3, "encord_image_id")
    set_cell(path, 3, column, UNSAFE[kind])
    message = data_error(tree)
    assert path in message and "line 3" in message and f"encord_image_id={item_id}" in message
    assert f"unsafe {column}" in message
    finding = one(validate_tree(tree.metadata_dir).find("unsafe_path", rel(path, tree)))
    assert finding.lines == [3] and item_id in finding.values[0]


def test_unsafe_path_in_phase2(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "points", phase=2)
    set_cell(path, 2, "save_folder", "../outside")
    message = data_error(tree, "phase2_triplets")
    assert path in message and "line 2" in message


def test_validate_lists_every_unsafe_row(tmp_path):
    tree = small_tree(tmp_path)
    path = infos(tree, "audio")
    for line, value in ((2, "/abs.wav"), (4, "../x.wav"), (7, "~/y.wav")):
        set_cell(path, line, "file_name", value)
    report = validate_tree(tree.metadata_dir)
    finding = one(report.find("unsafe_path", rel(path, tree)))
    assert finding.lines == [2, 4, 7] and finding.count == 3
    assert report.split("phase1").modalities["audio"].unsafe_paths == 3


# ---------------------------------------------------------------------------------------------- triplets


@pytest.mark.parametrize("schema", ["released", "seed"])
@pytest.mark.parametrize("problem", ["modality", "same", "annotation"])
def test_bad_triplet_rows_are_refused_with_their_row(tmp_path, schema, problem):
    tree = small_tree(tmp_path, schema=schema)
    path = os.path.join(tree.phase2_dir, "triplets.csv")
    paired, annotated = ("paired_modality", "annotated_modality") if schema == "released" else ("modality_1", "modality_2")
    if problem == "modality":
        set_cell(path, 6, paired, "smell")
    elif problem == "same":
        set_cell(path, 6, paired, cell(path, 6, annotated))
        if schema == "seed":
            set_cell(path, 6, "annotated_modality", cell(path, 6, annotated))
    else:
        set_cell(path, 6, "annotation", "7")
    message = data_error(tree, "phase2_triplets")
    assert path in message and "line 6" in message
    finding = one(validate_tree(tree.metadata_dir).find("bad_value", rel(path, tree), severity="error"))
    assert finding.lines == [6]


def test_bad_annotation_mapping(tmp_path):
    tree = small_tree(tmp_path)
    path = os.path.join(tree.phase2_dir, "annotation_mapping.csv")
    with open(path, "w") as f:
        f.write("annotation,label\n1,Good Match\n1,Bad Match\n")
    with pytest.raises(Exception) as raised:  # the label names are read when the features are built
        prepare(tree, "phase2_triplets")
    assert path in str(behind(raised.value))
    assert one(validate_tree(tree.metadata_dir).find("bad_mapping", rel(path, tree))).severity == "error"


# ---------------------------------------------------------------------------------------------- EShot


@pytest.mark.parametrize("text, code", [
    (b'{"bell": [0, 1], "bird": [2, 3]', "bad_json"),  # truncated
    (b'["bell", "bird"]', "bad_json"),  # not an object
    (b'{"bell": [0, "one"], "bird": [2]}', "bad_json"),  # not an id
    (b'{"bell": [0, 1], "bird": [1, 2]}', "duplicate_id"),  # two categories
    (b'{"bell": [0, 999999]}', "dangling_id"),  # no info row
    (b'\xff\xfe{}', "bad_json"),  # not UTF-8
])
def test_malformed_category_json(tmp_path, text, code):
    eshot = pytest.importorskip("eshot")
    tree = small_tree(tmp_path)
    path = os.path.join(tree.eshot_dir, "category_to_audio_ids.json")
    with open(path, "wb") as f:
        f.write(text)
    with pytest.raises(Exception) as raised:  # the categories are read when the features are built
        eshot.EShot(config_name="eshot_audio", data_dir=tree.metadata_dir, root_data_path=tree.root,
                    cache_dir=str(tmp_path / "cache"), decode=False).download_and_prepare()
    assert path in str(behind(raised.value))
    finding = one(validate_tree(tree.metadata_dir).find(code, rel(path, tree), severity="error"))
    if text.startswith(b'{"bell": [0, 1], "bird": [2, 3]'):
        assert finding.lines == [1]


# ---------------------------------------------------------------------------------------------- media


@pytest.fixture
def media_tree(tmp_path):
    return small_tree(tmp_path, media=True, name="media")


def _row_with(ds, modality, suffix):
    for i, path in enumerate(media_paths(ds, modality)):
        if path and path.endswith(suffix):
            return i, path
    raise AssertionError(f"no {suffix} {modality} in the dataset")


def test_pickled_npy_that_runs_code_is_refused_through_the_dataset(media_tree, tmp_path):
    ds, _ = prepare(media_tree, decode=True)
    plain = ds.with_format(None).cast_column("points", ds.features["points"].__class__(decode=False))
    i, path = _row_with(plain, "points", ".npy")
    marker = tmp_path / "marker"
    hostile_media.write_malicious_npy(path, marker)
    with pytest.raises(UnsafePickleError) as raised:
        ds[i]["points"]
    assert path in str(raised.value) and not marker.exists()
    with pytest.raises(UnsafePickleError):
        read_point_cloud(path)
    assert not marker.exists()


@pytest.mark.parametrize("modality, suffix", [("image", ".jpg"), ("image", ".png"), ("audio", ".wav"), ("audio", ".flac"),
                                              ("audio", ".mp4"), ("video", ".mp4"), ("points", ".npy"), ("points", ".ply")])
def test_truncated_media_give_a_clear_error_naming_the_file(media_tree, modality, suffix):
    ds, _ = prepare(media_tree, decode=True, modalities=[modality])
    plain = ds.cast_column(modality, ds.features[modality].__class__(decode=False))
    i, path = _row_with(plain, modality, suffix)
    hostile_media.write_corrupt(path, seed=1, kind=modality, keep=0.3)
    with pytest.raises(MediaDecodeError) as raised:
        value = ds[i][modality]
        if modality == "video":
            value[len(value) - 1]  # the lazy reader decodes on access
    assert path in str(raised.value)


def test_npy_with_a_lying_header_is_refused_without_allocating(tmp_path):
    from numpy.lib import format as npformat

    path = tmp_path / "huge.npy"
    buffer = io.BytesIO()
    npformat.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 3)})
    path.write_bytes(buffer.getvalue() + b"\0" * 64)
    with pytest.raises(MediaDecodeError, match="truncated") as raised:
        read_point_cloud(str(path))
    assert str(path) in str(raised.value)


def _npy_holding_pickle(payload: bytes) -> bytes:
    from numpy.lib import format as npformat

    buffer = io.BytesIO()
    npformat.write_array_header_1_0(buffer, {"descr": "|O", "fortran_order": False, "shape": ()})
    return buffer.getvalue() + payload


# Allowed globals called with a size: tiny files that ask for 64 MiB (512 MiB for float64 ndarray).
PICKLE_BOMBS = {
    "bytearray": b"\x80\x02cbuiltins\nbytearray\nJ\x00\x00\x00\x04\x85R.",
    "reconstruct": b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x00\x04\x85C\x01b\x87R.",
    "ndarray": b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x00\x04\x85\x85R.",
}


@pytest.mark.parametrize("kind", sorted(PICKLE_BOMBS))
def test_pickle_cannot_allocate_far_more_than_the_file_holds(tmp_path, kind):
    import tracemalloc

    path = tmp_path / "bomb.npy"
    path.write_bytes(_npy_holding_pickle(PICKLE_BOMBS[kind]))
    tracemalloc.start()
    try:
        with pytest.raises(MediaDecodeError) as raised:
            read_point_cloud(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(raised.value)
    assert peak < 32 << 20, f"decoding a {path.stat().st_size}-byte file allocated {peak >> 20} MiB"


class _ObjectArrayWithShortList:
    """Pickles as numpy does an object array, _reconstruct(ndarray, (0,), b"b") then BUILD, with a state whose
    list holds 1 item for a shape of 10**6."""

    def __reduce__(self):
        return (np.ndarray.__reduce__(np.empty(0, object))[0], (np.ndarray, (0,), b"b"),
                (1, (10**6,), np.dtype(object), False, [1]))


def test_object_array_pickled_with_too_few_items_is_refused(tmp_path):
    """numpy's ndarray.__setstate__ allocates the shape, then reads past the end of a short list: a crash.

    The decode runs in a child process, so that a regression fails this test instead of killing the run.
    """
    import pickle
    import subprocess
    import sys

    path = tmp_path / "short.npy"
    path.write_bytes(_npy_holding_pickle(pickle.dumps(_ObjectArrayWithShortList(), protocol=2)))
    child = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom emm1_lib.media.files import MediaDecodeError\n"
         "from emm1_lib.media.pointcloud import read_point_cloud\ntry:\n    read_point_cloud(sys.argv[1])\n"
         "except MediaDecodeError as err:\n    print(err)\n", str(path)],
        capture_output=True, text=True, timeout=120,
    )
    assert child.returncode == 0, f"the decoder crashed (exit {child.returncode}): {child.stderr[-2000:]}"
    assert str(path) in child.stdout and "1 items" in child.stdout


def test_missing_media_file_is_named(media_tree):
    ds, _ = prepare(media_tree, decode=True, modalities=["image"])
    plain = ds.cast_column("image", ds.features["image"].__class__(decode=False))
    i, path = _row_with(plain, "image", ".jpg")
    os.remove(path)
    with pytest.raises(FileNotFoundError) as raised:
        ds[i]["image"]
    assert isinstance(raised.value, MediaError) and path in str(raised.value)
    report = validate_tree(media_tree.metadata_dir, media_tree.root, check_media=True)
    finding = one(report.find("missing_media", rel(infos(media_tree, "image"), media_tree)))
    assert path in finding.values and finding.severity == "error"
    relaxed = validate_tree(media_tree.metadata_dir, media_tree.root, check_media=True, on_missing_media="null")
    assert relaxed.ok and relaxed.find("missing_media", severity="warning")


def _escape_by_symlink(media_tree, tmp_path, modality, suffix, whole_folder=False):
    ds, _ = prepare(media_tree, decode=True, modalities=[modality])
    plain = ds.cast_column(modality, ds.features[modality].__class__(decode=False))
    i, path = _row_with(plain, modality, suffix)
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    if whole_folder:
        folder = os.path.dirname(path)
        target = outside / "folder"
        os.rename(folder, target)
        os.symlink(target, folder)
    else:
        target = outside / os.path.basename(path)
        os.rename(path, target)
        os.symlink(target, path)
    return ds, i, path


@pytest.mark.parametrize("whole_folder", [False, True], ids=["file", "folder"])
def test_symlink_escaping_the_root_is_found_by_validate(media_tree, tmp_path, whole_folder):
    _, _, path = _escape_by_symlink(media_tree, tmp_path, "image", ".jpg", whole_folder)
    report = validate_tree(media_tree.metadata_dir, media_tree.root, check_media=True)
    finding = one(report.find("outside_root", rel(infos(media_tree, "image"), media_tree)))
    assert path in finding.values and finding.severity == "error"
    assert not report.ok
    assert validate_tree(media_tree.metadata_dir, media_tree.root, check_media=True, allow_outside_root=True).ok


@pytest.mark.parametrize("modality, suffix", [("image", ".jpg"), ("points", ".npy")])
def test_symlink_escaping_the_root_is_refused_by_decoding(media_tree, tmp_path, modality, suffix):
    ds, i, path = _escape_by_symlink(media_tree, tmp_path, modality, suffix)
    with pytest.raises(MediaError) as raised:
        ds[i][modality]
    assert path in str(raised.value) and "outside" in str(raised.value)


@pytest.mark.parametrize("whole_folder", [False, True], ids=["file", "folder"])
@pytest.mark.parametrize("modality, suffix", [("image", ".jpg"), ("audio", ".wav"), ("video", ".mp4"), ("points", ".npy")])
def test_features_with_media_root_refuse_symlinks_out_of_it(media_tree, tmp_path, modality, suffix, whole_folder):
    from datasets.table import embed_table_storage

    ds, i, path = _escape_by_symlink(media_tree, tmp_path, modality, suffix, whole_folder)
    ds = ds.cast_column(modality, media_feature(modality, media_root=media_tree.root))
    with pytest.raises(MediaOutsideRootError) as raised:
        ds[i][modality]
    assert isinstance(raised.value, PermissionError) and path in str(raised.value) and "outside" in str(raised.value)
    with pytest.raises(MediaOutsideRootError):  # embedding (push_to_hub, to_parquet) would upload the file
        embed_table_storage(ds.select([i]).data.table)
    unchecked = ds.cast_column(modality, media_feature(modality))
    assert unchecked[i][modality] is not None


def test_symlinks_within_the_media_root_decode(media_tree, tmp_path):
    ds, _ = prepare(media_tree, decode=True, modalities=["points"])
    i, path = _row_with(ds.cast_column("points", ds.features["points"].__class__(decode=False)), "points", ".npy")
    os.rename(path, path + ".real")
    os.symlink(path + ".real", path)  # a link that stays inside the root
    linked_root = tmp_path / "linked-root"
    os.symlink(media_tree.root, linked_root)  # and the root itself given through a link
    for root in (media_tree.root, str(linked_root)):
        value = ds.cast_column("points", media_feature("points", media_root=root))[i]["points"]
        assert value["xyz"].shape[1] == 3


# ---------------------------------------------------------------------------------------------- verdicts agree


@pytest.mark.parametrize("mutation", ["clean", "dangling", "negative_infos_id", "unsafe", "ragged", "duplicate"])
def test_validate_fails_exactly_when_the_builder_refuses(tmp_path, mutation):
    tree = small_tree(tmp_path)
    path = infos(tree, "image")
    if mutation == "dangling":
        set_cell(groups(tree), 3, "encord_image_id", "777777")
    elif mutation == "negative_infos_id":
        set_cell(path, 3, "encord_image_id", "-1")
    elif mutation == "unsafe":
        set_cell(path, 3, "save_folder", "/tmp")
    elif mutation == "ragged":
        lines = read_lines(path)
        lines[2] += b",x"
        write_lines(path, lines)
    elif mutation == "duplicate":
        set_cell(path, 3, "encord_image_id", cell(path, 2, "encord_image_id"))
    try:
        prepare(tree)
        builder_ok = True
    except (EMM1DataError, datasets.exceptions.DatasetGenerationError) as error:
        behind(error)
        builder_ok = False
    assert validate_tree(tree.metadata_dir).ok == builder_ok
