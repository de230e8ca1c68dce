"""`emm1 download --engine dask`: a 2-worker LocalCluster (worker processes) fetches a plan of every source kind the
stand-ins serve and leaves the same tree and manifest as the single-machine run; so does a run whose worker is
SIGKILLed while it holds a task.

Sources: Conceptual Captions (URLs), COCO (an HTTP zip), Flickr30k (a Hub zip behind HF_ENDPOINT), ImageNet (a
Parquet file of image structs), OpenShape and EShot points (one streamed tar.gz), VGGSound (YouTube sections cut by
yt-dlp and FFmpeg from MP4s behind the `--mirror` template); WavCaps and VideoRefer (no entry in the sources)
are recorded not_fetchable by both engines alike. The other YouTube sources are left out of the plan (fewer clips).
"""
import io
import json
import os
import pathlib
import signal
import threading
import zipfile

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from emm1_lib.acquire.engines import download_dask
from emm1_lib.acquire.plan import build_plan
from emm1_lib.acquire.run import DownloadOptions, download
from emm1_lib.acquire.sources import load_sources
from emm1_lib.acquire.store import PARTIAL_PREFIX, manifest_path
from emm1_lib.tools import cli as emm1_cli
from http_servers import MediaServer, Route
from test_download import _files_under, _media_bytes, _tar_gz

distributed = pytest.importorskip("distributed")

CONFIGS = ["phase1_all", "phase2_triplets", "eshot_audio", "eshot_points"]
IMAGE_SOURCES = ("Conceptual Captions", "COCO", "Flickr30k", "ImageNet")
SOURCES = IMAGE_SOURCES + ("OpenShape", "EShot points", "VGGSound", "WavCaps", "VideoRefer")
# roomy timeouts: a loaded machine may pause a server or a worker for seconds
OPTIONS = dict(workers=2, timeout=30.0, retries=2, backoff=0.01, progress=False, shard_items=2)


@pytest.fixture(scope="module")
def server():
    with MediaServer() as running:
        yield running


@pytest.fixture(scope="module")
def cluster(server):
    """Two worker processes (one task at a time each), told where the stand-in Hub is, as a real worker's
    environment would; no dashboard (bokeh is not a dependency)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      env={"HF_ENDPOINT": server.url("").rstrip("/")}) as local:
        with Client(local) as client:
            yield client


def _serve_every_kind(tree, server, prefix: str):
    """Rewrite the sample tree's sources so that each kind is used, serve the archives; returns the mirrors."""
    import pyarrow.parquet as pq

    coco, flickr, imagenet = io.BytesIO(), io.BytesIO(), []
    position = [0]
    with zipfile.ZipFile(coco, "w") as coco_zip, zipfile.ZipFile(flickr, "w", zipfile.ZIP_DEFLATED) as flickr_zip:
        def assign(row):
            kind = IMAGE_SOURCES[position[0] % len(IMAGE_SOURCES)]
            position[0] += 1
            data, image_id = _media_bytes(tree, row), row["encord_image_id"]
            if kind == "Conceptual Captions":
                return kind, server.add(f"/{prefix}/cc/{image_id}-{row['file_name']}", Route(data, "image/jpeg"))
            if kind == "COCO":
                coco_zip.writestr(f"train2017/{image_id:012d}.jpg", data)
                return kind, str(image_id)
            if kind == "Flickr30k":
                flickr_zip.writestr(f"flickr{image_id}.jpg", data)
                return kind, f"flickr{image_id}"
            imagenet.append({"bytes": data, "path": f"n01440764_{image_id}.JPEG"})
            return kind, f"n01440764_{image_id}"

        for split_dir in (tree.phase1_dir, tree.phase2_dir):
            path = os.path.join(split_dir, "infos", "image.csv")
            table = pacsv.read_csv(path)
            values = [assign(r) for r in table.to_pylist()]
            for column, i in (("source_dataset", 0), ("file_id", 1)):
                table = table.set_column(table.column_names.index(column), column, pa.array([v[i] for v in values]))
            pacsv.write_csv(table, path)
    parquet = io.BytesIO()
    pq.write_table(pa.table({"image": imagenet}), parquet, row_group_size=2)
    members = []
    for split_dir, info in ((tree.phase1_dir, "infos/points.csv"), (tree.phase2_dir, "infos/points.csv"),
                            (tree.eshot_dir, "eshot_points_info.csv")):
        for row in pacsv.read_csv(os.path.join(split_dir, info)).to_pylist():
            members.append((f"shapes/{row['file_id']}.npy",
                            pathlib.Path(tree.root, row["save_folder"], "points", row["file_name"]).read_bytes()))
    tar = server.add(f"/{prefix}/points.tar.gz", Route(_tar_gz(members)))
    clip = None
    for split_dir in (tree.phase1_dir, tree.phase2_dir):  # VGGSound: the first 0.2 s of the tree's MP4 audio clip
        path = os.path.join(split_dir, "infos", "audio.csv")
        table = pacsv.read_csv(path)
        rows = table.to_pylist()
        for row in rows:
            if clip is None and row["file_name"].endswith(".mp4"):
                clip = pathlib.Path(tree.root, row["save_folder"], "audio", row["file_name"]).read_bytes()
            if row["source_dataset"] == "VGGSound":
                row["start_time"], row["end_time"] = 0.0, 0.2
        schema = table.schema
        for column in ("start_time", "end_time"):
            schema = schema.set(schema.get_field_index(column), pa.field(column, pa.float64()))
        pacsv.write_csv(pa.Table.from_pylist(rows, schema=schema), path)
    for row in build_plan(tree.metadata_dir, CONFIGS, sources=["VGGSound"]).items.to_pylist():
        server.add(f"/{prefix}/yt/{row['youtube_id']}.mp4", Route(clip, "video/mp4"))
    server.add("/datasets/nlphuji/flickr30k/resolve/main/flickr30k-images.zip", Route(flickr.getvalue()))
    return {"COCO": server.add(f"/{prefix}/train2017.zip", Route(coco.getvalue())),
            "ImageNet": server.add(f"/{prefix}/train.parquet", Route(parquet.getvalue())),
            "OpenShape": tar, "EShot points": tar, "VGGSound": server.url(f"/{prefix}/yt/{{youtube_id}}.mp4")}


