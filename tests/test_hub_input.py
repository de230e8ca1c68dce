"""`data_dir` on the Hub (`hf://datasets/OWNER/NAME[@REVISION]/...`), against the stand-in Hub of tests/standin_hub.py.

The loads run in a fresh interpreter (`run_client`) with `HF_ENDPOINT` pointing at the stand-in, as a user's
would: huggingface_hub and datasets read the endpoint and the offline switches when imported. The stand-in
counts every request and every byte it sends, so the tests say what was read, not only what came back.
"""
import json
import os
import warnings

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import emm1  # noqa: F401 - registers the "emm1" builder
import eshot  # noqa: F401 - registers the "eshot" builder
from emm1_lib.errors import EMM1DataError
from emm1_lib.io import fs
from emm1_lib.io.tables import byte_ranges, read_csv_range, read_header
from emm1_lib.testing.sample import generate_sample_tree
from standin_hub import StandinHub, run_client, use_standin_hub

REPO = "encord-team/E-MM1-100M"
HUB_DATA_DIR = f"hf://datasets/{REPO}"
TOKEN = "hf_standin_secret"
# Every config of both builders: (builder, config, split).
CONFIGS = [("emm1", "phase1_nn3", "train"), ("emm1", "phase1_all", "train"), ("emm1", "phase2_triplets", "train"),
           ("eshot", "eshot_audio", "test"), ("eshot", "eshot_points", "test")]

# The child: runs the loads of a JSON spec, writes rows, features or the error of each to a JSON file.
CHILD = r'''
import itertools, json, sys, warnings
import datasets, emm1, eshot
warnings.simplefilter("ignore")
spec = json.load(open(SPEC))
results = []

def summary(row):
    """Decoded audio as its rate and length (arrays do not go through JSON)."""
    return {k: {"sampling_rate": v["sampling_rate"], "samples": len(v["array"])}
            if isinstance(v, dict) and "array" in v else v for k, v in row.items()}

for load in spec["loads"]:
    try:
        ds = datasets.load_dataset(load["name"], load["config"], data_dir=load["data_dir"], split=load["split"],
                                   root_data_path=spec["root"], decode=load.get("decode", False), cache_dir=spec["cache"],
                                   streaming=load.get("streaming", False), **load.get("kwargs", {}))
        rows = [summary(row) for row in (itertools.islice(ds, load["take"]) if load.get("take") else ds)]
        features = ds.features.to_dict() if ds.features is not None else None
        results.append({"rows": rows, "features": features})
    except Exception as err:
        results.append({"error": type(err).__name__, "message": str(err)})
json.dump(results, open(OUT, "w"), default=str)
print(json.dumps({"loads": len(results)}))
'''


def _client_loads(hub: StandinHub, tmp_path, root: str, loads, token=None, name="run"):
    """Run `loads` (dicts: name, config, split, data_dir, streaming, take, kwargs) in a fresh interpreter."""
    spec, out = tmp_path / f"{name}-spec.json", tmp_path / f"{name}-out.json"
    spec.write_text(json.dumps({"loads": loads, "root": root, "cache": str(tmp_path / f"{name}-cache")}))
    code = CHILD.replace("SPEC", repr(str(spec))).replace("OUT", repr(str(out)))
    run_client(code, hub.client_env(token=token, hf_home=str(tmp_path / f"{name}-hf-home")))
    hub.wait_idle()
    return json.loads(out.read_text())


