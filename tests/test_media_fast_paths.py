"""The decoders' shortcuts give what the long way gives, and refuse what it refuses.

- `.npy` headers are parsed once per distinct header (`safe_npy.read_npy_header`); a header met again must
  give numpy's own parse, never another file's, and a bad header must be refused every time.
- A point cloud's checks read each array once: colours in [0, 1] are told by one maximum of their bits, and
  coordinates' finiteness by one `isfinite`; what they accept, convert and refuse must be what the min/max checks
  did on every kind of colours (out of range, -0.0, NaN, infinities, integers, other float widths, byte orders).
- `resolve_media` answers "exists", "a regular file" and "a link" with one `lstat`; the missing-file and
  outside-the-root answers must stay those of `os.path.isfile` and `os.path.realpath`.
- 16-bit PCM audio in WAV-like containers is read as int16 and scaled by numpy, from one open of the file: the
  samples must be libsndfile's float32 ones bit for bit (FLAC, which keeps libsndfile's conversion, too), other
  encodings keep libsndfile's conversion, a WAV cut short is still refused, and no file is left open whatever happens.
"""
import gc
import io
import math
import os

import numpy as np
import pytest
import soundfile

from emm1_lib.media import safe_npy
from emm1_lib.media.audio import read_audio
from emm1_lib.media.files import MediaDecodeError
from emm1_lib.media.files import MediaOutsideRootError
from emm1_lib.media.files import MissingMediaError
from emm1_lib.media.files import resolve_media
from emm1_lib.media.pointcloud import read_point_cloud
from emm1_lib.media.pointcloud import rgb_to_unit
from emm1_lib.media.safe_npy import load_npy
from emm1_lib.media.safe_npy import read_npy_header
from emm1_lib.testing import sample_media

ARRAYS = {
    "float32 (5, 3)": np.arange(15, dtype=np.float32).reshape(5, 3),
    "float64 fortran (4, 6)": np.asfortranarray(np.arange(24, dtype=np.float64).reshape(4, 6)),
    "big-endian int16 (7,)": np.arange(7, dtype=">i2"),
    "structured": np.array([(1, 2.5), (3, 4.5)], dtype=[("a", "<i4"), ("b", "<f8")]),
    "0-d float": np.array(3.5),
}


def _numpy_header(path: str):
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        return safe_npy._read_array_header_any_version(f, version)


def _our_header(path: str):
    with open(path, "rb") as f:
        parsed = read_npy_header(f)
        return parsed, f.tell()


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_a_header_met_again_gives_numpys_parse(tmp_path, name, version):
    array = ARRAYS[name]
    path = str(tmp_path / "a.npy")
    with open(path, "wb") as f:
        np.lib.format.write_array(f, array, version=version)
    first, first_end = _our_header(path)
    again, again_end = _our_header(path)  # from the cache
    assert first == again == _numpy_header(path)
    assert first_end == again_end  # left at the array data both times
    with open(path, "rb") as f:
        np.testing.assert_array_equal(load_npy(f, path), np.load(path))


def test_a_version_3_npy_is_read(tmp_path):
    """numpy 2 moved the private reader of 3.0 headers (utf-8 field names); such files failed to decode."""
    path = tmp_path / "v3.npy"
    xyz = np.arange(30, dtype=np.float32).reshape(10, 3)
    with open(path, "wb") as f:
        np.lib.format.write_array(f, xyz, version=(3, 0))
    np.testing.assert_array_equal(read_point_cloud(str(path))["xyz"], xyz)


def test_openshape_files_share_one_parsed_header_and_keep_their_own_points(tmp_path):
    paths = []
    for seed in range(6):
        paths.append(tmp_path / f"{seed}.npy")
        sample_media.write_openshape_npy(paths[-1], seed, n=50 + seed)  # same header, different contents
    for seed, path in list(enumerate(paths)) * 2:
        xyz, rgb = sample_media.points_arrays(seed, 50 + seed)
        out = read_point_cloud(str(path))
        np.testing.assert_array_equal(out["xyz"], xyz)
        np.testing.assert_array_equal(out["rgb"], rgb)
    reference = np.load(paths[3], allow_pickle=True).item()  # the unsafe reader, on our own trusted file
    np.testing.assert_array_equal(read_point_cloud(str(paths[3]))["xyz"], reference["xyz"])


