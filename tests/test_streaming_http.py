"""Streaming over HTTP from a local server on 127.0.0.1 that supports Range requests and counts bytes.

(a) Stock `datasets` streams the first rows of an exported Parquet file while reading a small
    fraction of it (range reads of the footer and the first row group).
(b) The builders' own `as_streaming_dataset` reads the metadata CSVs from a remote `data_dir` URL.
"""
import contextlib
import gc
import http.server
import os
import re
import threading
import time
import urllib.error
import urllib.request
import warnings
from functools import partial

import datasets
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest
from datasets.packaged_modules.parquet.parquet import ParquetConfig

import emm1
from emm1_lib.errors import DanglingIdWarning
from emm1_lib.tools.export import export
from emm1_lib.testing.sample import generate_sample_tree

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
MAX_REQUESTS = 500  # a runaway client fails the test instead of hammering the server
CHUNK = 1 << 16
HAS_FRAGMENT_SCAN_OPTIONS = "fragment_scan_options" in ParquetConfig.__dataclass_fields__


class CountingRangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files of one folder with HEAD, GET and single `Range: bytes=a-b` requests (206), counting bytes.

    `SimpleHTTPRequestHandler` alone ignores Range; fsspec's HTTP files need it for random access.
    """

    timeout = 10  # seconds of client silence before the server drops the connection

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass

    def do_HEAD(self):
        self._serve(send_body=False)

    def do_GET(self):
        self._serve(send_body=True)

    def _serve(self, send_body: bool) -> None:
        stats = self.server.stats
        with stats["lock"]:
            stats["active"] += 1
        try:
            self._respond(stats, send_body)
        finally:
            with stats["lock"]:
                stats["active"] -= 1

    def _respond(self, stats: dict, send_body: bool) -> None:
        with stats["lock"]:
            stats["requests"].append((self.command, self.path, self.headers.get("Range")))
            entry = [self.command, self.path, self.headers.get("Range"), 0]
            stats["log"].append(entry)
            too_many = len(stats["requests"]) > MAX_REQUESTS
        if too_many:
            self.send_error(503, "request limit of the test server reached")
            return
        path = self.translate_path(self.path)  # stays under the served folder
        if not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        start, end, status = 0, size - 1, 200
        requested = self.headers.get("Range")
        if requested:
            match = _RANGE.match(requested.strip())
            if not match or not (match.group(1) or match.group(2)):
                self.send_error(416)
                return
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # suffix range: the last n bytes
                start = max(0, size - int(match.group(2)))
            if start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not send_body:
            return
        with open(path, "rb") as f:
            f.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = f.read(min(CHUNK, remaining))
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client had what it wanted (e.g. fsspec's existence probe)
                remaining -= len(chunk)
                with stats["lock"]:
                    stats["bytes"][self.path] = stats["bytes"].get(self.path, 0) + len(chunk)
                    entry[3] += len(chunk)


@contextlib.contextmanager
def serve(folder: str):
    """Serve `folder` on 127.0.0.1 (a free port) in a thread; yields (base URL, stats)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(CountingRangeHandler, directory=folder))
    server.daemon_threads = True
    server.stats = {"lock": threading.Lock(), "requests": [], "bytes": {}, "log": [], "active": 0}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.stats
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _quiet_prepare(builder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        builder.download_and_prepare()
    return builder.as_dataset(split="train")


@pytest.fixture(scope="module")
def big_export(tmp_path_factory):
    """phase1_nn1 of a metadata-only tree of 150k captions, exported as one Parquet file of 5k-row groups."""
    root = tmp_path_factory.mktemp("big-tree")
    tree = generate_sample_tree(str(root), num_captions=150_000, num_media=2_000, num_neighbours=1,
                                num_triplets=8, eshot_categories=2, media=False)
    out = tmp_path_factory.mktemp("big-export") / "repo"
    export(str(out), tree.metadata_dir, ["phase1_nn1"], cache_dir=str(tmp_path_factory.mktemp("big-cache")),
           row_group_rows=5_000, min_files=1)
    [name] = os.listdir(out / "phase1_nn1")
    return str(out), f"phase1_nn1/{name}"


def test_range_handler_serves_ranges(tmp_path):
    (tmp_path / "f.bin").write_bytes(bytes(range(256)) * 4)
    with serve(str(tmp_path)) as (url, stats):
        request = urllib.request.Request(f"{url}/f.bin", headers={"Range": "bytes=10-19"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 206 and response.read() == bytes(range(10, 20))
            assert response.headers["Content-Range"] == "bytes 10-19/1024"
        request = urllib.request.Request(f"{url}/f.bin", headers={"Range": "bytes=-4"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.read() == bytes(range(252, 256))
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"{url}/../etc/passwd", timeout=5)
    assert stats["bytes"]["/f.bin"] == 14


@pytest.mark.skipif(not HAS_FRAGMENT_SCAN_OPTIONS, reason="datasets < 4.2 has no Parquet fragment_scan_options")
def test_stock_parquet_streams_first_rows_reading_a_fraction(big_export, tmp_path):
    """(a) `load_dataset("parquet", data_files=URL, streaming=True)`: the first rows for a fraction of the bytes.

    Stock knobs: no Parquet pre-buffering (by default pyarrow coalesces the reads of all row groups
    into requests of up to 32 MiB) and a 256 KiB HTTP read block (fsspec reads ahead 5 MiB by default).
    A 256 MiB shard with the defaults costs about 32 MiB + 5 MiB for its first rows.
    """
    out, relative = big_export
    local = os.path.join(out, relative)
    size = os.path.getsize(local)
    expected = pq.ParquetFile(local).read_row_group(0, columns=["encord_text_id", "caption"]).slice(0, 10)
    with serve(out) as (url, stats):
        stream = datasets.load_dataset(
            "parquet", data_files={"train": f"{url}/{relative}"}, split="train", streaming=True,
            fragment_scan_options=pds.ParquetFragmentScanOptions(pre_buffer=False),
            storage_options={"block_size": 256 << 10},
        )
        features = stream.features
        rows = list(stream.take(10))
        # Close the half-read Parquet file and let pyarrow's I/O threads finish their reads now: a read
        # still in flight at interpreter exit aborts Python (PyGILState_Release during finalization).
        del stream
        gc.collect()
        _wait_until_idle(stats)
    assert [r["encord_text_id"] for r in rows] == expected["encord_text_id"].to_pylist()
    assert [r["caption"] for r in rows] == expected["caption"].to_pylist()
    assert features["encord_text_id"] == datasets.Value("int64")  # typed from the file's metadata
    ranged = [(r, n) for _, path, r, n in stats["log"] if path == f"/{relative}" and r]
    probes = [n for method, path, r, n in stats["log"] if path == f"/{relative}" and method == "GET" and not r]
    read = sum(n for _, n in ranged)
    print(f"\nstreamed 10 rows: range reads {read:,} of {size:,} bytes ({read / size:.1%}) in {len(ranged)} "
          f"requests; {len(probes)} unranged GET existence probe(s) abandoned after {probes} bytes were pushed")
    assert ranged and all(_range_length(r, size) < size // 4 for r, _ in ranged), stats["log"]
    assert 0 < read < 0.3 * size, stats["log"]
    assert len(probes) <= 2  # fsspec's HTTP `exists` is a GET whose body it never reads


def _wait_until_idle(stats: dict, timeout: float = 5.0) -> None:
    """Wait until the server has had no request in progress for 0.3 s (at most `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        if stats["active"]:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 0.3:
            return
        time.sleep(0.02)


def _range_length(header: str, size: int) -> int:
    start, end = _RANGE.match(header).groups()
    if not start:
        return int(end)
    return (int(end) if end else size - 1) - int(start) + 1


def test_builder_streams_from_a_remote_data_dir(released_tree, tmp_path):
    """(b) `as_streaming_dataset` with `data_dir` an http:// URL equals the local prepared split."""
    local = _quiet_prepare(emm1.EMM1(config_name="phase1_nn2", data_dir=released_tree.metadata_dir,
                                     root_data_path=released_tree.root, decode=False,
                                     cache_dir=str(tmp_path / "local")))
    with serve(released_tree.metadata_dir) as (url, stats):
        builder = emm1.EMM1(config_name="phase1_nn2", data_dir=url, root_data_path=released_tree.root,
                            decode=False, cache_dir=str(tmp_path / "remote"), shard_bytes=256)
        stream = builder.as_streaming_dataset(split="train")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DanglingIdWarning)
            rows = list(stream)
        triplets = emm1.EMM1(config_name="phase2_triplets", data_dir=url, root_data_path=released_tree.root,
                             decode=False, cache_dir=str(tmp_path / "remote"))
        first_triplet = next(iter(triplets.as_streaming_dataset(split="train")))
    assert [r["encord_text_id"] for r in rows] == local["encord_text_id"]
    assert [r["image"] for r in rows] == local["image"]  # decode=False: {"bytes": None, "path": ...}, or None
    assert any(r["image"] for r in rows)
    assert first_triplet["annotation"] in (0, 1, 2) and first_triplet["paired_file_path"].startswith(released_tree.root)
    served = {path for _, path, _ in stats["requests"]}
    assert "/e-mm1_100m/nn_2/data_groups.csv" in served and "/e-mm1_100m/infos/text.csv" in served
    assert any(r for _, path, r in stats["requests"] if path.endswith("data_groups.csv"))  # byte-range reads


def test_remote_grouping_file_with_a_quoted_line_break_yields_no_phantom_row(tmp_path):
    """A remote grouping file is not downloaded up front: each byte range checks its own lines, so the range holding
    the line that opens a quoted line break refuses before any range after it (which could start inside the quotes)
    yields a row. The rows before it are the file's own."""
    import csv

    tree = generate_sample_tree(str(tmp_path / "tree"), media=False, num_neighbours=1, num_captions=200)
    path = os.path.join(tree.phase1_dir, "nn_1", "data_groups.csv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows[0].append("notes")
    for line, row in enumerate(rows[1:], start=2):
        row.append("first line\n" + "\n".join(["0,0,0,0,0,1,x"] * 40) if line == 120 else "x")
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    genuine = [(int(r[0]), int(r[1])) for r in rows[1:]]
    with serve(tree.metadata_dir) as (url, _):
        builder = emm1.EMM1(config_name="phase1_nn1", data_dir=url, root_data_path=tree.root, decode=False,
                            cache_dir=str(tmp_path / "hf"), shard_bytes=256)
        seen = []
        with pytest.raises(Exception) as raised, warnings.catch_warnings():
            warnings.simplefilter("ignore", DanglingIdWarning)
            for row in builder.as_streaming_dataset(split="train"):
                seen.append((row["encord_text_id"], row["encord_video_id"]))
    error = raised.value
    while error is not None and getattr(error, "code", None) is None:
        error = error.__cause__ or error.__context__
    assert error.code == "quoted_line_break" and error.line == 120 and error.file.endswith("nn_1/data_groups.csv")
    assert seen == genuine[:len(seen)] and len(seen) < 119
