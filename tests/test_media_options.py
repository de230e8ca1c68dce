"""`media_options`: a key that is no modality is an error naming the valid ones, never silently ignored."""
import pytest

import emm1
import eshot


def _emm1(released_tree, hf_cache, **kwargs):
    return emm1.EMM1(config_name="phase1_nn1", data_dir=released_tree.metadata_dir, root_data_path=released_tree.root,
                     cache_dir=hf_cache, **kwargs)


def _eshot(released_tree, hf_cache, config, **kwargs):
    return eshot.EShot(config_name=config, data_dir=released_tree.eshot_dir, root_data_path=released_tree.root,
                       cache_dir=hf_cache, **kwargs)


@pytest.mark.parametrize("options", [{"point": {"num_points": 64}}, {"images": {"mode": "L"}},
                                     {"num_points": 64}])  # the last: EShot's flat form, which E-MM1 does not take
def test_emm1_unknown_modality_is_an_error_naming_the_valid_ones(released_tree, hf_cache, options):
    with pytest.raises(ValueError, match=r"media_options has unknown modalities .*'image', 'audio', 'video', 'points'"):
        _emm1(released_tree, hf_cache, media_options=options)


def test_emm1_options_of_a_modality_not_loaded_are_checked_too(released_tree, hf_cache):
    with pytest.raises(TypeError, match=r"Unknown points option\(s\) \['num_pts'\]"):
        _emm1(released_tree, hf_cache, modalities=["image"], media_options={"points": {"num_pts": 64}})
    with pytest.raises(ValueError, match=r"media_options\['points'\] must be a dict"):
        _emm1(released_tree, hf_cache, media_options={"points": 64})


def test_emm1_valid_options_reach_the_feature(released_tree, hf_cache):
    builder = _emm1(released_tree, hf_cache, media_options={"points": {"num_points": 64}, "image": {"mode": "L"}})
    assert builder.info.features["points"].num_points == 64 and builder.info.features["image"].mode == "L"


@pytest.mark.parametrize("config", ["eshot_audio", "eshot_points"])
def test_eshot_unknown_modality_is_an_error_naming_the_valid_ones(released_tree, hf_cache, config):
    with pytest.raises(ValueError, match=r"media_options has unknown modalities \['point'\].*\['audio', 'points'\]"):
        _eshot(released_tree, hf_cache, config, media_options={"point": {"num_points": 64}})


def test_eshot_takes_per_modality_and_flat_options(released_tree, hf_cache):
    both = {"points": {"num_points": 64}, "audio": {"sampling_rate": 8000}}
    assert _eshot(released_tree, hf_cache, "eshot_points", media_options=both).info.features["points"].num_points == 64
    assert _eshot(released_tree, hf_cache, "eshot_audio", media_options=both).info.features["audio"].sampling_rate == 8000
    flat = _eshot(released_tree, hf_cache, "eshot_points", media_options={"num_points": 32})
    assert flat.info.features["points"].num_points == 32
    with pytest.raises(TypeError, match=r"Unknown points option\(s\) \['sampling_rate'\]"):
        _eshot(released_tree, hf_cache, "eshot_points", media_options={"sampling_rate": 16000})
    with pytest.raises(TypeError, match=r"Unknown audio option\(s\) \['num_pts'\]"):  # the other config's options
        _eshot(released_tree, hf_cache, "eshot_points", media_options={"audio": {"num_pts": 1}})
