"""benchmarks/streaming.py compares like with like: its Parquet file streams the same rows and columns, with the
same values, as the emm1 stream it is measured against; and its child measurement runs every way. Nothing is timed."""
import os
import sys

import pytest

from emm1_lib.testing.sample import generate_sample_tree

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import streaming  # noqa: E402


def test_the_parquet_file_streams_what_emm1_streams(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "BATCH_SIZE", 10)
    monkeypatch.setattr(streaming, "ARROW_BATCH_SIZE", 20)
    tree = generate_sample_tree(str(tmp_path / "tree"), num_captions=300, num_media=40, media=False)
    parquet = str(tmp_path / "nn1.parquet")
    rows = streaming.write_parquet(tree.metadata_dir, parquet)
    ours = list(streaming._stream("emm1", tree.metadata_dir, parquet))
    stock = list(streaming._stream("parquet", tree.metadata_dir, parquet))
    assert len(ours) == len(stock) == rows > 0
    assert ours == stock  # same columns, in the same order, with the same values (media as {bytes, path})
    assert list(ours[0]) == list(stock[0]) and isinstance(ours[0]["points"], dict)
    for way in streaming.WAYS:
        result = streaming.child(way, tree.metadata_dir, parquet, rows=50)
        assert set(result) == set(streaming.CONTENDERS)
        assert all(r["rows"] >= min(50, rows - 1) and r["rows_per_s"] > 0 for r in result.values()), way


def _run_arrow_child(tmp_path, runs: int) -> None:
    """Run the arrow child `runs` times: each must exit 0 and print every contender's measurement."""
    import json
    import subprocess

    tree = generate_sample_tree(str(tmp_path / "tree"), num_captions=3000, num_media=200, media=False)
    parquet = str(tmp_path / "nn1.parquet")
    streaming.write_parquet(tree.metadata_dir, parquet)
    job = json.dumps({"way": "arrow", "tree": tree.metadata_dir, "parquet": parquet, "first": "emm1"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (streaming.REPO, os.environ.get("PYTHONPATH")) if p))
    for _ in range(runs):
        out = subprocess.run([sys.executable, streaming.__file__, "--child", job, "--rows", "100"],
                             capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert set(result) == set(streaming.CONTENDERS) and all(r["rows"] > 0 for r in result.values())


def test_the_child_process_exits_cleanly_after_printing(tmp_path):
    """The arrow child streams the Parquet file last, through stock datasets (a Python file object under pyarrow):
    its exit must not abort (SIGABRT at interpreter finalization, apache/arrow#34314) and lose a measurement.

    One run here: the abort was intermittent (3 of 20 runs of the old child), so a single run shows the child works
    and exits 0, not that the abort is gone; the repeated runs below (`-m slow`) are the check for that. The
    evidence that the child fixes it is 30 clean runs against 3 of 20 aborted, with a gdb backtrace."""
    _run_arrow_child(tmp_path, runs=1)


@pytest.mark.slow
def test_the_child_process_exits_cleanly_run_after_run(tmp_path):
    """Twenty runs of the arrow child, all clean: the old child aborted in 3 of 20 (apache/arrow#34314)."""
    _run_arrow_child(tmp_path, runs=20)
