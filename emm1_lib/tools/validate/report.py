"""What `validate_tree` returns: findings (one per broken rule and file), per-split and per-modality counts."""
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence


from emm1_lib.schema.rules import plain_value
from emm1_lib.errors import SEVERITIES
from emm1_lib.errors import Violation
from emm1_lib.io.fs import is_remote

# How many line numbers / values a finding lists (counts are always exact; dangling ids are all listed).
MAX_LISTED = 50


@dataclass
class Finding:
    """One problem: what (`code`), where (`file`, 1-based `lines`, header = line 1; in a Parquet file, rows
    numbered from 1) and how many."""

    severity: str
    code: str
    file: str
    message: str
    lines: List[int] = field(default_factory=list)
    values: List[Any] = field(default_factory=list)
    count: int = 1
    split: Optional[str] = None
    modality: Optional[str] = None

    def to_text(self, base: Optional[str] = None) -> str:
        where = _rel(self.file, base) if base else self.file
        if self.lines:
            more = f" (+{self.count - len(self.lines)} more)" if self.count > len(self.lines) else ""
            unit = "row" if self.file.endswith(".parquet") else "line"  # Parquet findings number rows from 1
            where += f" {unit}{'s' if len(self.lines) > 1 else ''} {', '.join(map(str, self.lines[:10]))}"
            where += " ..." if len(self.lines) > 10 else ""
            where += more
        return f"{self.severity.upper():7} [{self.code}] {where}: {self.message}"


@dataclass
class ModalityStats:
    """Per split and modality (`text` included): the infos table and the references to it."""

    infos_file: Optional[str] = None
    infos_rows: int = 0
    invalid_ids: int = 0  # infos rows whose id is missing, negative or not an integer
    duplicate_ids: List[int] = field(default_factory=list)  # ids on more than one infos row (join ambiguous)
    unsafe_paths: int = 0  # infos rows whose save_folder/file_name is refused
    references: int = 0  # non-null ids pointing at this modality in grouping / triplet / category files
    null_references: int = 0  # empty id cells in rows that need one
    dangling: int = 0  # references with no infos row (kept by the builder, looked-up values null)
    dangling_ids: List[int] = field(default_factory=list)  # every distinct dangling id, sorted
    media_checked: int = 0
    missing_media: int = 0
    outside_root: int = 0  # media that resolve (symlinks) outside the media root


@dataclass
class SplitReport:
    """One metadata folder: `phase1` (E-MM1:100M), `phase2` (E-MM1:1M) or `eshot`."""

    name: str
    path: str
    schema: Optional[str] = None  # "released" or "seed", detected from the headers; "hub": pre-joined Parquet
    tables: Dict[str, int] = field(default_factory=dict)  # file -> data rows checked
    duplicate_rows: Dict[str, int] = field(default_factory=dict)  # grouping file -> identical extra rows (kept)
    modalities: Dict[str, ModalityStats] = field(default_factory=dict)

    def stats(self, modality: str) -> ModalityStats:
        return self.modalities.setdefault(modality, ModalityStats())