def _manifest_rows(root) -> set:
    """The manifest's records without their time, as a set (the order differs between engines)."""
    rows = [json.loads(line) for line in open(manifest_path(str(root)))]
    return {json.dumps({k: v for k, v in r.items() if k != "time"}, sort_keys=True) for r in rows}


def _single_machine(plan, sources, root):
    """The reference run, before the cluster's: a worker restarting in this process (the LocalCluster's nannies
    live here) parses dask's config with `ast.literal_eval`, which CPython 3.11 cannot run beside another thread's
    (the decode checks' .npy headers)."""
    download(plan, str(root), sources, DownloadOptions(**OPTIONS))
    return _files_under(root), _manifest_rows(root)


def _assert_same_as_single_machine(plan, sources, expected, root, reports):
    expected_files, expected_rows = expected
    assert _files_under(root) == expected_files
    assert _manifest_rows(root) == expected_rows
    kinds = {sources[json.loads(r)["source"]].kind for r in expected_rows if json.loads(r)["status"] == "ok"}
    assert kinds == {"url", "http_zip", "hub_zip", "http_parquet", "http_tar", "youtube"}
    fetched = {s: r.fetched for s, r in reports.items() if r.fetched}
    assert set(fetched) == set(SOURCES) - {"WavCaps", "VideoRefer"}
    assert {json.loads(r)["source"] for r in expected_rows if json.loads(r)["status"] == "not_fetchable"} == \
        {"WavCaps", "VideoRefer"}
    assert sum(r.failed for r in reports.values()) == 0
    assert not [p for p in pathlib.Path(root).rglob("*") if p.name.startswith(PARTIAL_PREFIX)]


def test_two_workers_equal_a_single_machine_run(tree, server, cluster, tmp_path, monkeypatch, capsys):
    """The command line, as a user runs it against a scheduler's address."""
    monkeypatch.setenv("HF_ENDPOINT", server.url("").rstrip("/"))  # the client reads the Hub zip's directory too
    mirrors = _serve_every_kind(tree, server, "equal")
    sources = load_sources(mirrors=mirrors)
    assert sources["Flickr30k"].kind == "hub_zip"
    plan = build_plan(tree.metadata_dir, CONFIGS, sources=SOURCES)
    expected = _single_machine(plan, sources, tmp_path / "single")
    root = tmp_path / "cluster"
    command = ["download", tree.metadata_dir, "--root-data-path", str(root), "--configs", *CONFIGS, "--sources", *SOURCES,
               "--engine", "dask", "--scheduler", cluster.scheduler.address, "--workers", "2", "--shard-items", "2",
               "--timeout", "30", "--retries", "2"]
    command += [arg for name, url in mirrors.items() for arg in ("--mirror", f"{name}={url}")]
    assert emm1_cli.main(command) == 1  # WavCaps, VideoRefer: no entry, not fetchable, as on one machine
    out = capsys.readouterr()
    reports = _reports_from_manifest(root)
    _assert_same_as_single_machine(plan, sources, expected, root, reports)
    rows = [json.loads(line) for line in open(manifest_path(str(root)))]
    assert len(rows) == len({r["destination"] for r in rows}) == plan.items.num_rows  # nothing recorded twice
    assert "dask dashboard: http://" in out.err
    points = reports["EShot points"]
    assert "EShot points: 100%" in out.err and points.fetched == 10  # the bar of a source, filled from the cluster
    assert "EShot points" in out.out and f"{points.bytes / 1e6:.2f}" in out.out  # the summary table
    with pytest.raises(SystemExit):
        emm1_cli.main(["download", tree.metadata_dir, "--root-data-path", str(root), "--engine", "dask"])
    assert "--engine dask needs --scheduler" in capsys.readouterr().err


