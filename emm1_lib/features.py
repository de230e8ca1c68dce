"""Media features of the E-MM1 builders (placeholder until the decoded-media work lands)."""
from typing import Any

import datasets


def media_feature(modality: str, decode: bool = True, on_missing_media: str = "error", **options: Any):
    """The feature of the media column of `modality`; builders yield a string path column for it."""
    if modality == "image":
        return datasets.Image(decode=decode)
    return datasets.Value("string")
