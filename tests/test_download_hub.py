"""`emm1 download` for the Hub sources whose files are globs (ImageNet `data/train-*.parquet`, OpenShape
`Objaverse/000-*.tar.gz`, VidGen-1M `*.zip`): the repo is listed through huggingface_hub (`HF_ENDPOINT`, its
token) against the stand-in Hub of tests/standin_hub.py, serving small real archives (Parquet of image
structs, tar.gz of OpenShape `.npy`, zips of MP4s; the archives are LFS files redirected to its "CDN").
"""
import io
import json
import os
import pathlib
import tarfile
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from emm1_lib.acquire.plan import build_plan
from emm1_lib.acquire.run import DownloadOptions, download, format_reports, survey
from emm1_lib.acquire.sources import load_sources
from emm1_lib.acquire.store import manifest_path
from standin_hub import use_standin_hub
from test_download import _points_tree, _set_image_sources

FAST = dict(timeout=20.0, retries=1, backoff=0.01, progress=False)


def _rows(tree, modality):
    for split_dir in (tree.phase1_dir, tree.phase2_dir):
        yield from pacsv.read_csv(os.path.join(split_dir, "infos", f"{modality}.csv")).to_pylist()


def _bytes(tree, modality, row):
    return pathlib.Path(tree.root, row["save_folder"], modality, row["file_name"]).read_bytes()


def _tar_gz(members):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _sizes(folder: pathlib.Path, paths):
    return sum((folder / p).stat().st_size for p in paths)


def test_imagenet_shards_are_listed_and_read_by_row_group(tree, standin_hub, tmp_path, monkeypatch, capsys):
    repo = tmp_path / "imagenet"
    (repo / "data").mkdir(parents=True)
    wanted = {f"n01440764_{r['encord_image_id']}": _bytes(tree, "image", r) for r in _rows(tree, "image")}
    ids = sorted(wanted)
    rng = np.random.default_rng(0)
    for shard, part in enumerate((ids[::2], ids[1::2])):  # the needed images are spread over both shards
        filler = [{"bytes": rng.bytes(8000), "path": f"n09999999_{shard}_{i}.JPEG"} for i in range(300)]
        images = filler[:150] + [{"bytes": wanted[f], "path": f"{f}.JPEG"} for f in part] + filler[150:]
        pq.write_table(pa.table({"image": images, "label": list(range(len(images)))}),
                       repo / "data" / f"train-{shard:05d}-of-00002.parquet", row_group_size=40, compression="none")
    # matched by no pattern: never read
    pq.write_table(pa.table({"image": [{"bytes": b"x", "path": f"{ids[0]}.JPEG"}]}),
                   repo / "data" / "validation-00000-of-00001.parquet")
    standin_hub.add_repo("ILSVRC/imagenet-1k", str(repo))
    _set_image_sources(tree, lambda row: ("ImageNet", f"n01440764_{row['encord_image_id']}"))
    plan = build_plan(tree.metadata_dir, configs=["phase1_all", "phase2_triplets"], modalities=["image"])
    root = tmp_path / "root"
    with use_standin_hub(monkeypatch, standin_hub):
        surveyed = survey(plan, str(root), load_sources(), DownloadOptions(**FAST))
        shards = [f"data/train-{i:05d}-of-00002.parquet" for i in range(2)]
        assert surveyed["ImageNet"].expected_bytes == _sizes(repo, shards) and surveyed["ImageNet"].bytes_at_most
        assert f"<={_sizes(repo, shards)}" in format_reports(surveyed, dry_run=True)
        report = download(plan, str(root), load_sources(), DownloadOptions(**FAST))["ImageNet"]
    assert (report.fetched, report.failed) == (plan.items.num_rows, 0), report.errors
    for item in plan.items.to_pylist():
        assert (root / item["destination"]).read_bytes() == wanted[item["file_id"]]
    read = standin_hub.bytes_read("ILSVRC/imagenet-1k")
    assert set(read) == set(shards)  # both shards, not the validation file
    assert sum(read.values()) < 0.5 * _sizes(repo, shards), read  # only the row groups holding needed images
    # listed through the Hub API: once for the dry run, once for the download (its survey and fetches share it)
    assert len(standin_hub.requests("tree", "ILSVRC/imagenet-1k")) == 2


def test_openshape_archives_from_globs_and_exact_names(tree, standin_hub, tmp_path, monkeypatch):
    files = _points_tree(tree, tmp_path)
    uids = sorted(files)
    repo = tmp_path / "openshape"
    (repo / "Objaverse").mkdir(parents=True)
    half = len(uids) // 2
    archives = {"Objaverse/000-000.tar.gz": uids[:half], "Objaverse/000-001.tar.gz": uids[half:],
                "Objaverse/000-002.tar.gz": [], "3D-FUTURE.tar.gz": [], "ABO.tar.gz": [], "ShapeNet.tar.gz": []}
    for path, members in archives.items():
        filler = [(f"x/filler{i}.npy", np.random.default_rng(i).bytes(3000)) for i in range(5)]
        (repo / path).write_bytes(_tar_gz([(f"{path.split('.')[0]}/{u}.npy", files[u]) for u in members] + filler))
    (repo / "Objaverse" / "README.md").write_text("not an archive")
    (repo / "Objaverse" / "001-000.tar.gz").write_bytes(_tar_gz(filler))  # not 000-*: never read
    standin_hub.add_repo("OpenShape/openshape-training-data", str(repo))
    plan = build_plan(tree.metadata_dir, configs=["eshot_points", "phase1_nn1"], modalities=["points"])
    root = tmp_path / "root"
    with use_standin_hub(monkeypatch, standin_hub):
        surveyed = survey(plan, str(root), load_sources(), DownloadOptions(**FAST))
        objaverse = [p for p in archives if p.startswith("Objaverse/")]
        assert surveyed["EShot points"].expected_bytes == _sizes(repo, objaverse)
        assert surveyed["OpenShape"].expected_bytes == _sizes(repo, archives)  # exact names and the glob
        report = download(plan, str(root), load_sources(), DownloadOptions(**FAST))
    eshot = report["EShot points"]
    assert (eshot.fetched, eshot.failed) == (len(uids), 0), eshot.errors
    for item in plan.items.filter(pc.equal(plan.items["source"], "EShot points")).to_pylist():
        assert (root / item["destination"]).read_bytes() == files[item["file_id"]]
    read = standin_hub.bytes_read("OpenShape/openshape-training-data")
    assert "Objaverse/001-000.tar.gz" not in read and "Objaverse/README.md" not in read
    # phase 1's OpenShape ids are in no archive: each fails naming its member and the archives read
    openshape = report["OpenShape"]
    assert openshape.failed == plan.source_counts["OpenShape"] and openshape.fetched == 0
    records = [json.loads(line) for line in open(manifest_path(str(root)))]
    failed = [r for r in records if r["source"] == "OpenShape"]
    assert failed and all("not found in" in r["error"] and "ShapeNet.tar.gz" in r["error"] for r in failed)


