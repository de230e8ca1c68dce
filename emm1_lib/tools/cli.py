"""`emm1` command: `demo`, `sample`, and the tools of other modules (`export`, `validate`, `download`).

Exit status: 0 on success, 2 for bad arguments (argparse's own status for usage errors), 1 when
`validate` finds problems in the data.
"""
import argparse
import importlib
import os
import sys
from typing import List, Optional, Tuple

from emm1_lib.schema.layout import MODALITIES
from emm1_lib.testing.sample import SCHEMAS
from emm1_lib.testing.sample import generate_sample_tree

# Subcommands implemented in their own modules, each exposing `cli(argv) -> int`.
_MODULE_COMMANDS = {
    "export": ("emm1_lib.tools.export", "write a prepared config as a Hub dataset repo (Parquet + card)"),
    "validate": ("emm1_lib.tools.validate", "check a metadata tree (and media) and report every problem"),
    "download": ("emm1_lib.tools.download", "fetch the media the metadata names into the builders' layout"),
}


def media_folder_arg(text: str) -> Tuple[str, str]:
    """argparse type of `--media-folder MODALITY=FOLDER` (`emm1 export`, `emm1 validate`)."""
    modality, sep, folder = text.partition("=")
    if not sep or modality not in MODALITIES or not folder:
        raise argparse.ArgumentTypeError(f"{text!r}: expected MODALITY=FOLDER with MODALITY in {list(MODALITIES)}")
    return modality, folder


def installed_version(distribution: str = "emm1") -> str:
    """The version of the installed `emm1` distribution (what `--version` prints)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown (not installed: run `pip install -e .` in the repository)"


def count_arg(minimum: int):
    """argparse type of an integer option that must be at least `minimum` (a usage error, exit 2, otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    return parse


def default_cache_dir() -> str:
    """`$EMM1_CACHE`, else `~/.cache/emm1`."""
    return os.environ.get("EMM1_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "emm1")


def _sample(args: argparse.Namespace) -> int:
    out = os.path.abspath(args.out_dir)
    if os.path.isfile(out) or (os.path.isdir(out) and os.listdir(out) and not args.force):
        what = "is a file" if os.path.isfile(out) else f"already exists and is not empty (it holds {', '.join(sorted(os.listdir(out))[:4])})"
        print(f"emm1 sample: error: {out} {what}. Choose a new or empty folder"
              + ("" if os.path.isfile(out) else ", or pass --force to write the sample into it") + ".", file=sys.stderr)
        return 2
    tree = generate_sample_tree(
        args.out_dir,
        schema=args.schema,
        num_captions=args.captions,
        num_media=args.media_per_modality,
        seed=args.seed,
        media=not args.no_media,
        dangling=args.dangling,
        duplicate_groups=args.duplicate_groups,
    )
    print(f"wrote a {tree.schema}-schema E-MM1 tree under {out}")
    print(f"  metadata    {tree.metadata_dir}  (data_dir={tree.metadata_dir})")
    for name in ("phase1_dir", "phase2_dir", "eshot_dir"):
        print(f"  {name:<11} {getattr(tree, name)}")
    print(f"  media files {len(tree.media_files)}  (root_data_path={tree.root})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from emm1_lib.tools.demo import run_demo

    return run_demo(cache_dir=args.cache_dir, schema=args.schema, rows=args.rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emm1", description="E-MM1 for the Hugging Face ecosystem.",
        epilog="Exit status: 0 success, 1 problems found by `validate`, 2 bad arguments.",
    )
    parser.add_argument("--version", action="version", version=f"emm1 {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="generate sample data, prepare every config, print a summary",
        description="Generate a sample tree (once) under --cache-dir, prepare every config of both builders and "
                    "print rows, decoded media and the load_dataset(...) calls that load the sample yourself.",
    )
    demo.add_argument("--cache-dir", default=default_cache_dir(), help="where sample data and prepared datasets go")
    demo.add_argument("--schema", choices=SCHEMAS, default="released", help="metadata schema generation")
    demo.add_argument("--rows", type=count_arg(0), default=3, help="example rows to print per config")
    demo.set_defaults(run=_demo)

    sample = commands.add_parser(
        "sample", help="write a generated E-MM1 tree (metadata + small real media)",
        description="Write a generated E-MM1 tree: metadata folders under OUT_DIR/metadata/ (the data_dir) and "
                    "media under OUT_DIR/media/ (the root_data_path). OUT_DIR must be new or empty: an existing, "
                    "non-empty folder is refused (exit status 2) unless --force is given.",
    )
    sample.add_argument("out_dir", metavar="OUT_DIR")
    sample.add_argument("--schema", choices=SCHEMAS, default="released",
                        help="metadata generation: released or seed (CSV), hub (the pre-joined Parquet of the Hub copy)")
    sample.add_argument("--captions", type=count_arg(1), default=24, help="captions (rows per nn_k file)")
    sample.add_argument("--media-per-modality", type=count_arg(1), default=6, help="infos rows per modality and phase")
    sample.add_argument("--seed", type=count_arg(0), default=0)
    sample.add_argument("--no-media", action="store_true", help="metadata only")
    sample.add_argument("--dangling", type=count_arg(0), default=0, help="dangling ids per grouping column")
    sample.add_argument("--duplicate-groups", type=count_arg(0), default=0, help="duplicate rows per grouping file")
    sample.add_argument("--force", action="store_true",
                        help="write into an existing non-empty OUT_DIR (files of the same name are replaced, "
                             "other files are kept)")
    sample.set_defaults(run=_sample)

    for name, (_, help_text) in _MODULE_COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _MODULE_COMMANDS:
        module = importlib.import_module(_MODULE_COMMANDS[argv[0]][0])
        return module.cli(argv[1:])
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
