"""A local HTTP server for the download tests and benchmark: Range requests, injected failures, counted bytes.

Serves registered bodies on 127.0.0.1 only. Each route may misbehave on purpose: answer 404, fail with 500
a number of times before succeeding, stall after the headers (a client's read timeout must fire), cut the
body short of its Content-Length, or serve an HTML page instead of the file; a route with a `gate` answers only once
the test sets it (`reached` tells a request is waiting: a test kills the client meanwhile). Every response adds its body
bytes to `bytes_sent` as they are written, so tests can assert how much of an archive a client transferred
(a client that hangs up stops the count: the next write fails). `latency` delays every request and `rate`
caps each response's bandwidth (the benchmark's stand-in for a remote server). Pure standard library.
"""
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional

BEHAVIOURS = ("ok", "404", "fail_then_ok", "stall", "truncate", "html")
HTML = b"<!doctype html><html><body><h1>This image is no longer available</h1></body></html>"


@dataclass
class Route:
    """What a path serves: `body` and how to misbehave (`behaviour` in BEHAVIOURS; `failures` 500s first)."""

    body: bytes
    content_type: str = "application/octet-stream"
    behaviour: str = "ok"
    failures: int = 1
    gate: Optional[threading.Event] = None  # when set: the response waits until the test opens the gate
    reached: threading.Event = field(default_factory=threading.Event)  # a gated route was asked for


class MediaServer:
    """`with MediaServer() as server: server.add("/a.jpg", Route(data)); url = server.url("/a.jpg")`."""

    def __init__(self, latency: float = 0.0, rate: Optional[float] = None):
        self.routes: Dict[str, Route] = {}
        self.latency = latency
        self.rate = rate  # bytes per second per response (None: no cap), sent in 64 KiB pieces
        self.bytes_sent = 0
        self.requests = 0
        self.paths: List[str] = []  # the path of every request, in arrival order
        self.in_flight = 0
        # the most requests waiting out `latency` at once: a client's concurrency limit shows here. Counted only
        # before the first response byte, when the client must still hold its slot (once the body is out, the
        # client may start its next request before this server's thread gets to count the last one done)
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: Optional[ThreadingHTTPServer] = None

    def add(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start the server first"
        return self._httpd.server_address[1]

    def _count(self, sent: int) -> None:
        with self._lock:
            self.bytes_sent += sent

    def start(self) -> "MediaServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in separate writes: with Nagle's algorithm on, the client's delayed ACK
            # would add ~40 ms to every response, more than the latency the benchmark injects
            disable_nagle_algorithm = True

            def log_message(self, *args):  # quiet
                pass

            def _route(self) -> Optional[Route]:
                with server._lock:
                    server.requests += 1
                    server.paths.append(self.path.split("?")[0])
                if server.latency:
                    with server._lock:
                        server.in_flight += 1
                        server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    try:
                        time.sleep(server.latency)
                    finally:
                        with server._lock:
                            server.in_flight -= 1
                route = server.routes.get(self.path.split("?")[0])
                if route is None or route.behaviour == "404":
                    self._plain(404, b"not found")
                    return None
                if route.gate is not None:
                    route.reached.set()
                    route.gate.wait(120)
                if route.behaviour == "fail_then_ok":
                    with server._lock:
                        failing = route.failures > 0
                        route.failures -= 1 if failing else 0
                    if failing:
                        self._plain(500, b"try again")
                        return None
                return route

            def _plain(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                    server._count(len(body))

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                self._get()

            def _get(self):
                route = self._route()
                if route is None:
                    return
                if route.behaviour == "html":
                    return self._plain(200, HTML, "text/html")
                body = route.body
                start, end, status = 0, len(body), 200
                match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "") or "")
                if match and (match.group(1) or match.group(2)):
                    if match.group(1):
                        start = int(match.group(1))
                        end = min(len(body), int(match.group(2)) + 1) if match.group(2) else len(body)
                    else:
                        start = max(0, len(body) - int(match.group(2)))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                part = body[start:end]
                self.send_response(status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(part)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(body)}")
                self.end_headers()
                if self.command == "HEAD":
                    return
                if route.behaviour == "stall":
                    self.wfile.write(part[:16])
                    self.wfile.flush()
                    server._stop.wait(60)
                    self.close_connection = True
                    return
                if route.behaviour == "truncate":
                    half = part[: len(part) // 2]
                    self.wfile.write(half)
                    server._count(len(half))
                    self.close_connection = True
                    return
                piece = 1 << 16
                try:
                    for offset in range(0, len(part), piece):
                        chunk = part[offset:offset + piece]
                        self.wfile.write(chunk)
                        server._count(len(chunk))
                        if server.rate:
                            time.sleep(len(chunk) / server.rate)
                except (BrokenPipeError, ConnectionResetError):  # the client hung up: stop sending
                    self.close_connection = True

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                # a client that hangs up (yt-dlp's generic extractor reads only the first bytes of a page, FFmpeg
                # drops connections when it seeks) is normal here: no traceback on stderr
                import sys

                if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
                    super().handle_error(request, client_address)

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> "MediaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
