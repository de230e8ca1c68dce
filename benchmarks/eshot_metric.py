"""EShot metric benchmark: the `evaluate` path against the numpy core, and the core at scale in bounded memory.

Prints two ratios, each against a baseline measured in the same run (no absolute targets):

1. ``evaluate`` path / numpy core on an EShot-sized input (3,500 x 1,024, 112 categories, float32): the full
   ``metric.compute(...)`` call, including evaluate's Arrow cache round trip, over ``eshot_scores`` on the same arrays.
   For reference it also times the same metric with the default feature layout (``Sequence(Value("float32"))``),
   which is what encoding row by row costs. Requirement: at most 3x.
2. Scale run (default 100,000 queries x 1,000 categories x 1,024 dims, float32) in a fresh subprocess: peak memory
   the core allocates on top of its input (tracemalloc, which numpy reports to), against the size of the input and of
   the full float64 similarity matrix it never builds; plus the process's peak RSS.

Usage: python benchmarks/eshot_metric.py [--repeats 7] [--scale-queries 100000] [--skip-scale]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from typing import Callable
from typing import Dict
from typing import List

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRIC_DIR = os.path.join(REPO, "metrics", "eshot")


def eshot_like_inputs(num_rows: int, dim: int, num_categories: int, seed: int = 0):
    """Float32 embeddings clustered by category (so accuracies are neither 0 nor 1), names, modalities."""
    rng = np.random.default_rng(seed)
    label_ids = rng.integers(0, num_categories, num_rows)
    centres = rng.standard_normal((num_categories, dim), dtype=np.float32)
    embeddings = rng.standard_normal((num_rows, dim), dtype=np.float32)
    embeddings *= np.float32(6.0)
    embeddings += centres[label_ids]
    names = np.array([f"category_{i:04d}" for i in range(num_categories)])
    modalities = np.array(["audio", "points"])[rng.integers(0, 2, num_rows)]
    return embeddings, names[label_ids], modalities


def best_of(functions: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, float]:
    """Minimum wall time of each function over `repeats` rounds, rounds interleaved so load affects all alike."""
    times: Dict[str, List[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def naive_layout_metric():
    """The EShot metric with evaluate's default float-list layout, to show the cost the shipped layout avoids."""
    import datasets
    import evaluate

    from emm1_lib.evaluation.eshot_protocol import eshot_scores

    class NaiveLayoutEShot(evaluate.Metric):
        def _info(self):
            features = datasets.Features(
                {
                    "embeddings": datasets.Sequence(datasets.Value("float32")),
                    "labels": datasets.Value("string"),
                    "modalities": datasets.Value("string"),
                }
            )
            return evaluate.MetricInfo(description="", citation="", features=features)

        def _compute(self, embeddings, labels, modalities):
            return eshot_scores(embeddings, labels, modalities)

    return NaiveLayoutEShot()


