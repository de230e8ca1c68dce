"""Generate an E-MM1 tree: schema-faithful metadata CSVs of either generation plus small real media.

The layout keeps metadata and media apart, as the upstream download does:

    OUT/metadata/   e-mm1_100m/, e-mm1_1m/, eshot/ (released schema) or
                    encord_phase_1_dataset/, encord_phase_2_dataset/, eshot/ (seed draft)
    OUT/media/      the media root (`root_data_path`): {save_folder}/{modality}/{file_name},
                    released EShot media at eshot/{audio,points}/{file_name}

The pre-joined Parquet generation (`schema="hub"`, the official Hub copy) is the released tree joined:
`OUT/metadata/E-MM1-100M/data/nn_{01..16}.parquet` and `OUT/metadata/E-MM1-1M/data/{paired}_to_{annotated}.parquet`
(with `annotation_mapping.csv` in the repository root), the same rows as the released tree of the same seed;
EShot stays CSV/JSON, as released.

The seed draft's EShot media stay inside the metadata folder (`eshot/audio/`, `eshot/point-clouds/`),
named by id, as the draft describes. Columns are
built with numpy and written by pyarrow, so a full-size tree (6.7 M captions) takes seconds,
deterministic by seed. Media files are real (JPEG/PNG, WAV/FLAC/MP4-AAC, MP4 video, OpenShape
`.npy`, PLY) and can be skipped for metadata-only trees.
"""
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from emm1_lib.schema.layout import MODALITIES
from emm1_lib.schema.layout import NUM_NEIGHBOURS

SCHEMAS = ("released", "seed", "hub")
# Formats cycle over the rows of an infos table, so every decoder gets real files to read.
DEFAULT_FORMATS: Dict[str, Tuple[str, ...]] = {
    "image": (".jpg", ".png"),
    "audio": (".wav", ".flac", ".mp4"),
    "video": (".mp4",),
    "points": (".npy", ".ply"),
}
SOURCES = {
    "image": ("COCO", "Flickr30k", "Conceptual Captions", "ImageNet"),
    "audio": ("AudioCaps", "AudioSet", "VGGSound", "WavCaps"),
    "video": ("InternVid", "VidGen-1M", "VALOR", "VideoRefer"),
    "points": ("OpenShape",),
}
LICENSES = ("CC BY 4.0", "CC BY-SA 4.0", "CC BY-NC 4.0", "Flickr terms of use", "ODC-By 1.0")
SAVE_FOLDERS = {"phase1": ("e-mm1_100m_only", "shared"), "phase2": ("e-mm1_1m_only", "shared")}
PAIRS = (("audio", "points"), ("image", "points"), ("video", "points"), ("audio", "image"))
ANNOTATION_MAPPING = {1: "Good Match", 2: "Partial Match", 3: "Bad Match"}
ESHOT_CATEGORIES = ("bell", "bird", "car", "cat", "dog", "drum", "guitar", "helicopter", "piano", "train")
_WORDS = ("a", "dog", "red", "car", "piano", "playing", "loud", "small", "bird", "sings", "in", "the", "rain")


@dataclass
class SampleTree:
    """Where a generated tree lives.

    `root` is the media root (`root_data_path`, `OUT/media`); `metadata_dir` (`OUT/metadata`) holds
    the metadata folders (`phase1_dir`, `phase2_dir`, `eshot_dir`): the `data_dir` of the builders.
    """

    root: str
    schema: str
    phase1_dir: str
    phase2_dir: str
    eshot_dir: str
    num_captions: int
    dangling: int
    duplicate_groups: int
    media_files: List[str] = field(default_factory=list)
    metadata_dir: str = ""


