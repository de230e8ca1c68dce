"""The infos tables of a split: media rows (ids, provenance, path parts) and captions, read once and looked up by id.

`MediaInfo` holds one `infos/{modality}.csv` with an `IdLookup` (`schema.ids`) and builds media paths
with the path formula (`schema.paths`); `TextInfo` holds the captions, in memory or in an on-disk
column store (`io.column_store`).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa

from emm1_lib.errors import raise_first
from emm1_lib.io import table_cache
from emm1_lib.io.column_store import InMemoryColumn, MappedColumn, chunk_bounds
from emm1_lib.io.tables import coalesce_batches, iter_csv_batches, read_csv_table
from emm1_lib.schema import rules
from emm1_lib.schema.ids import IdLookup
from emm1_lib.schema.paths import join_media_paths, join_prefixed_paths

# `infos/text.csv` as both the builder and `emm1 validate` read it (streamed, `iter_csv_batches`).
TEXT_COLUMNS = {"encord_text_id": pa.int64(), "caption": pa.string()}
# Captions are stored (cache entry, on-disk column) in record batches of about this size: a 100k-row gather
# of captions listed in order then reads one or two of them, whatever block size the CSV reader uses.
_STORED_BATCH_BYTES = 4 << 20
# Cache entries (`io.table_cache`). A media table's entry is read whole and LZ4 is cheap on its 0.3 GB; decompressed,
# each column gets buffers of its own, so the id column is freed once the lookup is built (an uncompressed entry is
# read as one body, which the other columns keep whole). The captions' entry is read a batch at a time and left
# plain: LZ4 on 1.25 GB of captions took ~3 s of a core, the first preparation's longest thread
# (docs/performance.md, "The infos cache").
_MEDIA_ENTRY_CODEC = "lz4"
_CAPTIONS_ENTRY_CODEC = None


def media_columns(modality: str) -> List[str]:
    """The required columns of `infos/{modality}.csv`: the id and the two path parts."""
    return [f"encord_{modality}_id", "save_folder", "file_name"]


def text_batches(path: str):
    """The record batches of `infos/text.csv` (ids and captions), one reader block at a time."""
    return iter_csv_batches(path, TEXT_COLUMNS, required=list(TEXT_COLUMNS))


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
    def read(cls, path: str, modality: str, extra_columns: Tuple[str, ...] = (),
             cache_folder: Optional[str] = None) -> "MediaInfo":
        """Read `infos/{modality}.csv`: `encord_{m}_id`, `save_folder`, `file_name`, and `extra_columns` if present.

        With `cache_folder`, a checked read is kept there in Arrow form (`io.table_cache`) and later reads of
        the unchanged file read it instead of parsing.
        """
        what = f"media-info {modality} {sorted(extra_columns)}"
        with table_cache.locked(cache_folder, path, what):
            cached = table_cache.open_entry(cache_folder, path, what)
            if cached is not None:
                return cls._from_table(table_cache.read_entry(cached), path, modality)
            return cls._parse(path, modality, extra_columns, cache_folder, what)

    @classmethod
    def _parse(cls, path: str, modality: str, extra_columns: Tuple[str, ...], cache_folder: Optional[str],
               what: str) -> "MediaInfo":
        stamp = table_cache.source_stamp(path) if table_cache.cacheable(cache_folder, path) else None
        id_column = f"encord_{modality}_id"
        low_cardinality = pa.dictionary(pa.int32(), pa.string())
        column_types = {id_column: pa.int64(), "save_folder": low_cardinality, "file_name": pa.string()}
        column_types.update({name: low_cardinality for name in extra_columns})
        # Streamed, not read whole: the whole-table reader holds every block's parse state (the URLs of
        # image.csv's file_id included) until the end, ~0.5 GB for the real image.csv, beside the captions' parse.
        chunks: Dict[str, List[pa.Array]] = {}
        for batch in iter_csv_batches(path, column_types, required=media_columns(modality)):
            for name in batch.schema.names:
                chunks.setdefault(name, []).append(batch.column(name))
        if not chunks:  # a header-only file: the whole-table reader gives its typed, empty columns
            table = read_csv_table(path, column_types, media_columns(modality))
            chunks = {name: [table[name].combine_chunks()] for name in table.column_names}
        # One column at a time, its blocks dropped as soon as it is whole: the peak holds the blocks and one
        # column's copy (~100 MB for video.csv's file names), not a copy of every column at once.
        columns = {}
        for name in [id_column, "save_folder", "file_name"] + [n for n in extra_columns if n in chunks]:
            parts = chunks.pop(name)
            combined = pa.chunked_array(parts, column_types[name])
            del parts
            plain = name in (id_column, "file_name")
            columns[name] = combined.combine_chunks() if plain else compact_dictionary(combined)
            del combined
        chunks.clear()
        table = pa.table(columns)
        raise_first(rules.unsafe_path_parts(table, ["save_folder", "file_name"], path, id_column))
        info = cls._from_table(table, path, modality)
        del table
        if stamp is not None:
            batch = pa.record_batch(list(columns.values()), names=list(columns))
            table_cache.write_entry(cache_folder, path, what, batch.schema, [batch], stamp, _MEDIA_ENTRY_CODEC)
        return info

    @classmethod
    def _from_table(cls, table: pa.Table, path: str, modality: str) -> "MediaInfo":
        """From the columns `read` keeps: the id, `save_folder` and `file_name`, then the provenance columns."""
        id_column = f"encord_{modality}_id"

        def single(name: str) -> pa.Array:
            column = table[name]
            return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()

        return cls(
            modality=modality,
            source=path,
            lookup=IdLookup(table[id_column], path, id_column),
            save_folder=single("save_folder"),
            file_name=single("file_name"),
            extras={name: single(name) for name in table.column_names[3:]},
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
    def read(cls, path: str, spill_folder: Optional[str] = None, cache_folder: Optional[str] = None) -> "TextInfo":
        """Read the ids and captions; with `spill_folder`, the captions go to an Arrow file there.

        Streamed block by block either way: a block's ids join the lookup's chunks, its captions the store.
        With `cache_folder` (a local file), that file is a cache entry there (`io.table_cache`)
        instead of a private one: later reads of the unchanged file, in any process, map it without parsing.
        """
        what = "text-info captions+ids"
        with table_cache.locked(cache_folder, path, what):
            cached = table_cache.open_entry(cache_folder, path, what)
            if cached is not None:
                return cls._from_entry(cached, path)
            return cls._parse(path, spill_folder, cache_folder, what)

    @classmethod
    def _parse(cls, path: str, spill_folder: Optional[str], cache_folder: Optional[str], what: str) -> "TextInfo":
        ids: List[pa.Array] = []
        if table_cache.cacheable(cache_folder, path):
            stamp = table_cache.source_stamp(path)
            schema = pa.schema([("values", pa.string()), ("encord_text_id", pa.int64())])
            lengths: List[int] = []

            def entry_batches():
                for b in coalesce_batches(text_batches(path), _STORED_BATCH_BYTES):
                    ids.append(b.column("encord_text_id"))  # kept as they stream by: the entry is not read back
                    lengths.append(b.num_rows)
                    yield pa.record_batch([b.column("caption"), b.column("encord_text_id")], schema=schema)

            written = table_cache.write_entry(cache_folder, path, what, schema, entry_batches(), stamp,
                                               _CAPTIONS_ENTRY_CODEC)
            if written is not None:
                lookup = IdLookup(pa.chunked_array(ids, pa.int64()), path, "encord_text_id")
                return cls(path, lookup, MappedColumn(written, pa.string(), chunk_bounds(lengths), owned=False))
            ids.clear()
        batches = coalesce_batches(text_batches(path), _STORED_BATCH_BYTES)

        def captions():
            for batch in batches:
                ids.append(batch.column("encord_text_id"))
                yield batch.column("caption")

        if spill_folder is None:
            store = InMemoryColumn(captions(), pa.string())
        else:
            store = MappedColumn.write(captions(), pa.string(), spill_folder, prefix="emm1-captions-")
        return cls(path, IdLookup(pa.chunked_array(ids, pa.int64()), path, "encord_text_id"), store)

    @classmethod
    def _from_entry(cls, entry: str, path: str) -> "TextInfo":
        """Captions read from a cache entry (column 0, gathered a batch at a time), ids looked up from column 1."""
        ids = table_cache.column_of_batches(entry, 1, lambda ids: ids)
        lookup = IdLookup(pa.chunked_array(ids, pa.int64()), path, "encord_text_id")
        # The batches' lengths from the ids: asking the reader for whole batches would decompress every caption.
        bounds = chunk_bounds(len(chunk) for chunk in ids)
        return cls(path, lookup, MappedColumn(entry, pa.string(), bounds, owned=False))

    def caption_at(self, positions: pa.Array) -> pa.Array:
        """The captions of the rows at `positions` (null positions give null)."""
        return self.captions.take(positions)
