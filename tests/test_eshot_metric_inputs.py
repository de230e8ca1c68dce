"""EShot metric input handling: label types through `evaluate`, reuse after an error, extreme magnitudes."""
import glob
import os
import uuid

import evaluate
import numpy as np
import pytest

from emm1_lib.evaluation.eshot_protocol import EShotInputError
from emm1_lib.evaluation.eshot_protocol import eshot_scores
from emm1_lib.evaluation.eshot_protocol import label_kind

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRIC_DIR = os.path.join(REPO, "metrics", "eshot")
EMBEDDINGS = [[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.2, 0.8]]
MODALITIES = ["audio", "audio", "points", "points"]
NAMES = ["bird", "car", "bird", "car"]


@pytest.fixture(params=[True, False], ids=["in-memory", "cache-files"])
def metric(request, tmp_path):
    return evaluate.load(METRIC_DIR, keep_in_memory=request.param, cache_dir=str(tmp_path / "cache"),
                         experiment_id=uuid.uuid4().hex)


@pytest.mark.parametrize("labels, odd", [
    (["bird", 1, "bird", "car"], "row 1 holds 1"),
    ([1, "bird", 1, 0], "row 1 holds 'bird'"),
    ([True, False, True, False], "bool"),
    ([np.bool_(True), np.bool_(False), np.bool_(True), np.bool_(False)], "bool"),
    ([1.0, 0.0, 1.0, 0.0], "float"),
    (["bird", None, "bird", "car"], "NoneType"),
])
def test_mixed_bool_and_float_labels_are_refused_through_evaluate(metric, labels, odd):
    with pytest.raises(EShotInputError, match=f"all category names .str. or all category ids .int..*{odd}"):
        metric.compute(embeddings=EMBEDDINGS, labels=labels, modalities=MODALITIES, k=1)


def test_names_and_ids_cannot_be_mixed_across_batches(metric):
    metric.add_batch(embeddings=EMBEDDINGS[:2], labels=["bird", "car"], modalities=MODALITIES[:2])
    with pytest.raises(EShotInputError, match="earlier rows hold names, this batch holds ids"):
        metric.add_batch(embeddings=EMBEDDINGS[2:], labels=[0, 1], modalities=MODALITIES[2:])
    with pytest.raises(EShotInputError, match="earlier rows hold names, this batch holds ids"):
        metric.add(embeddings=EMBEDDINGS[2], labels=0, modalities="points")


@pytest.mark.parametrize("failing", [
    dict(labels=[1, "bird", 1, 0]),                                   # refused before evaluate encodes it
    dict(labels=[0, 1, 0, 7], categories=["bird", "car"]),           # refused by the protocol after encoding
    dict(labels=[0, 1, 0, 1], modalities=["audio"] * 4),              # a missing modality
])
def test_the_metric_is_reusable_after_a_failed_compute(metric, tmp_path, failing):
    kwargs = {**dict(embeddings=EMBEDDINGS, labels=NAMES, modalities=MODALITIES, k=1), **failing}
    with pytest.raises(EShotInputError):
        metric.compute(**kwargs)
    for labels in (NAMES, [0, 1, 0, 1]):  # names, then ids: neither type is stuck from the failure
        result = metric.compute(embeddings=EMBEDDINGS, labels=labels, modalities=MODALITIES, k=1)
        assert result["audio_to_points_top1"] == 1.0 and result["points_to_audio_top1"] == 1.0
    assert not glob.glob(str(tmp_path / "cache" / "**" / "*.arrow"), recursive=True), "cache files left behind"


def test_numpy_string_labels_are_names():
    labels = list(np.array(NAMES))  # elements are numpy.str_
    assert label_kind(labels) == "names"
    assert eshot_scores(np.array(EMBEDDINGS), labels, MODALITIES, k=1)["audio_to_points_top1"] == 1.0


@pytest.mark.parametrize("magnitude", [1e-300, 1e-160, 1.0, 1e160, 1e300])
def test_extreme_but_finite_magnitudes_give_the_same_scores(magnitude):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 8))
    labels = [f"c{i % 5}" for i in range(40)]
    modalities = ["audio" if i % 2 else "points" for i in range(40)]
    expected = eshot_scores(base, labels, modalities, k=[1, 3])
    scaled = eshot_scores(base * magnitude, labels, modalities, k=[1, 3])
    for key in ("audio_to_points_top1", "points_to_audio_top1", "audio_to_points_top3", "points_to_audio_top3"):
        assert scaled[key] == expected[key], (magnitude, key)
    assert expected["audio_to_points_top3"] > 0.0
