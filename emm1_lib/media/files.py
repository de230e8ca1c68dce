"""Locating media given as a path or as bytes, and the errors for missing and corrupt media.

Decoders take a `MediaSource`: the stored `{"bytes", "path"}` value resolved to something
a reader accepts (a local path string, or a seekable binary file for bytes and remote files),
plus a display name used in every error message.
"""
import functools
import io
import os
import stat
from dataclasses import dataclass
from typing import BinaryIO
from typing import Dict
from typing import Optional
from typing import Union

from emm1_lib.io.fs import hub_token
from emm1_lib.io.fs import is_remote

ON_MISSING_MEDIA = ("error", "null")


class MediaError(Exception):
    """Base class of the errors raised while reading E-MM1 media."""


class MissingMediaError(MediaError, FileNotFoundError):
    """A media file referenced by the dataset does not exist."""


class MediaDecodeError(MediaError, ValueError):
    """A media file exists but cannot be decoded (truncated, corrupt, unsupported or oversize)."""


class UnembeddedMediaError(MissingMediaError):
    """An item of an export with the media inside was published without bytes, and no media root was given."""


class MediaOutsideRootError(MediaError, PermissionError):
    """A local media file resolves (through a symlink) outside the dataset's media root; it was not opened."""


class UnsafePickleError(MediaDecodeError):
    """A pickled point-cloud file references code outside the allow-list; nothing was run."""


def check_on_missing_media(value: str) -> str:
    """Validate the `on_missing_media` option ("error" or "null")."""
    if value not in ON_MISSING_MEDIA:
        raise ValueError(f"on_missing_media must be one of {ON_MISSING_MEDIA}, got {value!r}")
    return value


def missing_media_error(path: str) -> MissingMediaError:
    """The error for a referenced file that does not exist, saying how to relax it."""
    return MissingMediaError(
        f"Media file not found: {path}. Download the media into the folder the dataset points to "
        "(check data_dir / the media root), or pass on_missing_media='null' to get None for missing files."
    )


def unembedded_media_error(path: str, column: str) -> UnembeddedMediaError:
    """The error for an item published without bytes, read with `read_paths=False` (no media root)."""
    return UnembeddedMediaError(
        f"Column {column!r}: {path} was published without its bytes (the export's licence choice left it out, or "
        "the file was missing) and no media root was given, so its stored path is not opened. Pass root=... to "
        "read media the export did not embed (emm1.resolve(ds, root=YOUR_MEDIA_ROOT)), or "
        "on_missing_media='null' to get None for them."
    )


# realpath walks every component with lstat (~15 us); media sit in few folders, so resolve each folder
# once. A folder swapped for a symlink later in the same process is not seen, but whoever can change the
# tree while it is read can also swap a file between any check and the open.
_real_folder = functools.lru_cache(maxsize=4096)(os.path.realpath)


def check_under_root(path: str, media_root: Optional[str], lstat_result: Optional[os.stat_result] = None) -> None:
    """Raise `MediaOutsideRootError` when local `path` resolves (symlinks followed) outside `media_root`.

    No check when `media_root` is None or either is remote (a URL cannot hold a symlink of ours).
    `lstat_result`: `os.lstat` of the path, when the caller has it (saves a system call).
    """
    if not media_root or is_remote(path) or is_remote(media_root):
        return
    local = path[len("file://"):] if path.startswith("file://") else path
    if not os.path.isabs(local):
        local = os.path.abspath(local)
    if stat.S_ISLNK((lstat_result or os.lstat(local)).st_mode):
        real = os.path.realpath(local)
    else:
        folder, name = os.path.split(local)
        real = os.path.join(_real_folder(folder), name)
    real_root = _real_folder(media_root if os.path.isabs(media_root) else os.path.abspath(media_root))
    if not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise MediaOutsideRootError(
            f"Refusing to read {path}: it resolves to {real}, outside the media root {real_root} (a symlink "
            "points out of it). If the link is yours, pass allow_outside_root=True to the builder."
        )



@dataclass
class MediaSource:
    """A media item ready for a reader: `file` is a local path (str) or a seekable binary file."""

    file: Union[str, BinaryIO]
    name: str  # for error messages: the path, or "<bytes>" when only bytes are stored
    path: Optional[str]  # the stored path (may be a basename when bytes are embedded)

    @property
    def suffix(self) -> str:
        """Lower-case file extension of the stored path ("" if unknown)."""
        return os.path.splitext(self.path or "")[1].lower()

    def open(self) -> BinaryIO:
        """A binary file object (opens local paths; rewinds in-memory files)."""
        if isinstance(self.file, str):
            return open(self.file, "rb")
        self.file.seek(0)
        return self.file