def _write_csv(table: pa.Table, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pacsv.write_csv(table, path)


def _sparse_ids(rng: np.random.Generator, n: int, start: int = 1) -> np.ndarray:
    """`n` sorted unique ids with gaps (E-MM1 ids are sparse)."""
    return np.sort(rng.choice(np.arange(start, start + 2 * n + 8, dtype=np.int64), size=n, replace=False))


def _pick(rng: np.random.Generator, values: Sequence[str], n: int) -> pa.Array:
    return pa.array(np.asarray(values, dtype=object)[rng.integers(0, len(values), n)], pa.string())


def _file_names(ids: np.ndarray, formats: Sequence[str]) -> pa.Array:
    extensions = pa.array(np.asarray(formats, dtype=object)[np.arange(len(ids)) % len(formats)], pa.string())
    return pc.binary_join_element_wise(pc.cast(pa.array(ids), pa.string()), extensions, "")


def _captions(rng: np.random.Generator, n: int) -> pa.Array:
    words = [_pick(rng, _WORDS, n) for _ in range(5)]
    caption = pc.binary_join_element_wise(*words, " ")
    # Some captions carry a comma and quotes, so the CSV needs quoting like the real file.
    tail = _pick(rng, ("", ", \"quoted\"", ", then stops"), n)
    return pc.binary_join_element_wise(caption, tail, "")


def _infos_table(rng: np.random.Generator, modality: str, ids: np.ndarray, schema: str, phase: str, formats) -> pa.Table:
    n = len(ids)
    id_column = pa.array(ids, pa.int64())
    file_name = _file_names(ids, formats[modality])
    save_folder = _pick(rng, SAVE_FOLDERS[phase], n)
    if schema == "seed":
        return pa.table({f"encord_{modality}_id": id_column, "save_folder": save_folder, "file_name": file_name})
    columns = {
        f"encord_{modality}_id": id_column,
        "source_dataset": _pick(rng, SOURCES[modality], n),
        "dataset_license": _pick(rng, LICENSES, n),
    }
    if modality in ("audio", "video"):
        start = rng.integers(0, 300, n).astype(np.float64)
        columns.update(
            {"youtube_id": pc.binary_join_element_wise("yt", pc.cast(id_column, pa.string()), "_"),
             "start_time": start, "end_time": start + 10.0}
        )
    else:
        columns["file_id"] = pc.binary_join_element_wise(pc.cast(id_column, pa.string()), "src", "_")
    columns.update({"file_name": file_name, "save_folder": save_folder})
    return pa.table(columns)


def _write_media_for(root: str, table: pa.Table, modality: str, seed: int, written: List[str]) -> None:
    from emm1_lib.testing.sample_media import write_media

    folders, names = table["save_folder"].to_pylist(), table["file_name"].to_pylist()
    for i, (folder, name) in enumerate(zip(folders, names)):
        path = os.path.join(root, folder, modality, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_media(path, seed=seed + i, kind=modality)
        written.append(path)


def _with_dangling(rng: np.random.Generator, values: np.ndarray, count: int, known_max: int) -> np.ndarray:
    """Replace `count` entries by ids that no infos row has (the error paths need them)."""
    values = values.copy()
    if count:
        rows = rng.choice(len(values), size=min(count, len(values)), replace=False)
        values[rows] = known_max + 1000 + np.arange(len(rows))
    return values


def _write_phase1(rng, out: str, schema: str, text: pa.Table, infos: Dict[str, pa.Table], num_neighbours: int,
                  dangling: int, duplicate_groups: int) -> None:
    n = text.num_rows
    for k in range(1, num_neighbours + 1):
        columns = {"encord_text_id": text["encord_text_id"]}
        for m in ("video", "audio", "image", "points"):  # the released column order
            known = infos[m][f"encord_{m}_id"].to_numpy()
            chosen = known[rng.integers(0, len(known), n)]
            columns[f"encord_{m}_id"] = pa.array(_with_dangling(rng, chosen, dangling, int(known.max())), pa.int64())
        if schema == "released":
            columns["nn_index"] = pa.array(np.full(n, k, dtype=np.int64))
        groups = pa.table(columns)
        if duplicate_groups:
            groups = pa.concat_tables([groups, groups.slice(0, duplicate_groups)])
        _write_csv(groups, os.path.join(out, f"nn_{k}", "data_groups.csv"))


def _write_triplets(rng, out: str, schema: str, text: pa.Table, infos: Dict[str, pa.Table], num_triplets: int,
                    dangling: int, duplicate_groups: int) -> None:
    directions = [pair for a, b in PAIRS for pair in ((a, b), (b, a))]
    choice = rng.integers(0, len(directions), num_triplets)
    paired = np.array([directions[c][0] for c in choice], dtype=object)
    annotated = np.array([directions[c][1] for c in choice], dtype=object)
    ids = {}
    for role, modality_of_row in (("paired", paired), ("annotated", annotated)):
        role_ids = np.zeros(num_triplets, dtype=np.int64)
        for m in MODALITIES:
            rows = modality_of_row == m
            known = infos[m][f"encord_{m}_id"].to_numpy()
            role_ids[rows] = known[rng.integers(0, len(known), int(rows.sum()))]
        ids[role] = _with_dangling(rng, role_ids, dangling, 10**7)
    text_ids = text["encord_text_id"].to_numpy()[rng.integers(0, text.num_rows, num_triplets)]
    annotation = rng.integers(1, 4, num_triplets)
    if schema == "released":
        triplets = pa.table({
            "encord_text_id": text_ids, "paired_modality": pa.array(paired, pa.string()),
            "annotated_modality": pa.array(annotated, pa.string()), "encord_paired_id": ids["paired"],
            "encord_annotated_id": ids["annotated"], "annotation": annotation,
        })
    else:
        columns = {"encord_text_id": text_ids, "modality_1": pa.array(paired, pa.string()),
                   "modality_2": pa.array(annotated, pa.string()), "annotated_modality": pa.array(annotated, pa.string())}
        for m in MODALITIES:
            value = np.where(paired == m, ids["paired"], np.where(annotated == m, ids["annotated"], -1))
            columns[f"encord_{m}_id"] = pa.array(value, pa.int64(), mask=value < 0)
        columns["annotation"] = annotation
        triplets = pa.table(columns)
    if duplicate_groups:
        triplets = pa.concat_tables([triplets, triplets.slice(0, duplicate_groups)])
    _write_csv(triplets, os.path.join(out, "triplets.csv"))
    mapping = pa.table({"annotation": list(ANNOTATION_MAPPING), "label": list(ANNOTATION_MAPPING.values())})
    _write_csv(mapping, os.path.join(out, "annotation_mapping.csv"))


def _write_eshot(rng, metadata_dir: str, media_root: str, schema: str, num_categories: int, per_category: int,
                 media: bool, seed: int, written: List[str], formats) -> str:
    out = os.path.join(metadata_dir, "eshot")
    categories = list(ESHOT_CATEGORIES[:num_categories])
    n = num_categories * per_category
    audio_ids = np.arange(n, dtype=np.int64)
    point_ids = np.arange(100, 100 + n, dtype=np.int64)
    # Points have one category fewer (the last): a category with queries but no class vector.
    point_categories = categories[:-1] if num_categories > 1 else categories
    to_audio = {c: audio_ids[i * per_category:(i + 1) * per_category].tolist() for i, c in enumerate(categories)}
    to_points = {c: point_ids[i * per_category:(i + 1) * per_category].tolist() for i, c in enumerate(point_categories)}
    point_ids = np.array([i for ids in to_points.values() for i in ids], dtype=np.int64)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "category_to_audio_ids.json"), "w") as f:
        json.dump(to_audio, f, indent=1)
    with open(os.path.join(out, "category_to_point_ids.json"), "w") as f:
        json.dump(to_points, f, indent=1)
    start = rng.integers(0, 300, n).astype(np.float64)
    audio = {"eshot_audio_id": audio_ids,
             "youtube_id": pc.binary_join_element_wise("yt", pc.cast(pa.array(audio_ids), pa.string()), "_"),
             "start_time": start, "end_time": start + 10.0}
    points = {"eshot_point_id": point_ids}
    audio_names = _file_names(audio_ids, formats["audio"])
    point_names = _file_names(point_ids, formats["points"])
    if schema == "released":
        audio.update({"file_name": audio_names, "save_folder": pa.array(["eshot"] * n)})
        points.update({"file_id": pc.binary_join_element_wise("objaverse", pc.cast(pa.array(point_ids), pa.string()), "_"),
                       "file_name": point_names, "save_folder": pa.array(["eshot"] * len(point_ids))})
        # the released example's ROOT/eshot/{audio,points}/file_name, ROOT being the media root
        audio_dir, points_dir = os.path.join(media_root, "eshot", "audio"), os.path.join(media_root, "eshot", "points")
    else:
        points["object_id"] = pc.binary_join_element_wise("objaverse", pc.cast(pa.array(point_ids), pa.string()), "_")
        audio_dir, points_dir = os.path.join(out, "audio"), os.path.join(out, "point-clouds")
    _write_csv(pa.table(audio), os.path.join(out, "eshot_audio_info.csv"))
    _write_csv(pa.table(points), os.path.join(out, "eshot_points_info.csv"))
    if media:
        from emm1_lib.testing.sample_media import write_media

        for kind, folder, names in (("audio", audio_dir, audio_names), ("points", points_dir, point_names)):
            os.makedirs(folder, exist_ok=True)
            for i, name in enumerate(names.to_pylist()):
                path = os.path.join(folder, name)
                write_media(path, seed=seed + 7919 + i, kind=kind)
                written.append(path)
    return out


