"""`emm1 download` (emm1_lib/acquire/): the plan, URL images with injected failures, COCO-like zips read
with range requests, zip slip, reruns, a SIGKILL mid-way, and the downloaded tree working with the builders.

Real clients (requests, fsspec/aiohttp) against `tests/http_servers.py`'s `MediaServer` on 127.0.0.1.
"""
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from emm1_lib.acquire.plan import build_plan
from emm1_lib.acquire.run import DownloadOptions, download, survey
from emm1_lib.acquire.sources import load_sources
from emm1_lib.acquire.store import PARTIAL_PREFIX, manifest_path
from emm1_lib.errors import EMM1DataError
from http_servers import MediaServer, Route
from emm1_lib.testing.sample import generate_sample_tree
from emm1_lib.testing.sample_media import write_image
from emm1_lib.tools import cli as emm1_cli

REPO = pathlib.Path(__file__).resolve().parent.parent
# a roomy timeout: on a loaded CI machine the stand-in server may pause for over a second; the one test that
# injects a stall sets its own short one (3 s: long enough for a loaded machine, short enough to wait for)
FAST = dict(timeout=10.0, retries=2, backoff=0.01, progress=False)


def _infos(tree, split_dir):
    return os.path.join(split_dir, "infos", "image.csv")


def _set_image_sources(tree, assign):
    """Rewrite both phases' `infos/image.csv`: `assign(row) -> (source_dataset, file_id)`, row being a dict."""
    for split_dir in (tree.phase1_dir, tree.phase2_dir):
        path = _infos(tree, split_dir)
        table = pacsv.read_csv(path)
        rows = table.to_pylist()
        values = [assign(r) for r in rows]
        table = table.set_column(table.column_names.index("source_dataset"), "source_dataset",
                                 pa.array([v[0] for v in values], pa.string()))
        table = table.set_column(table.column_names.index("file_id"), "file_id",
                                 pa.array([v[1] for v in values], pa.string()))
        pacsv.write_csv(table, path)


def _media_bytes(tree, row):
    return pathlib.Path(tree.root, row["save_folder"], "image", row["file_name"]).read_bytes()


def _files_under(root):
    root = pathlib.Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _url_tree(tree, server, behaviours=None):
    """Every image row becomes a Conceptual Captions URL served by `server` (`behaviours`: id -> behaviour)."""
    behaviours = behaviours or {}

    def assign(row):
        path = f"/cc/{row['encord_image_id']}-{row['file_name']}"
        behaviour = behaviours.get(row["encord_image_id"], "ok")
        server.add(path, Route(_media_bytes(tree, row), "image/jpeg", behaviour))
        return "Conceptual Captions", server.url(path)

    _set_image_sources(tree, assign)


# ---------------------------------------------------------------- the plan


def test_plan_selects_the_media_of_the_configs(tree):
    plan = build_plan(tree.metadata_dir, configs=["phase1_nn1"], modalities=["image"])
    groups = pacsv.read_csv(os.path.join(tree.phase1_dir, "nn_1", "data_groups.csv"))
    infos = pacsv.read_csv(_infos(tree, tree.phase1_dir))
    wanted = infos.filter(pc.is_in(infos["encord_image_id"], value_set=groups["encord_image_id"]))
    assert sorted(plan.items["id"].to_pylist()) == sorted(wanted["encord_image_id"].to_pylist())
    expected = {f"{r['save_folder']}/image/{r['file_name']}" for r in wanted.to_pylist()}
    assert set(plan.items["destination"].to_pylist()) == expected
    assert set(plan.items["source"].to_pylist()) == set(wanted["source_dataset"].to_pylist())
    assert sum(plan.source_counts.values()) == plan.items.num_rows


