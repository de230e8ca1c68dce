"""Local paths and URLs alike: joining, probing, opening and normalising paths that may be fsspec URLs.

Remote paths are anything fsspec opens: `https://...`, and `hf://datasets/OWNER/NAME[@REVISION]/...`
(huggingface_hub's `HfFileSystem`: the Hub at `HF_ENDPOINT`, with the token of `use_hub_token`, else
huggingface_hub's own: `HF_TOKEN` or the saved login).
"""
import os
import re
from typing import Dict, List, Optional, Tuple, Union

import fsspec

from emm1_lib.errors import EMM1DataError

# A URL starts with its scheme (`https://`, `hf://`, `zip://member::https://...`), or is an fsspec
# chain whose first link names a protocol (`simplecache::s3://...`).
_URL_START = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*(://|::)")
# What a remote file reads beyond what is asked (fsspec's read-ahead block). fsspec's default, 5 MiB,
# fetched a whole small file for its header line and 5 MiB past every byte range of a grouping file.
REMOTE_BLOCK_BYTES = 64 << 10
HUB_PROTOCOL = "hf://"
_HUB_TYPES = ("datasets", "spaces", "models")
# Hub tokens given to a builder (`token=`), by repo ("datasets/OWNER/NAME"): see `use_hub_token`.
_HUB_TOKENS: Dict[str, Union[str, bool]] = {}


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


def hub_repo(path: str) -> Optional[str]:
    """The Hub repo of an `hf://` path as "datasets/OWNER/NAME" (revision left out), or None for other paths."""
    if not path.startswith(HUB_PROTOCOL):
        return None
    parts = path[len(HUB_PROTOCOL):].split("/")
    kind = parts.pop(0) if parts and parts[0] in _HUB_TYPES else "models"
    if len(parts) < 2:
        return None
    return f"{kind}/{parts[0]}/{parts[1].split('@', 1)[0]}"


def use_hub_token(data_dir: Optional[str], token: Union[str, bool, None]) -> None:
    """Read the Hub repo of `data_dir` (an `hf://` URL) with `token` in this process (None: huggingface_hub's
    own token, `HF_TOKEN` or the saved login; False: none).

    The readers take paths only, so a builder's `token=` is kept here, by repo. Worker processes started by
    fork inherit it; under another start method, give the token by `HF_TOKEN` or `hf auth login`.
    """
    repo = hub_repo(data_dir or "")
    if repo is not None and token is not None:
        _HUB_TOKENS[repo] = token


def hub_token(path: str) -> Union[str, bool, None]:
    """The token given (`use_hub_token`) for the Hub repo of an `hf://` path, or None."""
    repo = hub_repo(path)
    return _HUB_TOKENS.get(repo) if repo is not None else None


_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


def hub_commit(path: str) -> Optional[str]:
    """The commit sha the revision of an `hf://` path names now (one request; none when the revision is a sha).

    None for other paths, in offline mode, and when the Hub cannot answer: the read that follows then reports
    why (a missing repo or revision, a refused token) in its own words.
    """
    if not path.startswith(HUB_PROTOCOL):
        return None
    try:
        from huggingface_hub import HfApi, constants

        if constants.HF_HUB_OFFLINE:
            return None
        hub, _ = url_to_fs(path)
        resolved = hub.resolve_path(path)
        if resolved.revision and _COMMIT_SHA.match(resolved.revision):
            return resolved.revision
        info = HfApi(endpoint=hub.endpoint, token=hub.token).repo_info(
            resolved.repo_id, repo_type=resolved.repo_type, revision=resolved.revision)
        return info.sha
    except Exception:  # noqa: BLE001 - any failure: no pin; reading the files reports the cause
        return None


def url_to_fs(path: str) -> Tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec file system of a URL and the path within it (a Hub repo's file system with its token)."""
    token = hub_token(path)
    return fsspec.core.url_to_fs(path, **({"token": token} if token is not None else {}))


def open_binary(path: str):
    """Open a local path or a URL for binary reading (remote: random access by HTTP range requests)."""
    if is_remote(path):
        fs, fs_path = url_to_fs(path)
        try:
            return fs.open(fs_path, "rb", block_size=REMOTE_BLOCK_BYTES)
        except OSError as err:
            _raise_for_hub(path, err)
            raise
    return open(path, "rb")


def file_size(path: str) -> int:
    """Size in bytes of a local or remote file."""
    if is_remote(path):
        fs, fs_path = url_to_fs(path)
        try:
            return int(fs.size(fs_path))
        except OSError as err:
            _raise_for_hub(path, err)
            raise
    return os.path.getsize(path)


def exists(path: str) -> bool:
    """Whether a local or remote file exists (remote: an HTTP HEAD or the store's stat).

    On the Hub, a missing or inaccessible repo or revision, a refused token or offline mode raise an
    `EMM1DataError` saying so: "no such file" would send the user looking in the wrong place.
    """
    if not is_remote(path):
        return os.path.exists(path)
    fs, fs_path = url_to_fs(path)
    try:
        fs.info(fs_path)  # a HEAD over HTTP (fs.exists may GET the whole file); a cached listing on the Hub
        return True
    except (OSError, ValueError) as err:  # FileNotFoundError included
        _raise_for_hub(path, err)
        return False


def list_names(folder: str) -> List[str]:
    """The names in a local or remote folder, sorted (none when it does not exist)."""
    if is_remote(folder):
        fs, fs_path = url_to_fs(folder)
        try:
            return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(fs_path, detail=False))
        except FileNotFoundError as err:
            _raise_for_hub(folder, err)
            return []
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def _raise_for_hub(path: str, err: BaseException) -> None:
    """Raise an `EMM1DataError` naming the repo when `err` (from reading `path`) is about the Hub repo, its
    revision, the token or the connection, not about the file. Returns for a plain missing file."""
    repo = hub_repo(path)
    if repo is None:
        return
    try:
        from huggingface_hub import errors as hub_errors
        from huggingface_hub import constants as hub_constants
    except ImportError:  # pragma: no cover - hf:// paths need huggingface_hub
        return
    causes = []
    current: Optional[BaseException] = err
    while current is not None and len(causes) < 5:
        causes.append(current)
        current = current.__cause__ if current.__cause__ is not None else (
            None if current.__suppress_context__ else current.__context__)
    where = f"{repo} on {hub_constants.ENDPOINT} (HF_ENDPOINT)"
    for cause in causes:
        if isinstance(cause, hub_errors.EntryNotFoundError):
            return  # the repo and revision are there, the file is not
        if isinstance(cause, hub_errors.RevisionNotFoundError):
            raise EMM1DataError(f"{path}: {where} has no such revision (the part after '@'). Check the branch, "
                                "tag or commit sha.", file=path, code="missing_file") from err
        if isinstance(cause, hub_errors.RepositoryNotFoundError):
            raise EMM1DataError(f"{path}: repository {where} not found, or private and this token may not read it. "
                                "Check the name; for a private repo pass token= (or set HF_TOKEN, or run "
                                "`hf auth login`).", file=path, code="missing_file") from err
        if isinstance(cause, hub_errors.OfflineModeIsEnabled):
            raise EMM1DataError(f"{path}: cannot read {where}: huggingface_hub's offline mode is on (HF_HUB_OFFLINE). "
                                "Unset it, or pass a local data_dir.", file=path, code="unreadable") from err
        if isinstance(cause, hub_errors.HfHubHTTPError):
            said = getattr(cause, "server_message", None)
            reason = str(cause).splitlines()[0] + (f" ({said})" if said else "")
            raise EMM1DataError(f"{path}: the Hub refused the request for {where}: {reason}. "
                                "Check the token (token=, HF_TOKEN) and the endpoint.", file=path,
                                code="unreadable") from err
    if not isinstance(err, FileNotFoundError):
        raise EMM1DataError(f"{path}: cannot read {where}: {err}", file=path, code="unreadable") from err


def normalize_root(path: str) -> str:
    """An absolute local path (user folder expanded) or an unchanged URL, without a trailing separator."""
    if is_remote(path):
        return path.rstrip("/")
    return os.path.abspath(os.path.expanduser(path))
