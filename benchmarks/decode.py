"""Decode throughput of each media type through a `datasets.Dataset` with the E-MM1 features, by each way users
read rows, relative to a plain loop reading the same files with the same library.

    python benchmarks/decode.py [--files 100] [--rounds 3] [--passes 5] [--routes rows,getitem,iter,loader] [--workers 2]

Routes (the dataset side; the plain side reads the same files with the plain reader in the same pattern):
  rows     `for row in ds`                          vs `for path in paths: read(path)`
  getitem  `ds[i]` for every i                      vs the same plain loop
  iter     `ds.iter(batch_size=B)`                  vs plain batches `[read(path) for path in batch_paths]`
  loader   torch `DataLoader(ds, batch_size=B, num_workers=W)` vs a `DataLoader` over a map-style dataset of
           paths whose `__getitem__` is the plain reader; in both, the workers consume the decoded values
           (a video's frames are decoded there), only a count comes back.

Every (media, route) pair runs in a fresh process (`--child`) per round: both sides make one warm-up pass (page
cache, imports, codec init, workers started), then `--passes` timed passes each, interleaved in alternating
order so machine load affects both alike; each side's fastest pass counts. The figure is the ratio of
throughputs, dataset / plain, per round, by the process's CPU time (`time.process_time`: waiting for a core on
a loaded machine does not count) except for the loader route, whose work runs in its workers (wall time);
ratios by wall time are printed too. The tables give the median over rounds and the range. Absolute rates depend on the machine and are printed for
context only. The load average is printed at the start and the end.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any
from typing import Callable
from typing import Dict
from typing import List

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Realistic sizes (the test fixtures are tiny): per-file decoding, not per-row overhead, should dominate.
IMAGE_SIZE = (320, 240)
AUDIO_SECONDS = 5.0
VIDEO_FRAMES, VIDEO_SIZE = 24, (160, 120)
POINTS = 10000  # OpenShape files hold 10,000 points

ROUTES = ("rows", "getitem", "iter", "loader")


# ------------------------------------------------------------------ plain readers (return the decoded value)
def plain_image(path: str) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image


def plain_soundfile(path: str) -> Any:
    import soundfile

    return soundfile.read(path, dtype="float32")


def plain_pyav_audio(path: str) -> Any:
    import av
    import numpy as np

    with av.open(path) as container:
        return np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)


def plain_pyav_video(path: str) -> Any:
    import av
    import numpy as np

    with av.open(path) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def plain_numpy_points(path: str) -> Any:
    import numpy as np

    # the usual OpenShape loader (unsafe on untrusted files; fine on our own benchmark files)
    record = np.load(path, allow_pickle=True).item()
    return np.asarray(record["xyz"], np.float32), np.asarray(record["rgb"], np.float32)


def consume_nothing(value: Any) -> None:
    """Images, audio and point clouds are decoded when the row is read."""


def consume_video(reader: Any) -> None:
    """A `VideoReader` is lazy: decode every frame, as the plain loop does."""
    reader.get_frames(range(reader.num_frames))
    reader.close()


# (name, modality, suffix, plain reader, consumer of the dataset's decoded value)
CASES = [
    ("image .jpg 320x240 (Pillow)", "image", ".jpg", plain_image, consume_nothing),
    ("audio .wav 5 s (soundfile)", "audio", ".wav", plain_soundfile, consume_nothing),
    ("audio .flac 5 s (soundfile)", "audio", ".flac", plain_soundfile, consume_nothing),
    ("audio .mp4 AAC 5 s (PyAV)", "audio", ".mp4", plain_pyav_audio, consume_nothing),
    ("video .mp4 24x160x120 (PyAV)", "video", ".mp4", plain_pyav_video, consume_video),
    ("points .npy 10k (numpy)", "points", ".npy", plain_numpy_points, consume_nothing),
]


def write_files(folder: pathlib.Path, modality: str, suffix: str, n: int) -> List[str]:
    from emm1_lib.testing.sample_media import write_audio
    from emm1_lib.testing.sample_media import write_image
    from emm1_lib.testing.sample_media import write_openshape_npy
    from emm1_lib.testing.sample_media import write_video

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i}{suffix}"
        if modality == "image":
            write_image(path, i, size=IMAGE_SIZE)
        elif modality == "audio":
            write_audio(path, i, seconds=AUDIO_SECONDS)
        elif modality == "video":
            write_video(path, i, num_frames=VIDEO_FRAMES, size=VIDEO_SIZE)
        else:
            write_openshape_npy(path, i, n=POINTS)
        paths.append(str(path))
    return paths


# ------------------------------------------------------------------ one side, in its own process
def dataset_for(modality: str, paths: List[str], media_root: str):
    """Built as the E-MM1 builders build it: a string path column cast to the feature, with the media root."""
    import datasets
    import pyarrow as pa
    from datasets.table import table_cast

    from emm1_lib.media.features import media_feature

    features = datasets.Features({modality: media_feature(modality, media_root=media_root)})
    table = table_cast(pa.table({modality: pa.array(paths, type=pa.string())}), features.arrow_schema)
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features))


class _PlainFiles:
    """Map-style dataset of the plain side of the `loader` route: `__getitem__` reads one file."""

    def __init__(self, paths: List[str], read: Callable[[str], Any]):
        self.paths, self.read = paths, read

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Any:
        return self.read(self.paths[index])


class _Consume:
    """Collate function of the `loader` route: consume the decoded values in the worker, return the count."""

    def __init__(self, modality: str, consume: Callable[[Any], None]):
        self.modality, self.consume = modality, consume

    def __call__(self, items: List[Any]) -> int:
        if self.modality is not None:  # dataset rows
            for row in items:
                self.consume(row[self.modality])
        return len(items)


def make_pass(case_index: int, side: str, route: str, paths: List[str], media_root: str, batch_size: int,
              workers: int) -> Callable[[], None]:
    """One pass of `side` ("plain" or "dataset") of `route` over every file."""
    name, modality, suffix, plain_read, consume = CASES[case_index]
    if route == "loader":
        import torch.utils.data

        if side == "plain":
            source, collate = _PlainFiles(paths, plain_read), _Consume(None, consume_nothing)
        else:
            source, collate = dataset_for(modality, paths, media_root), _Consume(modality, consume)
        loader = torch.utils.data.DataLoader(source, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                                             persistent_workers=workers > 0)

        def one_pass() -> None:
            assert sum(loader) == len(paths)
    elif side == "plain" and route == "iter":
        def one_pass() -> None:  # the same batches of decoded values as ds.iter gives, held while the batch is used
            for start in range(0, len(paths), batch_size):
                batch = [plain_read(path) for path in paths[start:start + batch_size]]
                del batch
    elif side == "plain":
        def one_pass() -> None:
            for path in paths:
                plain_read(path)
    else:
        ds = dataset_for(modality, paths, media_root)
        if route == "rows":
            def one_pass() -> None:
                for row in ds:
                    consume(row[modality])
        elif route == "getitem":
            def one_pass() -> None:
                for i in range(len(ds)):
                    consume(ds[i][modality])
        else:
            def one_pass() -> None:
                for batch in ds.iter(batch_size=batch_size):
                    for value in batch[modality]:
                        consume(value)
    return one_pass


def run_pair(case_index: int, route: str, paths: List[str], media_root: str, passes: int, batch_size: int,
             workers: int) -> Dict[str, Dict[str, float]]:
    """Files per second of each side, by wall time and by this process's CPU time: the fastest of `passes` timed
    passes, sides alternating, after a warm-up. The loader route's work is in its workers: wall time only."""
    sides = {side: make_pass(case_index, side, route, paths, media_root, batch_size, workers)
             for side in ("plain", "dataset")}
    best = {}
    for side, one_pass in sides.items():
        one_pass()  # warm-up: page cache, imports, codec init, workers started
        best[side] = {"wall": float("inf"), "cpu": float("inf")}
    for index in range(passes):
        for side in (("plain", "dataset") if index % 2 == 0 else ("dataset", "plain")):
            wall, cpu = time.perf_counter(), time.process_time()
            sides[side]()
            best[side]["cpu"] = min(best[side]["cpu"], time.process_time() - cpu)
            best[side]["wall"] = min(best[side]["wall"], time.perf_counter() - wall)
    return {side: {"wall": len(paths) / times["wall"],
                   "cpu": None if route == "loader" else len(paths) / max(times["cpu"], 1e-9)}
            for side, times in best.items()}