def evaluate_ratio(repeats: int) -> Dict[str, float]:
    import evaluate

    from emm1_lib.evaluation.eshot_protocol import eshot_scores

    embeddings, labels, modalities = eshot_like_inputs(3500, 1024, 112)
    metric = evaluate.load(METRIC_DIR)
    naive = naive_layout_metric()
    expected = eshot_scores(embeddings, labels, modalities)
    assert metric.compute(embeddings=embeddings, labels=labels, modalities=modalities) == expected
    times = best_of(
        {
            "core": lambda: eshot_scores(embeddings, labels, modalities),
            "metric": lambda: metric.compute(embeddings=embeddings, labels=labels, modalities=modalities),
        },
        repeats,
    )
    naive_times = best_of(
        {"naive": lambda: naive.compute(embeddings=embeddings, labels=labels, modalities=modalities)},
        max(1, repeats // 3),
    )
    print("1) evaluate path vs numpy core, 3,500 x 1,024 float32, 112 categories")
    print(f"   numpy core  eshot_scores()                       {times['core'] * 1e3:8.1f} ms")
    print(f"   evaluate    metric.compute(), bytes-per-row       {times['metric'] * 1e3:8.1f} ms")
    print(f"   evaluate    same, default Sequence(float32)       {naive_times['naive'] * 1e3:8.1f} ms")
    print(f"   ratio evaluate/core: {times['metric'] / times['core']:.2f}x  (requirement <= 3x;"
          f" default layout would be {naive_times['naive'] / times['core']:.1f}x)")
    print(f"   audio->points top1 {expected['audio_to_points_top1']:.4f}, points->audio top1"
          f" {expected['points_to_audio_top1']:.4f}")
    return {"core_s": times["core"], "metric_s": times["metric"], "default_layout_s": naive_times["naive"],
            "ratio": times["metric"] / times["core"], "default_layout_ratio": naive_times["naive"] / times["core"],
            "rows": 3500, "dim": 1024, "categories": 112, "repeats": repeats}


def scale_child(num_rows: int, dim: int, num_categories: int) -> None:
    """Runs in a fresh process: build the input, then trace what the core allocates on top of it."""
    import resource
    import tracemalloc

    from emm1_lib.evaluation.eshot_protocol import eshot_scores

    embeddings, labels, modalities = eshot_like_inputs(num_rows, dim, num_categories, seed=1)
    category_names = sorted(set(labels.tolist()))
    tracemalloc.start()
    start = time.perf_counter()
    result = eshot_scores(embeddings, labels, modalities, categories=category_names)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({
        "seconds": seconds,
        "traced_peak_bytes": peak,
        "input_bytes": int(embeddings.nbytes),
        "full_similarity_bytes": int((num_rows // 2) * num_categories * 8),
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "audio_to_points_top1": result["audio_to_points_top1"],
        "points_to_audio_top1": result["points_to_audio_top1"],
    }))


def scale_run(num_rows: int, dim: int, num_categories: int) -> Dict[str, float]:
    command = [sys.executable, os.path.abspath(__file__), "--scale-child", str(num_rows), str(dim), str(num_categories)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    stats = json.loads(output.strip().splitlines()[-1])
    mib = 2.0**20
    print(f"2) numpy core at scale: {num_rows:,} queries x {num_categories:,} categories x {dim:,} dims (float32)")
    print(f"   time {stats['seconds']:.1f} s; top1 audio->points {stats['audio_to_points_top1']:.4f},"
          f" points->audio {stats['points_to_audio_top1']:.4f}")
    print(f"   input {stats['input_bytes'] / mib:,.0f} MiB; one direction's full float64 similarity matrix"
          f" {stats['full_similarity_bytes'] / mib:,.0f} MiB (never built)")
    print(f"   peak memory allocated by the core (tracemalloc) {stats['traced_peak_bytes'] / mib:,.0f} MiB"
          f" = {stats['traced_peak_bytes'] / stats['input_bytes']:.2f}x the input,"
          f" {stats['traced_peak_bytes'] / stats['full_similarity_bytes']:.2f}x the full similarity matrix")
    print(f"   peak RSS of the whole process (input included) {stats['max_rss_bytes'] / mib:,.0f} MiB")
    return {**stats, "queries": num_rows, "dim": dim, "categories": num_categories}


def main(argv: List[str] = None) -> Dict[str, Dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timing rounds (the minimum is reported)")
    parser.add_argument("--scale-queries", type=int, default=100_000, help="rows of the scale run")
    parser.add_argument("--scale-categories", type=int, default=1000)
    parser.add_argument("--scale-dim", type=int, default=1024)
    parser.add_argument("--skip-scale", action="store_true", help="only the evaluate/core ratio")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--scale-child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scale_child:
        scale_child(*args.scale_child)
        return {}
    report = {"evaluate": evaluate_ratio(args.repeats)}
    if not args.skip_scale:
        report["scale"] = scale_run(args.scale_queries, args.scale_dim, args.scale_categories)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
