"""The dataset card (`README.md`) of an exported E-MM1 Hub repository.

The YAML header is built with `huggingface_hub.DatasetCardData` plus `datasets`' own writer of
`dataset_info` (`DatasetInfosDict.to_dataset_card_data`), so stock `datasets` reads back the
configs and typed features exactly. The prose comes from `dataset_card/README.template.md`
(`string.Template` placeholders) and the citations from `dataset_card/citations.bib`.
"""
import os
import re
import string
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple

import datasets
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard
from huggingface_hub import DatasetCardData

from emm1_lib.errors import EMM1DataError

CARD_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "dataset_card")
TEMPLATE_FILE = "README.template.md"
CITATIONS_FILE = "citations.bib"
DEFAULT_REPO_ID = "your-org/e-mm1"
LICENSE = "odc-by"
PRETTY_NAME = "E-MM1"
TASK_CATEGORIES = (
    "feature-extraction",
    "zero-shot-classification",
    "image-to-text",
    "text-to-image",
    "text-to-audio",
    "text-to-video",
    "text-to-3d",
)
TAGS = ("multimodal", "retrieval", "image", "audio", "video", "point-cloud", "3d", "captions")
# The Hub's size buckets, by number of rows of the largest config.
_SIZE_BUCKETS = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
)
_SOURCE_LINE = re.compile(r"^%\s*source:\s*(?P<name>[^(]+?)\s*(\((?P<what>[^)]*)\))?\s*$")


@dataclass
class CardConfig:
    """What the card says about one exported config."""

    name: str
    description: str
    features: datasets.Features
    splits: Dict[str, int]  # split -> rows
    split_bytes: Dict[str, int]  # split -> uncompressed Arrow bytes
    files: Dict[str, List[str]] = field(default_factory=dict)  # split -> Parquet files, relative, "/"-separated
    download_size: int = 0  # bytes of the Parquet files

    @property
    def num_rows(self) -> int:
        return sum(self.splits.values())

    @classmethod
    def of(cls, exported: Any) -> "CardConfig":
        """From an exported config (`name`, `description`, `features`, `splits`, `split_bytes`, `files`, `file_bytes`)."""
        return cls(exported.name, exported.description, exported.features, dict(exported.splits),
                   dict(exported.split_bytes), {k: list(v) for k, v in exported.files.items()}, exported.file_bytes)


def size_category(num_rows: int) -> str:
    """The Hub's `size_categories` bucket for `num_rows` rows."""
    for limit, name in _SIZE_BUCKETS:
        if num_rows < limit:
            return name
    return "n>10B"


def human_bytes(num_bytes: int) -> str:
    """`268435456` -> `256 MiB`."""
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _read_card_file(name: str, card_dir: Optional[str]) -> str:
    path = os.path.join(card_dir or CARD_DIR, name)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError as err:
        raise EMM1DataError(
            f"{path}: dataset card file not found. It ships in the project's dataset_card/ folder; "
            "pass card_dir= the folder that holds README.template.md and citations.bib."
        ) from err


def source_citations(card_dir: Optional[str] = None) -> List[Dict[str, str]]:
    """The source datasets of `citations.bib`: `[{"name", "what", "bibtex"}]` in file order."""
    text = _read_card_file(CITATIONS_FILE, card_dir)
    sources: List[Dict[str, str]] = []
    for line in text.splitlines():
        match = _SOURCE_LINE.match(line)
        if match:
            sources.append({"name": match["name"], "what": match["what"] or "", "bibtex": ""})
        elif sources and not line.startswith("%"):
            sources[-1]["bibtex"] += line + "\n"
    for source in sources:
        source["bibtex"] = source["bibtex"].strip()
        if not source["bibtex"].startswith("@"):
            raise EMM1DataError(f"{os.path.join(card_dir or CARD_DIR, CITATIONS_FILE)}: no BibTeX entry after "
                                f"'% source: {source['name']}'.")
    return sources


def card_data(configs: Sequence[CardConfig], default_config: Optional[str] = None,
              with_features: bool = True) -> DatasetCardData:
    """The YAML header: licence, tasks, size, `configs:` (data files) and `dataset_info:` (features).

    `with_features=False` leaves `dataset_info` out (WebDataset shards: `datasets` infers their features).
    """
    if not configs:
        raise ValueError("A dataset card needs at least one exported config.")
    names = [c.name for c in configs]
    default_config = default_config if default_config in names else names[0]
    data = DatasetCardData(
        license=LICENSE,
        pretty_name=PRETTY_NAME,
        language=["en"],
        task_categories=list(TASK_CATEGORIES),
        size_categories=[size_category(max(c.num_rows for c in configs))],
        tags=list(TAGS),
    )
    # `configs:` in the Hub's format (the one `datasets.utils.metadata.MetadataConfigs` reads), in
    # builder order rather than sorted, with the default config marked.
    data["configs"] = [
        {
            "config_name": c.name,
            "data_files": [{"split": split, "path": f"{c.name}/{split}-*"} for split in c.splits],
            **({"default": True} if c.name == default_config else {}),
        }
        for c in configs
    ]
    if not with_features:
        return data
    infos = DatasetInfosDict(
        {
            c.name: datasets.DatasetInfo(
                features=c.features,
                splits=datasets.SplitDict.from_split_dict(
                    [{"name": s, "num_bytes": c.split_bytes.get(s, 0), "num_examples": n} for s, n in c.splits.items()]
                ),
                download_size=c.download_size,
                dataset_size=sum(c.split_bytes.values()),
            )
            for c in configs
        }
    )
    infos.to_dataset_card_data(data)
    return data