@dataclass
class Report:
    """Everything `validate_tree` found. `ok` is True when there is no error."""

    data_dir: str
    root_data_path: Optional[str]
    check_media: bool
    splits: List[SplitReport] = field(default_factory=list)
    findings: List[Finding] = field(default_factory=list)

    @property
    def errors(self) -> List[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> List[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def split(self, name: str) -> SplitReport:
        """The report of split `phase1`, `phase2` or `eshot` (KeyError when it was not found)."""
        for s in self.splits:
            if s.name == name:
                return s
        raise KeyError(f"no split {name!r} in this report (found {[s.name for s in self.splits]})")

    def find(self, code: Optional[str] = None, file: Optional[str] = None, severity: Optional[str] = None) -> List[Finding]:
        """Findings matching a code, a file (suffix match, e.g. "infos/image.csv") and a severity."""
        out = []
        for f in self.findings:
            if code is not None and f.code != code:
                continue
            if severity is not None and f.severity != severity:
                continue
            if file is not None and not f.file.replace(os.sep, "/").endswith(file.replace(os.sep, "/")):
                continue
            out.append(f)
        return out

    def to_dict(self) -> Dict[str, Any]:
        return {
            "data_dir": self.data_dir,
            "root_data_path": self.root_data_path,
            "check_media": self.check_media,
            "ok": self.ok,
            "num_errors": len(self.errors),
            "num_warnings": len(self.warnings),
            "splits": [asdict(s) for s in self.splits],
            "findings": [asdict(f) for f in self.findings],
        }

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def to_text(self) -> str:
        out = [f"E-MM1 validation of {self.data_dir}"]
        out.append(f"media root: {self.root_data_path or '(none)'}; media checked: {'yes' if self.check_media else 'no'}")
        columns = ("infos_rows", "invalid_ids", "duplicate_ids", "unsafe_paths", "references", "null_references", "dangling")
        if self.check_media:
            columns += ("media_checked", "missing_media", "outside_root")
        for s in self.splits:
            out.append("")
            out.append(f"{s.name}: {s.path} ({s.schema or 'unknown'} schema)")
            for table, rows in s.tables.items():
                dup = s.duplicate_rows.get(table)
                out.append(f"  {_rel(table, s.path):<34} {rows:>12,} rows" + (f"  ({dup:,} identical duplicate rows, kept)" if dup else ""))
            header = "  " + f"{'modality':<9}" + "".join(f"{c:>16}" for c in columns)
            out.append(header)
            for m, st in s.modalities.items():
                cells = [len(getattr(st, c)) if isinstance(getattr(st, c), list) else getattr(st, c) for c in columns]
                out.append("  " + f"{m:<9}" + "".join(f"{v:>16,}" for v in cells))
                if st.dangling_ids:
                    shown = ", ".join(map(str, st.dangling_ids[:20]))
                    more = f" ... ({len(st.dangling_ids) - 20} more; --json lists all)" if len(st.dangling_ids) > 20 else ""
                    out.append(f"  {'':<9} dangling ids: {shown}{more}")
        for severity in SEVERITIES:
            found = [f for f in self.findings if f.severity == severity]
            if found:
                out.append("")
                out.append(f"{severity}s ({len(found)}):")
                out.extend("  " + f.to_text(self.data_dir) for f in found)
        out.append("")
        verdict = "OK" if self.ok else "FAILED"
        out.append(f"{verdict}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return "\n".join(out)


def _rel(path: str, base: str) -> str:
    try:
        rel = os.path.relpath(path, base) if not is_remote(path) else path
    except ValueError:  # another drive on Windows
        return path
    return path if rel.startswith("..") else rel


class Collector:
    """Collects the findings of one report; the checks call it with violations or their own findings."""

    def __init__(self, report: Report):
        self.report = report

    def add(self, severity: str, code: str, file: str, message: str, lines: Sequence[int] = (), values: Sequence = (),
            count: Optional[int] = None, split: Optional[str] = None, modality: Optional[str] = None) -> Finding:
        lines = [int(x) for x in list(lines)[:MAX_LISTED]]
        values = [plain_value(v) for v in list(values)[:MAX_LISTED]]
        finding = Finding(severity, code, file, message, lines, values, count if count is not None else max(1, len(lines)),
                          split, modality)
        self.report.findings.append(finding)
        return finding

    def error(self, *args, **kwargs) -> Finding:
        return self.add("error", *args, **kwargs)

    def warning(self, *args, **kwargs) -> Finding:
        return self.add("warning", *args, **kwargs)

    def note(self, *args, **kwargs) -> Finding:
        return self.add("note", *args, **kwargs)

    def violations(self, violations: Sequence[Violation], split: Optional[str] = None,
                   modality: Optional[str] = None) -> bool:
        """Report each violation of a rule; True when none of them is an error."""
        for v in violations:
            self.add(v.severity, v.code, v.file, v.describe(), lines=v.lines, values=v.values, count=v.count,
                     split=split, modality=modality)
        return not any(v.severity == "error" for v in violations)
