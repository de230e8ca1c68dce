#!/usr/bin/env python
"""Phase-1 benchmark: the `emm1` builder against the seed's polars recipe and `load_dataset("csv")` + `map`.

    python benchmarks/phase1.py                 # full size (E-MM1:100M metadata), 2 interleaved repeats
    python benchmarks/phase1.py --scale 0.01    # a quick run on a 1 % tree

The metadata tree (16 grouping files of 6,706,765 rows, infos tables of millions of rows) is generated
once and cached under `~/.cache/emm1/bench-{scale}`. Each measurement runs in a fresh Python process;
the parent records its wall time and its peak memory (the child's VmHWM, and for multi-process runs the
sampled sum of the RSS of the process tree). Contenders are interleaved (round-robin, rotating start) so
drift of the shared machine hits them alike. Ratios are against (a), measured in the same run.

(a) polars: the seed's phase-1 recipe for `nn_1` (read CSVs, four joins, caption join), writing Parquet.
(b) builder: `EMM1("phase1_nn1").download_and_prepare()` into a fresh (cold) `datasets` cache.
(b') load_dataset: `datasets.load_dataset("emm1", "phase1_nn1", ...)`, the same preparation by the route users take.
    `builder_warm` / `load_dataset_warm`: (b) / (b') with the infos tables' Arrow cache (`<cache_dir>/emm1-infos/`)
    left by an earlier run (one untimed preparation warms it); each run's prepared output is still new.
(c) csv+map: `load_dataset("csv")` of the grouping file and the infos tables, then `map(batched=True)`
    joining through Python dicts — what a `datasets` user does without the builder. Slow: capped by
    `--csv-map-rows` and `--timeout` (the output says when a cap applied).
Extras: a warm load (cache hit) of (b)'s output, streaming throughput, `phase1_all` with `num_proc`.
"""
import time

_T0 = time.perf_counter()  # child wall time starts before the heavy imports

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL_CAPTIONS = 6_706_765
FULL_MEDIA = 3_000_000  # infos rows per modality; ids then run to ~6 M (UPSTREAM: a few million)
NUM_NEIGHBOURS = 16
MODALITIES = ("image", "audio", "video", "points")
# A media root as users pass it; paths are not opened (nothing decodes), only their length matters.
DEFAULT_ROOT = "/data/e-mm1"
TREE_VERSION = 2  # bump when the generated tree changes, so cached trees are rebuilt
REAL_TREE_VERSION = 1  # the same, for the real-sized tree
TIMED_DONE = ".timed-done"  # a child creates this file in its output folder when its timed work ends


# -- the full-size tree ---------------------------------------------------------------------------

_CAPTION_WORDS = (
    "a", "the", "dog", "red", "car", "piano", "playing", "loudly", "small", "bird", "sings", "in", "rain",
    "person", "walking", "along", "beach", "sunset", "while", "waves", "crash", "against", "rocks", "man",
    "woman", "child", "guitar", "street", "city", "night", "lights", "engine", "revving", "crowd", "cheering",
    "stadium", "wooden", "table", "with", "cup", "of", "coffee", "on", "it", "train", "passing", "by",
)
_CAPTION_TAILS = ("", ".", ", \"quoted\" words", ", then it stops suddenly.", " and somebody laughs in the background.")


def _captions(rng, n: int):
    """~100-byte captions (the real text.csv's average), some with commas and quotes that need CSV quoting."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from emm1_lib.testing.sample import _pick

    words = [_pick(rng, _CAPTION_WORDS, n) for _ in range(14)]
    return pc.binary_join_element_wise(pc.binary_join_element_wise(*words, " "), _pick(rng, _CAPTION_TAILS, n), pa.scalar(""))


def _realistic_text_csv(path: str, seed: int) -> None:
    """Rewrite `infos/text.csv` with the same ids and ~100-byte captions, in chunks (bounded memory)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    ids = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(include_columns=["encord_text_id"]))["encord_text_id"]
    rng = np.random.default_rng(seed)
    tmp = path + ".tmp"
    schema = pa.schema([("encord_text_id", pa.int64()), ("caption", pa.string())])
    with pacsv.CSVWriter(tmp, schema) as writer:
        for start in range(0, len(ids), 1_000_000):
            chunk = ids.slice(start, 1_000_000)
            writer.write_table(pa.table({"encord_text_id": chunk, "caption": _captions(rng, len(chunk))}, schema=schema))
    os.replace(tmp, path)


