"""`emm1 export --embed-media`: shards with the media inside, read back by stock `datasets` in a fresh interpreter,
licence policy, incremental re-export, WebDataset shards."""
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset
from huggingface_hub import DatasetCard

import emm1
from emm1_lib.builders.registry import builder_config_names
from emm1_lib.errors import DanglingIdWarning
from emm1_lib.errors import EMM1DataError
from emm1_lib.media.features import media_feature
from emm1_lib.schema.licenses import REDISTRIBUTABLE_LICENSES
from emm1_lib.schema.licenses import UNRECORDED
from emm1_lib.schema.licenses import normalize_license
from emm1_lib.testing.sample import generate_sample_tree
from emm1_lib.tools.cli import main as emm1_main
from emm1_lib.tools.export import export
from emm1_lib.tools.export_media import MANIFEST_FILE
from emm1_lib.tools.export_media import _PLAN_HEADROOM
from emm1_lib.tools.export_media import _plan
from emm1_lib.tools.export_media import export_media

MEDIA = ("image", "audio", "video", "points")
CONFIGS = ["phase1_nn2", "phase2_triplets", "eshot_audio", "eshot_points"]
MAX_SHARD = 100_000  # small shards: several files per config from the small sample tree (a row group of 10 rows is ~90 kB)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _builder_rows(tree, config, cache):
    """The builder's rows for `config` (decode off): media paths absolute under the tree's media root."""
    builder = builder_config_names()[config](config_name=config, data_dir=tree.metadata_dir, root_data_path=tree.root,
                                             decode=False, cache_dir=cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        builder.download_and_prepare()
    split = next(iter(builder.info.splits))
    return split, builder.as_dataset(split=split).to_list()


def _relative(tree, path):
    return None if path is None else os.path.relpath(path, tree.root).replace(os.sep, "/")


@pytest.fixture(scope="module")
def media_export(released_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("media-export") / "repo"
    cache = str(tmp_path_factory.mktemp("media-export-cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        result = export_media(str(out), released_tree.metadata_dir, released_tree.root, CONFIGS, all_licenses=True,
                              max_shard_bytes=MAX_SHARD, cache_dir=cache, num_workers=2)
    return result, cache


# The child: stock `datasets` only (the project is not importable: PYTHONPATH is cleared and cwd is elsewhere).
STOCK_CHILD = r'''
import hashlib, json, sys
import datasets
out = {}
for config in CONFIGS:
    dsd = datasets.load_dataset(OUT, config)
    (split, ds), = dsd.items()
    rows = ds.with_format("arrow")[:].to_pylist()
    for row in rows:
        for m in ("image", "audio", "video", "points"):
            if row.get(m) is not None:
                data = row[m]["bytes"]
                row[m] = {"path": row[m]["path"], "sha256": hashlib.sha256(data).hexdigest() if data is not None else None}
    image = next((r for r in ds.select_columns(["image"]) if r["image"] is not None), None) if "image" in ds.features else None
    out[config] = {"split": split, "rows": rows, "features": {k: type(v).__name__ if not isinstance(v, dict) else "dict"
                                                              for k, v in ds.features.items()},
                   "image_size": list(image["image"].size) if image else None}
out["project_imported"] = any(name.startswith("emm1") for name in sys.modules)
print(json.dumps(out, default=str))
'''


def test_stock_datasets_reads_the_media_back_in_a_fresh_interpreter(media_export, released_tree, tmp_path):
    """Round trip: export with media -> stock `load_dataset` in a fresh interpreter without the project -> the rows equal
    the builder's (paths relative to the media root) and every media item's bytes equal its source file."""
    result, cache = media_export
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = STOCK_CHILD.replace("CONFIGS", repr(CONFIGS)).replace("OUT", repr(result.out_dir))
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["project_imported"] is False
    video_type = "Video"
    for config in CONFIGS:
        split, expected = _builder_rows(released_tree, config, cache)
        got = out[config]
        assert got["split"] == split and len(got["rows"]) == len(expected)
        for m in MEDIA:
            if m in got["features"]:
                assert got["features"][m] == {"image": "Image", "audio": "Audio", "video": video_type, "points": "dict"}[m]
        checked = 0
        for want, row in zip(expected, got["rows"]):
            for name, value in want.items():
                if name in MEDIA:
                    if value is None:
                        assert row[name] is None
                        continue
                    with open(value["path"], "rb") as f:
                        assert row[name] == {"path": _relative(released_tree, value["path"]), "sha256": _sha(f.read())}
                    checked += 1
                elif name.endswith("_file_path"):
                    assert row[name] == _relative(released_tree, value)
                else:
                    assert row[name] == value, (config, name)
        assert checked > 0
        if "image" in got["features"]:
            assert got["image_size"] and got["image_size"][0] > 0  # stock Image decodes the embedded bytes


def test_shards_are_bounded_and_row_groups_small(media_export):
    result, _ = media_export
    files = [f for c in result.configs for split in c.files.values() for f in split]
    assert len(files) > len(CONFIGS)  # the bound split configs into several files
    for c in result.configs:
        limit = 10 if "video" in c.features else 100
        for split, names in c.files.items():
            assert [os.path.basename(n) for n in names] == [
                f"{split}-{i:05d}-of-{len(names):05d}.parquet" for i in range(len(names))]
            for name in names:
                path = os.path.join(result.out_dir, name)
                assert os.path.getsize(path) <= MAX_SHARD
                meta = pq.ParquetFile(path).metadata
                assert all(meta.row_group(i).num_rows <= limit for i in range(meta.num_row_groups))
    card = DatasetCard.load(os.path.join(result.out_dir, "README.md"))
    assert [c["config_name"] for c in card.data["configs"]] == CONFIGS


def test_resolve_decodes_embedded_media_without_a_media_root(media_export, released_tree):
    """`emm1.resolve(ds)` on the loaded export gives the project's decoded media, equal to decoding the source files."""
    import datasets

    result, cache = media_export
    ds = emm1.resolve(datasets.load_dataset(result.out_dir, "phase1_nn2", split="train"))
    _, expected = _builder_rows(released_tree, "phase1_nn2", cache)
    row, want = ds[0], expected[0]
    for m in MEDIA:
        reference = media_feature(m).decode_example({"bytes": None, "path": want[m]["path"]})
        if m == "image":
            assert np.array_equal(np.asarray(row[m]), np.asarray(reference))
        elif m == "audio":
            assert np.array_equal(row[m]["array"], reference["array"])
        elif m == "video":
            assert row[m].num_frames == reference.num_frames and np.array_equal(row[m][0], reference[0])
        else:
            assert np.array_equal(row[m]["xyz"], reference["xyz"])
    with pytest.raises(ValueError, match="already resolved"):
        emm1.resolve(ds)


def _arrow_rows(out_dir, config):
    return [row for path in sorted(glob.glob(os.path.join(out_dir, config, "*.parquet")))
            for row in pq.read_table(path).to_pylist()]


def test_licence_policy_embeds_nothing_outside_the_allow_list(released_tree, tmp_path):
    """Only items whose licence is allowed carry bytes; the rest keep the path with null bytes; provenance stays; the
    card's counts per licence are the rows' counts, and the card parses."""
    allowed = ["cc-by-4.0", "ODC-By 1.0"]  # spelled differently from the tables on purpose
    out = tmp_path / "repo"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        result = export_media(str(out), released_tree.metadata_dir, released_tree.root, ["phase1_nn1", "eshot_points"],
                              licenses=allowed, cache_dir=str(tmp_path / "cache"))
    keys = {normalize_license(a) for a in allowed}
    counts = {}
    for row in _arrow_rows(out, "phase1_nn1"):
        for m in MEDIA:
            licence = row[f"{m}_dataset_license"]
            assert row[f"{m}_source_dataset"] is not None
            assert row[m]["path"] == row[f"{m}_file_path"]
            embedded = row[m]["bytes"] is not None
            assert embedded == (normalize_license(licence) in keys), (m, licence)
            counts.setdefault((m, licence), [0, 0])[0 if embedded else 1] += 1
    assert any(v[0] for v in counts.values()) and any(v[1] for v in counts.values())
    for row in _arrow_rows(out, "eshot_points"):  # no licence recorded: never embedded under a list
        assert row["points"]["bytes"] is None and row["points"]["path"].startswith("eshot/")
    card = DatasetCard.load(result.card_path)
    table = {tuple(cells[:2]): cells[2:5] for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in card.text.splitlines() if line.startswith("| "))}
    for (m, licence), (embedded, excluded) in counts.items():
        assert table[(m, licence)][:2] == [f"{embedded:,}", f"{excluded:,}"]
    assert table[("points", UNRECORDED)][:2] == ["0", f"{len(_arrow_rows(out, 'eshot_points')):,}"]


def test_export_media_refuses_file_path_columns(released_tree, tmp_path):
    """The published copy always has the path columns beside the media (the test above reads them): not an option."""
    with pytest.raises(TypeError, match=r"export_media\(\) sets file_path_columns itself.*Leave the option out"):
        export_media(str(tmp_path / "repo"), released_tree.metadata_dir, released_tree.root, ["phase1_nn1"],
                     licenses=["cc-by-4.0"], cache_dir=str(tmp_path / "cache"), file_path_columns=False)
    assert not os.path.exists(tmp_path / "repo")


def test_redistributable_only_from_the_command_line(released_tree, tmp_path, capsys):
    out = tmp_path / "repo"
    status = emm1_main(["export", "--to", str(out), "--data-dir", released_tree.metadata_dir, "--root-data-path",
                        released_tree.root, "--embed-media", "--redistributable-only", "--configs", "phase1_nn1",
                        "--cache-dir", str(tmp_path / "cache")])
    assert status == 0, capsys.readouterr().err
    keys = {normalize_license(n) for n in REDISTRIBUTABLE_LICENSES}
    rows = _arrow_rows(out, "phase1_nn1")
    embedded = [(m, row[f"{m}_dataset_license"]) for row in rows for m in MEDIA if row[m]["bytes"] is not None]
    assert embedded and all(normalize_license(lic) in keys for _, lic in embedded)
    assert not any(lic in ("CC BY-NC 4.0", "Flickr terms of use") for _, lic in embedded)


def test_embedding_needs_a_stated_licence_choice(released_tree, tmp_path, capsys):
    with pytest.raises(ValueError, match="exactly one of"):
        export_media(str(tmp_path / "a"), released_tree.metadata_dir, released_tree.root, ["phase1_nn1"])
    status = emm1_main(["export", "--to", str(tmp_path / "b"), "--data-dir", released_tree.metadata_dir,
                        "--root-data-path", released_tree.root, "--embed-media", "--configs", "phase1_nn1"])
    assert status == 2 and "--redistributable-only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        emm1_main(["export", "--to", str(tmp_path / "c"), "--data-dir", released_tree.metadata_dir, "--all-licenses"])


def test_reexport_rewrites_only_shards_whose_media_changed(tmp_path):
    """More media arrived: the shards holding the new items are rewritten, the others stay untouched (same file,
    same mtime), and the manifest's hashes follow."""
    tree = generate_sample_tree(str(tmp_path / "tree"), schema="released", num_captions=40)
    out = str(tmp_path / "repo")
    kwargs = dict(configs=["phase1_nn1"], all_licenses=True, max_shard_bytes=40_000, row_group_rows=5,
                  on_missing_media="null", cache_dir=str(tmp_path / "cache"))
    # Hold back one video file: it "arrives" later.
    first = export_media(out, tree.metadata_dir, tree.root, **kwargs)
    rows = _arrow_rows(out, "phase1_nn1")
    late = rows[-1]["video"]["path"]
    held = tmp_path / "held"
    shutil.move(os.path.join(tree.root, late), held)
    shutil.rmtree(out)
    first = export_media(out, tree.metadata_dir, tree.root, **kwargs)
    files = [f for split in first.configs[0].files.values() for f in split]
    assert len(files) >= 3
    stats = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in files}
    with open(os.path.join(out, MANIFEST_FILE)) as f:
        manifest = json.load(f)
    shards = manifest["configs"]["phase1_nn1"]["train"]["shards"]
    holding = {s["file"] for s in shards for i in range(*s["rows"]) if rows[i]["video"]["path"] == late}
    assert holding and len(holding) < len(files)

    again = export_media(out, tree.metadata_dir, tree.root, **kwargs)  # nothing changed
    assert again.written == [] and sorted(again.kept) == sorted(files)
    shutil.move(str(held), os.path.join(tree.root, late))
    more = export_media(out, tree.metadata_dir, tree.root, **kwargs)
    assert sorted(more.written) == sorted(holding)
    for f in files:
        assert (os.stat(os.path.join(out, f)).st_mtime_ns == stats[f]) == (f not in holding)
    with open(os.path.join(out, MANIFEST_FILE)) as f:
        after = {s["file"]: s["sha256"] for s in json.load(f)["configs"]["phase1_nn1"]["train"]["shards"]}
    assert {f for f in files if after[f] != {s["file"]: s["sha256"] for s in shards}[f]} == holding
    assert all(row["video"]["bytes"] is not None for row in _arrow_rows(out, "phase1_nn1") if row["video"])


def test_webdataset_shards_read_back_by_webdataset(released_tree, tmp_path):
    import webdataset as wds

    out = tmp_path / "wds"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        result = export_media(str(out), released_tree.metadata_dir, released_tree.root, ["phase1_nn1", "eshot_audio"],
                              all_licenses=True, fmt="webdataset", max_shard_bytes=MAX_SHARD,
                              cache_dir=str(tmp_path / "cache"))
    DatasetCard.load(result.card_path)
    tars = sorted(glob.glob(str(out / "phase1_nn1" / "*.tar")))
    assert len(tars) > 1
    for path in tars:
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                assert member.isfile() and re.fullmatch(r"[0-9]{9}\.(json|(image|audio|video|points)\.[a-z0-9]{1,10})",
                                                         member.name), member.name
    samples = list(wds.WebDataset(tars, shardshuffle=False))
    assert len(samples) == len(_builder_rows(released_tree, "phase1_nn1", str(tmp_path / "cache"))[1])
    for sample in samples:
        meta = json.loads(sample["json"])
        for m in MEDIA:
            member = meta[m]["member"]
            assert member is not None and meta[m]["path"] == meta[f"{m}_file_path"]
            field = member.split(".", 1)[1]
            with open(os.path.join(released_tree.root, meta[m]["path"]), "rb") as f:
                assert sample[field] == f.read()


def test_switching_format_leaves_no_shards_of_the_old_one(released_tree, tmp_path):
    """Re-exporting a Parquet export as WebDataset removes the Parquet shards: the card's `{split}-*` glob would
    otherwise load both."""
    out = str(tmp_path / "repo")
    kwargs = dict(configs=["eshot_points"], all_licenses=True, cache_dir=str(tmp_path / "cache"))
    export_media(out, released_tree.metadata_dir, released_tree.root, **kwargs)
    assert glob.glob(os.path.join(out, "eshot_points", "*.parquet"))
    result = export_media(out, released_tree.metadata_dir, released_tree.root, fmt="webdataset", **kwargs)
    assert sorted(os.listdir(os.path.join(out, "eshot_points"))) == sorted(
        os.path.basename(f) for f in result.configs[0].files["test"])


def test_plain_export_over_a_media_export_leaves_no_manifest_or_media_shards(released_tree, tmp_path):
    """`emm1 export --overwrite` (no media) into the folder of an `--embed-media` export: the manifest described
    shards that are gone, so it goes too; a later media export then plans afresh and writes every shard."""
    out = str(tmp_path / "repo")
    cache = str(tmp_path / "cache")
    kwargs = dict(configs=["eshot_points"], all_licenses=True, cache_dir=cache, fmt="webdataset")
    export_media(out, released_tree.metadata_dir, released_tree.root, **kwargs)
    assert os.path.isfile(os.path.join(out, MANIFEST_FILE))
    result = export(out, released_tree.metadata_dir, ["eshot_points"], cache_dir=cache, overwrite=True)
    assert not os.path.exists(os.path.join(out, MANIFEST_FILE))
    (entry,) = result.configs
    assert sorted(os.listdir(os.path.join(out, "eshot_points"))) == sorted(
        os.path.basename(f) for files in entry.files.values() for f in files)
    loaded = load_dataset(out, "eshot_points", split="test")
    assert "points" not in loaded.column_names and len(loaded) == sum(entry.splits.values())
    with pytest.raises(EMM1DataError, match="not empty"):  # no manifest now: not taken for a media export
        export_media(out, released_tree.metadata_dir, released_tree.root, **kwargs)
    again = export_media(out, released_tree.metadata_dir, released_tree.root, overwrite=True, **kwargs)
    assert again.configs[0].kept == [] and again.configs[0].written


def test_shard_plan_cuts_equal_shards_under_the_bound():
    """Streaming hands whole shards to DataLoader workers (shard i to worker i mod n): a remainder shard left by
    filling shards up in order (400, 410, 410, 280 rows here) idles a worker at the end of every pass."""
    rows, group = 1500, 10
    bound = int(rows * 375_000 / 4 * 1.15) + (1 << 20)  # what benchmarks/export_media.py asks for 4 shards
    ranges = _plan(np.full(rows, 375_000), bound, group)
    sizes = [b - a for a, b in ranges]
    assert len(ranges) == 4 and max(sizes) - min(sizes) <= group, sizes
    rng = np.random.default_rng(0)
    for _ in range(2000):  # any sizes (a few rows far over the bound, empty rows): contiguous, at row-group
        n, group = int(rng.integers(1, 300)), int(rng.integers(1, 30))  # boundaries, under the bound or one group
        estimates = rng.integers(0, 1000, n) + (rng.random(n) < 0.02) * 50_000
        bound = int(rng.integers(500, 100_000))
        ranges = _plan(estimates, bound, group)
        assert [a for a, _ in ranges] == [0] + [b for _, b in ranges[:-1]] and ranges[-1][1] == n
        assert all(a % group == 0 and a < b for a, b in ranges)
        assert all(estimates[a:b].sum() <= bound * _PLAN_HEADROOM or b - a <= group for a, b in ranges)


def test_half_written_shards_of_a_killed_export_never_match_the_cards_glob(released_tree, tmp_path):
    """A shard is written under a hidden temporary name; the temporary files a killed run left (this and the
    earlier naming) are removed by the next export, so the card's `{split}-*` glob and an upload see only shards."""
    out = str(tmp_path / "repo")
    kwargs = dict(configs=["eshot_points"], all_licenses=True, cache_dir=str(tmp_path / "cache"))
    first = export_media(out, released_tree.metadata_dir, released_tree.root, **kwargs)
    folder = os.path.join(out, "eshot_points")
    shard = os.path.basename(first.configs[0].files["test"][0])
    for leftover in (f".{shard}.tmp", f"{shard}.tmp"):
        with open(os.path.join(folder, leftover), "wb") as f:
            f.write(b"PAR1 half a shard")
    assert [n for n in glob.glob(os.path.join(folder, "test-*")) if n.endswith(".tmp")]  # the old name matched
    result = export_media(out, released_tree.metadata_dir, released_tree.root, **kwargs)
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(f) for f in result.configs[0].files["test"])
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]  # the card too is renamed into place