def test_headers_of_equal_length_and_other_shapes_are_not_confused(tmp_path):
    # (10, 3) and (20, 3) pad to headers of the same length: only the bytes tell them apart
    for rows in (10, 20, 10, 30, 20):
        path = tmp_path / f"p{rows}.npy"
        np.save(path, np.full((rows, 3), rows, np.float32))
        out = read_point_cloud(str(path))
        assert out["xyz"].shape == (rows, 3) and (out["xyz"] == rows).all()


def test_the_header_cache_stays_bounded_and_right(tmp_path):
    for rows in range(1, safe_npy._HEADER_CACHE_SIZE + 40):
        path = tmp_path / "p.npy"
        np.save(path, np.full((rows, 3), rows, np.float32))
        out = read_point_cloud(str(path))
        assert out["xyz"].shape == (rows, 3) and out["xyz"][0, 0] == rows
        assert len(safe_npy._HEADER_CACHE) <= safe_npy._HEADER_CACHE_SIZE


def _npy_with_header(header: bytes, version: int = 1) -> bytes:
    length = len(header).to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + length + header


@pytest.mark.parametrize("content", [
    _npy_with_header(b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3), 'extra': 1}\n"),  # unknown key
    _npy_with_header(b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, -1)}\n"),  # negative dimension
    _npy_with_header(b"__import__('os').system('true')\n"),  # not a literal
    _npy_with_header(b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3)}\n")[:-20],  # cut in the header
], ids=["unknown key", "negative dimension", "not a literal", "truncated header"])
def test_a_bad_header_is_refused_every_time(tmp_path, content):
    path = tmp_path / "bad.npy"
    path.write_bytes(content + b"\x00" * 64)
    for _ in range(3):  # nothing about a refused header is remembered
        with pytest.raises(MediaDecodeError, match="bad.npy"):
            read_point_cloud(str(path))


def test_a_huge_declared_header_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.npy"
    path.write_bytes(b"\x93NUMPY\x02\x00" + (2**31).to_bytes(4, "little") + b"{" * 100)

    class CountingFile(io.BytesIO):
        largest_read = 0

        def read(self, n=-1):
            CountingFile.largest_read = max(CountingFile.largest_read, n)
            return super().read(n)

    with pytest.raises(ValueError, match="header declares 2147483648 bytes"):
        read_npy_header(CountingFile(path.read_bytes()))
    assert CountingFile.largest_read < 1000
    with pytest.raises(MediaDecodeError, match="huge.npy"):
        read_point_cloud(str(path))


# ------------------------------------------------------------------ point-cloud checks in one pass

def _rgb_to_unit_by_min_and_max(rgb: np.ndarray) -> np.ndarray:
    """The colour conversion as it was before its one-pass shortcut: the reference."""
    if rgb.size == 0:
        return rgb.astype(np.float32)
    low, high = float(rgb.min()), float(rgb.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise MediaDecodeError("its colours hold NaN or infinite values")
    if rgb.dtype.kind in "iu" or high > 1.0 + 1e-6:
        out, low, high = rgb.astype(np.float32) / np.float32(255.0), low / 255.0, high / 255.0
    else:
        out = rgb.astype(np.float32, copy=False)
    return np.clip(out, 0.0, 1.0) if low < 0.0 or high > 1.0 else out


def _colour_cases():
    rng = np.random.default_rng(7)
    unit = rng.random((200, 3))
    special = {
        "in [0, 1)": unit,
        "0 and 1 exactly": np.concatenate([unit, [[0.0, 1.0, 1.0]]]),
        "-0.0": np.concatenate([unit, [[-0.0, 0.5, 0.5]]]),
        "just above 1": np.concatenate([unit, [[np.nextafter(np.float32(1), np.float32(2)), 0.5, 0.5]]]),
        "above 1 within 1e-6": np.concatenate([unit, [[1.0 + 5e-7, 0.5, 0.5]]]),
        "0-255": unit * 255,
        "slightly negative": np.concatenate([unit, [[-1e-3, 0.5, 0.5]]]),
        "denormal": np.concatenate([unit, [[1e-40, 5e-324, 0.5]]]),
        "NaN": np.concatenate([unit, [[np.nan, 0.5, 0.5]]]),
        "negative NaN": np.concatenate([unit, [[-np.nan, 0.5, 0.5]]]),
        "inf": np.concatenate([unit, [[np.inf, 0.5, 0.5]]]),
        "-inf": np.concatenate([unit, [[-np.inf, 0.5, 0.5]]]),
        "all zero": np.zeros((5, 3)),
        "empty": np.zeros((0, 3)),
    }
    for label, values in special.items():
        for dtype in ("<f4", "<f8", "<f2", ">f4", ">f8"):
            yield f"{label} {dtype}", values.astype(dtype)
        six = np.concatenate([values, values], axis=1).astype(np.float32)  # a strided view, as (N, 6) files give
        yield f"{label} float32 strided", six[:, 3:6]
        yield f"{label} float32 fortran", np.asfortranarray(values.astype(np.float32))
    for dtype in ("u1", "<i4", ">i2", "<u8"):
        yield f"integers {dtype}", rng.integers(0, 256, (50, 3)).astype(dtype)
        yield f"integers 0 and 1 {dtype}", rng.integers(0, 2, (50, 3)).astype(dtype)


@pytest.mark.parametrize("label, rgb", list(_colour_cases()), ids=[label for label, _ in _colour_cases()])
def test_one_pass_colours_agree_with_min_and_max(label, rgb):
    before = rgb.copy()
    try:
        expected = _rgb_to_unit_by_min_and_max(rgb)
    except MediaDecodeError:
        with pytest.raises(MediaDecodeError, match="colours hold NaN or infinite"):
            rgb_to_unit(rgb, "c.npy")
        return
    out = rgb_to_unit(rgb, "c.npy")
    assert out.dtype == expected.dtype == np.float32 and out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)
    assert np.array_equal(np.signbit(out), np.signbit(expected))  # -0.0 stays -0.0 either way
    assert np.shares_memory(out, rgb) == np.shares_memory(expected, rgb)  # a view exactly when it was one
    np.testing.assert_array_equal(rgb, before)  # the input is left alone


