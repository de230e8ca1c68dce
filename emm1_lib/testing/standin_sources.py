"""Stand-ins for the upstream sources of a sample tree's EShot media, served on 127.0.0.1, so `emm1 download
--stand-in MEDIA` can be tried on `emm1 sample` output without the network.

- "EShot audio" (YouTube): one recording, a WAV tone as long as the latest `end_time`, answers for every
  `youtube_id` at `/youtube/{youtube_id}.wav` (yt-dlp reads it as a direct link and cuts the sections).
- "EShot points" (OpenShape's `Objaverse/000-*.tar.gz`): a tar.gz of the sample's point-cloud files, named
  `{file_id}.npy` as in OpenShape's archives, at `/openshape/Objaverse/000-000.tar.gz`.

The server answers GET and HEAD with `Range` (what FFmpeg and the tar reader ask for), nothing else.
"""
import io
import os
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional

import numpy as np
import pyarrow.compute as pc

from emm1_lib.io.tables import read_csv_table
from emm1_lib.schema.eshot_files import INFO_FILES, locate_eshot_dir

RATE = 8000


def _recording(seconds: float) -> bytes:
    """A 16-bit mono WAV of `seconds` s: a 440 Hz tone whose loudness changes every second."""
    import soundfile

    t = np.arange(int(seconds * RATE)) / RATE
    signal = (0.1 + 0.05 * (np.floor(t) % 5)) * np.sin(2 * np.pi * 440 * t)
    out = io.BytesIO()
    soundfile.write(out, signal.astype(np.float32), RATE, subtype="PCM_16", format="WAV")
    return out.getvalue()


def _points_archive(eshot_dir: str, media_root: str) -> bytes:
    import pyarrow as pa

    path = os.path.join(eshot_dir, INFO_FILES["points"])
    table = read_csv_table(path, {"file_id": pa.string(), "file_name": pa.string(), "save_folder": pa.string()},
                           required=["file_id", "file_name", "save_folder"])
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for row in table.to_pylist():
            source = os.path.join(media_root, row["save_folder"], "points", row["file_name"])
            if os.path.isfile(source):
                archive.add(source, arcname=f"000-000/{row['file_id']}.npy", recursive=False)
    return out.getvalue()


class StandinSources:
    """`with StandinSources(metadata_dir, media_root) as stand_in: stand_in.mirrors` ({source: URL template})."""

    def __init__(self, metadata_dir: str, media_root: str):
        import pyarrow as pa

        eshot_dir = locate_eshot_dir(metadata_dir)
        if eshot_dir is None:
            raise FileNotFoundError(f"{metadata_dir}: no eshot/ folder; the stand-ins serve the EShot media of "
                                    "a sample tree (emm1 sample FOLDER)")
        audio = read_csv_table(os.path.join(eshot_dir, INFO_FILES["audio"]), {"end_time": pa.float64()},
                               required=["end_time"])
        longest = pc.max(audio["end_time"]).as_py() or 0.0
        self.files: Dict[str, bytes] = {
            "/youtube": _recording(longest + 1.0),
            "/openshape/Objaverse/000-000.tar.gz": _points_archive(eshot_dir, media_root),
        }
        self._httpd: Optional[ThreadingHTTPServer] = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start the stand-ins first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def mirrors(self) -> Dict[str, str]:
        """`--mirror` values pointing the EShot sources at the stand-ins."""
        return {"EShot audio": self.url + "/youtube/{youtube_id}.wav",
                "EShot points": self.url + "/openshape/Objaverse/000-000.tar.gz"}

    def start(self) -> "StandinSources":
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                path = self.path.split("?")[0]
                body = files["/youtube"] if re.fullmatch(r"/youtube/[A-Za-z0-9_-]+\.wav", path) else files.get(path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start, end, status = 0, len(body), 200
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "") or "")
                if match:
                    start = min(int(match.group(1)), len(body))
                    end = min(len(body), int(match.group(2)) + 1) if match.group(2) else len(body)
                    status = 206
                self.send_response(status)
                self.send_header("Content-Type", "audio/wav" if path.startswith("/youtube/") else "application/gzip")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(end - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(body)}")
                self.end_headers()
                if self.command == "GET":
                    try:
                        self.wfile.write(body[start:end])
                    except (BrokenPipeError, ConnectionResetError):  # FFmpeg hangs up when it seeks
                        self.close_connection = True

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # a client hanging up is normal here
                pass

        self._httpd = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True, name="emm1-stand-in").start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "StandinSources":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
