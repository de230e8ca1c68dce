"""`emm1 demo`: generate a sample tree, prepare every config of the builders, print a summary."""
import os
import shutil
import tempfile
from typing import Any, Dict, List, Tuple

import numpy as np

from emm1_lib.builders.emm1 import EMM1
from emm1_lib.builders.eshot import EShot
from emm1_lib.testing.sample import generate_sample_tree

_SHOWN_COLUMNS = {
    # phase 1 keeps its paths in the media columns (no `{m}_file_path` by default): their paths are shown
    "phase1": ("encord_text_id", "caption", "nn_index", "image", "audio", "points_dataset_license"),
    "phase2": ("caption", "paired_modality", "annotated_modality", "paired_file_path", "annotation"),
    "eshot": ("category", "audio_file_path", "points_file_path", "youtube_id", "file_id"),
}
_MEDIA = ("image", "audio", "video", "points")

# The marker's content: a tree of another layout (an older demo's) is generated again.
_SAMPLE_LAYOUT = "metadata/ + media/"


def ensure_sample_tree(cache_dir: str, schema: str) -> str:
    """The sample tree's folder under `cache_dir` (metadata in `metadata/`, media in `media/`), generated once.

    Generated atomically: a half-written tree is never reused.
    """
    out = os.path.join(cache_dir, f"sample-{schema}")
    marker = os.path.join(out, ".complete")
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as f:
            if f.read() == _SAMPLE_LAYOUT:
                return out
    os.makedirs(cache_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".sample-{schema}-", dir=cache_dir)
    generate_sample_tree(staging, schema=schema)
    with open(os.path.join(staging, ".complete"), "w", encoding="utf-8") as f:
        f.write(_SAMPLE_LAYOUT)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    return out


def describe(value: Any) -> str:
    """A one-line description of a decoded media value (or of a plain value)."""
    if value is None:
        return "None"
    if hasattr(value, "size") and hasattr(value, "mode"):  # PIL image
        return f"image {value.size[0]}x{value.size[1]} {value.mode}"
    if isinstance(value, dict) and "array" in value and "sampling_rate" in value:
        array = np.asarray(value["array"])
        return f"audio {array.shape} float @ {value['sampling_rate']} Hz"
    if isinstance(value, dict) and "xyz" in value:
        rgb = value.get("rgb")
        return f"points xyz {np.asarray(value['xyz']).shape}" + ("" if rgb is None else f", rgb {np.asarray(rgb).shape}")
    if all(hasattr(value, a) for a in ("num_frames", "fps", "duration")):  # lazy video reader
        return f"video {value.num_frames} frames @ {value.fps:.1f} fps, {value.duration:.2f} s"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _builders() -> List[Tuple[str, Any, str]]:
    """(module, builder class, config name) of every config of both builders."""
    return [
        (module_name, builder_cls, config.name)
        for module_name, builder_cls in (("emm1", EMM1), ("eshot", EShot))
        for config in builder_cls.BUILDER_CONFIGS
    ]


def load_dataset_call(module_name: str, config_name: str, split: str, data_dir: str, root_data_path: str,
                      cache_dir: str) -> str:
    """The `datasets.load_dataset(...)` line that loads a config of the sample (after `import {module_name}`)."""
    return (f"ds = datasets.load_dataset({module_name!r}, {config_name!r}, data_dir={data_dir!r}, "
            f"root_data_path={root_data_path!r}, cache_dir={cache_dir!r}, split={split!r})")


def _print_rows(name: str, dataset, rows: int, data_root: str) -> None:
    kind = "eshot" if name.startswith("eshot") else name.split("_")[0]
    columns = [c for c in _SHOWN_COLUMNS[kind] if c in dataset.column_names]
    heads = [f"{c}.path" if c in _MEDIA else c for c in columns]
    print(f"\n{name}: first {min(rows, len(dataset))} rows ({', '.join(heads)}; paths relative to {data_root})")
    # Arrow rows: media columns as stored (their paths), not decoded
    shown = dataset.select_columns(columns).select(range(min(rows, len(dataset)))).with_format("arrow")[:]
    for row in shown.to_pylist():
        values = []
        for column in columns:
            value = row[column]
            feature = dataset.features[column]
            if isinstance(value, dict) and "path" in value:  # a media column
                value = value["path"]
            if hasattr(feature, "int2str") and value is not None:  # ClassLabel: show the name
                value = feature.int2str(value)
            elif isinstance(value, str) and value.startswith(data_root):
                value = os.path.relpath(value, data_root)
            values.append(describe(value))
        print("  " + " | ".join(values))