@pytest.mark.parametrize("dtype", ["<f4", "<f8", "<f2", ">f4"])
@pytest.mark.parametrize("bad", [np.nan, -np.nan, np.inf, -np.inf])
def test_one_nonfinite_coordinate_is_refused_and_counted(tmp_path, dtype, bad):
    xyz = np.random.default_rng(3).standard_normal((100, 3)).astype(dtype)
    for row, column in ((0, 0), (57, 2), (99, 1)):
        xyz[row, column] = bad
    path = tmp_path / "bad.npy"
    np.save(path, xyz)
    with pytest.raises(MediaDecodeError, match=r"bad.npy: 3 of its 100 points have NaN or infinite"):
        read_point_cloud(str(path))


def test_the_largest_finite_coordinates_are_accepted(tmp_path):
    xyz = np.array([[np.finfo(np.float32).max, -np.finfo(np.float32).max, 0.0]] * 4, np.float32)
    path = tmp_path / "big.npy"
    np.save(path, xyz)
    np.testing.assert_array_equal(read_point_cloud(str(path))["xyz"], xyz)


# ------------------------------------------------------------------ resolve_media's one lstat

@pytest.fixture
def tree(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    sample_media.write_openshape_npy(root / "sub" / "in.npy", 1, n=20)
    sample_media.write_openshape_npy(outside / "out.npy", 2, n=20)
    os.symlink(root / "sub" / "in.npy", root / "link_in.npy")
    os.symlink(outside / "out.npy", root / "link_out.npy")
    os.symlink(root / "nowhere.npy", root / "dangling.npy")
    os.symlink(root / "sub", root / "link_to_folder.npy")
    (root / "folder.npy").mkdir()
    return root


@pytest.mark.parametrize("name", ["sub/in.npy", "link_in.npy"])
def test_files_and_links_inside_the_root_resolve(tree, name):
    source = resolve_media(str(tree / name), media_root=str(tree))
    assert source.file == str(tree / name)
    assert read_point_cloud(source)["xyz"].shape == (20, 3)


def test_a_link_out_of_the_root_is_refused(tree):
    with pytest.raises(MediaOutsideRootError, match="link_out.npy"):
        resolve_media(str(tree / "link_out.npy"), media_root=str(tree))
    assert resolve_media(str(tree / "link_out.npy")).file == str(tree / "link_out.npy")  # no root: no check


@pytest.mark.parametrize("name", ["missing.npy", "dangling.npy", "folder.npy", "link_to_folder.npy", "a\0b.npy"])
def test_what_is_not_a_file_is_missing(tree, name):
    if "\0" not in name:
        assert not os.path.isfile(str(tree / name))  # what the single lstat must agree with
    with pytest.raises(MissingMediaError, match="Media file not found"):
        resolve_media(str(tree / name), media_root=str(tree))
    assert resolve_media(str(tree / name), on_missing_media="null", media_root=str(tree)) is None


# ------------------------------------------------------------------ 16-bit PCM audio

def _every_int16(channels: int) -> np.ndarray:
    """All 65,536 sample values, the extremes included, in (frames, channels)."""
    values = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    return np.stack([np.roll(values, 1000 * c) for c in range(channels)], axis=1)


@pytest.mark.parametrize("suffix, fmt", [(".wav", "WAV"), (".aiff", "AIFF"), (".w64", "W64"), (".flac", "FLAC")])
@pytest.mark.parametrize("channels", [1, 2])
def test_pcm16_gives_libsndfiles_float32_bit_for_bit(tmp_path, suffix, fmt, channels):
    path = tmp_path / f"a{suffix}"
    soundfile.write(str(path), _every_int16(channels), 16000, format=fmt, subtype="PCM_16")
    assert soundfile.info(str(path)).subtype == "PCM_16"
    expected, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
    for source in (str(path), {"bytes": path.read_bytes(), "path": path.name}):  # a descriptor, a file object
        array, rate = read_audio(source, mono=False)
        assert rate == 16000 and array.dtype == np.float32
        np.testing.assert_array_equal(array, expected.T)
        assert np.array_equal(array.view(np.int32), np.ascontiguousarray(expected.T).view(np.int32))  # -0.0 too
        mono, _ = read_audio(source)
        np.testing.assert_array_equal(mono, expected.mean(axis=1, dtype=np.float32) if channels > 1 else expected[:, 0])


@pytest.mark.parametrize("subtype", ["PCM_24", "PCM_32", "FLOAT", "PCM_U8"])
def test_other_encodings_keep_libsndfiles_conversion(tmp_path, subtype):
    path = tmp_path / "a.wav"
    signal = np.sin(np.linspace(0, 200, 4000)).astype(np.float32) * 0.9
    soundfile.write(str(path), signal, 16000, subtype=subtype)
    expected, _ = soundfile.read(str(path), dtype="float32")
    np.testing.assert_array_equal(read_audio(str(path))[0], expected)


def _open_descriptors(folder) -> list:
    """This process's descriptors open on files under `folder` (others, e.g. left by earlier tests, do not count)."""
    gc.collect()
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
        if target.startswith(str(folder)):
            found.append(target)
    return sorted(found)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_audio_from_a_path_leaves_no_file_open_and_refuses_a_cut_wav(tmp_path):
    good = tmp_path / "good.wav"
    sample_media.write_media(good, seed=4)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:-10])
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x00garbage" * 10)
    read_audio(str(good))  # imports, codec set-up
    before = _open_descriptors(tmp_path)
    for _ in range(20):
        read_audio(str(good))
        with pytest.raises(MediaDecodeError, match=r"cut\.wav.*declares \d+ bytes of samples but only \d+ follow"):
            read_audio(str(cut))
        with pytest.raises(MediaDecodeError, match="garbage.wav"):  # both libsndfile and FFmpeg fail on it
            read_audio(str(garbage))
    assert _open_descriptors(tmp_path) == before == []


