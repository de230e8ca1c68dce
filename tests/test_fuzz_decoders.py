"""Bounded fuzzing (hypothesis) of the point-cloud and audio decoders: whatever the bytes, only the documented
error types escape (`MediaDecodeError`, with `UnsafePickleError` a subclass), nothing the file names is run,
and a successful decode has the documented shape.

Inputs are mutations of real files (every format the sample writer makes: OpenShape pickled `.npy`, plain
`.npy`, `.npz`, `.ply`, meshes, WAV/FLAC/OGG/MP3/MP4-AAC) and random bytes behind each format's magic number.
The run is bounded (a fixed number of examples, derandomized) so it fits the default CI suite; raise
`EMM1_FUZZ_EXAMPLES` for a longer local campaign.
"""
import os
import pathlib
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile_media

from emm1_lib.testing import sample_media
from emm1_lib.media.audio import read_audio
from emm1_lib.media.files import MediaDecodeError
from emm1_lib.media.pointcloud import read_point_cloud

EXAMPLES = int(os.environ.get("EMM1_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="EMM1_FUZZ_EXAMPLES" not in os.environ, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MARKER = pathlib.Path(tempfile.gettempdir()) / f"emm1-fuzz-marker-{os.getpid()}"

POINT_FORMATS = (".npy", ".npz", ".ply", ".obj", ".stl", ".off", ".glb")
AUDIO_FORMATS = (".wav", ".flac", ".ogg", ".mp3", ".mp4")


def _seed_files():
    folder = pathlib.Path(tempfile.mkdtemp(prefix="emm1-fuzz-"))
    points = {}
    for suffix in POINT_FORMATS:
        path = folder / f"p{suffix}"
        sample_media.write_media(path, seed=1, kind="points")
        points[suffix] = path.read_bytes()
    path = folder / "plain.npy"
    sample_media.write_points_array(path, seed=2)
    points[".plain.npy"] = path.read_bytes()
    path = folder / "evil.npy"
    hostile_media.write_malicious_npy(path, MARKER)
    points[".evil.npy"] = path.read_bytes()
    audio = {}
    for suffix in AUDIO_FORMATS:
        path = folder / f"a{suffix}"
        sample_media.write_media(path, seed=3, kind="audio")
        audio[suffix] = path.read_bytes()
    return points, audio


POINT_SEEDS, AUDIO_SEEDS = _seed_files()
MAGIC = {".npy": b"\x93NUMPY\x01\x00", ".npz": b"PK\x03\x04", ".ply": b"ply\nformat ascii 1.0\n", ".off": b"OFF\n",
         ".glb": b"glTF", ".stl": b"solid x\n", ".wav": b"RIFF\x24\x00\x00\x00WAVEfmt ", ".flac": b"fLaC",
         ".ogg": b"OggS", ".mp3": b"ID3\x03", ".mp4": b"\x00\x00\x00\x18ftypmp42"}


@st.composite
def mutated(draw, seeds):
    """(suffix, bytes): a seed file with a few flips / truncation / insertion, or random bytes behind a magic."""
    key = draw(st.sampled_from(sorted(seeds)))
    suffix = "." + key.rsplit(".", 1)[-1]
    data = bytearray(seeds[key])
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "magic"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    elif kind == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif kind == "insert":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=64))
    else:
        data = bytearray(MAGIC.get(suffix, b"") + draw(st.binary(max_size=512)))
    return suffix, bytes(data)


def _check_points(value):
    xyz, rgb = value["xyz"], value["rgb"]
    assert isinstance(xyz, np.ndarray) and xyz.dtype == np.float32 and xyz.ndim == 2 and xyz.shape[1] == 3
    assert len(xyz) > 0
    if rgb is not None:
        assert rgb.dtype == np.float32 and rgb.shape == xyz.shape
        assert np.all((rgb >= 0) & (rgb <= 1))


@FUZZ
@given(mutated(POINT_SEEDS), st.sampled_from([None, 64]))
def test_point_cloud_decoder_raises_only_documented_errors(case, num_points):
    suffix, data = case
    try:
        value = read_point_cloud({"bytes": data, "path": f"fuzz{suffix}"}, num_points=num_points, mesh_points=256)
    except MediaDecodeError as err:
        assert f"fuzz{suffix}" in str(err) or "<bytes>" in str(err) or "fuzz" in str(err)
    else:
        _check_points(value)
        if num_points:
            assert len(value["xyz"]) == num_points
    assert not MARKER.exists(), "a pickle ran code"


@FUZZ
@given(mutated(AUDIO_SEEDS), st.sampled_from([None, 8000]))
def test_audio_decoder_raises_only_documented_errors(case, sampling_rate):
    suffix, data = case
    try:
        array, rate = read_audio({"bytes": data, "path": f"fuzz{suffix}"}, sampling_rate=sampling_rate)
    except MediaDecodeError as err:
        assert "fuzz" in str(err)
    else:
        assert isinstance(array, np.ndarray) and array.dtype == np.float32 and array.ndim == 1
        assert isinstance(rate, int) and rate > 0
        if sampling_rate:
            assert rate == sampling_rate


@pytest.mark.parametrize("suffix", sorted(POINT_SEEDS))
def test_unmutated_point_seeds_decode(suffix):
    """The seeds themselves decode (so the fuzz starts from valid files), except the malicious one."""
    data = POINT_SEEDS[suffix]
    name = "x." + suffix.rsplit(".", 1)[-1]
    if suffix == ".evil.npy":
        with pytest.raises(MediaDecodeError):
            read_point_cloud({"bytes": data, "path": name})
        assert not MARKER.exists()
    else:
        _check_points(read_point_cloud({"bytes": data, "path": name}, mesh_points=256))


# ---------------------------------------------------------------------------------------------- fuzz findings
# Inputs the fuzzer found that broke the documented output contract (points of shape (N, 3), finite colours).


def test_truncated_obj_vertex_is_an_error_not_a_bad_shape():
    data = b"# https://github.com/mikedh/trimesh\nv -0"
    with pytest.raises(MediaDecodeError):
        _check_points(read_point_cloud({"bytes": data, "path": "fuzz.obj"}))


def test_colours_with_nan_stay_in_range_or_are_refused():
    import io

    xyz = np.zeros((4, 3), np.float32)
    rgb = np.array([[np.nan, 0.5, 7e15], [0, 0, 0], [1, 1, 1], [0.2, 0.2, 0.2]], np.float32)
    buffer = io.BytesIO()
    np.save(buffer, np.hstack([xyz, rgb]))
    try:
        value = read_point_cloud({"bytes": buffer.getvalue(), "path": "fuzz.npy"})
    except MediaDecodeError:
        return
    _check_points(value)
