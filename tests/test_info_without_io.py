"""`_info` reads no file: ClassLabel names that come from the data (annotation labels, EShot categories) are set in
`_split_generators`, as the packaged Parquet builder sets its features; every route still sees the right names."""
import builtins
import contextlib
import os
import shutil
import warnings

import datasets
import pytest

import emm1
import eshot
from emm1_lib.errors import EMM1DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TODAYS_DATASETS = int(datasets.__version__.split(".")[0]) >= 4
CUSTOM_LABELS = ["Good", "Partial", "No Match", "Unsure"]


@contextlib.contextmanager
def file_accesses(monkeypatch):
    """Paths given to open / os.stat / lstat / listdir / scandir while the block runs."""
    seen = []

    def recording(original):
        def call(path=".", *args, **kwargs):
            if isinstance(path, (str, bytes, os.PathLike)):
                seen.append(os.path.abspath(os.fsdecode(os.fspath(path))))
            return original(path, *args, **kwargs)

        return call

    for name in ("stat", "lstat", "listdir", "scandir"):
        monkeypatch.setattr(os, name, recording(getattr(os, name)))
    monkeypatch.setattr(builtins, "open", recording(builtins.open))
    try:
        yield seen
    finally:
        monkeypatch.undo()


def _make(cls, config, data_dir, root, cache):
    return cls(config_name=config, data_dir=data_dir, root_data_path=root, cache_dir=cache, decode=False)


@pytest.mark.parametrize("cls, config", [(emm1.EMM1, "phase1_nn1"), (emm1.EMM1, "phase2_triplets"),
                                         (eshot.EShot, "eshot_audio"), (eshot.EShot, "eshot_points")])
def test_making_a_builder_reads_no_data_file(released_tree, tmp_path, monkeypatch, cls, config):
    metadata = os.path.realpath(released_tree.metadata_dir)
    with file_accesses(monkeypatch) as seen:
        builder = _make(cls, config, released_tree.metadata_dir, released_tree.root, str(tmp_path / "cache"))
        features = builder.info.features
    assert seen, "the recorder saw nothing: the check would pass vacuously"
    assert [p for p in seen if os.path.realpath(p).startswith(metadata)] == []
    assert features  # the schema is known without the data


@pytest.mark.parametrize("cls, config", [(emm1.EMM1, "phase2_triplets"), (eshot.EShot, "eshot_audio")])
def test_a_missing_data_dir_fails_when_prepared_not_when_made(tmp_path, cls, config):
    missing = str(tmp_path / "not-there")
    builder = _make(cls, config, missing, str(tmp_path), str(tmp_path / "cache"))
    with pytest.raises(EMM1DataError, match=f"data_dir {missing} does not exist"):
        builder.download_and_prepare()


@pytest.fixture
def custom_labels_dir(released_tree, tmp_path):
    """A copy of the released E-MM1:1M folder whose annotation_mapping.csv names its labels differently."""
    copy = tmp_path / "e-mm1_1m"
    shutil.copytree(released_tree.phase2_dir, copy)
    rows = "".join(f"{code},{label}\n" for code, label in enumerate(CUSTOM_LABELS, start=1))
    (copy / "annotation_mapping.csv").write_text("code,label\n" + rows)
    return str(copy)


def test_annotation_labels_reach_every_route(custom_labels_dir, released_tree, tmp_path):
    cache = str(tmp_path / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        builder = _make(emm1.EMM1, "phase2_triplets", custom_labels_dir, released_tree.root, cache)
        builder.download_and_prepare()
        assert builder.as_dataset(split="train").features["annotation"].names == CUSTOM_LABELS
        warm = _make(emm1.EMM1, "phase2_triplets", custom_labels_dir, released_tree.root, cache)
        assert warm.info.features["annotation"].names == CUSTOM_LABELS  # read back from the prepared cache
        assert warm.as_dataset(split="train").features["annotation"].names == CUSTOM_LABELS
        fresh = _make(emm1.EMM1, "phase2_triplets", custom_labels_dir, released_tree.root, str(tmp_path / "stream"))
        stream = fresh.as_streaming_dataset(split="train")
        assert stream.features["annotation"].names == CUSTOM_LABELS
        assert [r["annotation"] for r in stream] == builder.as_dataset(split="train")["annotation"]
        parallel = _make(emm1.EMM1, "phase2_triplets", custom_labels_dir, released_tree.root, str(tmp_path / "np"))
        parallel.download_and_prepare(num_proc=2)
        assert parallel.as_dataset(split="train").features["annotation"].names == CUSTOM_LABELS
        by_name = datasets.load_dataset("emm1", "phase2_triplets", data_dir=custom_labels_dir,
                                        root_data_path=released_tree.root, cache_dir=str(tmp_path / "ld"),
                                        decode=False, split="train")
        assert by_name.features["annotation"].names == CUSTOM_LABELS


def test_eshot_categories_reach_every_route(released_tree, tmp_path):
    expected = sorted(_categories(released_tree.eshot_dir))
    cache = str(tmp_path / "cache")
    builder = _make(eshot.EShot, "eshot_points", released_tree.eshot_dir, released_tree.root, cache)
    builder.download_and_prepare()
    assert builder.as_dataset(split="test").features["category"].names == expected
    warm = _make(eshot.EShot, "eshot_points", released_tree.eshot_dir, released_tree.root, cache)
    assert warm.info.features["category"].names == expected
    stream = _make(eshot.EShot, "eshot_points", released_tree.eshot_dir, released_tree.root,
                   str(tmp_path / "stream")).as_streaming_dataset(split="test")
    assert stream.features["category"].names == expected
    assert [r["category"] for r in stream] == builder.as_dataset(split="test")["category"]


def _categories(eshot_dir):
    import json

    names = set()
    for name in ("category_to_audio_ids.json", "category_to_point_ids.json"):
        with open(os.path.join(eshot_dir, name)) as f:
            names.update(json.load(f))
    return names


@pytest.mark.skipif(TODAYS_DATASETS, reason="loading scripts run on datasets 3.6 only (CI's second environment)")
@pytest.mark.parametrize("streaming", [False, True])
def test_loading_scripts_see_the_names(custom_labels_dir, released_tree, tmp_path, streaming):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        triplets = datasets.load_dataset(os.path.join(REPO, "emm1.py"), "phase2_triplets", data_dir=custom_labels_dir,
                                         root_data_path=released_tree.root, cache_dir=str(tmp_path / "a"),
                                         decode=False, split="train", trust_remote_code=True, streaming=streaming)
        points = datasets.load_dataset(os.path.join(REPO, "eshot.py"), "eshot_points", data_dir=released_tree.eshot_dir,
                                       root_data_path=released_tree.root, cache_dir=str(tmp_path / "b"),
                                       decode=False, split="test", trust_remote_code=True, streaming=streaming)
    assert triplets.features["annotation"].names == CUSTOM_LABELS
    assert points.features["category"].names == sorted(_categories(released_tree.eshot_dir))
    assert len(list(triplets)) > 0 and len(list(points)) > 0
