"""Id lookups: the vectorised joins of grouping ids against infos tables.

A left join of a batch of ids against an infos table is `take(positions(ids))`. Positions come
from a dense id → row array when ids are compact (E-MM1 ids run to a few million: a few MB of
int32, one gather per batch) and from a sorted search otherwise, so hostile huge ids cannot
make us allocate a giant array. Ids with no infos row give null positions, hence null values:
rows are never dropped, and the nulls are counted for the report.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emm1_lib.errors import EMM1DataError
from emm1_lib.errors import raise_first
from emm1_lib.schema import rules

# A dense table costs 4 bytes per possible id; use it while that is at most this many times the rows (or ≤ 4 MiB).
_DENSE_FACTOR = 8
_DENSE_MIN_SLOTS = 1 << 20


def _to_int64_numpy(ids) -> np.ndarray:
    """int64 numpy view of an Arrow integer column, nulls as -1 (never a valid id)."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks() if ids.num_chunks != 1 else ids.chunk(0)
    if ids.type != pa.int64():
        ids = ids.cast(pa.int64())
    if ids.null_count:
        ids = pc.fill_null(ids, -1)
    return ids.to_numpy(zero_copy_only=False)


def _chunks(ids) -> List[pa.Array]:
    if isinstance(ids, pa.ChunkedArray):
        return list(ids.chunks)
    return [ids if isinstance(ids, pa.Array) else pa.array(ids)]


class IdLookup:
    """Row positions of ids in one infos table (ids must be unique, non-negative integers)."""

    def __init__(self, ids, source: str, id_column: str):
        # Chunk by chunk: a combined copy of 6.7 M text ids (54 MB) would add to the peak memory.
        chunks = [_to_int64_numpy(chunk) for chunk in _chunks(ids)]
        self.source = source
        self.id_column = id_column
        self.num_rows = sum(len(chunk) for chunk in chunks)
        self._ids = ids
        if any(len(chunk) and chunk.min() < 0 for chunk in chunks):
            self._refuse()
        self.max_id = max((int(chunk.max()) for chunk in chunks if len(chunk)), default=-1)
        self._dense: Optional[np.ndarray] = None
        self._sorted_ids: Optional[np.ndarray] = None
        self._order: Optional[np.ndarray] = None
        if self.max_id + 1 <= max(_DENSE_FACTOR * self.num_rows, _DENSE_MIN_SLOTS):
            self._dense = np.full(self.max_id + 1, -1, dtype=np.int32)
            offset = 0
            for chunk in chunks:
                self._dense[chunk] = np.arange(offset, offset + len(chunk), dtype=np.int32)
                offset += len(chunk)
            if int(np.count_nonzero(self._dense >= 0)) != self.num_rows:
                self._refuse()
        else:
            values = np.concatenate(chunks) if len(chunks) != 1 else chunks[0]
            self._order = np.argsort(values, kind="stable").astype(np.int64)
            self._sorted_ids = values[self._order]
            if self.num_rows > 1 and bool(np.any(self._sorted_ids[1:] == self._sorted_ids[:-1])):
                self._refuse()
        self._ids = None  # only the error path needs them

    def _refuse(self) -> None:
        """Building the lookup found a missing, negative or repeated id: raise the rule's first violation."""
        ids = self._ids if isinstance(self._ids, (pa.Array, pa.ChunkedArray)) else pa.array(self._ids, pa.int64())
        raise_first(rules.infos_ids(ids, self.source, self.id_column))
        raise EMM1DataError(f"{self.source}: the {self.id_column} column cannot be indexed.", file=self.source)

    def positions(self, ids) -> pa.Array:
        """int32 row positions of `ids` in the infos table; null where an id has no row (or is null)."""
        query = _to_int64_numpy(ids)
        if self._dense is not None:
            # One clipped gather, then unknown ids (nulls are -1, huge ids past the table) get -1.
            if len(self._dense):
                out = self._dense.take(query, mode="clip")
                outside = (query < 0) | (query > self.max_id)
                if outside.any():
                    out[outside] = -1
            else:
                out = np.full(len(query), -1, dtype=np.int32)
        else:
            slots = np.searchsorted(self._sorted_ids, query)
            slots = np.minimum(slots, max(self.num_rows - 1, 0))
            if self.num_rows:
                hit = self._sorted_ids[slots] == query
                out = np.where(hit, self._order[slots], -1).astype(np.int32)
            else:
                out = np.full(len(query), -1, dtype=np.int32)
        missing = out < 0
        return pa.array(out, mask=missing) if missing.any() else pa.array(out)


@dataclass
class DanglingCount:
    """How many ids of one column found no infos row, with the first few (in data order) for the message.

    Counts of the parts of one read (e.g. `num_proc` jobs, each a run of consecutive shards) combine with
    `merge`, taken in data order, into the count of the whole read; `to_dict`/`from_dict` carry them between
    processes.
    """

    column: str
    infos_file: str
    count: int = 0
    examples: List[int] = field(default_factory=list)

    MAX_EXAMPLES = 5

    def add(self, ids, positions: pa.Array) -> None:
        missing = pc.and_(pc.is_null(positions), pc.is_valid(ids))
        n = pc.sum(missing).as_py() or 0
        if n:
            self.count += n
            if len(self.examples) < self.MAX_EXAMPLES:
                self.examples.extend(
                    pc.filter(ids, missing).slice(0, self.MAX_EXAMPLES - len(self.examples)).to_pylist()
                )

    def merge(self, later: "DanglingCount") -> None:
        """Add the count of a part read after this one (same column and infos file)."""
        if (later.column, later.infos_file) != (self.column, self.infos_file):
            raise ValueError(f"cannot merge the count of {later.column} ({later.infos_file}) into "
                             f"{self.column} ({self.infos_file})")
        self.count += later.count
        self.examples.extend(later.examples[: self.MAX_EXAMPLES - len(self.examples)])

    def to_dict(self) -> Dict[str, object]:
        return {"column": self.column, "infos_file": self.infos_file, "count": self.count,
                "examples": list(self.examples)}

    @classmethod
    def from_dict(cls, data: Dict[str, object]) -> "DanglingCount":
        return cls(str(data["column"]), str(data["infos_file"]), int(data["count"]),
                   [int(e) for e in data["examples"]])
