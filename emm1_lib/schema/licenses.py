"""Which media items may be copied into a published dataset, by their source licence.

E-MM1's database is ODC-By, but every media item keeps the licence of its source dataset
(`{modality}_dataset_license`, UPSTREAM.md "Licensing"). Embedding an item's bytes in a published
repository redistributes it, so what is embedded is chosen by licence, never by default:
`LicensePolicy` names the licences allowed; `REDISTRIBUTABLE_LICENSES` is the one documented
allow-list behind `emm1 export --redistributable-only`.

`REDISTRIBUTABLE_LICENSES`: licences that allow anyone to copy and share the item for any purpose
(commercial use included) with attribution, which the card's provenance columns give. Left out on
purpose: non-commercial licences (CC BY-NC*, a Hub repo is used for commercial training too),
no-derivatives licences (CC BY-ND*), and site terms of use (Flickr, YouTube) that grant no
redistribution. Spelling is forgiving: case, spaces, hyphens and a leading "the" do not matter,
and "CC-BY-4.0" equals "CC BY 4.0".
"""
import re
from dataclasses import dataclass
from typing import FrozenSet
from typing import Iterable
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc

REDISTRIBUTABLE_LICENSES = (
    "CC0 1.0",
    "Public Domain",
    "PDDL 1.0",
    "CC BY 2.0",
    "CC BY 2.5",
    "CC BY 3.0",
    "CC BY 4.0",
    "CC BY-SA 2.0",
    "CC BY-SA 3.0",
    "CC BY-SA 4.0",
    "ODC-By 1.0",
    "ODbL 1.0",
    "MIT",
    "Apache 2.0",
    "BSD 3-Clause",
)
# What the card calls items whose table records no licence (phase-2 triplets, EShot).
UNRECORDED = "(not recorded)"

_SEPARATORS = re.compile(r"[\s_\-]+")


def normalize_license(name: str) -> str:
    """The comparison key of a licence name: lower case, separators removed ("CC-BY-4.0" == "cc by 4.0")."""
    key = _SEPARATORS.sub("", name.strip().lower())
    return key[3:] if key.startswith("the") else key


def normalize_license_array(names: pa.Array) -> pa.Array:
    """`normalize_license` on an Arrow string column (nulls stay null)."""
    key = pc.replace_substring_regex(pc.utf8_lower(pc.utf8_trim_whitespace(names.cast(pa.string()))), r"[\s_\-]+", "")
    return pc.replace_substring_regex(key, "^the", "")


@dataclass(frozen=True)
class LicensePolicy:
    """Which items an export embeds.

    allowed: normalised licence names (`normalize_license`) that may be embedded; None embeds every item,
        whatever its licence (only by an explicit choice: `all_licenses=True`, `--all-licenses`).
    description: how the card states the policy.
    """

    allowed: Optional[FrozenSet[str]]
    description: str

    def allows(self, licenses: Optional[pa.Array], length: int) -> pa.Array:
        """Boolean mask of the items that may be embedded; `licenses=None` (no licence column) allows only with
        every licence allowed, and a null licence is never allowed by a list."""
        if self.allowed is None:
            return pa.array([True] * length, pa.bool_())
        if licenses is None:
            return pa.array([False] * length, pa.bool_())
        keys = normalize_license_array(licenses)
        return pc.fill_null(pc.is_in(keys, value_set=pa.array(sorted(self.allowed), pa.string())), False)


def license_policy(
    licenses: Optional[Iterable[str]] = None, redistributable_only: bool = False, all_licenses: bool = False
) -> LicensePolicy:
    """The policy of `--licenses A B ...`, `--redistributable-only` or `--all-licenses` (exactly one).

    Raises ValueError when none or several are given: embedding must be a stated choice.
    """
    chosen = [name for name, on in (("licenses", licenses is not None), ("redistributable_only", redistributable_only),
                                    ("all_licenses", all_licenses)) if on]
    if len(chosen) != 1:
        raise ValueError(
            "Embedding media redistributes each item under its source licence: choose which, with exactly one of "
            "licenses=[...] (--licenses \"CC BY 4.0\" MIT ...), redistributable_only=True (--redistributable-only: "
            f"{', '.join(REDISTRIBUTABLE_LICENSES)}) or all_licenses=True (--all-licenses)"
            + (f"; got {', '.join(chosen)}." if chosen else ".")
        )
    if all_licenses:
        return LicensePolicy(None, "every item, whatever its licence (--all-licenses)")
    names = list(REDISTRIBUTABLE_LICENSES) if redistributable_only else list(licenses or [])
    if not names or any(not n.strip() for n in names):
        raise ValueError(f"licenses={names!r}: give at least one non-empty licence name.")
    how = "the redistributable allow-list" if redistributable_only else "the licences given"
    return LicensePolicy(frozenset(normalize_license(n) for n in names), f"{how}: {', '.join(names)}")
