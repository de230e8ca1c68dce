"""The EShot zero-shot protocol as a plain numpy function (no `evaluate`, no `datasets` needed).

EShot is audio <-> point-cloud zero-shot classification. The released protocol:

1. embed every audio clip and every point cloud;
2. for each category, the *class vector* of a direction is the mean of that category's embeddings in the
   **opposite** modality (audio queries are classified against point-cloud class vectors and vice versa),
   L2-normalised;
3. queries are L2-normalised; the similarity is the dot product; the categories are ranked by descending
   similarity and a query is top-k correct when its own category is among the first k.

`eshot_scores` computes this for both directions, per category and overall, in bounded memory: the
queries x categories similarity matrix only ever exists one chunk of queries at a time, and instead of sorting
each row it counts, for each query, how many categories score at least as high as the true one.

Tie rule (pessimistic): a query's rank is the number of *other* candidate categories whose similarity is
**greater than or equal to** the similarity of its true category; the query is top-k correct when that rank is
below k. Ties therefore always count against the query, whatever the category names or their order. A model
that maps everything to the same vector scores 0 top-1 (instead of 100 % on whichever category a sort happens
to place first). On inputs without ties this is exactly "is the label among the first k of
`argsort(sim)[:, ::-1]`", the released example's loop.

All arithmetic runs in float64 whatever the input dtype, so results do not depend on how embeddings were stored.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from typing import Dict
from typing import Iterable
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple
from typing import Union

import numpy as np

MODALITIES: Tuple[str, str] = ("audio", "points")
DIRECTIONS: Tuple[Tuple[str, str], ...] = (("audio", "points"), ("points", "audio"))
DEFAULT_K: Tuple[int, ...] = (1, 5)
# Memory budget of one chunk of float64 work array (queries x dims or queries x categories); the temporaries of
# one chunk (gathered rows, float64 copy, similarities, comparison mask) stay within a few times this.
DEFAULT_CHUNK_BYTES = 32 * 2**20

__all__ = [
    "DEFAULT_K",
    "DIRECTIONS",
    "MODALITIES",
    "EShotInputError",
    "EShotInputs",
    "as_embedding_matrix",
    "check_finite_nonzero",
    "class_vectors",
    "direction_prefix",
    "eshot_scores",
    "modality_indices",
    "prepare_inputs",
    "true_class_ranks",
]


class EShotInputError(ValueError):
    """The embeddings, labels or modalities given to the EShot protocol are unusable; the message says which row."""


def direction_prefix(query_modality: str, class_modality: str) -> str:
    """Key prefix of a direction in the result dict, e.g. ``"audio_to_points"``."""
    return f"{query_modality}_to_{class_modality}"


@dataclass
class EShotInputs:
    """Validated protocol inputs.

    Attributes:
        embeddings: ``(n, d)`` array as given (not copied when it already was a 2-D float array).
        label_ids: ``(n,)`` int64 index of each row's category into ``categories``.
        modality_ids: ``(n,)`` int8, 0 for audio and 1 for points (index into `MODALITIES`).
        categories: every category, in ranking order; names (``str``) or, for integer labels given without names,
            the integer ids themselves.
    """

    embeddings: np.ndarray
    label_ids: np.ndarray
    modality_ids: np.ndarray
    categories: List[Any]


def _row_list(indices: np.ndarray, limit: int = 5, first_row: int = 0) -> str:
    shown = ", ".join(str(int(i) + first_row) for i in indices[:limit])
    more = f" and {len(indices) - limit} more" if len(indices) > limit else ""
    return f"{shown}{more}"


def _auto_chunk_size(num_columns: int, chunk_size: Optional[int]) -> int:
    if chunk_size is not None:
        if not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise EShotInputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        return int(chunk_size)
    return max(1, DEFAULT_CHUNK_BYTES // (8 * max(1, num_columns)))


def as_embedding_matrix(embeddings: Any, first_row: int = 0) -> np.ndarray:
    """`embeddings` as a 2-D numeric array (no copy for a 2-D float array); raise on ragged or non-numeric rows.

    Args:
        embeddings: array-like of vectors (2-D array, list of lists, list of 1-D arrays, ...).
        first_row: row number of ``embeddings[0]`` in the whole input, used in error messages.
    """
    if isinstance(embeddings, np.ndarray) and embeddings.dtype != object:
        matrix = embeddings
    else:
        rows = list(embeddings)
        if not rows:
            raise EShotInputError("embeddings is empty: EShot needs embeddings of both modalities")
        lengths = np.array([np.size(row) if np.ndim(row) == 1 else -1 for row in rows])
        bad = np.flatnonzero(lengths != lengths[0])
        if lengths[0] < 0 or len(bad):
            row = int(bad[0]) if len(bad) and lengths[0] >= 0 else 0
            raise EShotInputError(
                f"embeddings must all be vectors of the same dimension: row {first_row} has "
                f"{'shape ' + str(np.shape(rows[0])) if lengths[0] < 0 else str(lengths[0]) + ' values'}, "
                f"row {row + first_row} has shape {np.shape(rows[row])}"
            )
        try:
            matrix = np.asarray(rows, dtype=np.float64) if not isinstance(rows[0], np.ndarray) else np.stack(rows)
        except (TypeError, ValueError) as err:
            raise EShotInputError(f"embeddings must be numeric vectors: {err}") from None
    if matrix.ndim != 2:
        raise EShotInputError(
            f"embeddings must be a 2-D array (one vector per row), got an array of shape {matrix.shape}"
        )
    if matrix.shape[0] == 0:
        raise EShotInputError("embeddings is empty: EShot needs embeddings of both modalities")
    if matrix.shape[1] == 0:
        raise EShotInputError("embeddings have dimension 0")
    if matrix.dtype.kind not in "fiu":
        raise EShotInputError(f"embeddings must be numeric, got dtype {matrix.dtype}")
    return matrix


def check_finite_nonzero(matrix: np.ndarray, chunk_size: Optional[int] = None, first_row: int = 0) -> None:
    """Raise `EShotInputError` naming the rows holding NaN/inf or a zero vector (which cannot be L2-normalised).

    Args:
        matrix: ``(n, d)`` numeric array.
        chunk_size: rows checked at a time (bounded temporary memory).
        first_row: row number of ``matrix[0]`` in the whole input, used in error messages.
    """
    chunk_rows = _auto_chunk_size(matrix.shape[1], chunk_size)
    if matrix.dtype.kind in "iu":
        zero = np.flatnonzero(~matrix.any(axis=1))
    else:
        bad_rows: List[np.ndarray] = []
        zero_rows: List[np.ndarray] = []
        for start in range(0, matrix.shape[0], chunk_rows):
            block = matrix[start : start + chunk_rows]
            finite = np.isfinite(block).all(axis=1)
            if not finite.all():
                bad_rows.append(start + np.flatnonzero(~finite))
            zero_rows.append(start + np.flatnonzero(~block.any(axis=1)))
        if bad_rows:
            bad = np.concatenate(bad_rows)
            raise EShotInputError(
                f"embeddings contain NaN or infinite values in {len(bad)} row(s): {_row_list(bad, first_row=first_row)}"
            )
        zero = np.concatenate(zero_rows)
    if len(zero):
        raise EShotInputError(
            f"embeddings contain {len(zero)} all-zero row(s), which cannot be L2-normalised: "
            f"{_row_list(zero, first_row=first_row)}"
        )


def modality_indices(modalities: Any, num_rows: int, first_row: int = 0) -> np.ndarray:
    """Index into `MODALITIES` (0 audio, 1 points) of each row; raise naming rows with another value.

    Args:
        modalities: ``num_rows`` strings.
        num_rows: expected number of values (the number of embeddings).
        first_row: row number of ``modalities[0]`` in the whole input, used in error messages.
    """
    values = np.asarray(modalities if not isinstance(modalities, str) else [modalities])
    if values.ndim != 1 or values.shape[0] != num_rows:
        raise EShotInputError(
            f"modalities must give one value per embedding row: {num_rows} embeddings but modalities has shape "
            f"{values.shape}"
        )
    if values.dtype.kind not in "USO":
        raise EShotInputError(f'modalities must be the strings "audio" or "points", got dtype {values.dtype}')
    if values.dtype.kind == "O":
        bad_type = [i for i, v in enumerate(values) if not isinstance(v, str)]
        if bad_type:
            i = bad_type[0]
            raise EShotInputError(f'modality of row {i + first_row} is {values[i]!r}: expected "audio" or "points"')
        values = values.astype(str)
    ids = np.full(num_rows, -1, dtype=np.int8)
    for index, name in enumerate(MODALITIES):
        ids[values == name] = index
    unknown = np.flatnonzero(ids < 0)
    if len(unknown):
        names = sorted(set(values[unknown].tolist()))
        raise EShotInputError(
            f'unknown modality {", ".join(map(repr, names))} in row(s) {_row_list(unknown, first_row=first_row)}: '
            f'expected "audio" or "points"'
        )
    return ids


def label_kind(labels: Sequence[Any], first_row: int = 0) -> str:
    """"names" when every label is a str (numpy's `str_` included), "ids" when every label is an int (numpy
    integers included, bool excluded); anything else raises `EShotInputError` naming the first odd row.

    Checked before `evaluate` encodes a batch: its features would turn `1` into `"1"` beside names, or fail
    on a name after ids, and a `True` is not a category id.
    """
    values = list(labels)
    if values and all(isinstance(v, str) for v in values):
        return "names"
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values):
        return "ids"
    kinds = sorted({type(v).__name__ for v in values})
    first_kind = "names" if values and isinstance(values[0], str) else "ids"
    odd = next((i for i, v in enumerate(values) if label_kind_of(v) != first_kind), 0)
    raise EShotInputError(
        f"labels must be all category names (str) or all category ids (int), got {', '.join(kinds) or 'nothing'}; "
        f"row {first_row + odd} holds {values[odd]!r}" if values else "labels is empty"
    )


def label_kind_of(value: Any) -> Optional[str]:
    """"names" for a str, "ids" for an int that is not a bool, None for anything else."""
    if isinstance(value, str):
        return "names"
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return "ids"
    return None


def _label_ids(labels: Any, num_rows: int, categories: Optional[Sequence[Any]]) -> Tuple[np.ndarray, List[Any]]:
    # lists go through dtype=object first: np.asarray([1, "a"]) would silently turn the id into the string "1"
    values = labels if isinstance(labels, np.ndarray) else np.asarray(list(labels), dtype=object)
    if values.ndim != 1 or values.shape[0] != num_rows:
        raise EShotInputError(
            f"labels must give one value per embedding row: {num_rows} embeddings but labels has shape {values.shape}"
        )
    if values.dtype.kind == "O":
        values = values.astype(str) if label_kind(values.tolist()) == "names" else values.astype(np.int64)
    if values.dtype.kind == "S":
        values = values.astype(str)
    if values.dtype.kind == "b" or values.dtype.kind not in "iuU":
        raise EShotInputError(f"labels must be category names (str) or ids (int), got dtype {values.dtype}")

    if categories is not None:
        names = list(categories)
        if not names:
            raise EShotInputError("categories is empty")
        if len(set(names)) != len(names):
            seen: set = set()
            dup = next(n for n in names if n in seen or seen.add(n))
            raise EShotInputError(f"categories lists {dup!r} twice")
        if values.dtype.kind == "U":
            lookup = {str(name): i for i, name in enumerate(names)}
            if len(lookup) != len(names):
                raise EShotInputError("categories must be distinct after conversion to str")
            uniques, inverse = np.unique(values, return_inverse=True)
            mapped = np.array([lookup.get(u, -1) for u in uniques.tolist()], dtype=np.int64)
            unknown = [u for u, m in zip(uniques.tolist(), mapped) if m < 0]
            if unknown:
                rows = np.flatnonzero(np.isin(values, unknown))
                raise EShotInputError(
                    f"unknown label(s) {', '.join(map(repr, unknown[:5]))} in row(s) {_row_list(rows)}: "
                    f"not among the {len(names)} categories"
                )
            return mapped[inverse.reshape(-1)], names
        ids = values.astype(np.int64)
        bad = np.flatnonzero((ids < 0) | (ids >= len(names)))
        if len(bad):
            raise EShotInputError(
                f"label id {int(ids[bad[0]])} in row(s) {_row_list(bad)} is out of range: "
                f"there are {len(names)} categories (ids 0..{len(names) - 1})"
            )
        return ids, names

    if values.dtype.kind in "iu":
        if values.dtype.kind == "i" and values.size and values.min() < 0:
            bad = np.flatnonzero(values < 0)
            raise EShotInputError(f"label id {int(values[bad[0]])} in row(s) {_row_list(bad)} is negative")
    uniques, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64), uniques.tolist()


def prepare_inputs(
    embeddings: Any,
    labels: Any,
    modalities: Any,
    categories: Optional[Sequence[Any]] = None,
    chunk_size: Optional[int] = None,
) -> EShotInputs:
    """Validate and index the inputs of `eshot_scores`; raise `EShotInputError` naming the offending rows.

    Args:
        embeddings: ``(n, d)`` array-like, one embedding per row (audio and point clouds mixed).
        labels: ``n`` category names (str) or category ids (int).
        modalities: ``n`` values, each ``"audio"`` or ``"points"``.
        categories: every category name in ranking order (ids index into it). Defaults to the sorted distinct
            labels (names), or the sorted distinct ids when labels are ids.
        chunk_size: rows per chunk for the finiteness check (default: from a 32 MiB budget).
    """
    matrix = as_embedding_matrix(embeddings)
    num_rows = matrix.shape[0]
    modality_ids = modality_indices(modalities, num_rows)
    label_ids, names = _label_ids(labels, num_rows, categories)
    check_finite_nonzero(matrix, chunk_size)
    for index, name in enumerate(MODALITIES):
        if not np.any(modality_ids == index):
            other = MODALITIES[1 - index]
            raise EShotInputError(
                f'no "{name}" embeddings: EShot evaluates both directions and needs embeddings of both '
                f'modalities ("{name}" rows are the class vectors of {other} queries)'
            )
    return EShotInputs(embeddings=matrix, label_ids=label_ids, modality_ids=modality_ids, categories=names)


def _max_abs(embeddings: np.ndarray, rows: np.ndarray, chunk: int) -> float:
    """The largest absolute value of `embeddings[rows]`, read one chunk at a time (1.0 when there is none)."""
    largest = 0.0
    for start in range(0, len(rows), chunk):
        block = np.asarray(embeddings[rows[start : start + chunk]])
        if block.size:
            largest = max(largest, float(np.max(np.abs(block))))
    return largest or 1.0


def unit_rows(block: np.ndarray) -> np.ndarray:
    """Each row of a float64 block divided by its L2 norm, without overflow or underflow in the squares.

    Rows are first divided by their largest absolute value: finite rows as large as 1e300 or as small as
    1e-300 keep their direction. Rows must be non-zero (checked by `check_finite_nonzero`).
    """
    block = block / np.max(np.abs(block), axis=1, keepdims=True)
    return block / np.linalg.norm(block, axis=1, keepdims=True)


def class_vectors(
    embeddings: np.ndarray,
    label_ids: np.ndarray,
    num_categories: int,
    rows: Optional[np.ndarray] = None,
    chunk_size: Optional[int] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """L2-normalised per-category mean of embeddings (float64), computed in bounded memory.

    Args:
        embeddings: ``(n, d)`` embeddings.
        label_ids: ``(n,)`` category index of each row, in ``[0, num_categories)``.
        num_categories: number of categories.
        rows: indices of the rows to use (one modality); default all. Rows are gathered one chunk at a time,
            so the selection is never copied whole.
        chunk_size: rows converted to float64 at a time.

    Returns:
        ``(vectors, present)``: ``vectors`` is ``(num_categories, d)`` with unit rows for present categories and
        zero rows for the others; ``present`` is a boolean mask of the categories with at least one embedding.

    Raises:
        EShotInputError: a category's mean is the zero vector (its embeddings cancel out), so it has no direction.
    """
    dim = embeddings.shape[1]
    rows = np.arange(embeddings.shape[0]) if rows is None else np.asarray(rows)
    chunk = _auto_chunk_size(dim, chunk_size)
    row_ids = label_ids[rows]
    order = np.argsort(row_ids, kind="stable")
    sorted_ids = row_ids[order]
    sorted_rows = rows[order]
    # One positive factor for all rows keeps every mean's direction and every sum finite (embeddings near
    # 1e300 would overflow when summed, near 1e160 when squared for the norm).
    scale = _max_abs(embeddings, sorted_rows, chunk)
    sums = np.zeros((num_categories, dim), dtype=np.float64)
    for start in range(0, len(rows), chunk):
        ids = sorted_ids[start : start + chunk]
        block = np.asarray(embeddings[sorted_rows[start : start + chunk]], dtype=np.float64) / scale
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        sums[ids[starts]] += np.add.reduceat(block, starts, axis=0)
    counts = np.bincount(row_ids, minlength=num_categories)
    present = counts > 0
    means = sums[present] / counts[present, None]
    norms = np.linalg.norm(means, axis=1)  # means are within [-1, 1] (scaled below): no overflow
    degenerate = np.flatnonzero(norms == 0)
    if len(degenerate):
        which = np.flatnonzero(present)[degenerate]
        raise EShotInputError(
            f"the mean embedding of category index(es) {_row_list(which)} is the zero vector, so it has no "
            f"direction to compare queries with"
        )
    vectors = np.zeros((num_categories, dim), dtype=np.float64)
    vectors[present] = means / norms[:, None]
    return vectors, present


def true_class_ranks(
    embeddings: np.ndarray,
    label_ids: np.ndarray,
    vectors: np.ndarray,
    present: np.ndarray,
    rows: Optional[np.ndarray] = None,
    chunk_size: Optional[int] = None,
) -> np.ndarray:
    """Rank of each query's true category among the candidate categories (0 = first), pessimistic on ties.

    The rank is the number of other candidate categories whose similarity is >= the true category's, so the
    query is top-k correct iff ``rank < k``. Queries whose category has no class vector get rank
    ``np.iinfo(np.int64).max`` (never correct). Only ``chunk_size x num_candidates`` similarities exist at once.

    Args:
        embeddings: ``(n, d)`` raw embeddings; the queries are L2-normalised chunk by chunk, as in the protocol.
        label_ids: ``(n,)`` category index of each row.
        vectors: ``(num_categories, d)`` class vectors from `class_vectors`.
        present: ``(num_categories,)`` mask of the categories that have a class vector (the candidates).
        rows: indices of the query rows (one modality); default all. The result has one rank per query row.
        chunk_size: queries per chunk (default: from a 32 MiB budget).
    """
    rows = np.arange(embeddings.shape[0]) if rows is None else np.asarray(rows)
    candidates = np.flatnonzero(present)
    # position of each category among the candidates, -1 when it has no class vector
    position = np.full(present.shape[0], -1, dtype=np.int64)
    position[candidates] = np.arange(len(candidates))
    candidate_vectors = np.ascontiguousarray(vectors[candidates].T)  # (d, C)
    chunk = _auto_chunk_size(max(embeddings.shape[1], len(candidates)), chunk_size)
    ranks = np.full(len(rows), np.iinfo(np.int64).max, dtype=np.int64)
    for start in range(0, len(rows), chunk):
        pos = position[label_ids[rows[start : start + chunk]]]
        has_vector = pos >= 0
        if not has_vector.any():
            continue
        block = np.asarray(embeddings[rows[start : start + chunk][has_vector]], dtype=np.float64)
        block = unit_rows(block)
        sims = block @ candidate_vectors  # (chunk, C)
        true_sims = sims[np.arange(sims.shape[0]), pos[has_vector]]
        ranks[start + np.flatnonzero(has_vector)] = np.count_nonzero(sims >= true_sims[:, None], axis=1) - 1
    return ranks


def _normalise_k(k: Union[int, Iterable[int]]) -> Tuple[int, ...]:
    values = (k,) if isinstance(k, (int, np.integer)) else tuple(k)
    if not values:
        raise EShotInputError("k must name at least one cut-off, e.g. k=(1, 5)")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise EShotInputError(f"every k must be a positive integer, got {value!r}")
    return tuple(sorted({int(v) for v in values}))


def _mean_or_nan(values: np.ndarray) -> float:
    # math.fsum is exactly rounded, so the macro mean does not depend on the order of the categories
    return math.fsum(values.tolist()) / values.size if values.size else math.nan


def eshot_scores(
    embeddings: Any,
    labels: Any,
    modalities: Any,
    k: Union[int, Iterable[int]] = DEFAULT_K,
    categories: Optional[Sequence[Any]] = None,
    per_category: bool = False,
    chunk_size: Optional[int] = None,
) -> Dict[str, Any]:
    """EShot zero-shot accuracy in both directions (audio -> points and points -> audio).

    Args:
        embeddings: ``(n, d)`` array-like of embeddings, audio and point clouds mixed in any order.
        labels: ``n`` category names (str) or ids (int) of the rows.
        modalities: ``n`` strings, ``"audio"`` or ``"points"``.
        k: the top-k cut-offs to report (default ``(1, 5)``).
        categories: all category names in their fixed order; integer labels index into it. Defaults to the
            sorted distinct labels. Passing the dataset's names (``ds.features["category"].names``) makes the
            per-category keys names even when labels are ids.
        per_category: also return each direction's per-category accuracies and query counts.
        chunk_size: queries per chunk of the similarity matrix (default: a 32 MiB float64 budget).

    Returns:
        A flat dict; for each direction ``D`` in ``audio_to_points`` and ``points_to_audio``:

        - ``D_top{k}``: sample-weighted accuracy (correct queries / queries);
        - ``D_top{k}_macro``: mean over the direction's query categories of the per-category accuracy;
        - ``D_num_queries``, ``D_num_query_categories`` (categories with queries), ``D_num_class_vectors``;
        - ``D_missing_class_vectors``: sorted categories that have queries but no embedding in the opposite
          modality; their queries count as wrong (rank undefined);
        - with ``per_category=True``: ``D_per_category`` = ``{category: {"top{k}": acc, ..., "num_queries": n}}``
          for every category with queries, in category order.

        Plus ``num_audio``, ``num_points``, ``num_categories`` (categories with any embedding), ``embedding_dim``
        and ``k``.

    Tie rule: pessimistic, see the module docstring: among equal similarities the true category ranks last.
    """
    ks = _normalise_k(k)
    inputs = prepare_inputs(embeddings, labels, modalities, categories=categories, chunk_size=chunk_size)
    matrix = inputs.embeddings
    num_categories = len(inputs.categories)
    rows_of = {name: np.flatnonzero(inputs.modality_ids == i) for i, name in enumerate(MODALITIES)}
    vectors_of = {}
    for name, rows in rows_of.items():
        vectors_of[name] = class_vectors(
            matrix, inputs.label_ids, num_categories, rows=rows, chunk_size=chunk_size
        )

    micro: Dict[str, Any] = {}
    macro: Dict[str, Any] = {}
    details: Dict[str, Any] = {}
    for query_modality, class_modality in DIRECTIONS:
        prefix = direction_prefix(query_modality, class_modality)
        rows = rows_of[query_modality]
        query_ids = inputs.label_ids[rows]
        vectors, present = vectors_of[class_modality]
        ranks = true_class_ranks(matrix, inputs.label_ids, vectors, present, rows=rows, chunk_size=chunk_size)
        per_class_queries = np.bincount(query_ids, minlength=num_categories)
        query_categories = np.flatnonzero(per_class_queries)
        per_k: Dict[int, np.ndarray] = {}
        for cut in ks:
            correct = ranks < cut
            per_class_correct = np.bincount(query_ids, weights=correct, minlength=num_categories)
            per_k[cut] = per_class_correct[query_categories] / per_class_queries[query_categories]
            micro[f"{prefix}_top{cut}"] = float(np.count_nonzero(correct) / len(rows))
            macro[f"{prefix}_top{cut}_macro"] = _mean_or_nan(per_k[cut])
        details[f"{prefix}_num_queries"] = int(len(rows))
        details[f"{prefix}_num_query_categories"] = int(len(query_categories))
        details[f"{prefix}_num_class_vectors"] = int(np.count_nonzero(present))
        missing = query_categories[~present[query_categories]]
        details[f"{prefix}_missing_class_vectors"] = [inputs.categories[i] for i in missing]
        if per_category:
            details[f"{prefix}_per_category"] = {
                inputs.categories[c]: {
                    **{f"top{cut}": float(per_k[cut][j]) for cut in ks},
                    "num_queries": int(per_class_queries[c]),
                }
                for j, c in enumerate(query_categories)
            }
    result: Dict[str, Any] = {**micro, **macro, **details}
    result["num_audio"] = int(len(rows_of["audio"]))
    result["num_points"] = int(len(rows_of["points"]))
    result["num_categories"] = int(np.count_nonzero(np.bincount(inputs.label_ids, minlength=num_categories)))
    result["embedding_dim"] = int(matrix.shape[1])
    result["k"] = list(ks)
    return result
