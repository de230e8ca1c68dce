"""The benchmark's metadata tree at the real files' sizes (issue 18): each E-MM1:100M CSV within 10 % of the
release's size, with the real kinds of values (URL `file_id`s for Conceptual Captions images, 32-hex-digit
OpenShape stems, captions of ~150 bytes with a long tail). Imported by `phase1.py` only when it generates a tree.
"""
import os

import numpy as np

from phase1 import _CAPTION_TAILS, _CAPTION_WORDS, FULL_CAPTIONS, MODALITIES, NUM_NEIGHBOURS

REAL_BYTES = {"text": 1_250_000_000, "image": 613_000_000, "video": 458_000_000, "audio": 238_000_000,
              "points": 59_000_000}
REAL_TEXT_ID_MAX = 8_134_020  # text ids are sparse, up to about this (UPSTREAM.md)
_CHUNK_ROWS = 1_000_000
_HOSTS = ("http://www.example-news.co.uk/media/images/", "https://i.pinimg.com/736x/",
          "http://l7.alamy.com/zooms/", "https://media.gettyimages.com/photos/",
          "http://photos.example-travel-blog.com/wp-content/uploads/2016/07/")
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def _pool_slices(rng, pool: np.ndarray, lengths: np.ndarray):
    """Strings cut from a byte pool at random offsets with the given lengths (vectorised: no per-row Python)."""
    import pyarrow as pa

    lengths = lengths.astype(np.int64)
    starts = rng.integers(0, len(pool) - int(lengths.max()) - 1, len(lengths))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    data = pool[index]
    return pa.StringArray.from_buffers(len(lengths), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data.tobytes()))


def _caption_pool(rng) -> np.ndarray:
    from emm1_lib.testing.sample import _pick

    words = _pick(rng, _CAPTION_WORDS + _CAPTION_TAILS[1:], 400_000).to_pylist()
    return np.frombuffer(" ".join(words).encode(), np.uint8)


def _real_captions(rng, pool: np.ndarray, n: int):
    """Captions of 20-600 bytes, mean ~150 (a long right tail, as free text has), some with commas and quotes."""
    lengths = np.clip(rng.lognormal(np.log(135), 0.45, n), 20, 600).astype(np.int64)
    return _pool_slices(rng, pool, lengths)


def _url_file_ids(rng, ids: np.ndarray):
    """Conceptual Captions' file_ids are image URLs: host, hex path, .jpg (mean ~110 bytes)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from emm1_lib.testing.sample import _pick

    n = len(ids)
    hexes = _pool_slices(rng, _HEX[rng.integers(0, 16, 1 << 20)], rng.integers(24, 90, n))
    return pc.binary_join_element_wise(_pick(rng, _HOSTS, n), hexes, pc.cast(pa.array(ids), pa.string()), ".jpg", "")


def _real_infos_chunk(rng, modality: str, ids: np.ndarray):
    """One chunk of a released-schema `infos/{modality}.csv` with the real files' kinds of values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from emm1_lib.testing.sample import LICENSES, SAVE_FOLDERS, SOURCES, _pick

    n = len(ids)
    id_column = pa.array(ids, pa.int64())
    id_text = pc.cast(id_column, pa.string())
    sources = _pick(rng, SOURCES[modality], n)
    columns = {f"encord_{modality}_id": id_column, "source_dataset": sources, "dataset_license": _pick(rng, LICENSES, n)}
    if modality in ("audio", "video"):
        start = rng.integers(0, 300, n).astype(np.int64)
        columns.update({"youtube_id": _pool_slices(rng, _HEX[rng.integers(0, 16, 1 << 20)], np.full(n, 11)),
                        "start_time": start, "end_time": start + 10})
        extension = ".mp4" if modality == "video" else ".wav"
        file_name = pc.binary_join_element_wise(id_text, pa.scalar(extension), "")
    elif modality == "image":
        url = pa.array(rng.random(n) < 0.8)  # most images are Conceptual Captions', whose file_ids are URLs
        columns["source_dataset"] = pc.if_else(url, pa.scalar("Conceptual Captions"), sources)
        columns["file_id"] = pc.if_else(url, _url_file_ids(rng, ids), id_text)
        file_name = pc.binary_join_element_wise(id_text, pa.scalar(".jpg"), "")
    else:  # OpenShape: the file stem is a 32-hex-digit object id
        stem = _pool_slices(rng, _HEX[rng.integers(0, 16, 1 << 20)], np.full(n, 32))
        columns["file_id"] = stem
        file_name = pc.binary_join_element_wise(stem, pa.scalar(".npy"), "")
    columns.update({"file_name": file_name, "save_folder": _pick(rng, SAVE_FOLDERS["phase1"], n)})
    return pa.table(columns)