def _hub_tree(released: SampleTree) -> SampleTree:
    """The pre-joined Parquet form of a released tree, in place of its CSV split folders (EShot stays)."""
    from emm1_lib.schema.prejoined import write_prejoined_phase1
    from emm1_lib.schema.prejoined import write_prejoined_phase2
    from emm1_lib.schema.roles import HUB_DATA_FOLDER
    from emm1_lib.schema.roles import HUB_PHASE1_FOLDERS
    from emm1_lib.schema.roles import HUB_PHASE2_FOLDERS

    phase1 = os.path.join(released.metadata_dir, HUB_PHASE1_FOLDERS[0])
    phase2 = os.path.join(released.metadata_dir, HUB_PHASE2_FOLDERS[0])
    nn_indices = sorted(int(name[3:]) for name in os.listdir(released.phase1_dir) if name.startswith("nn_"))
    write_prejoined_phase1(released.phase1_dir, os.path.join(phase1, HUB_DATA_FOLDER), nn_indices)
    write_prejoined_phase2(released.phase2_dir, os.path.join(phase2, HUB_DATA_FOLDER))
    shutil.rmtree(released.phase1_dir)
    shutil.rmtree(released.phase2_dir)
    released.schema, released.phase1_dir, released.phase2_dir = "hub", phase1, phase2
    return released


