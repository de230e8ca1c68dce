"""Checks of the builders' config parameters, run when a builder is made (before any data is read).

An error names the config, the parameter and the value given, and says what is accepted: a value out of
range would otherwise surface later as a pyarrow or numpy error naming neither (`batch_size=0`), or be
taken silently for something else (`decode="no"` is true).
"""
from typing import Any, Mapping, Optional

import numpy as np

from emm1_lib.schema.triplets import is_integer

# Numeric options of the media features (see `media.features`): the smallest accepted value, and whether
# None (the feature's "keep as it is") is accepted.
MEDIA_OPTION_NUMBERS = {
    "num_points": (1, True),
    "mesh_points": (1, False),
    "seed": (0, False),
    "sampling_rate": (1, True),
    "stream_index": (0, False),
}
MEDIA_OPTION_FLAGS = ("mono", "normalize")


def check_integer(config_name: str, parameter: str, value: Any, minimum: int, maximum: Optional[int] = None,
                  optional: bool = False) -> None:
    """Raise `ValueError` unless `value` is an integer in `[minimum, maximum]` (or None when `optional`)."""
    if value is None and optional:
        return
    if is_integer(value) and value >= minimum and (maximum is None or value <= maximum):
        return
    accepted = f"an integer from {minimum} to {maximum}" if maximum is not None else f"an integer >= {minimum}"
    raise ValueError(f"{config_name}: {parameter}={value!r} is not accepted; give {accepted}"
                     f"{' or None' if optional else ''}.")


def check_flag(config_name: str, parameter: str, value: Any) -> None:
    """Raise `ValueError` unless `value` is True or False (numpy's included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{config_name}: {parameter}={value!r} is not accepted; give True or False.")


def check_media_option_values(config_name: str, parameter: str, options: Mapping[str, Any]) -> None:
    """The numeric and yes/no options of one modality's media feature; `parameter` names them in the error
    (e.g. "media_options['points']"). Option names are checked by the feature itself."""
    for name, value in options.items():
        where = f"{parameter}[{name!r}]"
        if name in MEDIA_OPTION_NUMBERS:
            minimum, optional = MEDIA_OPTION_NUMBERS[name]
            check_integer(config_name, where, value, minimum, optional=optional)
        elif name in MEDIA_OPTION_FLAGS:
            check_flag(config_name, where, value)