def test_plan_triplets_eshot_filters_and_limit(tree):
    plan = build_plan(tree.metadata_dir, configs=["phase2_triplets", "eshot_audio", "eshot_points"])
    triplets = pacsv.read_csv(os.path.join(tree.phase2_dir, "triplets.csv"))
    audio = set(triplets["encord_paired_id"].filter(pc.equal(triplets["paired_modality"], "audio")).to_pylist()) | \
        set(triplets["encord_annotated_id"].filter(pc.equal(triplets["annotated_modality"], "audio")).to_pylist())
    planned = plan.items.filter(pc.and_(pc.equal(plan.items["split"], "phase2"), pc.equal(plan.items["modality"], "audio")))
    assert set(planned["id"].to_pylist()) == audio
    eshot = plan.items.filter(pc.equal(plan.items["split"], "eshot"))
    assert plan.source_counts["EShot audio"] == 12 and plan.source_counts["EShot points"] == 10
    assert set(eshot["destination"].to_pylist()) >= {"eshot/audio/0.wav", "eshot/points/100.npy"}
    assert eshot.filter(pc.equal(eshot["modality"], "audio"))["youtube_id"].null_count == 0

    limited = build_plan(tree.metadata_dir, limit=1)
    assert limited.items.num_rows == len(limited.source_counts) and set(limited.source_counts.values()) == {1}
    only = build_plan(tree.metadata_dir, sources=["EShot points"])
    assert set(only.items["source"].to_pylist()) == {"EShot points"} and only.items.num_rows == 10
    tasks = only.tasks(shard_items=4)
    assert [t.items.num_rows for t in tasks] == [4, 4, 2] and {t.source for t in tasks} == {"EShot points"}
    with pytest.raises(ValueError, match="phase3"):
        build_plan(tree.metadata_dir, configs=["phase3"])


def test_seed_metadata_is_refused_with_the_reason(tmp_path):
    seed = generate_sample_tree(str(tmp_path / "seed"), schema="seed", media=False)
    with pytest.raises(EMM1DataError, match="seed draft.*no source columns"):
        build_plan(seed.metadata_dir, configs=["phase1_nn1"])


def test_unsafe_file_name_is_refused_naming_the_file(tree):
    path = _infos(tree, tree.phase1_dir)
    table = pacsv.read_csv(path)
    names = table["file_name"].to_pylist()
    names[0] = "../../../outside.jpg"
    pacsv.write_csv(table.set_column(table.column_names.index("file_name"), "file_name", pa.array(names)), path)
    with pytest.raises(EMM1DataError, match="unsafe file_name") as caught:
        build_plan(tree.metadata_dir, configs=["phase1_all"], modalities=["image"])
    assert "image.csv" in str(caught.value)


def test_sources_file_and_mirror_override(tmp_path):
    extra = tmp_path / "mine.json"
    extra.write_text(json.dumps({"WavCaps": {"kind": "url"}}))
    sources = load_sources([str(extra)], {"COCO": "http://127.0.0.1:1/coco.zip", "Flickr30k": "http://127.0.0.1:1/f.zip"})
    assert sources["WavCaps"].kind == "url"
    assert sources["COCO"].location == "http://127.0.0.1:1/coco.zip"
    assert sources["Flickr30k"].kind == "http_zip"  # a mirrored Hub zip is read like any HTTP zip
    with pytest.raises(EMM1DataError, match="no source named 'Nope'"):
        load_sources([], {"Nope": "http://x"})
    extra.write_text(json.dumps({"X": {"kind": "ftp"}}))
    with pytest.raises(EMM1DataError, match="mine.json: source 'X'"):
        load_sources([str(extra)])


# ---------------------------------------------------------------- URL images


def test_url_images_with_injected_failures(tree, server, tmp_path):
    ids = pacsv.read_csv(_infos(tree, tree.phase1_dir))["encord_image_id"].to_pylist()
    behaviours = dict(zip(ids, ["404", "fail_then_ok", "stall", "truncate", "html", "ok"]))
    _url_tree(tree, server, behaviours)
    plan = build_plan(tree.metadata_dir, configs=["phase1_all"], modalities=["image"])
    root = str(tmp_path / "root")
    reports = download(plan, root, load_sources(), DownloadOptions(workers=4, **dict(FAST, timeout=3.0)))
    report = reports["Conceptual Captions"]
    assert report.needed == 6 and report.fetched == 2 and report.failed == 4

    records = {r["id"]: r for r in map(json.loads, open(manifest_path(root)))}
    by_behaviour = {b: records[i] for i, b in behaviours.items()}
    assert "HTTP 404" in by_behaviour["404"]["error"] and by_behaviour["404"]["attempts"] == 1
    assert by_behaviour["fail_then_ok"]["status"] == "ok" and by_behaviour["fail_then_ok"]["attempts"] == 2
    assert "timed out" in by_behaviour["stall"]["error"] and by_behaviour["stall"]["attempts"] == 3
    assert "truncated" in by_behaviour["truncate"]["error"] or "cut short" in by_behaviour["truncate"]["error"]
    assert "does not decode as image" in by_behaviour["html"]["error"]
    infos = {r["encord_image_id"]: r for r in pacsv.read_csv(_infos(tree, tree.phase1_dir)).to_pylist()}
    for i, behaviour in behaviours.items():
        final = pathlib.Path(root, infos[i]["save_folder"], "image", infos[i]["file_name"])
        if behaviour in ("ok", "fail_then_ok"):
            assert final.read_bytes() == _media_bytes(tree, infos[i])
            assert records[i]["bytes"] == final.stat().st_size and len(records[i]["sha256"]) == 64
        else:
            assert not final.exists(), behaviour
    assert not [p for p in pathlib.Path(root).rglob(f"{PARTIAL_PREFIX}*")]


