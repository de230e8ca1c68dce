# Copyright 2025 The E-MM1 contributors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""EShot: zero-shot audio <-> point-cloud classification accuracy (E-MM1 benchmark)."""

import os
from typing import Any
from typing import Dict
from typing import List
from typing import Optional

import datasets
import numpy as np

import evaluate
from emm1_lib.evaluation.eshot_protocol import DEFAULT_K
from emm1_lib.evaluation.eshot_protocol import EShotInputError
from emm1_lib.evaluation.eshot_protocol import as_embedding_matrix
from emm1_lib.evaluation.eshot_protocol import check_finite_nonzero
from emm1_lib.evaluation.eshot_protocol import eshot_scores
from emm1_lib.evaluation.eshot_protocol import label_kind
from emm1_lib.evaluation.eshot_protocol import modality_indices


_DESCRIPTION = """
EShot is the zero-shot classification benchmark of the E-MM1 dataset: 112 categories, about 3,500 audio clips and
point clouds, evaluated in both directions (audio -> point clouds and point clouds -> audio).

Protocol: every sample is embedded; for each category the class vector of a direction is the mean of the category's
embeddings in the opposite modality, L2-normalised; queries are L2-normalised, the similarity is the dot product and a
query is top-k correct when its category is among the k most similar class vectors. The metric reports, per
direction, the sample-weighted accuracy (correct queries / queries) and the macro accuracy (mean of the per-category
accuracies), at every requested k.

Ties count against the query: its rank is the number of other categories whose similarity is greater than or equal to
that of its own category. On inputs without ties this equals ranking by `argsort(sim)[:, ::-1]`, the released loop.
"""


_KWARGS_DESCRIPTION = """
Args:
    embeddings (`list` of vectors, or a 2-D array of shape (n, d)): one embedding per sample; audio and point clouds
        mixed, in any order, all with the same dimension d. Stored as float32 when given as float32, float64
        otherwise; the protocol itself always runs in float64.
    labels (`list` of `str` or `int`): category name, or category id (e.g. the `category` ClassLabel of the `eshot`
        dataset), of each sample. All names or all ids.
    modalities (`list` of `str`): `"audio"` or `"points"` for each sample.
    k (`int` or `list` of `int`, optional): top-k cut-offs to report. Defaults to `[1, 5]`.
    categories (`list` of `str`, optional): all category names in id order; needed to report names when labels are
        ids (pass `ds.features["category"].names`). Defaults to the sorted distinct labels.
    per_category (`bool`, optional): also return the per-category accuracies. Defaults to `False`.
    chunk_size (`int`, optional): queries per block of the similarity matrix (memory bound). Default: automatic.

Returns:
    For each direction D in `audio_to_points` and `points_to_audio`:
    D_top1, D_top5 (`float`): sample-weighted top-k accuracy, in [0, 1] (one key per k).
    D_top1_macro, D_top5_macro (`float`): mean of the per-category top-k accuracies, in [0, 1].
    D_num_queries (`int`), D_num_query_categories (`int`), D_num_class_vectors (`int`): counts.
    D_missing_class_vectors (`list`): categories with queries but no sample in the opposite modality; their queries
        count as wrong.
    D_per_category (`dict`, only with per_category=True): {category: {"top1": ..., "top5": ..., "num_queries": ...}}.
    num_audio, num_points, num_categories, embedding_dim (`int`) and k (`list` of `int`).

Examples:

    >>> import evaluate
    >>> eshot = evaluate.load("metrics/eshot")
    >>> results = eshot.compute(
    ...     embeddings=[[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.2, 0.8]],
    ...     labels=["bird", "car", "bird", "car"],
    ...     modalities=["audio", "audio", "points", "points"],
    ...     k=1,
    ... )
    >>> print(results["audio_to_points_top1"], results["points_to_audio_top1"])
    1.0 1.0
"""


_CITATION = """
@misc{emm1_2025,
  title = {E-MM1: The World's Largest Multimodal Dataset},
  author = {{Encord}},
  year = {2025},
  howpublished = {\\url{https://data.encord.com/e-mm1/explorer}},
  note = {EShot: zero-shot audio <-> point-cloud classification benchmark}
}
"""


