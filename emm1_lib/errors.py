"""Error and warning types raised by the E-MM1 builders and tools, and the `Violation` the data rules return."""
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Sequence, Tuple

SEVERITIES = ("error", "warning", "note")


class EMM1DataError(ValueError):
    """A metadata or media file is missing, malformed or unsafe; the message names the file and what to do.

    `file` and `line` (1-based, header = 1; in a Parquet file, the row numbered from 1) say where, when known;
    `code` names the broken rule
    (the `emm1 validate` finding code).
    """

    def __init__(self, message: str, file: Optional[str] = None, line: Optional[int] = None,
                 code: Optional[str] = None):
        super().__init__(message)
        self.file = file
        self.line = line
        self.code = code

    def __reduce__(self):  # keep file/line/code through pickling (num_proc workers)
        return type(self), (str(self), self.file, self.line, self.code)


class DanglingIdWarning(UserWarning):
    """Ids referenced by a grouping file have no row in the matching infos table (kept as nulls, counted)."""


class UnembeddedMediaWarning(UserWarning):
    """`resolve()` without a root on an export with the media inside: some items were published without bytes
    (counted per column); their stored paths are not opened."""


class MissingRoleWarning(UserWarning):
    """A pre-joined Parquet file has no column for an optional role (e.g. `source_dataset_image`): its output is null."""


@dataclass(frozen=True)
class Violation:
    """One broken data rule, as the rule functions of `emm1_lib.schema.rules` return it.

    The builders raise the first error (`raise_first`); `emm1 validate` reports every violation.

    Attributes:
        code: the rule broken (`unsafe_path`, `bad_value`, ...), also the validator's finding code.
        file: the file breaking it.
        message: the builder's error: names the file, the first offending line / row / id and value,
            and what to do.
        severity: "error" (the builder refuses), "warning" (kept and counted, or looks wrong) or "note".
        lines: 1-based file lines (header = 1) of the offending rows, every one the rule could locate (in a
            Parquet file: rows numbered from 1).
        values: the offending values (or a description of each).
        count: how many rows / ids / values break the rule (exact, even when `lines` is shorter).
        summary: the validator's wording for all of them, without the file (the report prints it);
            `{count}` is replaced by `count`. None: the report uses `message`.
    """

    code: str
    file: str
    message: str
    severity: str = "error"
    lines: Tuple[int, ...] = ()
    values: Tuple[Any, ...] = ()
    count: int = 1
    summary: Optional[str] = None

    @property
    def line(self) -> Optional[int]:
        """The first offending line, when known."""
        return self.lines[0] if self.lines else None

    def describe(self) -> str:
        """The validator's text: `summary` with the count filled in, else `message`."""
        return self.message if self.summary is None else self.summary.replace("{count}", f"{self.count:,}")

    def error(self) -> EMM1DataError:
        """The `EMM1DataError` a builder raises for this violation."""
        return EMM1DataError(self.message, file=self.file, line=self.line, code=self.code)


def raise_first(violations: Iterable[Violation]) -> List[Violation]:
    """Raise the first error of `violations` (an `EMM1DataError`); return the others (warnings, notes)."""
    rest = []
    for violation in violations:
        if violation.severity == "error":
            raise violation.error()
        rest.append(violation)
    return rest


def merge_violations(violations: Sequence[Violation], max_listed: Optional[int] = None) -> List[Violation]:
    """One violation per (code, file, severity, summary): lines, values and counts of the pieces added up
    (a rule applied piece by piece, e.g. to the byte ranges of a grouping file). The first piece's message stays."""
    merged: dict = {}
    for v in violations:
        key = (v.code, v.file, v.severity, v.summary)
        if key not in merged:
            merged[key] = v
            continue
        first = merged[key]
        values = first.values + v.values
        merged[key] = Violation(first.code, first.file, first.message, first.severity, first.lines + v.lines,
                                values[:max_listed] if max_listed else values, first.count + v.count, first.summary)
    return list(merged.values())
