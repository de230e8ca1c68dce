"""Dangling-id warnings reach the caller once per id column, whichever way the data are prepared or read.

With `num_proc`, `datasets` runs the jobs in pool workers, whose warnings never reach the caller: the
jobs' counts are merged in the preparing process and warned there, as a single-process preparation does.
"""
import glob
import os
import warnings

import pytest

import emm1
from emm1_lib.builders.job_reports import merged_job_counts
from emm1_lib.builders.job_reports import write_job_counts
from emm1_lib.errors import DanglingIdWarning
from emm1_lib.schema.ids import DanglingCount
from emm1_lib.testing.sample import generate_sample_tree

MODALITIES = ("image", "audio", "video", "points")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    # 8 dangling ids per column at random rows of 600: both halves of the shards (the two jobs) hold some.
    return generate_sample_tree(str(tmp_path_factory.mktemp("dangling-num-proc")), media=False, num_neighbours=2,
                                num_captions=600, num_media=20, dangling=8, num_triplets=200)


def _builder(tree, cache, config="phase1_nn1", **kwargs):
    kwargs.setdefault("shard_bytes", 2048)
    return emm1.EMM1(config_name=config, data_dir=tree.metadata_dir, root_data_path=tree.root, decode=False,
                     cache_dir=cache, **kwargs)


def _dangling_messages(run):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [str(w.message) for w in caught if issubclass(w.category, DanglingIdWarning)]


def _prepared_leftovers(cache):
    """Per-preparation folders (captions' files and job counts) still in the cache."""
    return glob.glob(os.path.join(cache, "emm1-tmp", "*"))


@pytest.mark.parametrize("config", ["phase1_nn1", "phase1_nn2"])
def test_num_proc_warns_as_a_single_process_preparation(tree, tmp_path, config):
    single = _dangling_messages(lambda: _builder(tree, str(tmp_path / "one"), config).download_and_prepare())
    cache = str(tmp_path / "two")
    parallel = _builder(tree, cache, config)
    assert len(parallel._split_generators(None)[0].gen_kwargs["shards"]) >= 4  # jobs of several shards each
    multi = _dangling_messages(lambda: parallel.download_and_prepare(num_proc=2))
    # one warning per media id column (the text ids all have captions), same counts, same first examples
    assert len(single) == len(MODALITIES)
    for m in MODALITIES:
        [message] = [text for text in single if f" encord_{m}_id value(s)" in text]
        assert message.startswith(f"{config}: 8 encord_{m}_id value(s) have no row in ")
        assert f"infos{os.sep}{m}.csv" in message
    assert multi == single
    assert parallel.as_dataset(split="train").num_rows == 600
    assert _prepared_leftovers(cache) == []


def test_each_job_counts_part_of_the_rows(tree, tmp_path):
    """The case above merges counts of several jobs (not one job's that happened to see every dangling id)."""
    builder = _builder(tree, str(tmp_path / "cache"))
    shards = builder._split_generators(None)[0].gen_kwargs["shards"]
    halves = [shards[: len(shards) // 2], shards[len(shards) // 2:]]
    per_half = []
    for half in halves:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            list(builder._generate_tables(**{**builder._split_generators(None)[0].gen_kwargs, "shards": half}))
        per_half.append([str(w.message) for w in caught if issubclass(w.category, DanglingIdWarning)])
    builder._close_infos()
    assert all(per_half), per_half


def test_a_single_shard_with_num_proc_still_warns(tree, tmp_path):
    """num_proc > 1 that datasets turns back to one process (one shard) goes through the same merge."""
    whole = dict(config="phase1_nn1", shard_bytes=1 << 30)
    one = _dangling_messages(lambda: _builder(tree, str(tmp_path / "a"), **whole).download_and_prepare())
    two = _dangling_messages(lambda: _builder(tree, str(tmp_path / "b"), **whole).download_and_prepare(num_proc=2))
    assert len(one) == len(MODALITIES) and two == one


def test_phase2_with_num_proc_warns_once(tree, tmp_path):
    single = _dangling_messages(lambda: _builder(tree, str(tmp_path / "one"), "phase2_triplets").download_and_prepare())
    multi = _dangling_messages(
        lambda: _builder(tree, str(tmp_path / "two"), "phase2_triplets").download_and_prepare(num_proc=2))
    assert single and multi == single


def _counts(messages):
    """`{id column: total count}` of dangling-id messages."""
    totals = {}
    for message in messages:
        count, column = message.split(": ", 1)[1].split(" value(s)")[0].split(" ")
        totals[column] = totals.get(column, 0) + int(count)
    return totals


def test_streaming_still_warns_in_the_reading_process(tree, tmp_path):
    """Streaming reads in the caller's process (a warning per shard read that has dangling ids): not merged, all seen."""
    single = _dangling_messages(lambda: _builder(tree, str(tmp_path / "one")).download_and_prepare())
    stream = _builder(tree, str(tmp_path / "stream")).as_streaming_dataset(split="train")
    streamed = _dangling_messages(lambda: sum(1 for _ in stream))
    assert _counts(streamed) == _counts(single) == {f"encord_{m}_id": 8 for m in MODALITIES}


def test_failed_num_proc_preparation_leaves_no_job_counts(tmp_path):
    broken = generate_sample_tree(str(tmp_path / "broken"), media=False, num_neighbours=1, num_captions=400,
                                  num_media=20, dangling=4)
    groups = os.path.join(broken.phase1_dir, "nn_1", "data_groups.csv")
    with open(groups) as f:
        lines = f.read().splitlines()
    lines[-3] = lines[-3].rsplit(",", 1)[0] + ",99"  # nn_index 99: the job of the last shards fails
    with open(groups, "w") as f:
        f.write("\n".join(lines) + "\n")
    cache = str(tmp_path / "cache")
    with pytest.raises(Exception):
        _dangling_messages(lambda: _builder(broken, cache).download_and_prepare(num_proc=2))
    assert _prepared_leftovers(cache) == []


def test_job_counts_merge_in_job_order(tmp_path):
    folder = str(tmp_path)
    # written out of order, as pool workers finish
    write_job_counts(folder, 1, [DanglingCount("encord_image_id", "i.csv", 3, [30, 31, 32]),
                                 DanglingCount("encord_audio_id", "a.csv", 0, [])])
    write_job_counts(folder, 0, [DanglingCount("encord_image_id", "i.csv", 4, [1, 2, 3, 4]),
                                 DanglingCount("encord_audio_id", "a.csv", 1, [7])])
    write_job_counts(folder, 10, [DanglingCount("encord_image_id", "i.csv", 2, [90, 91]),
                                  DanglingCount("encord_audio_id", "a.csv", 0, [])])
    assert merged_job_counts(folder) == [
        DanglingCount("encord_image_id", "i.csv", 9, [1, 2, 3, 4, 30]),
        DanglingCount("encord_audio_id", "a.csv", 1, [7]),
    ]
    assert sorted(os.listdir(folder)) == ["dangling-000000.json", "dangling-000001.json", "dangling-000010.json"]


def test_dangling_counts_merge_only_the_same_column():
    with pytest.raises(ValueError, match="encord_audio_id"):
        DanglingCount("encord_image_id", "i.csv").merge(DanglingCount("encord_audio_id", "a.csv"))
