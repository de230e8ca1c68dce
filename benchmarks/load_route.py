#!/usr/bin/env python
"""`load_dataset("emm1", data_dir=R)` against the builder class, where R also holds many media files.

    python benchmarks/load_route.py                       # 100k empty media files, 3 interleaved rounds
    python benchmarks/load_route.py --media-files 300000 --repo /path/to/other/checkout

R is a generated released-schema metadata folder that is also the media root, with `--media-files` empty files
in its media folders (`shared/image/`, `e-mm1_100m_only/video/`, `eshot/audio/`), as when the media are
downloaded beside the metadata. Each measurement runs in a fresh Python process (imports excluded from the
timing) into a fresh cache: (a) `EMM1(config_name=..., data_dir=R, ...).download_and_prepare()` + `as_dataset`,
(b) `datasets.load_dataset("emm1", ..., data_dir=R, ...)`. The rounds alternate which goes first; the figure is
the ratio of medians, (b) / (a) (target <= 2). `--repo` times another checkout's code on the same tree.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEDIA_FOLDERS = (os.path.join("shared", "image"), os.path.join("e-mm1_100m_only", "video"), os.path.join("eshot", "audio"))

CHILD = """
import json, sys, time, warnings
sys.path.insert(0, sys.argv[1])
kind, data_dir, cache, config = sys.argv[2:6]
import datasets
import emm1
warnings.simplefilter("ignore")
start = time.perf_counter()
if kind == "builder":
    builder = emm1.EMM1(config_name=config, data_dir=data_dir, root_data_path=data_dir, cache_dir=cache, decode=False)
    builder.download_and_prepare()
    rows = builder.as_dataset(split="train").num_rows
else:
    rows = datasets.load_dataset("emm1", config, data_dir=data_dir, root_data_path=data_dir, cache_dir=cache,
                                 decode=False, split="train").num_rows
print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows}))
"""


def make_tree(work: str, captions: int, media_files: int) -> str:
    """The metadata folder (also the media root) with `media_files` empty media files in it."""
    sys.path.insert(0, REPO)
    from emm1_lib.testing.sample import generate_sample_tree

    tree = generate_sample_tree(os.path.join(work, "tree"), media=False, num_neighbours=1, num_captions=captions,
                                num_media=max(10, captions // 4), num_triplets=16)
    root = tree.metadata_dir
    for folder in MEDIA_FOLDERS:
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    for i in range(media_files):
        open(os.path.join(root, MEDIA_FOLDERS[i % len(MEDIA_FOLDERS)], f"{i}.bin"), "wb").close()
    return root


def run_child(repo: str, kind: str, data_dir: str, cache: str, config: str, timeout: float) -> Dict[str, float]:
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", CHILD, repo, kind, data_dir, cache, config],
                            capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: List[str] = None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media-files", type=int, default=100_000, help="empty media files under data_dir")
    parser.add_argument("--captions", type=int, default=20_000, help="rows of the grouping file")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median per contender)")
    parser.add_argument("--config", default="phase1_nn1")
    parser.add_argument("--repo", default=REPO, help="checkout whose emm1.py / emm1_lib are timed")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per measurement")
    parser.add_argument("--work-dir", help="where the tree and caches go (default: a temporary folder)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    work = args.work_dir or tempfile.mkdtemp(prefix="emm1-load-route-")
    os.makedirs(work, exist_ok=True)
    try:
        started = time.perf_counter()
        data_dir = make_tree(work, args.captions, args.media_files)
        print(f"tree: {data_dir} ({args.captions} captions, {args.media_files} empty media files; "
              f"made in {time.perf_counter() - started:.1f} s); code: {args.repo}", flush=True)
        times: Dict[str, List[float]] = {"builder": [], "load_dataset": []}
        rows = {}
        for round_index in range(args.rounds):
            order = ["builder", "load_dataset"] if round_index % 2 == 0 else ["load_dataset", "builder"]
            for kind in order:
                cache = os.path.join(work, f"cache-{kind}-{round_index}")
                result = run_child(args.repo, kind, data_dir, cache, args.config, args.timeout)
                shutil.rmtree(cache, ignore_errors=True)
                times[kind].append(result["seconds"])
                rows[kind] = result["rows"]
                print(f"  round {round_index} {kind:13s} {result['seconds']:8.2f} s  ({result['rows']} rows)", flush=True)
        if rows["builder"] != rows["load_dataset"]:
            raise RuntimeError(f"the two routes gave different row counts: {rows}")
        summary = {kind: statistics.median(values) for kind, values in times.items()}
        summary["ratio"] = summary["load_dataset"] / summary["builder"]
        print(f"median builder class {summary['builder']:.2f} s, load_dataset {summary['load_dataset']:.2f} s: "
              f"ratio {summary['ratio']:.2f} (target <= 2)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"media_files": args.media_files, "captions": args.captions, "rounds": args.rounds,
                           "config": args.config, "rows": rows["builder"], "seconds": times, "median": summary}, f,
                          indent=1)
        return summary
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
