"""`emm1 validate DATA_DIR [--root-data-path R] [--check-media] [--json]`: exit status 0 when there are no
errors, 1 otherwise, 2 for bad arguments."""
import argparse
from typing import List, Optional

from emm1_lib.io.tables import DEFAULT_SHARD_BYTES
from emm1_lib.schema.layout import MODALITIES
from emm1_lib.tools.cli import media_folder_arg
from emm1_lib.tools.validate.tree import DEFAULT_WORKERS, media_root, validate_tree


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emm1 validate",
        description="Check an E-MM1 metadata tree (and with --check-media its media files) and report every problem. "
        "Exit status: 0 no errors, 1 errors found, 2 bad arguments.",
    )
    parser.add_argument("data_dir", help="e-mm1_100m/, e-mm1_1m/, eshot/ (or seed names), the pre-joined Parquet "
                        "(E-MM1-100M/, E-MM1-1M/ or their data/), or a parent folder")
    parser.add_argument("--root-data-path", default=None, help="media root (default: $ROOT_DATA_PATH)")
    parser.add_argument("--check-media", action="store_true", help="stat every media file (in parallel); needs the "
                        "media root")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="threads stat-ing media files")
    parser.add_argument("--modalities", nargs="+", choices=MODALITIES, default=None)
    parser.add_argument("--media-folder", action="append", type=media_folder_arg, default=[], metavar="MODALITY=FOLDER",
                        help="folder replacing {modality} in media paths, e.g. audio=video (repeatable)")
    parser.add_argument("--on-missing-media", choices=("error", "null"), default="error",
                        help="'null': missing media are warnings (as decoding gives None)")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="media resolving outside the root through symlinks are warnings, not errors")
    parser.add_argument("--shard-bytes", type=int, default=DEFAULT_SHARD_BYTES, help=argparse.SUPPRESS)
    return parser


def cli(argv: Optional[List[str]] = None) -> int:
    """`emm1 validate ...`: print the report (text or JSON); 0 when no errors, 1 otherwise, 2 for bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.check_media and media_root(args.root_data_path) is None:
        parser.error("--check-media needs the media root: pass --root-data-path R or set ROOT_DATA_PATH.")
    report = validate_tree(
        args.data_dir,
        root_data_path=args.root_data_path,
        check_media=args.check_media,
        workers=args.workers,
        modalities=args.modalities,
        media_folders=dict(args.media_folder),
        on_missing_media=args.on_missing_media,
        allow_outside_root=args.allow_outside_root,
        shard_bytes=args.shard_bytes,
    )
    print(report.to_json() if args.json else report.to_text())
    return report.exit_code
