"""YouTube clips (`youtube` sources): only the section `start_time`-`end_time` of each video, with yt-dlp.

yt-dlp (an optional extra: `pip install 'emm1[download]'`) does the site's extraction and hands the section
to FFmpeg, which reads only the part of the remote file it needs. The FFmpeg binary comes from the
`imageio-ffmpeg` wheel, so a fresh machine needs no system FFmpeg. Everything is written inside a
temporary folder beside the destination (inside ROOT); `fetch_clip` returns the finished file there and the
caller moves it into place (`store.commit_file`). The location is a template of `youtube_id` (a mirror
serving `{youtube_id}.mp4` works through yt-dlp's generic extractor).

The final file follows the destination's suffix: `.mp4`/`.m4a` audio is AAC audio only (the released audio
is `.mp4` AAC), `.wav`/`.flac`/... are FFmpeg's default codec for the suffix; video keeps its streams,
remuxed when the container differs.
"""
import os
import re
import subprocess
import threading
from typing import Dict, List, Optional

from emm1_lib.acquire.fetchers import FetchError

INSTALL_HINT = "pip install 'emm1[download]'"
# Demuxers the conversion step may open (a downloaded file is untrusted: no playlists, no concat lists) and
# the one protocol: the local temporary file.
_LOCAL_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,ogg,mp3,aac,wav,flac,avi,flv,mpegts"
# What FFmpeg may use to read the remote section: no file:, no data:, no concat: (nothing local).
_REMOTE_PROTOCOLS = "http,https,tcp,tls,crypto,httpproxy"
_YOUTUBE_HOSTS = {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtu.be"}


def extractors_for(url: str) -> tuple:
    """The only yt-dlp extractor a clip's URL may use: YouTube's for YouTube, the generic one (a direct media
    link) for a mirror. With the default ~1,700, a page could hand the clip on to any other site."""
    from urllib.parse import urlsplit

    return ("youtube",) if (urlsplit(url).hostname or "").lower() in _YOUTUBE_HOSTS else ("generic",)
AUDIO_CODECS = {".mp4": "aac", ".m4a": "aac"}


def require_yt_dlp():
    """The `yt_dlp` module, or ImportError saying how to install it."""
    try:
        import yt_dlp  # noqa: F401
        import yt_dlp.utils  # noqa: F401
    except ImportError as err:
        raise ImportError(f"YouTube sources need yt-dlp ({err}); install it with: {INSTALL_HINT}") from err
    return yt_dlp


def ffmpeg_exe() -> str:
    """The FFmpeg binary of the `imageio-ffmpeg` wheel (ImportError with the install hint when absent)."""
    try:
        import imageio_ffmpeg
    except ImportError as err:
        raise ImportError(f"YouTube sources need an FFmpeg binary from imageio-ffmpeg ({err}); install it with: "
                          f"{INSTALL_HINT}") from err
    return imageio_ffmpeg.get_ffmpeg_exe()


def clip_url(template: str, youtube_id: str) -> str:
    """The URL of `youtube_id` from a location template (`...watch?v={youtube_id}`, `http://mirror/{youtube_id}.mp4`)."""
    if not youtube_id or not re.fullmatch(r"[A-Za-z0-9_-]+", youtube_id):
        raise FetchError(f"youtube_id {youtube_id!r} is not a YouTube id (letters, digits, '-', '_')")
    url = template.replace("{youtube_id}", youtube_id)
    if not url.startswith(("http://", "https://")):
        raise FetchError(f"location {template!r} does not make an http(s) URL")
    return url


class _Log:
    """yt-dlp's messages: kept (the last error becomes the FetchError), not printed."""

    def __init__(self):
        self.errors: List[str] = []

    def debug(self, message: str) -> None:
        pass

    info = debug

    def warning(self, message: str) -> None:
        pass

    def error(self, message: str) -> None:
        self.errors.append(message)


_threads = threading.local()


def _downloader(modality: str, timeout: float, ffmpeg: str, extractors: tuple):
    """This thread's YoutubeDL for these settings, made once: making one sets up its ~1,700 extractors, which
    costs more CPU (under the GIL) than the rest of a short clip's Python work."""
    import yt_dlp

    cache = getattr(_threads, "downloaders", None)
    if cache is None:
        cache = _threads.downloaders = {}
    key = (modality, timeout, ffmpeg, extractors)
    if key not in cache:
        log = _Log()
        options = {**ydl_options(modality, os.getcwd(), 0.0, 1.0, timeout, ffmpeg), "logger": log,
                   "allowed_extractors": list(extractors)}
        cache[key] = (yt_dlp.YoutubeDL(options), log)
    return cache[key]


def _is_retryable(message: str) -> bool:
    status = re.search(r"HTTP Error (\d{3})", message)
    if status:
        code = int(status.group(1))
        return code >= 500 or code == 429
    return not re.search(r"Unsupported URL|Video unavailable|Private video|has been removed|not available", message)


def ydl_options(modality: str, workdir: str, start: float, end: float, timeout: float, ffmpeg: str) -> Dict[str, object]:
    """The YoutubeDL parameters for one section: quiet, no caches, no retries of its own (the caller retries),
    outputs only under `workdir`, FFmpeg reading the remote file with a read timeout and network protocols only."""
    from yt_dlp.utils import download_range_func

    video = modality == "video"
    return {
        "format": "bestvideo*+bestaudio/best" if video else "bestaudio[ext=m4a]/bestaudio/best",
        "merge_output_format": "mp4",
        "outtmpl": {"default": "clip.%(ext)s"},
        "paths": {"home": workdir, "temp": workdir},
        "download_ranges": download_range_func(None, [(start, end)]),
        # video: re-encode at the cut points so the file itself starts at `start_time` (a stream copy starts at
        # the keyframe before it and relies on an edit list, which not every reader honours). Audio: every
        # packet is a keyframe, so a stream copy already cuts within one packet (~20-60 ms), at a fraction of the CPU
        "force_keyframes_at_cuts": video,
        "ffmpeg_location": ffmpeg,
        "external_downloader_args": {"ffmpeg_i": ["-rw_timeout", str(int(timeout * 1e6)),
                                                  "-protocol_whitelist", _REMOTE_PROTOCOLS]},
        "socket_timeout": timeout,
        "retries": 0, "fragment_retries": 0, "extractor_retries": 0, "file_access_retries": 0,
        "noplaylist": True, "cachedir": False, "quiet": True, "no_warnings": True, "noprogress": True,
        "overwrites": True, "check_formats": False, "writeinfojson": False, "writethumbnail": False,
        "updatetime": False, "color": {"stdout": "no_color", "stderr": "no_color"},
    }


def fetch_clip(url: str, start: Optional[float], end: Optional[float], modality: str, workdir: str,
               suffix: str, timeout: float) -> str:
    """Download the section `start`-`end` (seconds) of `url` into `workdir` and convert it to `suffix`
    (`.mp4`, `.wav`, ...) for `modality` ("audio" or "video"); returns the path of the finished file in `workdir`.

    Raises FetchError (`retry` for timeouts and 5xx) for anything yt-dlp or FFmpeg could not do, ImportError
    with the install hint when yt-dlp or imageio-ffmpeg is missing.
    """
    yt_dlp = require_yt_dlp()
    ffmpeg = ffmpeg_exe()
    from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor
    from yt_dlp.utils import download_range_func

    if start is None or end is None or not (end > start >= 0):
        raise FetchError(f"start_time {start!r} / end_time {end!r}: not a section (0 <= start < end)")
    # yt-dlp checks that FFmpeg can cut sections through this context variable (its command line sets it);
    # the API's `ffmpeg_location` alone does not reach that check
    FFmpegPostProcessor._ffmpeg_location.set(ffmpeg)
    ydl, log = _downloader(modality, timeout, ffmpeg, extractors_for(url))
    # per clip: the section and the folder (read when the clip is processed, not when the downloader is made)
    ydl.params["download_ranges"] = download_range_func(None, [(float(start), float(end))])
    ydl.params["paths"] = {"home": workdir, "temp": workdir}
    log.errors.clear()
    try:
        info = ydl.extract_info(url, download=True)
    except yt_dlp.utils.DownloadError as err:
        message = log.errors[-1] if log.errors else str(err)
        message = re.sub(r"^ERROR:\s*", "", message)
        raise FetchError(f"{url} [{start:g}-{end:g} s]: {message}", retry=_is_retryable(message)) from err
    downloads = (info or {}).get("requested_downloads") or []
    produced = downloads[0].get("filepath") if downloads else None
    if not produced or not os.path.isfile(produced):
        raise FetchError(f"{url} [{start:g}-{end:g} s]: yt-dlp reported no file", retry=True)
    if not _inside(produced, workdir):
        raise FetchError(f"{url}: yt-dlp wrote {produced}, outside its folder {workdir}")
    return convert(produced, modality, suffix, ffmpeg, timeout)


def _inside(path: str, folder: str) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return real.startswith(base + os.sep)


def _only_aac_in_mp4(path: str) -> bool:
    """True when `path` is an MP4-family file holding one AAC audio stream and nothing else."""
    try:
        import av

        with av.open(path, format=None) as container:
            streams = list(container.streams)
            return ("mp4" in container.format.name.split(",") and len(streams) == 1 and streams[0].type == "audio"
                    and streams[0].codec_context.name == "aac")
    except Exception:  # not readable here: let FFmpeg convert it (and say why if it cannot)
        return False


def convert(produced: str, modality: str, suffix: str, ffmpeg: str, timeout: float) -> str:
    """`produced` as a `suffix` file beside it: audio only (AAC for .mp4/.m4a) for audio, a remux for video
    in another container; the file itself when nothing needs to change. FFmpeg reads only that local file."""
    suffix = suffix.lower()
    if modality == "video" and produced.lower().endswith(suffix):
        return produced
    if modality == "audio" and suffix in AUDIO_CODECS and _only_aac_in_mp4(produced):
        return produced  # already what the destination holds (YouTube's m4a audio): no second encode
    out = os.path.join(os.path.dirname(produced), "final" + suffix)
    args = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-protocol_whitelist", "file", "-format_whitelist", _LOCAL_FORMATS, "-i", produced]
    if modality == "audio":
        args += ["-map", "0:a:0", "-vn"]
        if suffix in AUDIO_CODECS:
            args += ["-c:a", AUDIO_CODECS[suffix]]
    else:
        args += ["-map", "0", "-c", "copy"]
    args.append(out)
    try:
        done = subprocess.run(args, capture_output=True, timeout=max(60.0, 10 * timeout))
    except subprocess.TimeoutExpired as err:
        raise FetchError(f"{produced}: FFmpeg did not finish converting to {suffix}", retry=True) from err
    if done.returncode != 0 or not os.path.isfile(out):
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise FetchError(f"the downloaded clip does not convert to {suffix} {modality}: FFmpeg: {detail[0]}")
    return out
