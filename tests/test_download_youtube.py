"""`emm1 download` for YouTube sources: yt-dlp's Python API cuts `start_time`-`end_time` out of real MP4s
served by the local `MediaServer` through the `--mirror SOURCE={youtube_id}.mp4` template (yt-dlp's generic
extractor on a direct link), FFmpeg from imageio-ffmpeg.

The source clips are made so that a cut can be located: the video's frame i is grey level 20 + 5 i (8 fps),
and the audio's second k is a 440 Hz tone of amplitude 0.05 (k + 1). Everything runs against 127.0.0.1: a
socket guard records every address the test process connects to, and every FFmpeg command is recorded.
"""
import json
import os
import pathlib
import socket
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from emm1_lib.acquire.plan import build_plan
from emm1_lib.acquire.run import DownloadOptions, download, survey
from emm1_lib.acquire.sources import load_sources
from emm1_lib.acquire.store import PARTIAL_PREFIX, manifest_path
from http_servers import MediaServer, Route

yt_dlp = pytest.importorskip("yt_dlp", reason="yt-dlp is not installed: pip install 'emm1[download]' (the test extra "
                                              "installs it)")
pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg is not installed: pip install 'emm1[download]'")
av = pytest.importorskip("av")

SECONDS = 6
FPS = 8
RATE = 16000
FAST = dict(timeout=20.0, retries=2, backoff=0.01, progress=False)
# decoded length against end_time - start_time: an AAC frame is 64 ms at 16 kHz, a video frame 125 ms
TOLERANCE = 0.2


def _amplitude(second: float) -> float:
    return 0.05 * (int(second) + 1)


