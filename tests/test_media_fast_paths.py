"""The decoders' shortcuts give what the long way gives, and refuse what it refuses.

- `.npy` headers are parsed once per distinct header (`safe_npy.read_npy_header`); a header met again must
  give numpy's own parse, never another file's, and a bad header must be refused every time.
- `resolve_media` answers "exists", "a regular file" and "a link" with one `lstat`; the missing-file and
  outside-the-root answers must stay those of `os.path.isfile` and `os.path.realpath`.
"""
import io
import os

import numpy as np
import pytest

from emm1_lib.media import safe_npy
from emm1_lib.media.files import MediaDecodeError
from emm1_lib.media.files import MediaOutsideRootError
from emm1_lib.media.files import MissingMediaError
from emm1_lib.media.files import resolve_media
from emm1_lib.media.pointcloud import read_point_cloud
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
