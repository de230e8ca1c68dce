"""EShot: the info CSVs, the category JSONs and their join, and the seed schema's media named by id."""
from typing import Dict, List, Optional, Tuple

from emm1_lib.io.fs import exists, join
from emm1_lib.schema import rules
from emm1_lib.schema.eshot_files import CATEGORY_FILES
from emm1_lib.schema.eshot_files import ESHOT_MODALITIES
from emm1_lib.schema.eshot_files import ID_COLUMNS
from emm1_lib.schema.eshot_files import INFO_FILES
from emm1_lib.schema.eshot_files import RELEASED_MEDIA_FOLDERS
from emm1_lib.schema.eshot_files import info_columns
from emm1_lib.schema.eshot_files import info_schema
from emm1_lib.schema.eshot_files import read_category_json
from emm1_lib.schema.eshot_files import seed_media_paths
from emm1_lib.tools.validate.infos import Infos, check_ids, check_paths
from emm1_lib.tools.validate.reading import read_header_or_report, read_table
from emm1_lib.tools.validate.report import Collector, SplitReport


class EShotMedia:
    """The media of one EShot modality: the infos (released schema: paths by the formula) or, for the seed
    schema, the files found by id (`seed_media_paths`, the builder's matching)."""

    def __init__(self, infos: Infos, folder: Optional[str] = None,
                 seed_files: Optional[List[Tuple[str, int]]] = None, seed_ids: int = 0):
        self.infos = infos
        self.folder = folder
        self.seed_files = seed_files  # (path, table line) of the ids that have a file
        self.seed_ids = seed_ids  # ids looked for


def validate_eshot(ctx: Collector, split: SplitReport) -> Dict[str, EShotMedia]:
    """The EShot builder's rules (`eshot_files`, `rules`), every violation: info CSVs, category JSONs, their join."""
    media: Dict[str, EShotMedia] = {}
    for modality in ESHOT_MODALITIES:
        id_column = ID_COLUMNS[modality]
        stats = split.stats(modality)
        path = join(split.path, INFO_FILES[modality])
        stats.infos_file = path
        if not exists(path):
            ctx.error("missing_file", path, f"{path} not found.", split=split.name, modality=modality)
            continue
        header = read_header_or_report(ctx, path, split.name, modality)
        if header is None:
            continue
        schema = info_schema(header)
        split.schema = split.schema or schema
        types = info_columns(modality, schema)
        t = read_table(ctx, path, types, list(types), list(types), split.name, modality, split)
        if t is None:
            continue
        stats.infos_rows = t.num_rows
        infos = check_ids(ctx, t, id_column, stats, split.name, modality)
        if schema == "released":
            infos.table = t.without(check_paths(ctx, t, id_column, stats, split.name, modality))
            media[modality] = EShotMedia(infos, folder=RELEASED_MEDIA_FOLDERS[modality])
        else:
            paths, violations = seed_media_paths(split.path, modality, t.table[id_column])
            ctx.violations(violations, split.name, modality)
            found = [(p, int(line)) for p, line in zip(paths, t.all_lines()) if p is not None]
            media[modality] = EShotMedia(infos, seed_files=found, seed_ids=t.num_rows)
        json_path = join(split.path, CATEGORY_FILES[modality])
        mapping, violations = read_category_json(json_path, modality)
        ctx.violations(violations, split.name, modality)
        if mapping is None:
            continue
        split.tables[json_path] = len(mapping)
        stats.references += int(sum(len(ids) for ids in mapping.values()))
        found_rows = rules.category_rows(t.table[id_column], mapping, path, json_path, id_column, t.rows)
        ctx.violations(found_rows, split.name, modality)
        for v in found_rows:
            if v.code == "dangling_id":
                stats.dangling += v.count
                stats.dangling_ids = sorted(set(v.values))
    return media

