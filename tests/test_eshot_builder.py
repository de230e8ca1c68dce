"""EShot builder (`eshot.py`): both configs, both schema generations, the ways users call it, and its errors."""
import json
import os
import shutil

import datasets
import numpy as np
import pyarrow.csv as pacsv
import pytest

import eshot
from emm1_lib.errors import EMM1DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "eshot.py")
TODAYS_DATASETS = int(datasets.__version__.split(".")[0]) >= 4
ID_COLUMN = {"audio": "eshot_audio_id", "points": "eshot_point_id"}
JSON_FILE = {"audio": "category_to_audio_ids.json", "points": "category_to_point_ids.json"}
CSV_FILE = {"audio": "eshot_audio_info.csv", "points": "eshot_points_info.csv"}


def _builder(data_dir, hf_cache, config="eshot_audio", **kwargs):
    kwargs.setdefault("decode", False)
    return eshot.EShot(config_name=config, data_dir=data_dir, cache_dir=hf_cache, **kwargs)


def _prepared_builder(data_dir, hf_cache, config="eshot_audio", **kwargs):
    """A builder after `download_and_prepare`: its features carry the category names read from the data."""
    builder = _builder(data_dir, hf_cache, config, **kwargs)
    builder.download_and_prepare()
    return builder


def _prepare(data_dir, hf_cache, config="eshot_audio", **kwargs):
    return _prepared_builder(data_dir, hf_cache, config, **kwargs).as_dataset(split="test")


def _recipe(eshot_dir, modality, root=None):
    """What the released example computes, by hand: labels from the JSON, rows from the CSV, paths by the formula."""
    mappings = {}
    for m in ("audio", "points"):
        with open(os.path.join(eshot_dir, JSON_FILE[m])) as f:
            mappings[m] = json.load(f)
    by_category = mappings[modality]
    categories = sorted(set(mappings["audio"]) | set(mappings["points"]))
    info = pacsv.read_csv(os.path.join(eshot_dir, CSV_FILE[modality])).to_pylist()
    info = {row[ID_COLUMN[modality]]: row for row in info}
    rows = []
    for category, ids in by_category.items():
        for i in ids:
            row = info[i]
            if "file_name" in row:  # released: ROOT/save_folder/{audio|points}/file_name
                folder = "audio" if modality == "audio" else "points"
                path = "/".join([root or os.path.dirname(eshot_dir), row["save_folder"], folder, row["file_name"]])
            else:  # seed: eshot/{audio|point-clouds}/<id>.<any extension>
                folder = os.path.join(eshot_dir, "audio" if modality == "audio" else "point-clouds")
                (name,) = [n for n in os.listdir(folder) if n.split(".")[0] == str(i)]
                path = os.path.join(folder, name)
            rows.append((i, categories.index(category), path))
    return sorted(rows), categories


@pytest.fixture(params=["released", "seed"])
def tree(request, released_tree, seed_tree):
    return {"released": released_tree, "seed": seed_tree}[request.param]


@pytest.fixture
def eshot_copy(tmp_path, released_tree):
    """A private copy of a released-schema EShot folder (with media) that a test may edit."""
    target = tmp_path / "eshot"
    shutil.copytree(released_tree.eshot_dir, target)
    return str(target)


def test_configs_and_features(tree, hf_cache):
    assert [c.name for c in eshot.EShot.BUILDER_CONFIGS] == ["eshot_audio", "eshot_points"]
    audio = _prepared_builder(tree.eshot_dir, hf_cache, "eshot_audio", root_data_path=tree.root).info.features
    points = _prepared_builder(tree.eshot_dir, hf_cache, "eshot_points", root_data_path=tree.root).info.features
    assert list(audio) == [
        "eshot_audio_id", "category", "audio_file_path", "audio", "youtube_id", "start_time", "end_time"
    ]
    assert list(points) == ["eshot_point_id", "category", "points_file_path", "points", "file_id"]
    # one ClassLabel for both configs: the sorted union (the sample's points side lacks one category)
    assert audio["category"].names == points["category"].names
    assert audio["category"].names == sorted(audio["category"].names)
    with open(os.path.join(tree.eshot_dir, JSON_FILE["points"])) as f:
        assert len(json.load(f)) < len(points["category"].names)


