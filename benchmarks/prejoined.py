#!/usr/bin/env python
"""The pre-joined Parquet generation (the Hub copy) against the CSVs: the same config prepared from each.

    python benchmarks/prejoined.py                                      # the full-size tree, 3 interleaved repeats
    python benchmarks/prejoined.py --scale 0.01                         # a quick run on a 1 % tree

The CSV tree is the phase-1 benchmark's (`benchmarks/phase1.py`: generated once, cached under `--tree-dir`).
Its pre-joined form (`nn_{kk}.parquet` of the config's ranks, written by `emm1_lib.schema.prejoined`, zstd,
row groups of 100,000 rows: what `emm1 export --layout hub` writes) is cached beside it in `--hub-dir`
(default `<tree-dir>-hub`); writing it is timed once. Then the contenders run interleaved, each in a fresh
process (phase1.py's child), into a fresh `datasets` cache:

(csv)     `EMM1(config).download_and_prepare()` with `data_dir` = the CSV tree (reads the grouping file and
          the infos tables, joins);
(parquet) the same call with `data_dir` = the pre-joined tree (reads row groups, joins paths only);
(csv_warm) (csv) with the infos tables' Arrow cache of an earlier run (`<cache_dir>/emm1-infos/`, warmed once,
          untimed): what preparing a second config from the CSVs costs.

Times are the child's `op_s`: from the process start (imports included) to the end of `download_and_prepare`
(the `--verify` digest, computed afterwards, is not timed); CPU seconds (user + system, workers included) are
reported beside them, being less sensitive to other jobs on a shared machine. Ratios are csv / parquet times of the same run;
`--verify` also checks that both outputs hold the same rows (count, id sums, null captions and paths).
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import phase1  # noqa: E402  (the tree, the child processes and their measurements)

REPO = os.path.dirname(HERE)
CONTENDERS = ("csv", "parquet", "csv_warm")


def ensure_prejoined(tree: str, hub_dir: str, nn_indices) -> dict:
    """Write the pre-joined files of `nn_indices` from the CSV tree once (a marker records what was written)."""
    marker = os.path.join(hub_dir, "COMPLETE.json")
    wanted = {"tree": os.path.abspath(tree), "nn": sorted(nn_indices)}
    if os.path.exists(marker):
        with open(marker) as f:
            done = json.load(f)
        if done.get("tree") == wanted["tree"] and set(wanted["nn"]) <= set(done.get("nn", [])):
            return done
    sys.path.insert(0, REPO)
    from emm1_lib.schema.prejoined import write_prejoined_phase1

    data = os.path.join(hub_dir, "metadata", "E-MM1-100M", "data")
    started = time.perf_counter()
    print(f"writing the pre-joined files nn {wanted['nn']} to {data} ...", flush=True)
    written = write_prejoined_phase1(os.path.join(tree, "e-mm1_100m"), data, wanted["nn"])
    wanted.update(write_s=time.perf_counter() - started, bytes={os.path.basename(p): os.path.getsize(p) for p in written})
    with open(marker, "w") as f:
        json.dump(wanted, f)
    print(f"written in {wanted['write_s']:.0f} s ({sum(wanted['bytes'].values()) / 1e9:.2f} GB)", flush=True)
    return wanted


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full E-MM1:100M size (default 1)")
    parser.add_argument("--sizes", choices=("real", "small"), default="real", help="the CSV tree's sizes (as phase1.py)")
    parser.add_argument("--tree-dir", help="the CSV tree's folder (default: phase1.py's for --sizes and --scale)")
    parser.add_argument("--hub-dir", help="where the pre-joined form is cached (default <tree-dir>-hub)")
    parser.add_argument("--work-dir", help="scratch space for the prepared outputs (default <hub-dir>-work)")
    parser.add_argument("--config", default="phase1_nn1", help="phase1_nn{k} or phase1_all")
    parser.add_argument("--num-proc", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--root", default=phase1.DEFAULT_ROOT)
    parser.add_argument("--verify", action="store_true", help="children also report id sums (after timing)")
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args(argv)
    tree_dir = os.path.abspath(os.path.expanduser(args.tree_dir or phase1.default_tree_dir(args.sizes, args.scale)))
    hub_dir = os.path.abspath(args.hub_dir or tree_dir + "-hub")
    work = os.path.abspath(args.work_dir or hub_dir + "-work")
    tree = phase1.ensure_tree(tree_dir, args.scale, args.sizes)
    nn = list(range(1, 17)) if args.config == "phase1_all" else [int(args.config[len("phase1_nn"):])]
    written = ensure_prejoined(tree, hub_dir, nn)
    data_dirs = {"csv": tree, "csv_warm": tree, "parquet": os.path.join(hub_dir, "metadata")}
    phase1.shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    shared = os.path.join(work, "shared-cache")
    os.makedirs(shared)
    child_args = argparse.Namespace(tree_dir=tree, root=args.root)
    phase1.run_child("builder", child_args, shared, args.timeout, config=args.config, options="", num_proc=args.num_proc)
    phase1._clear_except_infos_cache(shared)  # the infos cache of csv_warm, warmed by one untimed run
    results = {c: [] for c in CONTENDERS}
    for repeat in range(args.repeats):
        order = CONTENDERS[repeat % len(CONTENDERS):] + CONTENDERS[:repeat % len(CONTENDERS)]
        for kind in order:
            out = shared if kind == "csv_warm" else os.path.join(work, f"{kind}-{repeat}")
            os.makedirs(out, exist_ok=kind == "csv_warm")
            child_args = argparse.Namespace(tree_dir=data_dirs[kind], root=args.root)
            extra = {"config": args.config, "options": "", "num_proc": args.num_proc}
            if args.verify:
                extra["verify"] = True
            result = phase1.run_child("builder", child_args, out, args.timeout, **extra)
            results[kind].append(result)
            if kind == "csv_warm":
                phase1._clear_except_infos_cache(out)
            else:
                phase1.shutil.rmtree(out, ignore_errors=True)
            print(f"  repeat {repeat} {kind:8s} {result.get('op_s', result['wall_s']):7.2f} s  "
                  f"peak {phase1._gb(result.get('peak_rss'))}"
                  + (" (TIMEOUT)" if "timeout" in result else ""), flush=True)
    report = {"scale": args.scale, "config": args.config, "num_proc": args.num_proc, "prejoined": written,
              "results": results}
    print_report(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


def print_report(report: dict) -> None:
    results = report["results"]
    done = {k: [r for r in runs if "timeout" not in r] for k, runs in results.items()}
    print(f"\n{report['config']} (num_proc={report['num_proc']}), scale {report['scale']}: "
          f"{max(len(r) for r in results.values())} interleaved repeats, each in a fresh process")
    print(f"pre-joined files: {sum(report['prejoined']['bytes'].values()) / 1e9:.2f} GB, written in "
          f"{report['prejoined'].get('write_s', 0):.0f} s (once)")
    print(f"{'input':10s} {'median s':>9s} {'min s':>7s} {'CPU s':>7s} {'peak RSS':>10s} {'rows':>12s}")
    for kind, runs in done.items():
        if not runs:
            print(f"{kind:10s} timed out")
            continue
        print(f"{kind:10s} {statistics.median(r['op_s'] for r in runs):9.2f} {min(r['op_s'] for r in runs):7.2f} "
              f"{statistics.median(r['cpu_s'] for r in runs):7.2f} {phase1._gb(statistics.median(r['peak_rss'] for r in runs)):>10s} {runs[0]['digest']['rows']:12,d}")
    for csv_kind in ("csv", "csv_warm"):
        if not (done.get(csv_kind) and done["parquet"]):
            continue
        pairs = [c["op_s"] / p["op_s"] for c, p in zip(results[csv_kind], results["parquet"])
                 if "timeout" not in c and "timeout" not in p]
        median = statistics.median(r["op_s"] for r in done[csv_kind]) / statistics.median(r["op_s"] for r in done["parquet"])
        fastest = min(r["op_s"] for r in done[csv_kind]) / min(r["op_s"] for r in done["parquet"])
        cpu = statistics.median(r["cpu_s"] for r in done[csv_kind]) / statistics.median(r["cpu_s"] for r in done["parquet"])
        print(f"{csv_kind} / parquet: {median:.2f}x (medians), {fastest:.2f}x (minima), {cpu:.2f}x (CPU seconds); "
              f"per repeat {', '.join(f'{x:.2f}x' for x in pairs)}")
        same = done[csv_kind][0]["digest"] == done["parquet"][0]["digest"]
        print(f"outputs {'agree' if same else 'DIFFER'} on {', '.join(done[csv_kind][0]['digest'])}")


if __name__ == "__main__":
    main()
