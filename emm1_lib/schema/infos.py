"""Id lookups: the vectorised joins of grouping ids against infos tables.

A left join of a batch of ids against an infos table is `take(positions(ids))`. Positions come
from a dense id → row array when ids are compact (E-MM1 ids run to a few million: a few MB of
int32, one gather per batch) and from a sorted search otherwise, so hostile huge ids cannot
make us allocate a giant array. Ids with no infos row give null positions, hence null values:
rows are never dropped, and the nulls are counted for the report.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emm1_lib.errors import EMM1DataError
from emm1_lib.errors import raise_first
from emm1_lib.io.column_store import InMemoryColumn, MappedColumn
from emm1_lib.io.tables import iter_csv_batches, read_csv_table
from emm1_lib.schema import rules
from emm1_lib.schema.paths import join_media_paths, join_prefixed_paths

# A dense table costs 4 bytes per possible id; use it while that is at most this many times the rows (or ≤ 4 MiB).
_DENSE_FACTOR = 8
_DENSE_MIN_SLOTS = 1 << 20
# `infos/text.csv` as both the builder and `emm1 validate` read it (streamed, `iter_csv_batches`).
TEXT_COLUMNS = {"encord_text_id": pa.int64(), "caption": pa.string()}


def media_columns(modality: str) -> List[str]:
    """The required columns of `infos/{modality}.csv`: the id and the two path parts."""
    return [f"encord_{modality}_id", "save_folder", "file_name"]


def text_batches(path: str):
    """The record batches of `infos/text.csv` (ids and captions), one reader block at a time."""
    return iter_csv_batches(path, TEXT_COLUMNS, required=list(TEXT_COLUMNS))


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


def compact_dictionary(values) -> pa.DictionaryArray:
    """One dictionary array with the narrowest index type: E-MM1's folder/source/licence columns have a
    handful of values, so int8 codes take a quarter of the CSV reader's int32 (3 MB per million rows)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.unify_dictionaries().combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    for index_type in (pa.int8(), pa.int16()):
        if len(values.dictionary) <= np.iinfo(index_type.to_pandas_dtype()).max:
            return pa.DictionaryArray.from_arrays(values.indices.cast(index_type), values.dictionary)
    return values


@dataclass
class MediaInfo:
    """The infos table of one modality: id lookup, path parts and per-item provenance columns."""

    modality: str
    source: str
    lookup: IdLookup
    save_folder: pa.Array
    file_name: pa.Array
    extras: Dict[str, pa.Array]
    _prefixes: Dict[Tuple[str, str], pa.Array] = field(default_factory=dict, repr=False)

    @property
    def id_column(self) -> str:
        return f"encord_{self.modality}_id"

    @classmethod
    def read(cls, path: str, modality: str, extra_columns: Tuple[str, ...] = ()) -> "MediaInfo":
        """Read `infos/{modality}.csv`: `encord_{m}_id`, `save_folder`, `file_name`, and `extra_columns` if present."""
        id_column = f"encord_{modality}_id"
        low_cardinality = pa.dictionary(pa.int32(), pa.string())
        column_types = {id_column: pa.int64(), "save_folder": low_cardinality, "file_name": pa.string()}
        column_types.update({name: low_cardinality for name in extra_columns})
        table = read_csv_table(path, column_types, required=media_columns(modality))
        raise_first(rules.unsafe_path_parts(table, ["save_folder", "file_name"], path, id_column))
        return cls(
            modality=modality,
            source=path,
            lookup=IdLookup(table[id_column], path, id_column),
            save_folder=compact_dictionary(table["save_folder"]),
            file_name=table["file_name"].combine_chunks(),
            extras={name: compact_dictionary(table[name]) for name in extra_columns if name in table.column_names},
        )

    def file_paths(self, positions: pa.Array, root: str, folder: str) -> pa.Array:
        """`root/save_folder/folder/file_name` of the rows at `positions` (null positions give null)."""
        key = (root, folder)
        if key not in self._prefixes:  # `root/save_folder/folder/` once per distinct save_folder
            self._prefixes[key] = join_media_paths(root, self.save_folder.dictionary, folder, pa.scalar("", pa.string()))
        codes = self.save_folder.indices.take(positions)
        return join_prefixed_paths(self._prefixes[key], codes, self.file_name.take(positions))

    def extra(self, name: str, positions: pa.Array) -> pa.Array:
        """Values of a provenance column (e.g. `dataset_license`) at `positions`, as plain strings."""
        values = self.extras[name]
        return values.dictionary.take(values.indices.take(positions))

    def extra_names(self, name: str) -> List[str]:
        """The distinct values of a provenance column, sorted (ClassLabel names)."""
        return sorted(set(self.extras[name].dictionary.to_pylist()) - {None})

    def extra_codes(self, name: str, positions: pa.Array, names: Sequence[str]) -> pa.Array:
        """A provenance column at `positions` as int64 indices into `names` (null where a row has none)."""
        values = self.extras[name]
        index = {value: i for i, value in enumerate(names)}
        mapping = pa.array([index.get(v, None) for v in values.dictionary.to_pylist()], pa.int64())
        return mapping.take(values.indices.take(positions))


@dataclass
class TextInfo:
    """`infos/text.csv`: captions by `encord_text_id`."""

    source: str
    lookup: IdLookup
    captions: Union[InMemoryColumn, MappedColumn]

    @classmethod
    def read(cls, path: str, spill_folder: Optional[str] = None) -> "TextInfo":
        """Read the ids and captions; with `spill_folder`, the captions go to a memory-mapped file there.

        Streamed block by block either way: a block's ids join the lookup's chunks, its captions the store.
        """
        batches = text_batches(path)
        ids: List[pa.Array] = []

        def captions():
            for batch in batches:
                ids.append(batch.column("encord_text_id"))
                yield batch.column("caption")

        if spill_folder is None:
            store = InMemoryColumn(captions(), pa.string())
        else:
            store = MappedColumn.write(captions(), pa.string(), spill_folder, prefix="emm1-captions-")
        return cls(path, IdLookup(pa.chunked_array(ids, pa.int64()), path, "encord_text_id"), store)

    def caption_at(self, positions: pa.Array) -> pa.Array:
        """The captions of the rows at `positions` (null positions give null)."""
        return self.captions.take(positions)
