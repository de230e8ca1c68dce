"""E-MM1:100M configs: the ways users call the builder, and row-for-row equality with the polars recipe."""
import os
import warnings

import datasets
import pytest

import emm1
from emm1_lib.errors import DanglingIdWarning
from recipes import phase1_recipe

MODALITIES = ("image", "audio", "video", "points")
TODAYS_DATASETS = int(datasets.__version__.split(".")[0]) >= 4


def _builder(tree, hf_cache, config="phase1_nn1", **kwargs):
    kwargs.setdefault("decode", False)
    return emm1.EMM1(config_name=config, data_dir=tree.metadata_dir, root_data_path=tree.root, cache_dir=hf_cache, **kwargs)


def _prepare(tree, hf_cache, config="phase1_nn1", **kwargs):
    builder = _builder(tree, hf_cache, config, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        builder.download_and_prepare()
    return builder.as_dataset(split="train")


def _paths(values):
    """The paths of media values read with decode=False (`{"bytes": None, "path": ...}`, None for a dangling id):
    phase 1 keeps each path in its media column only, by default."""
    return [None if v is None else v["path"] for v in values]


def test_configs_are_listed():
    names = [c.name for c in emm1.EMM1.BUILDER_CONFIGS]
    assert names[:16] == [f"phase1_nn{k}" for k in range(1, 17)]
    assert {"phase1_all", "phase2_triplets"} <= set(names)


@pytest.mark.parametrize("k", [1, 7, 16])
def test_equals_polars_recipe(sample_tree, hf_cache, k):
    """Ids, paths and captions equal the seed's polars recipe row for row, dangling ids and duplicates included."""
    ds = _prepare(sample_tree, hf_cache, f"phase1_nn{k}")
    expected = phase1_recipe(sample_tree.phase1_dir, sample_tree.root, k)
    assert len(ds) == expected.height == sample_tree.num_captions + sample_tree.duplicate_groups
    assert ds["encord_text_id"] == expected["encord_text_id"].to_list()
    assert ds["caption"] == expected["caption"].to_list()
    assert set(ds["nn_index"]) == {k}
    for m in MODALITIES:
        assert ds[f"encord_{m}_id"] == expected[f"encord_{m}_id"].to_list()
        assert _paths(ds[m]) == expected[f"{m}_file_path"].to_list()
    # dangling ids stay as rows with null paths (the fixture puts 2 per id column)
    assert sum(p is None for p in _paths(ds["image"])) >= sample_tree.dangling


def test_dangling_ids_are_counted_in_a_warning(sample_tree, hf_cache):
    builder = _builder(sample_tree, hf_cache)
    with pytest.warns(DanglingIdWarning) as record:
        builder.download_and_prepare()
    messages = [str(w.message) for w in record if issubclass(w.category, DanglingIdWarning)]
    expected = phase1_recipe(sample_tree.phase1_dir, sample_tree.root, 1)
    for m in MODALITIES:
        [message] = [msg for msg in messages if f"encord_{m}_id" in msg]
        dangling = expected[f"{m}_file_path"].null_count()  # duplicated rows may repeat a dangling id
        assert dangling >= sample_tree.dangling
        assert message.startswith(f"phase1_nn1: {dangling} encord_{m}_id value(s)")
        assert f"infos{os.sep}{m}.csv" in message


def test_provenance_columns(released_tree, seed_tree, hf_cache):
    released = _prepare(released_tree, hf_cache)
    assert set(released["image_source_dataset"]) <= {"COCO", "Flickr30k", "Conceptual Captions", "ImageNet"}
    assert None not in released["points_dataset_license"]
    licence = released["image_dataset_license"][0]
    assert len(released.filter(lambda r: r["image_dataset_license"] == licence)) >= 1
    seed = _prepare(seed_tree, hf_cache + "-seed")  # the seed draft's infos carry no provenance
    assert set(seed["image_source_dataset"]) == {None}


def test_modalities_subset_and_media_folder_override(released_tree, hf_cache):
    ds = _prepare(released_tree, hf_cache, modalities=["audio", "points"], media_folders={"audio": "video"})
    assert "image" not in ds.column_names and "encord_video_id" not in ds.column_names
    path = ds[0]["audio"]["path"]
    assert f"{os.sep}video{os.sep}" in path and path.startswith(released_tree.root)


def test_root_from_environment(released_tree, hf_cache, monkeypatch):
    monkeypatch.setenv("ROOT_DATA_PATH", released_tree.root)
    builder = emm1.EMM1(config_name="phase1_nn2", data_dir=released_tree.phase1_dir, cache_dir=hf_cache, decode=False)
    builder.download_and_prepare()
    assert builder.as_dataset(split="train")[0]["image"]["path"].startswith(released_tree.root)


def test_small_shards_give_the_same_rows(sample_tree, hf_cache):
    whole = _prepare(sample_tree, hf_cache)
    builder = _builder(sample_tree, hf_cache + "-sharded", shard_bytes=64, batch_size=5)
    [split] = builder._split_generators(None)
    assert len(split.gen_kwargs["shards"]) > 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        builder.download_and_prepare()
    sharded = builder.as_dataset(split="train")
    assert sharded["encord_text_id"] == whole["encord_text_id"]
    assert _paths(sharded["points"]) == _paths(whole["points"])


def test_phase1_all_has_every_neighbour(released_tree, hf_cache):
    ds = _prepare(released_tree, hf_cache, "phase1_all", modalities=["image"])
    assert len(ds) == 16 * released_tree.num_captions
    assert sorted(set(ds["nn_index"])) == list(range(1, 17))


def test_streaming_equals_prepared(sample_tree, hf_cache):
    prepared = _prepare(sample_tree, hf_cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        streamed = list(_builder(sample_tree, hf_cache).as_streaming_dataset(split="train"))
    assert [r["encord_text_id"] for r in streamed] == prepared["encord_text_id"]
    assert _paths(r["video"] for r in streamed) == _paths(prepared["video"])


def test_load_dataset_by_name_after_import(released_tree, hf_cache):
    """Today's datasets: `import emm1` then `load_dataset("emm1", ...)`."""
    ds = datasets.load_dataset(
        "emm1", "phase1_nn1", data_dir=released_tree.metadata_dir, root_data_path=released_tree.root,
        cache_dir=hf_cache, decode=False, split="train",
    )
    assert len(ds) == released_tree.num_captions
    streamed = datasets.load_dataset(
        "emm1", "phase1_nn1", data_dir=released_tree.metadata_dir, root_data_path=released_tree.root,
        cache_dir=hf_cache, decode=False, split="train", streaming=True,
    )
    assert next(iter(streamed))["encord_text_id"] == ds[0]["encord_text_id"]


@pytest.mark.skipif(TODAYS_DATASETS, reason="loading scripts run on datasets 3.6 only (CI's second environment)")
@pytest.mark.parametrize("streaming", [False, True])
def test_loading_script_on_datasets_3_6(released_tree, hf_cache, streaming):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "emm1.py")
    ds = datasets.load_dataset(
        script, "phase1_nn1", data_dir=released_tree.metadata_dir, root_data_path=released_tree.root,
        cache_dir=hf_cache, decode=False, split="train", trust_remote_code=True, streaming=streaming,
    )
    rows = list(ds)
    assert len(rows) == released_tree.num_captions
    assert rows[0]["image"]["path"].startswith(released_tree.root)


@pytest.mark.skipif(not TODAYS_DATASETS, reason="datasets >= 4 refuses scripts; 3.6 runs them")
def test_todays_datasets_refuses_the_script_path(released_tree, hf_cache):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "emm1.py")
    with pytest.raises(RuntimeError, match="no longer supported"):
        datasets.load_dataset(script, "phase1_nn1", data_dir=released_tree.metadata_dir, cache_dir=hf_cache)
