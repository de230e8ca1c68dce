"""The mechanisms: one function per source kind that yields an item's bytes.

- `url`: GET `file_id` (requests, streamed, connect/read timeouts; the body length is checked).
- `http_zip` / `hub_zip`: the zip's central directory is read once per archive with HTTP range requests
  (fsspec's HTTP file system under `zipfile`), then each needed member is one range request for its local
  header and data: the archive is never downloaded whole. Member names come from the plan's `file_id`
  through the source's template and are only looked up, never used as paths: the destination is always
  the plan's. Symlink and encrypted members are refused.
"""
import os
import stat
import struct
import threading
import zipfile
import zlib
from typing import Dict, Iterator, List, Optional, Set, Tuple

from emm1_lib.acquire.sources import Source

CHUNK = 1 << 16


class FetchError(Exception):
    """An item could not be fetched; `retry` says whether trying again may help (timeouts, 5xx)."""

    def __init__(self, message: str, retry: bool = False):
        super().__init__(message)
        self.retry = retry


_local = threading.local()


def _session():
    import requests

    if getattr(_local, "session", None) is None:
        _local.session = requests.Session()
    return _local.session


def fetch_url(url: str, timeout: float) -> bytes:
    """The body of `url`; FetchError for HTTP errors, timeouts, connection errors and short bodies."""
    import requests

    try:
        with _session().get(url, stream=True, timeout=(timeout, timeout)) as response:
            if response.status_code >= 400:
                retry = response.status_code >= 500 or response.status_code == 429
                raise FetchError(f"HTTP {response.status_code} from {url}", retry=retry)
            body = b"".join(response.iter_content(CHUNK))
            expected = response.headers.get("Content-Length")
            if expected is not None and "Content-Encoding" not in response.headers and len(body) != int(expected):
                raise FetchError(f"{url}: truncated body ({len(body)} of {expected} bytes)", retry=True)
            return body
    except requests.exceptions.Timeout as err:
        raise FetchError(f"{url}: timed out after {timeout:g} s ({type(err).__name__})", retry=True) from err
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as err:
        raise FetchError(f"{url}: connection failed or body cut short ({type(err).__name__}: {err})", retry=True) from err
    except requests.exceptions.RequestException as err:
        raise FetchError(f"{url}: {type(err).__name__}: {err}") from err


def hub_zip_url(source: Source) -> Tuple[str, Dict[str, str]]:
    """The resolve URL of a Hub zip (huggingface_hub's endpoint: `HF_ENDPOINT`) and its auth headers."""
    return hub_file_url(source, str(source.file))


