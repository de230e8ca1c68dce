"""Python-row streaming of `phase1_nn1` against stock `datasets` streaming of a Parquet file with the same columns.

    python benchmarks/streaming.py [--scale 0.02] [--rows 100000] [--repeats 3]

(a) emm1: `EMM1("phase1_nn1", decode=False).as_streaming_dataset()`, read from the CSVs (what
    `load_dataset("emm1", ..., streaming=True)` gives).
(b) parquet: `load_dataset("parquet", data_files=..., streaming=True)` of a Parquet file holding the same rows
    and columns (written once from (a)'s prepared table; media columns are `{bytes, path}` structs, as (a)'s
    rows show them undecoded). The file carries no E-MM1 features: stock `datasets` reads it as plain columns.

Each contender reads in three ways: row by row (`for row in ds`), `ds.iter(batch_size=1000)` (Python batches)
and `ds.with_format("arrow").iter(batch_size=10000)` (Arrow tables). Each way, each repeat, is a fresh process.
Rows and batches: it opens both streams and reads them in alternating chunks (2,000 rows, 4 batches), so
machine load hits both alike; a rate counts rows from the second row / batch on (emm1 reads the infos tables
before its first row; that wait is reported apart). The objects alive after opening are frozen out of the
garbage collector (see child()), and the contender opened first alternates between repeats. Arrow: batches are
slices of the tables the generator built, so each contender reads the whole split from opening, one after the
other, the wait included. The table gives the median over repeats and the per-repeat ratios.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict
from typing import List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAYS = ("rows", "batches", "arrow")
CONTENDERS = ("emm1", "parquet")
BATCH_SIZE, ARROW_BATCH_SIZE = 1000, 10_000  # of the Python batches and of the Arrow tables


def _stream(contender: str, tree: str, parquet: str):
    import datasets

    datasets.disable_progress_bars()
    if contender == "parquet":
        return datasets.load_dataset("parquet", data_files=parquet, split="train", streaming=True)
    sys.path.insert(0, REPO)
    import emm1

    builder = emm1.EMM1(config_name="phase1_nn1", data_dir=tree, root_data_path="/data/e-mm1", decode=False)
    return builder.as_streaming_dataset(split="train")


def child(way: str, tree: str, parquet: str, rows: int, first: str = CONTENDERS[0]) -> Dict[str, Dict[str, float]]:
    """Both contenders in this one process, read in alternating chunks; rows/s of each over all its chunks.

    `first`: the contender opened (and read) first; main() alternates it between repeats.
    """
    import gc
    import warnings

    warnings.simplefilter("ignore")
    if way == "arrow":
        return _whole_split_as_arrow(tree, parquet)
    items, first_s = {}, {}
    for contender in sorted(CONTENDERS, key=lambda c: c != first):
        opened = time.perf_counter()
        stream = _stream(contender, tree, parquet)
        if way == "rows":
            iterator, size, chunk = iter(stream), (lambda row: 1), 2000
        else:
            iterator, size, chunk = stream.iter(batch_size=BATCH_SIZE), (lambda batch: len(batch["encord_text_id"])), 4
        next(iterator)  # emm1 reads the infos tables before its first row: timed apart
        first_s[contender] = time.perf_counter() - opened
        items[contender] = iterator
    # A full garbage collection walks every object alive: after opening, the imports and both streams (about
    # 235,000 objects, some 0.07 s a pass). The Python batches set off a few of them per measurement, and which
    # contender's chunk they land in is a matter of phase, not of who made the garbage: it was the first-opened
    # contender's every time, which lost a quarter to 40 % of its rate that way. Frozen, those objects are not
    # walked again, so a collection costs what the rows being read make, for either contender.
    gc.collect()
    gc.freeze()
    counts = {contender: 0 for contender in CONTENDERS}
    seconds = {contender: 0.0 for contender in CONTENDERS}
    turn = 0
    while items and min(counts[c] for c in items) < rows:
        order = list(items) if turn % 2 == 0 else list(items)[::-1]
        turn += 1
        for contender in order:
            started = time.perf_counter()
            try:
                for _ in range(chunk):
                    counts[contender] += size(next(items[contender]))
            except StopIteration:
                del items[contender]  # the split ended before `rows`
            seconds[contender] += time.perf_counter() - started
    return {c: {"rows_per_s": counts[c] / seconds[c], "first_s": first_s[c], "rows": counts[c]} for c in CONTENDERS}


def _whole_split_as_arrow(tree: str, parquet: str) -> Dict[str, Dict[str, float]]:
    """Arrow tables are slices of what the generator built: time the whole split from opening, each in turn."""
    out = {}
    for contender in CONTENDERS:
        opened = time.perf_counter()
        batches = _stream(contender, tree, parquet).with_format("arrow").iter(batch_size=ARROW_BATCH_SIZE)
        first = next(batches).num_rows
        first_s = time.perf_counter() - opened
        count = first + sum(table.num_rows for table in batches)
        out[contender] = {"rows_per_s": count / (time.perf_counter() - opened), "first_s": first_s, "rows": count}
    return out


def write_parquet(tree: str, path: str) -> int:
    """The rows and columns of (a), prepared once with the builder, written with pyarrow (no E-MM1 metadata)."""
    import pyarrow.parquet as pq

    sys.path.insert(0, REPO)
    import emm1

    with tempfile.TemporaryDirectory() as cache:
        builder = emm1.EMM1(config_name="phase1_nn1", data_dir=tree, root_data_path="/data/e-mm1", decode=False,
                            cache_dir=cache)
        builder.download_and_prepare()
        table = builder.as_dataset(split="train").data.table.replace_schema_metadata(None)  # no E-MM1 features
        pq.write_table(table, path)
        return table.num_rows


def main(argv: List[str] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.02, help="size of the generated tree (benchmarks/phase1.py's)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows read by each measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tree-dir", help="where the generated tree is cached (default ~/.cache/emm1/bench-{scale})")
    parser.add_argument("--json", help="write the figures here (per repeat and medians)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        print(json.dumps(child(job["way"], job["tree"], job["parquet"], args.rows, job["first"])), flush=True)
        # Skip interpreter finalization: stock datasets streams the Parquet file through a Python file object
        # (`open(file, "rb")`), which pyarrow wraps in a PyReadableFile. When a Parquet decode task on Arrow's
        # thread pool drops the last reference to that reader after finalization has begun, its destructor asks
        # for the GIL, CPython ends the thread with pthread_exit, and the unwind through C++ destructors aborts
        # the process ("terminate called without an active exception", SIGABRT; apache/arrow#34314). The abort
        # is in datasets + pyarrow, not in the emm1 stream; the result is printed by then.
        sys.stderr.flush()
        os._exit(0)
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import phase1

    tree_dir = os.path.abspath(os.path.expanduser(args.tree_dir or f"~/.cache/emm1/bench-{args.scale:g}"))
    tree = phase1.ensure_tree(tree_dir, args.scale)
    parquet = os.path.join(tree_dir, "phase1_nn1.parquet")
    if not os.path.exists(parquet):
        print(f"writing {parquet} ...", flush=True)
        write_parquet(tree, parquet + ".part")
        os.replace(parquet + ".part", parquet)
    import datasets

    load = os.getloadavg()
    print(f"datasets {datasets.__version__}; tree {tree_dir}; {args.rows} rows per measurement, {args.repeats} "
          f"repeats; {os.cpu_count()} CPUs; load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}",
          flush=True)
    results: Dict[str, Dict[str, List[dict]]] = {}
    for repeat in range(args.repeats):
        for way in WAYS:
            job = {"way": way, "tree": tree, "parquet": parquet, "first": CONTENDERS[repeat % len(CONTENDERS)]}
            out = subprocess.run([sys.executable, __file__, "--child", json.dumps(job), "--rows", str(args.rows)],
                                 capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{way} failed:\n{out.stderr[-3000:]}")
            for contender, result in json.loads(out.stdout.strip().splitlines()[-1]).items():
                results.setdefault(way, {}).setdefault(contender, []).append(result)
                print(f"  repeat {repeat + 1} {way:8s} {contender:8s} {result['rows_per_s']:10,.0f} rows/s over "
                      f"{result['rows']:,} rows (first row after {result['first_s']:.1f} s)", flush=True)
    load = os.getloadavg()
    print(f"load average at end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}\n")
    print(f"{'way':8s} {'emm1 rows/s':>14s} {'parquet rows/s':>15s} {'emm1 / parquet':>15s}   (medians; ratio per repeat)")
    summary = {}
    for way in WAYS:
        ours = [r["rows_per_s"] for r in results[way]["emm1"]]
        stock = [r["rows_per_s"] for r in results[way]["parquet"]]
        ratios = [a / b for a, b in zip(ours, stock)]
        summary[way] = {"emm1": statistics.median(ours), "parquet": statistics.median(stock),
                        "ratio": statistics.median(ratios)}
        print(f"{way:8s} {summary[way]['emm1']:14,.0f} {summary[way]['parquet']:15,.0f} "
              f"{summary[way]['ratio']:15.2f}   ({', '.join(f'{r:.2f}' for r in ratios)})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"datasets": datasets.__version__, "scale": args.scale, "rows": args.rows, "repeats": args.repeats,
                       "tree": tree_dir, "median": summary, "results": results}, f, indent=1)
    return summary


if __name__ == "__main__":
    main()
