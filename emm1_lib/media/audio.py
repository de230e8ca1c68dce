"""Audio decoding without torch: soundfile (libsndfile) first, PyAV (bundled FFmpeg) for containers.

libsndfile reads WAV/FLAC/OGG/MP3 but not MP4/M4A/AAC, and the released E-MM1 audio is AAC in
MP4; PyAV's wheels carry FFmpeg, so both work from `pip install` alone. Resampling uses soxr.
"""
import os
from typing import BinaryIO
from typing import Optional
from typing import Tuple
from typing import Union

import numpy as np

from emm1_lib.media.files import MediaDecodeError
from emm1_lib.media.files import MediaSource
from emm1_lib.media.files import open_av_container
from emm1_lib.media.files import resolve_media

# Containers libsndfile cannot read: go straight to PyAV instead of failing in soundfile first.
PYAV_AUDIO_EXTENSIONS = (".mp4", ".m4a", ".aac", ".mov", ".mkv", ".webm", ".opus", ".3gp")


# 1 / 2**15: a 16-bit sample times it is exact in float32 (16 significant bits of 24), so any conversion gives
# the same float, libsndfile's (one sample at a time, about half the time of reading a WAV) or numpy's.
_INT16_SCALE = np.float32(1.0 / 32768.0)
# Containers holding the samples as they are, where that conversion is most of the work. In FLAC decoding is:
# there numpy's pass made reading 1-4 % slower, so it keeps libsndfile's.
_RAW_PCM_FORMATS = frozenset({"WAV", "WAVEX", "W64", "RF64", "AIFF", "AU", "CAF"})


def _read_soundfile(file, name: str = "<audio>") -> Tuple[np.ndarray, int]:
    """(samples, channels) float32 and the sampling rate, via libsndfile.

    `file`: a path, a binary file object or an open file descriptor (read from where it stands, left open).
    16-bit PCM in a WAV-like container is read as int16 and scaled by numpy: the same values, bit for bit, as
    libsndfile's float32.
    """
    import soundfile

    with soundfile.SoundFile(file, closefd=False) if isinstance(file, int) else soundfile.SoundFile(file) as sound:
        # as soundfile.read does: seek to the start, then read `frames` (an MP3 decodes differently without the seek)
        if sound.seekable():
            sound.seek(0)
        if sound.subtype == "PCM_16" and sound.format in _RAW_PCM_FORMATS:
            samples = sound.read(sound.frames, dtype="int16", always_2d=True)
            return np.multiply(samples, _INT16_SCALE, dtype=np.float32), int(sound.samplerate)
        return sound.read(sound.frames, dtype="float32", always_2d=True), int(sound.samplerate)


def _read_pyav(file, stream_index: int = 0, name: str = "<audio>") -> Tuple[np.ndarray, int]:
    """(samples, channels) float32 and the sampling rate of the first audio stream, via PyAV."""
    import av

    with open_av_container(file, name) as container:
        streams = container.streams.audio
        if len(streams) <= stream_index:
            raise ValueError(f"no audio stream #{stream_index} (found {len(streams)} audio streams)")
        stream = streams[stream_index]
        # Convert every frame to planar float32 at the native rate/layout: to_ndarray() then
        # always gives (channels, samples), whatever the codec's sample format (packed/int).
        resampler = av.AudioResampler(format="fltp")
        chunks = []
        sampling_rate = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            sampling_rate = frame.sample_rate
            for converted in resampler.resample(frame):
                chunks.append(converted.to_ndarray())
        for converted in resampler.resample(None):  # flush
            chunks.append(converted.to_ndarray())
    if not chunks:
        raise ValueError("the audio stream decoded to no samples")
    return np.concatenate(chunks, axis=1).T.astype(np.float32, copy=False), int(sampling_rate)


def _wav_data_sizes(f: BinaryIO) -> Tuple[int, int]:
    """(bytes the data chunk declares, bytes that follow it) of a RIFF/WAVE file; (0, 0) for anything else.

    libsndfile and FFmpeg both decode a WAV cut short as a shorter clip, without a word.
    """
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return 0, 0
    while True:  # chunks: 4-byte id, 4-byte little-endian size, data padded to an even size
        chunk = f.read(8)
        if len(chunk) < 8:
            return 0, 0
        size = int.from_bytes(chunk[4:], "little")
        if chunk[:4] == b"data":
            start = f.tell()
            present = f.seek(0, os.SEEK_END) - start
            # 0 and 0xFFFFFFFF: a streaming writer that never went back to fill in the size
            return (0, 0) if size in (0, 0xFFFFFFFF) else (size, present)
        f.seek(size + (size & 1), os.SEEK_CUR)


def _check_not_truncated_wav(f: BinaryIO, name: str) -> None:
    """Raise `MediaDecodeError` naming `name` when `f` is a WAV whose data chunk is cut short."""
    declared, present = _wav_data_sizes(f)
    if present < declared:
        raise MediaDecodeError(
            f"Cannot decode {name} as audio: its WAV header declares {declared} bytes of samples but only "
            f"{present} follow. The file is truncated (re-download it)."
        )


def resample(array: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample (samples, channels) or (samples,) float32 with soxr (high quality)."""
    import soxr

    if orig_sr == target_sr:
        return array
    return soxr.resample(array, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def read_audio(
    source: Union[MediaSource, str, bytes, dict],
    *,
    sampling_rate: Optional[int] = None,
    mono: bool = True,
) -> Tuple[np.ndarray, int]:
    """Decode an audio file to float32 samples.

    Args:
        source: a `MediaSource`, path, bytes or stored `{"bytes", "path"}` dict.
        sampling_rate: resample to this rate (soxr); None keeps the file's rate.
        mono: average the channels to a 1-D array; otherwise the array is (channels, samples),
            as `datasets.Audio` returned it before torchcodec.

    Returns:
        `(array, sampling_rate)`.

    Raises:
        MissingMediaError: the file does not exist.
        MediaDecodeError: neither soundfile nor PyAV can decode it (the message names the file).
    """
    if not isinstance(source, MediaSource):
        source = resolve_media(source)
    local = isinstance(source.file, str)
    # a local file is opened once, unbuffered: the WAV check reads its header, libsndfile its descriptor
    f = open(source.file, "rb", buffering=0) if local else source.open()
    try:
        _check_not_truncated_wav(f, source.name)
        errors = []
        readers = (_read_pyav,) if source.suffix in PYAV_AUDIO_EXTENSIONS else (_read_soundfile, _read_pyav)
        for reader in readers:
            f.seek(0)
            if local:  # FFmpeg opens the path itself, under its protocol allow-list (see open_av_container)
                file = f.fileno() if reader is _read_soundfile else source.file
            else:
                file = f
            try:
                array, rate = reader(file, name=source.name)
                break
            except Exception as err:  # noqa: BLE001 - each backend raises its own types; reported below
                errors.append(f"{reader.__name__.lstrip('_')}: {type(err).__name__}: {err}")
        else:
            raise MediaDecodeError(
                f"Cannot decode {source.name} as audio ({'; '.join(errors)}). "
                "The file may be truncated or corrupt (re-download it) or in an unsupported format."
            )
    finally:
        if local:
            f.close()
    if mono:
        array = array.mean(axis=1, dtype=np.float32) if array.shape[1] > 1 else array[:, 0]
    if sampling_rate is not None and sampling_rate != rate:
        array = resample(array, rate, sampling_rate)
        rate = sampling_rate
    if not mono:
        array = array.T
    return np.ascontiguousarray(array, dtype=np.float32), rate
