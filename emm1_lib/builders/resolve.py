"""`resolve`: turn a loaded E-MM1 export (relative `*_file_path` strings) back into what the builders give
(for phase 1, the builders' layout with `file_path_columns=True`: the export keeps the path columns).

The export (`emm1 export`) stores each media path relative to the data root, so stock `datasets`
loads it without this project. `resolve(ds, root)` joins the root back with the same path rule as
the builders (`schema.paths`) and adds the decoding media columns with the same features and the
same checks, the outside-root check included, on `Dataset`, `IterableDataset` and their dicts.

An export with the media inside (`emm1 export --embed-media`) already has `image`/`audio`/`video`/`points`
columns of `{bytes, path}` (stock `Image`/`Audio`/`Video`, a plain struct for points): `resolve(ds)` casts
them to the project's decoding features, no root needed; with `root`, the items published without bytes
(licence, missing file) are read from `root/path`. Without `root` their stored paths are never opened: they
are missing media (`on_missing_media`: `UnembeddedMediaError` naming the column and path, or None), and
for a `Dataset` resolve() counts them up front (`UnembeddedMediaWarning`).
"""
import os
import sys
import warnings
from typing import Any
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple
from typing import Union

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from datasets.table import cast_table_to_features

from emm1_lib.io.fs import normalize_root
from emm1_lib.media.features import media_feature
from emm1_lib.schema.layout import MODALITIES
from emm1_lib.schema.layout import PATH_SUFFIX
from emm1_lib.schema.layout import PHASE2_ROLES
from emm1_lib.errors import UnembeddedMediaWarning
from emm1_lib.errors import raise_first
from emm1_lib.schema.paths import join_under_root
from emm1_lib.schema.rules import stored_media_paths

AnyDataset = Union[datasets.Dataset, datasets.IterableDataset, datasets.DatasetDict, datasets.IterableDatasetDict]


def _media_columns(column_names: Sequence[str], modalities: Optional[Sequence[str]]) -> Tuple[bool, List[str]]:
    """(is a phase-2 layout, media columns to add) for the columns of an export."""
    phase2 = all(f"{role}{PATH_SUFFIX}" in column_names and f"{role}_modality" in column_names for role in PHASE2_ROLES)
    if phase2:
        wanted = list(modalities) if modalities else list(MODALITIES)
    else:
        wanted = [m for m in MODALITIES if f"{m}{PATH_SUFFIX}" in column_names]
        if modalities:
            wanted = [m for m in wanted if m in modalities]
    unknown = [m for m in (modalities or ()) if m not in MODALITIES]
    if unknown:
        raise ValueError(f"modalities={list(modalities)}: unknown {unknown}; choose from {list(MODALITIES)}.")
    return phase2, wanted


def resolved_features(
    features: datasets.Features,
    decode: bool = True,
    on_missing_media: str = "error",
    media_options: Optional[Dict[str, dict]] = None,
    modalities: Optional[Sequence[str]] = None,
    media_root: Optional[str] = None,
) -> datasets.Features:
    """The features of a resolved export: the export's plus decoding media columns, in builder order.

    `media_root`: local media must resolve (through symlinks) under it, as in the builders' features.
    """
    clash = [m for m in MODALITIES if m in features]
    if clash:
        raise ValueError(f"Columns {clash} already exist: this dataset is already resolved (or not an E-MM1 export).")
    if not any(name.endswith(PATH_SUFFIX) for name in features):
        raise ValueError(f"No *{PATH_SUFFIX} column in {list(features)}: not an E-MM1 export.")
    phase2, media = _media_columns(list(features), modalities)
    options = media_options or {}

    def feature(m: str):
        return media_feature(m, decode=decode, on_missing_media=on_missing_media, media_root=media_root,
                             **options.get(m, {}))

    out: Dict[str, Any] = {}
    for name, value in features.items():
        out[name] = value
        if not phase2 and name.endswith(PATH_SUFFIX) and name[: -len(PATH_SUFFIX)] in media:
            out[name[: -len(PATH_SUFFIX)]] = feature(name[: -len(PATH_SUFFIX)])
    if phase2:
        out.update({m: feature(m) for m in media})
    return datasets.Features(out)


