"""EShot from nothing to a score: `emm1 download --configs eshot_audio eshot_points` against the stand-ins (YouTube
sections cut by yt-dlp + FFmpeg from MP4s behind the `--mirror` template, point clouds from a streamed tar.gz) ->
`eshot embed` (the builders decode every clip and point cloud; the baseline extractor embeds them) -> `eshot
evaluate` -> result.json and the PNG charts. A changed media file changes the score; an undecodable one stops
`eshot embed`, naming the file.
"""
import json
import os
import pathlib
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from emm1_lib.schema.eshot_files import ID_COLUMNS
from emm1_lib.tools import cli as emm1_cli
from emm1_lib.tools import eshot_cli
from emm1_lib.tools.eshot_baseline import EMBEDDING_DIM, baseline_embed, log_mel, points_features
from http_servers import MediaServer, Route
from test_download import _tar_gz

pytest.importorskip("yt_dlp", reason="yt-dlp is not installed: pip install 'emm1[download]'")
pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg is not installed: pip install 'emm1[download]'")
av = pytest.importorskip("av")

RATE = 16000


def _tone_mp4(path: pathlib.Path, frequency: float, seconds: float = 1.0) -> bytes:
    """An AAC MP4 of a `frequency` Hz tone (what the stand-in YouTube serves for one video)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=RATE)
        stream.layout = "mono"
        t = np.arange(int(seconds * RATE)) / RATE
        wave = (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(wave[None, :], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, 0, Fraction(1, RATE)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def _serve_eshot(tree, server, tmp_path):
    """Every EShot clip becomes the first 0.5 s of its own tone video, every point cloud a member of one tar.gz;
    returns the `--mirror` arguments."""
    path = os.path.join(tree.eshot_dir, "eshot_audio_info.csv")
    table = pacsv.read_csv(path)
    rows = table.to_pylist()
    for row in rows:
        row["start_time"], row["end_time"] = 0.0, 0.5
        frequency = 220.0 * 2 ** (row["eshot_audio_id"] / 4)  # a different pitch per clip
        server.add(f"/yt/{row['youtube_id']}.mp4", Route(_tone_mp4(tmp_path / "tone.mp4", frequency), "video/mp4"))
    schema = table.schema
    for column in ("start_time", "end_time"):
        schema = schema.set(schema.get_field_index(column), pa.field(column, pa.float64()))
    pacsv.write_csv(pa.Table.from_pylist(rows, schema=schema), path)
    members = [(f"Objaverse/000-000/{row['file_id']}.npy",
                pathlib.Path(tree.root, row["save_folder"], "points", row["file_name"]).read_bytes())
               for row in pacsv.read_csv(os.path.join(tree.eshot_dir, "eshot_points_info.csv")).to_pylist()]
    tar = server.add("/Objaverse/000-000.tar.gz", Route(_tar_gz(members), "application/gzip"))
    return ["--mirror", f"EShot audio={server.url('/yt/{youtube_id}.mp4')}", "--mirror", f"EShot points={tar}"]


def _embed_and_evaluate(tree, root, work: pathlib.Path, name: str, capsys) -> dict:
    embeddings, results = work / f"{name}-embeddings", work / f"{name}-results"
    assert eshot_cli.main(["embed", "--data-dir", tree.metadata_dir, "--root-data-path", str(root), "--output-dir",
                           str(embeddings), "--cache-dir", str(work / f"{name}-cache")]) == 0
    assert "eshot evaluate --audio-embeddings" in capsys.readouterr().out
    assert eshot_cli.main(["evaluate", "--audio-embeddings", str(embeddings / "audio.npy"), "--points-embeddings",
                           str(embeddings / "points.npy"), "--data-dir", tree.metadata_dir,
                           "--output-dir", str(results)]) == 0
    assert "audio -> points" in capsys.readouterr().out
    for direction in ("audio_to_points", "points_to_audio"):
        assert (results / f"per_category_{direction}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return json.loads((results / "result.json").read_text())["result"]


def test_download_embed_evaluate_and_a_changed_file_changes_the_score(tree, tmp_path, capsys):
    with MediaServer() as server:
        mirrors = _serve_eshot(tree, server, tmp_path)
        root = tmp_path / "root"
        code = emm1_cli.main(["download", tree.metadata_dir, "--root-data-path", str(root), "--configs",
                              "eshot_audio", "eshot_points", "--no-progress", "--timeout", "30", *mirrors])
        out = capsys.readouterr()
        assert code == 0, out.out + out.err
    downloaded = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert len(downloaded) == 12 + 10 and {p.split("/")[1] for p in downloaded} == {"audio", "points"}

    before = _embed_and_evaluate(tree, root, tmp_path, "before", capsys)
    for query, target in (("audio", "points"), ("points", "audio")):
        assert before[f"{query}_to_{target}_num_queries"] == {"audio": 12, "points": 10}[query]
    audio = np.load(tmp_path / "before-embeddings" / "audio.npy")
    points = np.load(tmp_path / "before-embeddings" / "points.npy")
    assert audio.shape == (12, EMBEDDING_DIM) and points.shape == (10, EMBEDDING_DIM)
    assert len({row.tobytes() for row in audio}) == 12  # every clip's own media, not a constant

    # a clip replaced by white noise (a corrupted recording): it still decodes, its embedding and the score change
    import soundfile

    victim = root / "eshot" / "audio" / "0.wav"
    soundfile.write(str(victim), 0.3 * np.random.default_rng(0).normal(size=RATE // 2), RATE)
    after = _embed_and_evaluate(tree, root, tmp_path, "after", capsys)
    changed = np.load(tmp_path / "after-embeddings" / "audio.npy")
    assert not np.allclose(changed[0], audio[0]) and np.allclose(changed[1:], audio[1:], atol=1e-6)
    assert np.array_equal(np.load(tmp_path / "after-embeddings" / "points.npy"), points)
    scores = [key for key in before if key.endswith(("_top1", "_top5"))]
    assert [before[k] for k in scores] != [after[k] for k in scores]

    victim = root / "eshot" / "points" / "100.npy"
    victim.write_bytes(b"\x93NUMPY garbage")  # a file that does not decode: named, exit status 2
    assert eshot_cli.main(["embed", "--data-dir", tree.metadata_dir, "--root-data-path", str(root), "--output-dir",
                           str(tmp_path / "broken"), "--cache-dir", str(tmp_path / "broken-cache")]) == 2
    assert "100.npy" in capsys.readouterr().err


def test_baseline_reads_the_media_and_a_user_embedder_plugs_in(tmp_path, monkeypatch, capsys, released_tree):
    """The log-mel statistics follow the pitch of a tone; the shape statistics tell a sphere from a line; any
    `module:function` replaces the baseline, and a wrong shape is refused naming the embedder."""
    t = np.arange(RATE) / RATE
    low, high = (log_mel(np.sin(2 * np.pi * f * t), RATE).mean(axis=0).argmax() for f in (300.0, 3000.0))
    assert low < high
    rng = np.random.default_rng(1)
    sphere = rng.normal(size=(500, 3))
    line = np.outer(np.linspace(-1, 1, 500), [1.0, 0.0, 0.0])
    sphere_eigen, line_eigen = points_features({"xyz": sphere})[-6:-3], points_features({"xyz": line})[-6:-3]
    assert sphere_eigen.min() > 0.7 * sphere_eigen.max() and line_eigen[0] > 0 and line_eigen[1:].max() < 1e-9
    silent = baseline_embed({"audio": [{"array": np.zeros(400), "sampling_rate": RATE}]})
    assert silent.shape == (1, EMBEDDING_DIM) and np.isfinite(silent).all() and np.linalg.norm(silent) > 0

    (tmp_path / "my_model.py").write_text(
        "import numpy as np\n"
        "def embed(batch):\n"
        "    if 'points' in batch:\n"
        "        assert {len(p['xyz']) for p in batch['points']} == {64}  # --num-points reached the decoder\n"
        "    else:\n"
        "        assert {a['sampling_rate'] for a in batch['audio']} == {8000}\n"
        "    return np.ones((len(batch['audio'] if 'audio' in batch else batch['points']), 8))\n"
        "def wrong(batch):\n"
        "    return np.ones((1, 8))\n")
    monkeypatch.chdir(tmp_path)
    common = ["embed", "--data-dir", released_tree.metadata_dir, "--root-data-path", released_tree.root,
              "--cache-dir", str(tmp_path / "cache")]
    assert eshot_cli.main(common + ["--embedder", "my_model:embed", "--output-dir", "mine", "--batch-size", "5",
                                    "--num-points", "64", "--sampling-rate", "8000"]) == 0
    ids = {m: np.load(tmp_path / "mine" / f"{m}.npy").shape for m in ID_COLUMNS}
    assert ids == {"audio": (12, 8), "points": (10, 8)}
    assert eshot_cli.main(common + ["--embedder", "my_model:wrong", "--output-dir", "bad"]) == 2
    assert "my_model:wrong returned shape (1, 8)" in capsys.readouterr().err
    assert eshot_cli.main(common + ["--embedder", "no_such_module:embed"]) == 2
    assert "cannot import 'no_such_module'" in capsys.readouterr().err
