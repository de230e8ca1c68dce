"""E-MM1:1M: `triplets.csv`, `annotation_mapping.csv` and the infos tables the triplets reference."""
from typing import Dict, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from emm1_lib.errors import EMM1DataError
from emm1_lib.io.fs import exists, join
from emm1_lib.schema import rules
from emm1_lib.schema.layout import TRIPLET_COLUMNS
from emm1_lib.schema.triplets import DEFAULT_ANNOTATION_LABELS
from emm1_lib.schema.triplets import read_annotation_mapping
from emm1_lib.schema.triplets import to_released
from emm1_lib.schema.triplets import triplet_types
from emm1_lib.tools.validate.infos import Infos, duplicate_count, read_media_infos, read_text_infos, references_to, \
    row_hashes
from emm1_lib.tools.validate.reading import read_header_or_report, read_table
from emm1_lib.tools.validate.report import Collector, SplitReport


def _annotation_codes(ctx: Collector, split: SplitReport):
    """The codes of `annotation_mapping.csv` (the documented defaults when it is absent), its problems reported."""
    path = join(split.path, "annotation_mapping.csv")
    if not exists(path):
        ctx.note("missing_file", path, "no annotation_mapping.csv: the builders use the released labels "
                 f"{DEFAULT_ANNOTATION_LABELS}.", split=split.name)
        return list(DEFAULT_ANNOTATION_LABELS)
    try:
        mapping, violations = read_annotation_mapping(path)
    except EMM1DataError as err:
        ctx.error("bad_mapping", path, str(err), lines=[err.line] if err.line else [], split=split.name)
        return list(DEFAULT_ANNOTATION_LABELS)
    split.tables[path] = len(mapping)
    ctx.violations(violations, split.name)
    return [code for code in mapping if code is not None]


def validate_phase2(ctx: Collector, split: SplitReport, modalities: Sequence[str]) -> Dict[str, Infos]:
    codes = _annotation_codes(ctx, split)
    infos_dir = join(split.path, "infos")
    text = read_text_infos(ctx, split, join(infos_dir, "text.csv"))
    path = join(split.path, "triplets.csv")
    header = read_header_or_report(ctx, path, split.name)
    table = None
    if header is not None:
        schema, violations = rules.triplets_schema(path, header)
        ctx.violations(violations, split.name)
        if schema is not None:
            split.schema = schema
            types = triplet_types(schema, header)
            table = read_table(ctx, path, types, TRIPLET_COLUMNS[schema], list(types), split.name, None, split)
            if table is not None and not ctx.violations(rules.data_rows(path), split.name):
                table = None
    if table is None:
        return {m: i for m in modalities if (i := read_media_infos(ctx, split, m, join(infos_dir, f"{m}.csv")))}
    ctx.violations(rules.triplet_rows(table.table, split.schema, path, codes, table.rows), split.name)
    t = to_released(table.table, split.schema)
    paired_mod, annotated_mod = t["paired_modality"], t["annotated_modality"]
    lines = table.all_lines()
    dup = duplicate_count([row_hashes(table.table, table.table.column_names)])
    if dup:
        split.duplicate_rows[path] = dup
        ctx.note("duplicate_rows", path, f"{dup} row(s) repeat an earlier row exactly; the builder keeps them.",
                 count=dup, split=split.name)
    involved = [m for m in modalities
                if pc.any(pc.or_(pc.equal(paired_mod, m), pc.equal(annotated_mod, m))).as_py()]
    media = {m: i for m in involved if (i := read_media_infos(ctx, split, m, join(infos_dir, f"{m}.csv")))}
    text_refs = references_to(text, "encord_text_id")
    text_refs.add(t["encord_text_id"], lines)
    text_refs.flush(ctx, path, "encord_text_id", split.stats("text"), split.name, "text")
    for m in involved:
        refs = references_to(media.get(m), f"{m} ids")
        for role in ("paired", "annotated"):
            is_m = pc.fill_null(pc.equal(t[f"{role}_modality"], m), False)
            ids_m = pc.if_else(is_m, t[f"encord_{role}_id"], pa.scalar(None, pa.int64()))
            refs.add(ids_m, lines, needed=is_m)
        column = f"encord_{m}_id" if split.schema == "seed" else f"encord_paired_id/encord_annotated_id ({m})"
        refs.flush(ctx, path, column, split.stats(m), split.name, m)
    return media
