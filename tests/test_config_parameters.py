"""Config parameters are checked when the builder is made, before any data is read; an error names parameter and value."""
import os
import warnings

import numpy as np
import pytest

import emm1
import eshot
from emm1_lib.schema.triplets import annotation_codes_for
from emm1_lib.schema.triplets import annotation_values
from emm1_lib.testing.sample import generate_sample_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return generate_sample_tree(str(tmp_path_factory.mktemp("parameters")), media=False, num_neighbours=1,
                                num_captions=40, num_media=8, num_triplets=60)


def _emm1(tree, cache, config="phase1_nn1", **kwargs):
    return emm1.EMM1(config_name=config, data_dir=tree.metadata_dir, root_data_path=tree.root, decode=kwargs.pop(
        "decode", False), cache_dir=cache, **kwargs)


def _rows(builder, split="train"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        builder.download_and_prepare()
    return builder.as_dataset(split=split)


@pytest.fixture
def no_reading(monkeypatch):
    """Any read of a metadata file fails the test: the checks must come first."""
    import emm1_lib.io.tables as tables

    def refuse(*args, **kwargs):
        raise AssertionError(f"data read before the parameters were checked: {args[:1]}")

    for name in ("read_header", "read_csv_table", "read_csv_range", "iter_csv_batches", "byte_ranges"):
        monkeypatch.setattr(tables, name, refuse)
    import emm1_lib.builders.emm1 as builder_module
    for name in ("read_header", "read_csv_range", "byte_ranges"):
        monkeypatch.setattr(builder_module, name, refuse)


# -- annotations ---------------------------------------------------------------------------------

def test_numpy_integer_codes_are_codes(tree, tmp_path):
    as_int = _rows(_emm1(tree, str(tmp_path / "int"), "phase2_triplets", annotations=[1]))
    as_numpy = _emm1(tree, str(tmp_path / "numpy"), "phase2_triplets", annotations=[np.int64(1)])
    assert as_numpy.config.annotations == [1] and type(as_numpy.config.annotations[0]) is int
    rows = _rows(as_numpy)
    assert rows["annotation"] == as_int["annotation"] and rows.num_rows == as_int.num_rows > 0
    # the same filter is the same config: one cache entry
    assert os.path.basename(as_numpy.cache_dir) == os.path.basename(_emm1(tree, str(tmp_path / "int"),
                                                                          "phase2_triplets", annotations=[1]).cache_dir)
    codes = list(np.array([1, 3], dtype=np.int32))  # what list(array) gives
    assert annotation_codes_for(codes, [1, 2, 3], ["Good Match", "Partial Match", "Bad Match"]) == [1, 3]


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 1.0, None, b"Good Match", ["Good Match"]])
def test_a_value_that_is_neither_name_nor_code_is_refused_before_reading(tree, tmp_path, no_reading, value):
    with pytest.raises(ValueError, match=r"phase2_triplets: annotations: .* is neither a label name \(str\) nor an "
                                         r"integer code") as raised:
        _emm1(tree, str(tmp_path / "cache"), "phase2_triplets", annotations=["Good Match", value])
    assert repr(value) in str(raised.value)


@pytest.mark.parametrize("value", ["Good Match", 1])
def test_annotations_not_given_as_a_list_are_refused(tree, tmp_path, no_reading, value):
    with pytest.raises(ValueError, match="annotations=.*give a list of label names"):
        _emm1(tree, str(tmp_path / "cache"), "phase2_triplets", annotations=value)


def test_bool_is_refused_by_the_shared_parser():
    """`annotation_codes_for` (also called by direct users) refuses a bool, as True == 1 would pass for code 1."""
    with pytest.raises(ValueError, match="True"):
        annotation_codes_for([True], [1, 2, 3], ["a", "b", "c"])
    assert annotation_values(("a", np.uint8(2))) == ["a", 2]


# -- numbers and flags ----------------------------------------------------------------------------

@pytest.mark.parametrize("parameter, value", [
    ("batch_size", 0), ("batch_size", -5), ("batch_size", 2.5), ("batch_size", True), ("batch_size", "100"),
    ("shard_bytes", 0), ("shard_bytes", -1), ("shard_bytes", 1e6),
    ("nn_index", 0), ("nn_index", 17), ("nn_index", 1.0),
])
def test_numbers_out_of_range_are_refused_naming_the_parameter(tree, tmp_path, no_reading, parameter, value):
    with pytest.raises(ValueError, match=f"phase1_nn1: {parameter}={value!r} is not accepted; give an integer"):
        _emm1(tree, str(tmp_path / "cache"), **{parameter: value})


@pytest.mark.parametrize("config", ["phase1_nn1", "phase2_triplets"])
def test_batch_size_zero_is_refused_on_the_load_dataset_route(tree, tmp_path, no_reading, config):
    import datasets

    with pytest.raises(ValueError, match=f"{config}: batch_size=0 is not accepted"):
        datasets.load_dataset("emm1", config, data_dir=tree.metadata_dir, root_data_path=tree.root, batch_size=0,
                              cache_dir=str(tmp_path / "cache"))


def test_numpy_integers_and_the_smallest_values_are_accepted(tree, tmp_path):
    small = _rows(_emm1(tree, str(tmp_path / "small"), batch_size=np.int64(1), shard_bytes=np.int32(1)))
    default = _rows(_emm1(tree, str(tmp_path / "default")))
    assert small["encord_text_id"] == default["encord_text_id"] and small.num_rows == 40


@pytest.mark.parametrize("flag", ["decode", "allow_outside_root", "file_path_columns", "provenance_labels"])
def test_flags_take_true_or_false_only(tree, tmp_path, no_reading, flag):
    with pytest.raises(ValueError, match=f"phase1_nn1: {flag}='no' is not accepted; give True or False"):
        _emm1(tree, str(tmp_path / "cache"), **{flag: "no"})


@pytest.mark.parametrize("modality, option, value", [
    ("points", "num_points", 0), ("points", "mesh_points", -1), ("points", "seed", -1), ("points", "normalize", "yes"),
    ("audio", "sampling_rate", 0), ("audio", "mono", 1), ("video", "stream_index", -1), ("points", "num_points", 2.0),
])
def test_media_option_values_are_checked(tree, tmp_path, no_reading, modality, option, value):
    with pytest.raises(ValueError, match=rf"phase1_nn1: media_options\['{modality}'\]\['{option}'\]={value!r} is not "
                                         "accepted"):
        _emm1(tree, str(tmp_path / "cache"), media_options={modality: {option: value}})


def test_eshot_parameters_are_checked(tree, tmp_path):
    def make(**kwargs):
        return eshot.EShot(config_name="eshot_points", data_dir=tree.eshot_dir, cache_dir=str(tmp_path / "cache"),
                           **kwargs)

    with pytest.raises(ValueError, match=r"eshot_points: media_options\['num_points'\]=0 is not accepted"):
        make(media_options={"num_points": 0})
    with pytest.raises(ValueError, match=r"eshot_points: media_options\['audio'\]\['sampling_rate'\]=-8000 is not"):
        make(media_options={"audio": {"sampling_rate": -8000}, "points": {"num_points": 16}})
    with pytest.raises(ValueError, match="eshot_points: decode='False' is not accepted; give True or False"):
        make(decode="False")
    assert make(media_options={"num_points": np.int64(16)}, decode=np.bool_(False)).config.modality == "points"
