"""Where one row's time goes, per media type: `ds[i]` against the plain read, and its parts alone.

    python benchmarks/decode_breakdown.py [--files 100] [--passes 15] [--cases points,wav]

The files, plain readers and dataset are benchmarks/decode.py's. Per media type, in a fresh process, each part
below runs once as a warm-up, then `--passes` times over every file, the parts interleaved; the fastest pass
counts, by this process's CPU time, in microseconds a row:

  plain             the plain reader (decode.py's `plain` side)
  ds[i]             row access with decoding (decode.py's `getitem` route)
  ds[i] undecoded   row access on the same table with decode=False: `datasets`' own per-row work
  decode_example    the feature's decode of the stored `{bytes, path}` values, outside `datasets`
  resolve_media     of that, locating the file and checking it is under the media root
  plain + undecoded each plain read followed by an undecoded `ds[i]`: what `datasets`' per-row work costs
                    between two decodes, where it finds the caches holding the last file's data
  ds[i] plain read  `ds[i]` on a dataset whose feature decodes with the plain reader itself
  ds[i] bytes only  `ds[i]` on a dataset whose feature only reads the file's bytes (open, read, close)
  ds[i] unchecked   OpenShape `.npy` point clouds only: `ds[i]` on a dataset whose feature decodes as ours does
                    (the file located under the media root, `safe_npy.load_npy`, float32 arrays) without
                    `_checked_points` and `rgb_to_unit` (shape, finiteness and colour-range checks): what those
                    checks cost on the getitem route. Colours are kept as stored, so it equals our decode on files
                    with float colours in [0, 1], as the benchmark's are; 0-255 colours are not scaled

`plain + undecoded - plain` above `ds[i] undecoded` alone is the price of interleaving the two.
`plain / ds[i] plain read` is the ratio of a decode exactly as fast as the plain reader (for points:
`np.load(allow_pickle=True)`, which executes pickles, and checks nothing); `plain / ds[i] bytes only`, that of a
decode that costs nothing beyond reading the file, bounds what any decoder can reach on the getitem route.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import decode  # noqa: E402  (decode.py puts the repository on sys.path)

PARTS = ("plain", "ds[i]", "ds[i] undecoded", "decode_example", "resolve_media", "plain + undecoded", "ds[i] plain read",
         "ds[i] bytes only", "ds[i] unchecked")
UNCHECKED_CASES = (("points", ".npy"),)  # (medium, suffix) of the cases with a "ds[i] unchecked" part


def unchecked_points_reader(media_root: str) -> Callable[[str], Dict[str, Any]]:
    """Our point-cloud decode of a `.npy` path without the value checks (`pointcloud.read_point_cloud` minus
    `_checked_points` and `rgb_to_unit`): located under the media root, read by `safe_npy.load_npy`, float32;
    colours as stored (not scaled from 0-255), None when the file has none."""
    import numpy as np

    from emm1_lib.media.files import resolve_media
    from emm1_lib.media.pointcloud import _as_points
    from emm1_lib.media.safe_npy import load_npy

    def read(path: str) -> Dict[str, Any]:
        source = resolve_media({"bytes": None, "path": path}, "error", None, media_root, True, "points")
        with source.open() as f:
            xyz, rgb = _as_points(load_npy(f, source.name, plain_arrays=False), source.name)
        return {"xyz": np.ascontiguousarray(xyz, np.float32),
                "rgb": None if rgb is None else np.ascontiguousarray(rgb, np.float32)}
    return read


def measure(case_index: int, paths: List[str], media_root: str, passes: int) -> Dict[str, Optional[float]]:
    """Microseconds a row of each part: the fastest of `passes` interleaved passes, by CPU time (None: a part that
    does not apply to this medium)."""
    from emm1_lib.media.features import media_feature
    from emm1_lib.media.files import resolve_media

    name, modality, suffix, plain_read, consume = decode.CASES[case_index]
    ds = decode.dataset_for(modality, paths, media_root)
    undecoded = ds.cast_column(modality, media_feature(modality, decode=False, media_root=media_root))
    feature = ds.features[modality]
    stored = [undecoded[i][modality] for i in range(len(paths))]

    def each(read: Callable, items) -> Callable[[], None]:
        def run() -> None:  # nothing kept: a list of 100 decoded files would time the allocator, not the reads
            for item in items:
                read(item)
        return run

    def plain_and_undecoded() -> None:
        for i, path in enumerate(paths):
            plain_read(path)
            undecoded[i]

    def read_bytes(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def swapped(read: Callable[[str], object]) -> Callable[[], None]:
        """ds[i] over another dataset of the same files whose feature decodes a stored path with `read`."""
        other = decode.dataset_for(modality, paths, media_root)
        other_feature = other._info.features[modality]  # the object `datasets` decodes rows with (checked below)
        calls = []

        def counted(value, token_per_repo_id=None):
            calls.append(value["path"])
            return read(value["path"])

        other_feature.decode_example = counted
        other[0]
        # our own decode returns the same types as some readers: only a call proves the swap took
        assert calls == [paths[0]], "datasets did not decode with the swapped reader"
        other_feature.decode_example = lambda value, token_per_repo_id=None: read(value["path"])
        return each(other.__getitem__, range(len(paths)))

    parts: Dict[str, Callable[[], None]] = {
        "plain": each(plain_read, paths),
        "ds[i]": each(lambda i: consume(ds[i][modality]), range(len(paths))),
        "ds[i] undecoded": each(undecoded.__getitem__, range(len(paths))),
        "decode_example": each(lambda value: consume(feature.decode_example(value)), stored),
        "resolve_media": each(lambda value: resolve_media(value, "error", None, media_root), stored),
        "plain + undecoded": plain_and_undecoded,
        "ds[i] plain read": swapped(plain_read),
        "ds[i] bytes only": swapped(read_bytes),
    }
    if (modality, suffix) in UNCHECKED_CASES:
        parts["ds[i] unchecked"] = swapped(unchecked_points_reader(media_root))
    best = {}
    for part, run in parts.items():
        run()  # warm-up: page cache, imports, codec set-up
        best[part] = float("inf")
    for index in range(passes):
        for part, run in (parts.items() if index % 2 == 0 else reversed(parts.items())):
            start = time.process_time()
            run()
            best[part] = min(best[part], time.process_time() - start)
    return {part: best[part] / len(paths) * 1e6 if part in best else None for part in PARTS}


def main(argv: List[str] = None) -> Dict[str, Dict[str, Optional[float]]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100, help="files per media type (video uses a quarter)")
    parser.add_argument("--passes", type=int, default=15, help="timed passes of each part (the fastest counts)")
    parser.add_argument("--cases", default="", help="only the media whose name contains one of these comma-separated words")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: JSON job of one media type
    args = parser.parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        print(json.dumps(measure(job["case"], job["paths"], job["root"], args.passes)))
        return {}
    wanted = [w for w in args.cases.split(",") if w]
    cases = [i for i, case in enumerate(decode.CASES) if not wanted or any(w in case[0] for w in wanted)]
    load = os.getloadavg()
    print(f"{args.files} files per type, {args.passes} passes; {os.cpu_count()} CPUs; load average at start "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; microseconds a row, by CPU time")
    print(f"{'media':30s} " + " ".join(f"{part:>17s}" for part in PARTS)
          + "  plain/ds[i]  plain/(ds[i] plain read)  plain/(ds[i] bytes only)  plain/(ds[i] unchecked)")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in cases:
            name, modality, suffix = decode.CASES[i][:3]
            n = max(2, args.files // 4) if modality == "video" else args.files
            paths = decode.write_files(pathlib.Path(tmp) / modality / suffix.lstrip("."), modality, suffix, n)
            job = {"case": i, "paths": paths, "root": tmp}
            out = subprocess.run([sys.executable, __file__, "--child", json.dumps(job), "--passes", str(args.passes)],
                                 capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
            row = results[name]
            unchecked = row["ds[i] unchecked"]
            print(f"{name:30s} " + " ".join(f"{row[part]:17.1f}" if row[part] is not None else f"{'-':>17s}"
                                            for part in PARTS)
                  + f"  {row['plain'] / row['ds[i]']:11.2f}  {row['plain'] / row['ds[i] plain read']:23.2f}"
                  + f"  {row['plain'] / row['ds[i] bytes only']:24.2f}"
                  + (f"  {row['plain'] / unchecked:23.2f}" if unchecked is not None else f"  {'-':>23s}"), flush=True)
    load = os.getloadavg()
    print(f"load average at end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    return results


if __name__ == "__main__":
    main()
