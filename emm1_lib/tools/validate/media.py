"""`--check-media`: stat every media file of the infos tables in parallel (missing files, symlinks out of the root)."""
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from emm1_lib.schema.paths import join_media_paths
from emm1_lib.tools.validate.infos import Infos
from emm1_lib.tools.validate.report import Collector, SplitReport

# (media path, table file, table line) of one media file to stat
Item = Tuple[str, str, int]


@dataclass
class MediaJob:
    """The media files of one split and modality to stat."""

    split: SplitReport
    modality: str
    items: List[Item]
    seed_eshot: bool = False  # seed EShot: a missing file is a warning (the builder gives it a null path)
    root: Optional[str] = None  # the media root these files must stay under, when not the tree's (seed EShot: eshot/)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _stat_one(path: str, real_root: str, dir_real: Dict[str, str]) -> Optional[Tuple[str, str]]:
    """None when `path` is a regular file under the root; else ("missing" | "outside", detail)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing", "not found"
    except OSError as err:  # NotADirectoryError, PermissionError, name too long, ...
        return "missing", f"{type(err).__name__}: {err.strerror or err}"
    if stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(path)
        if not os.path.isfile(real):
            return "missing", f"broken symlink to {real}"
    elif not stat.S_ISREG(st.st_mode):
        return "missing", "not a regular file"
    else:
        parent = os.path.dirname(path)
        real = os.path.join(dir_real.get(parent) or os.path.realpath(parent), os.path.basename(path))
    if not _within(real, real_root):
        return "outside", real
    return None


def check_media_files(ctx: Collector, jobs: List[MediaJob], root: str, workers: int, on_missing_media: str,
                      allow_outside_root: bool) -> None:
    """Stat every media file in parallel; missing and outside-root files are findings."""
    parents = sorted({os.path.dirname(item[0]) for job in jobs for item in job.items})
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        dir_real = dict(zip(parents, pool.map(os.path.realpath, parents)))

        for job in jobs:
            real_root = os.path.realpath(job.root or root)

            def run(batch: List[Item], real_root: str = real_root) -> List[Optional[Tuple[str, str]]]:
                return [_stat_one(item[0], real_root, dir_real) for item in batch]

            batches = [job.items[i:i + 256] for i in range(0, len(job.items), 256)]
            verdicts = [v for batch in pool.map(run, batches) for v in batch]
            stats = job.split.stats(job.modality)
            stats.media_checked += len(job.items)
            missing = [(item, v[1]) for item, v in zip(job.items, verdicts) if v and v[0] == "missing"]
            outside = [(item, v[1]) for item, v in zip(job.items, verdicts) if v and v[0] == "outside"]
            stats.missing_media += len(missing)
            stats.outside_root += len(outside)
            for problems, code in ((missing, "missing_media"), (outside, "outside_root")):
                by_file: Dict[str, list] = {}
                for item, detail in problems:
                    by_file.setdefault(item[1], []).append((item, detail))
                for file, found in by_file.items():
                    (first, detail) = found[0]
                    m = job.modality
                    if code == "missing_media":
                        severity = "error" if on_missing_media == "error" and not job.seed_eshot else "warning"
                        message = (f"{len(found)} {m} file(s) of this table do not exist under {job.root or root} (e.g. {first[0]}: "
                                   f"{detail}). " + ("The EShot builder gives them a null path." if job.seed_eshot else
                                   "Decoding them raises MissingMediaError unless on_missing_media='null'."))
                    else:
                        severity = "warning" if allow_outside_root else "error"
                        message = (f"{len(found)} {m} file(s) resolve through symlinks to outside the media root "
                                   f"{real_root} (e.g. {first[0]} -> {detail}). Decoding refuses files outside the root; "
                                   "pass allow_outside_root=True (--allow-outside-root) if the links are yours.")
                    ctx.add(severity, code, file, message, lines=[x[0][2] for x in found],
                            values=[x[0][0] for x in found], count=len(found), split=job.split.name, modality=m)


def media_items(infos: Infos, root: str, folder: str) -> List[Item]:
    """Each media path of an infos table (the builder's formula), with the table's file and line."""
    t = infos.table
    if t is None or not t.num_rows:
        return []
    save_folder = t.table["save_folder"].combine_chunks()
    file_name = t.table["file_name"].combine_chunks()
    paths = join_media_paths(root, save_folder, folder, file_name)
    return [(os.path.normpath(p), t.path, int(line)) for p, line in zip(paths.to_pylist(), t.all_lines()) if p is not None]