def hub_file_url(source: Source, path: str) -> Tuple[str, Dict[str, str]]:
    """The resolve URL of file `path` of the source's Hub dataset repo (`HF_ENDPOINT`) and the auth headers of
    huggingface_hub's token (`HF_TOKEN`, the saved login)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    endpoint = os.environ.get("HF_ENDPOINT") or None  # read per call: huggingface_hub reads it once, at import
    return hf_hub_url(str(source.repo), path, repo_type="dataset", endpoint=endpoint), build_hf_headers()


def _fixed_prefix(pattern: str) -> str:
    """The folder of `pattern` before its first glob character ("Objaverse" for "Objaverse/000-*.tar.gz")."""
    glob_at = min([i for i, c in enumerate(pattern) if c in "*?["] or [len(pattern)])
    return pattern[:glob_at].rpartition("/")[0]


def _has_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def hub_files(source: Source, sizes: bool = True) -> List[Tuple[str, Optional[int]]]:
    """`(path, size)` of the files of the source's Hub dataset repo that match its `patterns` (paths or globs,
    `fnmatch` rules), in pattern order, then path order; listed with huggingface_hub (`list_repo_tree` of each
    glob's fixed folder, recursively only when the rest of the glob has a `/`; `get_paths_info` for plain
    paths, or with `sizes=False` no call at all for them: size None; `HF_ENDPOINT`, its token).

    Raises FetchError (`retry` for network errors and 5xx) when the listing fails or a pattern matches nothing.
    """
    import fnmatch

    from huggingface_hub import HfApi
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
    listed: Dict[Tuple[str, Optional[bool]], List[Tuple[str, Optional[int]]]] = {}
    found: List[Tuple[str, Optional[int]]] = []
    seen: Set[str] = set()
    plain = [p for p in source.patterns if not _has_glob(p)]
    for pattern in source.patterns:
        folder = _fixed_prefix(pattern)
        # a glob: its folder's listing (recursive or not); plain paths: one lookup for all of them
        key = (folder, "/" in pattern[len(folder) + 1 if folder else 0:]) if _has_glob(pattern) else ("", None)
        if key not in listed and not _has_glob(pattern) and not sizes:
            listed[key] = [(p, None) for p in plain]
        if key not in listed:
            try:
                if _has_glob(pattern):
                    entries = api.list_repo_tree(str(source.repo), path_in_repo=folder or None, recursive=key[1],
                                                 repo_type="dataset")
                else:
                    entries = api.get_paths_info(str(source.repo), plain, repo_type="dataset")
                listed[key] = [(e.path, int(e.size)) for e in entries if type(e).__name__ == "RepoFile"]
            except OfflineModeIsEnabled as err:
                raise FetchError(f"hub dataset {source.repo}: HF_HUB_OFFLINE is set; unset it to list the repo") from err
            except (RepositoryNotFoundError, RevisionNotFoundError) as err:
                raise FetchError(f"hub dataset {source.repo}: not found or not readable with this token "
                                 f"({type(err).__name__}); log in (hf auth login / HF_TOKEN) or check HF_ENDPOINT") from err
            except EntryNotFoundError as err:
                raise FetchError(f"hub dataset {source.repo}: no folder {folder!r} (for {pattern!r})") from err
            except HfHubHTTPError as err:
                status = getattr(getattr(err, "response", None), "status_code", None) or 0
                raise FetchError(f"hub dataset {source.repo}: listing {folder or '/'} failed: {err}",
                                 retry=status >= 500 or status == 429) from err
            except (OSError, ValueError) as err:  # connection errors, offline mode
                raise FetchError(f"hub dataset {source.repo}: listing {folder or '/'} failed "
                                 f"({type(err).__name__}: {err})", retry=True) from err
        matches = sorted((p, n) for p, n in listed[key] if fnmatch.fnmatchcase(p, pattern) and p not in seen)
        if not matches:
            raise FetchError(f"hub dataset {source.repo}: no file matches {pattern!r}; fix the sources entry "
                             "(--sources-file) or the mirror (HF_ENDPOINT)")
        seen.update(p for p, _ in matches)
        found += matches
    return found


class RemoteZip:
    """A zip archive on an HTTP server that answers range requests: its directory, then single members."""

    def __init__(self, url: str, timeout: float, headers: Optional[Dict[str, str]] = None):
        import aiohttp
        import fsspec

        self.url = url
        client_kwargs = {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)}
        if headers:
            client_kwargs["headers"] = headers
        self.fs = fsspec.filesystem("http", client_kwargs=client_kwargs, skip_instance_cache=True)
        try:
            # A small block size: the central directory is read with a few range requests at the end.
            with self.fs.open(url, "rb", block_size=1 << 16, cache_type="readahead") as f:
                self.size = f.size
                with zipfile.ZipFile(f) as archive:
                    self.members: Dict[str, zipfile.ZipInfo] = {i.filename: i for i in archive.infolist()}
        except zipfile.BadZipFile as err:
            raise FetchError(f"{url}: not a zip archive ({err})") from err
        except (OSError, ValueError) as err:
            raise FetchError(f"{url}: cannot read the zip directory ({type(err).__name__}: {err})", retry=True) from err

    def check(self, name: str) -> zipfile.ZipInfo:
        """The directory entry of member `name`; FetchError when absent, a symlink, encrypted or oddly packed."""
        info = self.members.get(name)
        if info is None:
            raise FetchError(f"{self.url}: no member {name!r}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise FetchError(f"{self.url}: member {name!r} is a symlink; not followed")
        if info.flag_bits & 0x1:
            raise FetchError(f"{self.url}: member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise FetchError(f"{self.url}: member {name!r} uses compression method {info.compress_type}")
        return info

    def read(self, name: str) -> bytes:
        """Member `name`'s bytes (CRC checked), with one range request (two if its local extra field is long)."""
        info = self.check(name)
        start = info.header_offset
        guess = 30 + len(info.filename.encode("utf-8")) + len(info.extra) + 256 + info.compress_size
        data = self._range(start, min(start + guess, self.size))
        if len(data) < 30 or data[:4] != b"PK\x03\x04":
            raise FetchError(f"{self.url}: member {name!r}: bad local header at byte {start}")
        name_len, extra_len = struct.unpack("<HH", data[26:30])
        begin = 30 + name_len + extra_len
        end = begin + info.compress_size
        if len(data) < end:
            data += self._range(start + len(data), start + end)
        raw = data[begin:end]
        body = raw if info.compress_type == zipfile.ZIP_STORED else zlib.decompressobj(-15).decompress(raw)
        if len(body) != info.file_size or zlib.crc32(body) & 0xFFFFFFFF != info.CRC:
            raise FetchError(f"{self.url}: member {name!r}: size or CRC mismatch (corrupt or changed archive)", retry=True)
        return body

    def _range(self, start: int, end: int) -> bytes:
        try:
            return self.fs.cat_file(self.url, start=start, end=end)
        except (OSError, ValueError) as err:
            raise FetchError(f"{self.url}: range {start}-{end}: {type(err).__name__}: {err}", retry=True) from err


