"""The infos tables' Arrow cache (`<cache_dir>/emm1-infos/`, `emm1_lib.io.table_cache`): parsed once, reused by
other configs and processes, never used for a changed CSV, never half-written."""
import glob
import os
import warnings

import pyarrow as pa
import pytest

import emm1
from emm1_lib.io import column_store
from emm1_lib.io import table_cache
from emm1_lib.io import tables
from emm1_lib.schema import infos
from emm1_lib.testing.sample import generate_sample_tree


@pytest.fixture()
def tree(tmp_path):
    return generate_sample_tree(str(tmp_path / "tree"), media=False, num_neighbours=3, num_captions=60, num_media=20)


@pytest.fixture()
def parses(monkeypatch):
    """The CSV files parsed whole (media infos) or streamed (text) in this process."""
    seen = []
    whole, streamed = tables.read_csv_table, tables.iter_csv_batches
    monkeypatch.setattr(infos, "read_csv_table", lambda path, *a, **k: seen.append(os.path.basename(path)) or whole(path, *a, **k))
    monkeypatch.setattr(infos, "iter_csv_batches", lambda path, *a, **k: seen.append(os.path.basename(path)) or streamed(path, *a, **k))
    return seen


def prepare(tree, config, cache, num_proc=None, **kwargs):
    builder = emm1.EMM1(config_name=config, data_dir=tree.metadata_dir, root_data_path=tree.root, decode=False,
                        cache_dir=str(cache), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        builder.download_and_prepare(num_proc=num_proc)
    return builder.as_dataset(split="train").data.table


def entries(cache):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(str(cache), "emm1-infos", "*.arrow")))


def test_the_second_config_maps_the_tables_the_first_parsed(tree, tmp_path, parses):
    first = prepare(tree, "phase1_nn1", tmp_path / "cache")
    assert sorted(parses) == ["audio.csv", "image.csv", "points.csv", "text.csv", "video.csv"]
    assert len(entries(tmp_path / "cache")) == 5
    parses.clear()
    second = prepare(tree, "phase1_nn2", tmp_path / "cache")
    assert parses == []  # nothing parsed: every table came from the cache
    uncached = prepare(tree, "phase1_nn2", tmp_path / "no-cache", infos_cache=False)
    assert parses and not os.path.exists(tmp_path / "no-cache" / "emm1-infos")
    assert second.equals(uncached) and not first.equals(second)


def test_a_changed_csv_is_parsed_again(tree, tmp_path, parses):
    prepare(tree, "phase1_nn1", tmp_path / "cache")
    text_csv = os.path.join(tree.phase1_dir, "infos", "text.csv")
    with open(text_csv) as f:
        lines = f.read().splitlines()
    first_id = lines[1].split(",", 1)[0]
    lines[1] = f'{first_id},"an edited caption"'  # the first data row; nn_1 lists every caption
    with open(text_csv, "w") as f:
        f.write("\n".join(lines) + "\n")
    parses.clear()
    table = prepare(tree, "phase1_nn3", tmp_path / "cache")
    assert parses == ["text.csv"]  # only the edited file
    assert "an edited caption" in table["caption"].to_pylist()
    assert len(entries(tmp_path / "cache")) == 5  # the entry was replaced, not joined by a second one