def _resolve_table(table: pa.Table, indices: List[int], root: str, features: datasets.Features) -> pa.Table:
    """Arrow batch function of `resolve`: absolute paths, media columns from them, cast to `features`."""
    columns: Dict[str, Any] = {}
    for name in table.column_names:
        column = table[name]
        if name.endswith(PATH_SUFFIX):
            raise_first(stored_media_paths(column, f"resolve: column {name}", indices))
            column = join_under_root(root, column)
        columns[name] = column
    phase2 = all(f"{role}_modality" in columns for role in PHASE2_ROLES)
    for m in features:
        if m not in MODALITIES or m in columns:
            continue
        if phase2:
            null = pa.scalar(None, pa.string())
            columns[m] = pc.if_else(
                pc.equal(columns["paired_modality"], m),
                columns["paired_file_path"],
                pc.if_else(pc.equal(columns["annotated_modality"], m), columns["annotated_file_path"], null),
            )
        else:
            columns[m] = columns[f"{m}{PATH_SUFFIX}"]
    return cast_table_to_features(pa.table({name: columns[name] for name in features}), features)


def _absolute_path_columns(batch: Dict[str, list], indices: List[int], root: str) -> Dict[str, list]:
    """`batch` with its `*_file_path` columns checked (the stored-path rules) and made absolute under `root`."""
    columns = dict(batch)
    for name, values in batch.items():
        if name.endswith(PATH_SUFFIX):
            stored = pa.array(values, pa.string())
            raise_first(stored_media_paths(stored, f"resolve: column {name}", indices))
            columns[name] = join_under_root(root, stored).to_pylist()
    return columns


def _resolve_batch(batch: Dict[str, list], indices: List[int], root: str, features: datasets.Features) -> Dict[str, list]:
    """Python batch function of `resolve` for streaming: the same as `_resolve_table` on lists.

    (`datasets` 3.6 does not decode the rows of an Arrow-formatted streaming map, so streaming
    goes through Python batches; media values are path strings that the features encode.)
    """
    columns = _absolute_path_columns(batch, indices, root)
    phase2 = all(f"{role}_modality" in columns for role in PHASE2_ROLES)
    for m in features:
        if m not in MODALITIES or m in batch:
            continue
        if phase2:
            columns[m] = [
                paired if paired_m == m else annotated if annotated_m == m else None
                for paired, annotated, paired_m, annotated_m in zip(
                    columns["paired_file_path"], columns["annotated_file_path"],
                    columns["paired_modality"], columns["annotated_modality"],
                )
            ]
        else:
            columns[m] = columns[f"{m}{PATH_SUFFIX}"]
    return {name: columns[name] for name in features}


def _embedded_media(features: datasets.Features) -> List[str]:
    """Media columns of an export with embedded media: `{bytes, path}` storage, not yet the project's features."""
    out = []
    for m in MODALITIES:
        feature = features.get(m)
        if feature is None:
            continue
        if type(feature).__name__.startswith("EMM1"):
            raise ValueError(f"Column {m!r} is already {type(feature).__name__}: this dataset is already resolved.")
        stock = isinstance(feature, (datasets.Image, datasets.Audio)) or type(feature).__name__ == "Video"
        plain = isinstance(feature, dict) and set(feature) == {"bytes", "path"}
        if not (stock or plain):
            raise ValueError(f"Column {m!r} is {feature!r}, not media storage {{bytes, path}}: not an E-MM1 export.")
        out.append(m)
    return out