def test_a_wav_linked_out_of_the_root_is_refused_and_one_inside_decodes(tmp_path):
    from emm1_lib.media.features import media_feature

    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    sample_media.write_media(outside / "out.wav", seed=1)
    sample_media.write_media(root / "in.wav", seed=2)
    os.symlink(outside / "out.wav", root / "link_out.wav")
    feature = media_feature("audio", media_root=str(root))
    with pytest.raises(MediaOutsideRootError, match="link_out.wav"):
        feature.decode_example({"bytes": None, "path": str(root / "link_out.wav")})
    decoded = feature.decode_example({"bytes": None, "path": str(root / "in.wav")})
    np.testing.assert_array_equal(decoded["array"], soundfile.read(str(root / "in.wav"), dtype="float32")[0])


class _Trickle(io.RawIOBase):
    """A stream that returns at most 3 bytes a read (a socket or a pipe may)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = 3 if n < 0 else min(n, 3)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk


def test_a_header_read_a_few_bytes_at_a_time_is_read_whole(tmp_path):
    path = tmp_path / "p.npy"
    np.save(path, np.arange(12, dtype=np.float32).reshape(4, 3))
    data = path.read_bytes()
    with open(path, "rb") as f:
        expected = read_npy_header(f)
    trickle = _Trickle(data)
    assert read_npy_header(trickle) == expected
    assert trickle.pos == len(data) - 12 * 4  # left at the array data
