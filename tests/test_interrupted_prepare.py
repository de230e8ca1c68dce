"""Interrupted preparation: SIGKILL a `download_and_prepare` mid-way; the next run in the same cache rebuilds a
complete, correct dataset, and no partial dataset is ever served in between."""
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pyarrow.csv as pacsv
import pytest

import emm1
from emm1_lib.testing.sample import generate_sample_tree

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

# The child is the real builder, throttled (a short sleep per Arrow table) so that the kill lands mid-way
# whatever the speed of the machine: it has written some tables and not all of them.
CHILD = textwrap.dedent(
    """
    import sys, time, warnings
    import emm1

    data_dir, cache_dir, config, batch_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    original = emm1.EMM1._generate_tables

    def throttled(self, *args, **kwargs):
        for item in original(self, *args, **kwargs):
            time.sleep(0.02)
            yield item

    emm1.EMM1._generate_tables = throttled
    builder = emm1.EMM1(config_name=config, data_dir=data_dir, root_data_path=data_dir, cache_dir=cache_dir,
                        decode=False, batch_size=batch_size, shard_bytes=1 << 16)
    print("STARTED", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        builder.download_and_prepare()
    print("DONE", flush=True)
    """
)


def _arrow_bytes_in_progress(cache_dir):
    """Bytes of .arrow files in the cache that are not yet in a finished dataset folder."""
    total = 0
    for folder, _, files in os.walk(cache_dir):
        if ".incomplete" in folder or any(".incomplete" in f for f in files):
            total += sum(os.path.getsize(os.path.join(folder, f)) for f in files if ".arrow" in f)
    return total


def _builder(data_dir, cache_dir, config, batch_size):
    return emm1.EMM1(config_name=config, data_dir=data_dir, root_data_path=data_dir, cache_dir=cache_dir,
                     decode=False, batch_size=batch_size, shard_bytes=1 << 16)


def _kill_mid_way(data_dir, cache_dir, config, batch_size, min_bytes=200_000, timeout=120):
    process = subprocess.Popen([sys.executable, "-c", CHILD, data_dir, cache_dir, config, str(batch_size)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                out, err = process.communicate()
                pytest.fail(f"the child finished before it could be killed mid-way:\n{out}\n{err[-2000:]}")
            if _arrow_bytes_in_progress(cache_dir) >= min_bytes:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the child never started writing")
        written = _arrow_bytes_in_progress(cache_dir)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    return written


@pytest.mark.parametrize("config", ["phase1_nn1", "phase2_triplets"])
def test_killed_preparation_is_rebuilt_completely(tmp_path, config):
    tree = generate_sample_tree(str(tmp_path / "tree"), media=False, num_neighbours=1, num_captions=60_000,
                                num_media=500, num_triplets=60_000, dangling=7, duplicate_groups=5)
    cache_dir = str(tmp_path / "cache")
    batch_size = 1_000
    written = _kill_mid_way(tree.metadata_dir, cache_dir, config, batch_size)
    assert written > 0

    # nothing half-written is served: the dataset is not "prepared" after the kill
    builder = _builder(tree.metadata_dir, cache_dir, config, batch_size)
    with pytest.raises(FileNotFoundError, match="download_and_prepare"):
        builder.as_dataset(split="train")

    # the next run in the same cache rebuilds everything
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        builder.download_and_prepare()
    resumed = builder.as_dataset(split="train")

    fresh_builder = _builder(tree.metadata_dir, str(tmp_path / "fresh-cache"), config, batch_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh_builder.download_and_prepare()
    fresh = fresh_builder.as_dataset(split="train")

    source = os.path.join(tree.phase1_dir, "nn_1", "data_groups.csv") if config == "phase1_nn1" else \
        os.path.join(tree.phase2_dir, "triplets.csv")
    expected_rows = pacsv.read_csv(source).num_rows
    assert len(resumed) == len(fresh) == expected_rows
    assert resumed.data.table.equals(fresh.data.table)
    assert resumed["encord_text_id"] == pacsv.read_csv(source)["encord_text_id"].to_pylist()
    assert not _arrow_bytes_in_progress(cache_dir), "leftover partial files after the rebuild"