def test_rerun_skips_present_files_and_retries_only_failures(tree, server, tmp_path):
    ids = pacsv.read_csv(_infos(tree, tree.phase1_dir))["encord_image_id"].to_pylist()
    _url_tree(tree, server, {ids[0]: "404"})
    plan = build_plan(tree.metadata_dir, configs=["phase1_all"], modalities=["image"])
    root = str(tmp_path / "root")
    first = download(plan, root, load_sources(), DownloadOptions(**FAST))["Conceptual Captions"]
    assert (first.fetched, first.failed) == (5, 1)
    requests_before = server.requests
    server.routes[[p for p in server.routes if p.startswith(f"/cc/{ids[0]}-")][0]].behaviour = "ok"
    second = download(plan, root, load_sources(), DownloadOptions(**FAST))["Conceptual Captions"]
    assert (second.present, second.fetched, second.failed) == (5, 1, 0)
    assert server.requests - requests_before == 1  # only the failed item was asked for again


def test_a_replaced_file_is_fetched_again(tree, server, tmp_path):
    _url_tree(tree, server)
    plan = build_plan(tree.metadata_dir, configs=["phase1_all"], modalities=["image"])
    root = tmp_path / "root"
    download(plan, str(root), load_sources(), DownloadOptions(**FAST))
    victim = root / plan.items["destination"][0].as_py()
    good = victim.read_bytes()
    victim.write_bytes(good[:10])  # truncated by someone else: its size no longer matches the manifest
    again = download(plan, str(root), load_sources(), DownloadOptions(**FAST))["Conceptual Captions"]
    assert (again.present, again.fetched) == (5, 1) and victim.read_bytes() == good


# ---------------------------------------------------------------- zips with range requests


def _coco_zip(tree, n_filler: int, seed: int = 0):
    """A COCO-like zip: the tree's images as `train2017/{id:012d}.jpg`, plus `n_filler` other noisy JPEGs."""
    buffer = io.BytesIO()
    wanted = {}
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for split_dir in (tree.phase1_dir, tree.phase2_dir):
            for row in pacsv.read_csv(_infos(tree, split_dir)).to_pylist():
                data = _media_bytes(tree, row)
                archive.writestr(f"train2017/{row['encord_image_id']:012d}.jpg", data)
                wanted[row["encord_image_id"]] = data
        rng = np.random.default_rng(seed)
        for i in range(n_filler):
            image = io.BytesIO()
            import PIL.Image

            PIL.Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(image, "JPEG", quality=95)
            archive.writestr(f"train2017/{900000000 + i:012d}.jpg", image.getvalue())
    return buffer.getvalue(), wanted


def test_coco_zip_subset_transfers_only_its_members(tree, server, tmp_path):
    body, wanted = _coco_zip(tree, n_filler=1200)
    assert len(wanted) <= 0.01 * (len(wanted) + 1200)  # a 1 % subset of the archive's members
    server.add("/zips/train2017.zip", Route(body, "application/zip"))
    _set_image_sources(tree, lambda row: ("COCO", str(row["encord_image_id"])))
    plan = build_plan(tree.metadata_dir, configs=["phase1_all", "phase2_triplets"], modalities=["image"])
    sources = load_sources(mirrors={"COCO": server.url("/zips/train2017.zip")})
    root = tmp_path / "root"
    dry = survey(plan, str(root), sources, DownloadOptions(**FAST))["COCO"]
    server.bytes_sent = 0
    report = download(plan, str(root), sources, DownloadOptions(workers=4, **FAST))["COCO"]
    assert report.failed == 0 and report.fetched == plan.items.num_rows
    assert server.bytes_sent <= 0.03 * len(body), (server.bytes_sent, len(body))
    assert dry.expected_bytes is not None and dry.expected_bytes <= report.bytes + 200 * report.fetched
    for item in plan.items.to_pylist():
        assert (root / item["destination"]).read_bytes() == wanted[item["id"]]