@pytest.mark.parametrize("modality", ["audio", "points"])
def test_rows_equal_the_hand_recipe(tree, hf_cache, modality):
    ds = _prepare(tree.eshot_dir, hf_cache, f"eshot_{modality}", root_data_path=tree.root)
    expected, categories = _recipe(tree.eshot_dir, modality, tree.root)
    assert ds.features["category"].names == categories
    got = list(zip(ds[ID_COLUMN[modality]], ds["category"], ds[f"{modality}_file_path"]))
    assert got == expected  # sorted by id: the dataset order of `eshot evaluate`'s .npy files
    assert ds[modality] == [{"bytes": None, "path": p} for _, _, p in expected]
    assert all(os.path.exists(p) for _, _, p in expected)
    info_rows = pacsv.read_csv(os.path.join(tree.eshot_dir, CSV_FILE[modality])).to_pylist()
    info = {r[ID_COLUMN[modality]]: r for r in info_rows}
    if modality == "audio":
        for row in ds:
            source = info[row["eshot_audio_id"]]
            assert (row["youtube_id"], row["start_time"], row["end_time"]) == (
                source["youtube_id"], source["start_time"], source["end_time"]
            )
    else:
        source_column = "file_id" if tree.schema == "released" else "object_id"
        assert ds["file_id"] == [info[i][source_column] for i in ds["eshot_point_id"]]


def test_data_dir_may_be_the_parent_and_root_is_configurable(released_tree, hf_cache, tmp_path, monkeypatch):
    by_parent = _prepare(released_tree.metadata_dir, hf_cache, root_data_path=released_tree.root)
    by_folder = _prepare(released_tree.eshot_dir, hf_cache, root_data_path=released_tree.root)
    assert by_parent["audio_file_path"] == by_folder["audio_file_path"]
    elsewhere = str(tmp_path / "media-root")
    custom = _prepare(released_tree.eshot_dir, hf_cache, root_data_path=elsewhere)
    assert custom["audio_file_path"] == [p.replace(released_tree.root, elsewhere) for p in by_folder["audio_file_path"]]
    monkeypatch.setenv("ROOT_DATA_PATH", elsewhere)
    # the same cache: $ROOT_DATA_PATH is part of the cache key, so the old paths are not served
    from_env = _prepare(released_tree.eshot_dir, hf_cache)
    assert from_env["audio_file_path"] == custom["audio_file_path"]
    folders = _prepare(released_tree.eshot_dir, hf_cache, "eshot_points", media_folders={"points": "point-clouds"})
    assert all("/point-clouds/" in p for p in folders["points_file_path"])


def test_media_decode(tree, hf_cache):
    audio = _prepare(tree.eshot_dir, hf_cache, "eshot_audio", decode=True, root_data_path=tree.root)
    first = audio[0]["audio"]
    assert first["array"].ndim >= 1 and first["array"].size > 0 and first["sampling_rate"] > 0
    points = _prepare(tree.eshot_dir, hf_cache, "eshot_points", decode=True, media_options={"num_points": 64},
                      root_data_path=tree.root)
    assert np.asarray(points[0]["points"]["xyz"]).shape == (64, 3)


def test_streaming_equals_prepared(tree, hf_cache):
    for config in ("eshot_audio", "eshot_points"):
        prepared = _prepare(tree.eshot_dir, hf_cache, config, root_data_path=tree.root)
        streamed = list(_builder(tree.eshot_dir, hf_cache, config, root_data_path=tree.root)
                        .as_streaming_dataset(split="test"))
        assert streamed == list(prepared)


def test_unknown_id_in_json_is_an_error_naming_it(eshot_copy, hf_cache):
    path = os.path.join(eshot_copy, JSON_FILE["audio"])
    with open(path) as f:
        mapping = json.load(f)
    mapping["bird"].append(987654)
    with open(path, "w") as f:
        json.dump(mapping, f)
    message = r"1 eshot_audio_id value\(s\) have no row in .*eshot_audio_info.csv: 987654 \(category 'bird'\)"
    with pytest.raises(EMM1DataError, match=message):
        _prepare(eshot_copy, hf_cache)


def test_id_under_two_categories_is_an_error_naming_it(eshot_copy, hf_cache):
    path = os.path.join(eshot_copy, JSON_FILE["points"])
    with open(path) as f:
        mapping = json.load(f)
    first, second = list(mapping)[:2]
    mapping[second].append(mapping[first][0])
    with open(path, "w") as f:
        json.dump(mapping, f)
    message = f"eshot_point_id {mapping[first][0]} is listed under two categories, '{first}' and '{second}'"
    with pytest.raises(EMM1DataError, match=message):
        _prepare(eshot_copy, hf_cache, "eshot_points")


def test_uncategorised_info_row_is_reported_and_left_out(eshot_copy, hf_cache):
    path = os.path.join(eshot_copy, JSON_FILE["audio"])
    with open(path) as f:
        mapping = json.load(f)
    dropped = mapping["cat"].pop()
    with open(path, "w") as f:
        json.dump(mapping, f)
    message = rf"1 row\(s\) are listed under no category .*eshot_audio_id {dropped}\)"
    with pytest.warns(eshot.UncategorisedRowWarning, match=message):
        ds = _prepare(eshot_copy, hf_cache)
    assert dropped not in ds["eshot_audio_id"]