def _token_for(path: str, token_per_repo_id: Optional[Dict[str, Union[str, bool, None]]]):
    """The Hub token for `path` (same lookup as datasets.Image; else the builder's `token=` for that repo), or None."""
    if not token_per_repo_id:
        return hub_token(path)
    try:
        from datasets import config
        from datasets.utils.py_utils import string_to_dict
    except ImportError:  # pragma: no cover - both supported datasets versions have them
        return None
    source_url = path.split("::")[-1]
    pattern = config.HUB_DATASETS_URL if source_url.startswith(config.HF_ENDPOINT) else config.HUB_DATASETS_HFFS_URL
    fields = string_to_dict(source_url, pattern)
    found = token_per_repo_id.get(fields["repo_id"]) if fields is not None else None
    return found if found is not None else hub_token(path)


def resolve_media(
    value: Union[str, bytes, dict],
    on_missing_media: str = "error",
    token_per_repo_id: Optional[Dict[str, Union[str, bool, None]]] = None,
    media_root: Optional[str] = None,
    read_paths: bool = True,
    column: str = "media",
) -> Optional[MediaSource]:
    """Resolve a stored media value (`{"bytes", "path"}`, a path or bytes) to a `MediaSource`.

    Returns None for a missing file when `on_missing_media == "null"`; raises
    `MissingMediaError` naming the file otherwise. Embedded bytes win over the path. With
    `media_root`, a local file that resolves outside it raises `MediaOutsideRootError`.
    `read_paths=False` (an export with the media inside, read without a media root): a value without
    bytes is never opened; it counts as missing, and the error (`UnembeddedMediaError`) names `column`.
    """
    if isinstance(value, (bytes, bytearray)):
        value = {"bytes": value, "path": None}
    elif isinstance(value, (str, os.PathLike)):
        value = {"bytes": None, "path": os.fspath(value)}
    data, path = value.get("bytes"), value.get("path")
    if data is not None:
        return MediaSource(io.BytesIO(data), path or "<bytes>", path)
    if path is None:
        raise ValueError(f"A media value needs 'path' or 'bytes', both are None in {value}")
    if not read_paths:
        if on_missing_media == "null":
            return None
        raise unembedded_media_error(path, column)
    if not is_remote(path):
        local = path[len("file://"):] if path.startswith("file://") else path
        try:  # one lstat answers "exists", "regular file" and "a link" (what check_under_root asks) at once
            found = os.lstat(local)
        except (OSError, ValueError):  # ValueError: a NUL in the path
            found = None
        if found is None or not (stat.S_ISREG(found.st_mode) or (stat.S_ISLNK(found.st_mode) and os.path.isfile(local))):
            if on_missing_media == "null":
                return None
            raise missing_media_error(path)
        check_under_root(path, media_root, found)
        return MediaSource(local, path, path)
    from datasets import DownloadConfig
    from datasets.utils.file_utils import xopen

    try:
        with xopen(path, "rb", download_config=DownloadConfig(token=_token_for(path, token_per_repo_id))) as f:
            data = f.read()
    except FileNotFoundError:
        if on_missing_media == "null":
            return None
        raise missing_media_error(path) from None
    return MediaSource(io.BytesIO(data), path, path)


# FFmpeg demuxers of the containers E-MM1's audio and video come in (names as FFmpeg lists them: one
# demuxer may carry several). Others are refused before probing, because some read other files or
# URLs named inside the file: concat scripts (`ffconcat`), HLS/DASH playlists, image sequences.
ALLOWED_DEMUXERS = (
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "wav", "flac", "ogg", "mp3", "aac",
)
# Protocols FFmpeg may use: a local path is opened as `file:` and nothing else; a Python file object
# (bytes read by us, e.g. remote media fetched with fsspec) needs no protocol at all.
_LOCAL_PROTOCOLS = "file"
_NO_PROTOCOLS = ""


def open_av_container(file: Union[str, BinaryIO], name: str):
    """`av.open(file)` for reading, restricted to `ALLOWED_DEMUXERS` and to the `file:` protocol.

    The file has been checked (under the media root, not a symlink out of it); these allow-lists keep
    FFmpeg from opening anything else through it: a `.mp4` that is really an ffconcat script naming
    `/etc/passwd` or a link outside the root, a playlist, a `concat:`/`subfile:` URL. Raises
    `MediaDecodeError` naming `name` when the container is not an allowed format.
    """
    import av

    local = isinstance(file, str)
    options = {
        "format_whitelist": ",".join(ALLOWED_DEMUXERS),
        "protocol_whitelist": _LOCAL_PROTOCOLS if local else _NO_PROTOCOLS,
    }
    try:
        # "file:" makes FFmpeg read the path as a plain file name, never as another protocol's URL
        return av.open("file:" + file if local else file, mode="r", container_options=options)
    except av.error.FFmpegError as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise MediaDecodeError(
            f"Cannot decode {name}: it is not one of the allowed audio/video container formats "
            f"({', '.join(ALLOWED_DEMUXERS)}), or it is corrupt ({type(err).__name__}: {err}). Containers that "
            "refer to other files (concat scripts, playlists) are refused."
        ) from err

