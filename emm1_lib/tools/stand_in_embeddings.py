"""STAND-IN embedding functions for demos and tests: NOT a model; they score EShot at chance level.

They only exercise the pipeline (decode -> embed -> class vectors -> accuracy); a real evaluation
replaces them with a model that embeds audio and point clouds into one space.
"""
import numpy as np


def embed_audio(example: dict) -> np.ndarray:
    """65-dim log spectrum of the first second of a decoded `audio` value (never the zero vector)."""
    wave = np.asarray(example["audio"]["array"], dtype=np.float64).reshape(-1)[:16000]
    return np.append(np.log1p(np.abs(np.fft.rfft(wave, n=126))), 1.0)


def embed_points(example: dict) -> np.ndarray:
    """65-dim occupancy histogram (4x4x4 cells of [-1, 1]^3) of a decoded `points` value."""
    xyz = np.asarray(example["points"]["xyz"], dtype=np.float64)
    histogram, _ = np.histogramdd(xyz, bins=4, range=[(-1, 1)] * 3)
    return np.append(histogram.reshape(-1) / max(len(xyz), 1), 1.0)
