"""`load_dataset("emm1" | "eshot", data_dir=R)` where R also holds media: the media are never listed or stat'ed.

`datasets` gives a packaged module every file under `data_dir` (minutes for a real media root); the builders find
their own files, so that discovery must not run. Checked structurally: every directory listing and stat of the
process is recorded while loading, and none may touch a media folder. (Timings: benchmarks/load_route.py.)
"""
import contextlib
import os
import warnings

import datasets
import pytest

import emm1  # noqa: F401  (registers "emm1" with datasets)
import eshot  # noqa: F401  (registers "eshot")
from emm1_lib.testing.sample import generate_sample_tree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TODAYS_DATASETS = int(datasets.__version__.split(".")[0]) >= 4
MEDIA_FILES = 20_000


@pytest.fixture(scope="module")
def crowded_root(tmp_path_factory):
    """A released metadata folder that is also the media root, with 20k (empty) media files in its media folders."""
    tree = generate_sample_tree(str(tmp_path_factory.mktemp("crowded")), media=False, num_neighbours=1,
                                num_captions=12, num_media=6, num_triplets=12)
    root = tree.metadata_dir
    media_folders = [os.path.join(root, "shared", "image"), os.path.join(root, "e-mm1_100m_only", "video"),
                     os.path.join(root, "eshot", "audio")]  # the released EShot media sit in ROOT/eshot/audio/
    for i in range(MEDIA_FILES):
        folder = media_folders[i % len(media_folders)]
        os.makedirs(folder, exist_ok=True)
        open(os.path.join(folder, f"{i}.bin"), "wb").close()
    return root, [os.path.realpath(f) for f in media_folders]


@contextlib.contextmanager
def recorded_file_system_calls(monkeypatch):
    """Record the path of every os.scandir / listdir / stat / lstat call (fsspec, glob, pathlib and os.walk use them)."""
    seen = []

    def recording(original):
        def call(path=".", *args, **kwargs):
            if isinstance(path, (str, bytes, os.PathLike)):
                seen.append(os.fsdecode(os.fspath(path)))
            return original(path, *args, **kwargs)

        return call

    for name in ("scandir", "listdir", "stat", "lstat"):
        monkeypatch.setattr(os, name, recording(getattr(os, name)))
    try:
        yield seen
    finally:
        monkeypatch.undo()


def _touching(seen, media_folders):
    return sorted({p for p in seen
                   if any(os.path.realpath(os.path.abspath(p)).startswith(f) for f in media_folders)})


def test_the_recorder_sees_a_walk_of_the_media(tmp_path, monkeypatch):
    """The check has teeth: datasets' own discovery of data files (what the packaged route runs) is caught."""
    from datasets.data_files import get_data_patterns

    media = tmp_path / "shared" / "image"
    media.mkdir(parents=True)
    for i in range(50):
        (media / f"{i}.jpg").write_bytes(b"")
    with recorded_file_system_calls(monkeypatch) as seen:
        get_data_patterns(str(tmp_path))
    assert _touching(seen, [os.path.realpath(media)])


def _load(path, config, root, cache, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return datasets.load_dataset(path, config, data_dir=root, root_data_path=root, cache_dir=cache, decode=False,
                                     **kwargs)


@pytest.mark.parametrize("name, config, split, rows", [
    ("emm1", "phase1_nn1", "train", 12), ("emm1", "phase2_triplets", "train", 12), ("eshot", "eshot_audio", "test", 12),
])
def test_load_dataset_lists_no_media(crowded_root, tmp_path, monkeypatch, name, config, split, rows):
    root, media_folders = crowded_root
    cache = str(tmp_path / "cache")
    with recorded_file_system_calls(monkeypatch) as seen:
        ds = _load(name, config, root, cache, split=split)
        streamed = _load(name, config, root, cache, split=split, streaming=True)
        first = next(iter(streamed))
    assert len(ds) == rows and first == ds[0]
    assert seen, "the recorder saw nothing: the check would pass vacuously"
    assert _touching(seen, media_folders) == []


@pytest.mark.skipif(TODAYS_DATASETS, reason="loading scripts run on datasets 3.6 only (CI's second environment)")
@pytest.mark.parametrize("script, config, split", [("emm1.py", "phase1_nn1", "train"), ("eshot.py", "eshot_audio", "test")])
def test_loading_script_lists_no_media(crowded_root, tmp_path, monkeypatch, script, config, split):
    root, media_folders = crowded_root
    with recorded_file_system_calls(monkeypatch) as seen:
        ds = _load(os.path.join(REPO, script), config, root, str(tmp_path / "cache"), split=split,
                   trust_remote_code=True)
    assert len(ds) == 12
    assert _touching(seen, media_folders) == []


def test_missing_data_dir_is_named(tmp_path):
    missing = str(tmp_path / "not-downloaded-yet")
    for name, config in (("emm1", "phase1_nn1"), ("emm1", "phase2_triplets"), ("eshot", "eshot_points")):
        with pytest.raises(ValueError, match=f"data_dir {missing} does not exist"):
            datasets.load_dataset(name, config, data_dir=missing, root_data_path=str(tmp_path),
                                  cache_dir=str(tmp_path / "cache"))


def test_data_files_are_refused_not_ignored(crowded_root, tmp_path):
    root, _ = crowded_root
    with pytest.raises(ValueError, match="data_files=.* is not used"):
        datasets.load_dataset("emm1", "phase1_nn1", data_dir=root, root_data_path=root,
                              data_files=[os.path.join(root, "e-mm1_100m", "nn_1", "data_groups.csv")],
                              cache_dir=str(tmp_path / "cache"))


def test_benchmark_script_runs(tmp_path):
    """benchmarks/load_route.py on a tiny tree: both routes run and give the same rows (no timing is asserted)."""
    import sys

    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import load_route

    summary = load_route.main(["--media-files", "300", "--captions", "50", "--rounds", "1",
                               "--work-dir", str(tmp_path / "work")])
    assert summary["builder"] > 0 and summary["load_dataset"] > 0 and summary["ratio"] > 0
