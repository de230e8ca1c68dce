"""Where E-MM1 files live: folder names of both schema generations and data-dir detection.

The seed draft and the released dataset name their folders differently (see UPSTREAM.md);
users may point `data_dir` at the split folder itself or at a parent that holds it.
Paths may be local or remote URLs (anything fsspec opens), so probing is by file, not by folder.
"""
from typing import List, Sequence

from emm1_lib.errors import EMM1DataError
from emm1_lib.io.fs import exists
from emm1_lib.io.fs import join
from emm1_lib.io.fs import normalize_root

MODALITIES = ("image", "audio", "video", "points")
PHASE1_FOLDERS = ("e-mm1_100m", "encord_phase_1_dataset")
PHASE2_FOLDERS = ("e-mm1_1m", "encord_phase_2_dataset")
ESHOT_FOLDERS = ("eshot",)
NUM_NEIGHBOURS = 16
# Provenance columns of the released infos tables, copied per modality as `{m}_{column}`.
PROVENANCE_COLUMNS = ("source_dataset", "dataset_license")
# Output columns holding a media path: `{modality}_file_path` (phase 1, EShot), `{role}_file_path` (phase 2).
PATH_SUFFIX = "_file_path"
PHASE2_ROLES = ("paired", "annotated")
EMM1_HOMEPAGE = "https://data.encord.com/e-mm1/explorer"
EMM1_CITATION = """\
@misc{emm1_2025,
  title  = {E-MM1: The World's Largest Multimodal Dataset},
  author = {Encord},
  year   = {2025},
  url    = {https://data.encord.com/e-mm1/explorer}
}
"""


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
