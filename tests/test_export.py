"""`emm1 export`: a Hub dataset repo (Parquet + card) that stock `datasets` loads, and `resolve` back."""
import glob
import json
import os
import subprocess
import sys
import textwrap
import warnings

import datasets
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard
from huggingface_hub import DatasetCardData

import emm1
from emm1_lib.tools.cli import main as emm1_main
from emm1_lib.builders.registry import BUILDERS
from emm1_lib.builders.registry import path_column_options
from emm1_lib.errors import DanglingIdWarning
from emm1_lib.errors import EMM1DataError
from emm1_lib.tools.export import DEFAULT_MAX_SHARD_BYTES
from emm1_lib.tools.export import DEFAULT_MIN_FILES
from emm1_lib.tools.export import DEFAULT_ROW_GROUP_ROWS
from emm1_lib.tools.export import _plan_files
from emm1_lib.tools.export import export
from emm1_lib.tools.export import export_features
from emm1_lib.builders.resolve import resolve
from emm1_lib.tools.export import write_split
from emm1_lib.tools.hub_card import size_category
from emm1_lib.tools.hub_card import source_citations

MODALITIES = ("image", "audio", "video", "points")
FILE_NAME = "{split}-{index:05d}-of-{total:05d}.parquet"
# UPSTREAM.md "Sources": every source dataset must be cited in the card.
UPSTREAM_SOURCES = (
    "AudioCaps", "AudioSet", "VGGSound", "WavCaps", "COCO", "Flickr30k", "Conceptual Captions", "ImageNet",
    "InternVid", "VidGen-1M", "VALOR", "VideoRefer", "OpenShape",
)


def _all_builder_configs():
    """Config names straight from the builder classes (emm1.EMM1, and eshot.EShot when installed)."""
    classes = [emm1.EMM1]
    try:
        import eshot

        classes.append(eshot.EShot)
    except ImportError:
        pass
    return [config.name for cls in classes for config in cls.BUILDER_CONFIGS]


@pytest.fixture(scope="module")
def exported(released_tree, tmp_path_factory):
    """Every config of the builders exported from the clean released tree, in small row groups."""
    out = tmp_path_factory.mktemp("export") / "repo"
    cache = tmp_path_factory.mktemp("export-cache")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        result = export(str(out), released_tree.metadata_dir, cache_dir=str(cache), row_group_rows=5, min_files=4)
    return result


def _builder_split(tree, config, cache, **kwargs):
    """What the builder itself gives for `config` with media under the tree root (decode off), in the layout of
    an export: with the `*_file_path` columns (phase 1 leaves them out by default)."""
    for cls in BUILDERS:
        if config in [c.name for c in cls.BUILDER_CONFIGS]:
            builder = cls(config_name=config, data_dir=tree.metadata_dir, root_data_path=tree.root, decode=False,
                          cache_dir=cache, **{**path_column_options(config), **kwargs})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DanglingIdWarning)
                builder.download_and_prepare()
            return builder.as_dataset(split=next(iter(builder.info.splits)))
    raise AssertionError(f"no builder has {config}")


def test_layout_shard_names_and_row_groups(exported):
    assert sorted(c.name for c in exported.configs) == sorted(_all_builder_configs())
    for config in exported.configs:
        for split, files in config.files.items():
            names = sorted(os.path.basename(f) for f in glob.glob(os.path.join(exported.out_dir, config.name, "*")))
            assert names == [FILE_NAME.format(split=split, index=i, total=len(files)) for i in range(len(files))]
            rows = 0
            for name in names:
                meta = pq.ParquetFile(os.path.join(exported.out_dir, config.name, name)).metadata
                assert all(meta.row_group(i).num_rows <= 5 for i in range(meta.num_row_groups))
                rows += meta.num_rows
            assert rows == config.splits[split]
    phase1 = next(c for c in exported.configs if c.name == "phase1_nn1")
    assert phase1.num_rows == 24 and len(phase1.files["train"]) >= 2  # min_files spreads row groups over files
    assert not glob.glob(os.path.join(exported.out_dir, ".*"))  # no staging or temp file left behind


