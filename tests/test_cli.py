"""The `emm1` command: `sample` writes a readable tree, `demo` prepares every config and reports it."""
import os
import subprocess
import sys

import pyarrow.csv as pacsv

import emm1
from emm1_lib.tools.cli import main


def test_sample_writes_both_generations(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "released"), "--captions", "10", "--no-media"]) == 0
    assert main(["sample", str(tmp_path / "seed"), "--schema", "seed", "--captions", "10", "--no-media"]) == 0
    released = pacsv.read_csv(str(tmp_path / "released" / "e-mm1_100m" / "nn_4" / "data_groups.csv"))
    seed = pacsv.read_csv(str(tmp_path / "seed" / "encord_phase_1_dataset" / "nn_4" / "data_groups.csv"))
    assert released.num_rows == seed.num_rows == 10
    assert "nn_index" in released.column_names and "nn_index" not in seed.column_names
    assert "root_data_path=" in capsys.readouterr().out


def test_sample_media_are_real_files(tmp_path):
    assert main(["sample", str(tmp_path), "--captions", "4", "--media-per-modality", "2"]) == 0
    with open(tmp_path / "e-mm1_100m" / "infos" / "image.csv") as f:
        next(f)
        save_folder, file_name = [v.strip('"') for v in next(f).strip().split(",")][-1:-3:-1]
    with open(os.path.join(tmp_path, save_folder, "image", file_name), "rb") as f:
        assert f.read(3) in (b"\xff\xd8\xff", b"\x89PN")  # JPEG or PNG magic


def test_demo_prepares_every_config(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "emm1_lib.tools.cli", "demo", "--cache-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    for config in emm1.EMM1.BUILDER_CONFIGS:
        assert f"\n{config.name} " in run.stdout
    assert "phase1_all            384" in run.stdout  # 16 neighbours x 24 captions
    assert "decoded media of row 0" in run.stdout and "points xyz (" in run.stdout
    assert "EShot with STAND-IN embeddings" in run.stdout and "audio_to_points  top1 " in run.stdout
    # a second run reuses the generated tree and the prepared caches
    again = subprocess.run(
        [sys.executable, "-m", "emm1_lib.tools.cli", "demo", "--cache-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert again.returncode == 0 and "Generating train split" not in again.stderr
