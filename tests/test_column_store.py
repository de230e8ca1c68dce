"""Where the captions live while tables are built (`emm1_lib.io.column_store`): memory-mapped file or memory."""
import csv
import gc
import glob
import os
import warnings

import numpy as np
import pyarrow as pa
import pytest

import emm1
from emm1_lib.io import tables
from emm1_lib.io.column_store import InMemoryColumn, MappedColumn, writable_folder
from emm1_lib.schema.infos import TextInfo
from emm1_lib.testing.sample import generate_sample_tree


def chunks_of(values, sizes):
    out, start = [], 0
    for size in sizes:
        out.append(pa.array(values[start:start + size], pa.string()))
        start += size
    return out


VALUES = [None if i % 17 == 0 else f"caption {i} " + "x" * (i % 7) for i in range(500)]
SIZES = [0, 120, 1, 200, 179]  # an empty chunk, a one-row chunk, uneven sizes
TAKE_SIZES = [0, 120, 1, 0, 200, 179]  # gathers also cross an empty chunk between two others


def positions_cases():
    rng = np.random.default_rng(0)
    return {
        "in order, one chunk": pa.array(np.arange(130, 300, dtype=np.int32)[:50]),
        "in order, across chunks": pa.array(np.arange(0, 500, dtype=np.int32)),
        "random with repeats": pa.array(rng.integers(0, 500, 2000, dtype=np.int32)),
        # Chunks in order, rows within a chunk not, with gaps and repeats (the pieces need no reordering).
        "chunks in order, rows shuffled within": pa.array(np.concatenate(
            [rng.permutation(np.r_[lo:hi:3, lo]) for lo, hi in ((0, 120), (120, 121), (121, 321), (321, 500))]
        ).astype(np.int32)),
        "in order but for one step back a chunk": pa.array([5, 130, 400, 125, 499], pa.int32()),
        "leading nulls, then in order across chunks": pa.array([None, None, 3, 120, 121, 499], pa.int32()),
        "null positions": pa.array([3, None, 499, None, 120], pa.int32()),
        "empty": pa.array([], pa.int32()),
    }


@pytest.mark.parametrize("case", sorted(positions_cases()))
def test_mapped_and_in_memory_columns_equal_a_plain_take(tmp_path, case):
    positions = positions_cases()[case]
    expected = pa.array(VALUES, pa.string()).take(positions)
    in_memory = InMemoryColumn(chunks_of(VALUES, TAKE_SIZES), pa.string())
    mapped = MappedColumn.write(iter(chunks_of(VALUES, TAKE_SIZES)), pa.string(), str(tmp_path))
    assert in_memory.take(positions).equals(expected)
    assert mapped.take(positions).equals(expected)


@pytest.mark.parametrize("case", ["in order, across chunks", "chunks in order, rows shuffled within"])
def test_rows_whose_chunks_come_in_order_are_not_reordered(tmp_path, monkeypatch, case):
    """Chunks in order (captions in a grouping file's order): one gather per chunk, no sort and no second gather."""
    positions = positions_cases()[case]
    expected = pa.array(VALUES, pa.string()).take(positions)

    def no_sort(*args, **kwargs):
        raise AssertionError("rows whose chunks are in order were sorted")

    monkeypatch.setattr(np, "argsort", no_sort)
    assert InMemoryColumn(chunks_of(VALUES, TAKE_SIZES), pa.string()).take(positions).equals(expected)
    assert MappedColumn.write(iter(chunks_of(VALUES, TAKE_SIZES)), pa.string(), str(tmp_path)).take(positions).equals(expected)


def test_mapped_column_file_is_deleted_when_closed_or_collected(tmp_path):
    first = MappedColumn.write(iter(chunks_of(VALUES, SIZES)), pa.string(), str(tmp_path))
    second = MappedColumn.write(iter(chunks_of(VALUES, SIZES)), pa.string(), str(tmp_path))
    assert len(os.listdir(tmp_path)) == 2
    result = first.take(pa.array([1, 2], pa.int32()))  # a copy: it must outlive the file
    first.close()
    del second
    gc.collect()
    assert os.listdir(tmp_path) == []
    assert result.to_pylist() == VALUES[1:3]


