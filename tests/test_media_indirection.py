"""Media files that make a decoder open *other* files, and paths that only look remote.

The root check (`check_under_root`) sees the path the builder built. These cases get past it
unless the decoders themselves are restricted:
- FFmpeg demuxers that read files named inside the file (ffconcat scripts, HLS playlists) and
  protocol URLs (`concat:`, `subfile:`, `file:`) inside them: PyAV opens only allowed container
  formats, with the `file` protocol for local files and none for in-memory bytes;
- Pillow plugins outside the image formats of E-MM1's sources (EPS hands the file to Ghostscript);
- a `file_name` holding `://` (`http://a/x.jpg`) made a local path look remote, which skipped the
  symlink check: remoteness is decided by the scheme the whole path starts with.
"""
import csv
import io
import os
import pathlib
import warnings

import numpy as np
import pyarrow.compute as pc
import pytest

import emm1
from emm1_lib.io.fs import is_remote
from emm1_lib.media.audio import read_audio
from emm1_lib.media.features import media_feature
from emm1_lib.media.files import ALLOWED_DEMUXERS
from emm1_lib.media.files import MediaDecodeError
from emm1_lib.media.files import MediaOutsideRootError
from emm1_lib.media.video import VideoReader
from emm1_lib.testing.sample import generate_sample_tree
from emm1_lib.testing.sample_media import write_audio
from emm1_lib.testing.sample_media import write_image
from emm1_lib.testing.sample_media import write_video

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n"


