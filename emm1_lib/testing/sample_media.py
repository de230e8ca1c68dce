"""Small but real media files for tests and the sample-data generator.

Every writer is deterministic in its seed (same seed -> same samples; same bytes where
the encoder allows it) and fast: files are tiny (a 32x24 image, 0.25 s of audio, eight
32x32 video frames, 256 points), so a test can write tens of them in well under a second.
The format is chosen by the file suffix, as the E-MM1 folders are.
"""
import pathlib
from fractions import Fraction
from typing import Dict
from typing import Optional
from typing import Tuple

import numpy as np

# The extension used when a generator has no reason to pick another one.
DEFAULT_EXTENSIONS: Dict[str, str] = {"image": ".jpg", "audio": ".wav", "video": ".mp4", "points": ".npy"}

# Every extension `write_media` writes, per modality (the first one is the default).
# `.mp4` is both audio (the released E-MM1 audio is AAC in MP4) and video.
EXTENSIONS: Dict[str, Tuple[str, ...]] = {
    "image": (".jpg", ".jpeg", ".png"),
    "audio": (".wav", ".flac", ".ogg", ".mp3", ".mp4", ".m4a"),
    "video": (".mp4", ".mkv", ".avi"),
    "points": (".npy", ".npz", ".ply", ".obj", ".stl", ".off", ".glb"),
}

# Point-cloud formats that are meshes and get sampled on the surface when decoded.
MESH_EXTENSIONS: Tuple[str, ...] = (".obj", ".stl", ".off", ".glb")

AUDIO_SAMPLING_RATE = 16000
AUDIO_SECONDS = 0.25
IMAGE_SIZE = (32, 24)  # (width, height)
VIDEO_SIZE = (32, 32)
VIDEO_FRAMES = 8
VIDEO_FPS = 8
NUM_POINTS = 256


def infer_kind(path: pathlib.Path) -> Optional[str]:
    """The modality of `path` from its suffix, or None when the suffix is ambiguous (`.mp4`)."""
    suffix = pathlib.Path(path).suffix.lower()
    kinds = [kind for kind, extensions in EXTENSIONS.items() if suffix in extensions]
    if not kinds:
        raise ValueError(f"{path}: no sample writer for suffix {suffix!r}; supported: {EXTENSIONS}")
    return kinds[0] if len(kinds) == 1 else None


def write_media(path: pathlib.Path, seed: int, *, kind: Optional[str] = None) -> None:
    """Write a small real media file at `path`, its format chosen by the suffix.

    Args:
        path: destination; parent folders are created.
        seed: makes the content deterministic; different seeds give different content.
        kind: "image", "audio", "video" or "points"; inferred from the suffix when omitted.
            `.mp4` is ambiguous: kind="audio" writes AAC audio only (as the released E-MM1
            audio), kind="video" video only, and no kind writes a clip with both streams
            (as YouTube-sourced clips have), which decodes as audio and as video.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    inferred = infer_kind(path)
    if kind is None:
        kind = inferred
    elif suffix not in EXTENSIONS.get(kind, ()):
        raise ValueError(f"{path}: suffix {suffix!r} is not a {kind} format; supported: {EXTENSIONS.get(kind)}")
    if kind is None:  # .mp4 without a kind: both streams
        _write_av(path, seed, video=True, audio=True)
    elif kind == "image":
        write_image(path, seed)
    elif kind == "audio":
        write_audio(path, seed)
    elif kind == "video":
        _write_av(path, seed, video=True, audio=False)
    elif kind == "points":
        if suffix == ".npy":
            write_openshape_npy(path, seed)
        elif suffix in (".npz", ".ply"):
            write_points_array(path, seed)
        else:
            write_mesh(path, seed)
    else:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(EXTENSIONS)}")


# ---------------------------------------------------------------- images

def image_array(seed: int, size: Tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """The (height, width, 3) uint8 picture that `write_image` saves (a gradient plus noise)."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, (seed * 37) % 256)], -1)
    noise = rng.integers(0, 32, size=base.shape)
    return ((base + noise) % 256).astype(np.uint8)


def write_image(path: pathlib.Path, seed: int, size: Tuple[int, int] = IMAGE_SIZE) -> None:
    """Write an RGB JPEG or PNG (by suffix), 32x24 unless `size` (width, height) says otherwise."""
    from PIL import Image

    Image.fromarray(image_array(seed, size), "RGB").save(path)