def test_hub_zip_through_hf_endpoint(tree, server, tmp_path, monkeypatch):
    body, wanted = _coco_zip(tree, n_filler=0)
    names = {}
    with zipfile.ZipFile(io.BytesIO(body)) as archive:  # Flickr30k members are `{file_id}.jpg`
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as flickr:
            for info in archive.infolist():
                image_id = int(info.filename.split("/")[1].split(".")[0])
                names[image_id] = f"flickr{image_id}"
                flickr.writestr(f"{names[image_id]}.jpg", archive.read(info))
    server.add("/datasets/nlphuji/flickr30k/resolve/main/flickr30k-images.zip", Route(out.getvalue()))
    monkeypatch.setenv("HF_ENDPOINT", server.url("").rstrip("/"))
    _set_image_sources(tree, lambda row: ("Flickr30k", names[row["encord_image_id"]]))
    plan = build_plan(tree.metadata_dir, configs=["phase1_all"], modalities=["image"])
    report = download(plan, str(tmp_path / "root"), load_sources(), DownloadOptions(**FAST))["Flickr30k"]
    assert report.failed == 0 and report.fetched == plan.items.num_rows
    for item in plan.items.to_pylist():
        assert (tmp_path / "root" / item["destination"]).read_bytes() == wanted[item["id"]]


def test_zip_slip_and_symlink_members_write_nothing_outside_root(tree, server, tmp_path):
    write_image(tmp_path / "x.jpg", seed=3)
    data = (tmp_path / "x.jpg").read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../evil.jpg", data)
        link = zipfile.ZipInfo("link.jpg")
        link.external_attr = (0o120777 << 16)
        archive.writestr(link, "/etc/passwd")
    server.add("/evil.zip", Route(buffer.getvalue()))
    ids = pacsv.read_csv(_infos(tree, tree.phase1_dir))["encord_image_id"].to_pylist()
    member_of = {ids[0]: "../../evil", ids[1]: "link"}
    _set_image_sources(tree, lambda row: ("Evil", member_of.get(row["encord_image_id"], "absent")))
    extra = tmp_path / "evil.json"
    extra.write_text(json.dumps({"Evil": {"kind": "http_zip", "location": server.url("/evil.zip"), "member": "{file_id}.jpg"}}))
    plan = build_plan(tree.metadata_dir, configs=["phase1_all"], modalities=["image"])
    root = tmp_path / "sandbox" / "root"
    before = {p for p in tmp_path.rglob("*") if "sandbox" not in p.parts}
    report = download(plan, str(root), load_sources([str(extra)]), DownloadOptions(**FAST))["Evil"]
    after = {p for p in tmp_path.rglob("*") if "sandbox" not in p.parts}
    assert after == before and not (tmp_path / "sandbox" / "evil.jpg").exists()
    records = {r["id"]: r for r in map(json.loads, open(manifest_path(str(root))))}
    assert "symlink" in records[ids[1]]["error"]
    # the `..` member is only looked up: its bytes land at the plan's destination, inside ROOT
    assert records[ids[0]]["status"] == "ok"
    assert (root / plan.items.filter(pc.equal(plan.items["id"], ids[0]))["destination"][0].as_py()).read_bytes() == data
    assert report.fetched == 1


def test_a_save_folder_symlinked_outside_root_is_refused(tree, server, tmp_path):
    _url_tree(tree, server)
    plan = build_plan(tree.metadata_dir, configs=["phase1_all"], modalities=["image"])
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    folder, subfolder = plan.items["destination"][0].as_py().split("/")[:2]
    (root / folder).symlink_to(outside, target_is_directory=True)
    # what looks like a killed run's leftovers, but outside the root: the clean-up must not reach it either
    (outside / subfolder / f"{PARTIAL_PREFIX}someone-elses").mkdir(parents=True)
    (outside / subfolder / f"{PARTIAL_PREFIX}someone-elses.jpg").write_bytes(b"not ours")
    planted = set(outside.rglob("*"))
    report = download(plan, str(root), load_sources(), DownloadOptions(**FAST))["Conceptual Captions"]
    assert report.failed >= 1 and set(outside.rglob("*")) == planted
    assert any("outside the media root" in e for e in report.errors)


