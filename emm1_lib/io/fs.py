"""Local paths and URLs alike: joining, probing and normalising paths that may be fsspec URLs."""
import os
import re

import fsspec


# A URL starts with its scheme (`https://`, `hf://`, `zip://member::https://...`), or is an fsspec
# chain whose first link names a protocol (`simplecache::s3://...`).
_URL_START = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*(://|::)")


def is_remote(path: str) -> bool:
    """Whether `path` is a URL (http, hf, s3, fsspec chains) rather than a local path.

    Decided by the scheme the path starts with, never by a `://` further in: a local media path is
    `root/save_folder/folder/file_name`, and a `file_name` such as `http://a/x.jpg` from a CSV must not
    turn a local file (possibly a symlink out of the root) into a "remote" one that skips local checks.
    """
    return bool(_URL_START.match(path)) and not path.startswith("file://")


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
