"""Smoke run of benchmarks/phase1.py on a tiny tree: every contender runs and produces the same rows.

No timing is asserted (timings belong to the benchmark's full-scale runs, see docs/performance.md).
"""
import json
import os
import sys

import pytest

pytest.importorskip("polars")  # contender (a) is the seed's polars recipe

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCHMARKS)
import phase1  # noqa: E402

SCALE = 0.0005  # 3,353 captions, 1,500 infos rows per modality


def _run(tmp_path, *extra):
    argv = ["--scale", str(SCALE), "--tree-dir", str(tmp_path / "tree"), "--work-dir", str(tmp_path / "work"),
            "--repeats", "1", "--verify", "--json", str(tmp_path / "report.json"), *extra]
    report = phase1.main(argv)
    with open(tmp_path / "report.json") as f:
        assert json.load(f)["scale"] == SCALE
    return report


def test_contenders_agree_and_extras_run(tmp_path):
    report = _run(tmp_path, "--contenders", "polars,builder,csv_map", "--extras", "warm,stream,all", "--stream-batch", "500")
    digests = {kind: runs[0]["digest"] for kind, runs in report["results"].items()}
    rows = int(phase1.FULL_CAPTIONS * SCALE)
    assert digests["polars"]["rows"] == rows
    # same row count, same ids (order-free sums), same null paths and captions, for every contender
    assert digests["builder"] == digests["polars"] == digests["csv_map"]
    extras = report["extras"]
    assert extras["warm"]["digest"]["rows"] == rows and extras["warm"]["memory_mapped"]
    assert extras["stream"]["rows_per_s"] > 0 and extras["stream"]["arrow_rows_per_s"] > 0
    assert extras["all"]["digest"]["rows"] == 16 * rows
    assert extras["all"]["num_proc"] == 2
    for kind, runs in report["results"].items():
        assert runs[0]["peak_rss"] > 0 and runs[0]["wall_s"] > 0, kind


def test_compact_options_keep_the_rows(tmp_path):
    options = json.dumps({"file_path_columns": False, "provenance_labels": True})
    report = _run(tmp_path, "--contenders", "polars,builder", "--extras", "", "--options", options)
    polars, builder = (report["results"][k][0] for k in ("polars", "builder"))
    assert builder["digest"] == polars["digest"]  # media column nulls stand in for the dropped path columns
    assert builder["out_bytes"] / builder["digest"]["rows"] < 500  # paths stored once


def test_load_dataset_and_infos_cached_contenders_agree(tmp_path):
    report = _run(tmp_path, "--contenders", "polars,builder,builder_warm,load_dataset,load_dataset_warm", "--extras", "")
    digests = {kind: runs[0]["digest"] for kind, runs in report["results"].items()}
    assert all(digest == digests["polars"] for digest in digests.values()), digests
    assert os.listdir(tmp_path / "work" / "shared-cache") == [phase1.INFOS_CACHE_FOLDER]  # outputs removed, cache kept


def test_the_earlier_smaller_tree_is_a_size_option(tmp_path):
    report = _run(tmp_path, "--sizes", "small", "--contenders", "builder", "--extras", "")
    assert report["results"]["builder"][0]["digest"]["rows"] == int(phase1.FULL_CAPTIONS * SCALE)
    with open(tmp_path / "tree" / "COMPLETE.json") as f:
        assert json.load(f)["version"] == phase1.TREE_VERSION


def test_a_tree_dir_given_by_hand_is_never_deleted(tmp_path):
    """--tree-dir naming a folder of other data, or a tree of other options, is refused, not replaced."""
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("not a benchmark tree")
    with pytest.raises(SystemExit, match="not deleted"):
        phase1.ensure_tree(str(other), SCALE)
    assert (other / "keep.txt").read_text() == "not a benchmark tree"

    tree = tmp_path / "tree"
    phase1.ensure_tree(str(tree), SCALE)
    marker = (tree / "COMPLETE.json").read_text()
    with pytest.raises(SystemExit, match="not the tree asked for"):
        phase1.ensure_tree(str(tree), SCALE * 2)
    assert (tree / "COMPLETE.json").read_text() == marker


def test_the_benchmark_cache_folder_itself_is_never_replaced(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr(phase1, "BENCH_CACHE", str(cache))
    (cache / "bench-real-full").mkdir(parents=True)
    (cache / "bench-real-full" / "COMPLETE.json").write_text("{}")
    with pytest.raises(SystemExit, match="not deleted"):
        phase1.ensure_tree(str(cache), SCALE)
    assert (cache / "bench-real-full" / "COMPLETE.json").exists()
    phase1.ensure_tree(str(cache / "bench-real-full"), SCALE)  # a default tree of other options is rebuilt
    assert (cache / "bench-real-full" / "metadata").is_dir()


def test_phase1_all_is_not_started_without_the_disk_it_needs(tmp_path):
    """16 times phase1_nn1's output (+10 %) must fit; a full disk would fail the run late, after the other work."""
    single = [{"out_bytes": 1_000_000}]
    assert phase1._all_disk_shortfall(str(tmp_path), single, same_options=True) == ""
    huge = [{"out_bytes": 10**18}]
    reason = phase1._all_disk_shortfall(str(tmp_path), huge, same_options=True)
    assert "would write" in reason and "GB free" in reason and str(tmp_path) in reason
    # another options set for phase1_all: the single config's size says nothing, so nothing is refused
    assert phase1._all_disk_shortfall(str(tmp_path), huge, same_options=False) == ""


def test_a_skipped_phase1_all_is_reported_on_the_page():
    import report

    entry = {"result": {"scale": 1.0, "results": {"builder": []}, "extras": {"all": {"skipped": "no disk"}}}}
    assert report._render_all(entry["result"]) == ["`phase1_all`: not run: no disk."]