def test_a_failed_write_leaves_no_file(tmp_path):
    def failing():
        yield pa.array(["a"], pa.string())
        raise RuntimeError("reader failed")

    with pytest.raises(RuntimeError, match="reader failed"):
        MappedColumn.write(failing(), pa.string(), str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_writable_folder(tmp_path):
    assert writable_folder(str(tmp_path / "new" / "folder")) == str(tmp_path / "new" / "folder")
    assert writable_folder(None) is None
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert writable_folder(str(blocker / "below")) is None


@pytest.mark.parametrize("spill", [False, True])
def test_text_info_spilled_or_not_reads_the_same_captions(tmp_path, monkeypatch, spill):
    # Tiny blocks: many record batches, captions with quoted line breaks across block boundaries.
    monkeypatch.setattr(tables, "_STREAM_BLOCK_BYTES", 200)
    captions = {i * 3 + 1: f"caption {i}" + (",\r\n\"quoted\" line" if i % 5 == 0 else "") for i in range(400)}
    path = tmp_path / "text.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows([["encord_text_id", "caption"]] + list(captions.items()))
    spill_folder = str(tmp_path / "spill") if spill else None
    text = TextInfo.read(str(path), spill_folder=spill_folder)
    assert isinstance(text.captions, MappedColumn if spill else InMemoryColumn)
    ids = sorted(captions)[::-1] + [2, 10**9]  # reversed order, then ids with no row
    got = text.caption_at(text.lookup.positions(pa.array(ids, pa.int64()))).to_pylist()
    assert got == [captions.get(i) for i in ids]


def test_builder_spills_captions_beside_the_cache_and_cleans_up(tmp_path):
    tree = generate_sample_tree(str(tmp_path / "tree"), media=False, num_neighbours=2, num_captions=40, num_media=12)
    cache = str(tmp_path / "cache")
    builder = emm1.EMM1(config_name="phase1_nn2", data_dir=tree.metadata_dir, root_data_path=tree.root, decode=False,
                        cache_dir=cache, infos_cache=False)  # the private scratch file (no shared infos cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        builder.download_and_prepare()
    ds = builder.as_dataset(split="train")
    text_rows = {}
    with open(os.path.join(tree.phase1_dir, "infos", "text.csv"), newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            text_rows[int(row["encord_text_id"])] = row["caption"]
    assert ds["caption"] == [text_rows.get(i) for i in ds["encord_text_id"]]
    assert os.listdir(os.path.join(cache, "emm1-tmp")) == []  # the captions' file is gone once prepared


def test_streaming_keeps_the_captions_file_between_epochs(tmp_path):
    tree = generate_sample_tree(str(tmp_path / "tree"), media=False, num_neighbours=1, num_captions=30, num_media=10)
    cache = str(tmp_path / "cache")
    builder = emm1.EMM1(config_name="phase1_nn1", data_dir=tree.metadata_dir, root_data_path=tree.root, decode=False,
                        cache_dir=cache, infos_cache=False)  # the private scratch file (no shared infos cache)
    stream = builder.as_streaming_dataset(split="train")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = [row["caption"] for row in stream]
        assert len(glob.glob(os.path.join(cache, "emm1-tmp", "emm1-captions-*.arrow"))) == 1
        assert [row["caption"] for row in stream] == first
    assert len(glob.glob(os.path.join(cache, "emm1-tmp", "emm1-captions-*.arrow"))) == 1
    del builder, stream
    gc.collect()
    assert glob.glob(os.path.join(cache, "emm1-tmp", "*")) == []


def test_provenance_labels_read_no_captions_in_the_parent_of_num_proc_workers(tmp_path, monkeypatch):
    # ClassLabel names need only the media tables; the workers read the captions themselves.
    tree = generate_sample_tree(str(tmp_path / "tree"), media=False, num_neighbours=1, num_captions=60, num_media=20)
    reads = []
    original = TextInfo.read.__func__
    monkeypatch.setattr(TextInfo, "read", classmethod(lambda cls, *a, **k: reads.append(a) or original(cls, *a, **k)))
    builder = emm1.EMM1(config_name="phase1_nn1", data_dir=tree.metadata_dir, root_data_path=tree.root, decode=False,
                        cache_dir=str(tmp_path / "cache"), provenance_labels=True, shard_bytes=256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        builder.download_and_prepare(num_proc=2)
    assert reads == []  # in this (the parent) process
    ds = builder.as_dataset(split="train")
    assert ds.num_rows == 60 and None not in ds["caption"]


def test_coalesced_batches_keep_every_row_in_order_and_reach_the_size():
    batches = [pa.record_batch([pa.array(c, pa.string())], names=["values"]) for c in chunks_of(VALUES, SIZES)]
    min_bytes = 2_000
    out = list(tables.coalesce_batches(iter(batches), min_bytes))
    assert pa.Table.from_batches(out).column("values").to_pylist() == VALUES
    assert all(b.nbytes >= min_bytes for b in out[:-1]) and len(out) < len(batches)
    assert list(tables.coalesce_batches(iter([]), min_bytes)) == []
    passed = list(tables.coalesce_batches(iter(batches[3:4]), 1))
    assert len(passed) == 1 and passed[0] is batches[3]  # passed through, not copied
    empty = batches[0]  # zero rows: skipped, whatever their number
    assert list(tables.coalesce_batches(iter([empty, empty, empty]), min_bytes)) == []
    out = list(tables.coalesce_batches(iter([empty] + batches + [empty, empty]), min_bytes))
    assert pa.Table.from_batches(out).column("values").to_pylist() == VALUES


@pytest.mark.parametrize("cached", [True, False])
def test_captions_are_stored_in_batches_of_the_stored_size_whatever_the_reader_block(tmp_path, monkeypatch, cached):
    """Small reader blocks (for the reader's memory) do not make the stored captions a thousand tiny batches."""
    from emm1_lib.schema import infos

    tree = generate_sample_tree(str(tmp_path / "tree"), num_captions=3000, num_media=20, num_neighbours=1,
                                num_triplets=0, media=False, seed=3)
    text_csv = os.path.join(tree.phase1_dir, "infos", "text.csv")
    monkeypatch.setattr(tables, "_STREAM_BLOCK_BYTES", 1 << 12)
    monkeypatch.setattr(infos, "_STORED_BATCH_BYTES", 1 << 15)
    expected = pa.Table.from_batches(list(infos.text_batches(text_csv)))
    assert len(list(infos.text_batches(text_csv))) > 10  # the reader's blocks are small
    text = TextInfo.read(text_csv, spill_folder=str(tmp_path / "spill"),
                         cache_folder=str(tmp_path / "cache") if cached else None)
    with pa.OSFile(text.captions.path) as f:
        reader = pa.ipc.open_file(f)
        sizes = [reader.get_batch(i).column(0).nbytes for i in range(reader.num_record_batches)]
    assert all(size >= (1 << 15) * 0.5 for size in sizes[:-1]) and len(sizes) < 10
    positions = pa.array(np.arange(expected.num_rows, dtype=np.int32)[::-1].copy())
    assert text.caption_at(positions).to_pylist() == expected.column("caption").to_pylist()[::-1]
    assert text.lookup.num_rows == expected.num_rows