# ---------------------------------------------------------------- the command


def test_cli_dry_run_exit_codes_and_unknown_sources(tree, server, tmp_path, capsys):
    _url_tree(tree, server)
    root = str(tmp_path / "root")
    assert emm1_cli.main(["download", tree.metadata_dir, "--root-data-path", root, "--dry-run", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "Conceptual Captions" in out.out and "WavCaps" in out.out and "no entry in the sources file" in out.out
    assert "source 'WavCaps' have no entry" in out.err
    assert not os.path.exists(root)

    common = ["download", tree.metadata_dir, "--root-data-path", root, "--no-progress", "--timeout", "10", "--per-host", "4"]
    assert emm1_cli.main(common + ["--modalities", "image", "--sources", "Conceptual Captions"]) == 0
    assert "Conceptual Captions" in capsys.readouterr().out
    # WavCaps: a source with no entry (the YouTube sources would reach youtube.com)
    assert emm1_cli.main(common + ["--configs", "phase1_nn1", "--modalities", "audio", "--sources", "WavCaps"]) == 1
    records = list(map(json.loads, open(manifest_path(root))))
    assert {r["status"] for r in records if r["modality"] == "audio"} == {"not_fetchable"}
    assert any("WavCaps" in (r["error"] or "") for r in records)
    for bad in (["--mirror", "COCO"], ["--configs", "nope"], ["--limit", "0"], ["--mirror", "Nope=http://x"]):
        with pytest.raises(SystemExit) as caught:
            code = emm1_cli.main(common + bad)
            raise SystemExit(code)
        assert caught.value.code == 2, bad
    seed = generate_sample_tree(str(tmp_path / "seed"), schema="seed", media=False)
    assert emm1_cli.main(["download", seed.metadata_dir, "--root-data-path", root]) == 2
    assert "seed draft" in capsys.readouterr().err


def test_downloaded_tree_validates_and_prepares(tree, server, tmp_path, hf_cache):
    """Images fetched, the other modalities copied in: `validate --check-media` passes, phase 2 decodes."""
    _url_tree(tree, server)
    root = tmp_path / "root"
    code = emm1_cli.main(["download", tree.metadata_dir, "--root-data-path", str(root), "--modalities", "image",
                          "--no-progress"])
    assert code == 0
    import shutil

    for path in pathlib.Path(tree.root).rglob("*"):
        relative = path.relative_to(tree.root)
        if path.is_file() and relative.parts[1] != "image":
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, root / relative)
    assert emm1_cli.main(["validate", tree.metadata_dir, "--root-data-path", str(root), "--check-media"]) == 0
    import emm1

    builder = emm1.EMM1(config_name="phase2_triplets", data_dir=tree.metadata_dir, root_data_path=str(root),
                        cache_dir=hf_cache)
    builder.download_and_prepare()
    ds = builder.as_dataset(split="train")
    images = [r["image"] for r in ds if "image" in (r["paired_modality"], r["annotated_modality"])]
    assert images and all(hasattr(image, "getpixel") for image in images)
    assert all(min(image.size) > 0 for image in images)  # decoded PIL images, from the downloaded files


# ---------------------------------------------------------------- kill and resume


def test_sigkill_mid_way_then_rerun_equals_a_clean_run(tree, tmp_path):
    with MediaServer(latency=0.15) as server:
        _url_tree(tree, server)
        command = [sys.executable, "-m", "emm1_lib.tools.cli", "download", tree.metadata_dir, "--modalities", "image",
                   "--workers", "2", "--no-progress"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        killed = tmp_path / "killed"
        process = subprocess.Popen(command + ["--root-data-path", str(killed)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        manifest = pathlib.Path(manifest_path(str(killed)))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if manifest.exists() and len(manifest.read_text().splitlines()) >= 2:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        lines = manifest.read_text().splitlines()
        assert 2 <= len(lines) < 12, "the kill must land mid-way"
        resumed = subprocess.run(command + ["--root-data-path", str(killed)], env=env, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        clean = tmp_path / "clean"
        assert subprocess.run(command + ["--root-data-path", str(clean)], env=env).returncode == 0
    assert _files_under(killed) == _files_under(clean)
    assert not [p for p in killed.rglob("*") if p.name.startswith(PARTIAL_PREFIX)]


def test_not_enough_free_space_stops_before_fetching(tree, server, tmp_path, monkeypatch):
    body, _ = _coco_zip(tree, n_filler=0)
    server.add("/zips/train2017.zip", Route(body, "application/zip"))
    _set_image_sources(tree, lambda row: ("COCO", str(row["encord_image_id"])))
    plan = build_plan(tree.metadata_dir, configs=["phase1_all"], modalities=["image"])
    sources = load_sources(mirrors={"COCO": server.url("/zips/train2017.zip")})
    import shutil
    from collections import namedtuple

    from emm1_lib.acquire.run import InsufficientSpaceError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 100, 100))
    root = tmp_path / "root"
    with pytest.raises(InsufficientSpaceError, match="only 100 free"):
        download(plan, str(root), sources, DownloadOptions(**FAST))
    assert not [p for p in root.rglob("*") if p.is_file()]


def test_benchmark_smoke(tmp_path):
    """benchmarks/download.py runs end to end on a tiny size (no timing asserted: see docs/downloading.md)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import download as benchmark
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    import importlib.util

    if importlib.util.find_spec("yt_dlp") is not None:
        clips = ["--clips", "3", "--clip-latency", "0"]
    else:  # the YouTube part needs the download extra
        clips = ["--only", "images", "zip", "rerun"]
    report = benchmark.main(["--images", "6", "--workers", "3", "--latency", "0", "--zip-members", "200",
                             "--rerun-items", "50", "--json", str(tmp_path / "report.json")] + clips)
    if clips[0] == "--clips":
        assert report["youtube_clips"]["clips"] == 3 and report["youtube_clips"]["requests_per_clip"] > 0
    assert report["url_images"]["images"] == 6 and report["rerun"]["items"] == 50
    assert report["zip_subset"]["subset"] == 2 and report["zip_subset"]["emm1_bytes"] < report["zip_subset"]["archive_bytes"]
    assert json.loads((tmp_path / "report.json").read_text())["zip_subset"]["members"] == 200


# ---------------------------------------------------------------- streamed tar archives (OpenShape points)


def _points_tree(tree, tmp_path):
    """EShot points as OpenShape `.npy` files: file_name `{id}.npy`, file_id an Objaverse-like uid; returns
    {file_id: bytes} of the real files, written by the sample generator's OpenShape writer."""
    from emm1_lib.testing.sample_media import write_openshape_npy

    path = os.path.join(tree.eshot_dir, "eshot_points_info.csv")
    table = pacsv.read_csv(path)
    ids = table["eshot_point_id"].to_pylist()
    uids = [f"{i:032x}" for i in ids]
    table = table.set_column(table.column_names.index("file_id"), "file_id", pa.array(uids))
    table = table.set_column(table.column_names.index("file_name"), "file_name", pa.array([f"{i}.npy" for i in ids]))
    pacsv.write_csv(table, path)
    files = {}
    for n, uid in enumerate(uids):
        write_openshape_npy(tmp_path / "npy.npy", seed=n)
        files[uid] = (tmp_path / "npy.npy").read_bytes()
    return files


def _tar_gz(members):
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if isinstance(data, str):  # a symlink to `data`
                info.type, info.linkname = tarfile.SYMTYPE, data
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_tar_gz_is_streamed_once_and_stops_early(tree, tmp_path):
    server = MediaServer(rate=8 << 20).start()  # a bandwidth cap: the server notices the hang-up within a piece
    files = _points_tree(tree, tmp_path)
    filler = [(f"Objaverse/000-001/filler{i}.npy", np.random.default_rng(i).bytes(20000)) for i in range(200)]
    wanted = [(f"Objaverse/000-000/{uid}.npy", data) for uid, data in files.items()]
    body = _tar_gz(wanted + filler)  # every wanted member comes first: the stream must stop before the filler
    url = server.add("/Objaverse/000-000.tar.gz", Route(body, "application/gzip"))
    plan = build_plan(tree.metadata_dir, configs=["eshot_points"])
    root = tmp_path / "root"
    report = download(plan, str(root), load_sources(mirrors={"EShot points": url}), DownloadOptions(**FAST))["EShot points"]
    assert (report.fetched, report.failed) == (len(files), 0), open(manifest_path(str(root))).read()
    time.sleep(0.3)  # let the server's writer see the closed connection
    server.stop()
    assert server.requests == 1 and server.bytes_sent < len(body) / 2, (server.bytes_sent, len(body))
    by_id = dict(zip(plan.items["id"].to_pylist(), plan.items["file_id"].to_pylist()))
    for item in plan.items.to_pylist():
        assert (root / item["destination"]).read_bytes() == files[by_id[item["id"]]]


def test_a_tar_stream_cut_short_is_retried_then_recorded_per_item(tree, tmp_path):
    """A tar.gz whose body stops half way (urllib3's IncompleteRead under tarfile): each attempt fails as a
    retryable fetch error, and every wanted member ends with a manifest record naming the cut, not a traceback."""
    files = _points_tree(tree, tmp_path)
    filler = [(f"Objaverse/000-001/filler{i}.npy", np.random.default_rng(i).bytes(20000)) for i in range(50)]
    wanted = [(f"Objaverse/000-000/{uid}.npy", data) for uid, data in files.items()]
    body = _tar_gz(filler + wanted)  # the wanted members lie in the half that never arrives
    with MediaServer() as server:
        url = server.add("/Objaverse/000-000.tar.gz", Route(body, "application/gzip", behaviour="truncate"))
        plan = build_plan(tree.metadata_dir, configs=["eshot_points"])
        root = tmp_path / "root"
        report = download(plan, str(root), load_sources(mirrors={"EShot points": url}), DownloadOptions(**FAST))["EShot points"]
        assert server.requests == 1 + FAST["retries"]
    assert (report.fetched, report.failed) == (0, len(files))
    records = list(map(json.loads, open(manifest_path(str(root)))))
    assert len(records) == len(files) and all("broke off" in r["error"] for r in records), records[:1]
    assert not [p for p in root.rglob("*.npy")]


def test_tar_links_and_slip_names_write_nothing_outside_root(tree, server, tmp_path):
    files = _points_tree(tree, tmp_path)
    uids = list(files)
    members = [(f"../../../{uids[0]}.npy", files[uids[0]]), (f"{uids[1]}.npy", "/etc/passwd")]
    members += [(f"x/{uid}.npy", files[uid]) for uid in uids[2:]]
    url = server.add("/evil.tar.gz", Route(_tar_gz(members)))
    plan = build_plan(tree.metadata_dir, configs=["eshot_points"])
    root = tmp_path / "sandbox" / "root"
    before = {p for p in tmp_path.rglob("*") if "sandbox" not in p.parts}
    report = download(plan, str(root), load_sources(mirrors={"EShot points": url}), DownloadOptions(**FAST))["EShot points"]
    assert {p for p in tmp_path.rglob("*") if "sandbox" not in p.parts} == before
    records = {r["file_id"]: r for r in map(json.loads, open(manifest_path(str(root))))}
    assert "not a regular file" in records[uids[1]]["error"]
    assert records[uids[0]]["status"] == "ok"  # matched by base name, written to the plan's destination
    assert report.failed == 1 and not [p for p in root.rglob("*") if p.is_symlink()]


def test_missing_member_and_absent_archive_are_reported(tree, server, tmp_path):
    files = _points_tree(tree, tmp_path)
    uids = list(files)
    url = server.add("/part.tar.gz", Route(_tar_gz([(f"{uid}.npy", files[uid]) for uid in uids[1:]])))
    sources = load_sources(mirrors={"EShot points": url})
    plan = build_plan(tree.metadata_dir, configs=["eshot_points"])
    report = download(plan, str(tmp_path / "root"), sources, DownloadOptions(**FAST))["EShot points"]
    assert (report.fetched, report.failed) == (len(uids) - 1, 1)
    records = {r["file_id"]: r for r in map(json.loads, open(manifest_path(str(tmp_path / "root"))))}
    assert f"{uids[0]}.npy" in records[uids[0]]["error"] and "not found in" in records[uids[0]]["error"]
    sources = load_sources(mirrors={"EShot points": server.url("/gone.tar.gz")})
    report = download(plan, str(tmp_path / "other"), sources, DownloadOptions(**FAST))["EShot points"]
    assert report.failed == len(uids) and any("HTTP 404" in e for e in report.errors)


# ---------------------------------------------------------------- files already there, manifest edge cases


def test_files_already_present_are_adopted_after_decoding(tree, server, tmp_path):
    _url_tree(tree, server)
    plan = build_plan(tree.metadata_dir, configs=["phase1_all"], modalities=["image"])
    root = tmp_path / "root"
    infos = {r["encord_image_id"]: r for r in pacsv.read_csv(_infos(tree, tree.phase1_dir)).to_pylist()}
    good, bad = plan.items.to_pylist()[:2]
    for item in (good, bad):
        (root / item["destination"]).parent.mkdir(parents=True, exist_ok=True)
    (root / good["destination"]).write_bytes(_media_bytes(tree, infos[good["id"]]))
    (root / bad["destination"]).write_bytes(b"<html>not an image</html>")
    requests_before = server.requests
    report = download(plan, str(root), load_sources(), DownloadOptions(**FAST))["Conceptual Captions"]
    assert (report.present, report.fetched) == (1, 5)
    assert server.requests - requests_before == 5  # the decodable file was kept, the other fetched again
    assert (root / bad["destination"]).read_bytes() == _media_bytes(tree, infos[bad["id"]])


def test_a_manifest_line_cut_by_a_kill_is_ignored(tmp_path):
    from emm1_lib.acquire.store import Manifest

    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"destination": "a/image/1.jpg", "status": "failed", "bytes": None}) + "\n"
                    + json.dumps({"destination": "a/image/1.jpg", "status": "ok", "bytes": 7, "sha256": "x"}) + "\n"
                    + '{"destination": "a/image/2.jpg", "sta')
    last = Manifest(str(path)).last_status().to_pylist()
    assert last == [{"destination": "a/image/1.jpg", "status": "ok", "bytes": 7}]