def _absolute_media_table(table: pa.Table, indices: List[int], root: str, media: Sequence[str]) -> pa.Table:
    """Arrow batch function for embedded exports with a root: relative paths (columns and media structs) under root."""
    columns = {}
    for name in table.column_names:
        column = table[name].combine_chunks()
        if name.endswith(PATH_SUFFIX):
            raise_first(stored_media_paths(column, f"resolve: column {name}", indices))
            column = join_under_root(root, column)
        elif name in media:
            path = pc.if_else(column.is_valid(), column.field("path"), pa.scalar(None, pa.string()))
            raise_first(stored_media_paths(path, f"resolve: column {name}.path", indices))
            column = pa.StructArray.from_arrays([column.field("bytes"), join_under_root(root, path)], ["bytes", "path"],
                                                mask=column.is_null())
        columns[name] = column
    return pa.table(columns)


def _absolute_media_batch(batch: Dict[str, list], indices: List[int], root: str, media: Sequence[str]) -> Dict[str, list]:
    """Python batch function of the same, for streaming."""
    out = _absolute_path_columns(batch, indices, root)
    for name, values in batch.items():
        if name in media:
            stored = pa.array([v["path"] if v else None for v in values], pa.string())
            raise_first(stored_media_paths(stored, f"resolve: column {name}.path", indices))
            joined = join_under_root(root, stored).to_pylist()
            out[name] = [None if v is None else {"bytes": v["bytes"], "path": p} for v, p in zip(values, joined)]
    return out


