"""Where each `source_dataset` comes from: data (the shipped `sources.json`), not code branches.

`--sources-file FILE` (a JSON object of the same shape) adds or replaces entries; `--mirror SOURCE=URL`
replaces one entry's `location`. Sources with no entry (WavCaps and VideoRefer in the release guide) are
reported with their counts by the caller, never skipped silently.
"""
import json
import os
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

from emm1_lib.errors import EMM1DataError

SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sources.json")
KINDS = ("url", "http_zip", "hub_zip", "http_tar", "http_parquet", "hub_parquet", "hub_tar", "youtube")
# The kinds this version fetches; the others are planned and reported as "not supported yet".
SUPPORTED_KINDS = KINDS
# Archives read front to back: every item of such a source is one task (the archive is streamed once).
STREAMED_KINDS = ("http_tar", "http_parquet", "hub_tar", "hub_parquet")
TAR_KINDS = ("http_tar", "hub_tar")
ZIP_KINDS = ("http_zip", "hub_zip")
HUB_KINDS = ("hub_zip", "hub_tar", "hub_parquet")


@dataclass(frozen=True)
class Source:
    """One entry of the sources file.

    Attributes:
        name: the `source_dataset` value it serves.
        kind: one of `KINDS` (how the files are fetched).
        location: the URL (http_zip; http_tar, http_parquet: one URL or a list, read in turn), URL template
            (youtube), or
            None (url: `file_id` is the URL; hub_*: `repo`).
        member: `str.format` template of the archive member holding an item, with `file_id`.
        file_id: "int" when `file_id` must be converted to an integer for `member` (COCO's `{file_id:012d}`).
        repo, file: the Hub dataset repo and file (hub_* kinds).
        files: the Hub files (hub_* kinds), each a path in the repo or a glob (`data/train-*.parquet`), matched
            against the repo's file listing; `file` is the one-file spelling of the same.
    """

    name: str
    kind: str
    location: Optional[Union[str, Tuple[str, ...]]] = None
    member: Optional[str] = None
    file_id: str = "str"
    repo: Optional[str] = None
    file: Optional[str] = None
    files: Tuple[str, ...] = ()

    @property
    def supported(self) -> bool:
        return self.kind in SUPPORTED_KINDS and (self.kind not in HUB_KINDS or bool(self.repo and self.patterns))

    @property
    def patterns(self) -> Tuple[str, ...]:
        """The Hub file paths or globs of a hub_* source (`files`, else `file`)."""
        return tuple(self.files) or ((self.file,) if self.file else ())

    @property
    def locations(self) -> Tuple[str, ...]:
        """`location` as a tuple of URLs (empty when None)."""
        if self.location is None:
            return ()
        return (self.location,) if isinstance(self.location, str) else tuple(self.location)

    def member_name(self, file_id: str) -> str:
        """The archive member of `file_id` (raises ValueError when `file_id` does not fit the template)."""
        value = int(file_id) if self.file_id == "int" else file_id
        return (self.member or "{file_id}").format(file_id=value)

    def mechanism(self) -> str:
        """A short description for `--dry-run`."""
        if not self.supported:
            return f"{self.kind}: not supported yet"
        hub = f"hub {self.repo}: {', '.join(self.patterns)}"
        where = {"url": "file_id URLs", "http_zip": self.location, "hub_zip": hub, "hub_tar": hub, "hub_parquet": hub,
                 "http_tar": ", ".join(self.locations), "http_parquet": ", ".join(self.locations),
                 "youtube": f"yt-dlp sections of {self.location}"}[self.kind]
        return f"{self.kind} ({where})"


def _parse(entries: Mapping, where: str) -> Dict[str, Source]:
    if not isinstance(entries, Mapping):
        raise EMM1DataError(f"{where}: expected a JSON object {{source_dataset: {{kind, location, ...}}}}.", file=where)
    out = {}
    fields = set(Source.__dataclass_fields__) - {"name"}
    for name, entry in entries.items():
        if name.startswith("_"):
            continue
        if not isinstance(entry, Mapping) or entry.get("kind") not in KINDS:
            raise EMM1DataError(f"{where}: source {name!r}: expected an object with kind in {list(KINDS)}, "
                                f"got {entry!r}.", file=where)
        extra = sorted(set(entry) - fields)
        if extra:
            raise EMM1DataError(f"{where}: source {name!r}: unknown field(s) {extra}; known: {sorted(fields)}.", file=where)
        values = {k: v for k, v in entry.items() if k in fields}
        if isinstance(values.get("location"), list):
            values["location"] = tuple(values["location"])
        if "files" in values:
            files = values["files"]
            values["files"] = (files,) if isinstance(files, str) else tuple(files)
        out[name] = Source(name=name, **values)
    return out


def load_sources(files: Sequence[str] = (), mirrors: Optional[Mapping[str, str]] = None) -> Dict[str, Source]:
    """The shipped sources, then each of `files` (later entries replace earlier ones), then `mirrors` locations."""
    sources: Dict[str, Source] = {}
    for path in [SHIPPED, *files]:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as err:
            raise EMM1DataError(f"{path}: cannot read the sources file ({err}).", file=path, code="missing_file") from err
        except ValueError as err:
            raise EMM1DataError(f"{path}: not valid JSON ({err}).", file=path) from err
        sources.update(_parse(data, path))
    for name, url in (mirrors or {}).items():
        if name not in sources:
            raise EMM1DataError(f"--mirror {name}={url}: no source named {name!r}; known: {sorted(sources)}. "
                                "Add it with --sources-file.")
        old = sources[name]
        # a mirrored Hub archive is a plain HTTP one
        kind = {"hub_zip": "http_zip", "hub_tar": "http_tar", "hub_parquet": "http_parquet"}.get(old.kind, old.kind)
        sources[name] = Source(name, kind, url, old.member, old.file_id, old.repo, old.file)
    return sources
