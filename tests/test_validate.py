"""`emm1 validate` / `validate_tree`: per-modality report, every problem at once, text and JSON, exit status."""
import json
import os
import subprocess
import sys

import pytest

from emm1_lib.tools import cli as emm1_cli
from emm1_lib.testing.sample import generate_sample_tree
from emm1_lib.tools.validate import validate_tree

MODALITIES = ("image", "audio", "video", "points")


def _set_line(path, line, transform):
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    lines[line - 1] = transform(lines[line - 1])
    with open(path, "wb") as f:
        f.write(b"\n".join(lines))


def _broken_tree(tmp_path):
    """A metadata tree with one problem of each kind, in several files."""
    tree = generate_sample_tree(str(tmp_path / "broken"), media=True, num_neighbours=2, num_captions=12, dangling=1)
    infos = os.path.join(tree.phase1_dir, "infos")
    _set_line(os.path.join(infos, "image.csv"), 3, lambda l: l.replace(b'"e-mm1_100m_only"', b'"../up"').replace(b'"shared"', b'"../up"'))
    _set_line(os.path.join(infos, "image.csv"), 5, lambda l: l.replace(b'.jpg"', b'.jpg/../../../x"').replace(b'.png"', b'.png/../../../x"'))
    _set_line(os.path.join(infos, "audio.csv"), 2, lambda l: b"oops" + l[l.index(b","):])
    _set_line(os.path.join(infos, "video.csv"), 4, lambda l: l + b",surplus")
    with open(os.path.join(infos, "points.csv"), "rb") as f:
        second_row = f.read().split(b"\n")[1]
    with open(os.path.join(infos, "points.csv"), "ab") as f:
        f.write(second_row + b"\n")  # a duplicate id
    os.remove(os.path.join(tree.phase2_dir, "infos", "video.csv"))
    return tree


def test_clean_tree_is_ok_with_media(released_tree):
    report = validate_tree(released_tree.metadata_dir, released_tree.root, check_media=True)
    assert report.ok and report.exit_code == 0
    assert [s.name for s in report.splits] == ["phase1", "phase2", "eshot"]
    phase1 = report.split("phase1")
    assert phase1.schema == "released"
    for m in MODALITIES:
        stats = phase1.modalities[m]
        assert stats.infos_rows == 6 and stats.dangling == 0 and stats.unsafe_paths == 0
        assert stats.references == 16 * released_tree.num_captions
        assert stats.media_checked == 6 and stats.missing_media == 0
    assert phase1.modalities["text"].infos_rows == released_tree.num_captions
    assert report.split("eshot").modalities["audio"].media_checked > 0


def test_seed_tree_is_ok_with_media(seed_tree):
    report = validate_tree(seed_tree.metadata_dir, seed_tree.root, check_media=True)
    assert report.ok, report.to_text()
    assert {s.name: s.schema for s in report.splits} == {"phase1": "seed", "phase2": "seed", "eshot": "seed"}


def test_every_problem_is_reported_at_once(tmp_path):
    tree = _broken_tree(tmp_path)
    report = validate_tree(tree.metadata_dir, tree.root, check_media=True)
    assert not report.ok and report.exit_code == 1
    codes = {(f.code, os.path.relpath(f.file, tree.metadata_dir)) for f in report.errors}
    assert ("unsafe_path", "e-mm1_100m/infos/image.csv") in codes
    assert ("not_integer", "e-mm1_100m/infos/audio.csv") in codes
    assert ("ragged_row", "e-mm1_100m/infos/video.csv") in codes
    assert ("duplicate_id", "e-mm1_100m/infos/points.csv") in codes
    assert ("missing_file", "e-mm1_1m/infos/video.csv") in codes
    unsafe = report.find("unsafe_path", "e-mm1_100m/infos/image.csv")  # one finding per column
    assert [(f.lines, f.count) for f in unsafe] == [([3], 1), ([5], 1)]
    phase1 = report.split("phase1")
    assert phase1.modalities["image"].unsafe_paths == 2
    assert phase1.modalities["points"].duplicate_ids and phase1.modalities["audio"].invalid_ids == 0
    # the tables that could be read were still checked: dangling ids of every grouping file are counted
    assert all(phase1.modalities[m].dangling >= 2 for m in MODALITIES)
    # rows left out of a table (bad id, ragged) make their references dangle; the media of the good rows are checked
    assert phase1.modalities["image"].media_checked == 4