_PARTS = (
    ("phase1_", "- **E-MM1:100M** (`phase1_*` configs): for every caption, its *k*-th nearest image, audio clip, "
                "video and point cloud (k = 1 … 16), found by nearest-neighbour retrieval; `phase1_all` holds all 16. "
                "Over 100 M multimodal connections."),
    ("phase2_", "- **E-MM1:1M** (`phase2_triplets`): human-rated (caption, paired item, annotated item) triplets; "
                "`annotation` is a class label: {labels}."),
    ("eshot_", "- **EShot** (`eshot_audio`, `eshot_points`, split `test`): the zero-shot audio ↔ point-cloud "
               "benchmark; `category` is a class label over the benchmark's categories."),
)


def _parts(configs: Sequence[CardConfig], labels: str) -> str:
    names = [c.name for c in configs]
    lines = [text.format(labels=labels) for prefix, text in _PARTS if any(n.startswith(prefix) for n in names)]
    return "\n".join(lines)


def _configs_table(configs: Sequence[CardConfig]) -> str:
    rows = []
    for c in configs:
        files = sum(len(v) for v in c.files.values())
        description = " ".join(c.description.split()).replace("|", "\\|")
        rows.append(f"| `{c.name}` | {c.num_rows:,} | {files} | {description} |")
    return "\n".join(rows)


def render_card(
    configs: Sequence[CardConfig],
    repo_id: str = DEFAULT_REPO_ID,
    default_config: Optional[str] = None,
    citation: str = "",
    homepage: str = "",
    max_shard_bytes: int = 0,
    row_group_rows: int = 0,
    media_folders: Optional[Dict[str, str]] = None,
    card_dir: Optional[str] = None,
    with_features: bool = True,
    extra: str = "",
) -> str:
    """The text of `README.md` for an export of `configs` (validated by parsing it as a `DatasetCard`).

    `with_features`: write `dataset_info` (see `card_data`); `extra`: Markdown appended at the end.
    """
    data = card_data(configs, default_config, with_features)
    default = next(c["config_name"] for c in data["configs"] if c.get("default"))
    annotation = next((c.features["annotation"] for c in configs if "annotation" in c.features), None)
    labels = (
        ", ".join(f"{i} = {name}" for i, name in enumerate(annotation.names))
        if isinstance(annotation, datasets.ClassLabel)
        else "Good Match, Partial Match, Bad Match"
    )
    sources = source_citations(card_dir)
    folders_note = ""
    if media_folders:
        overrides = ", ".join(f"`{m}` files under `{folder}/`" for m, folder in sorted(media_folders.items()))
        folders_note = f"\nThis export was made with per-modality folder overrides: {overrides}.\n"
    template = string.Template(_read_card_file(TEMPLATE_FILE, card_dir))
    text = template.substitute(
        card_data=data.to_yaml(),
        homepage=homepage,
        parts=_parts(configs, labels),
        configs_table=_configs_table(configs),
        max_shard_size=human_bytes(max_shard_bytes) if max_shard_bytes else "the export's size bound",
        row_group_rows=f"{row_group_rows:,}" if row_group_rows else "the export's",
        repo_id=repo_id,
        default_config=default,
        media_folders_note=folders_note,
        sources_list=", ".join(f"{s['name']} ({s['what']})" if s["what"] else s["name"] for s in sources),
        emm1_citation=citation.strip(),
        source_citations="\n\n".join(s["bibtex"] for s in sources),
    )
    if extra:
        text = text.rstrip("\n") + "\n\n" + extra.strip("\n") + "\n"
    DatasetCard(text)  # raises if the YAML header does not parse
    return text


def embedded_media_section(policy: str, counts: Dict[Tuple[str, str], Dict[str, int]], fmt: str = "parquet") -> str:
    """The card's "Embedded media" section: the licence policy and, per modality and licence, the items
    embedded and not embedded (left out by the policy, or missing when exported).

    `counts`: `{(modality, licence): {"embedded", "excluded", "missing", "embedded_bytes"}}`.
    """
    lines = [
        "## Embedded media",
        "",
        f"The media columns hold the files' bytes for the items whose source licence the export allowed: {policy}. "
        "Every other item keeps its path relative to the media root (`save_folder/{modality folder}/file_name`, "
        "as in the `*_file_path` columns) and null bytes; its licence and source stay in the provenance columns "
        "(`{modality}_dataset_license`, `{modality}_source_dataset`). Get those items from their sources "
        "(`emm1 download`) and pass your media root to `emm1.resolve(ds, root=...)`.",
        "",
    ]
    if fmt == "parquet":
        lines += [
            "Features: `image` is `datasets.Image`, `audio` `datasets.Audio`, `video` `datasets.Video`, and "
            "`points` a `{bytes, path}` struct holding the point-cloud file; `emm1.resolve(ds)` (`pip install` this "
            "project, no torch needed) decodes all four.",
            "",
        ]
    else:
        lines += ["WebDataset shards: per row `{key}.json` (every column, relative paths, licences) and "
                  "`{key}.{modality}.{ext}` for each embedded item.", ""]
    lines += ["| modality | licence | embedded | not embedded (licence) | not embedded (file missing) | bytes embedded |",
              "|---|---|---:|---:|---:|---:|"]
    for (modality, licence), c in sorted(counts.items()):
        cell = licence.replace("|", "\\|")
        lines.append(f"| {modality} | {cell} | {c['embedded']:,} | {c['excluded']:,} | {c['missing']:,} | "
                     f"{human_bytes(c['embedded_bytes'])} |")
    if not counts:
        lines.append("| - | - | 0 | 0 | 0 | 0 B |")
    return "\n".join(lines)
