"""Smoke run of benchmarks/prejoined.py on a tiny tree: both inputs prepare the config and give the same rows.

No timing is asserted (the ratio belongs to the benchmark's full-size runs, see docs/performance.md).
"""
import json
import os
import sys

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCHMARKS)
import prejoined  # noqa: E402


def test_csv_and_parquet_inputs_give_the_same_rows(tmp_path):
    report = prejoined.main(["--scale", "0.0005", "--tree-dir", str(tmp_path / "tree"), "--repeats", "1", "--verify",
                             "--json", str(tmp_path / "report.json")])
    csv, parquet = report["results"]["csv"][0], report["results"]["parquet"][0]
    assert csv["digest"] == parquet["digest"] and csv["digest"]["rows"] == int(6_706_765 * 0.0005)
    assert csv["cpu_s"] > 0 and parquet["op_s"] > 0
    assert os.path.exists(tmp_path / "tree-hub" / "metadata" / "E-MM1-100M" / "data" / "nn_01.parquet")
    with open(tmp_path / "report.json") as f:
        assert json.load(f)["config"] == "phase1_nn1"
