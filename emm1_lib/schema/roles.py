"""Column roles of the pre-joined Parquet generation (the official Hub copy), for either naming style.

The Hub copy (`encord-team/E-MM1-100M`: `data/nn_{01..16}.parquet`; `encord-team/E-MM1-1M`:
`data/{paired}_to_{annotated}.parquet`) holds the CSV generations' joins already made. Its exact schema is not
known (UPSTREAM.md, "The official Hub copy"): users' code reads `caption`, `nn_index`, `file_name_image`,
`save_folder_image`, `source_dataset_image`, ... So columns are found by *role* (what a column holds, for
whom), each role accepting the spellings `{field}_{owner}` and `{owner}_{field}`, matched case-insensitively:

- phase 1 (E-MM1:100M): the caption (`caption`), its id (`encord_text_id`), the neighbour rank (`nn_index`,
  else the k of the file name), and per modality its id (`encord_{m}_id`), `save_folder_{m}`, `file_name_{m}`,
  `source_dataset_{m}`, `dataset_license_{m}`;
- phase 2 (E-MM1:1M): the caption and its id, `annotation` (a code or a label), and for the paired and the
  annotated item its id, save folder and file name, named after the role (`file_name_paired`,
  `encord_paired_id`) or after the item's modality, which the file name gives (`file_name_audio` in
  `audio_to_image.parquet`); `paired_modality` / `annotated_modality` when present (else the file name's).

Required roles are those without which no output row can be built (the caption, the annotation, the two path
parts of every wanted modality); the others are optional (null output columns, one warning). This module only
names and matches; the rules on what a match means live in `emm1_lib.schema.rules` (`prejoined_columns`).
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

from emm1_lib.schema.layout import MODALITIES
from emm1_lib.schema.layout import PHASE2_ROLES
from emm1_lib.schema.layout import PROVENANCE_COLUMNS

# Folders a Hub repository is cloned into (`git clone .../E-MM1-100M`), beside the CSV generations' names.
HUB_PHASE1_FOLDERS = ("E-MM1-100M",)
HUB_PHASE2_FOLDERS = ("E-MM1-1M",)
# The Hub repositories keep their Parquet files in `data/`.
HUB_DATA_FOLDER = "data"
# `nn_01.parquet`, or the Hub's shard spelling `nn_01-00000-of-00003.parquet`.
_SHARD = r"(?:-\d+-of-\d+)?\.parquet"
PHASE1_FILE = re.compile(r"^nn_(\d{1,2})" + _SHARD + "$")
PHASE2_FILE = re.compile(r"^(" + "|".join(MODALITIES) + r")_to_(" + "|".join(MODALITIES) + r")" + _SHARD + "$")
MEDIA_FIELDS = ("id", "save_folder", "file_name") + PROVENANCE_COLUMNS
PATH_FIELDS = ("save_folder", "file_name")


def phase1_file_name(k: int) -> str:
    """The Hub's file of neighbour rank `k`: `nn_01.parquet` ... `nn_16.parquet`."""
    return f"nn_{k:02d}.parquet"


def phase2_file_name(paired: str, annotated: str) -> str:
    """The Hub's file of one modality pair: `audio_to_image.parquet`."""
    return f"{paired}_to_{annotated}.parquet"


def file_key(name: str) -> Optional[Union[int, Tuple[str, str]]]:
    """What a pre-joined file name says: the neighbour rank k (phase 1), the (paired, annotated) pair
    (phase 2), or None for any other file."""
    match = PHASE1_FILE.match(name)
    if match:
        return int(match.group(1))
    match = PHASE2_FILE.match(name)
    if match:
        return match.group(1), match.group(2)
    return None


def spellings(field_name: str, owner: str) -> Tuple[str, ...]:
    """The accepted column names of one role, e.g. ("file_name", "image") -> file_name_image, image_file_name."""
    if field_name == "id":
        return f"encord_{owner}_id", f"encord_id_{owner}", f"{owner}_encord_id"
    if field_name == "caption":
        return "caption", "caption_text", "text_caption"
    if field_name == "modality":
        return f"{owner}_modality", f"modality_{owner}"
    if not owner:
        return (field_name,)
    return f"{field_name}_{owner}", f"{owner}_{field_name}"