def _caller_stacklevel() -> int:
    """`warnings.warn`'s stacklevel, for its caller, of the first frame outside this package: the warning names the
    user's line however deep the call came (a `DatasetDict` resolves each split through the same function)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_globals.get("__name__") or "").split(".")[0] in ("emm1_lib", "emm1"):
        frame, level = frame.f_back, level + 1
    return level


def _warn_unembedded(dataset: datasets.Dataset, media: Sequence[str], on_missing_media: str) -> None:
    """Count the items published without bytes (a struct with a path, null bytes) and say what happens to them.

    Reads only validity bitmaps (and the first such item's path), never the media bytes."""
    table = dataset.data.table
    indices = None if dataset._indices is None else dataset._indices.column(0)
    found = []
    for m in media:
        column = table[m]
        mask = pc.and_(pc.is_valid(column), pc.is_null(pc.struct_field(column, "bytes")))
        if indices is not None:
            mask = pc.take(mask, indices)
        count = pc.sum(mask).as_py() or 0
        if count:
            row = pc.index(mask, True).as_py()
            path = dataset.select_columns([m]).with_format("arrow")[row][m][0]["path"].as_py()
            found.append(f"{count} in column {m!r} (the first: row {row}, {path})")
    if found:
        outcome = "decode to None and stay unembedded (on_missing_media='null')" if on_missing_media == "null" else (
            "raise UnembeddedMediaError when decoded or embedded")
        warnings.warn(
            f"resolve(): items published without their bytes (the export's licence choice left them out, or the "
            f"file was missing): {'; '.join(found)}. Without a root their stored paths are not opened: they "
            f"{outcome}. Pass root=... to read media the export did not embed.", UnembeddedMediaWarning, stacklevel=_caller_stacklevel())


def _resolve_embedded(dataset, media: List[str], root: Optional[str], decode: bool, on_missing_media: str,
                      media_options: Optional[Dict[str, dict]], modalities: Optional[Sequence[str]],
                      num_proc: Optional[int], allow_outside_root: bool):
    unknown = [m for m in (modalities or ()) if m not in MODALITIES]
    if unknown:
        raise ValueError(f"modalities={list(modalities)}: unknown {unknown}; choose from {list(MODALITIES)}.")
    wanted = [m for m in media if not modalities or m in modalities]
    options = media_options or {}
    features = datasets.Features(dataset.features)
    for m in wanted:
        # Without a root, an item published without bytes is never opened from its stored path (a string from
        # whoever wrote the repository): it is missing media, under `on_missing_media`.
        features[m] = media_feature(m, decode=decode, on_missing_media=on_missing_media,
                                    media_root=None if allow_outside_root or root is None else root,
                                    read_paths=root is not None, **options.get(m, {}))
    if root is None and isinstance(dataset, datasets.Dataset):
        _warn_unembedded(dataset, wanted, on_missing_media)
    if root is not None:
        fn_kwargs = {"root": root, "media": wanted}
        if isinstance(dataset, datasets.IterableDataset):
            dataset = dataset.map(_absolute_media_batch, batched=True, with_indices=True, fn_kwargs=fn_kwargs)
        else:
            return dataset.with_format("arrow").map(
                _absolute_media_table, batched=True, with_indices=True, features=features, fn_kwargs=fn_kwargs,
                num_proc=num_proc, desc="Resolving E-MM1 media paths").with_format(None)
    return dataset.cast(features)


def resolve(
    dataset: AnyDataset,
    root: Optional[str] = None,
    *,
    decode: bool = True,
    on_missing_media: str = "error",
    media_options: Optional[Dict[str, dict]] = None,
    modalities: Optional[Sequence[str]] = None,
    num_proc: Optional[int] = None,
    allow_outside_root: bool = False,
) -> AnyDataset:
    """Turn a loaded E-MM1 export into what the builders give: absolute paths and decoding media columns.

    Works on `Dataset` (a batched Arrow `map`, cached like any map), `IterableDataset` (lazy,
    streaming) and `DatasetDict` / `IterableDatasetDict` (every split).

    Args:
        dataset: a split (or dict of splits) loaded from an export, e.g. `load_dataset(DIR, "phase1_nn1")`.
        root: the media root holding `save_folder/{modality folder}/file_name`; a local folder or a URL.
            Optional for an export with embedded media: only the items published without bytes need it, and
            without it they are not read (see `on_missing_media`; a `Dataset` warns with their count).
        decode: media columns decode on access (False: `{"bytes", "path"}` dicts).
        on_missing_media: "error" (a missing file raises, naming it) or "null" (decodes to None); without a
            root, items of an embedded export published without bytes count as missing.
        media_options: per-modality feature options, e.g. `{"points": {"num_points": 2048}}`.
        modalities: media columns to add (default: every modality that has paths; all four for phase 2).
        num_proc: processes for the map of a `Dataset`.
        allow_outside_root: decoding and embedding (`push_to_hub`, `to_parquet`) refuse local media that
            resolve, through symlinks, outside `root`, as the builders do; True allows them (your own links).

    Returns:
        The same kind of object with `*_file_path` absolute and `image`/`audio`/`video`/`points` columns.
    """
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        kwargs = dict(decode=decode, on_missing_media=on_missing_media, media_options=media_options,
                      modalities=modalities, num_proc=num_proc, allow_outside_root=allow_outside_root)
        return type(dataset)({split: resolve(ds, root, **kwargs) for split, ds in dataset.items()})
    if dataset.features is None:
        raise ValueError("resolve() needs a dataset with known features; load the export with its README.md.")
    embedded = _embedded_media(dataset.features)
    if embedded:
        return _resolve_embedded(dataset, embedded, None if root is None else normalize_root(os.fspath(root)), decode,
                                 on_missing_media, media_options, modalities, num_proc, allow_outside_root)
    if root is None or not os.fspath(root):
        raise ValueError(
            "resolve() needs root= the media root: the folder (or URL) holding save_folder/{modality folder}/"
            "file_name, the root_data_path the builders were given."
        )
    root = normalize_root(os.fspath(root))
    features = resolved_features(dataset.features, decode, on_missing_media, media_options, modalities,
                                 media_root=None if allow_outside_root else root)
    fn_kwargs = {"root": root, "features": features}
    if isinstance(dataset, datasets.IterableDataset):
        # map, then cast: rows are encoded and decoded with the new features when iterated.
        return dataset.map(_resolve_batch, batched=True, with_indices=True, fn_kwargs=fn_kwargs).cast(features)
    mapped = dataset.with_format("arrow").map(
        _resolve_table, batched=True, with_indices=True, features=features, fn_kwargs=fn_kwargs, num_proc=num_proc,
        desc="Resolving E-MM1 media paths",
    )
    return mapped.with_format(None)
