"""EShot protocol core (`emm1_lib.evaluation.eshot_protocol`) and its `evaluate` metric (`metrics/eshot`)."""
import math
import multiprocessing
import os
import uuid

import numpy as np
import pytest

from emm1_lib.evaluation.eshot_protocol import EShotInputError
from emm1_lib.evaluation.eshot_protocol import class_vectors
from emm1_lib.evaluation.eshot_protocol import eshot_scores
from emm1_lib.evaluation.eshot_protocol import true_class_ranks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRIC_DIR = os.path.join(REPO, "metrics", "eshot")
DIRECTIONS = (("audio", "points"), ("points", "audio"))


# --------------------------------------------------------------------------------------------------------------
# The released example's loop, written literally (naive numpy): class vector = mean of the category's embeddings in
# the opposite modality, L2-normalised; queries L2-normalised; dot product; argsort(sim)[:, ::-1]; categories sorted.
# --------------------------------------------------------------------------------------------------------------
def reference_loop(embeddings, labels, modalities, ks=(1, 5)):
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    modalities = np.asarray(modalities)
    out = {}
    for query_modality, class_modality in DIRECTIONS:
        class_names = []
        class_vecs = []
        for category in sorted(set(labels.tolist())):
            members = embeddings[(modalities == class_modality) & (labels == category)]
            if len(members) == 0:
                continue
            mean = members.mean(axis=0)
            class_vecs.append(mean / np.linalg.norm(mean))
            class_names.append(category)
        class_vecs = np.stack(class_vecs)
        per_category = {}
        for category in sorted(set(labels[modalities == query_modality].tolist())):
            queries = embeddings[(modalities == query_modality) & (labels == category)]
            queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
            sim = queries @ class_vecs.T
            ranking = np.argsort(sim, axis=1)[:, ::-1]
            scores = {}
            for k in ks:
                hits = [category in [class_names[j] for j in row[:k]] for row in ranking]
                scores[f"top{k}"] = float(np.mean(hits))
            scores["num_queries"] = len(queries)
            per_category[category] = scores
        out[f"{query_modality}_to_{class_modality}"] = per_category
    return out


