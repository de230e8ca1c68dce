"""`emm1 download --engine dask`: throughput of a 2-worker LocalCluster against a 1-worker one, same run.

URL images served by the tests' `MediaServer` on 127.0.0.1, every request delayed by `--latency` seconds (the
stand-in for remote hosts). Each round starts a fresh LocalCluster of worker processes (one task at a time per
worker, `--threads` fetch threads per task) for 1 and then 2 workers (the order alternates between rounds), downloads
the same plan into a fresh ROOT and times `download_dask` alone (cluster start-up excluded). The figure is the
median over rounds of the per-round ratio, so a machine busy with other work matters less.

    python benchmarks/download_cluster.py                      # the figure of docs/downloading.md
    python benchmarks/download_cluster.py --images 40 --rounds 1 --latency 0   # a quick check
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emm1_lib.acquire.engines import download_dask  # noqa: E402
from emm1_lib.acquire.plan import ITEM_SCHEMA, Plan  # noqa: E402
from emm1_lib.acquire.run import DownloadOptions  # noqa: E402
from emm1_lib.acquire.sources import Source  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from http_servers import MediaServer, Route  # noqa: E402  (the tests' stand-in media server)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from download import _jpeg  # noqa: E402  (this folder's single-machine benchmark: the same images)


def _plan(urls: List[str]) -> Plan:
    import pyarrow as pa

    n = len(urls)
    items = pa.table({
        "modality": ["image"] * n, "id": list(range(n)), "source": ["urls"] * n, "file_id": urls,
        "youtube_id": pa.nulls(n, pa.string()), "start_time": pa.nulls(n, pa.float64()),
        "end_time": pa.nulls(n, pa.float64()), "destination": [f"bench/image/{i}.jpg" for i in range(n)],
        "split": ["phase1"] * n,
    }, schema=ITEM_SCHEMA)
    return Plan(items, {"urls": n})


def _timed_run(n_workers: int, plan: Plan, root: str, options: DownloadOptions) -> float:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            client.wait_for_workers(n_workers)
            client.run(lambda: __import__("emm1_lib.acquire.engines"))  # imports are start-up, not throughput
            start = time.perf_counter()
            reports = download_dask(plan, root, {"urls": Source("urls", "url")}, options, client)
            seconds = time.perf_counter() - start
    assert reports["urls"].fetched == plan.items.num_rows, reports["urls"]
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=480, help="URL images in the plan")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the server waits per request")
    parser.add_argument("--threads", type=int, default=4, help="fetch threads per task on a worker (--workers)")
    parser.add_argument("--shard-items", type=int, default=20, help="items per task")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the figures here")
    return parser


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    args = build_parser().parse_args(argv)
    bodies = [_jpeg(i) for i in range(args.images)]
    options = DownloadOptions(workers=args.threads, per_host=args.threads, timeout=60.0, progress=False,
                              shard_items=args.shard_items)
    times: Dict[int, List[float]] = {1: [], 2: []}
    ratios = []
    with MediaServer(latency=args.latency) as server, tempfile.TemporaryDirectory(prefix="emm1-cluster-bench-") as work:
        plan = _plan([server.add(f"/img/{i}.jpg", Route(body, "image/jpeg")) for i, body in enumerate(bodies)])
        for round_ in range(args.rounds):
            for n in ((1, 2) if round_ % 2 == 0 else (2, 1)):
                times[n].append(_timed_run(n, plan, os.path.join(work, f"r{round_}-w{n}"), options))
            ratios.append(times[1][-1] / times[2][-1])
    report = {"images": args.images, "latency_s": args.latency, "threads_per_task": args.threads,
              "shard_items": args.shard_items, "rounds": args.rounds,
              "items_per_s_1_worker": [args.images / t for t in times[1]],
              "items_per_s_2_workers": [args.images / t for t in times[2]],
              "ratios": ratios, "ratio": statistics.median(ratios)}
    print(f"{args.images} URL images, {args.latency * 1000:.0f} ms per request, {args.threads} fetch threads per "
          f"task, {args.shard_items} items per task, {args.rounds} round(s)")
    print(f"1 worker : {statistics.median(report['items_per_s_1_worker']):.1f} items/s (median)")
    print(f"2 workers: {statistics.median(report['items_per_s_2_workers']):.1f} items/s (median)")
    print(f"ratio 2/1: {report['ratio']:.2f}x (per round: {', '.join(f'{r:.2f}' for r in ratios)})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
