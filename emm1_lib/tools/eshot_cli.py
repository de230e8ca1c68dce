"""`eshot embed` / `eshot evaluate`: embed the EShot media, score embedding files on the EShot benchmark.

    eshot embed --data-dir /data/eshot --root-data-path /data/media --output-dir emb/ [--embedder my_model:embed]

`eshot embed` builds the `eshot_audio` and `eshot_points` configs (every clip and point cloud decoded by the
builders), runs an embedder over batches of each (default: the deterministic BASELINE of
`emm1_lib.tools.eshot_baseline`, a floor, not a model; `--embedder module:function` names your own
`embed(batch) -> np.ndarray`), and writes `audio.npy` and `points.npy` in dataset order, the files `eshot evaluate`
reads. A file that does not decode stops it with exit status 2, naming the file.

    eshot evaluate --audio-embeddings audio.npy --points-embeddings points.npy --data-dir /data/eshot \\
        --output-dir results/

Embedding files, one per modality:
- `.npy`: a 2-D array with one row per sample in dataset order, i.e. the order of the `eshot_audio` /
  `eshot_points` configs: sorted by `eshot_audio_id` / `eshot_point_id`. Read without pickle (never executes code).
- `.parquet`, `.arrow` / `.feather` (Arrow IPC file or stream, e.g. a `datasets` cache file): an id column and an
  embedding column (a list of floats per row), in any order; every sample of the benchmark must appear once.

Labels come from the EShot folder through the `eshot` builder's own readers, so the order is the dataset's. Prints a
table, writes `result.json` (every number, per category included) and one per-category bar chart (PNG) per direction.

Exit status: 0 on success, 2 for bad arguments or inputs (a missing or malformed file, an unwritable output folder).
"""
import argparse
import datetime
import json
import os
import sys
from typing import Any
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple

import numpy as np
import pyarrow as pa

from emm1_lib.errors import EMM1DataError
from emm1_lib.schema.eshot_files import ID_COLUMNS
from emm1_lib.schema.eshot_files import find_eshot_dir
from emm1_lib.schema.eshot_files import labelled_rows
from emm1_lib.schema.eshot_files import read_categories
from emm1_lib.evaluation.eshot_protocol import DEFAULT_K
from emm1_lib.evaluation.eshot_protocol import DIRECTIONS
from emm1_lib.evaluation.eshot_protocol import EShotInputError
from emm1_lib.evaluation.eshot_protocol import check_finite_nonzero
from emm1_lib.evaluation.eshot_protocol import direction_prefix
from emm1_lib.evaluation.eshot_protocol import eshot_scores
from emm1_lib.tools.cli import installed_version

EMBEDDING_COLUMN_GUESSES = ("embedding", "embeddings", "emb", "vector", "features")
TIE_RULE = "pessimistic: a query's rank counts the other categories with similarity >= its own category's"


class CLIError(Exception):
    """A user-facing error of `eshot evaluate` (bad file, mismatched rows...): printed without a traceback."""


def dataset_index(data_dir: str) -> Tuple[List[str], Dict[str, Tuple[np.ndarray, np.ndarray]]]:
    """Category names and, per modality, the sample ids and category indices in dataset order (sorted by id).

    Uses the `eshot` builder's readers (`emm1_lib.schema.eshot_files`), so the order and the labels are exactly those of the `eshot_*` configs.
    """
    if "://" not in data_dir and not os.path.isdir(data_dir):
        raise CLIError(f"--data-dir {os.path.abspath(data_dir)} does not exist (or is no folder); pass the eshot/ "
                       "folder or a parent holding it.")
    eshot_dir = find_eshot_dir(data_dir)
    categories = read_categories(eshot_dir)
    index = {}
    for modality in ID_COLUMNS:
        rows, _ = labelled_rows(eshot_dir, modality, categories)
        index[modality] = (
            rows[ID_COLUMNS[modality]].to_numpy().astype(np.int64),
            rows["category"].to_numpy().astype(np.int64),
        )
    return categories, index


