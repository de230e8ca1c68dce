"""Export with media and streaming decoded media from the (stand-in) Hub, each against its reference.

    python benchmarks/export_media.py [--captions 1500] [--rounds 3] [--work-dir DIR]

A. Export MB/s: `export_media` (emm1 export --embed-media) against `Dataset.push_to_hub`'s own embedding
   path on the same prepared config: per shard `shard.with_format("arrow").map(embed_table_storage)` then
   `to_parquet` (what push_to_hub runs before uploading), the same number of shards. MB/s = media bytes
   embedded / wall time; peak RSS of each side's process.
B. Streaming decoded rows: `load_dataset(repo, streaming=True)` from the stand-in Hub (tests/standin_hub.py,
   127.0.0.1) -> `emm1.resolve` -> torch DataLoader with 2 workers, against the builder's prepared config with
   the media decoded from local files through the same DataLoader (2 workers). Per row both sides decode the
   image, the audio, the point cloud and the first video frame. Both sides' processes run with
   ARROW_DEFAULT_MEMORY_POOL=system (`--arrow-memory-pool`; docs/publishing.md says why). Reported: rows/s of the
   whole run (timed from the DataLoader's start), steady-state rows/s (the second half of the rows) and the time
   to the first row counted from `load_dataset` (Hub API calls, data files, card) / the prepared builder.

Every measurement runs in a fresh process; rounds interleave the two sides with alternating order, so machine
load affects both alike; the ratio is of each side's best round. The tree: one phase-1 config whose media have
realistic sizes (320x240 JPEG/PNG, 5 s audio, 24-frame 160x120 video, OpenShape points of 10,000).
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Dict
from typing import List

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

CONFIG = "phase1_nn1"
HUB_REPO = "bench/e-mm1-media"

PREAMBLE = r'''
import json, os, resource, sys, time, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, REPO_ROOT)
spec = json.loads(SPEC)
def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
'''

OURS = PREAMBLE + r'''
import shutil
from emm1_lib.tools.export_media import export_media
shutil.rmtree(spec["out"], ignore_errors=True)
start = time.perf_counter()
result = export_media(spec["out"], spec["meta"], spec["root"], [spec["config"]], all_licenses=True,
                      cache_dir=spec["cache"], num_workers=spec["workers"], max_shard_bytes=spec["shard_bytes"])
seconds = time.perf_counter() - start
media = sum(v.embedded_bytes for c in result.configs for v in c.counts.values())
print(json.dumps({"seconds": seconds, "media_bytes": media, "peak_mb": peak_mb(), "files": len(result.written)}))
'''

REFERENCE = PREAMBLE + r'''
import shutil
import datasets
from datasets.table import embed_table_storage
from emm1_lib.builders.registry import builder_config_names
shutil.rmtree(spec["out"], ignore_errors=True)
os.makedirs(spec["out"])
builder = builder_config_names()[spec["config"]](config_name=spec["config"], data_dir=spec["meta"],
                                                 root_data_path=spec["root"], decode=False, cache_dir=spec["cache"])
builder.download_and_prepare()
ds = builder.as_dataset(split="train")
datasets.disable_progress_bars()
start = time.perf_counter()
media = 0
for index in range(spec["shards"]):
    shard = ds.shard(spec["shards"], index, contiguous=True)
    # Dataset.push_to_hub (datasets.arrow_dataset._push_parquet_shards_to_hub): embed, then to_parquet
    shard = shard.with_format("arrow").map(embed_table_storage, batched=True, batch_size=100,
                                           keep_in_memory=False, cache_file_name=os.path.join(spec["out"], f"m{index}.arrow"))
    shard.to_parquet(os.path.join(spec["out"], f"train-{index:05d}.parquet"))
    table = shard.data.table
    for m in ("image", "audio", "video", "points"):
        media += sum(len(b) for b in table[m].combine_chunks().field("bytes").to_pylist() if b is not None)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "media_bytes": media, "peak_mb": peak_mb()}))
'''

LOADER = PREAMBLE + r'''
import itertools
import datasets
import torch
import emm1

def touch(row):
    """The same work per row on both sides: decoded image, audio, points, and the first video frame."""
    n = row["image"].size[0] + len(row["audio"]["array"]) + len(row["points"]["xyz"])
    n += int(row["video"][0].shape[0])
    return n

setup = time.perf_counter()
if spec["side"] == "hub":
    import pyarrow.dataset as pds
    options = {} if spec["stock_options"] else dict(
        fragment_scan_options=pds.ParquetFragmentScanOptions(pre_buffer=False),
        storage_options={"hf": {"block_size": 8 << 20}})
    stream = datasets.load_dataset(spec["repo"], spec["config"], split="train", streaming=True, **options)
    data = emm1.resolve(stream)
else:
    builder = emm1.EMM1(config_name=spec["config"], data_dir=spec["meta"], root_data_path=spec["root"],
                        cache_dir=spec["cache"])
    builder.download_and_prepare()
    data = builder.as_dataset(split="train")
loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=2, collate_fn=touch)
start = time.perf_counter()
setup_s = start - setup  # load_dataset (Hub API calls, data files, card) + resolve, or the prepared builder
stamps = [time.perf_counter() - start for _ in loader]
rows, seconds = len(stamps), stamps[-1]
half = stamps[rows // 2]  # steady state: the second half of the rows, startup and first reads behind
print(json.dumps({"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "peak_mb": peak_mb(),
                  "setup_s": setup_s, "first_row_s": setup_s + stamps[0],
                  "steady_rows_per_s": (rows - 1 - rows // 2) / (seconds - half)}))
sys.stdout.flush()
os._exit(0)
'''


def run(code: str, spec: Dict, env: Dict[str, str] = None) -> Dict:
    text = code.replace("REPO_ROOT", repr(str(REPO_ROOT))).replace("SPEC", repr(json.dumps(spec)))
    done = subprocess.run([sys.executable, "-c", text], capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"child failed:\n{done.stderr[-6000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_tree(work: pathlib.Path, captions: int):
    """A one-rank tree whose media files have realistic sizes."""
    from emm1_lib.testing.sample import generate_sample_tree
    from emm1_lib.testing.sample_media import write_audio, write_image, write_openshape_npy, write_video

    tree = generate_sample_tree(str(work / "tree"), schema="released", num_captions=captions, num_media=24,
                                num_neighbours=1, num_triplets=8, formats={"points": (".npy",)})
    for seed, path in enumerate(sorted(pathlib.Path(tree.root).rglob("*.*"))):
        kind = path.parent.name
        if kind == "image":
            write_image(path, seed, size=(320, 240))
        elif kind == "audio":
            write_audio(path, seed, seconds=5.0)
        elif kind == "video":
            write_video(path, seed, num_frames=24, size=(160, 120))
        elif kind == "points":
            write_openshape_npy(path, seed, n=10_000)
    return tree


def main(argv: List[str] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captions", type=int, default=1500, help="rows of the exported config")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="export_media num_workers")
    parser.add_argument("--shards", type=int, default=4, help="shards of the export (both sides)")
    parser.add_argument("--work-dir", help="keep the tree and exports here (default: a temporary folder)")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--skip-streaming", action="store_true")
    parser.add_argument("--stock-options", action="store_true",
                        help="stream with load_dataset's defaults (pyarrow pre-buffering on) instead of pre_buffer=False "
                             "and 8 MiB blocks")
    parser.add_argument("--arrow-memory-pool", default="system", choices=("system", "mimalloc", "jemalloc", "default"),
                        help="ARROW_DEFAULT_MEMORY_POOL of both streaming sides' processes (default: system, as "
                             "docs/publishing.md recommends for DataLoader workers; 'default': pyarrow's own)")
    parser.add_argument("--skip-export", action="store_true",
                        help="reuse the tree and export of an earlier run in --work-dir; measure streaming only")
    args = parser.parse_args(argv)
    if args.captions < 3:
        parser.error("--captions must be at least 3: the steady-state rate is taken over the second half of the rows")
    work = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix="emm1-bench-media-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.skip_export:
        tree = argparse.Namespace(metadata_dir=str(work / "tree" / "metadata"), root=str(work / "tree" / "media"))
    else:
        tree = make_tree(work, args.captions)
    media_bytes = sum(p.stat().st_size for p in pathlib.Path(tree.root).rglob("*.*"))
    base = {"meta": tree.metadata_dir, "root": tree.root, "cache": str(work / "cache"), "config": CONFIG}
    report = {"captions": args.captions, "media_files_bytes": media_bytes, "rounds": args.rounds}
    if not args.skip_export:
        report["export"] = export_rounds_report(args, base, work)
    if not args.skip_streaming:
        report["streaming"] = streaming_report(args, base, work)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


def export_rounds_report(args, base: Dict, work: pathlib.Path) -> Dict:
    # Size the shards from a first export, so both sides write the same number of shards.
    probe = run(OURS, {**base, "out": str(work / "ours"), "workers": args.workers, "shard_bytes": 500 * 10**6})
    shard_bytes = int(probe["media_bytes"] / args.shards * 1.15) + (1 << 20)
    ours_spec = {**base, "out": str(work / "ours"), "workers": args.workers, "shard_bytes": shard_bytes}
    ref_spec = {**base, "out": str(work / "reference"), "shards": args.shards}
    export_rounds: Dict[str, List[Dict]] = {"ours": [], "push_to_hub_embedding": []}
    for r in range(args.rounds):
        order = [("ours", OURS, ours_spec), ("push_to_hub_embedding", REFERENCE, ref_spec)]
        for name, code, spec in (order if r % 2 == 0 else order[::-1]):
            export_rounds[name].append(run(code, spec))
    best = {k: min(v, key=lambda x: x["seconds"]) for k, v in export_rounds.items()}
    mbps = {k: v["media_bytes"] / v["seconds"] / 1e6 for k, v in best.items()}
    report = {"mb_per_s": mbps, "ratio": mbps["ours"] / mbps["push_to_hub_embedding"],
              "peak_mb": {k: v["peak_mb"] for k, v in best.items()}, "shard_bytes": shard_bytes,
              "embedded_mb": best["ours"]["media_bytes"] / 1e6, "all": export_rounds}
    print(f"export: ours {mbps['ours']:.1f} MB/s, push_to_hub embedding {mbps['push_to_hub_embedding']:.1f} MB/s, "
          f"ratio {report['ratio']:.2f}x; peak RSS ours {best['ours']['peak_mb']:.0f} MB, "
          f"reference {best['push_to_hub_embedding']['peak_mb']:.0f} MB (shards of {shard_bytes / 1e6:.1f} MB)")
    return report


def streaming_report(args, base: Dict, work: pathlib.Path) -> Dict:
    from standin_hub import StandinHub

    with StandinHub() as hub:
        hub.add_repo(HUB_REPO, str(work / "ours"))
        env = hub.client_env(hf_home=str(work / "hf-home"))
        env["PYTHONPATH"] = str(REPO_ROOT)
        env.pop("ARROW_DEFAULT_MEMORY_POOL", None)
        if args.arrow_memory_pool != "default":
            env["ARROW_DEFAULT_MEMORY_POOL"] = args.arrow_memory_pool
        # The stand-in hashes an LFS file (SHA-256, its CDN name) at its first request; the Hub has it stored.
        for shard in sorted((work / "ours").rglob("*.parquet")):
            urllib.request.urlopen(urllib.request.Request(
                f"{hub.endpoint}/datasets/{HUB_REPO}/resolve/main/{shard.relative_to(work / 'ours').as_posix()}",
                method="HEAD"), timeout=600).close()
        stream_rounds: Dict[str, List[Dict]] = {"hub": [], "local": []}
        for r in range(args.rounds):
            sides = ["hub", "local"] if r % 2 == 0 else ["local", "hub"]
            for side in sides:
                cpu = time.process_time()  # this process runs the stand-in's server threads
                result = run(LOADER, {**base, "side": side, "repo": HUB_REPO,
                                    "stock_options": args.stock_options}, env)
                result["server_cpu_s"] = time.process_time() - cpu
                stream_rounds[side].append(result)
        read = sum(hub.bytes_read(HUB_REPO).values())
    best_s = {k: max(v, key=lambda x: x["rows_per_s"]) for k, v in stream_rounds.items()}
    best_steady = {k: max(x["steady_rows_per_s"] for x in v) for k, v in stream_rounds.items()}
    first_row = {k: min(x["first_row_s"] for x in v) for k, v in stream_rounds.items()}
    report = {"rows_per_s": {k: v["rows_per_s"] for k, v in best_s.items()},
              "local_over_hub": best_s["local"]["rows_per_s"] / best_s["hub"]["rows_per_s"],
              "steady_rows_per_s": best_steady, "steady_local_over_hub": best_steady["local"] / best_steady["hub"],
              "first_row_s": first_row, "arrow_memory_pool": args.arrow_memory_pool,
              "hub_bytes_read_all_rounds": read, "all": stream_rounds}
    print(f"streaming decoded rows, 2-worker DataLoader: hub {best_s['hub']['rows_per_s']:.0f} rows/s, "
          f"local files {best_s['local']['rows_per_s']:.0f} rows/s, local/hub {report['local_over_hub']:.2f}x; "
          f"the stand-in server used {best_s['hub']['server_cpu_s']:.1f} s CPU on this machine in the hub run")
    print(f"  steady state (second half of the rows): hub {best_steady['hub']:.0f} rows/s, local {best_steady['local']:.0f} "
          f"rows/s, local/hub {report['steady_local_over_hub']:.2f}x; time to first row (load_dataset + resolve + "
          f"DataLoader start): hub {first_row['hub']:.2f} s, local {first_row['local']:.2f} s; "
          f"ARROW_DEFAULT_MEMORY_POOL={args.arrow_memory_pool}")
    return report


if __name__ == "__main__":
    main()
