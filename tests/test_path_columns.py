"""Phase 1 stores each media path once by default (`file_path_columns=False`); True gives the `{m}_file_path` layout.

Both inputs (the released CSVs and the pre-joined Parquet of the Hub copy, made from a released tree of the same
seed) through `load_dataset`: by name on today's `datasets`, through the loading script `emm1.py` on 3.6. The paths
are compared with the polars recipe's, which joins them by hand.
"""
import os
import warnings

import datasets
import pyarrow.compute as pc
import pytest

import emm1  # noqa: F401  (registers "emm1" with datasets)
from emm1_lib.errors import DanglingIdWarning
from emm1_lib.schema.layout import MODALITIES
from emm1_lib.testing.sample import generate_sample_tree
from recipes import phase1_recipe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TODAYS_DATASETS = int(datasets.__version__.split(".")[0]) >= 4
SAMPLE = dict(num_captions=20, num_media=6, num_neighbours=2, num_triplets=12, dangling=2, duplicate_groups=1, seed=5)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """{input: tree}, and the released tree whose CSVs the recipe reads (the Hub copy holds the same rows)."""
    base = tmp_path_factory.mktemp("path-columns")
    released = generate_sample_tree(str(base / "released"), schema="released", **SAMPLE)
    hub = generate_sample_tree(str(base / "hub"), schema="hub", **SAMPLE)
    return {"released": released, "hub": hub}, released


def _load(tree, cache, **kwargs):
    """`load_dataset` as users call it on this `datasets`: by name today, the loading script on 3.6."""
    path, extra = ("emm1", {}) if TODAYS_DATASETS else (os.path.join(REPO, "emm1.py"), {"trust_remote_code": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        return datasets.load_dataset(path, "phase1_nn1", data_dir=tree.metadata_dir, root_data_path=tree.root,
                                     cache_dir=str(cache), split="train", **extra, **kwargs)


def _media_paths(ds, m):
    """The paths held by media column `m`, read from the Arrow form (nothing decoded), as README.md shows."""
    return pc.struct_field(ds.with_format("arrow")[m], "path").to_pylist()


@pytest.mark.parametrize("source", ["released", "hub"])
def test_default_stores_each_path_once_in_the_media_column(trees, tmp_path, source):
    by_input, released = trees
    tree = by_input[source]
    ds = _load(tree, tmp_path / "cache")  # decoding on, the default
    expected = phase1_recipe(released.phase1_dir, tree.root, 1)
    assert not [c for c in ds.column_names if c.endswith("_file_path")]
    assert ds.column_names[:3] == ["encord_text_id", "caption", "nn_index"]
    for m in MODALITIES:
        recipe = expected[f"{m}_file_path"].to_list()
        assert _media_paths(ds, m) == recipe
        assert None in recipe  # dangling ids: null paths, rows kept
    plain = _load(tree, tmp_path / "cache", decode=False)  # the other documented route: rows hold {"bytes", "path"}
    assert [None if r is None else r["path"] for r in plain["image"]] == expected["image_file_path"].to_list()
    decoded = next(r for r in ds if r["image"] is not None)["image"]  # real files behind the paths: they decode
    assert decoded.size[0] > 0


@pytest.mark.parametrize("source", ["released", "hub"])
def test_file_path_columns_true_gives_the_layout_with_both(trees, tmp_path, source):
    by_input, released = trees
    tree = by_input[source]
    both = _load(tree, tmp_path / "cache", file_path_columns=True, decode=False)
    lean = _load(tree, tmp_path / "cache", decode=False)
    expected = phase1_recipe(released.phase1_dir, tree.root, 1)
    for m in MODALITIES:
        columns = both.column_names
        assert columns.index(f"{m}_file_path") == columns.index(f"encord_{m}_id") + 1 == columns.index(m) - 1
        assert both[f"{m}_file_path"] == expected[f"{m}_file_path"].to_list() == _media_paths(both, m)
    # the path columns are the only difference
    assert both.remove_columns([f"{m}_file_path" for m in MODALITIES]).data.table.equals(lean.data.table)
