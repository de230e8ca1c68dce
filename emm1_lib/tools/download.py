"""`emm1 download DATA_DIR --root-data-path ROOT`: fetch the media the metadata names into the builders' layout.

Exit status: 0 when every planned file is present, 1 when some could not be fetched (the manifest beside
ROOT lists each with its reason), 2 for bad arguments or unusable metadata (a seed-draft tree, say).
"""
import argparse
import os
import sys
from typing import List, Optional

from emm1_lib.errors import EMM1DataError
from emm1_lib.schema.layout import MODALITIES
from emm1_lib.tools.cli import count_arg


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def _mirror(text: str):
    name, sep, url = text.partition("=")
    if not sep or not name or not url:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SOURCE=URL (e.g. COCO=http://mirror/train2017.zip)")
    return name, url


def build_parser() -> argparse.ArgumentParser:
    from emm1_lib.acquire.plan import CONFIGS

    parser = argparse.ArgumentParser(
        prog="emm1 download",
        description="Fetch the media referenced by the chosen configs of the released E-MM1 metadata into "
                    "ROOT/save_folder/{modality}/file_name, the layout the builders read. Reruns skip files already "
                    "fetched and retry the failed ones; a manifest (ROOT.download-manifest.jsonl) records every item.",
        epilog="Exit status: 0 everything planned is present, 1 some items failed or have no usable source "
               "(see the manifest), 2 bad arguments or unusable metadata.",
    )
    parser.add_argument("data_dir", metavar="DATA_DIR", help="the metadata folder (holding e-mm1_100m/, e-mm1_1m/, eshot/)")
    parser.add_argument("--root-data-path", required=True, metavar="ROOT", help="the media root to fill")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, metavar="CONFIG",
                        help=f"configs whose media to fetch (default: all): {', '.join(CONFIGS)}")
    parser.add_argument("--modalities", nargs="+", choices=MODALITIES, help="only these modalities")
    parser.add_argument("--sources", nargs="+", metavar="SOURCE", help="only these source_dataset values")
    parser.add_argument("--limit", type=count_arg(1), help="first N items of each source (a trial run)")
    parser.add_argument("--workers", type=count_arg(1), default=8, help="parallel fetches (default 8)")
    parser.add_argument("--per-host", type=count_arg(1), help="at most N requests to one host at a time (default: --workers)")
    parser.add_argument("--timeout", type=_positive_float, default=30.0, help="seconds to connect / between bytes")
    parser.add_argument("--retries", type=count_arg(0), default=3, help="retries of a failed fetch (timeouts, 5xx)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be fetched, per source, and stop")
    parser.add_argument("--mirror", type=_mirror, action="append", default=[], metavar="SOURCE=URL",
                        help="fetch SOURCE from URL instead (repeatable)")
    parser.add_argument("--sources-file", action="append", default=[], metavar="FILE",
                        help="a JSON file of sources adding to / replacing the shipped ones (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--engine", choices=("threads", "dask"), default="threads",
                        help="threads: this machine (default); dask: the tasks of the plan run on a Dask cluster "
                             "(--scheduler), whose workers write into the shared ROOT; see docs/downloading.md")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="the Dask scheduler's address (--engine dask); ROOT must be the same path on every worker")
    parser.add_argument("--shard-items", type=count_arg(1), default=1000,
                        help="items per task (default 1000; a streamed archive is one task)")
    parser.add_argument("--stand-in", metavar="MEDIA",
                        help="a trial on `emm1 sample` output: serve stand-ins of the EShot sources (YouTube, OpenShape) "
                             "made from the sample's media folder MEDIA on 127.0.0.1, and fetch from them")
    return parser


def cli(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.engine == "dask") != (args.scheduler is not None):
        parser.error("--engine dask needs --scheduler tcp://HOST:PORT, and --scheduler needs --engine dask")
    if args.stand_in:
        from emm1_lib.testing.standin_sources import StandinSources

        try:
            stand_in = StandinSources(args.data_dir, args.stand_in)
        except (OSError, EMM1DataError) as err:
            print(f"emm1 download: error: --stand-in: {err}", file=sys.stderr)
            return 2
        with stand_in:
            print(f"stand-ins of the EShot sources, made from {args.stand_in}: {stand_in.url}")
            return _run(args, {**stand_in.mirrors, **dict(args.mirror)})
    return _run(args, dict(args.mirror))


def _run(args: argparse.Namespace, mirrors) -> int:
    from emm1_lib.acquire.plan import build_plan
    from emm1_lib.acquire.run import DownloadOptions, InsufficientSpaceError, download, format_reports, survey
    from emm1_lib.acquire.sources import load_sources
    from emm1_lib.acquire.store import manifest_path

    root = os.path.abspath(args.root_data_path)
    try:
        sources = load_sources(args.sources_file, mirrors)
        plan = build_plan(args.data_dir, args.configs, args.modalities, args.sources, args.limit)
    except (EMM1DataError, ValueError) as err:
        print(f"emm1 download: error: {err}", file=sys.stderr)
        return 2
    if args.sources:
        absent = sorted(set(args.sources) - set(plan.source_counts))
        if absent:
            print(f"emm1 download: note: no planned item comes from {absent}", file=sys.stderr)
    unknown = {s: n for s, n in plan.source_counts.items() if s not in sources}
    for name, count in sorted(unknown.items()):
        print(f"emm1 download: warning: {count} item(s) of source {name!r} have no entry in the sources file; "
              "they are reported, not fetched (add an entry with --sources-file)", file=sys.stderr)
    options = DownloadOptions(workers=args.workers, per_host=args.per_host, timeout=args.timeout, retries=args.retries,
                              progress=not args.no_progress, shard_items=args.shard_items)
    print(f"plan: {plan.items.num_rows} file(s) from {len(plan.source_counts)} source(s) for "
          f"{', '.join(args.configs or ['every config'])}")
    if args.dry_run:
        print(format_reports(survey(plan, root, sources, options), dry_run=True))
        return 0
    try:
        if args.engine == "dask":
            from emm1_lib.acquire.engines import DaskOptions, download_dask

            reports = download_dask(plan, root, sources, options, DaskOptions(args.scheduler))
        else:
            reports = download(plan, root, sources, options)
    except InsufficientSpaceError as err:
        print(f"emm1 download: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        if args.engine != "dask":
            raise
        print(f"emm1 download: error: {err}; is a Dask scheduler (`dask scheduler`) running at {args.scheduler}, "
              "reachable from here?", file=sys.stderr)
        return 1
    print(format_reports(reports))
    failed = sum(r.failed + r.not_fetchable for r in reports.values())
    print(f"manifest: {manifest_path(root)}" + (f"  ({failed} item(s) not fetched: status failed / not_fetchable)"
                                               if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli())
