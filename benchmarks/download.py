"""`emm1 download` against the released guide's loops, same run, local servers with injected latency.

Three figures (ratios of the same run, so the machine matters less):
1. URL images: items/s of `emm1 download` with `--workers` threads vs the guide's sequential
   `requests.get` loop, every request delayed by `--latency` seconds by the server.
2. A COCO-like zip: bytes transferred for a 1 % subset (range requests) vs downloading the whole archive.
3. A rerun with everything present: seconds for `download()` over `--rerun-items` planned items whose files
   and manifest records exist (target: <= 2 s for 100k).
4. YouTube clips (`--clips`, needs yt-dlp): items/s of `emm1 download` with `--workers` threads vs the guide's
   loop, one yt-dlp section download after the other (the guide's `--download-sections *start-end`, run through
   yt-dlp's Python API here so that no process start-up is counted against the guide), each request delayed by
   `--clip-latency` seconds. emm1 also converts each clip to its destination format and decodes it.

    python benchmarks/download.py                       # the figures of docs/downloading.md
    python benchmarks/download.py --images 40 --zip-members 300 --rerun-items 2000 --clips 8   # a quick check
    python benchmarks/download.py --only clips --clip-latency 0.25                               # YouTube only
"""
import argparse
import io
import json
import os
import sys
import tempfile
import time
import zipfile
from typing import Dict, List, Optional

import numpy as np
import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emm1_lib.acquire.plan import ITEM_SCHEMA, Plan  # noqa: E402
from emm1_lib.acquire.run import DownloadOptions, download  # noqa: E402
from emm1_lib.acquire.sources import Source  # noqa: E402
from emm1_lib.acquire.store import manifest_path  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from http_servers import MediaServer, Route  # noqa: E402  (the tests' stand-in media server)


def _jpeg(seed: int, size: int = 64) -> bytes:
    import PIL.Image

    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    PIL.Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def _items(source: str, file_ids: List[str], folder: str = "bench") -> pa.Table:
    n = len(file_ids)
    return pa.table({
        "modality": ["image"] * n, "id": list(range(n)), "source": [source] * n, "file_id": file_ids,
        "youtube_id": pa.nulls(n, pa.string()), "start_time": pa.nulls(n, pa.float64()),
        "end_time": pa.nulls(n, pa.float64()),
        "destination": [f"{folder}/image/{i // 10000}/{i}.jpg" for i in range(n)], "split": ["phase1"] * n,
    }, schema=ITEM_SCHEMA)


def url_images(work: str, images: int, workers: int, latency: float) -> Dict[str, float]:
    import requests

    bodies = [_jpeg(i) for i in range(images)]
    with MediaServer(latency=latency) as server:
        urls = [server.add(f"/img/{i}.jpg", Route(body, "image/jpeg")) for i, body in enumerate(bodies)]
        # the guide's loop: one request after the other, write each body
        sequential_dir = os.path.join(work, "sequential")
        os.makedirs(sequential_dir)
        start = time.perf_counter()
        for i, url in enumerate(urls):
            response = requests.get(url, timeout=60)
            with open(os.path.join(sequential_dir, f"{i}.jpg"), "wb") as f:
                f.write(response.content)
        sequential = time.perf_counter() - start
        plan = Plan(_items("urls", urls), {"urls": images})
        sources = {"urls": Source("urls", "url")}
        start = time.perf_counter()
        reports = download(plan, os.path.join(work, "emm1"), sources, DownloadOptions(workers=workers, per_host=workers))
        ours = time.perf_counter() - start
    assert reports["urls"].fetched == images, reports["urls"]
    return {"images": images, "latency_s": latency, "workers": workers,
            "sequential_items_per_s": images / sequential, "emm1_items_per_s": images / ours,
            "speedup": sequential / ours}