# ------------------------------------------------------------------ the driver
def main(argv: List[str] = None) -> Dict[str, Dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100, help="files per media type (video uses a quarter)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each runs both sides of every pair in fresh processes")
    parser.add_argument("--passes", type=int, default=5, help="timed passes inside each process (the fastest counts)")
    parser.add_argument("--routes", default=",".join(ROUTES), help=f"comma-separated subset of {','.join(ROUTES)}")
    parser.add_argument("--cases", default="", help="only the media whose name contains one of these comma-separated words")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of the iter and loader routes")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the loader route")
    parser.add_argument("--json", help="write the figures here (per-round ratios, medians, load average)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: JSON job of one side
    args = parser.parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        rates = run_pair(job["case"], job["route"], job["paths"], job["root"], args.passes, args.batch_size,
                         args.workers)
        print(json.dumps(rates))
        return {}
    routes = [r for r in args.routes.split(",") if r]
    unknown = set(routes) - set(ROUTES)
    if unknown:
        parser.error(f"unknown routes {sorted(unknown)}; choose from {ROUTES}")
    wanted = [w for w in args.cases.split(",") if w]
    cases = [i for i, case in enumerate(CASES) if not wanted or any(w in case[0] for w in wanted)]
    import datasets

    results: Dict[str, Dict[str, List[float]]] = {}
    wall_results: Dict[str, Dict[str, List[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        files = {}
        for i in cases:
            name, modality, suffix = CASES[i][:3]
            n = max(10, args.files // 4) if modality == "video" else args.files
            files[i] = write_files(root / modality / suffix.lstrip("."), modality, suffix, n)
        load_start = os.getloadavg()
        print(f"datasets {datasets.__version__}; {args.files} files per type, {args.rounds} rounds x {args.passes} passes, "
              f"batch size {args.batch_size}, {args.workers} workers; {os.cpu_count()} CPUs; "
              f"load average at start {load_start[0]:.1f} / {load_start[1]:.1f} / {load_start[2]:.1f}", flush=True)
        for round_index in range(args.rounds):
            for i in cases:
                for route in routes:
                    job = {"case": i, "route": route, "paths": files[i], "root": tmp}
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", json.dumps(job), "--passes", str(args.passes),
                         "--batch-size", str(args.batch_size), "--workers", str(args.workers)],
                        capture_output=True, text=True,
                    )
                    if out.returncode:
                        raise SystemExit(f"{CASES[i][0]} / {route} failed:\n{out.stderr[-3000:]}")
                    rates = json.loads(out.stdout.strip().splitlines()[-1])
                    measure = "wall" if route == "loader" else "cpu"
                    ratio = rates["dataset"][measure] / rates["plain"][measure]
                    wall_ratio = rates["dataset"]["wall"] / rates["plain"]["wall"]
                    results.setdefault(CASES[i][0], {}).setdefault(route, []).append(ratio)
                    wall_results.setdefault(CASES[i][0], {}).setdefault(route, []).append(wall_ratio)
                    print(f"  round {round_index + 1} {CASES[i][0]:30s} {route:8s} plain {rates['plain'][measure]:7.0f}/s "
                          f"dataset {rates['dataset'][measure]:7.0f}/s ({measure}) ratio {ratio:5.2f}; by wall time "
                          f"{wall_ratio:5.2f}", flush=True)
        load_end = os.getloadavg()
    print(f"load average at end {load_end[0]:.1f} / {load_end[1]:.1f} / {load_end[2]:.1f}")
    print()
    summary: Dict[str, Dict[str, float]] = {}
    for title, table in (("ratio dataset / plain by CPU time (loader: wall time), median of rounds (min-max)", results),
                         ("ratio dataset / plain by wall time, median of rounds (min-max)", wall_results)):
        print(title)
        print(f"{'media':32s} " + " ".join(f"{r:>17s}" for r in routes))
        for name, by_route in table.items():
            cells = []
            for route in routes:
                values = by_route[route]
                if table is results:
                    summary.setdefault(name, {})[route] = statistics.median(values)
                cells.append(f"{statistics.median(values):5.2f} ({min(values):.2f}-{max(values):.2f})")
            print(f"{name:32s} " + " ".join(f"{c:>17s}" for c in cells))
        print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"datasets": datasets.__version__, "files": args.files, "rounds": args.rounds,
                       "passes": args.passes, "batch_size": args.batch_size, "workers": args.workers, "routes": routes,
                       "load_start": load_start, "load_end": load_end, "median": summary, "ratios": results,
                       "wall_ratios": wall_results}, f, indent=1)
    return summary


if __name__ == "__main__":
    main()