def _local(name, config, split, data_dir, root, cache):
    """The rows and features of a config prepared from a local folder, JSON-normalised like the child's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = datasets.load_dataset(name, config, data_dir=data_dir, root_data_path=root, decode=False, split=split,
                                   cache_dir=cache)
    return json.loads(json.dumps({"rows": ds.to_list(), "features": ds.features.to_dict()}, default=str))


def _check_ok(result: dict) -> dict:
    assert "error" not in result, f"{result['error']}: {result['message']}"
    return result


# ---------------------------------------------------------------------------------------------- the stand-in


@pytest.fixture(scope="module")
def parquet_repo(tmp_path_factory):
    """A Hub-style Parquet dataset repo (an LFS file, redirected to the stand-in's CDN) and its card."""
    repo = tmp_path_factory.mktemp("pq-repo")
    os.makedirs(repo / "data")
    pq.write_table(pa.table({"x": list(range(1000)), "s": [f"row {i}" for i in range(1000)]}),
                   repo / "data" / "train-00000-of-00001.parquet", row_group_size=100)
    (repo / "README.md").write_text("---\nlicense: mit\n---\n# A stand-in dataset\n")
    return str(repo)


def test_standin_hub_answers_the_real_clients(released_tree, parquet_repo, tmp_path):
    """huggingface_hub's HfFileSystem, HfApi and hf_hub_download, and stock `load_dataset` of a repo by name, work
    against the stand-in: listings (paginated), paths-info, refs, ranges, LFS redirects, revisions, tokens."""
    with StandinHub(page_size=4) as hub:
        hub.add_repo(REPO, released_tree.metadata_dir, tags={"v1.0": released_tree.metadata_dir})
        hub.add_repo("someone/parquet", parquet_repo)
        hub.add_repo("someone/private", parquet_repo, private=True, tokens=(TOKEN,))
        code = r'''
import json
import datasets
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
out = {}
fs = HfFileSystem()
out["ls"] = fs.ls("datasets/REPO", detail=False)
out["find"] = fs.find("datasets/REPO@v1.0/e-mm1_100m")
out["size"] = fs.size("datasets/REPO/e-mm1_100m/nn_3/data_groups.csv")
with fs.open("datasets/REPO/e-mm1_100m/nn_3/data_groups.csv", "rb", block_size=16) as f:
    f.seek(5)
    out["range"] = f.read(10).decode()
api = HfApi()
out["sha"] = api.dataset_info("REPO", revision="v1.0").sha
out["paths"] = [p.path for p in api.get_paths_info("REPO", ["e-mm1_1m/triplets.csv", "absent"], repo_type="dataset")]
out["tags"] = [t.name for t in api.list_repo_refs("REPO", repo_type="dataset").tags]
out["lfs"] = open(hf_hub_download("someone/parquet", "data/train-00000-of-00001.parquet", repo_type="dataset"), "rb").read(4).decode()
try:
    api.dataset_info("someone/private")
except RepositoryNotFoundError as err:
    out["private"] = type(err).__name__
out["with_token"] = api.dataset_info("someone/private", token="TOKEN").id
try:
    api.dataset_info("REPO", token="hf_wrong")
except HfHubHTTPError as err:
    out["wrong_token"] = err.response.status_code
out["prepared"] = datasets.load_dataset("someone/parquet", split="train")["s"][:2]
# Read to the end: a Parquet read still in flight when the interpreter exits aborts it (pyarrow's I/O threads).
out["streamed"] = [r["x"] for r in datasets.load_dataset("someone/parquet", split="train", streaming=True)][:3]
print(json.dumps(out))
'''.replace("REPO", REPO).replace("TOKEN", TOKEN)
        out = run_client(code, hub.client_env(hf_home=str(tmp_path / "hf-home")))
        hub.wait_idle()
        groups = os.path.join(released_tree.phase1_dir, "nn_3", "data_groups.csv")
        assert out["ls"] == [f"datasets/{REPO}/{name}" for name in sorted(os.listdir(released_tree.metadata_dir))]
        assert len(out["find"]) == sum(len(files) for _, _, files in os.walk(released_tree.phase1_dir))
        assert out["size"] == os.path.getsize(groups)
        assert out["range"] == open(groups, "rb").read()[5:15].decode()
        assert out["sha"] == hub.repos[("dataset", REPO)].commit("v1.0")
        assert out["paths"] == ["e-mm1_1m/triplets.csv"] and out["tags"] == ["v1.0"]
        assert out["lfs"] == "PAR1"
        assert out["private"] == "RepositoryNotFoundError" and out["with_token"] == "someone/private"
        assert out["wrong_token"] == 401
        assert out["prepared"] == ["row 0", "row 1"] and out["streamed"] == [0, 1, 2]
        # What the clients asked: paginated listings (page_size=4), ranges, the LFS redirect and its CDN.
        assert any("cursor=" in r.url for r in hub.requests(kind="tree"))
        assert any(r.status == 206 and r.range for r in hub.requests(kind="resolve"))
        assert any(r.status == 302 for r in hub.requests(kind="resolve", repo_id="someone/parquet"))
        assert hub.requests(kind="cdn") and hub.requests(kind="paths-info") and hub.requests(kind="refs")
        assert not hub.requests(kind="unknown"), [r.url for r in hub.requests(kind="unknown")]
        assert {r.token for r in hub.requests(repo_id="someone/private") if r.status == 200} == {TOKEN}
        assert hub.bytes_read("someone/parquet")["data/train-00000-of-00001.parquet"] >= os.path.getsize(
            os.path.join(parquet_repo, "data", "train-00000-of-00001.parquet"))


def test_use_standin_hub_points_this_process_at_it(released_tree, monkeypatch, standin_hub):
    """The in-process route: the io layer reads `hf://` URLs (existence, header, size, byte ranges, listing) as it
    reads local files; a token given with `use_hub_token` reaches a private repo, none gets a clear error."""
    monkeypatch.setattr(fs, "_HUB_TOKENS", {})  # this test's tokens stay in this test
    hub = standin_hub
    hub.add_repo("someone/private-meta", released_tree.metadata_dir, private=True, tokens=(TOKEN,))
    with use_standin_hub(monkeypatch, hub):
        url = "hf://datasets/someone/private-meta/e-mm1_100m/nn_3/data_groups.csv"
        local = os.path.join(released_tree.phase1_dir, "nn_3", "data_groups.csv")
        with pytest.raises(EMM1DataError, match="someone/private-meta .* not found, or private"):
            fs.exists(url)
        fs.use_hub_token(url, TOKEN)
        assert fs.exists(url) and not fs.exists(url.replace("nn_3", "nn_99"))
        assert fs.file_size(url) == os.path.getsize(local)
        assert read_header(url) == read_header(local)
        assert byte_ranges(url, 300) == byte_ranges(local, 300)
        header = read_header(local)
        types = {name: pa.int64() for name in header}
        for start, end in byte_ranges(local, 300):
            assert read_csv_range(url, start, end, header, types) == read_csv_range(local, start, end, header, types)
        assert fs.list_names("hf://datasets/someone/private-meta/e-mm1_100m/infos") == sorted(
            os.listdir(os.path.join(released_tree.phase1_dir, "infos")))
        hub.wait_idle()
        assert {r.token for r in hub.requests() if r.status < 400} == {TOKEN}


def test_offline_mode_is_named_not_taken_for_a_missing_file(monkeypatch):
    """With HF_HUB_OFFLINE (tests/conftest.py sets it), an `hf://` data_dir fails saying so, not "no such file";
    huggingface_hub refuses before connecting, so nothing leaves the machine."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(EMM1DataError, match="offline mode is on"):
        fs.exists(f"{HUB_DATA_DIR}/e-mm1_100m/nn_1/data_groups.csv")


# ---------------------------------------------------------------------------------------------- data_dir on the Hub


@pytest.mark.parametrize("schema", ["released", "seed"])
def test_every_config_from_the_hub_equals_the_local_folder(schema, released_tree, seed_tree, tmp_path, standin_hub):
    """Prepared and streamed from `hf://datasets/encord-team/E-MM1-100M` (the metadata folder served as the repo),
    every config of both builders gives the rows and features of the local folder."""
    tree = released_tree if schema == "released" else seed_tree
    loads = [{"name": name, "config": config, "split": split, "data_dir": HUB_DATA_DIR, "streaming": streaming}
             for name, config, split in CONFIGS for streaming in (False, True)]
    hub = standin_hub
    hub.add_repo(REPO, tree.metadata_dir)
    results = _client_loads(hub, tmp_path, tree.root, loads)
    read = hub.bytes_read(REPO)
    for load, result in zip(loads, results):
        expected = _local(load["name"], load["config"], load["split"], tree.metadata_dir, tree.root,
                          str(tmp_path / "local-cache"))
        if schema == "seed" and load["name"] == "eshot":
            # The seed draft keeps EShot media in the EShot folder: on the Hub, they are the repo's files.
            expected = json.loads(json.dumps(expected).replace(tree.metadata_dir, HUB_DATA_DIR))
        assert _check_ok(result)["rows"] == expected["rows"], (load["config"], load["streaming"])
        assert result["features"] == expected["features"], (load["config"], load["streaming"])
        assert len(result["rows"]) > 0
    # Media are never fetched from the data_dir's repo (they live under root_data_path); the files read are metadata.
    assert read and all(path.endswith((".csv", ".json")) for path in read), sorted(read)


def test_a_revision_is_pinned_by_tag_or_commit(released_tree, tmp_path, standin_hub):
    """`@v0.9` and `@<its commit>` read that revision's folder, never `main`'s."""
    older = generate_sample_tree(str(tmp_path / "older"), schema="released", num_captions=10, seed=7)
    hub = standin_hub
    repo = hub.add_repo(REPO, released_tree.metadata_dir, tags={"v0.9": older.metadata_dir})
    commit = repo.commit("v0.9")
    assert commit != repo.commit("main")
    loads = [{"name": "emm1", "config": "phase1_nn3", "split": "train", "data_dir": f"{HUB_DATA_DIR}@v0.9"},
             {"name": "emm1", "config": "phase1_nn3", "split": "train", "data_dir": f"{HUB_DATA_DIR}@{commit}"},
             {"name": "emm1", "config": "phase2_triplets", "split": "train", "data_dir": f"{HUB_DATA_DIR}@v0.9",
              "streaming": True}]
    results = _client_loads(hub, tmp_path, older.root, loads)
    revisions = {r.revision for r in hub.requests() if r.revision is not None}
    cache = str(tmp_path / "local-cache")
    expected = _local("emm1", "phase1_nn3", "train", older.metadata_dir, older.root, cache)["rows"]
    assert len(expected) == 10
    assert _check_ok(results[0])["rows"] == expected and _check_ok(results[1])["rows"] == expected
    assert _check_ok(results[2])["rows"] == _local("emm1", "phase2_triplets", "train", older.metadata_dir, older.root,
                                                   cache)["rows"]
    assert revisions == {"v0.9", commit}


def test_a_push_to_the_branch_prepares_anew_instead_of_serving_the_old_cache(released_tree, tmp_path, standin_hub):
    """The cache key holds the commit the revision names, not only the data_dir's text: after `main` moves to a
    new commit, the same call with the same cache reads the new files."""
    newer = generate_sample_tree(str(tmp_path / "newer"), schema="released", num_captions=10, seed=11)
    hub = standin_hub
    loads = [{"name": "emm1", "config": "phase1_nn3", "split": "train", "data_dir": HUB_DATA_DIR}]
    hub.add_repo(REPO, released_tree.metadata_dir)
    before = _check_ok(_client_loads(hub, tmp_path, released_tree.root, loads, name="same")[0])["rows"]
    hub.add_repo(REPO, newer.metadata_dir)  # a push: main now names another commit
    after = _check_ok(_client_loads(hub, tmp_path, released_tree.root, loads, name="same")[0])["rows"]
    cache = str(tmp_path / "local-cache")
    assert before == _local("emm1", "phase1_nn3", "train", released_tree.metadata_dir, released_tree.root, cache)["rows"]
    assert after == _local("emm1", "phase1_nn3", "train", newer.metadata_dir, released_tree.root, cache)["rows"]
    assert len(after) == 10 != len(before)


def test_a_private_repo_is_read_with_the_token_only(released_tree, tmp_path, standin_hub):
    """Without a token: an error naming the repo and saying how to pass one. `token=` (prepared and streamed) or
    `HF_TOKEN` read it; a wrong token is refused with the Hub's 401."""
    load = {"name": "emm1", "config": "phase1_nn3", "split": "train", "data_dir": HUB_DATA_DIR}
    hub = standin_hub
    hub.add_repo(REPO, released_tree.metadata_dir, private=True, tokens=(TOKEN,))
    without, wrong, given, streamed = _client_loads(hub, tmp_path, released_tree.root, [
        load, {**load, "kwargs": {"token": "hf_wrong"}}, {**load, "kwargs": {"token": TOKEN}},
        {**load, "streaming": True, "kwargs": {"token": TOKEN}}], name="kwarg")
    tokens_seen = {r.token for r in hub.requests() if r.status < 400}
    hub.reset_stats()
    [from_env] = _client_loads(hub, tmp_path, released_tree.root, [load], token=TOKEN, name="env")
    env_tokens = {r.token for r in hub.requests()}
    expected = _local("emm1", "phase1_nn3", "train", released_tree.metadata_dir, released_tree.root,
                      str(tmp_path / "local-cache"))["rows"]
    assert without["error"] == "EMM1DataError"
    assert f"repository datasets/{REPO}" in without["message"] and "token=" in without["message"]
    assert wrong["error"] == "EMM1DataError" and "401" in wrong["message"]
    assert _check_ok(given)["rows"] == expected and _check_ok(streamed)["rows"] == expected
    assert _check_ok(from_env)["rows"] == expected
    assert tokens_seen == {TOKEN} and env_tokens == {TOKEN}


def test_seed_eshot_media_decode_from_a_private_repo(seed_tree, tmp_path, standin_hub):
    """The seed draft keeps EShot media in the EShot folder, so from the Hub they are the repo's files: decoded,
    prepared and streamed, with the builder's `token=`."""
    load = {"name": "eshot", "config": "eshot_audio", "split": "test", "data_dir": HUB_DATA_DIR, "decode": True,
            "take": 2, "kwargs": {"token": TOKEN}}
    hub = standin_hub
    hub.add_repo(REPO, seed_tree.metadata_dir, private=True, tokens=(TOKEN,))
    prepared, streamed = _client_loads(hub, tmp_path, seed_tree.root, [load, {**load, "streaming": True}])
    media_reads = hub.requests(kind="resolve", path="eshot/audio/0.wav")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = datasets.load_dataset("eshot", "eshot_audio", data_dir=seed_tree.metadata_dir, root_data_path=seed_tree.root,
                                      split="test", cache_dir=str(tmp_path / "local-cache"))
    expected = [{"sampling_rate": row["audio"]["sampling_rate"], "samples": len(row["audio"]["array"])}
                for row in local.select(range(2))]
    for result in (prepared, streamed):
        rows = _check_ok(result)["rows"]
        assert [row["audio"] for row in rows] == expected and expected[0]["samples"] > 0
        assert rows[0]["audio_file_path"] == f"{HUB_DATA_DIR}/eshot/audio/0.wav"
    assert media_reads and {r.token for r in media_reads} == {TOKEN}


def test_missing_repo_revision_or_path_is_named(released_tree, tmp_path, standin_hub):
    """A missing repo, revision or folder in the repo each fail with an error naming it."""
    loads = [{"name": "emm1", "config": "phase1_nn3", "split": "train", "data_dir": "hf://datasets/encord-team/absent"},
             {"name": "emm1", "config": "phase2_triplets", "split": "train", "data_dir": f"{HUB_DATA_DIR}@v404"},
             {"name": "eshot", "config": "eshot_audio", "split": "test", "data_dir": f"{HUB_DATA_DIR}/not-here",
              "streaming": True}]
    hub = standin_hub
    hub.add_repo(REPO, released_tree.metadata_dir)
    repo, revision, path = _client_loads(hub, tmp_path, released_tree.root, loads)
    assert repo["error"] == "EMM1DataError"
    assert "repository datasets/encord-team/absent" in repo["message"] and "not found" in repo["message"]
    assert revision["error"] == "EMM1DataError" and "no such revision" in revision["message"]
    assert f"{REPO}@v404" in revision["message"]
    assert path["error"] == "EMM1DataError" and f"{HUB_DATA_DIR}/not-here/eshot/" in path["message"]


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory):
    """Metadata only, 200k captions and 4 neighbour files of ~6.5 MB each."""
    return generate_sample_tree(str(tmp_path_factory.mktemp("big-hub")), num_captions=200_000, num_media=2_000,
                                num_neighbours=4, num_triplets=100, eshot_categories=2, media=False)