def zip_subset(work: str, members: int, fraction: float) -> Dict[str, float]:
    import requests

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(members):
            archive.writestr(f"train2017/{i:012d}.jpg", _jpeg(i, size=96))
    body = buffer.getvalue()
    wanted = np.random.default_rng(0).choice(members, size=max(1, int(members * fraction)), replace=False)
    with MediaServer() as server:
        url = server.add("/train2017.zip", Route(body, "application/zip"))
        start = time.perf_counter()
        whole = requests.get(url, timeout=60).content  # the guide: download the archive, then unzip
        whole_s = time.perf_counter() - start
        whole_bytes, server.bytes_sent = server.bytes_sent, 0
        assert len(whole) == len(body)
        plan = Plan(_items("COCO", [str(i) for i in sorted(wanted)]), {"COCO": len(wanted)})
        sources = {"COCO": Source("COCO", "http_zip", url, "train2017/{file_id:012d}.jpg", "int")}
        start = time.perf_counter()
        reports = download(plan, os.path.join(work, "zip"), sources, DownloadOptions(workers=8))
        ours_s = time.perf_counter() - start
        ours_bytes = server.bytes_sent
    assert reports["COCO"].fetched == len(wanted), reports["COCO"]
    return {"archive_bytes": len(body), "members": members, "subset": len(wanted),
            "whole_archive_bytes": whole_bytes, "emm1_bytes": ours_bytes, "bytes_ratio": ours_bytes / whole_bytes,
            "whole_archive_s": whole_s, "emm1_s": ours_s}


def rerun(work: str, items: int) -> Dict[str, float]:
    root = os.path.join(work, "rerun")
    plan = Plan(_items("urls", [f"http://127.0.0.1:9/{i}.jpg" for i in range(items)]), {"urls": items})
    body = b"x" * 100
    with open(manifest_path(root), "w") as manifest:
        for destination in plan.items["destination"].to_pylist():
            path = os.path.join(root, destination)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(body)
            manifest.write(json.dumps({"destination": destination, "status": "ok", "bytes": len(body)}) + "\n")
    sources = {"urls": Source("urls", "url")}
    start = time.perf_counter()
    reports = download(plan, root, sources, DownloadOptions(workers=8))
    seconds = time.perf_counter() - start
    assert reports["urls"].present == items and reports["urls"].fetched == 0, reports["urls"]
    return {"items": items, "seconds": seconds}


def _clip_mp4(path: str, seconds: int = 12, rate: int = 16000) -> bytes:
    """A `seconds` s AAC MP4 (a 440 Hz tone): a YouTube audio track's stand-in."""
    from fractions import Fraction

    import av

    with av.open(path, mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        t = np.arange(seconds * rate) / rate
        frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :],
                                           format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with open(path, "rb") as f:
        return f.read()