# The embeddings are stored as one binary value per row: a one-byte dtype code followed by the vector's raw
# little-endian bytes. `evaluate` encodes inputs row by row into an Arrow cache; as a list of floats a
# 3,500 x 1,024 input costs ~0.7 s (each float becomes a Python object), as bytes it costs a few milliseconds, and
# the dtype code keeps float32 and float64 inputs exact (see benchmarks/eshot_metric.py).
_DTYPE_CODES = {ord("f"): np.dtype("<f4"), ord("d"): np.dtype("<f8")}


def _features(label_type: str) -> datasets.Features:
    return datasets.Features(
        {
            "embeddings": datasets.Value("binary"),
            "labels": datasets.Value(label_type),
            "modalities": datasets.Value("string"),
        }
    )


def _pack_embeddings(matrix: np.ndarray) -> List[bytes]:
    """One `bytes` per row: dtype code + raw little-endian values (float32 kept, everything else float64)."""
    code = ord("f") if matrix.dtype == np.float32 else ord("d")
    values = np.ascontiguousarray(matrix, dtype=_DTYPE_CODES[code])
    packed = np.empty((values.shape[0], 1 + values.shape[1] * values.itemsize), dtype=np.uint8)
    packed[:, 0] = code
    packed[:, 1:] = values.view(np.uint8).reshape(values.shape[0], -1)
    return packed.view(np.dtype((np.void, packed.shape[1]))).ravel().tolist()


def _unpack_embeddings(rows: List[bytes]) -> np.ndarray:
    """Inverse of `_pack_embeddings` over all stored rows (possibly from several batches or processes)."""
    num_rows = len(rows)
    if num_rows == 0:
        raise EShotInputError("no embeddings were added: EShot needs embeddings of both modalities")
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=num_rows)
    codes = np.fromiter((row[0] for row in rows), dtype=np.int64, count=num_rows)
    itemsizes = np.array([_DTYPE_CODES[c].itemsize if c in _DTYPE_CODES else 0 for c in range(256)])[codes]
    if not itemsizes.all():
        raise EShotInputError("stored embeddings are corrupt (unknown dtype code); recompute the metric")
    dims = (lengths - 1) // itemsizes
    mismatch = np.flatnonzero(dims != dims[0])
    if len(mismatch):
        row = int(mismatch[0])
        raise EShotInputError(
            f"embeddings have different dimensions: row 0 has {dims[0]} values, row {row} has {dims[row]} "
            f"(rows are numbered in the order they were added, process 0 first)"
        )
    if (codes == codes[0]).all():
        blob = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(num_rows, -1)
        return np.ascontiguousarray(blob[:, 1:]).view(_DTYPE_CODES[int(codes[0])])
    matrix = np.empty((num_rows, int(dims[0])), dtype=np.float64)
    for code, dtype in _DTYPE_CODES.items():
        where = np.flatnonzero(codes == code)
        if len(where):
            blob = np.frombuffer(b"".join(rows[i] for i in where), dtype=np.uint8).reshape(len(where), -1)
            matrix[where] = np.ascontiguousarray(blob[:, 1:]).view(dtype)
    return matrix