def test_dangling_ids_are_all_listed(tmp_path):
    tree = generate_sample_tree(str(tmp_path / "t"), media=False, num_neighbours=3, num_captions=30, dangling=4)
    report = validate_tree(tree.phase1_dir)
    assert report.ok and [s.name for s in report.splits] == ["phase1"]
    stats = report.split("phase1").modalities["video"]
    distinct = set()
    for finding in report.find("dangling_id"):
        if finding.modality == "video":
            distinct.update(finding.values)
    assert sorted(distinct) == stats.dangling_ids and stats.dangling >= len(distinct) >= 4
    missing = report.find("missing_file", severity="warning")  # nn_4 .. nn_16
    assert missing and missing[0].values == list(range(4, 17))


def test_missing_media_and_folder_override(released_tree, tmp_path):
    report = validate_tree(released_tree.metadata_dir, released_tree.root, check_media=True, media_folders={"audio": "video"},
                           modalities=["audio"])
    assert not report.ok
    stats = report.split("phase1").modalities["audio"]
    assert stats.missing_media == stats.media_checked == 6
    assert {f.code for f in report.errors} == {"missing_media"}


def test_no_metadata_is_an_error(tmp_path):
    report = validate_tree(str(tmp_path))
    [error] = report.errors
    assert error.code == "missing_file" and "no E-MM1 metadata" in error.message
    assert not validate_tree(str(tmp_path / "absent")).ok


def test_check_media_needs_a_root(released_tree, monkeypatch):
    monkeypatch.delenv("ROOT_DATA_PATH", raising=False)
    report = validate_tree(released_tree.metadata_dir, check_media=True)
    assert [f.code for f in report.errors] == ["no_media_root"]
    monkeypatch.setenv("ROOT_DATA_PATH", released_tree.root)
    assert validate_tree(released_tree.metadata_dir, check_media=True).ok


def test_bad_arguments():
    with pytest.raises(ValueError, match="modalities"):
        validate_tree(".", modalities=["smell"])
    with pytest.raises(ValueError, match="on_missing_media"):
        validate_tree(".", on_missing_media="skip")


def test_small_shards_give_the_same_report(tmp_path):
    tree = generate_sample_tree(str(tmp_path / "t"), media=False, num_neighbours=1, num_captions=300, dangling=5,
                                duplicate_groups=3)
    whole = validate_tree(tree.metadata_dir).to_dict()
    sharded = validate_tree(tree.metadata_dir, shard_bytes=512).to_dict()
    assert whole == sharded
    phase1 = [s for s in whole["splits"] if s["name"] == "phase1"][0]
    assert list(phase1["duplicate_rows"].values()) == [3]


def test_bad_grouping_shard_is_diagnosed_over_the_whole_file(tmp_path):
    tree = generate_sample_tree(str(tmp_path / "t"), media=False, num_neighbours=1, num_captions=300)
    path = os.path.join(tree.phase1_dir, "nn_1", "data_groups.csv")
    _set_line(path, 250, lambda l: l.replace(b",", b",x", 1))
    report = validate_tree(tree.metadata_dir, shard_bytes=1024)
    [finding] = report.find("not_integer", "nn_1/data_groups.csv")
    assert finding.lines == [250]
    assert report.split("phase1").tables[path] == 299  # the other rows were all checked
    assert report.split("phase1").modalities["text"].references == 299


def test_seed_eshot_media_are_found_by_id_as_the_builder_finds_them(tmp_path):
    """The builder reads `0007.wav` as id 7 (`rules.media_by_id`); the validator matched `str(id)` and called it missing."""
    tree = generate_sample_tree(str(tmp_path / "t"), schema="seed", num_neighbours=1, num_captions=4, num_media=2)
    folder = os.path.join(tree.eshot_dir, "audio")
    name = sorted(os.listdir(folder), key=lambda n: int(n.split(".")[0]))[7]
    os.rename(os.path.join(folder, name), os.path.join(folder, "000" + name))
    report = validate_tree(tree.metadata_dir, tree.root, check_media=True)
    assert not report.find("missing_media"), report.to_text()
    assert report.split("eshot").modalities["audio"].media_checked == 12
    os.symlink(os.path.join(folder, "000" + name), os.path.join(folder, name))  # now two files for id 7
    [clash] = validate_tree(tree.metadata_dir).find("duplicate_media", severity="error")
    assert "two media files" in clash.message and clash.values == [f"7: '000{name}' and '{name}'"]