def _csv_bytes_per_row(table) -> float:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False))
    return sink.getvalue().size / table.num_rows


def _write_chunked(path: str, make_chunk, total: int) -> None:
    """Write `make_chunk(start, stop)` tables to one CSV (bounded memory), atomically."""
    import pyarrow.csv as pacsv

    tmp = path + ".tmp"
    writer = None
    try:
        for start in range(0, total, _CHUNK_ROWS):
            table = make_chunk(start, min(total, start + _CHUNK_ROWS))
            if writer is None:
                writer = pacsv.CSVWriter(tmp, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, path)


def _sparse_sorted_ids(rng, n: int, id_max: int, start: int = 1) -> np.ndarray:
    return np.sort(rng.choice(np.arange(start, max(id_max, start + n) + 1, dtype=np.int64), size=n, replace=False))


def generate_real_phase1(phase1_dir: str, scale: float, seed: int = 0) -> dict:
    """E-MM1:100M metadata at the real files' sizes (times `scale`): each infos file's row count is set so that
    the file reaches its real size given the bytes a generated row takes; grouping files hold 6,706,765 rows."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    infos_dir = os.path.join(phase1_dir, "infos")
    os.makedirs(infos_dir, exist_ok=True)
    rows = {}
    pool = _caption_pool(rng)
    sample = pa.table({"encord_text_id": pa.array(np.full(100_000, REAL_TEXT_ID_MAX // 2)),
                       "caption": _real_captions(rng, pool, 100_000)})
    rows["text"] = max(100, int(REAL_BYTES["text"] * scale / _csv_bytes_per_row(sample)))
    text_ids = _sparse_sorted_ids(rng, rows["text"], int(REAL_TEXT_ID_MAX * scale))
    _write_chunked(os.path.join(infos_dir, "text.csv"), lambda a, b: pa.table(
        {"encord_text_id": text_ids[a:b], "caption": _real_captions(rng, pool, b - a)}), rows["text"])
    media_ids = {}
    for m in MODALITIES:
        probe = _real_infos_chunk(rng, m, np.full(100_000, 1_500_000, dtype=np.int64))
        rows[m] = max(50, int(REAL_BYTES[m] * scale / _csv_bytes_per_row(probe)))
        ids = _sparse_sorted_ids(rng, rows[m], int(rows[m] * 1.25))
        media_ids[m] = ids
        _write_chunked(os.path.join(infos_dir, f"{m}.csv"), lambda a, b, m=m, ids=ids: _real_infos_chunk(rng, m, ids[a:b]),
                       rows[m])
    rows["groups"] = min(rows["text"], max(100, int(FULL_CAPTIONS * scale)))
    captioned = np.sort(rng.choice(text_ids, size=rows["groups"], replace=False))
    for k in range(1, NUM_NEIGHBOURS + 1):
        folder = os.path.join(phase1_dir, f"nn_{k}")
        os.makedirs(folder, exist_ok=True)

        def groups(a, b, k=k):
            columns = {"encord_text_id": captioned[a:b]}
            for m in ("video", "audio", "image", "points"):  # the released column order
                columns[f"encord_{m}_id"] = media_ids[m][rng.integers(0, len(media_ids[m]), b - a)]
            columns["nn_index"] = np.full(b - a, k, dtype=np.int64)
            return pa.table(columns)

        _write_chunked(os.path.join(folder, "data_groups.csv"), groups, rows["groups"])
    return rows
