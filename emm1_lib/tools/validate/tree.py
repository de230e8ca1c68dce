"""`validate_tree`: find the split folders of a metadata tree (as the builders do) and check each of them."""
import os
from typing import Dict, List, Optional, Sequence

from emm1_lib.errors import SEVERITIES
from emm1_lib.io.fs import is_remote, normalize_root
from emm1_lib.io.tables import DEFAULT_SHARD_BYTES
from emm1_lib.media.files import check_on_missing_media
from emm1_lib.schema.eshot_files import locate_eshot_dir
from emm1_lib.schema.layout import ESHOT_FOLDERS, MODALITIES, NUM_NEIGHBOURS, PHASE1_FOLDERS, PHASE2_FOLDERS
from emm1_lib.schema.layout import locate_split_dir
from emm1_lib.schema.prejoined import locate_prejoined_dir
from emm1_lib.schema.roles import HUB_PHASE1_FOLDERS, HUB_PHASE2_FOLDERS
from emm1_lib.tools.validate.eshot import validate_eshot
from emm1_lib.tools.validate.media import MediaJob, check_media_files, media_items
from emm1_lib.tools.validate.phase1 import validate_phase1
from emm1_lib.tools.validate.phase2 import validate_phase2
from emm1_lib.tools.validate.prejoined import validate_prejoined
from emm1_lib.tools.validate.report import Collector, Report, SplitReport

DEFAULT_WORKERS = 16


def media_root(root_data_path: Optional[str]) -> Optional[str]:
    """`root_data_path`, else `$ROOT_DATA_PATH` (as the builders), normalised; None when neither is set."""
    root = root_data_path or os.environ.get("ROOT_DATA_PATH")
    return normalize_root(root) if root else None


def validate_tree(
    data_dir: str,
    root_data_path: Optional[str] = None,
    check_media: bool = False,
    workers: int = DEFAULT_WORKERS,
    modalities: Optional[Sequence[str]] = None,
    media_folders: Optional[Dict[str, str]] = None,
    on_missing_media: str = "error",
    allow_outside_root: bool = False,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> Report:
    """Check an E-MM1 metadata tree and report every problem (it never raises for bad data).

    Args:
        data_dir: a split folder (`e-mm1_100m/`, `e-mm1_1m/`, `eshot/`, or their seed names), a folder of the
            pre-joined Parquet files (the Hub copy: `E-MM1-100M/`, its `data/`), or a parent holding any of them,
            as the builders' `data_dir`.
        root_data_path: the media root (`root/save_folder/{modality}/file_name`); defaults to the
            `ROOT_DATA_PATH` environment variable. Needed only with `check_media`.
        check_media: also stat every media file of the infos tables (in parallel): missing files and
            files that resolve outside the media root (symlinks) are reported.
        workers: threads stat-ing media files.
        modalities: subset of `image`, `audio`, `video`, `points` to check (default all).
        media_folders: per-modality folder replacing `{modality}` in media paths, as the builders'.
        on_missing_media: "error" (default; missing media are errors, as decoding raises) or "null"
            (warnings, as decoding gives None).
        allow_outside_root: report media that resolve outside the root as warnings, not errors.
        shard_bytes: grouping files are read in byte ranges of this size (bounds memory).

    Returns:
        A `Report`: `ok`, `errors`, `warnings`, per-split/modality stats, `to_text()`, `to_dict()`.
    """
    unknown = [m for m in (modalities or []) if m not in MODALITIES]
    if unknown:
        raise ValueError(f"modalities: unknown {unknown}; choose from {list(MODALITIES)}")
    modalities = [m for m in MODALITIES if m in (modalities or MODALITIES)]
    check_on_missing_media(on_missing_media)
    media_folders = dict(media_folders or {})
    root = media_root(root_data_path)
    data_dir = normalize_root(data_dir)
    report = Report(data_dir=data_dir, root_data_path=root, check_media=check_media)
    ctx = Collector(report)
    if not is_remote(data_dir) and not os.path.isdir(data_dir):
        ctx.error("missing_file", data_dir, "data_dir is not a folder.")
        return report
    # The builders' search (`layout.locate_split_dir`): a phase-1 config looks for its own nn_k file.
    phase1 = locate_split_dir(data_dir, PHASE1_FOLDERS, [f"nn_{k}/data_groups.csv" for k in range(1, NUM_NEIGHBOURS + 1)])
    phase2 = locate_split_dir(data_dir, PHASE2_FOLDERS, ["triplets.csv"])
    # Without a CSV generation, the pre-joined Parquet one (the Hub copy), as the builders look for it.
    hub1 = locate_prejoined_dir(data_dir, phase1=True) if phase1 is None else None
    hub2 = locate_prejoined_dir(data_dir, phase1=False) if phase2 is None else None
    eshot = locate_eshot_dir(data_dir)
    if not (phase1 or phase2 or hub1 or hub2 or eshot):
        names = ", ".join(PHASE1_FOLDERS + PHASE2_FOLDERS + ESHOT_FOLDERS + HUB_PHASE1_FOLDERS + HUB_PHASE2_FOLDERS)
        ctx.error("missing_file", data_dir, f"no E-MM1 metadata found: expected nn_k/data_groups.csv, triplets.csv, "
                  f"the pre-joined Parquet files (data/nn_01.parquet, data/audio_to_image.parquet, ...) or the EShot "
                  f"files here or in one of {names}.")
        return report
    jobs: List[MediaJob] = []
    want_media = check_media and root is not None and not is_remote(root)
    if check_media and root is None:
        ctx.error("no_media_root", data_dir, "check_media needs the media root: pass root_data_path= / "
                  "--root-data-path or set ROOT_DATA_PATH.")
    elif check_media and is_remote(root):
        ctx.note("remote_media", root, "media under a URL are not checked (local roots only).")
    for name, path, run in (("phase1", phase1, lambda s: validate_phase1(ctx, s, modalities, shard_bytes)),
                            ("phase2", phase2, lambda s: validate_phase2(ctx, s, modalities))):
        if path is None:
            continue
        split = SplitReport(name, path)
        report.splits.append(split)
        media = run(split)
        if want_media:
            jobs += [MediaJob(split, m, media_items(infos, root, media_folders.get(m, m))) for m, infos in media.items()]
    for name, path, is_phase1 in (("phase1", hub1, True), ("phase2", hub2, False)):
        if path is None:
            continue
        split = SplitReport(name, path)
        report.splits.append(split)
        found = validate_prejoined(ctx, split, is_phase1, modalities, root if want_media else None, media_folders)
        jobs += [MediaJob(split, m, items) for m, items in found.items()]
    if eshot is not None:
        split = SplitReport("eshot", eshot)
        report.splits.append(split)
        for m, found in validate_eshot(ctx, split).items():
            if not want_media:
                continue
            if found.seed_files is None:
                jobs.append(MediaJob(split, m, media_items(found.infos, root, found.folder)))
            else:  # the files were found by id (a listing); stat them for links out of the root
                stats = split.stats(m)
                stats.media_checked += found.seed_ids - len(found.seed_files)
                stats.missing_media += found.seed_ids - len(found.seed_files)
                items = [(os.path.normpath(p), found.infos.path, line) for p, line in found.seed_files]
                # the builder reads seed EShot media from the eshot/ folder itself, and checks them against it
                jobs.append(MediaJob(split, m, items, seed_eshot=True, root=eshot))
    if jobs:
        check_media_files(ctx, jobs, root, workers, on_missing_media, allow_outside_root)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    report.findings.sort(key=lambda f: order[f.severity])  # stable: file order within a severity
    return report

