"""`emm1` command: `demo`, `sample`, and the tools of other modules (`export`, `validate`)."""
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
}


def media_folder_arg(text: str) -> Tuple[str, str]:
    """argparse type of `--media-folder MODALITY=FOLDER` (`emm1 export`, `emm1 validate`)."""
    modality, sep, folder = text.partition("=")
    if not sep or modality not in MODALITIES or not folder:
        raise argparse.ArgumentTypeError(f"{text!r}: expected MODALITY=FOLDER with MODALITY in {list(MODALITIES)}")
    return modality, folder


def default_cache_dir() -> str:
    """`$EMM1_CACHE`, else `~/.cache/emm1`."""
    return os.environ.get("EMM1_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "emm1")


def _sample(args: argparse.Namespace) -> int:
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
    print(f"wrote a {tree.schema}-schema E-MM1 tree under {tree.root}")
    for name in ("phase1_dir", "phase2_dir", "eshot_dir"):
        print(f"  {name:<11} {getattr(tree, name)}")
    print(f"  media files {len(tree.media_files)}  (root_data_path={tree.root})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from emm1_lib.tools.demo import run_demo

    return run_demo(cache_dir=args.cache_dir, schema=args.schema, rows=args.rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emm1", description="E-MM1 for the Hugging Face ecosystem.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="generate sample data, prepare every config, print a summary")
    demo.add_argument("--cache-dir", default=default_cache_dir(), help="where sample data and prepared datasets go")
    demo.add_argument("--schema", choices=SCHEMAS, default="released", help="metadata schema generation")
    demo.add_argument("--rows", type=int, default=3, help="example rows to print per config")
    demo.set_defaults(run=_demo)

    sample = commands.add_parser("sample", help="write a generated E-MM1 tree (metadata + small real media)")
    sample.add_argument("out_dir")
    sample.add_argument("--schema", choices=SCHEMAS, default="released")
    sample.add_argument("--captions", type=int, default=24, help="captions (rows per nn_k file)")
    sample.add_argument("--media-per-modality", type=int, default=6, help="infos rows per modality and phase")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--no-media", action="store_true", help="metadata only")
    sample.add_argument("--dangling", type=int, default=0, help="dangling ids per grouping column")
    sample.add_argument("--duplicate-groups", type=int, default=0, help="duplicate rows per grouping file")
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
