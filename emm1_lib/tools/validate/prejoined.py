"""The pre-joined Parquet generation (the Hub copy): each file's footer, its columns by role, and every row.

The builder's rules, applied to every batch instead of stopping at the first: unsafe save folders and file
names, neighbour ranks, explicit modality columns and annotation codes or labels (`rules.prejoined_*`).
An id whose save folder / file name (or caption) is null is the pre-joined form of a dangling id: a warning,
as the builder keeps the row and counts it. Rows are numbered from 1 in each file (findings' `lines`).
"""
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emm1_lib.errors import EMM1DataError, Violation, merge_violations
from emm1_lib.schema import prejoined
from emm1_lib.schema import rules
from emm1_lib.schema.ids import DanglingCount
from emm1_lib.schema.layout import NUM_NEIGHBOURS, PHASE2_ROLES
from emm1_lib.schema.paths import unsafe_mask
from emm1_lib.schema.prejoined import PrejoinedFile
from emm1_lib.schema.triplets import DEFAULT_ANNOTATION_LABELS, read_annotation_mapping
from emm1_lib.tools.validate.infos import duplicate_count, row_hashes
from emm1_lib.tools.validate.report import MAX_LISTED, Collector, SplitReport

# (media path, table file, table row) of one media file to stat
Item = Tuple[str, str, int]
_BATCH_ROWS = 100_000


def _mapping(ctx: Collector, split: SplitReport) -> Dict[int, str]:
    """`{code: label}` of the E-MM1:1M files (the documented defaults without `annotation_mapping.csv`)."""
    path = prejoined.mapping_file(split.path)
    if path is None:
        ctx.note("missing_file", os.path.join(split.path, prejoined.MAPPING_FILE),
                 f"no annotation_mapping.csv: the builders use the released labels {DEFAULT_ANNOTATION_LABELS}.",
                 split=split.name)
        return dict(DEFAULT_ANNOTATION_LABELS)
    try:
        mapping, violations = read_annotation_mapping(path)
    except EMM1DataError as err:
        ctx.error("bad_mapping", path, str(err), lines=[err.line] if err.line else [], split=split.name)
        return dict(DEFAULT_ANNOTATION_LABELS)
    split.tables[path] = len(mapping)
    ctx.violations(violations, split.name)
    return {code: label for code, label in mapping.items() if code is not None}


class _Media:
    """The distinct media paths of one modality (for `--check-media`), each with the first file and row naming it."""

    def __init__(self) -> None:
        self.items: Dict[str, Tuple[str, int]] = {}

    def add(self, paths: pa.Array, file: str, first_row: int) -> None:
        encoded = pc.dictionary_encode(paths)
        indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
        values, first = np.unique(indices, return_index=True)
        dictionary = encoded.dictionary.to_pylist()
        for value, row in zip(values.tolist(), first.tolist()):
            if value >= 0:
                self.items.setdefault(os.path.normpath(dictionary[value]), (file, first_row + row + 1))

    def as_items(self) -> List[Item]:
        return [(path, file, row) for path, (file, row) in self.items.items()]


def _owners(described: PrejoinedFile, modalities: Sequence[str]) -> List[Tuple[str, str]]:
    """(owner of the columns, its modality) per media item of a file: each modality (phase 1) or each role (phase 2)."""
    if isinstance(described.key, int):
        return [(m, m) for m in modalities]
    return list(zip(PHASE2_ROLES, described.key))


def validate_prejoined(ctx: Collector, split: SplitReport, phase1: bool, modalities: Sequence[str],
                       root: Optional[str] = None, media_folders: Optional[Dict[str, str]] = None
                       ) -> Dict[str, List[Item]]:
    """Check every pre-joined file of one phase in `split.path`; with a media `root`, return the media paths to
    stat per modality (each distinct path once)."""
    split.schema = "hub"
    found = prejoined.prejoined_files(split.path, phase1)
    if phase1:
        missing = [k for k in range(1, NUM_NEIGHBOURS + 1) if k not in found]
        if missing and len(missing) < NUM_NEIGHBOURS:
            ctx.warning("missing_file", os.path.join(split.path, prejoined.phase1_file_name(missing[0])),
                        f"neighbour files {[prejoined.phase1_file_name(k) for k in missing]} are missing: configs "
                        f"{', '.join(f'phase1_nn{k}' for k in missing)} and phase1_all will fail; the others work.",
                        values=missing, count=len(missing), split=split.name)
        codes: List[int] = []
        labels: List[str] = []
    else:
        mapping = _mapping(ctx, split)
        codes, labels = list(mapping), list(mapping.values())
    media = {m: _Media() for m in modalities}
    for key in sorted(found):
        if not phase1 and not (key[0] in modalities and key[1] in modalities):
            continue
        for path in found[key]:
            try:
                described = prejoined.describe_file(path, key, modalities)
            except EMM1DataError as err:
                ctx.error(err.code or "unreadable", path, str(err), split=split.name)
                continue
            split.tables[path] = described.num_rows
            if not ctx.violations(prejoined.file_violations(described), split.name):
                continue
            _check_rows(ctx, split, described, modalities, codes, labels, root, media_folders or {}, media)
    return {m: found_media.as_items() for m, found_media in media.items() if found_media.items}


