"""Decoders (emm1_lib.media.audio / video / pointcloud) on real files from emm1_lib.testing.sample_media,
compared with independent reads (soundfile, PyAV, numpy, trimesh)."""
import io
import pathlib
import pickle

import av
import numpy as np
import pytest
import soundfile
import soxr
import trimesh

import hostile_media

from emm1_lib.testing import sample_media
from emm1_lib.media.audio import read_audio
from emm1_lib.media.files import MediaDecodeError
from emm1_lib.media.files import MissingMediaError
from emm1_lib.media.files import UnsafePickleError
from emm1_lib.media.pointcloud import read_point_cloud
from emm1_lib.media.safe_npy import restricted_loads
from emm1_lib.media.video import VideoReader


def pyav_audio(path: pathlib.Path) -> np.ndarray:
    """Independent PyAV read: AAC decodes to planar float frames; concatenate (channels, samples)."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray() for f in container.decode(audio=0)]
    assert frames and frames[0].dtype == np.float32
    return np.concatenate(frames, axis=1)


def pyav_frames(path: pathlib.Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


# ------------------------------------------------------------------ audio

@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3"])
def test_soundfile_formats_match_soundfile_read(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    sample_media.write_media(path, seed=3)
    array, rate = read_audio(str(path))
    expected, expected_rate = soundfile.read(str(path), dtype="float32")
    assert rate == expected_rate == sample_media.AUDIO_SAMPLING_RATE
    assert array.dtype == np.float32 and array.ndim == 1
    np.testing.assert_array_equal(array, expected)


def test_wav_content_is_the_written_signal(tmp_path):
    path = tmp_path / "a.wav"
    sample_media.write_media(path, seed=5)
    array, _ = read_audio(str(path))
    np.testing.assert_allclose(array, sample_media.audio_array(5)[:, 0], atol=1 / 2**15 + 1e-6)


@pytest.mark.parametrize("suffix", [".mp4", ".m4a"])
def test_aac_in_mp4_matches_pyav(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    sample_media.write_media(path, seed=4, kind="audio")
    with pytest.raises(Exception):
        soundfile.read(str(path))  # why PyAV is needed: libsndfile cannot read MP4
    array, rate = read_audio(str(path))
    assert rate == sample_media.AUDIO_SAMPLING_RATE
    np.testing.assert_allclose(array, pyav_audio(path)[0], atol=1e-6)
    # lossy codec: still the same tone (correlation with the written signal, allowing codec delay)
    written = sample_media.audio_array(4)[:, 0]
    corr = max(np.corrcoef(array[d : d + 3000], written[:3000])[0, 1] for d in range(0, 1024))
    assert corr > 0.9


def test_stereo_mono_and_channels_first(tmp_path):
    path = tmp_path / "s.flac"
    sample_media.write_audio(path, seed=2, channels=2)
    expected, _ = soundfile.read(str(path), dtype="float32")  # (samples, 2)
    stereo, _ = read_audio(str(path), mono=False)
    mono, _ = read_audio(str(path))
    np.testing.assert_array_equal(stereo, expected.T)
    np.testing.assert_allclose(mono, expected.mean(axis=1), atol=1e-7)


def test_stereo_aac_channels_first(tmp_path):
    path = tmp_path / "s.m4a"
    sample_media.write_audio(path, seed=2, channels=2)
    stereo, _ = read_audio(str(path), mono=False)
    np.testing.assert_allclose(stereo, pyav_audio(path), atol=1e-6)


def test_resampling_uses_soxr(tmp_path):
    path = tmp_path / "a.wav"
    sample_media.write_media(path, seed=1)
    array, rate = read_audio(str(path), sampling_rate=8000)
    original, _ = soundfile.read(str(path), dtype="float32")
    assert rate == 8000 and len(array) == len(original) // 2
    np.testing.assert_allclose(array, soxr.resample(original, 16000, 8000, quality="HQ"), atol=1e-6)


def test_audio_from_bytes_without_name(tmp_path):
    for name, kind in [("a.flac", None), ("a.mp4", "audio")]:
        path = tmp_path / name
        sample_media.write_media(path, seed=8, kind=kind)
        from_bytes, _ = read_audio(path.read_bytes())
        from_path, _ = read_audio(str(path))
        np.testing.assert_array_equal(from_bytes, from_path)


def test_corrupt_audio_names_file(tmp_path):
    path = tmp_path / "bad.wav"
    path.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(MediaDecodeError, match="bad.wav"):
        read_audio(str(path))
    truncated = tmp_path / "trunc.mp4"
    hostile_media.write_corrupt(truncated, seed=1, kind="audio", keep=0.3)
    with pytest.raises(MediaDecodeError, match="trunc.mp4"):
        read_audio(str(truncated))


def test_truncated_wav_is_refused_and_an_unknown_length_is_not(tmp_path):
    path = tmp_path / "a.wav"
    sample_media.write_media(path, seed=2)
    data = path.read_bytes()
    with pytest.raises(MediaDecodeError, match=r"cut\.wav.*declares \d+ bytes of samples but only \d+ follow"):
        read_audio({"bytes": data[: len(data) - 10], "path": "cut.wav"})
    data_size = data.index(b"data") + 4
    streamed = data[:data_size] + b"\xff\xff\xff\xff" + data[data_size + 4:]  # a streaming writer's placeholder
    np.testing.assert_array_equal(read_audio({"bytes": streamed, "path": "s.wav"})[0], read_audio(str(path))[0])


def test_missing_audio_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        read_audio(str(tmp_path / "nope.wav"))


# ------------------------------------------------------------------ video

@pytest.mark.parametrize("name,kind", [("v.mp4", "video"), ("v.mkv", None), ("v.avi", None), ("av.mp4", None)])
def test_video_reader_matches_pyav(tmp_path, name, kind):
    path = tmp_path / name
    sample_media.write_media(path, seed=6, kind=kind)
    expected = pyav_frames(path)
    reader = VideoReader(str(path))
    assert len(reader) == reader.num_frames == len(expected) == sample_media.VIDEO_FRAMES
    assert reader.fps == pytest.approx(sample_media.VIDEO_FPS)
    assert reader.duration == pytest.approx(sample_media.VIDEO_FRAMES / sample_media.VIDEO_FPS, abs=0.2)
    assert (reader.width, reader.height) == sample_media.VIDEO_SIZE
    np.testing.assert_array_equal(reader[5], expected[5])
    np.testing.assert_array_equal(reader[2], expected[2])  # backwards: restarts
    np.testing.assert_array_equal(reader[-1], expected[-1])
    np.testing.assert_array_equal(reader.get_frames([7, 0, 7, 3]), expected[[7, 0, 7, 3]])
    np.testing.assert_array_equal(reader[1:8:3], expected[1:8:3])
    np.testing.assert_array_equal(np.stack(list(reader)), expected)
    # lossy codec, but the decoded frames are the written ones
    assert np.abs(expected.astype(int) - sample_media.video_frames(6)).mean() < 12
    with pytest.raises(IndexError):
        reader[8]


def test_video_reader_pickles_and_reopens(tmp_path):
    path = tmp_path / "v.mp4"
    sample_media.write_media(path, seed=2, kind="video")
    reader = VideoReader(str(path))
    first = reader[4]
    clone = pickle.loads(pickle.dumps(reader))
    assert clone.num_frames == reader.num_frames and clone.fps == reader.fps
    np.testing.assert_array_equal(clone[4], first)
    from_bytes = pickle.loads(pickle.dumps(VideoReader(path.read_bytes())))
    np.testing.assert_array_equal(from_bytes[4], first)


def test_both_streams_mp4_is_audio_and_video(tmp_path):
    path = tmp_path / "clip.mp4"
    sample_media.write_media(path, seed=3)
    assert VideoReader(str(path)).num_frames == sample_media.VIDEO_FRAMES
    array, _ = read_audio(str(path))
    np.testing.assert_allclose(array, pyav_audio(path)[0], atol=1e-6)


def test_corrupt_video_names_file(tmp_path):
    path = tmp_path / "trunc.mp4"
    hostile_media.write_corrupt(path, seed=1, kind="video", keep=0.2)
    with pytest.raises(MediaDecodeError, match="trunc.mp4"):
        VideoReader(str(path))


# ------------------------------------------------------------------ point clouds

def test_openshape_npy_matches_written_arrays(tmp_path):
    path = tmp_path / "p.npy"
    sample_media.write_media(path, seed=9)
    xyz, rgb = sample_media.points_arrays(9)
    out = read_point_cloud(str(path))
    assert out["xyz"].dtype == np.float32 and out["rgb"].dtype == np.float32
    np.testing.assert_array_equal(out["xyz"], xyz)
    np.testing.assert_array_equal(out["rgb"], rgb)
    # the unsafe reference reader agrees (on our own trusted file)
    reference = np.load(path, allow_pickle=True).item()
    np.testing.assert_array_equal(out["xyz"], reference["xyz"])


def test_openshape_rgb_255_is_rescaled(tmp_path):
    path = tmp_path / "p.npy"
    sample_media.write_openshape_npy(path, seed=1, rgb_255=True)
    out = read_point_cloud(str(path))
    np.testing.assert_allclose(out["rgb"], sample_media.points_arrays(1)[1], atol=1e-6)


@pytest.mark.parametrize("columns", [3, 6])
@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_plain_arrays_match_numpy(tmp_path, suffix, columns):
    path = tmp_path / f"p{suffix}"
    sample_media.write_points_array(path, seed=2, columns=columns)
    out = read_point_cloud(str(path))
    loaded = np.load(path)  # allow_pickle=False: plain arrays only
    if suffix == ".npy":
        xyz, rgb = loaded[:, :3], (loaded[:, 3:] if columns == 6 else None)
    else:
        xyz, rgb = loaded["xyz"], (loaded["rgb"] if columns == 6 else None)
    np.testing.assert_array_equal(out["xyz"], xyz)
    if rgb is None:
        assert out["rgb"] is None
    else:
        np.testing.assert_array_equal(out["rgb"], rgb)


def test_fortran_order_npy(tmp_path):
    xyz = np.asfortranarray(sample_media.points_arrays(3)[0])
    np.save(tmp_path / "f.npy", xyz)
    np.testing.assert_array_equal(read_point_cloud(str(tmp_path / "f.npy"))["xyz"], xyz)


def test_point_cloud_ply_matches_trimesh(tmp_path):
    path = tmp_path / "p.ply"
    sample_media.write_media(path, seed=4)
    cloud = trimesh.load(str(path))
    out = read_point_cloud(str(path))
    np.testing.assert_allclose(out["xyz"], cloud.vertices, atol=1e-6)
    np.testing.assert_allclose(out["rgb"], cloud.colors[:, :3] / 255, atol=1e-6)
    np.testing.assert_allclose(out["xyz"], sample_media.points_arrays(4)[0], atol=1e-6)


@pytest.mark.parametrize("suffix", [".obj", ".stl", ".off", ".glb", ".ply"])
def test_meshes_are_sampled_on_the_surface(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    sample_media.write_mesh(path, seed=5)
    out = read_point_cloud(str(path), num_points=500)
    assert out["xyz"].shape == (500, 3)
    mesh = sample_media.mesh(5)
    # distance of every point to every triangle of the independently built mesh (no rtree needed)
    triangles = np.repeat(mesh.triangles[None], len(out["xyz"]), axis=0).reshape(-1, 3, 3)
    points = np.repeat(out["xyz"].astype(np.float64), len(mesh.faces), axis=0)
    closest = trimesh.triangles.closest_point(triangles, points)
    distance = np.linalg.norm(closest - points, axis=1).reshape(len(out["xyz"]), -1).min(axis=1)
    assert distance.max() < 1e-5
    again = read_point_cloud(str(path), num_points=500)
    np.testing.assert_array_equal(out["xyz"], again["xyz"])  # deterministic
    if suffix in (".obj", ".glb", ".ply"):  # formats that keep vertex colours
        assert out["rgb"].shape == (500, 3) and 0 <= out["rgb"].min() and out["rgb"].max() <= 1
        assert out["rgb"].std() > 0.05  # interpolated colours, not a constant
    if suffix == ".stl":
        assert out["rgb"] is None
    default = read_point_cloud(str(path))
    assert len(default["xyz"]) == 10000


def test_resampling_and_normalize(tmp_path):
    path = tmp_path / "p.npy"
    sample_media.write_media(path, seed=7)
    xyz, _ = sample_media.points_arrays(7)
    down = read_point_cloud(str(path), num_points=100)
    assert down["xyz"].shape == (100, 3) and down["rgb"].shape == (100, 3)
    rows = {tuple(r) for r in xyz.tolist()}
    assert all(tuple(r) in rows for r in down["xyz"].tolist())  # a subset of the original points
    assert len({tuple(r) for r in down["xyz"].tolist()}) == 100  # without replacement
    np.testing.assert_array_equal(down["xyz"], read_point_cloud(str(path), num_points=100)["xyz"])
    assert not np.array_equal(down["xyz"], read_point_cloud(str(path), num_points=100, seed=1)["xyz"])
    up = read_point_cloud(str(path), num_points=1000)
    np.testing.assert_array_equal(up["xyz"][:256], xyz)  # every point kept, then repeats
    norm = read_point_cloud(str(path), normalize=True)["xyz"]
    np.testing.assert_allclose(norm.mean(axis=0), 0, atol=1e-5)
    assert np.linalg.norm(norm, axis=1).max() == pytest.approx(1.0, abs=1e-5)
    centred = xyz - xyz.mean(axis=0)
    np.testing.assert_allclose(norm, centred / np.linalg.norm(centred, axis=1).max(), atol=1e-6)


def test_point_cloud_from_bytes_is_sniffed(tmp_path):
    for name in ("p.npy", "p.npz", "p.ply"):
        path = tmp_path / name
        sample_media.write_media(path, seed=1)
        np.testing.assert_array_equal(read_point_cloud(path.read_bytes())["xyz"], read_point_cloud(str(path))["xyz"])


def test_malicious_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npy"
    hostile_media.write_malicious_npy(path, marker)
    with pytest.raises(UnsafePickleError, match=r"evil\.npy.*(io|builtins)\.open"):
        read_point_cloud(str(path))
    assert not marker.exists()
    # the fixture is really malicious: an unsafe load does run its payload
    control_marker = tmp_path / "control"
    control = tmp_path / "control.npy"
    hostile_media.write_malicious_npy(control, control_marker)
    np.load(control, allow_pickle=True)
    assert control_marker.exists()


def test_restricted_unpickler_refuses_os_system():
    payload = b"cos\nsystem\n(S'echo hi'\ntR."  # protocol-0 pickle of os.system("echo hi")
    with pytest.raises(UnsafePickleError, match="os.system"):
        restricted_loads(payload, "x.npy")
    assert restricted_loads(pickle.dumps({"a": np.arange(3), "b": [1, (2, 3)], "c": np.float32(2)})) is not None


def test_restricted_loads_gives_plain_arrays_everywhere():
    """The unpickler builds a checking ndarray subclass; what it returns holds plain ndarrays, sharing kept."""
    holder = np.empty(3, object)
    shared = np.arange(4, dtype=np.float32)
    holder[:] = [holder, {"k": (shared,)}, [shared, np.asfortranarray(np.ones((2, 2)))]]
    loaded = restricted_loads(pickle.dumps({"holder": holder, "shared": shared}, protocol=3))
    out = loaded["holder"]
    arrays = [out, out[1]["k"][0], out[2][0], out[2][1], loaded["shared"]]
    assert all(type(a) is np.ndarray for a in arrays)
    assert out[0] is out and out[2][0] is loaded["shared"] is out[1]["k"][0]
    np.testing.assert_array_equal(out[2][1], np.ones((2, 2)))


class _BytearrayOfNumpyInt:
    def __reduce__(self):
        return bytearray, (np.int64(1 << 30),)


def test_bytearray_sizes_are_charged_whatever_their_integer_type():
    with pytest.raises(MediaDecodeError, match="far more than the file holds"):
        restricted_loads(pickle.dumps(_BytearrayOfNumpyInt(), protocol=3), "x.npy")


def test_oversize_header_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.npy"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**10, 3)})
    path.write_bytes(header.getvalue() + b"\x00" * 48)
    with pytest.raises(MediaDecodeError, match="huge.npy.*truncated"):
        read_point_cloud(str(path))


@pytest.mark.parametrize("name", ["p.npy", "p.npz", "p.ply", "m.glb"])
def test_truncated_point_clouds_name_the_file(tmp_path, name):
    path = tmp_path / name
    hostile_media.write_corrupt(path, seed=1, keep=0.5)
    with pytest.raises(MediaDecodeError, match=name.replace(".", r"\.")):
        read_point_cloud(str(path))


def test_wrong_shapes_are_explained(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((10, 4), np.float32))
    with pytest.raises(MediaDecodeError, match=r"bad\.npy.*\(N, 3\)"):
        read_point_cloud(str(tmp_path / "bad.npy"))
    holder = np.empty((), dtype=object)
    holder[()] = {"points_missing": np.zeros((3, 3))}
    np.save(tmp_path / "nokey.npy", holder, allow_pickle=True)
    with pytest.raises(MediaDecodeError, match="no 'xyz'"):
        read_point_cloud(str(tmp_path / "nokey.npy"))


def test_missing_point_cloud(tmp_path):
    with pytest.raises(MissingMediaError, match="gone.npy"):
        read_point_cloud(str(tmp_path / "gone.npy"))


# ------------------------------------------------------------------ sample_media itself

@pytest.mark.parametrize("name,kind", [("a.wav", None), ("a.jpg", None), ("p.npy", None), ("v.mp4", "video"), ("a.mp4", "audio"), ("m.glb", None)])
def test_sample_media_is_deterministic(tmp_path, name, kind):
    a, b, c = tmp_path / ("1" + name), tmp_path / ("2" + name), tmp_path / ("3" + name)
    sample_media.write_media(a, 1, kind=kind)
    sample_media.write_media(b, 1, kind=kind)
    sample_media.write_media(c, 2, kind=kind)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_sample_media_extension_table():
    assert sample_media.DEFAULT_EXTENSIONS == {"image": ".jpg", "audio": ".wav", "video": ".mp4", "points": ".npy"}
    for kind, ext in sample_media.DEFAULT_EXTENSIONS.items():
        assert sample_media.EXTENSIONS[kind][0] == ext
    assert sample_media.infer_kind(pathlib.Path("x.mp4")) is None
    with pytest.raises(ValueError, match="not a image format"):
        sample_media.write_media(pathlib.Path("x.wav"), 0, kind="image")


def test_npy_headers_are_parsed_one_thread_at_a_time(monkeypatch):
    """numpy parses a .npy header with `ast.literal_eval`, which CPython 3.11 cannot run in two threads at once
    ("SystemError: AST constructor recursion depth mismatch", seen when a download's fetch threads decode-checked
    OpenShape files): `load_npy` parses headers under a lock, while reading the streams outside it."""
    import threading

    from numpy.lib import format as npformat

    from emm1_lib.media.safe_npy import load_npy

    parse = npformat.read_array_header_1_0
    inside, most = [0], [0]
    lock = threading.Lock()

    def watched(f, *args, **kwargs):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            threading.Event().wait(0.1)  # a parse in progress: any other thread parsing now overlaps it
            return parse(f, *args, **kwargs)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(npformat, "read_array_header_1_0", watched)
    data = io.BytesIO()
    np.save(data, np.arange(12.0).reshape(3, 4))
    start = threading.Barrier(4)
    results = [None] * 4

    def read(i):
        start.wait()
        results[i] = load_npy(io.BytesIO(data.getvalue()), f"{i}.npy")

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(np.array_equal(r, np.arange(12.0).reshape(3, 4)) for r in results)
    assert most[0] == 1
