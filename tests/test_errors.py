"""Clear errors of the E-MM1 builder: each names the file (and row or config) and says what to do."""
import os
import shutil

import datasets
import pytest

import emm1
from emm1_lib.errors import EMM1DataError


def _behind(error: BaseException, kind=EMM1DataError) -> BaseException:
    """The error of `kind` behind `error` (datasets wraps errors raised while generating)."""
    while not isinstance(error, kind) and error.__cause__ is not None:
        error = error.__cause__
    assert isinstance(error, kind), repr(error)
    return error


def _prepare(data_dir, root, hf_cache, config="phase1_nn1", **kwargs):
    builder = emm1.EMM1(config_name=config, data_dir=data_dir, root_data_path=root, cache_dir=hf_cache, decode=False, **kwargs)
    builder.download_and_prepare()
    return builder.as_dataset(split="train")


@pytest.fixture
def tree_copy(released_tree, tmp_path):
    """A writable copy of the clean released metadata (media stay at the original root)."""
    target = tmp_path / "copy"
    shutil.copytree(released_tree.phase1_dir, target / "e-mm1_100m")
    return target


def test_unknown_config_lists_valid_ones(released_tree, hf_cache):
    with pytest.raises(ValueError) as error:
        emm1.EMM1(config_name="phase1_nn17", data_dir=released_tree.metadata_dir, cache_dir=hf_cache)
    assert "phase1_nn16" in str(error.value) and "phase2_triplets" in str(error.value)


def test_unknown_parameter_is_refused(released_tree, hf_cache):
    with pytest.raises(ValueError, match="root_path"):
        emm1.EMM1(config_name="phase1_nn1", data_dir=released_tree.metadata_dir, root_path="/x", cache_dir=hf_cache)


def test_missing_data_dir(hf_cache, tmp_path):
    with pytest.raises(ValueError, match="no data_dir"):
        _prepare(None, str(tmp_path), hf_cache)


def test_data_dir_without_the_metadata(hf_cache, tmp_path):
    with pytest.raises(EMM1DataError, match=r"config phase1_nn1: no 'nn_1/data_groups.csv' found") as error:
        _prepare(str(tmp_path), str(tmp_path), hf_cache)
    assert "e-mm1_100m" in str(error.value) and "encord_phase_1_dataset" in str(error.value)


def test_missing_neighbour_file_names_file_and_config(tree_copy, released_tree, hf_cache):
    os.remove(tree_copy / "e-mm1_100m" / "nn_9" / "data_groups.csv")
    with pytest.raises(EMM1DataError, match=r"config phase1_all: .*nn_9.*data_groups.csv not found"):
        _prepare(str(tree_copy), released_tree.root, hf_cache, config="phase1_all")


def test_missing_media_root(released_tree, hf_cache, monkeypatch):
    monkeypatch.delenv("ROOT_DATA_PATH", raising=False)
    with pytest.raises(ValueError, match="ROOT_DATA_PATH"):
        _prepare(released_tree.metadata_dir, None, hf_cache)


def test_missing_required_columns_are_named(tree_copy, released_tree, hf_cache):
    infos = tree_copy / "e-mm1_100m" / "infos" / "audio.csv"
    lines = infos.read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, name in enumerate(header) if "file_name" not in name]
    infos.write_text("\n".join(",".join(line.split(",")[i] for i in keep) for line in lines) + "\n")
    with pytest.raises(Exception) as raised:
        _prepare(str(tree_copy), released_tree.root, hf_cache)
    error = _behind(raised.value)
    assert "audio.csv" in str(error) and "missing required column(s) ['file_name']" in str(error)


def test_missing_group_column_is_named_before_reading(tree_copy, released_tree, hf_cache):
    groups = tree_copy / "e-mm1_100m" / "nn_1" / "data_groups.csv"
    groups.write_text(groups.read_text().replace('"encord_points_id"', '"encord_pointcloud_id"', 1))
    with pytest.raises(EMM1DataError, match=r"data_groups.csv: missing required column\(s\) \['encord_points_id'\]"):
        _prepare(str(tree_copy), released_tree.root, hf_cache)
    ds = _prepare(str(tree_copy), released_tree.root, hf_cache + "-subset", modalities=["image", "audio"])
    assert len(ds) == released_tree.num_captions  # modalities not asked for need no column


def test_unparsable_csv_names_the_file_and_the_value(tree_copy, released_tree, hf_cache):
    groups = tree_copy / "e-mm1_100m" / "nn_1" / "data_groups.csv"
    lines = groups.read_text().splitlines()
    lines[3] = "12,not-a-number," + lines[3].split(",", 2)[2]
    groups.write_text("\n".join(lines) + "\n")
    with pytest.raises(Exception) as raised:
        _prepare(str(tree_copy), released_tree.root, hf_cache)
    message = str(_behind(raised.value))
    assert "data_groups.csv" in message and "not-a-number" in message


def test_ragged_csv_row_names_the_file(tree_copy, released_tree, hf_cache):
    infos = tree_copy / "e-mm1_100m" / "infos" / "image.csv"
    infos.write_text(infos.read_text() + "999,only-two-fields\n")
    with pytest.raises(Exception) as raised:
        _prepare(str(tree_copy), released_tree.root, hf_cache)
    message = str(_behind(raised.value))
    assert "image.csv" in message and "999,only-two-fields" in message


@pytest.mark.parametrize("bad_value", ["../../etc/passwd", "/etc/passwd", "~/secret.jpg", "a\x00b.jpg"])
def test_unsafe_file_name_is_refused_with_its_row(tree_copy, released_tree, hf_cache, bad_value):
    infos = tree_copy / "e-mm1_100m" / "infos" / "image.csv"
    lines = infos.read_text().splitlines()
    fields = lines[2].split(",")
    image_id = fields[0]
    fields[-2] = f'"{bad_value}"'
    lines[2] = ",".join(fields)
    infos.write_text("\n".join(lines) + "\n")
    with pytest.raises(Exception) as raised:
        _prepare(str(tree_copy), released_tree.root, hf_cache)
    message = str(_behind(raised.value))
    assert "image.csv: data row 2 (line 3" in message and f"encord_image_id={image_id}" in message
    assert "unsafe file_name" in message


def test_duplicate_infos_ids_are_an_error_naming_them(tree_copy, released_tree, hf_cache):
    infos = tree_copy / "e-mm1_100m" / "infos" / "video.csv"
    lines = infos.read_text().splitlines()
    infos.write_text("\n".join(lines + [lines[1]]) + "\n")
    duplicated = lines[1].split(",")[0]
    with pytest.raises(Exception) as raised:
        _prepare(str(tree_copy), released_tree.root, hf_cache)
    message = str(_behind(raised.value))
    assert "video.csv" in message and "ambiguous" in message and duplicated in message


def test_bad_modalities_parameter(released_tree, hf_cache):
    with pytest.raises(ValueError, match="choose from"):
        emm1.EMM1(config_name="phase1_nn1", data_dir=released_tree.metadata_dir, modalities=["smell"], cache_dir=hf_cache)


def test_datasets_error_type_is_kept_for_users_catching_it(tree_copy, released_tree, hf_cache):
    """Errors raised while generating reach users as datasets' own error, with ours as the cause."""
    infos = tree_copy / "e-mm1_100m" / "infos" / "video.csv"
    infos.write_text(infos.read_text() + infos.read_text().splitlines()[1] + "\n")
    with pytest.raises(datasets.exceptions.DatasetGenerationError):
        _prepare(str(tree_copy), released_tree.root, hf_cache)
