"""Error and warning types raised by the E-MM1 builders and tools."""


class EMM1DataError(ValueError):
    """A metadata or media file is missing, malformed or unsafe; the message names the file and what to do."""


class DanglingIdWarning(UserWarning):
    """Ids referenced by a grouping file have no row in the matching infos table (kept as nulls, counted)."""