def _write_source(path: pathlib.Path, video: bool) -> bytes:
    """A 6 s MP4: AAC audio (second k at amplitude 0.05 (k+1)), with `video` an mpeg4 stream of grey frames."""
    with av.open(str(path), mode="w") as container:
        vstream = None
        if video:
            vstream = container.add_stream("mpeg4", rate=FPS)
            vstream.width = vstream.height = 32
            vstream.pix_fmt = "yuv420p"
            vstream.codec_context.gop_size = FPS  # a keyframe a second: a cut at 1.25 s falls between keyframes
        astream = container.add_stream("aac", rate=RATE)
        astream.layout = "mono"
        if vstream is not None:
            for i in range(SECONDS * FPS):
                frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 + 5 * i, np.uint8), format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, FPS)
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode())
        t = np.arange(SECONDS * RATE) / RATE
        signal = (0.05 * (np.floor(t) + 1) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(signal[None, :], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, 0, Fraction(1, RATE)
        container.mux(astream.encode(frame))
        container.mux(astream.encode())
    return path.read_bytes()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {"audio": _write_source(folder / "audio.mp4", video=False),
            "video": _write_source(folder / "video.mp4", video=True)}


@pytest.fixture
def server():
    with MediaServer() as running:
        yield running


def _rewrite(path: str, assign) -> pa.Table:
    """Rewrite a CSV: `assign(row) -> dict of new values`; returns the new table."""
    table = pacsv.read_csv(path)
    rows = [{**r, **assign(i, r)} for i, r in enumerate(table.to_pylist())]
    new = pa.Table.from_pylist(rows)
    pacsv.write_csv(new, path)
    return new


def _sections(i: int) -> dict:
    start = (1.25, 2.5, 3.4)[i % 3]
    return {"start_time": start, "end_time": start + (2.0, 1.5, 2.5)[i % 3]}


def _youtube_tree(tree, server, clips, behaviours=None):
    """EShot audio (.wav/.flac/.mp4 destinations) and phase 1 video rows (as InternVid) become sections of
    the served clips: /yt/{youtube_id}.mp4. Returns the mirrors to pass."""
    behaviours = behaviours or {}

    def serve(kind):
        def assign(i, row):
            server.add(f"/yt/{row['youtube_id']}.mp4",
                       Route(clips[kind], "video/mp4", behaviours.get(row["youtube_id"], "ok")))
            return {**_sections(i), **({"source_dataset": "InternVid"} if kind == "video" else {})}
        return assign

    _rewrite(os.path.join(tree.eshot_dir, "eshot_audio_info.csv"), serve("audio"))
    _rewrite(os.path.join(tree.phase1_dir, "infos", "video.csv"), serve("video"))
    template = server.url("/yt/{youtube_id}.mp4")
    return {"EShot audio": template, "InternVid": template}


def _decode(path: str):
    """(seconds of audio, audio samples at 16 kHz mono or None, video frames' mean grey levels, stream types)."""
    with av.open(path) as container:
        types = sorted(s.type for s in container.streams)
        samples, greys = [], []
        if container.streams.audio:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    samples.append(out.to_ndarray().reshape(-1))
    if "video" in types:
        with av.open(path) as container:
            greys = [float(f.to_ndarray(format="gray").mean()) for f in container.decode(video=0)]
    audio = np.concatenate(samples) if samples else None
    return (None if audio is None else len(audio) / RATE), audio, greys, types


class _Guard:
    """Records every address this process connects a socket to, and every FFmpeg command line."""

    def __init__(self, monkeypatch):
        self.addresses, self.commands = [], []
        connect, execute = socket.socket.connect, subprocess.Popen._execute_child
        guard = self

        def guarded_connect(sock, address):
            guard.addresses.append(address)
            if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "localhost"):
                raise ConnectionRefusedError(f"test guard: no connection to {address} (127.0.0.1 only)")
            return connect(sock, address)

        def recorded(popen, args, *rest, **kwargs):
            guard.commands.append(list(args) if isinstance(args, (list, tuple)) else [args])
            return execute(popen, args, *rest, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", guarded_connect)
        monkeypatch.setattr(subprocess.Popen, "_execute_child", recorded)

    def ffmpeg_runs(self):
        return [c for c in self.commands if "ffmpeg" in os.path.basename(str(c[0])) and "-i" in c]


def _files(folder: pathlib.Path):
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_sections_are_cut_converted_and_confined_to_root(tree, server, clips, tmp_path, monkeypatch):
    mirrors = _youtube_tree(tree, server, clips)
    root = tmp_path / "root"
    sources = load_sources(mirrors=mirrors)
    plan = build_plan(tree.metadata_dir, configs=["eshot_audio", "phase1_nn1"],
                      sources=["EShot audio", "InternVid"])
    assert set(plan.source_counts) == {"EShot audio", "InternVid"}
    suffixes = {os.path.splitext(d)[1] for d in plan.items["destination"].to_pylist()}
    assert {".wav", ".flac", ".mp4"} <= suffixes  # every audio target format of the sample tree
    before = _files(tmp_path)
    guard = _Guard(monkeypatch)
    reports = download(plan, str(root), sources, DownloadOptions(workers=4, **FAST))
    monkeypatch.undo()
    assert reports["EShot audio"].fetched == plan.source_counts["EShot audio"], reports["EShot audio"].errors
    assert reports["InternVid"].fetched == plan.source_counts["InternVid"], reports["InternVid"].errors

    for item in plan.items.to_pylist():
        path = root / item["destination"]
        wanted = item["end_time"] - item["start_time"]
        seconds, audio, greys, types = _decode(str(path))
        if item["modality"] == "audio":
            assert types == ["audio"], (path, types)  # audio only, even from a clip with video
            if path.suffix == ".mp4":
                with av.open(str(path)) as container:
                    assert container.streams.audio[0].codec_context.name == "aac"
        else:
            assert "video" in types, (path, types)
            assert abs(len(greys) / FPS - wanted) <= TOLERANCE, (path, len(greys), wanted)
            # the first frame is the source's frame at start_time, not the keyframe before it
            assert abs(greys[0] - (20 + 5 * round(item["start_time"] * FPS))) <= 3, (path, greys[:3], item)
        assert abs(seconds - wanted) <= TOLERANCE, (path, seconds, wanted)
        window = audio[int(0.05 * RATE):int(0.3 * RATE)]
        rms = float(np.sqrt(np.mean(window ** 2)))
        expected = _amplitude(item["start_time"]) / np.sqrt(2)
        assert abs(rms - expected) <= 0.15 * expected, (path, rms, expected, item["start_time"])

    # nothing outside ROOT but the manifest; no temporary file or folder left inside it
    assert _files(tmp_path) - before - {"root"} - {str(p.relative_to(tmp_path)) for p in root.rglob("*")} \
        == {os.path.basename(manifest_path(str(root)))}
    assert not [p for p in root.rglob("*") if p.name.startswith(PARTIAL_PREFIX)]
    # yt-dlp and its requests connected to 127.0.0.1 only; FFmpeg read the server or files inside ROOT only
    assert guard.addresses and all(a[0] == "127.0.0.1" for a in guard.addresses if isinstance(a, tuple))
    runs = guard.ffmpeg_runs()
    assert len(runs) >= plan.items.num_rows
    real_root = os.path.realpath(root)
    for command in runs:
        inputs = [command[i + 1] for i, arg in enumerate(command) if arg == "-i"]
        for value in inputs + [command[-1]]:
            if value.startswith("http"):
                assert value.startswith(f"http://127.0.0.1:{server.port}/yt/"), command
            else:
                local = value[len("file:"):] if value.startswith("file:") else value
                assert os.path.realpath(local).startswith(real_root + os.sep), command


def test_failures_are_recorded_and_retried(tree, server, clips, tmp_path):
    """404: failed with the reason, nothing at the final path; 500 then 200: retried, fetched; a rerun
    fetches only the failed item (here: still failing)."""
    behaviours = {"yt_0": "404", "yt_1": "fail_then_ok", "yt_2": "html"}
    mirrors = _youtube_tree(tree, server, clips, behaviours)
    root = tmp_path / "root"
    plan = build_plan(tree.metadata_dir, configs=["eshot_audio"], limit=4)
    sources = load_sources(mirrors=mirrors)
    report = download(plan, str(root), sources, DownloadOptions(workers=2, **FAST))["EShot audio"]
    records = {r["id"]: r for r in map(json.loads, open(manifest_path(str(root))))}
    assert (report.fetched, report.failed) == (2, 2), report.errors
    assert records[0]["status"] == "failed" and "404" in records[0]["error"] and records[0]["attempts"] == 1
    assert records[1]["status"] == "ok" and records[1]["attempts"] == 2
    assert records[2]["status"] == "failed" and "/yt/yt_2.mp4" in records[2]["error"]
    assert records[3]["status"] == "ok"
    destinations = dict(zip(plan.items["id"].to_pylist(), plan.items["destination"].to_pylist()))
    assert not (root / destinations[0]).exists() and not (root / destinations[2]).exists()
    assert not [p for p in root.rglob("*") if p.name.startswith(PARTIAL_PREFIX)]

    served = server.requests
    again = download(plan, str(root), sources, DownloadOptions(workers=2, **FAST))["EShot audio"]
    assert (again.present, again.failed, again.fetched) == (2, 2, 0)
    assert server.requests > served  # the two failures were tried again, the present two were not re-read


def test_dry_run_and_cli_through_the_mirror_template(tree, server, clips, tmp_path, capsys):
    from emm1_lib.tools import cli as emm1_cli

    mirrors = _youtube_tree(tree, server, clips)
    root = tmp_path / "root"
    args = ["download", tree.metadata_dir, "--root-data-path", str(root), "--configs", "eshot_audio",
            "--mirror", f"EShot audio={mirrors['EShot audio']}", "--no-progress", "--timeout", "20"]
    assert emm1_cli.main(args + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "yt-dlp sections of http://127.0.0.1" in out and not root.exists()
    assert emm1_cli.main(args + ["--limit", "3"]) == 0
    assert len(list((root / "eshot" / "audio").iterdir())) == 3


def test_without_yt_dlp_items_are_reported_with_the_install_hint(tree, server, clips, tmp_path, monkeypatch):
    mirrors = _youtube_tree(tree, server, clips)
    monkeypatch.setitem(sys.modules, "yt_dlp", None)  # `import yt_dlp` raises ImportError
    plan = build_plan(tree.metadata_dir, configs=["eshot_audio"], limit=2)
    sources = load_sources(mirrors=mirrors)
    surveyed = survey(plan, str(tmp_path / "root"), sources, DownloadOptions(**FAST))["EShot audio"]
    assert surveyed.not_fetchable == 2 and "pip install 'emm1[download]'" in surveyed.mechanism
    report = download(plan, str(tmp_path / "root"), sources, DownloadOptions(**FAST))["EShot audio"]
    assert report.not_fetchable == 2 and server.requests == 0
    records = list(map(json.loads, open(manifest_path(str(tmp_path / "root")))))
    assert {r["status"] for r in records} == {"not_fetchable"}
    assert all("pip install 'emm1[download]'" in r["error"] for r in records)


def test_a_stalled_server_times_out_and_is_retried(tree, server, clips, tmp_path):
    mirrors = _youtube_tree(tree, server, clips, {"yt_0": "stall"})
    root = tmp_path / "root"
    plan = build_plan(tree.metadata_dir, configs=["eshot_audio"], limit=1)
    options = DownloadOptions(**dict(FAST, timeout=1.0, retries=1))
    report = download(plan, str(root), load_sources(mirrors=mirrors), options)["EShot audio"]
    record = json.loads(open(manifest_path(str(root))).read().splitlines()[-1])
    assert report.failed == 1 and record["attempts"] == 2, record  # retried once, then given up
    # yt-dlp's page request or FFmpeg's read (-rw_timeout) gives up, whichever the stall hits
    assert ("timed out" in record["error"].lower() or "ffmpeg exited" in record["error"]), record
    assert "/yt/yt_0.mp4" in record["error"], record
    assert not [p for p in root.rglob("*") if p.is_file()]


def test_a_mirror_page_cannot_hand_the_clip_to_another_site(tree, server, clips, tmp_path, monkeypatch):
    """A mirror answering with an HTML page that embeds a YouTube player: the generic extractor is the only one a
    mirror may use, so the embed is not followed (no connection beyond 127.0.0.1) and the item fails with a reason."""
    from emm1_lib.acquire.youtube import extractors_for

    assert extractors_for("https://www.youtube.com/watch?v=abc") == ("youtube",)
    assert extractors_for("https://youtu.be/abc") == ("youtube",)
    assert extractors_for(server.url("/yt/abc.mp4")) == ("generic",)
    mirrors = _youtube_tree(tree, server, clips)
    page = b'<html><body><iframe src="https://www.youtube.com/embed/dQw4w9WgXcQ"></iframe></body></html>'
    server.add("/yt/yt_0.mp4", Route(page, "text/html"))
    guard = _Guard(monkeypatch)
    looked_up, getaddrinfo = [], socket.getaddrinfo

    def recorded_lookup(host, *args, **kwargs):  # offline, a lookup is as far as a connection elsewhere gets
        looked_up.append(host)
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recorded_lookup)
    root = tmp_path / "root"
    plan = build_plan(tree.metadata_dir, configs=["eshot_audio"], limit=1)
    report = download(plan, str(root), load_sources(mirrors=mirrors), DownloadOptions(**dict(FAST, retries=0)))
    record = json.loads(open(manifest_path(str(root))).read().splitlines()[-1])
    assert report["EShot audio"].failed == 1 and record["status"] == "failed", record
    assert all(a[0] == "127.0.0.1" for a in guard.addresses if isinstance(a, tuple)), guard.addresses
    assert set(looked_up) <= {"127.0.0.1", "localhost"}, looked_up
    assert "youtube.com" not in record["error"] and not guard.ffmpeg_runs()
