"""The captions' scratch file (`<cache>/emm1-tmp/emm1-captions-*.arrow`) never outlives the processes that use it.

Worker processes (a torch DataLoader's, `multiprocessing`'s, `num_proc`'s pool) exit without atexit handlers and
may never collect the builder that holds the file, so each run used to leave one file per worker behind.
"""
import glob
import multiprocessing
import os
import warnings

import pytest

import emm1
from emm1_lib.errors import EMM1DataError
from emm1_lib.testing.sample import generate_sample_tree

START_METHODS = [m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()]


def _leftovers(cache):
    """Captions' files, and the per-preparation folders that hold them, still in the cache."""
    scratch = os.path.join(cache, "emm1-tmp")
    return glob.glob(os.path.join(scratch, "**", "*.arrow"), recursive=True) + glob.glob(os.path.join(scratch, "*/"))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return generate_sample_tree(str(tmp_path_factory.mktemp("scratch")), media=False, num_neighbours=1,
                                num_captions=400, num_media=20)


def _builder(tree, cache, **kwargs):
    # Without the infos cache: the captions then go to a private scratch file (as with a read-only cache folder).
    return emm1.EMM1(config_name="phase1_nn1", data_dir=tree.metadata_dir, root_data_path=tree.root, decode=False,
                     cache_dir=cache, shard_bytes=1024, infos_cache=False, **kwargs)


def _iterate_shard(stream, index, num_shards, results):
    """A worker: iterate its shard of the stream (the captions' file is written in this process), then exit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results.put([row["caption"] for row in stream.shard(num_shards=num_shards, index=index)])


@pytest.mark.parametrize("start_method", START_METHODS)
def test_multiprocessing_workers_leave_no_captions_file(tree, tmp_path, start_method):
    cache = str(tmp_path / "cache")
    stream = _builder(tree, cache).as_streaming_dataset(split="train")
    context = multiprocessing.get_context(start_method)
    results = context.Queue()
    workers = [context.Process(target=_iterate_shard, args=(stream, i, 2, results)) for i in range(2)]
    for worker in workers:
        worker.start()
    captions = [c for _ in workers for c in results.get(timeout=300)]
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode == 0
    assert len(captions) == tree.num_captions and None not in captions
    assert _leftovers(cache) == []  # while this process still holds the builder and the stream


@pytest.mark.skipif("fork" not in START_METHODS, reason="needs the fork start method")
def test_forked_workers_do_not_delete_the_parents_file(tree, tmp_path):
    cache = str(tmp_path / "cache")
    builder = _builder(tree, cache)
    stream = builder.as_streaming_dataset(split="train")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = [row["caption"] for row in stream]  # this process writes its file; forked workers inherit it
    [own] = _leftovers(cache)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_iterate_shard, args=(stream, i, 2, results)) for i in range(2)]
    for worker in workers:
        worker.start()
    assert sorted(c for _ in workers for c in results.get(timeout=300)) == sorted(first)
    for worker in workers:
        worker.join(timeout=300)
    assert _leftovers(cache) == [own]  # still there for this process's next epoch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [row["caption"] for row in stream] == first
    builder._close_infos()
    assert _leftovers(cache) == []


def test_torch_dataloader_workers_leave_no_captions_file(tree, tmp_path):
    torch_data = pytest.importorskip("torch.utils.data", reason="torch is not installed (it is no dependency)")
    cache = str(tmp_path / "cache")
    stream = _builder(tree, cache).as_streaming_dataset(split="train")
    for epoch in range(2):  # each epoch starts new workers
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loader = torch_data.DataLoader(stream, num_workers=2, batch_size=None)
            captions = [row["caption"] for row in loader]
        del loader
        assert len(captions) == tree.num_captions
        assert _leftovers(cache) == [], f"epoch {epoch}"


def test_num_proc_preparation_leaves_no_captions_file(tree, tmp_path):
    cache = str(tmp_path / "cache")
    builder = _builder(tree, cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        builder.download_and_prepare(num_proc=2)
    assert builder.as_dataset(split="train").num_rows == tree.num_captions
    assert _leftovers(cache) == []


def test_failed_num_proc_preparation_leaves_no_captions_file(tree, tmp_path):
    broken = generate_sample_tree(str(tmp_path / "broken"), media=False, num_neighbours=1, num_captions=400,
                                  num_media=20)
    groups = os.path.join(broken.phase1_dir, "nn_1", "data_groups.csv")
    with open(groups) as f:
        lines = f.read().splitlines()
    lines[-3] = lines[-3].rsplit(",", 1)[0] + ",99"  # nn_index 99: the worker of the last shards fails
    with open(groups, "w") as f:
        f.write("\n".join(lines) + "\n")
    cache = str(tmp_path / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as raised:
            _builder(broken, cache).download_and_prepare(num_proc=2)
    chain, error = [], raised.value
    while error is not None:  # the worker's EMM1DataError reaches this process as a RemoteTraceback's text
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("nn_index 99" in text and EMM1DataError.__name__ in text for text in chain), chain
    assert _leftovers(cache) == []