@pytest.fixture
def tree(tmp_path):
    """`root/` (the media root) and `outside/` holding real media that no row may reach."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    for folder in (root / "shared" / "audio", root / "shared" / "video", root / "shared" / "image", outside):
        folder.mkdir(parents=True, exist_ok=True)
    write_video(outside / "secret.mp4", seed=1)
    write_audio(outside / "secret.mp4a.mp4", seed=2)
    write_image(outside / "secret.jpg", seed=3)
    os.symlink(outside / "secret.mp4", root / "shared" / "video" / "link.mp4")
    os.symlink(outside / "secret.mp4a.mp4", root / "shared" / "audio" / "link.mp4")
    return root, outside


def _indirections(outside: pathlib.Path):
    """(name, bytes) of container files whose content points at files or URLs elsewhere."""
    secret = outside / "secret.mp4"
    return [
        ("ffconcat via a symlink in the root", b"ffconcat version 1.0\nfile link.mp4\n"),
        ("ffconcat naming the outside file", f"ffconcat version 1.0\nfile {secret}\n".encode()),
        ("ffconcat with a concat: URL", f"ffconcat version 1.0\nfile 'concat:{secret}|{secret}'\n".encode()),
        ("ffconcat with a subfile: URL", f"ffconcat version 1.0\nfile 'subfile,,start,0,end,0,,:{secret}'\n".encode()),
        ("HLS playlist", f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\nfile:{secret}\n#EXT-X-ENDLIST\n".encode()),
    ]


@pytest.mark.parametrize("case", range(5))
@pytest.mark.parametrize("modality", ["audio", "video"])
def test_containers_that_name_other_files_are_refused(tree, modality, case):
    root, outside = tree
    name, content = _indirections(outside)[case]
    clip = root / "shared" / modality / "clip.mp4"
    clip.write_bytes(content)
    feature = media_feature(modality, media_root=str(root))
    with pytest.raises(MediaDecodeError, match="allowed audio/video container formats") as raised:
        value = feature.decode_example({"path": str(clip), "bytes": None})
        if modality == "video":
            value.get_frames([0])
    assert str(clip) in str(raised.value), name
    # the same bytes embedded (a Hub export with media inside, or a remote file read into memory)
    with pytest.raises(MediaDecodeError, match="allowed audio/video container formats"):
        feature.decode_example({"path": "clip.mp4", "bytes": content})


def test_the_real_containers_still_decode(tree, tmp_path):
    root, _ = tree
    for suffix in (".wav", ".flac", ".ogg", ".mp4"):
        path = root / "shared" / "audio" / f"ok{suffix}"
        write_audio(path, seed=4)
        array, rate = read_audio(str(path))
        assert array.ndim == 1 and len(array) > 0 and rate > 0, suffix
    for suffix in (".mp4", ".mkv", ".avi"):
        path = root / "shared" / "video" / f"ok{suffix}"
        write_video(path, seed=5)
        reader = VideoReader(str(path))
        assert reader.num_frames > 0 and reader.get_frames([0]).shape[-1] == 3, suffix
    assert {"mov", "mp4", "matroska", "webm", "wav", "flac", "ogg", "mp3", "aac"} <= set(ALLOWED_DEMUXERS)
    assert not {"concat", "hls", "dash", "image2", "tee", "data"} & set(ALLOWED_DEMUXERS)


def test_a_file_named_like_a_protocol_url_is_read_as_a_plain_file(tree):
    """`file:` prefixing: a local file whose name looks like an FFmpeg URL is never parsed as one."""
    root, outside = tree
    odd = root / "shared" / "audio" / "concat:x.wav"
    write_audio(odd, seed=6)
    array, _ = read_audio(str(odd))
    assert len(array) > 0


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_images_outside_the_allowed_formats_are_refused(tree, suffix):
    root, _ = tree
    path = root / "shared" / "image" / f"vector{suffix}"
    path.write_bytes(EPS)
    feature = media_feature("image", media_root=str(root))
    with pytest.raises(MediaDecodeError, match=r"as an image \(JPEG, PNG"):
        feature.decode_example({"path": str(path), "bytes": None})
    with pytest.raises(MediaDecodeError, match=r"as an image \(JPEG, PNG"):
        feature.decode_example({"path": None, "bytes": EPS})
    write_image(path, seed=7)
    assert feature.decode_example({"path": str(path), "bytes": None}).size == (32, 24)


@pytest.mark.parametrize("path, remote", [
    ("https://host/x.jpg", True), ("hf://datasets/o/n/x.jpg", True), ("zip://a.jpg::https://h/z.zip", True),
    ("simplecache::s3://b/k.jpg", True), ("s3://b/k", True), ("file:///data/x.jpg", False),
    ("/data/shared/image/http://a/x.jpg", False), ("/data/shared/image/http:/a/x.jpg", False),
    ("data/s3://x", False), ("C:\\data\\x.jpg", False), ("relative/x.jpg", False),
])
def test_remoteness_is_the_scheme_the_path_starts_with(path, remote):
    assert is_remote(path) is remote


def test_a_url_looking_file_name_does_not_skip_the_symlink_check(tmp_path):
    """infos row `file_name=http://a/x.jpg`, and `root/shared/image/http:/a/x.jpg` a link out of the root."""
    tree = generate_sample_tree(str(tmp_path / "t"), num_neighbours=1, num_captions=6, num_media=3, media=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    write_image(outside / "secret.jpg", seed=8)
    image_csv = pathlib.Path(tree.phase1_dir) / "infos" / "image.csv"
    rows = list(csv.DictReader(io.StringIO(image_csv.read_text())))
    rows[0]["file_name"], rows[0]["save_folder"] = "http://a/x.jpg", "shared"
    with open(image_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    link = pathlib.Path(tree.root) / "shared" / "image" / "http:" / "a" / "x.jpg"
    link.parent.mkdir(parents=True)
    os.symlink(outside / "secret.jpg", link)
    builder = emm1.EMM1(config_name="phase1_nn1", data_dir=tree.phase1_dir, root_data_path=tree.root,
                        cache_dir=str(tmp_path / "cache"), modalities=["image"], on_missing_media="null")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        builder.download_and_prepare()
    ds = builder.as_dataset(split="train")
    hits = np.flatnonzero(np.array([p is not None and p.endswith("http://a/x.jpg") for p in pc.struct_field(ds.with_format("arrow")["image"], "path").to_pylist()]))
    assert len(hits), "the hostile row is referenced by some caption"
    with pytest.raises(MediaOutsideRootError, match="outside the media root"):
        ds[int(hits[0])]["image"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("normalize", [False, True])
def test_non_finite_point_coordinates_are_refused(tmp_path, bad, normalize):
    """One NaN point used to come back as is, and normalize=True spread it to every point."""
    xyz = np.random.default_rng(0).uniform(-1, 1, (64, 3)).astype(np.float32)
    xyz[5, 1] = bad
    path = tmp_path / "cloud.npy"
    np.save(path, xyz)
    feature = media_feature("points", normalize=normalize)
    with pytest.raises(MediaDecodeError, match=r"cloud.npy: 1 of its 64 points have NaN or infinite coordinates"):
        feature.decode_example({"path": str(path), "bytes": None})
    xyz[5, 1] = 0.5
    np.save(path, xyz)
    assert np.isfinite(feature.decode_example({"path": str(path), "bytes": None})["xyz"]).all()