def test_a_broken_entry_is_ignored_and_replaced(tree, tmp_path, parses):
    cache = tmp_path / "cache"
    prepare(tree, "phase1_nn1", cache)
    for entry in glob.glob(os.path.join(str(cache), "emm1-infos", "*.arrow")):
        with open(entry, "r+b") as f:  # entries are renamed into place whole, but a disk can still fail
            f.truncate(os.path.getsize(entry) // 2)
    parses.clear()
    again = prepare(tree, "phase1_nn2", cache)
    assert sorted(parses) == ["audio.csv", "image.csv", "points.csv", "text.csv", "video.csv"]
    assert again.equals(prepare(tree, "phase1_nn2", tmp_path / "no-cache", infos_cache=False))
    assert len(entries(cache)) == 5 and not glob.glob(os.path.join(str(cache), "emm1-infos", ".writing-*"))
    parses.clear()
    prepare(tree, "phase1_nn3", cache)
    assert parses == []  # the replaced entries are whole again


def test_num_proc_workers_share_one_parse(tree, tmp_path):
    cache = tmp_path / "cache"
    single = prepare(tree, "phase1_nn1", tmp_path / "single", infos_cache=False)
    double = prepare(tree, "phase1_nn1", cache, num_proc=2, shard_bytes=512)
    assert sorted(double.to_pylist(), key=str) == sorted(single.to_pylist(), key=str)
    assert len(entries(cache)) == 5  # one entry per table, whichever worker wrote it


def test_an_entry_written_while_the_csv_changes_is_not_published(tmp_path):
    source = tmp_path / "t.csv"
    source.write_text("a\n1\n")
    stamp = table_cache.source_stamp(str(source))
    schema = pa.schema([("a", pa.int64())])

    def batches():
        yield pa.record_batch([pa.array([1])], schema=schema)
        source.write_text("a\n1\n2\n")  # the file changes during the read

    assert table_cache.write_entry(str(tmp_path / "c"), str(source), "x", schema, batches(), stamp) is None
    assert os.listdir(tmp_path / "c") == []
    assert table_cache.open_entry(str(tmp_path / "c"), str(source), "x") is None


def test_a_reader_of_an_entry_never_sees_another_versions_rows(tree, tmp_path):
    """A TextInfo still mapping the entry of the CSV as it was, after another reader cached the edited CSV: its
    captions are never the new file's rows at the old ids' positions (it fails loudly instead)."""
    text_csv = os.path.join(tree.phase1_dir, "infos", "text.csv")
    folder = str(tmp_path / "cache" / "emm1-infos")
    infos.TextInfo.read(text_csv, cache_folder=folder)  # parses and writes the entry
    old = infos.TextInfo.read(text_csv, cache_folder=folder)  # maps it, as a later config does
    before = old.caption_at(pa.array([0, 1], pa.int64())).to_pylist()
    with open(text_csv) as f:
        header, *rows = f.read().splitlines()
    with open(text_csv, "w") as f:  # the same ids, the rows in reverse order, one caption edited
        first_id = rows[0].split(",", 1)[0]
        f.write("\n".join([header] + rows[::-1] + [f'{int(first_id) + 10**9},"a new caption"']) + "\n")
    new = infos.TextInfo.read(text_csv, cache_folder=folder)
    assert new.caption_at(pa.array([0], pa.int64())).to_pylist() != before[:1]
    try:
        again = old.caption_at(pa.array([0, 1], pa.int64())).to_pylist()
    except (OSError, pa.ArrowException):
        return  # the old version's entry is gone: a loud failure
    assert again == before


def test_the_first_read_of_the_captions_does_not_read_its_entry_back(tree, tmp_path, monkeypatch):
    """The parse that writes the captions' entry keeps the ids it streamed past: reading the entry back (all of it,
    for the ids) would cost the first preparation a second pass over the largest infos table."""
    text_csv = os.path.join(tree.phase1_dir, "infos", "text.csv")
    folder = str(tmp_path / "cache" / "emm1-infos")
    expected = infos.TextInfo.read(text_csv)  # no cache: the reference

    def no_read_back(*args, **kwargs):
        raise AssertionError("the entry was read back")

    monkeypatch.setattr(table_cache, "column_of_batches", no_read_back)
    first = infos.TextInfo.read(text_csv, cache_folder=folder)
    assert entries(tmp_path / "cache") and len(entries(tmp_path / "cache")) == 1
    positions = pa.array(list(range(expected.lookup.num_rows)) + [None], pa.int32())
    assert first.caption_at(positions).equals(expected.caption_at(positions))
    ids = pa.array([3, 1, 2, 10**6], pa.int64())
    assert first.lookup.positions(ids).equals(expected.lookup.positions(ids))
    monkeypatch.undo()
    later = infos.TextInfo.read(text_csv, cache_folder=folder)  # a later read maps the entry, ids included
    assert later.caption_at(positions).equals(expected.caption_at(positions))
    assert later.lookup.positions(ids).equals(expected.lookup.positions(ids))


def test_media_entries_are_compressed_and_the_captions_are_not(tree, tmp_path):
    """A media table's entry is LZ4-compressed (when pyarrow has LZ4); the captions' entry and the captions' scratch
    file are written plain (compressing 1.25 GB of captions costs a first preparation seconds); all read back to
    the values an uncached read gives."""
    if not pa.Codec.is_available("lz4"):
        pytest.skip("pyarrow built without LZ4")
    prepare(tree, "phase1_nn1", tmp_path / "cache")
    codecs = {}
    for entry in glob.glob(os.path.join(str(tmp_path / "cache"), "emm1-infos", "*.arrow")):
        with pa.memory_map(entry) as mapped:
            codecs[os.path.basename(entry).split("-")[0]] = pa.ipc.open_file(mapped).schema.metadata[b"emm1.codec"]
    assert codecs == {"text": b"", "image": b"lz4", "audio": b"lz4", "video": b"lz4", "points": b"lz4"}
    source = tmp_path / "text.csv"
    rows = [f'{i},"a red car playing loudly in the rain, number {i % 7}"' for i in range(1, 20001)]
    source.write_text("encord_text_id,caption\n" + "\n".join(rows) + "\n")
    spilled = infos.TextInfo.read(str(source), spill_folder=str(tmp_path / "spill"))
    plain = infos.TextInfo.read(str(source))
    assert os.path.getsize(spilled.captions.path) > plain.captions.values.nbytes
    positions = pa.array([0, 19999, None, 7], pa.int32())
    assert spilled.caption_at(positions).equals(plain.caption_at(positions))


def test_the_ids_read_from_the_captions_entry_hold_no_captions(tree, tmp_path):
    """Arrow reads a record batch's whole body: the ids a later config takes from the captions' entry are copied
    out, or each id chunk would keep its batch's captions (the split's 1.25 GB) in memory for the preparation."""
    text_csv = os.path.join(tree.phase1_dir, "infos", "text.csv")
    folder = str(tmp_path / "cache" / "emm1-infos")
    infos.TextInfo.read(text_csv, cache_folder=folder)
    (entry,) = glob.glob(os.path.join(folder, "text-*.arrow"))
    ids = table_cache.column_of_batches(entry, 1, lambda ids: ids)
    # A view of the batch body is a buffer with a parent; a copy owns its memory.
    assert ids and all(b.parent is None for chunk in ids for b in chunk.buffers() if b is not None)


def test_mapping_the_captions_entry_reads_only_the_ids(tree, tmp_path, monkeypatch):
    """A later config's read of the captions' entry takes the ids (and the batches' lengths) from the ids column
    alone: whole batches would bring every caption of the split into memory up front, ~1.25 GB."""
    text_csv = os.path.join(tree.phase1_dir, "infos", "text.csv")
    folder = str(tmp_path / "cache" / "emm1-infos")
    expected = infos.TextInfo.read(text_csv, cache_folder=folder)  # parses and writes the entry
    widths = []
    open_file = pa.ipc.open_file

    class Reader:
        def __init__(self, reader):
            self._reader = reader
            self.num_record_batches = reader.num_record_batches
            self.schema = reader.schema

        def get_batch(self, i):
            batch = self._reader.get_batch(i)
            widths.append(batch.num_columns)
            return batch

    monkeypatch.setattr(pa.ipc, "open_file", lambda *a, **k: Reader(open_file(*a, **k)))
    later = infos.TextInfo.read(text_csv, cache_folder=folder)
    assert widths and set(widths) == {1}
    monkeypatch.undo()
    positions = pa.array(list(range(expected.lookup.num_rows)), pa.int32())
    assert later.caption_at(positions).equals(expected.caption_at(positions))


def test_an_environment_without_the_entries_codec_parses_the_csv(tree, tmp_path, parses, monkeypatch):
    """A cache shared with a pyarrow built without LZ4: its LZ4 entries (the media tables') are not used there; that
    side parses those CSVs, gets the rows an uncached parse gives, and writes uncompressed entries. The captions'
    entry, uncompressed, serves both."""
    if not pa.Codec.is_available("lz4"):
        pytest.skip("pyarrow built without LZ4")
    prepare(tree, "phase1_nn1", tmp_path / "cache")  # LZ4 media entries
    parses.clear()
    available = column_store.codec_available
    monkeypatch.setattr(column_store, "codec_available", lambda codec: codec != "lz4" and available(codec))
    without_lz4 = prepare(tree, "phase1_nn2", tmp_path / "cache")
    assert sorted(parses) == ["audio.csv", "image.csv", "points.csv", "video.csv"]
    assert without_lz4.equals(prepare(tree, "phase1_nn2", tmp_path / "plain", infos_cache=False))
    written = glob.glob(os.path.join(str(tmp_path / "cache"), "emm1-infos", "*.arrow"))
    assert len(written) == 5
    for entry in written:
        with pa.memory_map(entry) as mapped:
            assert pa.ipc.open_file(mapped).schema.metadata[b"emm1.codec"] == b""