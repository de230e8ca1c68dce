"""`emm1 validate`: check an E-MM1 metadata tree (and, optionally, its media) and report every problem.

The data rules are the builders' own (`emm1_lib.schema.rules`): the builders raise the first violation,
the validator reports them all. It reads the same files with the same readers; when a reader refuses a
table, the table is read again in a diagnostic mode that lists *every* offending line (ragged rows, bytes
that are not UTF-8, ids outside the reader's grammar), leaves those lines out and checks the rest. The
report says, per split and modality: rows, ids that are missing/negative/duplicated in the infos tables,
dangling ids (no infos row: the builder keeps the row with nulls and counts them), unsafe path parts, and
with `check_media` missing media files and files that resolve (through symlinks) outside the media root.

Severity follows the builders: an *error* is something `download_and_prepare` (or decoding, for media)
refuses; a *warning* is a documented, counted skip (dangling ids become nulls) or a value the builder
keeps but that looks wrong (an nn_index other than the k of its folder nn_k); a *note* is information
(extra columns, identical duplicate rows, which are kept).

Python: `report = validate_tree(data_dir, root_data_path=None, check_media=False)`, then
`report.ok`, `report.errors`, `report.to_text()`, `report.to_dict()`.
Command line: `emm1 validate DATA_DIR [--root-data-path R] [--check-media] [--json]`; exit status
0 when there are no errors, 1 otherwise, 2 for bad arguments (`--check-media` without a media root included).

Modules: `report` (findings and counts), `reading` (the builders' readers and the diagnostic reader),
`infos` (infos tables and references to them), `phase1`, `phase2`, `eshot` (one split each), `media`
(the stat of `--check-media`), `tree` (`validate_tree`), `command` (the CLI).
"""
from emm1_lib.tools.validate.command import build_parser, cli
from emm1_lib.tools.validate.report import MAX_LISTED, Finding, ModalityStats, Report, SplitReport
from emm1_lib.tools.validate.tree import DEFAULT_WORKERS, validate_tree

__all__ = ["DEFAULT_WORKERS", "MAX_LISTED", "Finding", "ModalityStats", "Report", "SplitReport", "build_parser", "cli",
           "validate_tree"]