def _check_rows(ctx: Collector, split: SplitReport, described: PrejoinedFile, modalities: Sequence[str],
                codes: List[int], labels: List[str], root: Optional[str], media_folders: Dict[str, str],
                media: Dict[str, "_Media"]) -> None:
    """Every batch of one file: the builder's row rules, dangling ids, identical rows, media paths."""
    path = described.path
    owners = _owners(described, modalities)
    found: List[Violation] = []
    hashes: List[np.ndarray] = []
    dangling: Dict[str, Tuple[DanglingCount, str, List[np.ndarray], List[np.ndarray]]] = {}
    row = 0
    for row_group in range(len(described.row_groups)):
        try:
            batches = list(prejoined.iter_row_group(described, row_group, _BATCH_ROWS))
        except (EMM1DataError, pa.ArrowException, OSError) as err:
            ctx.error("unreadable", path, f"row group {row_group} cannot be read: {err}", split=split.name)
            return
        for batch in batches:
            n = batch.num_rows
            where = rules.Rows.parquet(row, span=f" (row group {row_group})")
            text_ids = prejoined.as_int64(prejoined.role_column(batch, described, "text.id"), n)
            if isinstance(described.key, int):
                nn_index = prejoined.role_column(batch, described, "nn_index")
                if nn_index is not None:
                    found += rules.nn_index(nn_index, text_ids, path, where, folder_k=described.key)
            else:
                explicit = {role: (described.columns.get(f"{role}.modality"), modality,
                                   prejoined.role_column(batch, described, f"{role}.modality"))
                            for role, modality in zip(PHASE2_ROLES, described.key)
                            if described.columns.get(f"{role}.modality")}
                found += rules.prejoined_triplets(path, explicit, prejoined.role_column(batch, described, "annotation"),
                                                  codes, labels, text_ids, where)
            caption = prejoined.as_strings(prejoined.role_column(batch, described, "text.caption"), n)
            _dangling(dangling, "text", "encord_text_id", text_ids, caption, row)
            for owner, modality in owners:
                unsafe = prejoined.unsafe_parts(batch, described, owner, where)
                split.stats(modality).unsafe_paths += sum(v.count for v in unsafe)
                found += unsafe
                ids = prejoined.as_int64(prejoined.role_column(batch, described, f"{owner}.id"), n)
                folder = media_folders.get(modality, modality)
                paths = prejoined.media_paths(root or "", folder, prejoined.role_column(batch, described, f"{owner}.save_folder"),
                                              prejoined.role_column(batch, described, f"{owner}.file_name"), n)
                stats = split.stats(modality)
                stats.references += pc.sum(pc.is_valid(ids)).as_py() or 0
                _dangling(dangling, modality, described.columns.get(f"{owner}.id") or f"encord_{owner}_id", ids, paths, row)
                if root is not None and modality in media:
                    media[modality].add(pc.filter(paths, _safe(batch, described, owner)), path, row)
            hashes.append(row_hashes(pa.table(batch.columns, names=batch.schema.names), batch.schema.names))
            row += n
    ctx.violations(merge_violations(found, MAX_LISTED), split.name)
    for modality, (count, column, ids, rows) in dangling.items():
        if not count.count:
            continue
        distinct = np.unique(np.concatenate(ids))
        stats = split.stats(modality)
        stats.dangling += count.count
        stats.dangling_ids = sorted(set(stats.dangling_ids) | set(distinct.tolist()))
        what = "caption" if modality == "text" else "save folder or file name"
        ctx.warning("dangling_id", path,
                    f"{count.count} {column} value(s) ({len(distinct)} distinct) have no {what}; the builder keeps those "
                    "rows with null paths/captions and counts them in a DanglingIdWarning.",
                    lines=np.sort(np.concatenate(rows)), values=distinct.tolist(), count=count.count, split=split.name,
                    modality=modality)
    dup = duplicate_count(hashes)
    if dup:
        split.duplicate_rows[path] = dup
        ctx.note("duplicate_rows", path, f"{dup} row(s) repeat an earlier row exactly; the builder keeps them "
                 "(nothing is dropped).", count=dup, split=split.name)


def _safe(batch: pa.RecordBatch, described: PrejoinedFile, owner: str) -> pa.Array:
    """Rows whose path parts pass the unsafe-part rule (only those are stat-ed)."""
    keep = pa.array(np.ones(batch.num_rows, dtype=bool))
    for field_name in ("save_folder", "file_name"):
        values = prejoined.role_column(batch, described, f"{owner}.{field_name}")
        if values is not None:
            keep = pc.and_(keep, pc.invert(unsafe_mask(values)))
    return keep


def _dangling(dangling, modality: str, column: str, ids: pa.Array, values: pa.Array, first_row: int) -> None:
    """Count valid ids whose joined value is null (the builder's DanglingCount), with their ids and rows."""
    count, _, found_ids, found_rows = dangling.setdefault(modality, (DanglingCount(column, ""), column, [], []))
    before = count.count
    count.add(ids, values)
    if count.count > before:
        missing = pc.and_(pc.is_null(values), pc.is_valid(ids))
        found_ids.append(pc.filter(ids, missing).to_numpy(zero_copy_only=False))
        found_rows.append(np.flatnonzero(missing.to_numpy(zero_copy_only=False)) + first_row + 1)