@dataclass(frozen=True)
class Role:
    """One role: who it is about (`owner`: "text", a modality, "paired"/"annotated", or "" for the row's own
    `nn_index` / `annotation`), what it holds (`field`), the column names that fill it and whether it is required."""

    owner: str
    field: str
    names: Tuple[str, ...]
    required: bool

    @property
    def key(self) -> str:
        """`image.file_name`, `text.caption`, `nn_index`: how readers ask for the role's column."""
        return f"{self.owner}.{self.field}" if self.owner else self.field

    def describe(self) -> str:
        """The role and its accepted names, for messages: `image file_name (file_name_image or image_file_name)`."""
        return f"{self.owner + ' ' if self.owner else ''}{self.field} ({' or '.join(self.names)})"


def phase1_roles(modalities: Sequence[str] = MODALITIES) -> List[Role]:
    """The roles of an `nn_k.parquet` file for the wanted modalities."""
    roles = [Role("text", "caption", spellings("caption", "text"), True),
             Role("text", "id", spellings("id", "text"), False),
             Role("", "nn_index", spellings("nn_index", ""), False)]
    for m in modalities:
        roles += [Role(m, f, spellings(f, m), f in PATH_FIELDS) for f in MEDIA_FIELDS]
    return roles


def phase2_roles(paired: str, annotated: str) -> List[Role]:
    """The roles of a `{paired}_to_{annotated}.parquet` file: each item's columns named after its role or its modality."""
    roles = [Role("text", "caption", spellings("caption", "text"), True),
             Role("text", "id", spellings("id", "text"), False),
             Role("", "annotation", spellings("annotation", ""), True)]
    for role, modality in zip(PHASE2_ROLES, (paired, annotated)):
        roles.append(Role(role, "modality", spellings("modality", role), False))
        for f in ("id",) + PATH_FIELDS:
            roles.append(Role(role, f, spellings(f, role) + spellings(f, modality), f in PATH_FIELDS))
    return roles


@dataclass
class ColumnMap:
    """How one pre-joined file's columns fill the roles.

    Attributes:
        file: the Parquet file.
        found: its columns, in file order.
        columns: role key -> the column that fills it.
        missing: roles no column fills (required ones make the layout unusable; optional ones give nulls).
        ambiguous: role key -> the two or more columns that would fill it.
        implied: what the file name says: `{"nn_index": k}` or `{"paired.modality": p, "annotated.modality": a}`.
    """

    file: str
    found: List[str]
    columns: Dict[str, str] = field(default_factory=dict)
    missing: List[Role] = field(default_factory=list)
    ambiguous: Dict[str, List[str]] = field(default_factory=dict)
    implied: Dict[str, object] = field(default_factory=dict)
    roles: List[Role] = field(default_factory=list)

    def get(self, key: str) -> Optional[str]:
        """The column filling role `key`, or None."""
        return self.columns.get(key)

    @property
    def missing_required(self) -> List[Role]:
        return [r for r in self.missing if r.required]

    @property
    def missing_optional(self) -> List[Role]:
        """Optional roles with no column and no value implied by the file name: their output is null."""
        return [r for r in self.missing if not r.required and r.key not in self.implied]

    def read_columns(self) -> List[str]:
        """The file's columns to read (each once, in file order)."""
        wanted = set(self.columns.values())
        return [c for c in self.found if c in wanted]


def resolve_columns(file: str, columns: Sequence[str], roles: Sequence[Role],
                    implied: Optional[Dict[str, object]] = None) -> ColumnMap:
    """Match a file's columns to `roles` (case-insensitively, each role's accepted names in order)."""
    by_lower: Dict[str, List[str]] = {}
    for name in columns:
        by_lower.setdefault(name.lower(), []).append(name)
    result = ColumnMap(file, list(columns), implied=dict(implied or {}), roles=list(roles))
    for role in roles:
        hits: List[str] = []
        for name in role.names:
            for column in by_lower.get(name.lower(), []):
                if column not in hits:
                    hits.append(column)
        if len(hits) > 1:
            result.ambiguous[role.key] = hits
        elif hits:
            result.columns[role.key] = hits[0]
        else:
            result.missing.append(role)
    return result
