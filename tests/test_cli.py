"""The `emm1` command: `sample` writes a readable tree, `demo` prepares every config and reports it."""
import os
import re
import subprocess
import sys
import textwrap

import pyarrow.csv as pacsv
import pytest

import emm1
from emm1_lib.tools.cli import main


def test_sample_writes_both_generations(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "released"), "--captions", "10", "--no-media"]) == 0
    assert main(["sample", str(tmp_path / "seed"), "--schema", "seed", "--captions", "10", "--no-media"]) == 0
    released = pacsv.read_csv(str(tmp_path / "released" / "metadata" / "e-mm1_100m" / "nn_4" / "data_groups.csv"))
    seed = pacsv.read_csv(str(tmp_path / "seed" / "metadata" / "encord_phase_1_dataset" / "nn_4" / "data_groups.csv"))
    assert released.num_rows == seed.num_rows == 10
    assert "nn_index" in released.column_names and "nn_index" not in seed.column_names
    assert "root_data_path=" in capsys.readouterr().out


def test_sample_media_are_real_files(tmp_path):
    assert main(["sample", str(tmp_path), "--captions", "4", "--media-per-modality", "2"]) == 0
    with open(tmp_path / "metadata" / "e-mm1_100m" / "infos" / "image.csv") as f:
        next(f)
        save_folder, file_name = [v.strip('"') for v in next(f).strip().split(",")][-1:-3:-1]
    with open(os.path.join(tmp_path, "media", save_folder, "image", file_name), "rb") as f:
        assert f.read(3) in (b"\xff\xd8\xff", b"\x89PN")  # JPEG or PNG magic


def test_demo_prepares_every_config(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "emm1_lib.tools.cli", "demo", "--cache-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    for config in emm1.EMM1.BUILDER_CONFIGS:
        assert f"\n{config.name} " in run.stdout
    # phase 1's paths come from its media columns (no path columns by default): the rows show real paths
    phase1_rows = run.stdout.split("\nphase1_nn1: first", 1)[1].split("\n\n", 1)[0]
    assert "image.path" in phase1_rows and "audio.path" in phase1_rows
    assert re.search(r"/image/[^ |]+\.(jpg|png)", phase1_rows) and re.search(r"/audio/[^ |]+\.", phase1_rows)
    assert "phase1_all            384" in run.stdout  # 16 neighbours x 24 captions
    assert "decoded media of row 0" in run.stdout and "points xyz (" in run.stdout
    assert "EShot with STAND-IN embeddings" in run.stdout and "audio_to_points  top1 " in run.stdout
    # a second run reuses the generated tree and the prepared caches
    again = subprocess.run(
        [sys.executable, "-m", "emm1_lib.tools.cli", "demo", "--cache-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert again.returncode == 0 and "Generating train split" not in again.stderr


def _printed_load_calls(stdout):
    """The Python lines `emm1 demo` prints at its end, after "Load the sample yourself"."""
    tail = stdout.split("Load the sample yourself", 1)[1].splitlines()[1:]
    return textwrap.dedent("\n".join(line for line in tail if line.startswith("    ")))


def test_demo_ends_with_load_dataset_calls_that_load_the_sample(tmp_path):
    run = subprocess.run([sys.executable, "-m", "emm1_lib.tools.cli", "demo", "--cache-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    code = _printed_load_calls(run.stdout)
    sample = os.path.join(str(tmp_path), "sample-released")
    assert f"data_dir={os.path.join(sample, 'metadata')!r}" in code
    assert f"root_data_path={os.path.join(sample, 'media')!r}" in code
    assert code.count("datasets.load_dataset(") == 2
    # run the printed lines as a user would paste them, in a fresh interpreter elsewhere
    check = code.replace("\nimport eshot", "\nassert len(ds) == 24\nimport eshot")
    check += "\nassert len(ds) == 12 and ds.features['category'].names\nprint('LOADED')\n"
    loaded = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=600,
                            cwd=str(tmp_path))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip().endswith("LOADED")


def test_version_is_the_installed_one():
    from importlib.metadata import version

    for module, name in (("emm1_lib.tools.cli", "emm1"), ("emm1_lib.tools.eshot_cli", "eshot")):
        run = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == f"{name} {version('emm1')}"


def test_sample_into_an_existing_tree_is_refused(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "t"), "--captions", "4", "--no-media"]) == 0
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "t"), "--captions", "4", "--no-media"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "t") in err and "not empty" in err and "--force" in err
    assert main(["sample", str(tmp_path / "t"), "--captions", "4", "--no-media", "--force"]) == 0
    (tmp_path / "empty").mkdir()
    assert main(["sample", str(tmp_path / "empty"), "--captions", "4", "--no-media"]) == 0


@pytest.mark.parametrize("argv", [
    ["sample", "OUT", "--media-per-modality", "0"],
    ["sample", "OUT", "--captions", "-3"],
    ["sample", "OUT", "--captions", "many"],
    ["demo", "--rows", "-1"],
    ["frobnicate"],
])
def test_bad_arguments_exit_with_status_2(argv, tmp_path):
    argv = [str(tmp_path / a) if a == "OUT" else a for a in argv]
    run = subprocess.run([sys.executable, "-m", "emm1_lib.tools.cli", *argv], capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path))
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "error:" in run.stderr and "Traceback" not in run.stderr
