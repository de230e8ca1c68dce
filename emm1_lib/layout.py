"""Where E-MM1 files live: folder names of both schema generations and data-dir detection.

The seed draft and the released dataset name their folders differently (see UPSTREAM.md);
users may point `data_dir` at the split folder itself or at a parent that holds it.
Paths may be local or remote URLs (anything fsspec opens), so probing is by file, not by folder.
"""
import os
from typing import Iterable, List, Sequence

import fsspec

from .errors import EMM1DataError

MODALITIES = ("image", "audio", "video", "points")
PHASE1_FOLDERS = ("e-mm1_100m", "encord_phase_1_dataset")
PHASE2_FOLDERS = ("e-mm1_1m", "encord_phase_2_dataset")
ESHOT_FOLDERS = ("eshot",)
NUM_NEIGHBOURS = 16
EMM1_HOMEPAGE = "https://data.encord.com/e-mm1/explorer"
EMM1_CITATION = """\
@misc{emm1_2025,
  title  = {E-MM1: The World's Largest Multimodal Dataset},
  author = {Encord},
  year   = {2025},
  url    = {https://data.encord.com/e-mm1/explorer}
}
"""


def is_remote(path: str) -> bool:
    """Whether `path` is a URL (http, hf, s3, ...) rather than a local path."""
    return "://" in path and not path.startswith("file://")


def join(base: str, *parts: str) -> str:
    """Join path parts with "/" for URLs and the OS separator for local paths."""
    if is_remote(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base, *parts)


def exists(path: str) -> bool:
    """Whether a local or remote file exists (remote: an HTTP HEAD or the store's stat)."""
    if not is_remote(path):
        return os.path.exists(path)
    fs, fs_path = fsspec.core.url_to_fs(path)
    try:
        fs.info(fs_path)  # a HEAD over HTTP (fs.exists may GET the whole file)
        return True
    except (OSError, ValueError):  # FileNotFoundError included
        return False


def normalize_root(path: str) -> str:
    """An absolute local path (user folder expanded) or an unchanged URL, without a trailing separator."""
    if is_remote(path):
        return path.rstrip("/")
    return os.path.abspath(os.path.expanduser(path))


def find_split_dir(data_dir: str, folder_names: Sequence[str], marker: str, what: str) -> str:
    """The folder holding `marker`: `data_dir` itself or one of `folder_names` below it.

    Raises an `EMM1DataError` listing every place tried when none holds the marker.
    """
    data_dir = normalize_root(data_dir)
    candidates: List[str] = [data_dir] + [join(data_dir, name) for name in folder_names]
    for candidate in candidates:
        if exists(join(candidate, marker)):
            return candidate
    tried = "\n  ".join(join(c, marker) for c in candidates)
    raise EMM1DataError(
        f"{what}: no {marker!r} found. Tried:\n  {tried}\n"
        f"Pass data_dir= the {' or '.join(folder_names)} folder (or a parent holding it)."
    )


def missing_names(wanted: Iterable[str], present: Iterable[str]) -> List[str]:
    """The names of `wanted` absent from `present`, in `wanted` order."""
    present = set(present)
    return [name for name in wanted if name not in present]
