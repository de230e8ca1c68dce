"""The official Hub copy's generation (pre-joined Parquet) read from the Hub: `hf://` data_dir against the stand-in.

`generate_sample_tree(schema="hub")` writes the two repositories as the Hub holds them
(`E-MM1-100M/data/nn_XX.parquet`, `E-MM1-1M/data/{paired}_to_{annotated}.parquet`); the stand-in Hub
serves them as `encord-team/E-MM1-100M` and `encord-team/E-MM1-1M`, and counts the bytes it sends.
"""
import glob
import os

import pyarrow.parquet as pq
import pytest

from emm1_lib.testing.sample import generate_sample_tree
from test_hub_input import _check_ok
from test_hub_input import _client_loads
from test_hub_input import _local

REPOS = {"E-MM1-100M": "encord-team/E-MM1-100M", "E-MM1-1M": "encord-team/E-MM1-1M"}


@pytest.fixture(scope="module")
def hub_tree(tmp_path_factory):
    """The pre-joined generation with real media (16 ranks, small)."""
    return generate_sample_tree(str(tmp_path_factory.mktemp("hub-gen")), schema="hub")


@pytest.fixture(scope="module")
def big_hub_tree(tmp_path_factory):
    """Metadata only, 200k captions, 3 ranks, each nn_XX.parquet in 20 row groups: the real files (6.7 M rows in
    row groups of 100k) hold 68, so one row group is a small part of a file, as here."""
    tree = generate_sample_tree(str(tmp_path_factory.mktemp("hub-gen-big")), schema="hub", num_captions=200_000,
                                num_media=2_000, num_neighbours=3, num_triplets=100, eshot_categories=2, media=False)
    for path in glob.glob(os.path.join(tree.metadata_dir, "E-MM1-100M", "data", "nn_*.parquet")):
        table = pq.read_table(path)
        pq.write_table(table, path, row_group_size=10_000)
    return tree


def _serve(hub, tree):
    for folder, repo in REPOS.items():
        hub.add_repo(repo, os.path.join(tree.metadata_dir, folder))


@pytest.mark.parametrize("config, repo", [("phase1_nn3", "E-MM1-100M"), ("phase1_all", "E-MM1-100M"),
                                          ("phase2_triplets", "E-MM1-1M")])
def test_the_hub_copy_prepared_and_streamed_equals_the_local_folder(hub_tree, tmp_path, standin_hub, config, repo):
    data_dir = f"hf://datasets/{REPOS[repo]}"
    _serve(standin_hub, hub_tree)
    loads = [{"name": "emm1", "config": config, "split": "train", "data_dir": data_dir, "streaming": streaming}
             for streaming in (False, True)]
    results = _client_loads(standin_hub, tmp_path, hub_tree.root, loads)
    expected = _local("emm1", config, "train", os.path.join(hub_tree.metadata_dir, repo), hub_tree.root,
                      str(tmp_path / "local-cache"))
    for load, result in zip(loads, results):
        assert _check_ok(result)["rows"] == expected["rows"], load["streaming"]
        assert result["features"] == expected["features"], load["streaming"]
        assert len(result["rows"]) > 0
    read = standin_hub.bytes_read(REPOS[repo])
    assert read and all(path.endswith((".parquet", ".csv")) for path in read), sorted(read)


def test_streaming_the_first_rows_reads_a_small_part_of_the_rank_file(big_hub_tree, tmp_path, standin_hub):
    """`load_dataset("emm1", "phase1_nn3", data_dir="hf://datasets/encord-team/E-MM1-100M", streaming=True)`:
    the first 100 rows need the file's footer and one row group, and no other rank's file."""
    _serve(standin_hub, big_hub_tree)
    rank_file = "data/nn_03.parquet"
    size = os.path.getsize(os.path.join(big_hub_tree.metadata_dir, "E-MM1-100M", rank_file))
    load = {"name": "emm1", "config": "phase1_nn3", "split": "train", "streaming": True, "take": 100,
            "data_dir": f"hf://datasets/{REPOS['E-MM1-100M']}"}
    [streamed] = _client_loads(standin_hub, tmp_path, big_hub_tree.root, [load], name="stream")
    read = standin_hub.bytes_read(REPOS["E-MM1-100M"])
    assert len(_check_ok(streamed)["rows"]) == 100
    print(f"\nstreaming 100 rows of phase1_nn3 from the Hub copy: {read.get(rank_file, 0):,} of {size:,} bytes of "
          f"{rank_file} ({read.get(rank_file, 0) / size:.1%}), {sum(read.values()):,} bytes in all")
    assert set(read) == {rank_file}, sorted(read)  # no other rank file
    assert read[rank_file] < 0.1 * size
