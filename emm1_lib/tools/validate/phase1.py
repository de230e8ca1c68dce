"""E-MM1:100M: the 16 grouping files `nn_k/data_groups.csv` and the infos tables they reference."""
from typing import Dict, List, Sequence

import numpy as np
import pyarrow as pa

from emm1_lib.errors import EMM1DataError, Violation, merge_violations
from emm1_lib.io.fs import exists, join
from emm1_lib.io.tables import byte_ranges, read_csv_range
from emm1_lib.schema import rules
from emm1_lib.schema.layout import NUM_NEIGHBOURS
from emm1_lib.tools.validate.infos import Infos, duplicate_count, read_media_infos, read_text_infos, \
    references_to, row_hashes
from emm1_lib.tools.validate.reading import Table, check_header, diagnose_csv, read_header_or_report
from emm1_lib.tools.validate.report import MAX_LISTED, Collector, SplitReport


def groups_file(split_dir: str, k: int) -> str:
    return join(split_dir, f"nn_{k}", "data_groups.csv")


def validate_phase1(ctx: Collector, split: SplitReport, modalities: Sequence[str], shard_bytes: int) -> Dict[str, Infos]:
    infos_dir = join(split.path, "infos")
    text = read_text_infos(ctx, split, join(infos_dir, "text.csv"))
    media = {m: read_media_infos(ctx, split, m, join(infos_dir, f"{m}.csv")) for m in modalities}
    id_columns = {"text": "encord_text_id", **{m: f"encord_{m}_id" for m in modalities}}
    required = list(id_columns.values())
    types = {c: pa.int64() for c in required + ["nn_index"]}
    present = [k for k in range(1, NUM_NEIGHBOURS + 1) if exists(groups_file(split.path, k))]
    missing = [k for k in range(1, NUM_NEIGHBOURS + 1) if k not in present]
    if not present:
        ctx.error("missing_file", groups_file(split.path, 1),
                  "no nn_{k}/data_groups.csv at all: every phase1 config needs its grouping file.", split=split.name)
    elif missing:
        ctx.warning("missing_file", groups_file(split.path, missing[0]),
                    f"grouping files of neighbours {missing} are missing: configs "
                    f"{', '.join(f'phase1_nn{k}' for k in missing)} and phase1_all will fail; the others work.",
                    values=missing, count=len(missing), split=split.name)
    infos_of = {"text": text, **media}
    for k in present:
        path = groups_file(split.path, k)
        header = read_header_or_report(ctx, path, split.name)
        if header is None:
            continue
        if split.schema is None:
            split.schema = "released" if "nn_index" in header else "seed"
        if not check_header(ctx, path, header, required, required + ["nn_index"], split.name, None):
            continue
        if not ctx.violations(rules.data_rows(path), split.name):
            split.tables[path] = 0
            continue
        refs = {m: references_to(infos_of[m], id_columns[m]) for m in id_columns}
        hashes: List[np.ndarray] = []
        found: List[Violation] = []
        rows = 0

        def consume(t: Table) -> None:
            lines = t.all_lines()
            for m, column in id_columns.items():
                refs[m].add(t.table[column], lines)
            if "nn_index" in t.table.column_names:
                found.extend(rules.nn_index(t.table["nn_index"], t.table["encord_text_id"], path, t.rows, folder_k=k))
            hashes.append(row_hashes(t.table, t.table.column_names))

        failed, explained = None, False
        quotes = rules.quoted_line_break_violations(path)  # byte ranges would start rows inside quotes
        if not ctx.violations(quotes, split.name):
            failed, explained = quotes[0].message, True
        for start, end in [] if failed else byte_ranges(path, shard_bytes, check_quotes=False):
            try:
                shard = read_csv_range(path, start, end, header, types)
            except EMM1DataError as err:
                failed = str(err)
                break
            if shard is not None:
                consume(Table(path, header, shard, np.arange(rows + 2, rows + 2 + shard.num_rows, dtype=np.int64)))
                rows += shard.num_rows
        if failed is not None:  # start again on the whole file, listing every bad line
            refs = {m: references_to(infos_of[m], id_columns[m]) for m in id_columns}
            hashes, found = [], []
            t = diagnose_csv(ctx, path, header, types, failed, split.name, None, explained=explained,
                             missing_ids_are_errors=True)
            if t is None:
                continue
            consume(t)
            rows = t.num_rows
        split.tables[path] = rows
        for m, column in id_columns.items():
            refs[m].flush(ctx, path, column, split.stats(m), split.name, m)
        ctx.violations(merge_violations(found, MAX_LISTED), split.name)
        dup = duplicate_count(hashes)
        if dup:
            split.duplicate_rows[path] = dup
            ctx.note("duplicate_rows", path, f"{dup} row(s) repeat an earlier row exactly; the builder keeps them "
                     "(nothing is dropped).", count=dup, split=split.name)
    return {m: i for m, i in media.items() if i is not None}
