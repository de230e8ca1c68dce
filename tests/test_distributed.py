"""Multi-node: enough streaming shards, disjoint per-rank splits covering every row, and a Dask read of the export."""
import collections
import glob
import os
import warnings

import datasets
import pytest
from datasets.distributed import split_dataset_by_node

import emm1
from emm1_lib.errors import DanglingIdWarning
from emm1_lib.tools.export import DEFAULT_MIN_FILES
from emm1_lib.tools.export import export
from emm1_lib.io.tables import DEFAULT_SHARD_BYTES
from emm1_lib.io.tables import byte_ranges

WORLD_SIZE = 4
FULL_NN1_BYTES = 252_000_000  # UPSTREAM.md: nn_1/data_groups.csv is 252 MB


def _num_shards(ds: datasets.IterableDataset) -> int:
    return ds.num_shards if hasattr(ds, "num_shards") else ds.n_shards


def _rows_by_rank(stream: datasets.IterableDataset, key):
    return [
        collections.Counter(key(r) for r in split_dataset_by_node(stream, rank=rank, world_size=WORLD_SIZE))
        for rank in range(WORLD_SIZE)
    ]


def _assert_partition(per_rank, everything: collections.Counter) -> None:
    for a in range(WORLD_SIZE):
        assert per_rank[a], f"rank {a} got no rows"
        for b in range(a + 1, WORLD_SIZE):
            assert not set(per_rank[a]) & set(per_rank[b]), f"ranks {a} and {b} share rows"
    assert sum(per_rank, collections.Counter()) == everything


@pytest.fixture(scope="module")
def exported(released_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist-export") / "repo"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        return export(str(out), released_tree.metadata_dir, ["phase1_all", "phase1_nn1"],
                      cache_dir=str(tmp_path_factory.mktemp("dist-cache")), row_group_rows=8)


def test_full_size_phase1_file_gives_16_shards(tmp_path):
    """At the default shard_bytes a full nn_k file (252 MB) is read as >= 16 independent byte ranges."""
    sparse = tmp_path / "data_groups.csv"
    with open(sparse, "wb") as f:
        f.truncate(FULL_NN1_BYTES)  # a sparse file: the size without the disk use
    ranges = byte_ranges(str(sparse), DEFAULT_SHARD_BYTES)
    assert len(ranges) >= 16 and ranges[-1][1] == FULL_NN1_BYTES


def test_builder_stream_split_by_node_is_a_partition(released_tree, hf_cache):
    builder = emm1.EMM1(config_name="phase1_nn1", data_dir=released_tree.metadata_dir, root_data_path=released_tree.root,
                        decode=False, cache_dir=hf_cache, shard_bytes=32)
    stream = builder.as_streaming_dataset(split="train")
    assert _num_shards(stream) >= 16
    key = lambda r: (r["encord_text_id"], r["encord_image_id"], r["points"] and r["points"]["path"])  # noqa: E731
    everything = collections.Counter(key(r) for r in stream)
    assert sum(everything.values()) == released_tree.num_captions
    _assert_partition(_rows_by_rank(stream, key), everything)


def test_exported_parquet_stream_split_by_node_is_a_partition(exported):
    """Stock `datasets` streaming of the export: >= 16 shards (one per file; per row group after reshard)."""
    config = next(c for c in exported.configs if c.name == "phase1_all")
    assert len(config.files["train"]) == DEFAULT_MIN_FILES
    stream = datasets.load_dataset(exported.out_dir, "phase1_all", split="train", streaming=True)
    assert _num_shards(stream) >= 16
    if hasattr(stream, "reshard"):  # datasets >= 4.x: one shard per Parquet row group
        assert _num_shards(stream.reshard()) == config.row_groups
    key = lambda r: (r["encord_text_id"], r["nn_index"])  # noqa: E731
    everything = collections.Counter(key(r) for r in stream)
    assert sum(everything.values()) == config.num_rows == 16 * 24
    _assert_partition(_rows_by_rank(stream, key), everything)


def test_dask_reads_the_exported_parquet(exported):
    dd = pytest.importorskip("dask.dataframe")
    import dask

    files = sorted(glob.glob(os.path.join(exported.out_dir, "phase1_all", "*.parquet")))
    with dask.config.set(scheduler="synchronous"):  # local mode, no worker processes
        frame = dd.read_parquet(files, columns=["encord_text_id", "nn_index"])
        assert frame.npartitions >= len(files)
        computed = frame.compute()
    local = datasets.load_dataset(exported.out_dir, "phase1_all", split="train")
    assert len(computed) == len(local)
    pairs = sorted(zip(computed["encord_text_id"].tolist(), computed["nn_index"].tolist()))
    assert pairs == sorted(zip(local["encord_text_id"], local["nn_index"]))