def item_chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), CHUNK):
        yield body[start:start + CHUNK]


class TarScan:
    """What one read of a tar archive saw: every member's base name, and whether it reached the end."""

    def __init__(self):
        self.names: Set[str] = set()
        self.complete = False


def stream_tar(url: str, timeout: float, wanted: Set[str], headers: Optional[Dict[str, str]] = None,
               seen: Optional["TarScan"] = None) -> Iterator[Tuple[str, Optional[bytes], Optional[str]]]:
    """Read the (optionally compressed) tar at `url` front to back, once, without storing it: yields
    `(basename, bytes, None)` for each regular member whose base name is in `wanted` and
    `(basename, None, reason)` for a wanted name that is a symlink, hard link or other non-file (not followed).
    Stops reading as soon as every wanted name was seen. Member paths are only compared, never used as paths.
    `seen` collects the base name of every member passed and whether the archive was read to its end.
    """
    import tarfile

    import requests
    import urllib3

    left = set(wanted)
    try:
        with _session().get(url, stream=True, timeout=(timeout, timeout), headers=headers or {}) as response:
            if response.status_code >= 400:
                raise FetchError(f"HTTP {response.status_code} from {url}", retry=response.status_code >= 500)
            response.raw.decode_content = True
            with tarfile.open(fileobj=response.raw, mode="r|*") as archive:
                for member in archive:
                    name = member.name.rsplit("/", 1)[-1]
                    if seen is not None:
                        seen.names.add(name)
                    if name not in left:
                        continue
                    left.discard(name)
                    if not member.isreg():
                        yield name, None, f"{url}: member {member.name!r} is not a regular file (a link?); not followed"
                    else:
                        yield name, archive.extractfile(member).read(), None
                    if not left:
                        return
                if seen is not None:
                    seen.complete = True
    except (requests.exceptions.Timeout, urllib3.exceptions.ReadTimeoutError) as err:
        raise FetchError(f"{url}: timed out after {timeout:g} s while streaming the archive", retry=True) from err
    # tarfile reads `response.raw`, urllib3's stream, whose own errors are not wrapped in requests' exceptions
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError, EOFError,
            urllib3.exceptions.ProtocolError) as err:
        raise FetchError(f"{url}: the archive stream broke off ({type(err).__name__}: {err})", retry=True) from err
    except tarfile.TarError as err:
        raise FetchError(f"{url}: not a readable tar archive ({err})") from err


def scan_parquet(url: str, timeout: float, wanted: Set[str], headers: Optional[Dict[str, str]] = None,
                 column: str = "image") -> Iterator[Tuple[str, Optional[bytes], Optional[str]]]:
    """Read a Parquet file of `{bytes, path}` structs (ImageNet's `image` column) with HTTP range requests:
    the footer, the `path` column of every row group, then the `bytes` of only the row groups holding a
    wanted path. Yields `(path, bytes, None)` per wanted path found."""
    import aiohttp
    import fsspec
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    client_kwargs = {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)}
    if headers:
        client_kwargs["headers"] = headers
    fs = fsspec.filesystem("http", client_kwargs=client_kwargs, skip_instance_cache=True)
    left = set(wanted)
    try:
        with fs.open(url, "rb", block_size=1 << 16, cache_type="readahead") as f:
            parquet = pq.ParquetFile(f)
            for group in range(parquet.num_row_groups):
                paths = parquet.read_row_group(group, columns=[f"{column}.path"])[column].combine_chunks().field("path")
                hit = pc.is_in(paths, value_set=pa.array(sorted(left), pa.string()))
                if not pc.any(hit).as_py():
                    continue
                images = parquet.read_row_group(group, columns=[column])[column].combine_chunks().filter(hit)
                for value in images.to_pylist():
                    if value["path"] in left:
                        left.discard(value["path"])
                        yield value["path"], value["bytes"], None
                if not left:
                    return
    except FileNotFoundError as err:
        raise FetchError(f"{url}: not found (HTTP 404)") from err
    except (OSError, ValueError) as err:
        raise FetchError(f"{url}: cannot read the Parquet file ({type(err).__name__}: {err})", retry=True) from err

