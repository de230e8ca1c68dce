"""`eshot evaluate` (emm1_lib.tools.eshot_cli): embedding files + EShot folder -> table, result.json, bar charts."""
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emm1_lib.tools.eshot_cli import main
from emm1_lib.evaluation.eshot_protocol import eshot_scores

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _labels_from_json(eshot_dir):
    """Dataset order by hand: ids sorted, category from the JSON files, category ids over the sorted union."""
    mappings = {}
    for modality, name in (("audio", "category_to_audio_ids.json"), ("points", "category_to_point_ids.json")):
        with open(os.path.join(eshot_dir, name)) as f:
            mappings[modality] = json.load(f)
    names = sorted(set(mappings["audio"]) | set(mappings["points"]))
    out = {}
    for modality, mapping in mappings.items():
        pairs = sorted((i, c) for c, ids in mapping.items() for i in ids)
        out[modality] = (np.array([i for i, _ in pairs]), [c for _, c in pairs])
    return names, out


@pytest.fixture
def files(tmp_path, released_tree):
    """Clustered embeddings for the sample EShot folder, as .npy (dataset order) and shuffled Parquet/Arrow."""
    names, labelled = _labels_from_json(released_tree.eshot_dir)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((len(names), 8))
    out = {"names": names, "labelled": labelled, "dir": tmp_path}
    for modality, (ids, categories) in labelled.items():
        emb = centres[[names.index(c) for c in categories]] + 0.9 * rng.standard_normal((len(ids), 8))
        emb = emb.astype(np.float32)
        out[f"{modality}_emb"] = emb
        np.save(tmp_path / f"{modality}.npy", emb)
        order = rng.permutation(len(ids))
        table = pa.table({"id": ids[order], "vec": pa.array(list(emb[order]), pa.list_(pa.float32()))})
        pq.write_table(table, tmp_path / f"{modality}.parquet")
        with pa.OSFile(str(tmp_path / f"{modality}.arrow"), "wb") as sink:  # stream format, like datasets' caches
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
    return out


def _expected(files, k=(1, 5)):
    emb = np.concatenate([files["audio_emb"], files["points_emb"]])
    labels = files["labelled"]["audio"][1] + files["labelled"]["points"][1]
    modalities = ["audio"] * len(files["audio_emb"]) + ["points"] * len(files["points_emb"])
    return eshot_scores(emb, labels, modalities, k=k, categories=files["names"], per_category=True)


def _run(files, released_tree, audio="audio.npy", points="points.npy", *extra):
    out = files["dir"] / "out"
    argv = ["evaluate", "--audio-embeddings", str(files["dir"] / audio), "--points-embeddings",
            str(files["dir"] / points), "--data-dir", released_tree.metadata_dir, "--output-dir", str(out), *extra]
    return main(argv), out


def test_npy_files_give_table_json_and_charts(files, released_tree, capsys):
    status, out = _run(files, released_tree)
    assert status == 0
    report = json.loads((out / "result.json").read_text())
    expected = _expected(files)
    assert report["result"] == json.loads(json.dumps(expected))
    assert 0 < expected["audio_to_points_top1"] < 1  # informative data
    assert report["result"]["audio_to_points_missing_class_vectors"] == ["drum"]  # the sample lacks drum points
    assert "pessimistic" in report["protocol"]["tie_rule"]
    printed = capsys.readouterr().out
    assert f"{100 * expected['audio_to_points_top1']:.2f}" in printed
    assert f"{100 * expected['points_to_audio_top5_macro']:.2f}" in printed
    assert "drum" in printed
    for direction in ("audio_to_points", "points_to_audio"):
        chart = out / f"per_category_{direction}.png"
        assert chart.read_bytes()[:8] == PNG_MAGIC and chart.stat().st_size > 5000


@pytest.mark.parametrize("suffix", ["parquet", "arrow"])
def test_table_files_in_any_order_equal_npy(files, released_tree, suffix):
    status, out = _run(files, released_tree, f"audio.{suffix}", f"points.{suffix}", "--id-column", "id", "--no-plot")
    assert status == 0
    assert json.loads((out / "result.json").read_text())["result"] == json.loads(json.dumps(_expected(files)))
    assert not list(out.glob("*.png"))


def test_k_option(files, released_tree):
    status, out = _run(files, released_tree, "audio.npy", "points.npy", "--k", "1", "3", "--no-plot")
    assert status == 0
    result = json.loads((out / "result.json").read_text())["result"]
    assert result["k"] == [1, 3] and "audio_to_points_top3" in result and "audio_to_points_top5" not in result


def test_errors_are_reported_without_traceback(files, released_tree, capsys):
    d = files["dir"]
    np.save(d / "short.npy", files["audio_emb"][:-1])
    assert _run(files, released_tree, "short.npy", "points.npy")[0] == 2
    assert "short.npy: 11 rows, but the eshot_audio config has 12 samples" in capsys.readouterr().err

    np.save(d / "objects.npy", np.array([{"a": 1}] * 12, dtype=object))  # a pickle: must not be loaded
    assert _run(files, released_tree, "objects.npy", "points.npy")[0] == 2
    assert "not a plain numeric .npy array" in capsys.readouterr().err

    np.save(d / "narrow.npy", files["points_emb"][:, :4])
    assert _run(files, released_tree, "audio.npy", "narrow.npy")[0] == 2
    assert "audio embeddings have dimension 8" in capsys.readouterr().err

    table = pq.read_table(d / "points.parquet")
    pq.write_table(table.slice(1), d / "missing.parquet")
    assert _run(files, released_tree, "audio.npy", "missing.parquet", "--id-column", "id")[0] == 2
    assert "1 eshot_point_id value(s) of the eshot_points config have no embedding" in capsys.readouterr().err

    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), d / "dup.parquet")
    assert _run(files, released_tree, "audio.npy", "dup.parquet", "--id-column", "id")[0] == 2
    assert "ids listed more than once" in capsys.readouterr().err

    nan = files["points_emb"].copy()
    nan[3, 0] = np.nan
    np.save(d / "nan.npy", nan)
    assert _run(files, released_tree, "audio.npy", "nan.npy")[0] == 2
    assert "nan.npy: embeddings contain NaN or infinite values in 1 row(s): 3" in capsys.readouterr().err

    assert _run(files, released_tree, "nope.npy", "points.npy")[0] == 2
    assert "no such file" in capsys.readouterr().err


def test_module_entry_point(files, released_tree):
    out = files["dir"] / "cli-out"
    completed = subprocess.run(
        [sys.executable, "-m", "emm1_lib.tools.eshot_cli", "evaluate", "--audio-embeddings", str(files["dir"] / "audio.npy"),
         "--points-embeddings", str(files["dir"] / "points.npy"), "--data-dir", released_tree.eshot_dir,
         "--output-dir", str(out), "--no-plot"],
        capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "audio -> points" in completed.stdout and (out / "result.json").exists()


def test_bad_data_and_output_folders_exit_with_status_2(files, released_tree, tmp_path, capsys):
    npy = [str(files["dir"] / "audio.npy"), str(files["dir"] / "points.npy")]
    common = ["evaluate", "--audio-embeddings", npy[0], "--points-embeddings", npy[1], "--no-plot"]
    missing = str(tmp_path / "no-such-eshot")
    assert main(common + ["--data-dir", missing]) == 2
    err = capsys.readouterr().err
    assert missing in err and "does not exist" in err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(common + ["--data-dir", released_tree.eshot_dir, "--output-dir", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert str(blocker / "out") in err and "cannot write there" in err