BENCH_CACHE = os.path.expanduser("~/.cache/emm1")


def _check_replaceable(tree_dir: str, found, wanted: dict) -> None:
    """Refuse to delete a folder the benchmarks did not generate into their own cache, or another tree a user named.

    A `--tree-dir` given by hand may be shared or hold other data; only the benchmarks' default trees,
    ~/.cache/emm1/bench-*, are replaced without asking.
    """
    tree_dir = os.path.realpath(tree_dir)
    if not os.path.exists(tree_dir) or not os.listdir(tree_dir):
        return
    if os.path.dirname(tree_dir) == os.path.realpath(BENCH_CACHE) and os.path.basename(tree_dir).startswith("bench-"):
        return  # one of the benchmarks' own default trees, not the cache folder itself
    what = f"a benchmark tree generated with {found}" if found else "no benchmark tree (no COMPLETE.json)"
    raise SystemExit(f"{tree_dir} holds {what}, not the tree asked for ({wanted}). Pass the matching options "
                     f"(e.g. --scale), another --tree-dir, or delete the folder yourself; it is not deleted for you.")


def ensure_tree(tree_dir: str, scale: float, sizes: str = "real") -> str:
    """Generate the metadata tree once (metadata only, no media files); return its metadata folder (the data_dir).

    `sizes="real"`: every E-MM1:100M CSV at the release's size times `scale` (`realsize.py`); `"small"`: the
    earlier, smaller tree (3,000,000 infos rows per modality, ~100-byte captions), kept for comparisons.
    """
    marker = os.path.join(tree_dir, "COMPLETE.json")
    params = {"version": TREE_VERSION, "num_captions": max(100, int(FULL_CAPTIONS * scale)),
              "num_media": max(50, int(FULL_MEDIA * scale)), "num_neighbours": NUM_NEIGHBOURS}
    if sizes == "real":
        params = {"version": REAL_TREE_VERSION, "sizes": "real", "scale": scale, "num_neighbours": NUM_NEIGHBOURS}
    found = None
    if os.path.exists(marker):
        with open(marker) as f:
            found = json.load(f)
        if found == params:
            return os.path.join(tree_dir, "metadata")
    _check_replaceable(tree_dir, found, params)
    shutil.rmtree(tree_dir, ignore_errors=True)
    os.makedirs(tree_dir)
    from emm1_lib.testing.sample import generate_sample_tree

    started = time.perf_counter()
    print(f"generating the benchmark tree in {tree_dir} ({params}) ...", flush=True)
    if sizes == "real":
        # phase 2 and EShot small (phase 1 is what is timed); phase 1 replaced by the real-sized files
        tree = generate_sample_tree(tree_dir, num_captions=200, num_media=50, num_neighbours=1, num_triplets=60,
                                    media=False, seed=0)
        shutil.rmtree(tree.phase1_dir)
        import realsize

        params["rows"] = realsize.generate_real_phase1(tree.phase1_dir, scale, seed=0)
    else:
        tree = generate_sample_tree(tree_dir, num_captions=params["num_captions"], num_media=params["num_media"],
                                    num_neighbours=NUM_NEIGHBOURS, num_triplets=60, media=False, seed=0)
        _realistic_text_csv(os.path.join(tree.phase1_dir, "infos", "text.csv"), seed=1)
    with open(marker, "w") as f:
        json.dump({k: v for k, v in params.items() if k != "rows"}, f)
    print(f"generated in {time.perf_counter() - started:.0f} s; rows {params.get('rows', '')}", flush=True)
    return tree.metadata_dir