def _reports_from_manifest(root):
    from emm1_lib.acquire.run import SourceReport, count_record

    reports = {}
    for record in map(json.loads, open(manifest_path(str(root)))):
        report = reports.setdefault(record["source"], SourceReport(record["source"], ""))
        if record["status"] != "not_fetchable":
            count_record(report, record)
    return reports


def test_a_worker_killed_mid_task_loses_nothing(tree, server, cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", server.url("").rstrip("/"))
    sources = load_sources(mirrors=_serve_every_kind(tree, server, "kill"))
    plan = build_plan(tree.metadata_dir, CONFIGS, sources=SOURCES)
    expected = _single_machine(plan, sources, tmp_path / "single")
    urls = [u for u in plan.items["file_id"].to_pylist() if u and u.startswith("http")]
    gated = server.routes[urls[1][len(server.url("")):]]  # the second URL: the first of its shard is fetched by then
    gated.gate = threading.Event()
    root = tmp_path / "cluster"
    outcome, seen = {}, []

    def run():
        try:
            outcome["reports"] = download_dask(plan, str(root), sources, DownloadOptions(**OPTIONS), cluster,
                                               on_progress=seen.append)
        except BaseException as err:  # re-raised by the test below
            outcome["error"] = err

    client_thread = threading.Thread(target=run, daemon=True)
    client_thread.start()
    try:
        assert gated.reached.wait(120), "the gated URL was never requested"
        holder = [address for address, keys in cluster.processing().items()
                  if any(str(key).endswith("-Conceptual Captions-0") for key in keys)]
        assert len(holder) == 1, cluster.processing()
        pid = cluster.run(os.getpid, workers=holder)[holder[0]]
        os.kill(pid, signal.SIGKILL)
    finally:
        gated.gate.set()
    client_thread.join(240)
    assert seen and seen[-1]["Conceptual Captions"][0] == 3  # progress: every item of the source, counted once
    assert not client_thread.is_alive(), "the cluster run did not finish"
    if "error" in outcome:
        raise outcome["error"]
    _assert_same_as_single_machine(plan, sources, expected, root, outcome["reports"])
    cluster.wait_for_workers(2, timeout=120)  # the nanny restarted the killed worker


def test_cluster_benchmark_smoke(tmp_path):
    """benchmarks/download_cluster.py runs end to end on a tiny size (no timing asserted: see docs/downloading.md)."""
    import sys

    benchmarks = str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks")
    sys.path.insert(0, benchmarks)
    try:
        import download_cluster as benchmark
    finally:
        sys.path.remove(benchmarks)
    report = benchmark.main(["--images", "6", "--latency", "0", "--rounds", "1", "--shard-items", "3",
                             "--json", str(tmp_path / "report.json")])
    assert report["images"] == 6 and len(report["ratios"]) == 1 and report["ratio"] > 0
    assert json.loads((tmp_path / "report.json").read_text())["rounds"] == 1


def test_a_task_that_keeps_failing_is_recorded_not_dropped(tree, tmp_path, monkeypatch):
    """A task that raises is run again (Dask `retries=3`); when it still fails, each of its items is recorded
    "failed" with the cluster's error. An in-process cluster, so the fault can be injected with monkeypatch."""
    from distributed import Client, LocalCluster

    from emm1_lib.acquire import engines

    calls = []

    def broken(task, *args, **kwargs):
        calls.append(task.source)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(engines, "run_task", broken)
    plan = build_plan(tree.metadata_dir, ["eshot_points"])
    sources = load_sources(mirrors={"EShot points": "http://127.0.0.1:9/never-read.tar.gz"})
    root = tmp_path / "root"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as local:
        with Client(local) as client:
            reports = download_dask(plan, str(root), sources, DownloadOptions(**OPTIONS), client)
    assert calls == ["EShot points"] * 4
    rows = [json.loads(line) for line in open(manifest_path(str(root)))]
    assert len(rows) == plan.items.num_rows == reports["EShot points"].failed == 10
    assert {r["status"] for r in rows} == {"failed"}
    assert all("EShot points-0 failed on the cluster: RuntimeError: disk on fire" in r["error"] for r in rows)