def generate_sample_tree(
    out_dir: str,
    schema: str = "released",
    num_captions: int = 24,
    num_media: int = 6,
    num_neighbours: int = NUM_NEIGHBOURS,
    num_triplets: int = 60,
    eshot_categories: int = 6,
    eshot_per_category: int = 2,
    seed: int = 0,
    media: bool = True,
    dangling: int = 0,
    duplicate_groups: int = 0,
    formats: Optional[Dict[str, Tuple[str, ...]]] = None,
) -> SampleTree:
    """Write an E-MM1 tree under `out_dir` and return where its parts are.

    Metadata go to `out_dir/metadata/`, media to the media root `out_dir/media/` (see the module docstring).

    Args:
        schema: "released" (`e-mm1_100m/`, `e-mm1_1m/`, provenance columns, `paired_modality`…),
            "seed" (`encord_phase_*_dataset/`, minimal infos, long-format triplets, no `nn_index`) or
            "hub" (the released tree's rows as the pre-joined Parquet of the Hub copy, see the module docstring).
        num_captions: rows of `text.csv` and of each `nn_k/data_groups.csv` (before duplicates).
        num_media: infos rows per modality and phase (each with a media file when `media`).
        num_neighbours: how many `nn_k` folders to write (16 in the real dataset).
        num_triplets: rows of `triplets.csv`.
        eshot_categories, eshot_per_category: EShot size (the points side lacks the last category).
        seed: everything is deterministic given the seed.
        media: write the media files (False: metadata only, for large trees).
        dangling: per grouping file and id column, how many ids to point at no infos row.
        duplicate_groups: how many identical duplicate rows to append to each grouping file.
        formats: per-modality file extensions to cycle through (default `DEFAULT_FORMATS`).
    """
    if schema not in SCHEMAS:
        raise ValueError(f"schema={schema!r}; choose from {SCHEMAS}.")
    if schema == "hub":
        return _hub_tree(generate_sample_tree(
            out_dir, "released", num_captions, num_media, num_neighbours, num_triplets, eshot_categories,
            eshot_per_category, seed, media, dangling, duplicate_groups, formats))
    rng = np.random.default_rng(seed)
    formats = {**DEFAULT_FORMATS, **(formats or {})}
    metadata_dir = os.path.join(os.path.abspath(out_dir), "metadata")
    root = os.path.join(os.path.abspath(out_dir), "media")
    names = {"released": ("e-mm1_100m", "e-mm1_1m"), "seed": ("encord_phase_1_dataset", "encord_phase_2_dataset")}[schema]
    phase_dirs = [os.path.join(metadata_dir, name) for name in names]
    written: List[str] = []
    for phase, phase_dir, id_start in (("phase1", phase_dirs[0], 1), ("phase2", phase_dirs[1], 10**6)):
        n_text = num_captions if phase == "phase1" else max(4, num_captions // 2)
        text_ids = _sparse_ids(rng, n_text, start=id_start)
        text = pa.table({"encord_text_id": text_ids, "caption": _captions(rng, n_text)})
        _write_csv(text, os.path.join(phase_dir, "infos", "text.csv"))
        infos = {}
        for m_index, m in enumerate(MODALITIES):
            ids = _sparse_ids(rng, num_media, start=id_start + 10_000 * (m_index + 1))
            infos[m] = _infos_table(rng, m, ids, schema, phase, formats)
            _write_csv(infos[m], os.path.join(phase_dir, "infos", f"{m}.csv"))
            if media:
                _write_media_for(root, infos[m], m, seed * 1000 + m_index * 100, written)
        if phase == "phase1":
            _write_phase1(rng, phase_dir, schema, text, infos, num_neighbours, dangling, duplicate_groups)
        else:
            _write_triplets(rng, phase_dir, schema, text, infos, num_triplets, dangling, duplicate_groups)
    eshot_dir = _write_eshot(rng, metadata_dir, root, schema, eshot_categories, eshot_per_category, media, seed,
                             written, formats)
    return SampleTree(root, schema, phase_dirs[0], phase_dirs[1], eshot_dir, num_captions, dangling,
                      duplicate_groups, written, metadata_dir)