def clustered_embeddings(num_categories=12, dim=16, seed=0, sizes=None, noise=1.3):
    """Embeddings around one random centre per category (both modalities), unequal class sizes; float64."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_categories, dim))
    names = [f"cat_{i:02d}" for i in range(num_categories)]
    embeddings, labels, modalities = [], [], []
    for c in range(num_categories):
        for modality in ("audio", "points"):
            count = sizes[c] if sizes is not None else int(rng.integers(1, 9))
            embeddings.append(centres[c] + noise * rng.standard_normal((count, dim)))
            labels += [names[c]] * count
            modalities += [modality] * count
    order = rng.permutation(len(labels))
    return np.concatenate(embeddings)[order], np.array(labels)[order], np.array(modalities)[order], names


# --------------------------------------------------------------------------------------------------------------
# Hand-computed case. Categories A, B, C in 2-D.
#   points: A [1,0]; B [0,1]; C [1,1] and [3,3]      -> class vectors A (1,0), B (0,1), C (1,1)/sqrt2
#   audio:  A [1,.1] and [.2,1]; B [0,1]; C [1,0]      -> class vectors A ~(.737,.676), B (0,1), C (1,0)
# audio -> points ranks: A[1,.1]: A .995 > C .774 > B .0995 -> 0;  A[.2,1]: B .981 > C .832 > A .196 -> 2;
#                        B[0,1]: B 1 -> 0;  C[1,0]: A 1 > C .707 -> 1.
# points -> audio ranks: A[1,0]: C 1 > A .737 -> 1;  B[0,1]: B 1 -> 0;
#                        C[1,1],[3,3]: A .999 > B .7071 == C .7071 -> tie, pessimistic -> 2 (each).
# --------------------------------------------------------------------------------------------------------------
HAND_EMB = [[1, 0], [0, 1], [1, 1], [3, 3], [1, 0.1], [0.2, 1], [0, 1], [1, 0]]
HAND_LAB = ["A", "B", "C", "C", "A", "A", "B", "C"]
HAND_MOD = ["points"] * 4 + ["audio"] * 4


def test_known_answer_hand_computed():
    r = eshot_scores(HAND_EMB, HAND_LAB, HAND_MOD, k=(1, 2, 3), per_category=True)
    # audio -> points: ranks A:[0, 2], B:[0], C:[1]
    assert r["audio_to_points_top1"] == 2 / 4
    assert r["audio_to_points_top2"] == 3 / 4
    assert r["audio_to_points_top3"] == 1.0
    assert r["audio_to_points_top1_macro"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert r["audio_to_points_top2_macro"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert r["audio_to_points_per_category"] == {
        "A": {"top1": 0.5, "top2": 0.5, "top3": 1.0, "num_queries": 2},
        "B": {"top1": 1.0, "top2": 1.0, "top3": 1.0, "num_queries": 1},
        "C": {"top1": 0.0, "top2": 1.0, "top3": 1.0, "num_queries": 1},
    }
    # points -> audio: ranks A:[1], B:[0], C:[2, 2] (exact tie B == C counts against C)
    assert r["points_to_audio_top1"] == 1 / 4
    assert r["points_to_audio_top2"] == 2 / 4
    assert r["points_to_audio_top3"] == 1.0
    assert r["points_to_audio_top1_macro"] == pytest.approx(1 / 3)
    assert r["points_to_audio_top2_macro"] == pytest.approx(2 / 3)
    assert r["points_to_audio_per_category"]["C"] == {"top1": 0.0, "top2": 0.0, "top3": 1.0, "num_queries": 2}
    assert (r["num_audio"], r["num_points"], r["num_categories"], r["embedding_dim"]) == (4, 4, 3, 2)
    assert r["audio_to_points_num_queries"] == r["points_to_audio_num_queries"] == 4
    assert r["audio_to_points_num_class_vectors"] == r["points_to_audio_num_class_vectors"] == 3
    assert r["audio_to_points_missing_class_vectors"] == r["points_to_audio_missing_class_vectors"] == []
    assert r["k"] == [1, 2, 3]
    # the main keys come first
    assert list(r)[:6] == [
        "audio_to_points_top1", "audio_to_points_top2", "audio_to_points_top3",
        "points_to_audio_top1", "points_to_audio_top2", "points_to_audio_top3",
    ]


def test_hand_computed_ranks_and_class_vectors():
    emb = np.array(HAND_EMB, dtype=np.float64)
    ids = np.array([{"A": 0, "B": 1, "C": 2}[x] for x in HAND_LAB])
    points = np.arange(4)
    vectors, present = class_vectors(emb, ids, 3, rows=points)
    np.testing.assert_allclose(vectors, [[1, 0], [0, 1], [2 ** -0.5, 2 ** -0.5]], atol=1e-15)
    assert present.tolist() == [True, True, True]
    ranks = true_class_ranks(emb, ids, vectors, present, rows=np.arange(4, 8))
    assert ranks.tolist() == [0, 2, 0, 1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_released_loop_on_random_embeddings(seed):
    emb, lab, mod, _ = clustered_embeddings(seed=seed)
    ref = reference_loop(emb, lab, mod)
    got = eshot_scores(emb, lab, mod, per_category=True)
    for direction in ("audio_to_points", "points_to_audio"):
        assert got[f"{direction}_per_category"] == ref[direction]
        # informative: neither trivial nor perfect
        assert 0 < got[f"{direction}_top1"] < 1
        weights = np.array([v["num_queries"] for v in ref[direction].values()])
        for k in (1, 5):
            per = np.array([v[f"top{k}"] for v in ref[direction].values()])
            assert got[f"{direction}_top{k}"] == pytest.approx(float((per * weights).sum() / weights.sum()))
            assert got[f"{direction}_top{k}_macro"] == pytest.approx(float(per.mean()))


def test_float32_input_same_ranks_as_loop():
    emb, lab, mod, _ = clustered_embeddings(seed=5, dim=32)
    emb32 = emb.astype(np.float32)
    ref = reference_loop(emb32.astype(np.float64), lab, mod)
    got = eshot_scores(emb32, lab, mod, per_category=True)
    assert got["audio_to_points_per_category"] == ref["audio_to_points"]
    assert got["points_to_audio_per_category"] == ref["points_to_audio"]


def test_names_vs_ids_and_unequal_class_sizes():
    sizes = [1, 2, 9, 3, 7, 1, 4, 2]
    emb, lab, mod, names = clustered_embeddings(num_categories=8, sizes=sizes, seed=3)
    ids = np.array([names.index(x) for x in lab])
    by_name = eshot_scores(emb, lab, mod, per_category=True)
    by_id_named = eshot_scores(emb, ids, mod, categories=names, per_category=True)
    assert by_id_named == by_name
    by_id = eshot_scores(emb, ids.tolist(), mod.tolist(), per_category=True)
    assert by_id["audio_to_points_per_category"] == {
        names.index(name): v for name, v in by_name["audio_to_points_per_category"].items()
    }
    # unequal sizes: micro is weighted by the class sizes, macro is not
    per = by_name["audio_to_points_per_category"]
    counts = np.array([per[n]["num_queries"] for n in names])
    assert counts.tolist() == sizes
    top1 = np.array([per[n]["top1"] for n in names])
    assert by_name["audio_to_points_top1"] == pytest.approx(float((top1 * counts).sum() / counts.sum()))
    assert by_name["audio_to_points_top1_macro"] == pytest.approx(float(top1.mean()))


def test_categories_order_does_not_change_scores():
    emb, lab, mod, names = clustered_embeddings(seed=4)
    forward = eshot_scores(emb, lab, mod, categories=names)
    backward = eshot_scores(emb, lab, mod, categories=names[::-1])
    assert forward == backward


def test_missing_class_vectors_listed_and_count_as_wrong():
    emb, lab, mod, names = clustered_embeddings(num_categories=6, seed=7, noise=0.05)
    # drop every point cloud of cat_02 -> its audio queries have no class vector
    keep = ~((lab == "cat_02") & (mod == "points"))
    emb, lab, mod = emb[keep], lab[keep], mod[keep]
    r = eshot_scores(emb, lab, mod, categories=names + ["cat_99"], per_category=True)
    assert r["audio_to_points_missing_class_vectors"] == ["cat_02"]
    assert r["points_to_audio_missing_class_vectors"] == []
    assert r["audio_to_points_num_class_vectors"] == 5
    assert r["points_to_audio_num_class_vectors"] == 6
    assert r["audio_to_points_per_category"]["cat_02"]["top5"] == 0.0
    # low noise: every other audio query is right, so the missing category alone explains the misses
    n_missing = int(((lab == "cat_02") & (mod == "audio")).sum())
    n_audio = int((mod == "audio").sum())
    assert r["audio_to_points_top1"] == (n_audio - n_missing) / n_audio
    assert r["audio_to_points_top1_macro"] == pytest.approx(5 / 6)
    # points -> audio still ranks against cat_02's audio class vector
    assert r["points_to_audio_top1"] == 1.0
    assert "cat_99" not in r["audio_to_points_per_category"]
    assert r["num_categories"] == 6


def test_tie_rule_is_pessimistic():
    # every embedding identical: all similarities tie, so nothing is top-1 (not 100 % for the first category)
    emb = np.ones((12, 4))
    lab = [f"c{i % 3}" for i in range(12)]
    mod = ["audio"] * 6 + ["points"] * 6
    r = eshot_scores(emb, lab, mod, k=(1, 2, 3))
    for d in ("audio_to_points", "points_to_audio"):
        assert r[f"{d}_top1"] == 0.0
        assert r[f"{d}_top2"] == 0.0
        assert r[f"{d}_top3"] == 1.0  # rank 2 of 3 candidates
    # two categories with identical class vectors: both lose top-1, a third distinct one keeps it
    emb = np.array([[1.0, 0], [1.0, 0], [0, 1.0], [1.0, 0.01], [1.0, -0.01], [0, 1.0]])
    lab = ["x", "y", "z", "x", "y", "z"]
    mod = ["points"] * 3 + ["audio"] * 3
    r = eshot_scores(emb, lab, mod, k=(1, 2), per_category=True)
    per = r["audio_to_points_per_category"]
    assert per["x"]["top1"] == per["y"]["top1"] == 0.0
    assert per["x"]["top2"] == per["y"]["top2"] == 1.0
    assert per["z"]["top1"] == 1.0


@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_chunking_does_not_change_results(chunk_size):
    emb, lab, mod, _ = clustered_embeddings(seed=8)
    assert eshot_scores(emb, lab, mod, per_category=True, chunk_size=chunk_size) == eshot_scores(
        emb, lab, mod, per_category=True
    )


def test_k_larger_than_categories_and_single_k():
    emb, lab, mod, _ = clustered_embeddings(num_categories=3, seed=9)
    r = eshot_scores(emb, lab, mod, k=10)
    assert r["audio_to_points_top10"] == r["points_to_audio_top10"] == 1.0
    assert r["k"] == [10]


def _set_row(matrix, row, value):
    out = matrix.copy()
    out[row] = value
    return out


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e, l, m: ([list(r) for r in e[:-1]] + [list(e[-1][:-1])], l, m), "same dimension"),
        (lambda e, l, m: (_set_row(e, 3, np.nan), l, m), "NaN or infinite values in 1 row(s): 3"),
        (lambda e, l, m: (_set_row(e, 5, -np.inf), l, m), "NaN or infinite values in 1 row(s): 5"),
        (lambda e, l, m: (_set_row(e, 2, 0.0), l, m), "all-zero row(s), which cannot be L2-normalised: 2"),
        (lambda e, l, m: (e, l, _set_row(m.astype(object), 4, "image")), "unknown modality 'image' in row(s) 4"),
        (lambda e, l, m: (e, l, m[:-1]), "modalities must give one value per embedding row"),
        (lambda e, l, m: (e, l[:-2], m), "labels must give one value per embedding row"),
        (lambda e, l, m: (e[:, :, None], l, m), "2-D array"),
        (lambda e, l, m: (e[:0], l[:0], m[:0]), "empty"),
        (lambda e, l, m: (e, l, np.full(len(m), "audio")), 'no "points" embeddings'),
        (lambda e, l, m: (e, [1] + l.tolist()[1:], m), "all category names (str) or all category ids (int)"),
        (lambda e, l, m: (e.astype(str), l, m), "numeric"),
    ],
)
def test_bad_input_errors_are_clear(mutate, message):
    emb, lab, mod, _ = clustered_embeddings(num_categories=3, seed=10)
    args = mutate(emb, lab, mod)
    with pytest.raises(EShotInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        eshot_scores(*args)


def test_unknown_label_and_bad_ids_name_the_value():
    emb, lab, mod, names = clustered_embeddings(num_categories=3, seed=11)
    lab = lab.copy()
    lab[6] = "cat_77"
    with pytest.raises(EShotInputError, match=r"unknown label\(s\) 'cat_77' in row\(s\) 6"):
        eshot_scores(emb, lab, mod, categories=names)
    ids = np.array([names.index(x) if x in names else 0 for x in lab])
    ids[2] = 3
    with pytest.raises(EShotInputError, match=r"label id 3 in row\(s\) 2 is out of range"):
        eshot_scores(emb, ids, mod, categories=names)
    ids[2] = -1
    with pytest.raises(EShotInputError, match=r"label id -1 in row\(s\) 2 is negative"):
        eshot_scores(emb, ids, mod)
    with pytest.raises(EShotInputError, match="every k must be a positive integer"):
        eshot_scores(emb, lab, mod, k=(1, 0))
    with pytest.raises(EShotInputError, match="categories lists 'cat_00' twice"):
        eshot_scores(emb, lab, mod, categories=names + ["cat_00"])


def test_zero_mean_class_vector_is_an_error():
    emb = [[1.0, 0], [-1.0, 0], [0, 1.0], [1.0, 0], [0, 1.0], [0.5, 0.5]]
    lab = ["a", "a", "b", "a", "b", "b"]
    mod = ["points", "points", "points", "audio", "audio", "points"]
    with pytest.raises(EShotInputError, match="zero vector"):
        eshot_scores(emb, lab, mod)


# --------------------------------------------------------------------------------------------------------------
# The evaluate metric
# --------------------------------------------------------------------------------------------------------------
evaluate = pytest.importorskip("evaluate")


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(METRIC_DIR)


def test_metric_loads_from_relative_path_and_other_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    relative = evaluate.load("metrics/eshot")
    monkeypatch.chdir(tmp_path)
    absolute = evaluate.load(METRIC_DIR)
    expected = eshot_scores(HAND_EMB, HAND_LAB, HAND_MOD, k=(1, 2))
    assert relative.compute(embeddings=HAND_EMB, labels=HAND_LAB, modalities=HAND_MOD, k=(1, 2)) == expected
    assert absolute.compute(embeddings=HAND_EMB, labels=HAND_LAB, modalities=HAND_MOD, k=(1, 2)) == expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_metric_equals_numpy_core_exactly(metric, dtype):
    emb, lab, mod, names = clustered_embeddings(seed=12, dim=24)
    emb = emb.astype(dtype)
    expected = eshot_scores(emb, lab, mod, per_category=True)
    assert metric.compute(embeddings=emb, labels=lab, modalities=mod, per_category=True) == expected
    # as plain Python lists too
    assert metric.compute(embeddings=emb.tolist(), labels=lab.tolist(), modalities=mod.tolist(), per_category=True) == (
        eshot_scores(emb.astype(np.float64), lab, mod, per_category=True) if dtype == np.float32 else expected
    )


def test_metric_ids_with_category_names(metric):
    emb, lab, mod, names = clustered_embeddings(seed=13)
    ids = [names.index(x) for x in lab]
    by_name = metric.compute(embeddings=emb, labels=lab, modalities=mod, per_category=True, k=[1, 3])
    by_id = metric.compute(embeddings=emb, labels=ids, modalities=mod, per_category=True, k=[1, 3], categories=names)
    assert by_id == by_name
    assert by_name["audio_to_points_per_category"] == reference_loop(emb, lab, mod, ks=(1, 3))["audio_to_points"]


def test_metric_accepts_dataset_columns(metric):
    import datasets

    emb, lab, mod, names = clustered_embeddings(seed=18)
    ds = datasets.Dataset.from_dict({"category": [names.index(x) for x in lab], "modality": mod.tolist()})
    result = metric.compute(embeddings=emb, labels=ds["category"], modalities=ds["modality"], categories=names)
    assert result == eshot_scores(emb, lab, mod)


def test_metric_add_batch_and_add(metric):
    emb, lab, mod, _ = clustered_embeddings(seed=14)
    expected = eshot_scores(emb, lab, mod, per_category=True)
    for start in range(0, len(lab), 7):
        rows = slice(start, start + 7)
        metric.add_batch(embeddings=emb[rows], labels=lab[rows], modalities=mod[rows])
    assert metric.compute(per_category=True) == expected
    for e, l, m in zip(emb, lab, mod):
        metric.add(embeddings=e, labels=l, modalities=m)
    assert metric.compute(per_category=True) == expected
    # float32 and float64 batches mixed: each row keeps its own precision
    half = len(lab) // 2
    metric.add_batch(embeddings=emb[:half].astype(np.float32), labels=lab[:half], modalities=mod[:half])
    metric.add_batch(embeddings=emb[half:], labels=lab[half:], modalities=mod[half:])
    mixed = np.concatenate([emb[:half].astype(np.float32).astype(np.float64), emb[half:]])
    assert metric.compute() == eshot_scores(mixed, lab, mod)


def test_metric_bad_input_errors_name_the_row(metric):
    emb, lab, mod, _ = clustered_embeddings(num_categories=3, seed=15)
    metric.add_batch(embeddings=emb[:5], labels=lab[:5], modalities=mod[:5])
    bad = emb[5:10].copy()
    bad[2, 0] = np.nan
    with pytest.raises(EShotInputError, match=r"NaN or infinite values in 1 row\(s\): 7"):
        metric.add_batch(embeddings=bad, labels=lab[5:10], modalities=mod[5:10])
    with pytest.raises(EShotInputError, match=r"unknown modality 'video' in row\(s\) 5"):
        metric.add_batch(embeddings=emb[5:6], labels=lab[5:6], modalities=["video"])
    with pytest.raises(EShotInputError, match="labels must give one value per embedding"):
        metric.add_batch(embeddings=emb[5:7], labels=lab[5:6], modalities=mod[5:7])
    # a batch of another dimension is refused when the rows are gathered
    metric.add_batch(embeddings=emb[5:8, :-1], labels=lab[5:8], modalities=mod[5:8])
    with pytest.raises(EShotInputError, match="different dimensions: row 0 has 16 values, row 5 has 15"):
        metric.compute()
    with pytest.raises(EShotInputError, match="same dimension"):
        metric.compute(embeddings=[[1.0, 2.0], [1.0]], labels=["a", "a"], modalities=["audio", "points"])


def _distributed_worker(process_id, cache_dir, experiment_id, emb, lab, mod, queue):
    import evaluate as ev

    metric = ev.load(METRIC_DIR, num_process=2, process_id=process_id, cache_dir=cache_dir, experiment_id=experiment_id)
    rows = slice(process_id, None, 2)
    metric.add_batch(embeddings=emb[rows], labels=lab[rows], modalities=mod[rows])
    queue.put((process_id, metric.compute(per_category=True)))


def test_metric_multi_process_mode(tmp_path):
    emb, lab, mod, _ = clustered_embeddings(seed=16)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    experiment_id = uuid.uuid4().hex
    workers = [
        context.Process(target=_distributed_worker, args=(i, str(tmp_path), experiment_id, emb, lab, mod, queue))
        for i in range(2)
    ]
    for w in workers:
        w.start()
    results = dict(queue.get(timeout=120) for _ in workers)
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    assert results[1] is None
    order = np.r_[np.arange(0, len(lab), 2), np.arange(1, len(lab), 2)]
    assert results[0] == eshot_scores(emb[order], lab[order], mod[order], per_category=True)
    assert results[0] == eshot_scores(emb, lab, mod, per_category=True)


def test_metric_result_is_json_serialisable(metric):
    import json

    emb, lab, mod, _ = clustered_embeddings(seed=17)
    result = metric.compute(embeddings=emb, labels=lab, modalities=mod, per_category=True)
    assert json.loads(json.dumps(result)) == result
    assert not any(isinstance(v, float) and math.isnan(v) for v in result.values())