def _read_arrow_table(path: str) -> pa.Table:
    import pyarrow.parquet as pq

    if path.endswith(".parquet"):
        return pq.read_table(path)
    with pa.memory_map(path, "r") as source:
        try:
            return pa.ipc.open_file(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_stream(source).read_all()


def _list_column_to_matrix(column: pa.ChunkedArray, path: str, name: str) -> np.ndarray:
    array = column.combine_chunks()
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)
            or pa.types.is_fixed_size_list(array.type)):
        raise CLIError(f"{path}: column {name!r} has type {array.type}; expected a list of floats per row.")
    if array.null_count:
        row = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise CLIError(f"{path}: column {name!r} is null in row {row}.")
    if pa.types.is_fixed_size_list(array.type):
        lengths = np.full(len(array), array.type.list_size)
    else:
        offsets = array.offsets.to_numpy()
        lengths = np.diff(offsets)
    if len(lengths) and (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise CLIError(
            f"{path}: column {name!r} holds vectors of different lengths: row 0 has {lengths[0]}, row {row} has "
            f"{lengths[row]}."
        )
    values = array.flatten()
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        raise CLIError(f"{path}: column {name!r} holds {values.type} values; expected numbers.")
    dim = int(lengths[0]) if len(lengths) else 0
    return values.to_numpy(zero_copy_only=False).reshape(len(array), dim)


def read_embeddings(
    path: str,
    modality: str,
    ids: np.ndarray,
    id_column: Optional[str] = None,
    embedding_column: Optional[str] = None,
) -> np.ndarray:
    """The embeddings of `modality` as an ``(n, d)`` array in dataset order (the order of `ids`).

    Args:
        path: a `.npy` file (rows in dataset order) or a `.parquet` / `.arrow` / `.feather` file (id + embedding
            columns, any row order).
        modality: "audio" or "points" (for messages and the default id column).
        ids: the dataset's ids, sorted (from `dataset_index`).
        id_column: the id column of a table file (default: the dataset's id column name, else "id").
        embedding_column: the embedding column of a table file (default: the only list column, or a usual name).
    """
    if not os.path.isfile(path):
        raise CLIError(f"{path}: no such file ({modality} embeddings).")
    config = f"eshot_{modality}"
    if path.endswith(".npy"):
        try:
            matrix = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            raise CLIError(
                f"{path}: not a plain numeric .npy array ({err}); save a float array with np.save."
            ) from None
        if matrix.ndim != 2:
            raise CLIError(f"{path}: expected a 2-D array (one embedding per row), got shape {matrix.shape}.")
        if matrix.shape[0] != len(ids):
            raise CLIError(
                f"{path}: {matrix.shape[0]} rows, but the {config} config has {len(ids)} samples. A .npy file must "
                f"hold one row per sample in dataset order (sorted by {ID_COLUMNS[modality]}); use a Parquet/Arrow "
                "file with an id column to give rows in another order."
            )
        return matrix
    if not path.endswith((".parquet", ".arrow", ".feather")):
        raise CLIError(f"{path}: unsupported file type; use .npy, .parquet, .arrow or .feather.")
    try:
        table = _read_arrow_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise CLIError(f"{path}: cannot read it as {os.path.splitext(path)[1]} ({err}).") from None
    names = table.column_names
    id_name = id_column or next((n for n in (ID_COLUMNS[modality], "id") if n in names), None)
    if id_name not in names:
        raise CLIError(
            f"{path}: no id column {id_column or ID_COLUMNS[modality] + ' or id'!r}; columns are {names}. "
            "Pass --id-column."
        )
    if embedding_column is None:
        list_columns = [n for n in names if n != id_name and (
            pa.types.is_list(table.schema.field(n).type) or pa.types.is_large_list(table.schema.field(n).type)
            or pa.types.is_fixed_size_list(table.schema.field(n).type))]
        guesses = [n for n in EMBEDDING_COLUMN_GUESSES if n in names]
        embedding_column = list_columns[0] if len(list_columns) == 1 else (guesses[0] if guesses else None)
    if embedding_column not in names:
        raise CLIError(f"{path}: cannot tell the embedding column among {names}; pass --embedding-column.")
    file_ids = table[id_name].to_numpy().astype(np.int64) if pa.types.is_integer(table[id_name].type) else None
    if file_ids is None:
        try:
            file_ids = np.array([int(v) for v in table[id_name].to_pylist()], dtype=np.int64)
        except (TypeError, ValueError):
            raise CLIError(f"{path}: id column {id_name!r} must hold integer ids.") from None
    unique, counts = np.unique(file_ids, return_counts=True)
    if (counts > 1).any():
        raise CLIError(f"{path}: ids listed more than once: {unique[counts > 1][:5].tolist()}.")
    missing = np.setdiff1d(ids, file_ids)
    if len(missing):
        raise CLIError(
            f"{path}: {len(missing)} {ID_COLUMNS[modality]} value(s) of the {config} config have no embedding "
            f"(e.g. {missing[:5].tolist()})."
        )
    extra = np.setdiff1d(file_ids, ids)
    if len(extra):
        raise CLIError(
            f"{path}: {len(extra)} id(s) are not samples of the {config} config (e.g. {extra[:5].tolist()}); "
            "check that the file belongs to this modality and data dir."
        )
    matrix = _list_column_to_matrix(table[embedding_column], path, embedding_column)
    order = np.argsort(file_ids)
    return matrix[order[np.searchsorted(file_ids[order], ids)]]


def evaluate_files(
    audio_path: str,
    points_path: str,
    data_dir: str,
    k: Sequence[int] = DEFAULT_K,
    id_column: Optional[str] = None,
    embedding_column: Optional[str] = None,
) -> Dict[str, Any]:
    """Read both embedding files, label them from the EShot folder and run `eshot_scores` (per category included)."""
    categories, index = dataset_index(data_dir)
    matrices = {
        "audio": read_embeddings(audio_path, "audio", index["audio"][0], id_column, embedding_column),
        "points": read_embeddings(points_path, "points", index["points"][0], id_column, embedding_column),
    }
    for modality, path in (("audio", audio_path), ("points", points_path)):
        try:
            check_finite_nonzero(matrices[modality])
        except EShotInputError as err:
            raise CLIError(f"{path}: {err} (rows in dataset order, sorted by {ID_COLUMNS[modality]})") from None
    if matrices["audio"].shape[1] != matrices["points"].shape[1]:
        raise CLIError(
            f"audio embeddings have dimension {matrices['audio'].shape[1]} ({audio_path}) but point-cloud embeddings "
            f"{matrices['points'].shape[1]} ({points_path}): both must come from one shared embedding space."
        )
    embeddings = np.concatenate([matrices["audio"], matrices["points"]])
    labels = np.concatenate([index["audio"][1], index["points"][1]])
    modalities = np.repeat(["audio", "points"], [len(index["audio"][1]), len(index["points"][1])])
    return eshot_scores(embeddings, labels, modalities, k=k, categories=categories, per_category=True)


def format_table(result: Dict[str, Any]) -> str:
    """The headline numbers as a plain-text table (percent)."""
    ks = result["k"]
    header = ["direction"] + [f"top{k}" for k in ks] + [f"top{k} macro" for k in ks] + ["queries", "categories"]
    lines = []
    for query, target in DIRECTIONS:
        prefix = direction_prefix(query, target)
        lines.append(
            [f"{query} -> {target}"]
            + [f"{100 * result[f'{prefix}_top{k}']:.2f}" for k in ks]
            + [f"{100 * result[f'{prefix}_top{k}_macro']:.2f}" for k in ks]
            + [str(result[f"{prefix}_num_queries"]), str(result[f"{prefix}_num_query_categories"])]
        )
    widths = [max(len(row[i]) for row in [header] + lines) for i in range(len(header))]

    def render(row: List[str]) -> str:
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))

    out = [render(header), "  ".join("-" * w for w in widths)] + [render(row) for row in lines]
    for query, target in DIRECTIONS:
        missing = result[f"{direction_prefix(query, target)}_missing_class_vectors"]
        if missing:
            out.append(
                f"{query} -> {target}: {len(missing)} categor{'y has' if len(missing) == 1 else 'ies have'} no "
                f"{target} sample, so no class vector; their queries count as wrong: {', '.join(missing)}"
            )
    return "\n".join(out)


