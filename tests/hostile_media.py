"""Hostile media for tests: a pickle that acts when executed, truncated downloads.

Kept out of the installed package: users get the sample generator (`emm1_lib.testing`), not these.
"""
import io
import pathlib
from typing import Optional

import numpy as np

from emm1_lib.testing.sample_media import points_arrays
from emm1_lib.testing.sample_media import write_media


class _CreateMarker:
    """Pickles as `open(marker, "w")`: unpickling it with plain pickle creates an empty marker file."""

    def __init__(self, marker: pathlib.Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_malicious_npy(path: pathlib.Path, marker: pathlib.Path) -> None:
    """Write an OpenShape-looking `.npy` whose pickle, if executed, creates the file `marker`.

    Its only effect when loaded unsafely (np.load(allow_pickle=True)) is an empty file at
    `marker`, so tests can assert that a safe loader ran nothing.
    """
    xyz, rgb = points_arrays(0)
    holder = np.empty((), dtype=object)
    holder[()] = {"xyz": xyz, "rgb": rgb, "id": "malicious", "payload": _CreateMarker(marker)}
    buffer = io.BytesIO()
    np.save(buffer, holder, allow_pickle=True)
    pathlib.Path(path).write_bytes(buffer.getvalue())


def write_corrupt(path: pathlib.Path, seed: int, *, kind: Optional[str] = None, keep: float = 0.3) -> None:
    """Write a valid media file and truncate it to `keep` of its size (a corrupt download)."""
    write_media(path, seed, kind=kind)
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[: max(1, int(len(data) * keep))])
