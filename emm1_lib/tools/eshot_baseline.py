"""A deterministic BASELINE feature extractor for EShot (`eshot embed`'s default), and the contract any embedder
follows. It reads only decoded media (numpy); it lives beside the CLI, not in media/, so that changing it leaves the
builders' prepared-data cache key alone.

The contract: an embedder is any callable `embed(batch) -> np.ndarray` where `batch` is a batch of ONE of the
`eshot_audio` / `eshot_points` configs as `datasets` gives it (`Dataset.iter(batch_size=...)`: a dict of columns,
each a list), holding the decoded media column `"audio"` (`{"array", "sampling_rate", ...}` per row) or `"points"`
(`{"xyz", "rgb"}` per row), and returns one row per example, `(len(batch[column]), d)`, with the same `d` for both
modalities (one shared embedding space). `eshot embed --embedder module:function` runs one over both configs.

The baseline (`baseline_embed`) is NOT a model: it describes each modality with hand-made statistics of the decoded
media (numpy only, no randomness that is not seeded), and nothing ties the audio coordinates to the point-cloud ones,
so it scores near chance on EShot. It is the floor a real model must beat, and it proves the chain reads the media:
a changed file changes its embedding and so the score.

- audio: log-mel spectrogram (25 ms Hann frames, 10 ms hop, `N_MELS` mel bands up to 8 kHz); per band the mean and
  the standard deviation over time (`2 * N_MELS` values).
- points: centred on the centroid and scaled to unit maximum radius; a histogram of the distances to the centroid,
  a histogram of the distances between point pairs (the D2 shape distribution, on a fixed sample of pairs), the
  sorted eigenvalues of the covariance and the mean |x|, |y|, |z| (`2 * N_MELS` values in all).

Every vector is L2-normalised and never the zero vector (silence and a single point included).
"""
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

N_MELS = 32
EMBEDDING_DIM = 2 * N_MELS
_FLOOR = 1e-6
_PAIRS = 4096


Embedder = Callable[[Dict[str, List[Any]]], np.ndarray]


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(sampling_rate: int, n_fft: int, n_mels: int = N_MELS, fmax: float = 8000.0) -> np.ndarray:
    """Triangular mel filters (HTK mel scale), `(n_mels, n_fft // 2 + 1)`."""
    fmax = min(fmax, sampling_rate / 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(fmax)), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / sampling_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - bins[None, :]) / np.maximum(upper - centre, 1e-9)
    return np.maximum(0.0, np.minimum(rising, falling))


def log_mel(wave: np.ndarray, sampling_rate: int, n_mels: int = N_MELS) -> np.ndarray:
    """Log-mel spectrogram `(frames, n_mels)` of a mono float waveform (25 ms frames, 10 ms hop)."""
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim > 1:  # channels first or last: average them
        wave = wave.mean(axis=0 if wave.shape[0] < wave.shape[-1] else -1)
    frame = max(16, int(round(0.025 * sampling_rate)))
    hop = max(1, int(round(0.010 * sampling_rate)))
    n_fft = 1 << int(np.ceil(np.log2(frame)))
    if len(wave) < frame:
        wave = np.pad(wave, (0, frame - len(wave)))
    count = 1 + (len(wave) - frame) // hop
    index = np.arange(frame)[None, :] + hop * np.arange(count)[:, None]
    frames = wave[index] * np.hanning(frame)[None, :]
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    return np.log(power @ mel_filterbank(sampling_rate, n_fft, n_mels).T + _FLOOR)


def audio_features(audio: Dict[str, Any]) -> np.ndarray:
    """`2 * N_MELS` values: per mel band, the mean and standard deviation over time of the log-mel spectrogram."""
    spectrogram = log_mel(audio["array"], int(audio["sampling_rate"]))
    return np.concatenate([spectrogram.mean(axis=0), spectrogram.std(axis=0)])


def points_features(points: Dict[str, Any]) -> np.ndarray:
    """`2 * N_MELS` values of shape statistics of the decoded `xyz` (see the module docstring)."""
    xyz = np.asarray(points["xyz"], dtype=np.float64).reshape(-1, 3)
    xyz = xyz[np.isfinite(xyz).all(axis=1)]
    if len(xyz) == 0:
        xyz = np.zeros((1, 3))
    xyz = xyz - xyz.mean(axis=0)
    radius = np.sqrt((xyz ** 2).sum(axis=1))
    scale = radius.max() or 1.0
    xyz, radius = xyz / scale, radius / scale
    bins = (EMBEDDING_DIM - 6) // 2  # 29 + 29 + 3 + 3 = 64
    radial, _ = np.histogram(radius, bins=bins, range=(0.0, 1.0))
    rng = np.random.default_rng(0)  # the same pairs for every cloud of a size: deterministic
    a, b = rng.integers(0, len(xyz), _PAIRS), rng.integers(0, len(xyz), _PAIRS)
    d2, _ = np.histogram(np.sqrt(((xyz[a] - xyz[b]) ** 2).sum(axis=1)), bins=bins, range=(0.0, 2.0))
    eigen = np.sort(np.linalg.eigvalsh(np.cov(xyz.T) if len(xyz) > 1 else np.zeros((3, 3))))[::-1]
    return np.concatenate([radial / len(xyz), d2 / _PAIRS, eigen, np.abs(xyz).mean(axis=0)])


def _normalised(rows: Sequence[np.ndarray]) -> np.ndarray:
    matrix = np.stack([np.asarray(r, dtype=np.float64) for r in rows]) if len(rows) else np.zeros((0, EMBEDDING_DIM))
    matrix = np.where(np.isfinite(matrix), matrix, 0.0)
    matrix[:, -1] += _FLOOR  # never the zero vector
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def media_column(batch: Dict[str, List[Any]]) -> str:
    """"audio" or "points": the decoded media column of an EShot batch (ValueError when there is none or both)."""
    found = [c for c in ("audio", "points") if c in batch]
    if len(found) != 1:
        raise ValueError(f"an EShot batch holds one media column, 'audio' or 'points'; got columns {sorted(batch)}")
    return found[0]


def baseline_embed(batch: Dict[str, List[Any]]) -> np.ndarray:
    """The BASELINE embedder (not a model): `(n, EMBEDDING_DIM)` float64 rows, L2-normalised, for a batch of
    `eshot_audio` or `eshot_points` examples."""
    column = media_column(batch)
    features = audio_features if column == "audio" else points_features
    return _normalised([features(value) for value in batch[column]])
