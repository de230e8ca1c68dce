"""The shared CSV readers (`emm1_lib.io.tables`): quoted line breaks, quote checks and error lines."""
import csv
import os
import random
import tempfile
import warnings

import fsspec
import pyarrow as pa
import pytest

import emm1
from emm1_lib.io import tables
from emm1_lib.errors import EMM1DataError
from emm1_lib.testing.sample import generate_sample_tree
from emm1_lib.io.tables import byte_ranges
from emm1_lib.io.tables import has_data_rows
from emm1_lib.io.tables import iter_csv_batches
from emm1_lib.io.tables import read_csv_range
from emm1_lib.io.tables import read_csv_table
from emm1_lib.io.tables import read_header
from emm1_lib.tools.validate import validate_tree

TEXT_TYPES = {"encord_text_id": pa.int64(), "caption": pa.string()}
TEXT_COLUMNS = ["encord_text_id", "caption"]
MULTILINE = {1: "first line\nsecond line", 2: "windows\r\nline end", 3: 'a "quote", then\r\n\r\ntwo breaks', 4: "plain"}


def write_text_csv(path, captions, line_end="\n"):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator=line_end).writerows([TEXT_COLUMNS] + [[i, c] for i, c in captions.items()])
    return str(path)


def read_text(path, reader="table"):
    """`{id: caption}` through the whole-table reader or the streaming one (`iter_csv_batches`)."""
    if reader == "table":
        table = read_csv_table(path, TEXT_TYPES, TEXT_COLUMNS)
    else:
        table = pa.Table.from_batches(list(iter_csv_batches(path, TEXT_TYPES, TEXT_COLUMNS)))
    return dict(zip(table["encord_text_id"].to_pylist(), table["caption"].to_pylist()))


READERS = pytest.mark.parametrize("reader", ["table", "stream"])


def error_of(call, *args) -> str:
    with pytest.raises(EMM1DataError) as raised:
        call(*args)
    return str(raised.value)


def small_tree(tmp_path):
    return generate_sample_tree(str(tmp_path / "tree"), media=False, num_neighbours=1, num_captions=12, num_media=6,
                                num_triplets=24)