def test_only_the_files_a_config_needs_are_read(big_tree, tmp_path, standin_hub):
    """Streaming the first 100 rows of phase1_nn3 reads a small part of nn_3/data_groups.csv (its header, a
    row check and one byte range), no other neighbour file, and each infos table of phase 1 once; preparing it
    reads nn_3 about once."""
    groups = "e-mm1_100m/nn_3/data_groups.csv"
    size = os.path.getsize(os.path.join(big_tree.metadata_dir, groups))
    infos = {f"e-mm1_100m/infos/{name}": os.path.getsize(os.path.join(big_tree.phase1_dir, "infos", name))
             for name in os.listdir(os.path.join(big_tree.phase1_dir, "infos"))}
    first_rows = {"name": "emm1", "config": "phase1_nn3", "split": "train", "data_dir": HUB_DATA_DIR,
                  "streaming": True, "take": 100, "kwargs": {"shard_bytes": 64 << 10}}
    hub = standin_hub
    hub.add_repo(REPO, big_tree.metadata_dir)
    [streamed] = _client_loads(hub, tmp_path, big_tree.root, [first_rows], name="stream")
    stream_read, stream_requests = hub.bytes_read(REPO), len(hub.requests())
    hub.reset_stats()
    [prepared] = _client_loads(hub, tmp_path, big_tree.root, [{**first_rows, "streaming": False, "take": 1,
                                                               "kwargs": {}}], name="prepare")
    prepare_read, prepare_requests = hub.bytes_read(REPO), len(hub.requests())
    assert len(_check_ok(streamed)["rows"]) == 100 and _check_ok(prepared)["rows"]
    print(f"\nstreaming 100 rows of phase1_nn3: {stream_read[groups]:,} of {size:,} bytes of {groups} "
          f"({stream_read[groups] / size:.1%}), {sum(stream_read.values()):,} bytes in all, {stream_requests} requests; "
          f"preparing it: {prepare_read[groups]:,} bytes of {groups}, {sum(prepare_read.values()):,} in all, "
          f"{prepare_requests} requests")
    for read in (stream_read, prepare_read):
        assert set(read) == {groups, *infos}, sorted(read)  # no other nn_k, nothing of phase 2 or EShot
        for path, file_bytes in infos.items():
            # read whole once, plus its header line (one small read-ahead block)
            assert file_bytes <= read[path] <= file_bytes + 2 * fs.REMOTE_BLOCK_BYTES, (path, read[path])
    assert stream_read[groups] < 0.1 * size
    assert size <= prepare_read[groups] <= size + 4 * fs.REMOTE_BLOCK_BYTES