def test_resolve_with_a_root_refuses_stored_paths_that_escape_it(released_tree, tmp_path):
    """An embedded export's media path comes from whoever wrote the shards: with root=, a `..` path is refused,
    naming the column and row, before any file under it is opened."""
    import datasets
    import pyarrow as pa

    out = str(tmp_path / "repo")
    export_media(out, released_tree.metadata_dir, released_tree.root, ["eshot_points"], all_licenses=True,
                 cache_dir=str(tmp_path / "cache"))
    (path,) = glob.glob(os.path.join(out, "eshot_points", "*.parquet"))
    table = pq.read_table(path)
    points = table["points"].combine_chunks()
    paths = points.field("path").to_pylist()
    paths[3] = "../../outside.npy"
    hostile = pa.StructArray.from_arrays([pa.nulls(len(paths), pa.binary()), pa.array(paths, pa.string())],
                                         ["bytes", "path"])
    pq.write_table(table.set_column(table.schema.get_field_index("points"), table.schema.field("points"), hostile), path)
    ds = datasets.load_dataset(out, "eshot_points", split="test")
    with pytest.raises(Exception) as caught:
        emm1.resolve(ds, root=released_tree.root)
    assert "points.path" in str(caught.value) and "outside.npy" in str(caught.value), str(caught.value)


def test_export_media_benchmark_smoke(tmp_path):
    """benchmarks/export_media.py runs its export comparison end to end on a tiny tree (no timing asserted: the
    figures are in docs/publishing.md); both sides embed the same media bytes."""
    import pathlib

    benchmarks = str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks")
    sys.path.insert(0, benchmarks)
    try:
        import export_media as benchmark
    finally:
        sys.path.remove(benchmarks)
    report = benchmark.main(["--captions", "12", "--rounds", "1", "--shards", "2", "--skip-streaming",
                             "--work-dir", str(tmp_path / "work"), "--json", str(tmp_path / "report.json")])
    export = report["export"]
    assert export["ratio"] > 0 and export["embedded_mb"] > 0
    assert json.loads((tmp_path / "report.json").read_text())["export"]["shard_bytes"] == export["shard_bytes"]