def test_bad_inputs_have_clear_errors(eshot_copy, hf_cache, tmp_path):
    # (raised by download_and_prepare: making a builder reads no file)
    with pytest.raises(ValueError, match="no data_dir"):
        eshot.EShot(config_name="eshot_audio", cache_dir=hf_cache).download_and_prepare()
    with pytest.raises(EMM1DataError, match="category_to_audio_ids.json"):
        _prepare(str(tmp_path / "nowhere"), hf_cache)
    path = os.path.join(eshot_copy, JSON_FILE["audio"])
    with open(path, "w") as f:
        json.dump({"bird": [1, "x"]}, f)
    with pytest.raises(EMM1DataError, match=r"category 'bird' lists 'x', which is not a non-negative integer"):
        _prepare(eshot_copy, hf_cache)
    with open(path, "w") as f:
        f.write("{not json")
    with pytest.raises(EMM1DataError, match="not valid JSON"):
        _prepare(eshot_copy, hf_cache)


def test_duplicate_info_row_is_an_error(eshot_copy, hf_cache):
    path = os.path.join(eshot_copy, CSV_FILE["points"])
    with open(path) as f:
        lines = f.read().splitlines()
    with open(path, "w") as f:
        f.write("\n".join(lines + [lines[1]]) + "\n")
    with pytest.raises(EMM1DataError, match="appear on more than one row"):
        _prepare(eshot_copy, hf_cache, "eshot_points")


def test_seed_media_without_file_gets_a_null_path(seed_tree, hf_cache, tmp_path):
    target = tmp_path / "eshot"
    shutil.copytree(seed_tree.eshot_dir, target)
    folder = target / "audio"
    victim = sorted(os.listdir(folder))[0]
    os.remove(folder / victim)
    ds = _prepare(str(target), hf_cache)
    by_id = dict(zip(ds["eshot_audio_id"], ds["audio_file_path"]))
    assert by_id[int(victim.split(".")[0])] is None
    assert sum(p is None for p in by_id.values()) == 1


@pytest.mark.skipif(not TODAYS_DATASETS, reason="registration by name is for datasets >= 4")
def test_load_dataset_by_name_after_import(released_tree, hf_cache):
    ds = datasets.load_dataset("eshot", "eshot_points", data_dir=released_tree.metadata_dir, cache_dir=hf_cache,
                               root_data_path=released_tree.root, decode=False, split="test")
    assert ds["eshot_point_id"] == sorted(ds["eshot_point_id"])
    streamed = datasets.load_dataset("eshot", "eshot_points", data_dir=released_tree.metadata_dir, cache_dir=hf_cache,
                                     root_data_path=released_tree.root, decode=False, split="test", streaming=True)
    assert [r["eshot_point_id"] for r in streamed] == ds["eshot_point_id"]


@pytest.mark.skipif(TODAYS_DATASETS, reason="loading scripts run on datasets 3.6 only (CI's second environment)")
@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("config", ["eshot_audio", "eshot_points"])
def test_loading_script_on_datasets_3_6(tree, hf_cache, streaming, config):
    ds = datasets.load_dataset(SCRIPT, config, data_dir=tree.metadata_dir, root_data_path=tree.root, cache_dir=hf_cache,
                               decode=False, split="test", trust_remote_code=True, streaming=streaming)
    modality = config.split("_")[1]
    rows = list(ds)
    expected, _ = _recipe(tree.eshot_dir, modality, tree.root)
    assert [(r[ID_COLUMN[modality]], r["category"], r[f"{modality}_file_path"]) for r in rows] == expected


def test_seed_media_names_are_ids_with_any_extension(seed_tree, hf_cache, tmp_path):
    target = tmp_path / "eshot"
    shutil.copytree(seed_tree.eshot_dir, target)
    folder = target / "point-clouds"
    first = sorted(os.listdir(folder), key=lambda n: int(n.split(".")[0]))[0]
    padded = "000" + first.split(".")[0] + ".cloud." + first.split(".", 1)[1]
    os.rename(folder / first, folder / padded)
    (folder / ".DS_Store").write_bytes(b"")
    ds = _prepare(str(target), hf_cache, "eshot_points")
    assert ds["points_file_path"][0] == str(folder / padded)
    (folder / first).write_bytes(b"")  # now two files for one id
    with pytest.raises(EMM1DataError, match=rf"two media files for id {first.split('.')[0]}"):
        _prepare(str(target), str(tmp_path / "cache2"), "eshot_points")