def plot_per_category(result: Dict[str, Any], output_dir: str) -> List[str]:
    """One horizontal bar chart per direction: per-category accuracy at the smallest and largest k. Returns paths."""
    try:
        import matplotlib
    except ImportError:
        raise CLIError("the bar charts need matplotlib: pip install matplotlib (or pass --no-plot).") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low, high = min(result["k"]), max(result["k"])
    written = []
    for query, target in DIRECTIONS:
        prefix = direction_prefix(query, target)
        per_category = result[f"{prefix}_per_category"]
        names = list(per_category)
        positions = np.arange(len(names))
        fig, ax = plt.subplots(figsize=(8, 1.5 + 0.2 * len(names)))
        if high != low:
            ax.barh(positions, [100 * per_category[n][f"top{high}"] for n in names], color="#9ecae1",
                    label=f"top-{high}")
        ax.barh(positions, [100 * per_category[n][f"top{low}"] for n in names], color="#3182bd", label=f"top-{low}")
        ax.set_yticks(positions)
        missing = set(result[f"{prefix}_missing_class_vectors"])
        ax.set_yticklabels(
            [f"{n} ({per_category[n]['num_queries']}{', no class vector' if n in missing else ''})" for n in names],
            fontsize=7,
        )
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("accuracy (%)")
        ax.set_title(
            f"EShot {query} -> {target}: top-{low} {100 * result[f'{prefix}_top{low}']:.1f} %, "
            f"macro {100 * result[f'{prefix}_top{low}_macro']:.1f} %"
        )
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        path = os.path.join(output_dir, f"per_category_{prefix}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _make_output_dir(path: str) -> None:
    """Create `--output-dir` and check that files can be written there (before anything is computed into it)."""
    try:
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, ".eshot-write-test"), "w"):
            pass
        os.remove(os.path.join(path, ".eshot-write-test"))
    except OSError as err:
        raise CLIError(f"--output-dir {os.path.abspath(path)}: cannot write there ({err.strerror or err}).") from None