def tree_facts(tree_dir: str) -> dict:
    phase1 = os.path.join(tree_dir, "e-mm1_100m")
    sizes = {os.path.relpath(p, phase1): os.path.getsize(p) for p in glob.glob(os.path.join(phase1, "*", "*.csv"))}
    return {"nn_1_bytes": sizes.get(os.path.join("nn_1", "data_groups.csv")),
            "infos_bytes": {k: v for k, v in sizes.items() if k.startswith("infos")},
            "all_csv_bytes": sum(sizes.values())}


# -- child processes: one measurement each ---------------------------------------------------------

def _memory_status(out_dir: str = None) -> dict:
    """VmHWM (peak RSS), VmRSS and its anonymous / file-backed parts of this process, in bytes.

    Called when the timed work ends; with `out_dir` it also tells the parent's memory sampler to
    stop, so checks run afterwards (digests) do not count.
    """
    if out_dir:
        open(os.path.join(out_dir, TIMED_DONE), "w").close()
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (num_proc workers): less sensitive
    than wall time to other jobs on a shared machine."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _dir_bytes(path: str, pattern: str = "*") -> int:
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(path, "**", pattern), recursive=True) if os.path.isfile(p))


def _digest_arrow(table) -> dict:
    """Order-independent checks of an output: row count, id sums, non-null path counts."""
    import pyarrow.compute as pc

    digest = {"rows": table.num_rows, "text_id_sum": pc.sum(table["encord_text_id"]).as_py(),
              "caption_nulls": table["caption"].null_count}
    for m in MODALITIES:
        digest[f"{m}_id_sum"] = pc.sum(table[f"encord_{m}_id"]).as_py()
        # the path column where the layout has one (recipes, `file_path_columns=True`), else the media column's path
        paths = table[f"{m}_file_path"] if f"{m}_file_path" in table.column_names else pc.struct_field(table[m], "path")
        digest[f"{m}_path_nulls"] = paths.null_count
    return digest


def child_polars(args) -> dict:
    """(a) The seed's "Phase 1 Example" as users run it (join key typo fixed; one path column per modality)."""
    import polars as pl

    phase1 = os.path.join(args.tree, "e-mm1_100m")
    root, sep = args.root, "/"
    nn1_groups = pl.read_csv(f"{phase1}/nn_1/data_groups.csv")
    modality_to_info = {m: pl.read_csv(f"{phase1}/infos/{m}.csv") for m in MODALITIES}
    text_info = pl.read_csv(f"{phase1}/infos/text.csv")
    for modality in MODALITIES:
        info_df = modality_to_info[modality].with_columns(
            (pl.lit(root) + sep + pl.col("save_folder") + sep + pl.lit(modality) + sep + pl.col("file_name"))
            .alias(f"{modality}_file_path")
        )
        join_col = f"encord_{modality}_id"
        nn1_groups = nn1_groups.join(info_df.select([join_col, f"{modality}_file_path"]), on=join_col, how="left")
    nn1_groups = nn1_groups.join(text_info.select(["encord_text_id", "caption"]), on="encord_text_id", how="left")
    out_file = os.path.join(args.out, "nn_1.parquet")
    nn1_groups.write_parquet(out_file)
    result = {"op_s": time.perf_counter() - _T0, "cpu_s": _cpu_seconds(), "memory": _memory_status(args.out),
              "out_bytes": os.path.getsize(out_file)}
    result["digest"] = _digest_arrow(nn1_groups.to_arrow())
    return result


def _builder(args, config: str, **overrides):
    sys.path.insert(0, args.repo)
    import emm1

    options = {**json.loads(args.options or "{}"), **overrides}
    return emm1.EMM1(config_name=config, data_dir=args.tree, root_data_path=args.root, cache_dir=args.out, **options)


