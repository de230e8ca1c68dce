"""Where E-MM1 files live: folder names of both schema generations and data-dir detection.

The seed draft and the released dataset name their folders differently (see UPSTREAM.md);
users may point `data_dir` at the split folder itself or at a parent that holds it.
Paths may be local or remote URLs (anything fsspec opens), so probing is by file, not by folder.
"""
from typing import List, Optional, Sequence, Union

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
# Output columns holding a media path: `{modality}_file_path` (EShot; phase 1 with `file_path_columns=True`, which
# the exports ask for), `{role}_file_path` (phase 2).
PATH_SUFFIX = "_file_path"
PHASE2_ROLES = ("paired", "annotated")
# triplets.csv of both generations (UPSTREAM.md); the seed adds one `encord_{modality}_id` column per modality.
TRIPLET_COLUMNS = {
    "released": ("encord_text_id", "paired_modality", "annotated_modality", "encord_paired_id", "encord_annotated_id",
                 "annotation"),
    "seed": ("encord_text_id", "modality_1", "modality_2", "annotated_modality", "annotation"),
}
EMM1_HOMEPAGE = "https://data.encord.com/e-mm1/explorer"
EMM1_CITATION = """\
@misc{emm1_2025,
  title  = {E-MM1: The World's Largest Multimodal Dataset},
  author = {Encord},
  year   = {2025},
  url    = {https://data.encord.com/e-mm1/explorer}
}
"""


def split_dir_candidates(data_dir: str, folder_names: Sequence[str]) -> List[str]:
    """Where a split folder may be, in the order tried: `data_dir` itself, then each of `folder_names` below it."""
    data_dir = normalize_root(data_dir)
    return [data_dir] + [join(data_dir, name) for name in folder_names]


def locate_split_dir(data_dir: str, folder_names: Sequence[str], markers: Sequence[str]) -> Optional[str]:
    """The first candidate folder (`split_dir_candidates`) holding any of `markers`, or None."""
    for candidate in split_dir_candidates(data_dir, folder_names):
        if any(exists(join(candidate, marker)) for marker in markers):
            return candidate
    return None


def find_split_dir(data_dir: str, folder_names: Sequence[str], marker: Union[str, Sequence[str]], what: str) -> str:
    """The folder holding `marker` (or any of several): `data_dir` itself or one of `folder_names` below it.

    Raises an `EMM1DataError` listing every place tried when none holds the marker.
    """
    markers = [marker] if isinstance(marker, str) else list(marker)
    found = locate_split_dir(data_dir, folder_names, markers)
    if found is not None:
        return found
    candidates = split_dir_candidates(data_dir, folder_names)
    tried = "\n  ".join(join(c, m) for c in candidates for m in markers)
    names = " or ".join(repr(m) for m in markers)
    raise EMM1DataError(
        f"{what}: no {names} found. Tried:\n  {tried}\n"
        f"Pass data_dir= the {' or '.join(folder_names)} folder (or a parent holding it).",
        file=candidates[0], code="missing_file",
    )
