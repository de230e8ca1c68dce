"""`emm1 download` across runs and sources: the tar index beside the manifest spares a rerun the archives it
read to the end, and the tasks of different sources run side by side (a stalled archive does not hold back
URL images). Real clients against `tests/http_servers.py`'s `MediaServer` on 127.0.0.1.
"""
import json
import os
import threading
import time

import pyarrow as pa
import pyarrow.csv as pacsv

from emm1_lib.acquire.plan import build_plan
from emm1_lib.acquire.run import DownloadOptions, download
from emm1_lib.acquire.sources import load_sources
from emm1_lib.acquire.store import manifest_path, tar_index_path
from http_servers import Route
from test_download import _points_tree, _tar_gz, _url_tree

FAST = dict(timeout=10.0, retries=1, backoff=0.01, progress=False)


def _sources_file(tmp_path, name, entry):
    path = tmp_path / f"{name}-sources.json"
    path.write_text(json.dumps({name: entry}))
    return load_sources([str(path)])


def _records(root):
    return [json.loads(line) for line in open(manifest_path(str(root)))]


def test_rerun_skips_archives_read_to_the_end(tree, server, tmp_path):
    files = _points_tree(tree, tmp_path)
    uids = sorted(files)
    lost, rest = uids[0], uids[1:]  # `lost` is in no archive: the first run reads every archive to its end
    half = len(rest) // 2
    archives = {"/a.tar.gz": rest[:half], "/b.tar.gz": rest[half:], "/c.tar.gz": []}
    urls = [server.add(path, Route(_tar_gz([(f"x/{u}.npy", files[u]) for u in members]
                                           + [("x/filler.npy", b"0" * 1000)])))
            for path, members in archives.items()]
    sources = _sources_file(tmp_path, "EShot points", {"kind": "http_tar", "location": urls, "member": "{file_id}.npy"})
    plan = build_plan(tree.metadata_dir, configs=["eshot_points"])
    root = tmp_path / "root"
    first = download(plan, str(root), sources, DownloadOptions(**FAST))["EShot points"]
    assert (first.fetched, first.failed) == (len(rest), 1)
    assert sorted(server.paths) == sorted(archives)  # each archive streamed once
    index = [json.loads(line) for line in open(tar_index_path(str(root)))]
    assert {e["archive"]: e["complete"] for e in index} == dict.fromkeys(urls, True)

    # rerun: the lost member is known to be in none of the archives: nothing is read, the reason names the index
    server.paths.clear()
    second = download(plan, str(root), sources, DownloadOptions(**FAST))["EShot points"]
    assert (second.present, second.failed, second.fetched) == (len(rest), 1, 0)
    assert server.paths == []
    error = [r for r in _records(root) if r["file_id"] == lost][-1]["error"]
    assert "read to the end by an earlier run" in error and tar_index_path(str(root)) in error

    # a file of archive b removed: only archive b is read again
    item = [i for i in plan.items.to_pylist() if i["file_id"] == rest[-1]][0]
    os.remove(root / item["destination"])
    third = download(plan, str(root), sources, DownloadOptions(**FAST))["EShot points"]
    assert third.fetched == 1 and server.paths == ["/b.tar.gz"]
    assert (root / item["destination"]).read_bytes() == files[rest[-1]]

    # without the index every archive is scanned again
    os.remove(tar_index_path(str(root)))
    server.paths.clear()
    download(plan, str(root), sources, DownloadOptions(**FAST))
    assert sorted(server.paths) == sorted(archives)


def test_an_archive_stopped_early_is_indexed_in_part_and_read_first(tree, server, tmp_path):
    files = _points_tree(tree, tmp_path)
    uids = sorted(files)
    urls = [server.add("/first.tar.gz", Route(_tar_gz([("x/filler.npy", b"0" * 1000)]))),
            server.add("/second.tar.gz", Route(_tar_gz([(f"{u}.npy", files[u]) for u in uids]
                                                       + [("after.npy", b"1" * 1000)])))]
    sources = _sources_file(tmp_path, "EShot points", {"kind": "http_tar", "location": urls, "member": "{file_id}.npy"})
    plan = build_plan(tree.metadata_dir, configs=["eshot_points"])
    root = tmp_path / "root"
    assert download(plan, str(root), sources, DownloadOptions(**FAST))["EShot points"].fetched == len(uids)
    index = {e["archive"]: e for e in map(json.loads, open(tar_index_path(str(root))))}
    assert index[urls[0]]["complete"] and not index[urls[1]]["complete"]  # stopped at its last needed member
    assert set(index[urls[1]]["members"]) == {f"{u}.npy" for u in uids}
    for item in plan.items.to_pylist():
        os.remove(root / item["destination"])
    server.paths.clear()
    assert download(plan, str(root), sources, DownloadOptions(**FAST))["EShot points"].fetched == len(uids)
    assert server.paths == ["/second.tar.gz"]  # known to hold them: read first, and the first is not needed


def _archive_points(tree):
    """Phase 1's points become items of a source named "3D archive" (sorting before "Conceptual Captions");
    returns {member name: bytes} of their real files."""
    members = {}
    for split_dir in (tree.phase1_dir, tree.phase2_dir):
        path = os.path.join(split_dir, "infos", "points.csv")
        table = pacsv.read_csv(path)
        rows = table.to_pylist()
        for row in rows:
            suffix = os.path.splitext(row["file_name"])[1]
            row["source_dataset"], row["file_id"] = "3D archive", f"obj{row['encord_points_id']}{suffix}"
            members[row["file_id"]] = open(os.path.join(tree.root, row["save_folder"], "points", row["file_name"]),
                                           "rb").read()
        pacsv.write_csv(pa.Table.from_pylist(rows, schema=table.schema), path)
    return members


def test_a_stalled_archive_does_not_hold_back_url_images(tree, server, tmp_path):
    """The points' archive answers only once every URL image is recorded: with tasks run one after the other
    (the archive's source first, in name order), the images would wait for the archive and the gate would
    open only at the deadline."""
    members = _archive_points(tree)
    _url_tree(tree, server)
    gate = threading.Event()
    url = server.add("/slow.tar.gz", Route(_tar_gz(sorted(members.items())), gate=gate))
    sources = _sources_file(tmp_path, "3D archive", {"kind": "http_tar", "location": url, "member": "{file_id}"})
    plan = build_plan(tree.metadata_dir, configs=["phase1_all"], modalities=["image", "points"])
    assert set(plan.source_counts) == {"3D archive", "Conceptual Captions"}
    root = tmp_path / "root"
    images = plan.source_counts["Conceptual Captions"]
    seen_before_gate = []

    def open_gate_when_images_are_done():
        deadline = time.monotonic() + 120  # generous for a loaded machine: only a failing run waits this long
        while time.monotonic() < deadline and not gate.is_set():
            if os.path.exists(manifest_path(str(root))):
                done = [r for r in _records(root) if r["source"] == "Conceptual Captions"]
                if len(done) == images:
                    seen_before_gate.extend(done)
                    break
            time.sleep(0.05)
        gate.set()

    opener = threading.Thread(target=open_gate_when_images_are_done)
    opener.start()
    try:
        reports = download(plan, str(root), sources, DownloadOptions(**dict(FAST, timeout=150.0)))
    finally:
        gate.set()
        opener.join()
    assert len(seen_before_gate) == images and all(r["status"] == "ok" for r in seen_before_gate)
    assert reports["3D archive"].fetched == plan.source_counts["3D archive"], reports["3D archive"].errors
    assert reports["Conceptual Captions"].fetched == images