def _as_list(values: Any) -> Any:
    """Plain Python values for evaluate's row encoder (numpy arrays, `datasets` Columns, pandas Series...)."""
    if values is None or isinstance(values, (list, tuple, str, bytes)):
        return values
    if isinstance(values, np.ndarray):
        return values.tolist()
    return np.asarray(list(values)).tolist()


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EShot(evaluate.Metric):
    """EShot zero-shot accuracy, audio -> point clouds and point clouds -> audio, top-k, micro and macro."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # labels as names (str) or as ClassLabel ids (int)
            features=[_features("string"), _features("int64")],
            reference_urls=["https://data.encord.com/e-mm1/explorer"],
            license="apache-2.0",
        )

    def add_batch(self, *, embeddings=None, labels=None, modalities=None, **kwargs):
        """Add a batch of embeddings with their labels and modalities (rows are validated here, before caching).

        Example:

        ```py
        >>> import evaluate
        >>> eshot = evaluate.load("metrics/eshot")
        >>> eshot.add_batch(embeddings=[[1.0, 0.0]], labels=["bird"], modalities=["audio"])
        >>> eshot.add_batch(embeddings=[[0.9, 0.1]], labels=["bird"], modalities=["points"])
        >>> eshot.compute(k=1)["audio_to_points_top1"]
        1.0
        ```
        """
        if embeddings is None:
            return super().add_batch(embeddings=embeddings, labels=labels, modalities=modalities, **kwargs)
        first_row = len(self)
        matrix = as_embedding_matrix(embeddings, first_row=first_row)
        labels = _as_list(labels)
        modalities = _as_list(modalities)
        for name, column in (("labels", labels), ("modalities", modalities)):
            if column is None or isinstance(column, (str, bytes)) or len(column) != matrix.shape[0]:
                size = "missing" if column is None else f"{1 if isinstance(column, (str, bytes)) else len(column)}"
                raise EShotInputError(
                    f"{name} must give one value per embedding: {matrix.shape[0]} embeddings, {name} {size}"
                )
        modality_indices(modalities, matrix.shape[0], first_row=first_row)
        check_finite_nonzero(matrix, first_row=first_row)
        self._check_label_kind(label_kind(labels, first_row=first_row))
        return super().add_batch(
            embeddings=_pack_embeddings(matrix), labels=labels, modalities=modalities, **kwargs
        )

    def add(self, *, embeddings=None, labels=None, modalities=None, **kwargs):
        """Add one sample: its embedding (a vector), label (name or id) and modality ("audio" or "points").

        Example:

        ```py
        >>> import evaluate
        >>> eshot = evaluate.load("metrics/eshot")
        >>> eshot.add(embeddings=[1.0, 0.0], labels="bird", modalities="audio")
        ```
        """
        if embeddings is None:
            return super().add(embeddings=embeddings, labels=labels, modalities=modalities, **kwargs)
        first_row = len(self)
        if np.ndim(embeddings) != 1:
            raise EShotInputError(
                f"add() takes one embedding vector, got an array of shape {np.shape(embeddings)}; use add_batch()"
            )
        matrix = as_embedding_matrix(np.asarray(embeddings)[None, :], first_row=first_row)
        modality_indices([modalities], 1, first_row=first_row)
        check_finite_nonzero(matrix, first_row=first_row)
        labels = labels.item() if isinstance(labels, np.generic) else labels  # one label: a name or an id
        self._check_label_kind(label_kind([labels], first_row=first_row))
        packed = _pack_embeddings(matrix)[0]
        return super().add(embeddings=packed, labels=labels, modalities=modalities, **kwargs)

    def _check_label_kind(self, kind: str) -> None:
        """All rows of one computation hold names, or all hold ids: evaluate's features would convert the others."""
        stored = getattr(self, "_label_kind", None)
        if stored is not None and stored != kind:
            raise EShotInputError(
                f"labels must be all category names (str) or all category ids (int): earlier rows hold {stored}, "
                f"this batch holds {kind}"
            )
        self._label_kind = kind

    def compute(self, **kwargs):
        """Compute the scores of everything added (see the module's description); the metric is reusable after
        an error, as after a result."""
        try:
            return super().compute(**kwargs)
        except Exception:
            self._discard_rows()
            raise
        finally:
            self._label_kind = None

    def _discard_rows(self) -> None:
        """Forget what was added and release its cache files and locks, as evaluate does after a result.

        Without this a failed computation left evaluate's choice of label type behind, and the next call
        with the other type failed ("invalid literal for int()").
        """
        self.data = None
        pending = list(zip(getattr(self, "filelocks", None) or [], getattr(self, "file_paths", None) or []))
        if self.writer is not None and self.cache_file_name:  # failed before the rows were finalized
            pending.append((self.filelock, self.cache_file_name))
        self.writer = None
        self.buf_writer = None
        for filelock, file_path in reversed(pending):
            if file_path and os.path.exists(file_path):
                os.remove(file_path)
            if filelock is not None:
                filelock.release()
        self.filelocks, self.file_paths = [], []
        self.selected_feature_format = None
        self.cache_file_name = None
        self.filelock = None

    def _compute(
        self,
        embeddings: List[bytes],
        labels: List[Any],
        modalities: List[str],
        k: Any = DEFAULT_K,
        categories: Optional[List[str]] = None,
        per_category: bool = False,
        chunk_size: Optional[int] = None,
    ) -> Dict[str, Any]:
        return eshot_scores(
            _unpack_embeddings(embeddings),
            labels,
            modalities,
            k=k,
            categories=categories,
            per_category=per_category,
            chunk_size=chunk_size,
        )
