"""Local paths and URLs alike: joining, probing and normalising paths that may be fsspec URLs."""
import os

import fsspec


def is_remote(path: str) -> bool:
    """Whether `path` is a URL (http, hf, s3, ...) rather than a local path."""
    return "://" in path and not path.startswith("file://")


def join(base: str, *parts: str) -> str:
    """Join path parts with "/" for URLs and the OS separator for local paths."""
    if is_remote(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base, *parts)


def exists(path: str) -> bool:
    """Whether a local or remote file exists (remote: an HTTP HEAD or the store's stat)."""
    if not is_remote(path):
        return os.path.exists(path)
    fs, fs_path = fsspec.core.url_to_fs(path)
    try:
        fs.info(fs_path)  # a HEAD over HTTP (fs.exists may GET the whole file)
        return True
    except (OSError, ValueError):  # FileNotFoundError included
        return False


def normalize_root(path: str) -> str:
    """An absolute local path (user folder expanded) or an unchanged URL, without a trailing separator."""
    if is_remote(path):
        return path.rstrip("/")
    return os.path.abspath(os.path.expanduser(path))