def prepare(tree, config="phase1_nn1", **kwargs):
    builder = emm1.EMM1(config_name=config, data_dir=tree.metadata_dir, root_data_path=tree.root, decode=False,
                        cache_dir=os.path.join(tree.root, ".hf-cache"), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        builder.download_and_prepare()
    return builder.as_dataset(split="train")


def cause(error: BaseException) -> BaseException:
    while error is not None and not isinstance(error, EMM1DataError):
        error = error.__cause__ or error.__context__
    return error


# ---------------------------------------------------------------------------------------------- quoted line breaks


@READERS
@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_quoted_line_breaks_survive_byte_exact(tmp_path, line_end, reader):
    path = write_text_csv(tmp_path / "text.csv", MULTILINE, line_end)
    assert read_text(path, reader) == MULTILINE


@READERS
@pytest.mark.parametrize("where", ["local", "remote"])
def test_quoted_line_breaks_across_block_boundaries(tmp_path, monkeypatch, where, reader):
    # Tiny blocks put boundaries everywhere. Without newlines_in_values a quoted line break can end a block;
    # with it, pyarrow still drops the "\n" of a quoted "\r\n" that a boundary cuts (apache/arrow#51368).
    rng = random.Random(0)
    captions = {i: "".join(rng.choice(["ab", " ", ",", '"', "\n", "\r\n"]) for _ in range(rng.randint(0, 12)))
                for i in range(300)}
    path = write_text_csv(tmp_path / "text.csv", captions, "\r\n")
    if where == "remote":
        fsspec.filesystem("memory").pipe("/emm1-blocks/text.csv", open(path, "rb").read())
        path = "memory://emm1-blocks/text.csv"
    try:
        for block_size in (97, 256, 1000):
            monkeypatch.setattr(tables, "_READ_BLOCK_BYTES", block_size)
            monkeypatch.setattr(tables, "_STREAM_BLOCK_BYTES", block_size)
            assert read_text(path, reader) == captions
    finally:
        if where == "remote":
            fsspec.filesystem("memory").rm("/emm1-blocks", recursive=True)


def test_the_builder_keeps_multiline_captions(tmp_path):
    tree = small_tree(tmp_path)
    path = os.path.join(tree.phase1_dir, "infos", "text.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    wanted = {int(rows[1][0]): "one\ntwo", int(rows[2][0]): "three\r\nfour"}
    rows[1][1], rows[2][1] = wanted[int(rows[1][0])], wanted[int(rows[2][0])]
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    ds = prepare(tree)
    got = dict(zip(ds["encord_text_id"], ds["caption"]))
    assert all(got[i] == caption for i, caption in wanted.items() if i in got)
    assert set(wanted) & set(got)


# ---------------------------------------------------------------------------------------------- quotes


@pytest.mark.parametrize("bad_row, line", [
    (b'5,"never closed', 4),  # an opening quote: the lines after it would merge into this caption
    (b'5,"closed" then text "opened', 4),  # text after a closing quote
    (b'5,a 12" vinyl record', 4),  # a stray quote in an unquoted value
])
@READERS
def test_odd_quotes_are_refused_naming_the_line(tmp_path, bad_row, line, reader):
    path = tmp_path / "text.csv"
    path.write_bytes(b'encord_text_id,caption\n1,"a, b"\n2,plain\n' + bad_row + b'\n6,"x ""y"""\n7,z\n')
    message = error_of(read_text, str(path), reader)
    assert str(path) in message and f"line {line}:" in message and "quote" in message


@READERS
def test_quote_error_line_counts_quoted_line_breaks(tmp_path, reader):
    path = tmp_path / "text.csv"
    path.write_bytes(b'encord_text_id,caption\n1,"two\nlines"\n2,"three\r\nmore\nlines"\n3,"open\n4,x\n')
    assert "line 7:" in error_of(read_text, str(path), reader)


@READERS
def test_balanced_quotes_pass(tmp_path, reader):
    path = tmp_path / "text.csv"
    path.write_bytes(b'encord_text_id,caption\n1,"say ""hi"", then go"\n2,""\n3,x\n')
    assert read_text(str(path), reader) == {1: 'say "hi", then go', 2: "", 3: "x"}


def test_quote_count_matches_bytes_count():
    rng = random.Random(1)
    for size in (0, 1, tables._COUNT_BLOCK_BYTES - 1, tables._COUNT_BLOCK_BYTES, 3 * tables._COUNT_BLOCK_BYTES + 5):
        data = bytes(rng.choice(b'ab"\n') for _ in range(size))
        assert tables._count_byte_in(data, ord('"')) == data.count(b'"')


def test_remote_files_are_counted_in_the_same_download(tmp_path):
    fs = fsspec.filesystem("memory")
    good = 'encord_text_id,caption\n1,"a\r\nb"\n2,"c ""d"""\n'
    fs.pipe("/emm1-test/good.csv", good.encode())
    fs.pipe("/emm1-test/bad.csv", (good + '3,"open\n4,x\n').encode())
    try:
        assert read_text("memory://emm1-test/good.csv") == {1: "a\r\nb", 2: 'c "d"'}
        message = error_of(read_text, "memory://emm1-test/bad.csv")
        assert "memory://emm1-test/bad.csv, line 5:" in message and "quote" in message
    finally:
        fs.rm("/emm1-test", recursive=True)


# ---------------------------------------------------------------------------------------------- error lines


def test_parse_error_line_after_multiline_captions(tmp_path):
    path = tmp_path / "text.csv"
    path.write_bytes(b'encord_text_id,caption\n1,"a\nb"\n\n2,"c\r\nd"\nx7,e\n')
    message = error_of(read_text, str(path))
    assert "line 7:" in message and "x7" in message and "Row #" not in message


@pytest.mark.parametrize("bad, expected", [(b"12x", "12x"), (b"1,2,3", "Expected 3 columns, got 4")])
def test_parse_error_in_a_later_byte_range_names_the_line(tmp_path, bad, expected):
    path = tmp_path / "groups.csv"
    lines = [b"encord_text_id,encord_image_id,nn_index"] + [b"%d,%d,1" % (i, i) for i in range(1, 400)]
    lines[300] = b"300," + bad + (b"" if b"," in bad else b",1")
    path.write_bytes(b"\n".join(lines) + b"\n")
    header = read_header(str(path))
    types = {c: pa.int64() for c in header}
    messages = []
    for start, end in byte_ranges(str(path), 1000):
        try:
            read_csv_range(str(path), start, end, header, types)
        except EMM1DataError as err:
            messages.append(str(err))
    [message] = messages
    assert f"{path}, line 301:" in message and expected in message


def test_repeated_column_in_a_grouping_file(tmp_path):
    tree = small_tree(tmp_path)
    path = os.path.join(tree.phase1_dir, "nn_1", "data_groups.csv")
    with open(path, "rb") as f:
        data = f.read().split(b"\n", 1)
    with open(path, "wb") as f:
        f.write(data[0] + b",encord_image_id\n" + data[1].replace(b"\n", b",1\n"))
    with pytest.raises(EMM1DataError, match="encord_image_id.*more than once"):
        prepare(tree)


# ---------------------------------------------------------------------------------------------- nn_index


@pytest.mark.parametrize("value", ["0", "17", "-3", "", "300"])
def test_nn_index_outside_1_to_16_names_the_line(tmp_path, value):
    tree = small_tree(tmp_path)
    path = os.path.join(tree.phase1_dir, "nn_1", "data_groups.csv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows[10][rows[0].index("nn_index")] = value
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    with pytest.raises(Exception) as raised:
        prepare(tree, shard_bytes=100)  # the bad row is in a later byte range
    message = str(cause(raised.value))
    assert f"{path}, line 11 (in bytes" in message and f"nn_index {value or None} " in message


# ---------------------------------------------------------------------------------------------- empty files


@pytest.mark.parametrize("data, expected", [
    (b"a,b\n", False), (b"a,b", False), (b"a,b\r\n\r\n\n", False), (b"\xef\xbb\xbfa,b\n", False),
    (b"a,b\n1,2\n", True), (b"a,b\n\n\n1,2", True), (b"a,b\n" + b"\n" * 100_000 + b"1,2\n", True),
])
def test_has_data_rows(tmp_path, data, expected):
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    assert has_data_rows(str(path)) is expected


# ---------------------------------------------------------------------------------------------- long records


@READERS
def test_a_record_longer_than_the_block_is_read_by_growing_the_block(tmp_path, monkeypatch, reader):
    """pyarrow refuses a record longer than its block ("straddling object"): the readers grow the block."""
    monkeypatch.setattr(tables, "_READ_BLOCK_BYTES", 1 << 16)
    monkeypatch.setattr(tables, "_STREAM_BLOCK_BYTES", 1 << 16)
    captions = {i: f"caption {i}" for i in range(1, 4000)}
    captions[3000] = "long, " + "x" * (1 << 20)  # after several blocks of the streaming reader
    path = write_text_csv(tmp_path / "text.csv", captions)
    assert read_text(path, reader) == captions


@READERS
def test_a_record_longer_than_the_largest_block_is_refused_naming_its_line(tmp_path, monkeypatch, reader):
    monkeypatch.setattr(tables, "_READ_BLOCK_BYTES", 1 << 16)
    monkeypatch.setattr(tables, "_STREAM_BLOCK_BYTES", 1 << 16)
    monkeypatch.setattr(tables, "MAX_BLOCK_BYTES", 1 << 18)
    captions = {i: f"caption {i}" for i in range(1, 50)}
    captions[20] = "multi\nline"
    captions[40] = "x" * (1 << 20)
    path = write_text_csv(tmp_path / "text.csv", captions)
    with pytest.raises(EMM1DataError) as raised:
        read_text(path, reader)
    assert raised.value.file == path and raised.value.line == 42 and raised.value.code == "record_too_large"
    assert f"{path}, line 42: a record of 1,048,579 characters" in str(raised.value)


def test_the_builder_reads_an_8_mib_caption(tmp_path):
    """The captions are streamed in 4 MiB blocks: a longer caption must still be read, not fail without a line."""
    tree = small_tree(tmp_path)
    path = os.path.join(tree.phase1_dir, "infos", "text.csv")
    with open(path) as f:
        rows = list(csv.reader(f))
    rows[5][1] = "y" * (8 << 20)
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    ds = prepare(tree)
    assert (8 << 20) in [len(c) for c in ds["caption"] if c]


def test_a_long_field_is_not_taken_for_broken_quoting(tmp_path):
    """Python's csv module refuses fields over 128 KiB by default; the line finders must not report them."""
    captions = {1: "a" * (1 << 18), 2: 'stray " quote'}
    path = write_text_csv(tmp_path / "text.csv", captions)
    with open(path, "ab") as f:
        f.write(b'3,"never closed\n')
    assert tables.first_bad_quote_line(path) == 4


# ---------------------------------------------------------------------------------------------- grouping files by range


def add_notes(path, note_of_line, quoting=csv.QUOTE_MINIMAL):
    """Give a grouping file an extra `notes` column; `note_of_line(line)` on file line `line` (2 = first data row)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    rows[0].append("notes")
    for line, row in enumerate(rows[1:], start=2):
        row.append(note_of_line(line))
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n", quoting=quoting).writerows(rows)


def phase1_rows(tree, route, **config):
    """The rows of `phase1_nn1` prepared (`route` "prepare" or "num_proc") or streamed, as tuples of ids."""
    builder = emm1.EMM1(config_name="phase1_nn1", data_dir=tree.metadata_dir, root_data_path=tree.root, decode=False,
                        cache_dir=tempfile.mkdtemp(dir=os.path.dirname(tree.metadata_dir)), **config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if route == "stream":
            rows = list(builder.as_streaming_dataset(split="train"))
        else:
            builder.download_and_prepare(num_proc=2 if route == "num_proc" else None)
            rows = builder.as_dataset(split="train").to_list()
    return [(r["encord_text_id"], r["encord_image_id"], r["encord_audio_id"]) for r in rows]


def test_a_quoted_line_break_in_a_grouping_file_is_refused_on_every_route(tmp_path):
    """A note "first line\\n0,0,0,0,0,1,x" every 30 rows: 300 rows read whole, phantom rows read by 1 KiB ranges
    (each range starts at the line after its boundary, which may be inside the quotes). Refused, naming the line."""
    tree = generate_sample_tree(str(tmp_path / "tree"), media=False, num_neighbours=1, num_captions=300)
    path = os.path.join(tree.phase1_dir, "nn_1", "data_groups.csv")
    add_notes(path, lambda line: "first line\n0,0,0,0,0,1,x" if line % 30 == 7 else "x")
    for route, config in [("prepare", {}), ("prepare", {"shard_bytes": 1024}), ("num_proc", {"shard_bytes": 1024}),
                          ("stream", {"shard_bytes": 1024})]:
        with pytest.raises(Exception) as raised:
            phase1_rows(tree, route, **config)
        error = cause(raised.value)
        assert (error.code, error.file, error.line) == ("quoted_line_break", path, 7), (route, config)
        assert f"{path}, line 7: a double-quoted value starts here" in str(error)
    report = validate_tree(tree.metadata_dir, shard_bytes=1024)
    [finding] = report.find("quoted_line_break")
    assert finding.lines == [7] and finding.severity == "error"
    assert report.split("phase1").tables[path] == 300  # the validator reads it whole: every real row checked


@pytest.mark.parametrize("quoting", [csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC, csv.QUOTE_MINIMAL])
def test_quoted_grouping_values_on_one_line_are_read_by_range(tmp_path, quoting):
    """Quoted integers, and quoted notes holding commas and quotes (but no line break), are no phantom risk."""
    tree = generate_sample_tree(str(tmp_path / "tree"), media=False, num_neighbours=1, num_captions=60)
    expected = phase1_rows(tree, "prepare")
    add_notes(os.path.join(tree.phase1_dir, "nn_1", "data_groups.csv"), lambda line: 'a "b", 0,0,0,0,0,1,x', quoting)
    for route in ("prepare", "stream", "num_proc"):
        assert phase1_rows(tree, route, shard_bytes=100) == expected, route
    assert validate_tree(tree.metadata_dir, shard_bytes=100).ok


def test_the_quote_rule_counts_only_once_without_quotes_in_data_rows(tmp_path, monkeypatch):
    """A grouping file with a quoted header and plain rows (the released files) costs one byte count, no line scan."""
    path = tmp_path / "data_groups.csv"
    path.write_bytes(b'"encord_text_id","nn_index"\n' + b"".join(b"%d,1\n" % i for i in range(1000)))
    monkeypatch.setattr(tables, "_odd_quote_line", lambda blocks: pytest.fail("scanned line by line"))
    assert tables.quoted_line_break_violations(str(path)) == []
    assert len(byte_ranges(str(path), 100)) == -(-path.stat().st_size // 100)