def _print_media(name: str, dataset) -> None:
    media = [c for c in _MEDIA if c in dataset.column_names]
    if not media or not len(dataset):
        return
    row = dataset[0]
    print(f"\n{name}: decoded media of row 0")
    for column in media:
        print(f"  {column:<7} {describe(row[column])}")


def _print_stand_in_eshot_score(audio, points) -> None:
    """EShot accuracy of STAND-IN embeddings (not a model: chance level), to show the pipeline end to end."""
    from emm1_lib.evaluation.eshot_protocol import eshot_scores
    from emm1_lib.tools.stand_in_embeddings import embed_audio
    from emm1_lib.tools.stand_in_embeddings import embed_points

    embeddings = [embed_audio(row) for row in audio] + [embed_points(row) for row in points]
    scores = eshot_scores(
        np.stack(embeddings),
        labels=list(audio["category"]) + list(points["category"]),
        modalities=["audio"] * len(audio) + ["points"] * len(points),
        categories=audio.features["category"].names,
    )
    print("\nEShot with STAND-IN embeddings (not a model; chance level expected):")
    for direction in ("audio_to_points", "points_to_audio"):
        print(f"  {direction:<16} top1 {scores[direction + '_top1']:.3f}  top5 {scores[direction + '_top5']:.3f}  "
              f"({scores[direction + '_num_queries']} queries, missing class vectors: "
              f"{scores[direction + '_missing_class_vectors'] or 'none'})")


def run_demo(cache_dir: str, schema: str = "released", rows: int = 3) -> int:
    """Generate (once) and prepare every config; print rows per config, examples, decoded media, and the
    `load_dataset(...)` calls that load the sample."""
    data_root = ensure_sample_tree(cache_dir, schema)
    metadata_dir, media_root = os.path.join(data_root, "metadata"), os.path.join(data_root, "media")
    print(f"sample E-MM1 tree ({schema} schema): {data_root}")
    print(f"  metadata (data_dir):        {metadata_dir}")
    print(f"  media (root_data_path):     {media_root}")
    hf_cache = os.path.join(cache_dir, "datasets")
    prepared: Dict[str, Any] = {}
    for module_name, builder_cls, config_name in _builders():
        builder = builder_cls(config_name=config_name, data_dir=metadata_dir, root_data_path=media_root,
                              cache_dir=hf_cache)
        builder.download_and_prepare()
        prepared[config_name] = builder.as_dataset(split=list(builder.info.splits)[0])
    print(f"\n{'config':<18} {'rows':>6}  columns")
    for name, dataset in prepared.items():
        print(f"{name:<18} {len(dataset):>6}  {len(dataset.column_names)}")
    for name in ("phase1_nn1", "phase2_triplets", "eshot_audio", "eshot_points"):
        if name in prepared:
            _print_rows(name, prepared[name], rows, data_root)
    for name in ("phase1_nn1", "eshot_points"):
        if name in prepared:
            _print_media(name, prepared[name])
    if "eshot_audio" in prepared and "eshot_points" in prepared:
        _print_stand_in_eshot_score(prepared["eshot_audio"], prepared["eshot_points"])
    print("\nLoad the sample yourself (Python; `import emm1` / `import eshot` registers the names with datasets):")
    print("    import datasets")
    for module_name, config_name, split in (("emm1", "phase1_nn1", "train"), ("eshot", "eshot_audio", "test")):
        print(f"    import {module_name}")
        print("    " + load_dataset_call(module_name, config_name, split, metadata_dir, media_root, hf_cache))
    return 0