def test_vidgen_zips_from_a_glob(tree, standin_hub, tmp_path, monkeypatch):
    repo = tmp_path / "vidgen"
    repo.mkdir()
    rows = {r["encord_video_id"]: r for r in _rows(tree, "video")}
    ids = sorted(rows)
    wanted = {f"vid_{i}.mp4": _bytes(tree, "video", rows[i]) for i in ids}
    names = sorted(wanted)
    for n, part in enumerate((names[::2], names[1::2])):
        with zipfile.ZipFile(repo / f"VidGen_video_{n}.zip", "w", zipfile.ZIP_STORED) as archive:
            for name in part:
                archive.writestr(name, wanted[name])
            archive.writestr("filler.bin", np.random.default_rng(n).bytes(200_000))
    (repo / "README.md").write_text("VidGen-1M stand-in")

    def assign(i, row):
        return {"source_dataset": "VidGen-1M", "file_id": f"vid_{row['encord_video_id']}.mp4"}

    for split_dir in (tree.phase1_dir, tree.phase2_dir):
        path = os.path.join(split_dir, "infos", "video.csv")
        table = pacsv.read_csv(path)
        new = [{**r, **assign(i, r)} for i, r in enumerate(table.to_pylist())]
        pacsv.write_csv(pa.Table.from_pylist(new), path)
    standin_hub.add_repo("Fudan-FUXI/VIDGEN-1M", str(repo))
    plan = build_plan(tree.metadata_dir, configs=["phase1_all", "phase2_triplets"], modalities=["video"])
    root = tmp_path / "root"
    with use_standin_hub(monkeypatch, standin_hub):
        surveyed = survey(plan, str(root), load_sources(), DownloadOptions(**FAST))["VidGen-1M"]
        members = sum(len(wanted[f]) for f in plan.items["file_id"].to_pylist())
        assert members <= surveyed.expected_bytes < members + 200 * plan.items.num_rows  # members + local headers
        assert not surveyed.bytes_at_most
        report = download(plan, str(root), load_sources(), DownloadOptions(**FAST))["VidGen-1M"]
    assert (report.fetched, report.failed) == (plan.items.num_rows, 0), report.errors
    for item in plan.items.to_pylist():
        assert (root / item["destination"]).read_bytes() == wanted[item["file_id"]]
    read = standin_hub.bytes_read("Fudan-FUXI/VIDGEN-1M")
    assert set(read) == {"VidGen_video_0.zip", "VidGen_video_1.zip"}
    assert sum(read.values()) < 0.5 * _sizes(repo, read), read  # range requests: not the filler


def test_private_repo_listing_uses_the_token(tree, standin_hub, tmp_path, monkeypatch):
    files = _points_tree(tree, tmp_path)
    repo = tmp_path / "openshape"
    (repo / "Objaverse").mkdir(parents=True)
    (repo / "Objaverse" / "000-000.tar.gz").write_bytes(_tar_gz([(f"{u}.npy", d) for u, d in files.items()]))
    standin_hub.add_repo("OpenShape/openshape-training-data", str(repo), private=True, tokens=("hf_reader",))
    plan = build_plan(tree.metadata_dir, configs=["eshot_points"])
    with use_standin_hub(monkeypatch, standin_hub):
        report = download(plan, str(tmp_path / "anonymous"), load_sources(), DownloadOptions(**FAST))["EShot points"]
    assert report.failed == len(files) and any("not readable with this token" in e for e in report.errors)
    with use_standin_hub(monkeypatch, standin_hub, token="hf_reader"):
        report = download(plan, str(tmp_path / "root"), load_sources(), DownloadOptions(**FAST))["EShot points"]
    assert (report.fetched, report.failed) == (len(files), 0), report.errors


def test_offline_mode_is_reported_not_ignored(tree, tmp_path, monkeypatch):
    """conftest sets HF_HUB_OFFLINE: the listing fails with that reason; nothing reaches the network."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    _points_tree(tree, tmp_path)
    plan = build_plan(tree.metadata_dir, configs=["eshot_points"])
    report = download(plan, str(tmp_path / "root"), load_sources(), DownloadOptions(**FAST))["EShot points"]
    assert report.failed == plan.items.num_rows and any("HF_HUB_OFFLINE" in e for e in report.errors), report.errors