def youtube_clips(work: str, clips: int, workers: int, latency: float) -> Dict[str, float]:
    import imageio_ffmpeg
    import yt_dlp
    from yt_dlp.utils import download_range_func

    body = _clip_mp4(os.path.join(work, "clip.mp4"))
    ids = [f"clip{i:05d}" for i in range(clips)]
    starts = [float(i % 8) for i in range(clips)]
    with MediaServer(latency=latency) as server:
        for youtube_id in ids:
            server.add(f"/yt/{youtube_id}.mp4", Route(body, "video/mp4"))
        template = server.url("/yt/{youtube_id}.mp4")
        # the guide's loop: one yt-dlp section download after the other
        sequential_dir = os.path.join(work, "clips-sequential")
        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor

        FFmpegPostProcessor._ffmpeg_location.set(ffmpeg)  # what yt-dlp's command line does with --ffmpeg-location
        requests_before = server.requests
        start = time.perf_counter()
        for youtube_id, begin in zip(ids, starts):
            options = {"outtmpl": os.path.join(sequential_dir, f"{youtube_id}.%(ext)s"), "quiet": True,
                       "noprogress": True, "ffmpeg_location": ffmpeg, "cachedir": False,
                       "download_ranges": download_range_func(None, [(begin, begin + 4.0)])}
            with yt_dlp.YoutubeDL(options) as ydl:
                assert ydl.download([template.replace("{youtube_id}", youtube_id)]) == 0
        sequential = time.perf_counter() - start
        requests_per_clip = (server.requests - requests_before) / clips
        n = len(ids)
        items = pa.table({
            "modality": ["audio"] * n, "id": list(range(n)), "source": ["clips"] * n, "file_id": pa.nulls(n, pa.string()),
            "youtube_id": ids, "start_time": starts, "end_time": [s + 4.0 for s in starts],
            "destination": [f"bench/video/{youtube_id}.mp4" for youtube_id in ids], "split": ["phase1"] * n,
        }, schema=ITEM_SCHEMA)
        sources = {"clips": Source("clips", "youtube", template)}
        start = time.perf_counter()
        reports = download(Plan(items, {"clips": n}), os.path.join(work, "clips-emm1"), sources,
                           DownloadOptions(workers=workers, per_host=workers))
        ours = time.perf_counter() - start
    assert reports["clips"].fetched == clips, reports["clips"]
    return {"clips": clips, "latency_s": latency, "workers": workers, "requests_per_clip": requests_per_clip,
            "sequential_items_per_s": clips / sequential, "emm1_items_per_s": clips / ours,
            "speedup": sequential / ours}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300, help="URL images to fetch")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server waits per request")
    parser.add_argument("--zip-members", type=int, default=3000)
    parser.add_argument("--fraction", type=float, default=0.01, help="share of the zip's members to fetch")
    parser.add_argument("--rerun-items", type=int, default=100_000)
    parser.add_argument("--clips", type=int, default=64, help="YouTube clips (4 s sections of a served MP4)")
    parser.add_argument("--clip-latency", type=float, default=0.05, help="seconds the server waits per clip request")
    parser.add_argument("--only", nargs="+", choices=("images", "zip", "rerun", "clips"),
                        help="run only these parts (default: all)")
    parser.add_argument("--json", help="write the figures here")
    return parser


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, float]]:
    args = build_parser().parse_args(argv)
    parts = set(args.only or ("images", "zip", "rerun", "clips"))
    report: Dict[str, Dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="emm1-download-bench-") as work:
        if "images" in parts:
            report["url_images"] = url_images(work, args.images, args.workers, args.latency)
        if "zip" in parts:
            report["zip_subset"] = zip_subset(work, args.zip_members, args.fraction)
        if "rerun" in parts:
            report["rerun"] = rerun(work, args.rerun_items)
        if "clips" in parts:
            report["youtube_clips"] = youtube_clips(work, args.clips, args.workers, args.clip_latency)
    if "url_images" in report:
        u = report["url_images"]
        print(f"URL images ({u['images']}, {u['latency_s'] * 1000:.0f} ms per request): sequential "
              f"{u['sequential_items_per_s']:.1f} items/s, emm1 download --workers {u['workers']} "
              f"{u['emm1_items_per_s']:.1f} items/s: {u['speedup']:.1f}x")
    if "zip_subset" in report:
        z = report["zip_subset"]
        print(f"zip subset ({z['subset']} of {z['members']} members): {z['emm1_bytes']} bytes vs whole archive "
              f"{z['whole_archive_bytes']}: {100 * z['bytes_ratio']:.2f} %")
    if "rerun" in report:
        r = report["rerun"]
        print(f"rerun, everything present: {r['items']} items in {r['seconds']:.2f} s")
    if "youtube_clips" in report:
        c = report["youtube_clips"]
        print(f"YouTube clips ({c['clips']}, {c['latency_s'] * 1000:.0f} ms per request, "
              f"{c['requests_per_clip']:.1f} requests a clip): sequential yt-dlp {c['sequential_items_per_s']:.2f} "
              f"items/s, emm1 download --workers {c['workers']} {c['emm1_items_per_s']:.2f} items/s: "
              f"{c['speedup']:.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
