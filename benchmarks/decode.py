"""Decode throughput of each media type through a `datasets.Dataset` with the E-MM1 features,
relative to a plain Python loop reading the same files with the same library.

    python benchmarks/decode.py [--files 200] [--rounds 5]

Both sides run in the same process, interleaved round by round with alternating order (so
machine load affects both alike); the reported figure is the ratio of throughputs in each
side's fastest round, dataset / plain loop. Absolute times depend on the machine and are printed for context only.
"""
import argparse
import pathlib
import sys
import tempfile
import time
from typing import Callable
from typing import Dict
from typing import List

import av
import datasets
import numpy as np
import pyarrow as pa
import soundfile
from datasets.table import table_cast
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from emm1_lib.media.features import media_feature  # noqa: E402
from emm1_lib.testing.sample_media import write_audio  # noqa: E402
from emm1_lib.testing.sample_media import write_image  # noqa: E402
from emm1_lib.testing.sample_media import write_openshape_npy  # noqa: E402
from emm1_lib.testing.sample_media import write_video  # noqa: E402

# Realistic sizes (the test fixtures are tiny): per-file decoding, not per-row overhead, should dominate.
IMAGE_SIZE = (320, 240)
AUDIO_SECONDS = 5.0
VIDEO_FRAMES, VIDEO_SIZE = 24, (160, 120)
POINTS = 10000  # OpenShape files hold 10,000 points


def plain_image(path: str) -> None:
    with Image.open(path) as image:
        image.load()


def plain_soundfile(path: str) -> None:
    soundfile.read(path, dtype="float32")


def plain_pyav_audio(path: str) -> None:
    with av.open(path) as container:
        np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)


def plain_pyav_video(path: str) -> None:
    with av.open(path) as container:
        np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def plain_numpy_points(path: str) -> None:
    # the usual OpenShape loader (unsafe on untrusted files; fine on our own benchmark files)
    record = np.load(path, allow_pickle=True).item()
    np.asarray(record["xyz"], np.float32), np.asarray(record["rgb"], np.float32)


def consume_video(reader) -> None:
    reader.get_frames(range(reader.num_frames))  # decode every frame, as the plain loop does


def _image(path: pathlib.Path, seed: int) -> None:
    write_image(path, seed, size=IMAGE_SIZE)


def _audio(path: pathlib.Path, seed: int) -> None:
    write_audio(path, seed, seconds=AUDIO_SECONDS)


def _video(path: pathlib.Path, seed: int) -> None:
    write_video(path, seed, num_frames=VIDEO_FRAMES, size=VIDEO_SIZE)


def _points(path: pathlib.Path, seed: int) -> None:
    write_openshape_npy(path, seed, n=POINTS)


# (name, modality, suffix, writer, plain reader, consumer of the decoded value)
CASES = [
    ("image .jpg 320x240 (Pillow)", "image", ".jpg", _image, plain_image, lambda v: None),
    ("audio .wav 5 s (soundfile)", "audio", ".wav", _audio, plain_soundfile, lambda v: None),
    ("audio .flac 5 s (soundfile)", "audio", ".flac", _audio, plain_soundfile, lambda v: None),
    ("audio .mp4 AAC 5 s (PyAV)", "audio", ".mp4", _audio, plain_pyav_audio, lambda v: None),
    ("video .mp4 24x160x120 (PyAV)", "video", ".mp4", _video, plain_pyav_video, consume_video),
    ("points .npy 10k (numpy)", "points", ".npy", _points, plain_numpy_points, lambda v: None),
]


def dataset_for(modality: str, paths: List[str]) -> datasets.Dataset:
    """Built as the E-MM1 builders build it: a string path column cast to the feature."""
    features = datasets.Features({modality: media_feature(modality)})
    table = table_cast(pa.table({modality: pa.array(paths, type=pa.string())}), features.arrow_schema)
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features))


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: List[str] = None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100, help="files per media type (video uses a quarter)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (the fastest of each side counts)")
    args = parser.parse_args(argv)
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        print(f"datasets {datasets.__version__}; {args.files} files per type, {args.rounds} interleaved rounds")
        print(f"{'media':32s} {'plain files/s':>14s} {'dataset files/s':>16s} {'ratio':>7s}")
        for name, modality, suffix, write, plain_read, consume in CASES:
            n = max(10, args.files // 4) if modality == "video" else args.files
            folder = root / modality / suffix.lstrip(".")
            folder.mkdir(parents=True)
            paths = []
            for i in range(n):
                path = folder / f"{i}{suffix}"
                write(path, i)
                paths.append(str(path))
            ds = dataset_for(modality, paths)

            def through_dataset() -> None:
                for row in ds:
                    consume(row[modality])

            def plain_loop() -> None:
                for path in paths:
                    plain_read(path)

            through_dataset(), plain_loop()  # warm-up: page cache, imports, codec init
            plain_times, dataset_times = [], []
            for round_index in range(args.rounds):  # alternate which side runs first
                if round_index % 2:
                    dataset_times.append(timed(through_dataset))
                    plain_times.append(timed(plain_loop))
                else:
                    plain_times.append(timed(plain_loop))
                    dataset_times.append(timed(through_dataset))
            # the fastest round of each side is the one least disturbed by other processes
            plain_rate = n / min(plain_times)
            dataset_rate = n / min(dataset_times)
            ratios[name] = dataset_rate / plain_rate
            print(f"{name:32s} {plain_rate:14.0f} {dataset_rate:16.0f} {ratios[name]:7.2f}")
    return ratios


if __name__ == "__main__":
    main()