# ---------------------------------------------------------------------------------------------- command line


def test_cli_text_and_exit_status(released_tree, tmp_path, capsys):
    assert emm1_cli.main(["validate", released_tree.metadata_dir, "--root-data-path", released_tree.root, "--check-media"]) == 0
    out = capsys.readouterr().out
    assert "phase1:" in out and "OK: 0 error(s)" in out and "missing_media" in out
    tree = _broken_tree(tmp_path)
    assert emm1_cli.main(["validate", tree.metadata_dir]) == 1
    out = capsys.readouterr().out
    assert "FAILED:" in out and "[unsafe_path] e-mm1_100m/infos/image.csv line 5: 1 unsafe file_name" in out


def test_cli_json(tmp_path, capsys):
    tree = _broken_tree(tmp_path)
    code = emm1_cli.main(["validate", tree.metadata_dir, "--json", "--check-media", "--root-data-path", tree.root,
                          "--media-folder", "audio=audio", "--workers", "2"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["ok"] is False and report["num_errors"] == len(
        [f for f in report["findings"] if f["severity"] == "error"])
    phase1 = [s for s in report["splits"] if s["name"] == "phase1"][0]
    assert set(phase1["modalities"]) == {"text", *MODALITIES}
    assert set(phase1["modalities"]["image"]) >= {"infos_rows", "dangling", "dangling_ids", "duplicate_ids",
                                                   "unsafe_paths", "missing_media", "outside_root"}


def test_cli_usage_errors(capsys):
    with pytest.raises(SystemExit) as raised:
        emm1_cli.main(["validate", ".", "--media-folder", "smell=x"])
    assert raised.value.code == 2


def test_cli_check_media_without_a_root_is_a_usage_error(released_tree, monkeypatch, capsys):
    """Bad arguments exit with 2 (argparse's code), not 1 (a tree with errors)."""
    monkeypatch.delenv("ROOT_DATA_PATH", raising=False)
    with pytest.raises(SystemExit) as raised:
        emm1_cli.main(["validate", released_tree.metadata_dir, "--check-media"])
    assert raised.value.code == 2
    assert "--check-media needs the media root" in capsys.readouterr().err
    monkeypatch.setenv("ROOT_DATA_PATH", released_tree.root)
    assert emm1_cli.main(["validate", released_tree.metadata_dir, "--check-media"]) == 0


def test_console_script(released_tree):
    """`python -m emm1_lib.tools.cli validate` in a fresh process (what the `emm1` console script runs)."""
    result = subprocess.run([sys.executable, "-m", "emm1_lib.tools.cli", "validate", released_tree.phase2_dir, "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["splits"][0]["name"] == "phase2"


@pytest.mark.slow
def test_scale_one_million_rows(tmp_path):
    """A 1M-caption grouping file is validated in bounded time (shards of the default size)."""
    import time

    tree = generate_sample_tree(str(tmp_path / "big"), media=False, num_neighbours=1, num_captions=1_000_000,
                                num_media=50_000, dangling=10)
    start = time.perf_counter()
    report = validate_tree(tree.phase1_dir)
    elapsed = time.perf_counter() - start
    assert report.ok and report.split("phase1").modalities["image"].dangling == 10
    assert elapsed < 60, elapsed


def test_unclosed_quote_and_other_bad_lines_are_each_reported_once(tmp_path):
    tree = generate_sample_tree(str(tmp_path / "quotes"), num_neighbours=1, num_captions=12)
    path = os.path.join(tree.phase1_dir, "infos", "text.csv")
    _set_line(path, 3, lambda l: b"abc" + l[l.index(b","):])  # an id that is no integer
    _set_line(path, 8, lambda l: l + b' "never closed')  # the rest of the file merges into one caption
    report = validate_tree(tree.metadata_dir)
    assert report.exit_code == 1
    found = {(f.code, tuple(f.lines)) for f in report.find(file="e-mm1_100m/infos/text.csv", severity="error")}
    assert found == {("not_integer", (3,)), ("unbalanced_quote", (8,))}, report.to_text()
    assert "line 8" in report.find("unbalanced_quote")[0].message