# ---------------------------------------------------------------- audio

def audio_array(
    seed: int, channels: int = 1, sampling_rate: int = AUDIO_SAMPLING_RATE, seconds: float = AUDIO_SECONDS
) -> np.ndarray:
    """The (samples, channels) float32 signal `write_audio` saves: a seed-dependent tone plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    freq = 220.0 + 40.0 * (seed % 17)
    tones = [0.5 * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]
    signal = np.stack(tones, -1) + 0.05 * rng.standard_normal((t.size, channels))
    return signal.astype(np.float32)


def write_audio(
    path: pathlib.Path,
    seed: int,
    channels: int = 1,
    sampling_rate: int = AUDIO_SAMPLING_RATE,
    seconds: float = AUDIO_SECONDS,
) -> None:
    """Write audio (0.25 s by default): WAV/FLAC (16-bit), OGG (Vorbis), MP3 with soundfile; MP4/M4A (AAC) with PyAV."""
    suffix = pathlib.Path(path).suffix.lower()
    if suffix in (".mp4", ".m4a"):
        _write_av(path, seed, video=False, audio=True, channels=channels, sampling_rate=sampling_rate, seconds=seconds)
        return
    import soundfile

    subtype = {".wav": "PCM_16", ".flac": "PCM_16", ".ogg": "VORBIS", ".mp3": "MPEG_LAYER_III"}[suffix]
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}[suffix]
    soundfile.write(str(path), audio_array(seed, channels, sampling_rate, seconds), sampling_rate, subtype=subtype, format=fmt)


# ---------------------------------------------------------------- video (and AAC audio) with PyAV

def video_frames(seed: int, num_frames: int = VIDEO_FRAMES, size: Tuple[int, int] = VIDEO_SIZE) -> np.ndarray:
    """The (frames, height, width, 3) uint8 frames `write_media` encodes: a moving seed-coloured bar."""
    width, height = size
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    colour = np.array([(seed * 53) % 256, (seed * 97 + 80) % 256, 200], np.uint8)
    for i in range(num_frames):
        frames[i, :, :, :] = 40
        x0 = (i * 4) % width
        frames[i, :, x0:x0 + 8, :] = colour
    return frames


def _write_av(
    path: pathlib.Path,
    seed: int,
    *,
    video: bool,
    audio: bool,
    channels: int = 1,
    sampling_rate: int = AUDIO_SAMPLING_RATE,
    seconds: float = AUDIO_SECONDS,
    num_frames: int = VIDEO_FRAMES,
    size: Tuple[int, int] = VIDEO_SIZE,
) -> None:
    """Encode video (mpeg4, in every FFmpeg build) and/or AAC audio into an MP4/MKV/AVI container."""
    import av

    # mp4/m4a both use the "mp4" muxer; others are named by their suffix
    fmt = {".m4a": "mp4", ".mkv": "matroska"}.get(pathlib.Path(path).suffix.lower())
    with av.open(str(path), mode="w", format=fmt) as container:
        vstream = astream = None
        if video:
            vstream = container.add_stream("mpeg4", rate=VIDEO_FPS)
            vstream.width, vstream.height = size
            vstream.pix_fmt = "yuv420p"
            vstream.codec_context.thread_count = 1  # single-threaded encoding is deterministic
        if audio:
            astream = container.add_stream("aac", rate=sampling_rate)
            astream.layout = "mono" if channels == 1 else "stereo"
        if vstream is not None:
            for i, rgb in enumerate(video_frames(seed, num_frames, size)):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = i
                frame.time_base = Fraction(1, VIDEO_FPS)
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode())
        if astream is not None:
            signal = audio_array(seed, channels, sampling_rate, seconds)  # (samples, channels)
            planar = np.ascontiguousarray(signal.T)  # fltp wants (channels, samples)
            frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=astream.layout.name)
            frame.sample_rate = sampling_rate
            frame.pts = 0
            frame.time_base = Fraction(1, sampling_rate)
            container.mux(astream.encode(frame))
            container.mux(astream.encode())


def write_video(
    path: pathlib.Path, seed: int, num_frames: int = VIDEO_FRAMES, size: Tuple[int, int] = VIDEO_SIZE
) -> None:
    """Write an mpeg4 video (MP4/MKV/AVI by suffix) of `num_frames` frames of `size` (width, height) at 8 fps."""
    _write_av(path, seed, video=True, audio=False, num_frames=num_frames, size=size)


# ---------------------------------------------------------------- point clouds and meshes

def points_arrays(seed: int, n: int = NUM_POINTS) -> Tuple[np.ndarray, np.ndarray]:
    """(xyz, rgb): (n, 3) float32 points in [-1, 1] on a noisy ellipsoid and colours in [0, 1]."""
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal((n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radii = np.array([0.9, 0.6, 0.4]) * (0.8 + 0.2 * rng.random())
    xyz = np.clip(direction * radii + 0.02 * rng.standard_normal((n, 3)), -1, 1).astype(np.float32)
    rgb = rng.random((n, 3)).astype(np.float32)
    return xyz, rgb


def write_openshape_npy(path: pathlib.Path, seed: int, n: int = NUM_POINTS, rgb_255: bool = False) -> None:
    """Write an OpenShape-style `.npy`: a 0-d object array holding a dict, pickled by `np.save`.

    Keys as in the released files: `xyz`, `rgb` (in [0, 1], or 0-255 floats if `rgb_255`,
    as some evaluation sets store them) plus metadata the dataset ignores.
    """
    xyz, rgb = points_arrays(seed, n)
    record = {
        "xyz": xyz,
        "rgb": (rgb * 255).astype(np.float32) if rgb_255 else rgb,
        "dataset": "Objaverse",
        "group": f"{seed % 8:03d}",
        "id": f"{seed:032x}",
        "text": [f"a sample object {seed}"],
        "blip_caption": f"a rendering of object {seed}",
        "image_feat": np.random.default_rng(seed).standard_normal((2, 8)).astype(np.float16),
        "num_views": np.int64(12),
    }
    holder = np.empty((), dtype=object)
    holder[()] = record
    np.save(path, holder, allow_pickle=True)


def write_points_array(path: pathlib.Path, seed: int, n: int = NUM_POINTS, columns: int = 6, rgb_255: bool = False) -> None:
    """Write a point cloud without pickles: plain `.npy` (n x 3 or n x 6), `.npz` (xyz, rgb) or `.ply`.

    `columns=3` writes only coordinates; `rgb_255` stores colours as 0-255 (uint8 in `.ply`,
    floats otherwise).
    """
    path = pathlib.Path(path)
    xyz, rgb = points_arrays(seed, n)
    colours = rgb * 255 if rgb_255 else rgb
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = xyz if columns == 3 else np.concatenate([xyz, colours], 1).astype(np.float32)
        np.save(path, array, allow_pickle=False)
    elif suffix == ".npz":
        arrays = {"xyz": xyz} if columns == 3 else {"xyz": xyz, "rgb": colours.astype(np.float32)}
        np.savez(path, **arrays)
    elif suffix == ".ply":
        import trimesh

        colors = None if columns == 3 else np.round(rgb * 255).astype(np.uint8)
        cloud = trimesh.PointCloud(xyz, colors=colors)
        path.write_bytes(cloud.export(file_type="ply"))
    else:
        raise ValueError(f"{path}: write_points_array writes .npy, .npz or .ply, not {suffix!r}")


def mesh(seed: int):
    """A coloured, seed-scaled icosphere (trimesh.Trimesh) with 80 faces."""
    import trimesh

    rng = np.random.default_rng(seed)
    sphere = trimesh.creation.icosphere(subdivisions=1)
    sphere.apply_scale(0.5 + 0.5 * rng.random(3))
    colours = rng.integers(0, 256, (len(sphere.vertices), 4)).astype(np.uint8)
    colours[:, 3] = 255
    sphere.visual.vertex_colors = colours
    return sphere


def write_mesh(path: pathlib.Path, seed: int) -> None:
    """Write a mesh as `.obj`, `.stl`, `.off`, `.glb` or `.ply` (mesh PLY) via trimesh."""
    path = pathlib.Path(path)
    file_type = path.suffix.lower().lstrip(".")
    data = mesh(seed).export(file_type=file_type)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