# ---------------------------------------------------------------- Parquet shards (ImageNet)


def test_parquet_reads_only_the_row_groups_holding_needed_images(tree, server, tmp_path):
    import pyarrow.parquet as pq

    wanted = {}
    for split_dir in (tree.phase1_dir, tree.phase2_dir):
        for row in pacsv.read_csv(_infos(tree, split_dir)).to_pylist():
            file_id = f"n01440764_{row['encord_image_id']}"
            wanted[file_id] = _media_bytes(tree, row)
    rng = np.random.default_rng(0)
    filler = [{"bytes": rng.bytes(8000), "path": f"n09999999_{i}.JPEG"} for i in range(600)]
    needed = [{"bytes": data, "path": f"{file_id}.JPEG"} for file_id, data in wanted.items()]
    table = pa.table({"image": filler[:300] + needed + filler[300:], "label": list(range(600 + len(needed)))})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=40, compression="none")
    body = buffer.getvalue()
    url = server.add("/data/train-00000-of-00294.parquet", Route(body))
    _set_image_sources(tree, lambda row: ("ImageNet", f"n01440764_{row['encord_image_id']}"))
    plan = build_plan(tree.metadata_dir, configs=["phase1_all", "phase2_triplets"], modalities=["image"])
    root = tmp_path / "root"
    report = download(plan, str(root), load_sources(mirrors={"ImageNet": url}), DownloadOptions(**FAST))["ImageNet"]
    assert (report.fetched, report.failed) == (plan.items.num_rows, 0)
    assert server.bytes_sent < 0.25 * len(body), (server.bytes_sent, len(body))
    for item in plan.items.to_pylist():
        assert (root / item["destination"]).read_bytes() == wanted[item["file_id"]]


def test_per_host_limit_caps_concurrent_requests(tree, tmp_path):
    with MediaServer(latency=0.05) as server:
        _url_tree(tree, server)
        plan = build_plan(tree.metadata_dir, configs=["phase1_all", "phase2_triplets"], modalities=["image"])
        report = download(plan, str(tmp_path / "root"), load_sources(),
                          DownloadOptions(workers=8, per_host=2, **FAST))["Conceptual Captions"]
        assert report.fetched == plan.items.num_rows > 2
        assert server.max_in_flight == 2