def load_embedder(spec: Optional[str]):
    """The embedder named `module:function` (the module imported from the current folder or the Python path), or
    the baseline when `spec` is None."""
    if spec is None:
        from emm1_lib.tools.eshot_baseline import baseline_embed

        return baseline_embed
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise CLIError(f"--embedder {spec!r}: expected MODULE:FUNCTION, e.g. my_model:embed (my_model.py in the "
                       "current folder or on PYTHONPATH).")
    import importlib

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: the user's module beside them
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise CLIError(f"--embedder {spec!r}: cannot import {module_name!r} ({err}).") from None
    embedder = getattr(module, name, None)
    if not callable(embedder):
        raise CLIError(f"--embedder {spec!r}: {module_name} has no callable {name!r}.")
    return embedder


def embed_config(modality: str, data_dir: str, root_data_path: str, embedder, batch_size: int = 32,
                 cache_dir: Optional[str] = None, name: str = "embedder",
                 media_options: Optional[Dict[str, Dict[str, object]]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Build config `eshot_{modality}`, decode every example and run `embedder` over batches of `batch_size` rows.

    `media_options`: the builder's per-modality decoding options, e.g. `{"audio": {"sampling_rate": 16000},
    "points": {"num_points": 2048}}`.

    Returns `(ids, embeddings)` sorted by id (the dataset order `eshot evaluate` expects of a `.npy` file). Raises
    `CLIError` when the embedder returns the wrong number of rows, not a 2-D array, or rows of another width than
    its other batches; decode errors (`MediaDecodeError`, naming the file) propagate.
    """
    from emm1_lib.builders.eshot import EShot

    builder = EShot(config_name=f"eshot_{modality}", data_dir=data_dir, root_data_path=root_data_path,
                    cache_dir=cache_dir, media_options=media_options or {})
    builder.download_and_prepare()
    dataset = builder.as_dataset(split="test")
    id_column = ID_COLUMNS[modality]
    ids, rows = [], []
    for batch in dataset.iter(batch_size=batch_size):
        out = np.asarray(embedder(batch))
        n = len(batch[id_column])
        if out.ndim != 2 or out.shape[0] != n:
            raise CLIError(f"{name} returned shape {out.shape} for a batch of {n} eshot_{modality} examples (ids "
                           f"{batch[id_column][0]}..{batch[id_column][-1]}); expected ({n}, d).")
        if rows and out.shape[1] != rows[0].shape[1]:
            raise CLIError(f"{name} returned {out.shape[1]} values per eshot_{modality} example, then "
                           f"{rows[0].shape[1]} before: one width for every batch.")
        ids.extend(batch[id_column])
        rows.append(out.astype(np.float32))
    ids_array = np.asarray(ids, dtype=np.int64)
    matrix = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
    order = np.argsort(ids_array, kind="stable")
    return ids_array[order], matrix[order]


def _embed_main(args) -> int:
    from emm1_lib.media.files import MediaError

    try:
        embedder = load_embedder(args.embedder)
        name = args.embedder or "the baseline embedder"
        media_options = {m: o for m, o in (("audio", {"sampling_rate": args.sampling_rate}),
                                           ("points", {"num_points": args.num_points})) if None not in o.values()}
        _make_output_dir(args.output_dir)
        written = []
        for modality in ("audio", "points"):
            _, matrix = embed_config(modality, args.data_dir, args.root_data_path, embedder, args.batch_size,
                                     args.cache_dir, name, media_options)
            path = os.path.join(args.output_dir, f"{modality}.npy")
            np.save(path, matrix)
            written.append((modality, path, matrix.shape))
    except (CLIError, EMM1DataError, MediaError) as err:
        print(f"eshot: error: {err}", file=sys.stderr)
        return 2
    for modality, path, shape in written:
        print(f"wrote {path}: {shape[0]} {modality} embeddings of dimension {shape[1]}")
    print(f"score them: eshot evaluate --audio-embeddings {written[0][1]} --points-embeddings {written[1][1]} "
          f"--data-dir {args.data_dir}")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eshot", description="EShot zero-shot audio <-> point-cloud benchmark.",
        epilog="Exit status: 0 success, 2 bad arguments or inputs.",
    )
    parser.add_argument("--version", action="version", version=f"eshot {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "evaluate",
        help="score audio and point-cloud embedding files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--audio-embeddings", required=True, help=".npy (dataset order) or .parquet/.arrow file")
    run.add_argument("--points-embeddings", required=True, help=".npy (dataset order) or .parquet/.arrow file")
    run.add_argument("--data-dir", required=True, help="the eshot/ folder (or a parent holding it)")
    run.add_argument("--output-dir", default="eshot-results", help="where result.json and the charts go")
    run.add_argument("--k", type=int, nargs="+", default=list(DEFAULT_K), help="top-k cut-offs (default: 1 5)")
    run.add_argument("--id-column", help="id column of Parquet/Arrow files (default: eshot_audio_id / "
                     "eshot_point_id, else id)")
    run.add_argument("--embedding-column", help="embedding column of Parquet/Arrow files (default: the list column)")
    run.add_argument("--no-plot", action="store_true", help="skip the PNG bar charts")
    embed = commands.add_parser(
        "embed", help="embed every EShot clip and point cloud (default: the BASELINE extractor, not a model)",
        description="Decode every clip and point cloud of the eshot_audio and eshot_points configs and embed them "
                    "with EMBEDDER (default: the deterministic baseline of emm1_lib.tools.eshot_baseline: log-mel "
                    "and shape statistics, a floor near chance, not a model). Writes OUTPUT_DIR/audio.npy and "
                    "OUTPUT_DIR/points.npy in dataset order, for `eshot evaluate`.",
        epilog="Exit status: 0 success, 2 bad arguments or inputs (a media file that does not decode, named).",
    )
    embed.add_argument("--data-dir", required=True, help="the eshot/ folder (or a parent holding it)")
    embed.add_argument("--root-data-path", required=True, help="the media root (eshot/audio/..., eshot/points/...)")
    embed.add_argument("--output-dir", default="eshot-embeddings", help="where audio.npy and points.npy go")
    embed.add_argument("--embedder", metavar="MODULE:FUNCTION",
                       help="your embed(batch) -> np.ndarray (batch: a dict of columns of one config, with the "
                            "decoded 'audio' or 'points' column); default: the baseline")
    embed.add_argument("--batch-size", type=int, default=32, help="examples per embedder call (default 32)")
    embed.add_argument("--sampling-rate", type=int, help="decode audio at this rate (default: each file's own)")
    embed.add_argument("--num-points", type=int, help="decode point clouds to this many points (default: as stored)")
    embed.add_argument("--cache-dir", help="the datasets cache for the prepared configs (default: datasets' own)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `eshot` console script; returns the exit status."""
    args = _build_parser().parse_args(argv)
    if args.command == "embed":
        return _embed_main(args)
    try:
        result = evaluate_files(
            args.audio_embeddings, args.points_embeddings, args.data_dir, k=args.k,
            id_column=args.id_column, embedding_column=args.embedding_column,
        )
        _make_output_dir(args.output_dir)
        charts = [] if args.no_plot else plot_per_category(result, args.output_dir)
    except (CLIError, EMM1DataError, EShotInputError) as err:
        print(f"eshot: error: {err}", file=sys.stderr)
        return 2
    report = {
        "result": result,
        "inputs": {
            "audio_embeddings": os.path.abspath(args.audio_embeddings),
            "points_embeddings": os.path.abspath(args.points_embeddings),
            "data_dir": os.path.abspath(args.data_dir),
        },
        "protocol": {
            "class_vector": "L2-normalised mean of the category's embeddings in the opposite modality",
            "similarity": "dot product of L2-normalised vectors (float64)",
            "tie_rule": TIE_RULE,
        },
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    result_path = os.path.join(args.output_dir, "result.json")
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
    print(format_table(result))
    print(f"\nwrote {result_path}" + "".join(f"\nwrote {path}" for path in charts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