def test_media_paths_are_relative_and_media_columns_dropped(exported, released_tree, tmp_path):
    """Phase 1 keeps its paths only in the media columns by default; the export asks for the path columns."""
    table = pq.read_table(os.path.join(exported.out_dir, "phase1_nn1"))
    assert not set(MODALITIES) & set(table.column_names)
    builder = emm1.EMM1(config_name="phase1_nn1", data_dir=released_tree.metadata_dir, root_data_path=released_tree.root,
                        cache_dir=str(tmp_path / "cache"))
    assert not [c for c in builder.info.features if c.endswith("_file_path")]  # the default the export overrides
    for m in MODALITIES:
        paths = table[f"{m}_file_path"].to_pylist()
        assert len(paths) == 24 and all(paths)  # the clean tree: every row has a path
        for path in paths:
            assert not os.path.isabs(path) and path.split("/")[1] == m
            assert os.path.isfile(os.path.join(released_tree.root, path))  # portable: root + relative path
    features = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    assert features["encord_text_id"] == {"dtype": "int64", "_type": "Value"}


def test_size_bound_rolls_over_to_new_files(released_tree, tmp_path):
    """A small max_shard_bytes gives many files, each within the bound, together every row."""
    ds = _builder_split(released_tree, "phase1_all", str(tmp_path / "cache"), modalities=["image"])
    bound = 20_000
    files, parquet_bytes, _, row_groups = write_split(
        ds, str(tmp_path / "out"), "train", export_features(ds.features), max_shard_bytes=bound, row_group_rows=32,
        min_files=1, path_prefixes=(released_tree.root + "/",),
    )
    sizes = [os.path.getsize(tmp_path / "out" / f) for f in files]
    assert len(files) > 3 and row_groups == -(-len(ds) // 32)
    assert max(sizes) <= bound and sum(sizes) == parquet_bytes
    assert sum(pq.ParquetFile(tmp_path / "out" / f).metadata.num_rows for f in files) == len(ds)


def test_full_scale_phase1_plan_has_at_least_16_files():
    """6,706,765 rows (UPSTREAM.md) at ~360 Arrow bytes a row, the default bounds: >= 16 files, each under the bound."""
    rows, arrow_bytes = 6_706_765, 6_706_765 * 360
    rows_per_file = _plan_files(rows, arrow_bytes, DEFAULT_MAX_SHARD_BYTES, DEFAULT_ROW_GROUP_ROWS, DEFAULT_MIN_FILES)
    files = -(-rows // rows_per_file)
    assert rows_per_file % DEFAULT_ROW_GROUP_ROWS == 0 and files >= 16
    assert arrow_bytes * rows_per_file / rows <= DEFAULT_MAX_SHARD_BYTES


def test_card_parses_and_lists_every_builder_config(exported):
    """Fails when a builder config is missing from the card's `configs:` or `dataset_info:`."""
    card = DatasetCard.load(exported.card_path)  # a local path: parsed offline
    assert isinstance(card.data, DatasetCardData)
    data = card.data.to_dict()
    configs = [c["config_name"] for c in data["configs"]]
    infos = [i["config_name"] for i in data["dataset_info"]]
    for name in _all_builder_configs():
        assert name in configs, f"builder config {name} missing from the card's configs"
        assert name in infos, f"builder config {name} missing from the card's dataset_info"
    assert [c["config_name"] for c in data["configs"] if c.get("default")] == ["phase1_nn1"]
    assert data["license"] == "odc-by"
    assert data["size_categories"] == [size_category(max(c.num_rows for c in exported.configs))] == ["n<1K"]
    assert "text-to-3d" in data["task_categories"]
    triplets = next(i for i in data["dataset_info"] if i["config_name"] == "phase2_triplets")
    annotation = next(f for f in triplets["features"] if f["name"] == "annotation")
    assert annotation["dtype"]["class_label"]["names"] == {"0": "Good Match", "1": "Partial Match", "2": "Bad Match"}
    text = card.text
    assert "ODC-By" in text and "dataset_license" in text  # the per-item licence note
    assert "load_dataset(" in text and "emm1.resolve" in text  # usage
    cited = {s["name"] for s in source_citations()}
    for source in UPSTREAM_SOURCES:
        assert source in cited and source in text
    assert text.count("@inproceedings{") + text.count("@article{") + text.count("@misc{") >= len(UPSTREAM_SOURCES) + 1


def test_size_category_buckets():
    assert [size_category(n) for n in (0, 999, 1_000, 6_706_765, 107_308_240)] == [
        "n<1K", "n<1K", "1K<n<10K", "1M<n<10M", "100M<n<1B"]


_STOCK_SCRIPT = textwrap.dedent(
    """
    import sys
    import datasets
    from datasets import get_dataset_config_names, load_dataset

    repo, expected_configs, cache = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
    assert get_dataset_config_names(repo) == expected_configs, get_dataset_config_names(repo)
    ds = load_dataset(repo, "phase1_nn1", split="train", cache_dir=cache)
    assert ds.features["encord_text_id"] == datasets.Value("int64")
    assert ds.features["nn_index"] == datasets.Value("int8")
    default = load_dataset(repo, split="train", cache_dir=cache)  # the card's default config
    assert default["encord_text_id"] == ds["encord_text_id"]
    stream = load_dataset(repo, "phase2_triplets", split="train", streaming=True)
    assert isinstance(stream.features["annotation"], datasets.ClassLabel)
    assert stream.features["annotation"].names == ["Good Match", "Partial Match", "Bad Match"]
    rows = list(stream)
    assert all(isinstance(r["encord_paired_id"], int) and r["annotation"] in (0, 1, 2) for r in rows)
    assert "emm1" not in sys.modules and "emm1_lib" not in sys.modules and "eshot" not in sys.modules
    print(len(ds), len(rows), ds[0]["image_file_path"])
    """
)


def test_stock_datasets_loads_the_export_without_the_project(exported, tmp_path):
    """A fresh interpreter that never imports this project: configs, typed features, streaming."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    configs = ",".join(c.name for c in exported.configs)
    result = subprocess.run(
        [sys.executable, "-c", _STOCK_SCRIPT, exported.out_dir, configs, str(tmp_path / "cache")],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows, streamed, path = result.stdout.split()[-3:]
    assert (int(rows), int(streamed)) == (24, 60) and not os.path.isabs(path)


@pytest.mark.parametrize("config", ["phase1_nn1", "phase2_triplets", "eshot_audio"])
def test_resolve_gives_back_the_builder_output(exported, released_tree, tmp_path, config):
    if config not in [c.name for c in exported.configs]:
        pytest.skip(f"{config} has no builder installed")
    loaded = datasets.load_dataset(exported.out_dir, config, cache_dir=str(tmp_path / "hf"))
    [split] = loaded
    expected = _builder_split(released_tree, config, str(tmp_path / "builder"))
    resolved = resolve(loaded, released_tree.root, decode=False)[split]
    assert resolved.features == expected.features
    assert resolved.to_dict() == expected.to_dict()


def test_resolve_streaming_decodes_media(exported, released_tree):
    stream = datasets.load_dataset(exported.out_dir, "phase1_nn1", split="train", streaming=True)
    resolved = resolve(stream, released_tree.root, media_options={"points": {"num_points": 64}})
    assert isinstance(resolved, datasets.IterableDataset)
    row = next(iter(resolved))
    assert row["image_file_path"] == os.path.join(released_tree.root, row["image_file_path"][len(released_tree.root) + 1:])
    assert os.path.isfile(row["points_file_path"])
    assert row["image"].size[0] > 0  # a PIL image
    assert row["points"]["xyz"].shape == (64, 3)
    assert row["audio"]["array"].ndim == 1 and row["audio"]["sampling_rate"] > 0
    # the undecoded stream equals the builder's rows
    plain = list(resolve(stream, released_tree.root, decode=False))
    assert [r["points"]["path"] for r in plain] == [r["points_file_path"] for r in plain]


def test_resolve_refuses_an_already_resolved_dataset(exported, released_tree, tmp_path):
    ds = datasets.load_dataset(exported.out_dir, "phase1_nn1", split="train", cache_dir=str(tmp_path / "hf"))
    once = resolve(ds, released_tree.root, decode=False)
    with pytest.raises(ValueError, match="already resolved"):
        resolve(once, released_tree.root)


def test_seed_schema_exports_and_resolves(seed_tree, tmp_path):
    """Seed-draft metadata (no provenance, EShot media listed under eshot/) exports the same way."""
    configs = ["phase1_nn3"] + (["eshot_points"] if "eshot_points" in _all_builder_configs() else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        result = export(str(tmp_path / "repo"), seed_tree.metadata_dir, configs, cache_dir=str(tmp_path / "cache"))
    assert [c.name for c in result.configs] == configs
    for config in configs:
        loaded = datasets.load_dataset(result.out_dir, config, cache_dir=str(tmp_path / "hf"))
        [split] = loaded
        expected = _builder_split(seed_tree, config, str(tmp_path / "builder"))
        # seed EShot media live in the metadata folder (eshot/point-clouds/), so they are stored relative to it
        root = seed_tree.metadata_dir if config.startswith("eshot") else seed_tree.root
        assert resolve(loaded[split], root, decode=False).to_dict() == expected.to_dict()


@pytest.mark.parametrize("value", [False, True])
def test_export_refuses_file_path_columns(released_tree, tmp_path, value):
    """The Hub copy keeps its paths only in the path columns: the export sets the option itself, and says so."""
    with pytest.raises(TypeError, match=r"sets file_path_columns itself.*\*_file_path columns.*Leave the option out"):
        export(str(tmp_path / "repo"), released_tree.metadata_dir, ["phase1_nn1"], cache_dir=str(tmp_path / "cache"),
               file_path_columns=value)
    assert not os.path.exists(tmp_path / "repo")  # refused before anything is written


def test_cli_export_and_errors(released_tree, tmp_path, capsys):
    out = tmp_path / "repo"
    argv = ["export", "--to", str(out), "--data-dir", released_tree.metadata_dir, "--configs", "phase2_triplets",
            "--row-group-rows", "7", "--max-shard-bytes", "1MiB", "--cache-dir", str(tmp_path / "cache"),
            "--repo-id", "acme/e-mm1"]
    assert emm1_main(argv) == 0
    printed = capsys.readouterr().out
    assert "phase2_triplets" in printed and "60 rows" in printed
    card = DatasetCard.load(str(out / "README.md"))
    assert [c["config_name"] for c in card.data.configs] == ["phase2_triplets"]
    assert 'load_dataset("acme/e-mm1"' in card.text and "1 MiB" in card.text
    # a second export into the same folder is refused, naming it; --overwrite replaces it
    assert emm1_main(argv) == 2
    assert str(out) in capsys.readouterr().err
    assert emm1_main(argv + ["--overwrite"]) == 0
    assert emm1_main(["export", "--to", str(tmp_path / "x"), "--data-dir", released_tree.metadata_dir,
                      "--configs", "phase9"]) == 2
    assert "phase9" in capsys.readouterr().err


def test_missing_metadata_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(EMM1DataError, match="data_groups.csv"):
        export(str(tmp_path / "repo"), str(tmp_path / "nowhere"), ["phase1_nn1"], cache_dir=str(tmp_path / "c"))
    assert not os.listdir(tmp_path / "repo")  # nothing half-written