def child_builder(args) -> dict:
    """(b) download_and_prepare into a cold cache (`args.out` is fresh); `phase1_all` with --num-proc."""
    import warnings

    builder = _builder(args, args.config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        builder.download_and_prepare(num_proc=args.num_proc if args.num_proc > 1 else None)
    result = {"op_s": time.perf_counter() - _T0, "cpu_s": _cpu_seconds(), "memory": _memory_status(args.out),
              "out_bytes": _dir_bytes(builder.cache_dir, "*.arrow")}
    if args.verify:
        result["digest"] = _digest_arrow(builder.as_dataset(split="train").data.table)
    else:
        result["digest"] = {"rows": builder.info.splits["train"].num_examples}
    return result


def child_load_dataset(args) -> dict:
    """(b') `datasets.load_dataset("emm1", ...)` in a fresh process: the route most users take (imports and any
    listing included), into `args.out` as the cache."""
    import warnings

    import datasets

    sys.path.insert(0, args.repo)
    import emm1  # noqa: F401  (registers the "emm1" module)

    options = json.loads(args.options or "{}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = datasets.load_dataset("emm1", args.config, data_dir=args.tree, root_data_path=args.root, cache_dir=args.out,
                                   split="train", num_proc=args.num_proc if args.num_proc > 1 else None, **options)
    result = {"op_s": time.perf_counter() - _T0, "cpu_s": _cpu_seconds(), "memory": _memory_status(args.out),
              "out_bytes": sum(os.path.getsize(f["filename"]) for f in ds.cache_files)}
    result["digest"] = _digest_arrow(ds.data.table) if args.verify else {"rows": ds.num_rows}
    return result


def child_warm(args) -> dict:
    """A cache hit: the builder finds (b)'s prepared Arrow files and memory-maps them."""
    import datasets  # noqa: F401  (import cost is reported apart from the load)

    sys.path.insert(0, args.repo)
    import emm1  # noqa: F401

    imported = time.perf_counter()
    before = _memory_status()
    builder = _builder(args, args.config)
    builder.download_and_prepare()
    ds = builder.as_dataset(split="train")
    load_s = time.perf_counter() - imported
    after = _memory_status()
    return {"op_s": time.perf_counter() - _T0, "load_s": load_s, "import_s": imported - _T0, "memory": after,
            "anon_growth": after["RssAnon"] - before["RssAnon"], "memory_mapped": bool(ds.cache_files),
            "digest": {"rows": len(ds)}}


def child_stream(args) -> dict:
    """Streaming without decoding: rows/s row by row and with `iter(batch_size=...)`, after the first row
    (which waits for the infos tables to be read; reported as `first_row_s`)."""
    import warnings

    builder = _builder(args, args.config, decode=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stream = builder.as_streaming_dataset(split="train")
        opened = time.perf_counter()
        rows_iter = iter(stream)
        next(rows_iter)
        first_row_s = time.perf_counter() - opened
        started, rows = time.perf_counter(), 0
        for _ in rows_iter:
            rows += 1
            if rows >= args.rows:
                break
        per_row = rows / (time.perf_counter() - started)
        per_batch = _batched_rows_per_s(stream, args.rows, args.stream_batch)
        per_arrow = _batched_rows_per_s(stream.with_format("arrow"), args.rows, args.stream_batch)
    return {"op_s": time.perf_counter() - _T0, "memory": _memory_status(), "rows_per_s": per_row,
            "batched_rows_per_s": per_batch, "arrow_rows_per_s": per_arrow, "first_row_s": first_row_s,
            "stream_batch": args.stream_batch,
            "digest": {"rows": rows + 1}}


def _batched_rows_per_s(stream, limit: int, batch_size: int = 10_000) -> float:
    """Rows/s of `stream.iter(batch_size)`, timed from the second batch on (the first waits for the infos)."""
    batches = stream.iter(batch_size=batch_size)
    next(batches)
    started, rows = time.perf_counter(), 0
    for batch in batches:
        rows += len(batch["encord_text_id"])
        if rows >= limit:
            break
    return rows / (time.perf_counter() - started)


def child_csv_map(args) -> dict:
    """(c) `load_dataset("csv")` + `map`: dict lookups in batched map functions (no builder)."""
    import datasets

    datasets.disable_progress_bars()
    phase1 = os.path.join(args.tree, "e-mm1_100m")
    load = lambda path: datasets.load_dataset("csv", data_files=path, cache_dir=args.out, split="train")  # noqa: E731
    groups = load(f"{phase1}/nn_1/data_groups.csv")
    capped = args.rows and args.rows < len(groups)
    if capped:
        groups = groups.select(range(args.rows))
    lookups = {}
    for m in MODALITIES:
        info = load(f"{phase1}/infos/{m}.csv")
        folders, names = info["save_folder"], info["file_name"]
        paths = [f"{args.root}/{folder}/{m}/{name}" for folder, name in zip(folders, names)]
        lookups[m] = dict(zip(info[f"encord_{m}_id"], paths))
        del info, folders, names, paths
    text = load(f"{phase1}/infos/text.csv")
    captions = dict(zip(text["encord_text_id"], text["caption"]))
    del text

    def join(batch):
        out = {f"{m}_file_path": [lookups[m].get(i) for i in batch[f"encord_{m}_id"]] for m in MODALITIES}
        out["caption"] = [captions.get(i) for i in batch["encord_text_id"]]
        return out

    joined = groups.map(join, batched=True)
    result = {"op_s": time.perf_counter() - _T0, "memory": _memory_status(args.out), "capped_rows": args.rows if capped else None,
              "out_bytes": sum(os.path.getsize(f["filename"]) for f in joined.cache_files)}
    result["digest"] = _digest_arrow(joined.data.table)
    return result


CHILDREN = {"polars": child_polars, "builder": child_builder, "warm": child_warm, "stream": child_stream,
            "csv_map": child_csv_map, "load_dataset": child_load_dataset}
# Contenders that reuse the infos cache (`<cache_dir>/emm1-infos/`) of earlier runs: they share one cache folder,
# warmed once before the timed runs; their prepared output is removed after each run, the infos cache kept.
INFOS_WARM = {"builder_warm": "builder", "load_dataset_warm": "load_dataset"}
INFOS_CACHE_FOLDER = "emm1-infos"


def _clear_except_infos_cache(cache: str) -> None:
    for name in os.listdir(cache):
        if name != INFOS_CACHE_FOLDER:
            path = os.path.join(cache, name)
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)


# -- the parent: run children, sample memory, print the table ---------------------------------------

def _tree_rss(pid: int) -> int:
    """RSS of a process and all its descendants (num_proc workers), in bytes; 0 once gone."""
    children = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total


def run_child(kind: str, args, out: str, timeout: float, sample_tree_rss: bool = True, **extra) -> dict:
    """Run one measurement in a fresh interpreter; return its JSON result plus wall time and peak memory."""
    repo = extra.pop("repo", REPO)
    command = [sys.executable, os.path.abspath(__file__), "--child", kind, "--tree", args.tree_dir, "--out", out,
               "--root", args.root, "--repo", repo]
    for key, value in extra.items():
        flag = f"--{key.replace('_', '-')}"
        command += [flag] if value is True else [flag, str(value)]
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", PYTHONPATH=repo)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak_tree = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.1) and not os.path.exists(os.path.join(out, TIMED_DONE)):
            peak_tree[0] = max(peak_tree[0], _tree_rss(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_tree_rss:
        sampler.start()
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        done.set()
        return {"kind": kind, "timeout": timeout, "wall_s": time.perf_counter() - started}
    finally:
        done.set()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{kind} failed ({process.returncode}):\n{stderr[-4000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    # VmHWM is exact for one process; the sampled tree sum also covers worker processes (num_proc).
    result.update(kind=kind, wall_s=wall, peak_rss=max(result["memory"]["VmHWM"], peak_tree[0]),
                  peak_tree_rss=peak_tree[0] or None)
    return result


def _all_disk_shortfall(work: str, single_runs: list, same_options: bool) -> str:
    """Why `phase1_all` cannot be written under `work` ("" when it can): it holds 16 times `phase1_nn1`'s output
    (measured in this run with the same options; unknown otherwise), and a full disk fails the run late."""
    sizes = [r["out_bytes"] for r in single_runs if r.get("out_bytes")]
    if not sizes or not same_options:
        return ""
    needed = 16 * statistics.median(sizes) * 1.1
    free = shutil.disk_usage(work).free
    if free >= needed:
        return ""
    return (f"it would write ~{needed / 1e9:.0f} GB (16x phase1_nn1's {statistics.median(sizes) / 1e9:.2f} GB, +10 %) "
            f"and {work} has {free / 1e9:.0f} GB free")


def _gb(n) -> str:
    return "-" if n is None else f"{n / 1e9:.2f} GB"


def _median(results, key):
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None


def default_tree_dir(sizes: str, scale: float) -> str:
    label = "full" if scale == 1 else f"{scale:g}"
    return f"~/.cache/emm1/bench-{label}" if sizes == "small" else f"~/.cache/emm1/bench-real-{label}"


def main_benchmark(args) -> dict:
    args.tree_dir = ensure_tree(args.tree_dir, args.scale, args.sizes)
    facts = tree_facts(args.tree_dir)
    print(f"tree: {args.tree_dir}  nn_1 {_gb(facts['nn_1_bytes'])}, all CSVs {_gb(facts['all_csv_bytes'])}", flush=True)
    work = args.work_dir
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    contenders = [c for c in args.contenders.split(",") if c]
    contenders += [f"base{i}" for i in range(len(args.compare_repo or []))]
    options = args.options
    results = {c: [] for c in contenders}
    warm_cache = None
    shared_cache = os.path.join(work, "shared-cache")
    if any(c in INFOS_WARM for c in contenders):
        os.makedirs(shared_cache)
        warming = run_child("builder", args, shared_cache, args.timeout, config="phase1_nn1", options=options, num_proc=1)
        _clear_except_infos_cache(shared_cache)
        print(f"  infos cache warmed in {warming['wall_s']:.2f} s (one cold preparation, not counted)", flush=True)
    for repeat in range(args.repeats):
        order = contenders[repeat % len(contenders):] + contenders[:repeat % len(contenders)]
        for kind in order:
            infos_warm = kind in INFOS_WARM
            out = shared_cache if infos_warm else os.path.join(work, f"{kind}-{repeat}")
            os.makedirs(out, exist_ok=infos_warm)
            base = kind.startswith("base")
            builds = kind in ("builder", "load_dataset") or infos_warm or base
            extra = {"config": "phase1_nn1", "options": options, "num_proc": 1} if builds else {}
            if base:  # the builder of another checkout (before/after comparisons)
                extra.update(repo=args.compare_repo[int(kind[4:])], options=args.compare_options or options)
            if kind == "csv_map":
                extra["rows"] = args.csv_map_rows
            if args.verify:
                extra["verify"] = True
            result = run_child("builder" if base else INFOS_WARM.get(kind, kind), args, out, args.timeout, **extra)
            results[kind].append(result)
            print(f"  repeat {repeat} {kind:8s} wall {result['wall_s']:7.2f} s  peak {_gb(result.get('peak_rss'))}"
                  + (" (TIMEOUT)" if "timeout" in result else ""), flush=True)
            if kind == "builder" and repeat == args.repeats - 1:
                warm_cache = out  # keep the last prepared cache for the warm load
            elif infos_warm:
                _clear_except_infos_cache(out)
            else:
                shutil.rmtree(out, ignore_errors=True)
    extras = {}
    if warm_cache and "warm" in args.extras:
        extras["warm"] = run_child("warm", args, warm_cache, args.timeout, config="phase1_nn1", options=options,
                                   num_proc=1)
    if warm_cache:
        shutil.rmtree(warm_cache, ignore_errors=True)
    if "stream" in args.extras:
        out = os.path.join(work, "stream")
        extras["stream"] = run_child("stream", args, out, args.timeout, config="phase1_nn1", options=options,
                                     rows=args.stream_rows, stream_batch=args.stream_batch, num_proc=1)
        shutil.rmtree(out, ignore_errors=True)
    if "all" in args.extras:
        out = os.path.join(work, "all")
        short = _all_disk_shortfall(work, results.get("builder", []), args.all_options in ("", options))
        if short:
            extras["all"] = {"skipped": short}
            print(f"  phase1_all not run: {short}", flush=True)
        else:
            extras["all"] = run_child("builder", args, out, args.all_timeout, sample_tree_rss=True,
                                      config="phase1_all", options=args.all_options or options, num_proc=args.num_proc)
        shutil.rmtree(out, ignore_errors=True)
    report = {"scale": args.scale, "tree": facts, "options": options, "results": results, "extras": extras,
              "compare_repo": args.compare_repo}
    print_report(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


def print_report(report: dict) -> None:
    results, extras = report["results"], report["extras"]
    base = results.get("polars") or []
    base_wall, base_rss = _median(base, "wall_s"), _median(base, "peak_rss")
    print(f"\nscale {report['scale']}, options {report['options'] or '{}'}; medians (and minima) of "
          f"{max(len(r) for r in results.values())} interleaved repeats, each in a fresh process")
    base_min = min((r["wall_s"] for r in base if "timeout" not in r), default=None)
    base_cpu = _median(base, "cpu_s")
    print(f"{'contender':34s} {'wall s':>8s} {'x (a)':>6s} {'min s':>7s} {'x (a)':>6s} {'CPU s':>7s} {'x (a)':>6s} "
          f"{'peak RSS':>10s} {'x (a)':>6s} {'rows':>11s} {'out bytes':>10s} {'B/row':>6s}")
    names = {"polars": "(a) polars recipe -> Parquet", "builder": "(b) builder, cold cache",
             "csv_map": "(c) load_dataset(csv)+map", "load_dataset": "(b') load_dataset, cold cache",
             "builder_warm": "(b) builder, infos cached", "load_dataset_warm": "(b') load_dataset, infos cached"}
    names.update({f"base{i}": f"(b{i}) builder of {repo}" for i, repo in enumerate(report.get("compare_repo") or [])})
    for kind, runs in results.items():
        done = [r for r in runs if "timeout" not in r]
        if not done:
            print(f"{names.get(kind, kind):34s} timed out after {runs[0]['timeout']:.0f} s")
            continue
        wall, rss = _median(done, "wall_s"), _median(done, "peak_rss")
        rows = done[0]["digest"]["rows"]
        out_bytes = _median(done, "out_bytes")
        note = f"  (first {done[0]['capped_rows']} rows only)" if done[0].get("capped_rows") else ""
        fastest = min(r["wall_s"] for r in done)
        cpu = _median(done, "cpu_s") or 0
        print(f"{names.get(kind, kind):34s} {wall:8.2f} {wall / base_wall if base_wall else 0:6.2f} "
              f"{fastest:7.2f} {fastest / base_min if base_min else 0:6.2f} "
              f"{cpu:7.2f} {cpu / base_cpu if base_cpu else 0:6.2f} {_gb(rss):>10s} "
              f"{rss / base_rss if base_rss else 0:6.2f} {rows:11,d} {_gb(out_bytes):>10s} "
              f"{(out_bytes or 0) / max(rows, 1):6.0f}{note}")
    print_agreement(results)
    if "warm" in extras:
        w = extras["warm"]
        print(f"warm load (cache hit): {w['load_s']:.2f} s after imports ({w['import_s']:.2f} s), process "
              f"{w['wall_s']:.2f} s; anonymous memory +{_gb(w['anon_growth'])}, memory-mapped: {w['memory_mapped']}")
    if "stream" in extras:
        s = extras["stream"]
        print(f"streaming, no decoding: {s['rows_per_s']:,.0f} rows/s row by row, "
              f"{s['batched_rows_per_s']:,.0f} rows/s with iter(batch_size={s['stream_batch']}), "
              f"{s['arrow_rows_per_s']:,.0f} rows/s as Arrow tables (with_format('arrow')) "
              f"(after the first row, which took {s['first_row_s']:.1f} s: the infos tables are read first)")
    if "all" in extras:
        a = extras["all"]
        if "timeout" in a:
            print(f"phase1_all: timed out after {a['timeout']:.0f} s")
        elif "skipped" in a:
            print(f"phase1_all: not run: {a['skipped']}")
        else:
            single = _median(results.get("builder") or [], "wall_s")
            ratio = f", {a['wall_s'] / single:.1f}x phase1_nn1" if single else ""
            print(f"phase1_all (num_proc={a.get('num_proc')}): {a['wall_s']:.1f} s{ratio}; "
                  f"{a['digest']['rows']:,d} rows, {_gb(a['out_bytes'])} ({a['out_bytes'] / a['digest']['rows']:.0f} B/row); "
                  f"peak RSS {_gb(a['memory']['VmHWM'])} main process, {_gb(a['peak_tree_rss'])} all processes (sampled)")


def print_agreement(results) -> None:
    """Whether every contender produced the same rows (count, id sums, null paths) as (a)."""
    digests = {k: r["digest"] for k, runs in results.items() for r in runs[:1] if "digest" in r}
    reference = digests.get("polars")
    if reference is None:
        return
    for kind, digest in digests.items():
        common = [key for key in digest if key in reference]
        if results[kind][0].get("capped_rows"):
            continue  # a capped run covers fewer rows
        differing = [key for key in common if digest[key] != reference[key]]
        verdict = "agrees with (a)" if not differing else f"DIFFERS from (a) in {differing}"
        print(f"{kind}: {verdict} on {', '.join(common)}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full E-MM1:100M size (default 1)")
    parser.add_argument("--sizes", choices=("real", "small"), default="real",
                        help="real: each CSV at the release's size (times --scale); small: the earlier, smaller tree")
    parser.add_argument("--tree-dir", help="where the generated tree is cached (default ~/.cache/emm1/bench-{sizes}-{scale})")
    parser.add_argument("--work-dir", default=None, help="scratch space for outputs (default: beside the tree)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--contenders", default="polars,builder,csv_map")
    parser.add_argument("--extras", default="warm,stream,all", help="any of warm,stream,all (comma-separated)")
    parser.add_argument("--options", default="", help="builder config options as JSON, e.g. '{\"file_path_columns\": false}'")
    parser.add_argument("--all-options", default="", help="options for the phase1_all run (default: --options)")
    parser.add_argument("--num-proc", type=int, default=2, help="processes for phase1_all (children: for their config)")
    parser.add_argument("--csv-map-rows", type=int, default=0, help="cap (c) to this many grouping rows (0: all)")
    parser.add_argument("--stream-rows", type=int, default=500_000, help="rows to time in each streaming mode")
    parser.add_argument("--stream-batch", type=int, default=10_000, help="batch size of the batched streaming modes")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measurement before it is killed")
    parser.add_argument("--all-timeout", type=float, default=3600)
    parser.add_argument("--root", default=DEFAULT_ROOT, help="root_data_path given to every contender")
    parser.add_argument("--verify", action="store_true", help="children also report id sums (after timing)")
    parser.add_argument("--compare-repo", action="append",
                        help="also time the builder of this checkout, e.g. `git archive` of an older commit (repeatable)")
    parser.add_argument("--compare-options", default="", help="builder options for --compare-repo (default: --options)")
    parser.add_argument("--json", help="write the raw results here")
    # child mode
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--config", default="phase1_nn1", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--repo", default=REPO, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.tree_dir = os.path.abspath(os.path.expanduser(args.tree_dir or default_tree_dir(args.sizes, args.scale)))
    args.work_dir = os.path.abspath(args.work_dir or args.tree_dir + "-work")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        result = CHILDREN[args.child](args)
        result["num_proc"] = args.num_proc
        print(json.dumps(result))
        return None
    return main_benchmark(args)


if __name__ == "__main__":
    main()
