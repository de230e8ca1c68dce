"""The cache path of prepared data depends on the library's prepared-data sources on every route.

Routes: the builder class made directly (`emm1.EMM1(...)`, no `hash`), `load_dataset("emm1")` after `import emm1`
(a registered module), and on datasets 3.6 the loading script (whose own hash covers only the thin script).
Editing a reader or a builder must not leave old prepared data served; a warm load must still hit the cache.
"""
import os
import warnings

import datasets
import pytest

import emm1
import eshot
from emm1_lib.builders import compat
from emm1_lib.builders.emm1 import EMM1
from emm1_lib.builders.eshot import EShot
from emm1_lib.testing.sample import generate_sample_tree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TODAYS_DATASETS = int(datasets.__version__.split(".")[0]) >= 4
ROUTES = ["class", "load_dataset"] + ([] if TODAYS_DATASETS else ["script"])
BUILDERS = {"emm1": ("phase1_nn1", "train"), "eshot": ("eshot_audio", "test")}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return generate_sample_tree(str(tmp_path_factory.mktemp("cache-key")), media=False, num_neighbours=1,
                                num_captions=12, num_media=6, num_triplets=12)


def _builder(route, name, tree, cache):
    config, _ = BUILDERS[name]
    data_dir = tree.metadata_dir if name == "emm1" else tree.eshot_dir
    kwargs = dict(data_dir=data_dir, root_data_path=tree.root, cache_dir=cache, decode=False)
    if route == "class":
        cls = {"emm1": emm1.EMM1, "eshot": eshot.EShot}[name]
        return cls(config_name=config, **kwargs)
    if route == "load_dataset":
        return datasets.load_dataset_builder(name, config, **kwargs)
    return datasets.load_dataset_builder(os.path.join(REPO, f"{name}.py"), config, trust_remote_code=True, **kwargs)


def _library_hash(monkeypatch, value):
    monkeypatch.setattr(compat, "prepared_data_hash", lambda: value)


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("route", ROUTES)
def test_cache_path_follows_the_library_hash(tree, tmp_path, monkeypatch, route, name):
    cache = str(tmp_path / "cache")
    _library_hash(monkeypatch, "a" * 64)
    before = _builder(route, name, tree, cache)
    again = _builder(route, name, tree, cache)
    _library_hash(monkeypatch, "b" * 64)
    edited = _builder(route, name, tree, cache)
    assert before.cache_dir == again.cache_dir
    assert edited.cache_dir != before.cache_dir
    assert os.path.dirname(edited.cache_dir) == os.path.dirname(before.cache_dir)  # only the hash part differs
    assert isinstance(before, (EMM1, EShot))


def test_the_library_hash_covers_the_prepared_data_sources(tmp_path, monkeypatch):
    library = compat.library_sources()
    for layer in compat.PREPARED_DATA_PACKAGES:
        assert any(f"{os.sep}{layer}{os.sep}" in path for path in library), layer
    assert not any(f"{os.sep}tools{os.sep}" in path for path in library)
    sources = [tmp_path / "reader.py", tmp_path / "builder.py"]
    for path in sources:
        path.write_text("x = 1\n")
    monkeypatch.setattr(compat, "library_sources", lambda: [str(p) for p in sources])
    compat._library_hash.cache_clear()
    try:
        first = compat.prepared_data_hash()
        sources[0].write_text("x = 2\n")
        compat._library_hash.cache_clear()
        assert compat.prepared_data_hash() != first
        assert compat.cache_hash(None) == compat.prepared_data_hash()
        assert compat.cache_hash("script-hash") not in (compat.cache_hash("other"), compat.cache_hash(None))
    finally:
        compat._library_hash.cache_clear()


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("route", ROUTES)
def test_a_warm_load_hits_the_cache(tree, tmp_path, monkeypatch, route, name):
    prepared = []
    cls = {"emm1": EMM1, "eshot": EShot}[name]
    original = cls._prepare_split

    def counting(self, *args, **kwargs):
        prepared.append(self.config.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "_prepare_split", counting)
    cache = str(tmp_path / "cache")
    _, split = BUILDERS[name]
    rows = []
    for _ in range(2):
        builder = _builder(route, name, tree, cache)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            builder.download_and_prepare()
        rows.append(builder.as_dataset(split=split).to_list())
    assert prepared == [BUILDERS[name][0]]
    assert rows[0] == rows[1] and rows[0]
