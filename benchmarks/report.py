#!/usr/bin/env python
"""Run the project's benchmarks in one invocation and regenerate the figures of docs/performance.md from that run.

    python benchmarks/report.py --tree-dir /work/bench/real-full --quarter-tree-dir /work/bench/real-0.25
    python benchmarks/report.py --only decode,streaming            # a subset; other sections keep their figures
    python benchmarks/report.py --render-only docs/perf-run.json   # rewrite the page from a stored run, run nothing
    python benchmarks/report.py --quick --only eshot_metric --page /tmp/p.md --json /tmp/r.json   # tiny scales

Each benchmark script runs in a fresh process with its own `--json FILE`; this script records the machine (CPU
model, vCPUs, memory, OS, Python, library versions, git commit), the date, and the load average before and after
each benchmark (and its highest 1-minute value while it ran), then merges the figures into the stored run
(`--json`, default docs/perf-run.json) and rewrites the blocks between `<!-- report:NAME -->` and
`<!-- /report:NAME -->` of the page from it. The page is a function of the stored JSON alone, so
`--render-only docs/perf-run.json` gives the same page again. The stored run is one file beside the page, not a
folder of dated files: the page's figures and the data they come from change together in one commit, a partial
run (`--only`) merges into it, and git keeps the earlier runs.

Without `--tree-dir` / `--quarter-tree-dir` the phase-1 benchmarks generate their trees as the scripts do
(`~/.cache/emm1/bench-real-full`: 7 GB and ~100 s; the pre-joined copy beside it: ~125 s; the 0.25 tree: ~130 s).
"""
import argparse
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_PAGE = os.path.join(REPO, "docs", "performance.md")
DEFAULT_JSON = os.path.join(REPO, "docs", "perf-run.json")
QUICK_SCALE = 0.0005  # 3,353 captions: the phase-1 smoke tests' scale
# On top of the default, which stores each phase-1 path once (file_path_columns=False)
LEAN_OPTIONS = '{"provenance_labels": true}'
PHASE1_CONTENDERS = "polars,builder,builder_warm,load_dataset,load_dataset_warm"
LIBRARIES = ("datasets", "pyarrow", "numpy", "polars", "torch", "evaluate")
BUDGET_S = 35 * 60  # the default run on a quiet 2-vCPU machine


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One benchmark command of the report.

    name: the key in the stored run and the page's marker (`<!-- report:NAME -->`).
    script: the file under benchmarks/ that is run (it takes `--json FILE`).
    estimate_s: wall seconds of the default arguments on a quiet 2-vCPU machine, from earlier runs (see `--plan`).
    args / quick: the arguments of the default run and of `--quick`, given this script's options.
    render: the Markdown lines of the figures, given the stored benchmark entry and the whole stored run.
    """

    name: str
    script: str
    estimate_s: float
    args: Callable[[argparse.Namespace], List[str]]
    quick: Callable[[argparse.Namespace], List[str]]
    render: Callable[[dict, dict], List[str]]


# -- formatting ------------------------------------------------------------------------------------------------

def _s(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


def _gb(n: Optional[float]) -> str:
    return "–" if n is None else f"{n / 1e9:.2f} GB"


def _x(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:.2f}"


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def _med(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _div(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def _row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _head(*cells) -> List[str]:
    return [_row(*cells), _row(*["---"] * len(cells))]


# -- renderers: figures of each benchmark ------------------------------------------------------------------------

PHASE1_NAMES = {"polars": "(a) polars recipe → Parquet", "builder": "(b) builder class, cold",
                "load_dataset": "(b') `load_dataset`, cold", "builder_warm": "(b) builder class, infos cached",
                "load_dataset_warm": "(b') `load_dataset`, infos cached", "csv_map": "(c) `load_dataset(\"csv\")` + `map`"}


def _done(runs: List[dict]) -> List[dict]:
    return [r for r in runs if "timeout" not in r]


def render_phase1(entry: dict, run: dict) -> List[str]:
    report = entry["result"]
    results = report["results"]
    base = _done(results.get("polars", []))
    base_wall, base_min = _med(r["wall_s"] for r in base), min((r["wall_s"] for r in base), default=None)
    base_cpu = _med(r.get("cpu_s") for r in base)
    repeats = max(len(r) for r in results.values())
    lines = _head("contender", f"wall, median / min of {repeats}", "× (a) median / min", "CPU s", "× (a) CPU",
                  "peak RSS", "output")
    order = [k for k in PHASE1_NAMES if k in results] + [k for k in results if k not in PHASE1_NAMES]
    for kind in order:
        runs = results[kind]
        done = _done(runs)
        if not done:
            lines.append(_row(PHASE1_NAMES.get(kind, kind), f"timed out after {runs[0]['timeout']:.0f} s", "", "", "", "", ""))
            continue
        wall, fastest = _med(r["wall_s"] for r in done), min(r["wall_s"] for r in done)
        cpu = _med(r.get("cpu_s") for r in done)
        out = _med(r.get("out_bytes") for r in done)
        rows = done[0]["digest"]["rows"]
        lines.append(_row(PHASE1_NAMES.get(kind, kind), f"{_s(wall)} / {_s(fastest)}",
                          f"{_x(_div(wall, base_wall))} / {_x(_div(fastest, base_min))}", _x(cpu),
                          _x(_div(cpu, base_cpu)), _gb(_med(r["peak_rss"] for r in done)),
                          f"{_gb(out)} ({out / max(rows, 1):.0f} B/row)" if out else "–"))
    lines.append("")
    if base and len(base) == repeats:
        pairs = []
        for kind, runs in results.items():
            if kind != "polars" and len(runs) == repeats:
                ratios = [_div(r.get("wall_s"), b["wall_s"]) for r, b in zip(runs, base) if "timeout" not in r]
                pairs.append(f"{kind} " + ", ".join(_x(x) for x in ratios))
        if pairs:
            lines.append("Same-repeat ratios to (a), repeat by repeat: " + "; ".join(pairs) + ".")
    digests = {k: _done(r)[0]["digest"] for k, r in results.items() if _done(r)}
    rows = next(iter(digests.values()))["rows"] if digests else 0
    facts = report.get("tree", {})
    lines.append(f"Rows: {rows:,d}; tree: `nn_1/data_groups.csv` {_gb(facts.get('nn_1_bytes'))}, all CSVs "
                 f"{_gb(facts.get('all_csv_bytes'))} (scale {report['scale']:g}); options "
                 f"`{report.get('options') or '{}'}`.")
    if "polars" in digests:
        agree = [k for k, d in digests.items() if k != "polars" and all(d[key] == digests["polars"][key] for key in d
                                                                          if key in digests["polars"])]
        differ = [k for k in digests if k != "polars" and k not in agree]
        lines.append(f"Outputs agree with (a) ({', '.join(next(iter(digests.values())))}): "
                     f"{', '.join(agree) or 'none'}" + (f"; **differ: {', '.join(differ)}**" if differ else "") + ".")
    extras = report.get("extras", {})
    if "warm" in extras:
        w = extras["warm"]
        lines.append(f"Cache hit (the prepared output found again, fresh process): {_s(w['load_s'])} after the imports "
                     f"({_s(w['import_s'])}); anonymous memory +{_gb(w['anon_growth'])}, memory-mapped: "
                     f"{w['memory_mapped']}.")
    if "stream" in extras:
        s = extras["stream"]
        lines.append(f"Streaming without decoding, after the first row ({_s(s['first_row_s'])}: the infos tables are "
                     f"read first): {_rate(s['rows_per_s'])} rows/s row by row, {_rate(s['batched_rows_per_s'])} rows/s "
                     f"with `iter(batch_size={s['stream_batch']})`, {_rate(s['arrow_rows_per_s'])} rows/s as Arrow "
                     f"tables (`with_format(\"arrow\")`).")
    if "all" in extras:
        lines += _render_all(report)
    return lines


def _render_all(report: dict) -> List[str]:
    a = report["extras"]["all"]
    if "timeout" in a:
        return [f"`phase1_all`: timed out after {a['timeout']:.0f} s."]
    if "skipped" in a:
        return [f"`phase1_all`: not run: {a['skipped']}."]
    single = _med(r["wall_s"] for r in _done(report["results"].get("builder", [])))
    ratio = _div(a["wall_s"], single)
    return [f"`phase1_all` with `num_proc={a.get('num_proc')}`: {_s(a['wall_s'])}"
            + (f", **{ratio:.1f}×** `phase1_nn1` ({_s(single)}, fresh cache)" if ratio else "")
            + f" for {a['digest']['rows']:,d} rows, {_gb(a['out_bytes'])} of Arrow "
            f"({a['out_bytes'] / max(a['digest']['rows'], 1):.0f} B/row); CPU {a.get('cpu_s', 0):.0f} s; peak RSS "
            f"{_gb(a['memory']['VmHWM'])} in the main process, {_gb(a.get('peak_tree_rss'))} summed over it and its "
            f"workers (sampled every 0.1 s)."]


def render_lean(entry: dict, run: dict) -> List[str]:
    report = entry["result"]
    lines = _head("options", "bytes/row", "`phase1_nn1` on disk", "rows", "wall", "peak RSS")
    default = run["benchmarks"].get("phase1_all", {}).get("result", {})
    sources, same_run = [], run["benchmarks"].get("phase1_all", {}).get("run") == entry["run"]
    if default.get("scale") == report["scale"] and _done(default.get("results", {}).get("builder", [])):
        sources.append(("default", _done(default["results"]["builder"])))
    sources.append((f"`{report.get('options') or '{}'}`", _done(report["results"].get("builder", []))))
    for label, runs in sources:
        if runs:
            out, rows = _med(r["out_bytes"] for r in runs), runs[0]["digest"]["rows"]
            lines.append(_row(label, f"{out / rows:.0f}", _gb(out), f"{rows:,d}", _s(_med(r["wall_s"] for r in runs)),
                              _gb(_med(r["peak_rss"] for r in runs))))
    if len(sources) > 1:
        origin = "same run" if same_run else "another run: compare the bytes, not the times"
        lines += ["", f"Scale {report['scale']:g}; the default row is the `phase1_all` block's `phase1_nn1` run (same "
                  f"tree, {origin})."]
    else:
        lines += ["", f"Scale {report['scale']:g}."]
    return lines


def render_prejoined(entry: dict, run: dict) -> List[str]:
    report = entry["result"]
    results = report["results"]
    done = {k: _done(v) for k, v in results.items()}
    names = {"csv": "CSVs, fresh cache (the first config from the CSVs)",
             "csv_warm": "CSVs, infos cached (every later config)", "parquet": "pre-joined Parquet"}
    repeats = max(len(v) for v in results.values())
    lines = _head("input", f"time to prepared, median / min of {repeats}", "CPU s", "peak RSS")
    for kind in ("csv", "csv_warm", "parquet"):
        runs = done.get(kind, [])
        if runs:
            lines.append(_row(names[kind], f"{_s(_med(r['op_s'] for r in runs))} / {_s(min(r['op_s'] for r in runs))}",
                              _x(_med(r["cpu_s"] for r in runs)), _gb(_med(r["peak_rss"] for r in runs))))
    for kind in ("csv", "csv_warm"):
        if done.get(kind) and done.get("parquet"):
            pairs = [c["op_s"] / p["op_s"] for c, p in zip(results[kind], results["parquet"])
                     if "timeout" not in c and "timeout" not in p]
            median = _div(_med(r["op_s"] for r in done[kind]), _med(r["op_s"] for r in done["parquet"]))
            fastest = _div(min(r["op_s"] for r in done[kind]), min(r["op_s"] for r in done["parquet"]))
            cpu = _div(_med(r["cpu_s"] for r in done[kind]), _med(r["cpu_s"] for r in done["parquet"]))
            lines.append(_row(f"{kind} / parquet", f"**{_x(median)}× / {_x(fastest)}×** (per repeat "
                              f"{', '.join(_x(p) for p in pairs)})", f"{_x(cpu)}×", ""))
    written = report.get("prejoined", {})
    digests = [v[0]["digest"] for v in done.values() if v]
    agree = all(d == digests[0] for d in digests)
    rows = digests[0]["rows"] if digests else 0
    lines += ["", f"`{report['config']}`, `num_proc={report['num_proc']}`, scale {report['scale']:g}, {rows:,d} rows. "
              f"Pre-joined files: {sum(written.get('bytes', {}).values()) / 1e9:.2f} GB, written once in "
              f"{written.get('write_s', 0):.0f} s (cached between runs, not timed here). Outputs "
              + ("agree" if agree else "**differ**") + f" on {', '.join(digests[0]) if digests else '–'}."]
    return lines


def render_decode(entry: dict, run: dict) -> List[str]:
    report = entry["result"]
    routes = report["routes"]
    lines = _head("media", *[f"{r} ({'wall' if r == 'loader' else 'CPU'})" for r in routes])
    media = ("image", "audio", "video", "points")
    for name, by_route in sorted(report["ratios"].items(),
                                 key=lambda item: (media.index(item[0].split()[0]) if item[0].split()[0] in media else 4,
                                                   item[0])):
        lines.append(_row(name, *[f"{statistics.median(by_route[r]):.2f} ({min(by_route[r]):.2f}–{max(by_route[r]):.2f})"
                                  for r in routes]))
    lines += ["", f"Ratio dataset / plain loop, median of {report['rounds']} rounds (range); `datasets` "
              f"{report['datasets']}, {report['files']} files a medium (video: a quarter), {report['passes']} timed "
              f"passes a side, batch size {report['batch_size']}, {report['workers']} DataLoader workers."]
    return lines


def render_streaming(entry: dict, run: dict) -> List[str]:
    report = entry["result"]
    ways = {"rows": "row by row, `for row in ds`", "batches": "Python batches, `ds.iter(batch_size=1000)`",
            "arrow": "Arrow, `ds.with_format(\"arrow\").iter(batch_size=10000)`, whole split from opening"}
    lines = _head("way", "`emm1` rows/s", "Parquet rows/s", "`emm1` / Parquet, median (per repeat)")
    for way in [w for w in ways if w in report["median"]] + [w for w in report["median"] if w not in ways]:
        summary = report["median"][way]
        per = report["results"][way]
        ratios = [a["rows_per_s"] / b["rows_per_s"] for a, b in zip(per["emm1"], per["parquet"])]
        lines.append(_row(ways.get(way, way), _rate(summary["emm1"]), _rate(summary["parquet"]),
                          f"**{summary['ratio']:.2f}** ({', '.join(f'{r:.2f}' for r in ratios)})"))
    first = _med(r["first_s"] for r in report["results"].get("rows", {}).get("emm1", []))
    lines += ["", f"`datasets` {report['datasets']}; tree at scale {report['scale']:g}; {report['rows']:,d} rows a "
              f"measurement, {report['repeats']} repeats; `emm1`'s first row came after {_s(first)} (median; the infos "
              "tables are read first)."]
    return lines


def render_eshot(entry: dict, run: dict) -> List[str]:
    report = entry["result"]
    e = report["evaluate"]
    lines = _head("what", "time", "ratio to the numpy core")
    lines += [_row(f"numpy core `eshot_scores`, {e['rows']:,d} × {e['dim']:,d} float32, {e['categories']} categories",
                   f"{e['core_s'] * 1e3:.1f} ms", "1.00"),
              _row("`evaluate` `metric.compute(...)` (bytes-per-row layout)", f"{e['metric_s'] * 1e3:.1f} ms",
                   f"**{e['ratio']:.2f}** (requirement ≤ 3)"),
              _row("the same metric with `evaluate`'s default `Sequence(float32)` layout",
                   f"{e['default_layout_s'] * 1e3:.1f} ms", f"{e['default_layout_ratio']:.1f}")]
    lines += ["", f"Best of {e['repeats']} interleaved rounds."]
    if "scale" in report:
        s = report["scale"]
        mib = 2.0 ** 20
        lines.append(f"At scale ({s['queries']:,d} queries × {s['categories']:,d} categories × {s['dim']:,d} dims, fresh "
                     f"process): {_s(s['seconds'])}; the core allocated {s['traced_peak_bytes'] / mib:,.0f} MiB on top "
                     f"of its {s['input_bytes'] / mib:,.0f} MiB input ({s['traced_peak_bytes'] / s['input_bytes']:.2f}× "
                     f"the input, {s['traced_peak_bytes'] / s['full_similarity_bytes']:.2f}× the "
                     f"{s['full_similarity_bytes'] / mib:,.0f} MiB float64 similarity matrix it never builds); peak RSS "
                     f"{s['max_rss_bytes'] / mib:,.0f} MiB.")
    return lines


def render_load_route(entry: dict, run: dict) -> List[str]:
    report = entry["result"]
    m, seconds = report["median"], report["seconds"]
    lines = _head("route", f"median of {report['rounds']} (per round)")
    lines += [_row("(a) `EMM1(...).download_and_prepare()` + `as_dataset`",
                   f"{_s(m['builder'])} ({', '.join(_s(x) for x in seconds['builder'])})"),
              _row("(b) `load_dataset(\"emm1\", ..., data_dir=R)`",
                   f"{_s(m['load_dataset'])} ({', '.join(_s(x) for x in seconds['load_dataset'])})"),
              _row("(b) / (a)", f"**{m['ratio']:.2f}** (target ≤ 2)")]
    lines += ["", f"`{report['config']}`, {report['rows']:,d} rows; the data_dir R also holds {report['media_files']:,d} "
              "empty media files; fresh process and fresh cache per measurement, imports excluded."]
    return lines


def render_download(entry: dict, run: dict) -> List[str]:
    report = entry["result"]
    lines = _head("what", "the guide", "`emm1 download`", "ratio")
    if "url_images" in report:
        u = report["url_images"]
        lines.append(_row(f"{u['images']} URL images, {u['latency_s'] * 1000:.0f} ms a request",
                          f"sequential `requests.get`: {u['sequential_items_per_s']:.1f} items/s",
                          f"`--workers {u['workers']}`: {u['emm1_items_per_s']:.1f} items/s", f"**{u['speedup']:.1f}×**"))
    if "zip_subset" in report:
        z = report["zip_subset"]
        lines.append(_row(f"{z['subset']} of {z['members']:,d} members of a zip", f"whole archive: {z['whole_archive_bytes']:,d} B",
                          f"range requests: {z['emm1_bytes']:,d} B", f"**{100 * z['bytes_ratio']:.2f} %**"))
    if "rerun" in report:
        r = report["rerun"]
        lines.append(_row(f"rerun, all {r['items']:,d} planned files present", "", _s(r["seconds"]), "target ≤ 2 s"))
    if "youtube_clips" in report:
        c = report["youtube_clips"]
        lines.append(_row(f"{c['clips']} YouTube clips, {c['latency_s'] * 1000:.0f} ms a request "
                          f"({c['requests_per_clip']:.1f} requests a clip)",
                          f"sequential yt-dlp: {c['sequential_items_per_s']:.2f} items/s",
                          f"`--workers {c['workers']}`: {c['emm1_items_per_s']:.2f} items/s", f"**{c['speedup']:.1f}×**"))
    return lines


def render_download_cluster(entry: dict, run: dict) -> List[str]:
    r = entry["result"]
    lines = _head("LocalCluster", "items/s, median (per round)")
    for label, key in (("1 worker process", "items_per_s_1_worker"), ("2 worker processes", "items_per_s_2_workers")):
        lines.append(_row(label, f"{statistics.median(r[key]):.1f} ({', '.join(f'{x:.1f}' for x in r[key])})"))
    lines.append(_row("2 / 1, median of the per-round ratios", f"**{r['ratio']:.2f}×** "
                      f"({', '.join(f'{x:.2f}' for x in r['ratios'])})"))
    lines += ["", f"{r['images']} URL images, {r['latency_s'] * 1000:.0f} ms a request, {r['threads_per_task']} fetch "
              f"threads a task, {r['shard_items']} items a task, {r['rounds']} rounds; cluster start-up not timed."]
    return lines


def render_export_media(entry: dict, run: dict) -> List[str]:
    report = entry["result"]
    lines = _head("what", "this project", "reference", "ratio")
    if "export" in report:
        e = report["export"]
        lines.append(_row("export with media, MB/s (`export_media` vs `push_to_hub`'s embedding, same shards)",
                          f"{e['mb_per_s']['ours']:.0f} MB/s", f"{e['mb_per_s']['push_to_hub_embedding']:.0f} MB/s",
                          f"**{e['ratio']:.2f}×**"))
        lines.append(_row(f"peak RSS of the exporting process (shards of {e['shard_bytes'] / 1e6:.0f} MB)",
                          f"{e['peak_mb']['ours']:.0f} MB", f"{e['peak_mb']['push_to_hub_embedding']:.0f} MB", ""))
    if "streaming" in report and "rows_per_s" in report["streaming"]:
        s = report["streaming"]
        lines.append(_row("decoded rows/s, torch DataLoader with 2 workers: from the stand-in Hub vs the same media "
                          "from local files", f"{s['rows_per_s']['hub']:.0f} rows/s (Hub)",
                          f"{s['rows_per_s']['local']:.0f} rows/s (local)",
                          f"local {s['local_over_hub']:.2f}× faster"))
        if "steady_rows_per_s" in s:
            lines.append(_row("the same, steady state (the second half of the rows)",
                              f"{s['steady_rows_per_s']['hub']:.0f} rows/s (Hub)",
                              f"{s['steady_rows_per_s']['local']:.0f} rows/s (local)",
                              f"local {s['steady_local_over_hub']:.2f}× faster"))
            lines.append(_row("time to the first row (`load_dataset` + `resolve` + DataLoader start)",
                              f"{s['first_row_s']['hub']:.2f} s (Hub)", f"{s['first_row_s']['local']:.2f} s (local)", ""))
        pool = s.get("arrow_memory_pool")
        if pool:
            lines += ["", f"Both streaming sides ran with `ARROW_DEFAULT_MEMORY_POOL={pool}` (docs/publishing.md says why)."]
    embedded = report.get("export", {}).get("embedded_mb")
    lines += ["", f"{report['captions']:,d} rows, {report['media_files_bytes'] / 1e6:.0f} MB of media files (shared by "
              f"the rows" + (f": {embedded:.0f} MB embedded" if embedded else "") + "); best of "
              f"{report['rounds']} interleaved rounds, each measurement in a fresh process."]
    return lines


# -- the benchmark set ---------------------------------------------------------------------------------------------

def _tree(opts, flag_value: Optional[str]) -> List[str]:
    return ["--tree-dir", flag_value] if flag_value else []


def _quick_tree(opts) -> List[str]:
    return ["--scale", str(QUICK_SCALE), "--tree-dir", os.path.join(opts.work_dir, f"tree-{QUICK_SCALE:g}")]


BENCHMARKS = [
    # Estimates for a quiet machine with the trees and the pre-joined copy already there: phase1 6m19s and prejoined
    # 4m39s measured quiet; phase1_all at 0.25: 201 s at load 9-12; decode: 96 s a round at load 5; the others: their
    # wall_s in docs/perf-run.json's partial run at load 4-10 (download 201 s, export_media 244 s, streaming 95 s,
    # download_cluster 94 s), rounded down for a quiet machine; phase1_all_full: 2.1 min measured (load 4-6). Total
    # ~34 min, within BUDGET_S (the run of 2 Dec 2026 16:12 UTC took 16 min on a VM that writes faster).
    Benchmark("phase1", "phase1.py", 390,
              lambda o: [*_tree(o, o.tree_dir), "--work-dir", os.path.join(o.work_dir, "phase1"), "--repeats", "3",
                         "--contenders", PHASE1_CONTENDERS, "--extras", "warm"],
              lambda o: [*_quick_tree(o), "--work-dir", os.path.join(o.work_dir, "phase1"), "--repeats", "1",
                         "--contenders", PHASE1_CONTENDERS, "--extras", "warm"],
              render_phase1),
    Benchmark("prejoined", "prejoined.py", 285,
              lambda o: [*_tree(o, o.tree_dir), "--work-dir", os.path.join(o.work_dir, "prejoined"), "--repeats", "3",
                         "--verify"],
              lambda o: [*_quick_tree(o), "--hub-dir", os.path.join(o.work_dir, "hub"), "--work-dir",
                         os.path.join(o.work_dir, "prejoined"), "--repeats", "1", "--verify"],
              render_prejoined),
    Benchmark("phase1_all", "phase1.py", 210,
              lambda o: ["--scale", "0.25", *_tree(o, o.quarter_tree_dir), "--work-dir", os.path.join(o.work_dir, "all"),
                         "--repeats", "1", "--contenders", "builder", "--extras", "all", "--num-proc", "2"],
              lambda o: [*_quick_tree(o), "--work-dir", os.path.join(o.work_dir, "all"), "--repeats", "1",
                         "--contenders", "builder", "--extras", "all", "--num-proc", "2"],
              render_phase1),
    # phase1_all at full size: ~51 GB of Arrow with the lean options (phase1.py refuses to start it without the disk).
    Benchmark("phase1_all_full", "phase1.py", 240,
              lambda o: [*_tree(o, o.tree_dir), "--work-dir", os.path.join(o.work_dir, "all-full"), "--repeats", "1",
                         "--contenders", "builder", "--extras", "all", "--num-proc", "2", "--options", LEAN_OPTIONS],
              lambda o: [*_quick_tree(o), "--work-dir", os.path.join(o.work_dir, "all-full"), "--repeats", "1",
                         "--contenders", "builder", "--extras", "all", "--num-proc", "2", "--options", LEAN_OPTIONS],
              render_phase1),
    Benchmark("phase1_lean", "phase1.py", 20,
              lambda o: ["--scale", "0.25", *_tree(o, o.quarter_tree_dir), "--work-dir", os.path.join(o.work_dir, "lean"),
                         "--repeats", "1", "--contenders", "builder", "--extras", "", "--options", LEAN_OPTIONS],
              lambda o: [*_quick_tree(o), "--work-dir", os.path.join(o.work_dir, "lean"), "--repeats", "1",
                         "--contenders", "builder", "--extras", "", "--options", LEAN_OPTIONS],
              render_lean),
    Benchmark("decode", "decode.py", 300,
              lambda o: ["--rounds", "3", *_decode_routes()],
              lambda o: ["--files", "8", "--rounds", "1", "--passes", "1", *_decode_routes()],
              render_decode),
    Benchmark("streaming", "streaming.py", 120,
              lambda o: ["--repeats", "3", "--rows", "30000"],
              lambda o: ["--scale", "0.001", "--rows", "500", "--repeats", "1", "--tree-dir",
                         os.path.join(o.work_dir, "stream-tree")],
              render_streaming),
    Benchmark("eshot_metric", "eshot_metric.py", 15, lambda o: [],
              lambda o: ["--repeats", "1", "--scale-queries", "2000", "--scale-categories", "50", "--scale-dim", "64"],
              render_eshot),
    Benchmark("load_route", "load_route.py", 15, lambda o: ["--work-dir", os.path.join(o.work_dir, "load_route")],
              lambda o: ["--media-files", "200", "--captions", "300", "--rounds", "1", "--work-dir",
                         os.path.join(o.work_dir, "load_route")],
              render_load_route),
    Benchmark("download", "download.py", 180, lambda o: [],
              lambda o: ["--images", "20", "--zip-members", "300", "--rerun-items", "500", "--clips", "4",
                         "--latency", "0.01", "--clip-latency", "0.01"],
              render_download),
    Benchmark("download_cluster", "download_cluster.py", 90, lambda o: [],
              lambda o: ["--images", "20", "--rounds", "1", "--latency", "0"],
              render_download_cluster),
    Benchmark("export_media", "export_media.py", 200,
              lambda o: ["--rounds", "3", "--work-dir", os.path.join(o.work_dir, "export_media")],
              lambda o: ["--captions", "60", "--rounds", "1", "--work-dir", os.path.join(o.work_dir, "export_media")],
              render_export_media),
]
BY_NAME = {b.name: b for b in BENCHMARKS}


def _decode_routes() -> List[str]:
    """Without torch the DataLoader route cannot run: the other three are measured."""
    return [] if importlib.util.find_spec("torch") else ["--routes", "rows,getitem,iter"]


# -- the machine -----------------------------------------------------------------------------------------------------

def machine() -> Dict[str, Any]:
    """What the figures were measured on: CPU, memory, OS, Python and the libraries of this interpreter."""
    cpu = memory = os_name = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
        with open("/proc/meminfo") as f:
            memory = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal"))
        with open("/etc/os-release") as f:
            os_name = next((line.split("=", 1)[1].strip().strip('"') for line in f if line.startswith("PRETTY_NAME")), None)
    except OSError:
        pass
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu": cpu or platform.processor() or platform.machine(), "vcpus": os.cpu_count(), "memory_bytes": memory,
            "os": os_name or platform.system(), "kernel": platform.release(), "python": platform.python_version(),
            "libraries": versions}


def git_state() -> Dict[str, Any]:
    def git(*args) -> str:
        return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "--short=12", "HEAD"),
                "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "uncommitted_changes": None}


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _load() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- running ---------------------------------------------------------------------------------------------------------

def command_line(bench: Benchmark, argv: List[str]) -> str:
    """The command as a reader runs it from the repository's root (this script adds `--json FILE`)."""
    return shlex.join(["python", f"benchmarks/{bench.script}", *argv])


def run_benchmark(bench: Benchmark, argv: List[str], json_path: str, log) -> Dict[str, Any]:
    """Run one benchmark script in a fresh process; its figures plus load average, wall time and command."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    command = [sys.executable, os.path.join(HERE, bench.script), *argv, "--json", json_path]
    if os.path.exists(json_path):
        os.remove(json_path)  # a reused --work-dir must not hand an earlier run's figures to this one
    # A precaution between benchmarks (not between the contenders inside one): whatever an earlier benchmark left
    # to write back to disk is written now, not while this one is timed. The time it took is recorded.
    flushing = time.perf_counter()
    os.sync()
    flushed_s = round(time.perf_counter() - flushing, 2)
    entry = {"command": command_line(bench, argv), "started": _utc_now(), "load_before": _load(), "sync_s": flushed_s}
    highest = [entry["load_before"][0]]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(5):
            highest[0] = max(highest[0], os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    tail: List[str] = []
    try:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        for line in process.stdout:
            print(f"[{bench.name}] {line}", end="", file=log, flush=True)
            tail = (tail + [line])[-40:]
        status = process.wait()
    finally:
        done.set()
        sampler.join()
    entry.update(wall_s=round(time.perf_counter() - started, 1), load_after=_load(), load_max=round(highest[0], 2))
    if status != 0:
        raise RuntimeError(f"{entry['command']} failed with exit status {status}; its last lines:\n{''.join(tail)}")
    if not os.path.exists(json_path):
        raise RuntimeError(f"{entry['command']} exited 0 but wrote no {json_path}; its last lines:\n{''.join(tail)}")
    with open(json_path) as f:
        entry["result"] = json.load(f)
    return entry


def load_run(path: str) -> Dict[str, Any]:
    if not os.path.exists(path):
        return {"format": 1, "runs": {}, "benchmarks": {}}
    with open(path) as f:
        run = json.load(f)
    if run.get("format") != 1:
        raise SystemExit(f"{path}: not a stored run of benchmarks/report.py (format {run.get('format')!r})")
    return run


def save_run(run: Dict[str, Any], path: str) -> None:
    used = {entry["run"] for entry in run["benchmarks"].values()}
    run["runs"] = {key: value for key, value in run["runs"].items() if key in used}
    tmp = path + ".part"
    with open(tmp, "w") as f:
        json.dump(run, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


# -- the page --------------------------------------------------------------------------------------------------------

def _marker(name: str):
    return re.compile(rf"(<!-- report:{re.escape(name)} -->\n)(.*?)(<!-- /report:{re.escape(name)} -->)", re.S)


def _seconds_text(seconds: float) -> str:
    return "under 0.1 s" if seconds < 0.1 else f"{seconds:.1f} s"


def _load_text(load: List[float]) -> str:
    return f"{load[0]:.1f}"


def render_entry(name: str, entry: Optional[dict], run: dict) -> List[str]:
    if entry is None:
        return [f"_Not in the stored run: `python benchmarks/report.py --only {name}` measures it._"]
    meta = run["runs"][entry["run"]]
    load = [f"{_load_text(entry[key])} {label}" for key, label in
            (("load_before", "before"), ("load_after", "after")) if entry.get(key)]
    if entry.get("load_max") is not None:
        load.append(f"highest {entry['load_max']:.1f} while it ran")
    lines = [f"Measured {entry['started'].replace('T', ' ').replace('Z', ' UTC')} (run {entry['run']}, commit "
             f"`{meta['git']['commit']}`), {entry['wall_s'] / 60:.1f} min; "
             + (f"load average (1 min) {', '.join(load)}" if load else "load average not recorded")
             + (f"; flush of earlier writes before it: {_seconds_text(entry['sync_s'])}" if entry.get("sync_s") is not None else "")
             + (f" ({entry['note']})" if entry.get("note") else "") + ":", "", "```bash", entry["command"], "```", ""]
    try:
        return lines + BY_NAME[name].render(entry, run)
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError, StopIteration) as err:
        # a script's --json output changed shape: the run is kept, the block says so, main() exits non-zero
        return lines + [f"_{RENDER_ERROR} ({type(err).__name__}: {err}); the raw figures are in docs/perf-run.json._"]


def render_runs(run: dict) -> List[str]:
    if not run["runs"]:
        return ["_No stored run yet: `python benchmarks/report.py` measures every section._"]
    lines, machines = [], []
    for key, meta in sorted(run["runs"].items()):
        names = [b.name for b in BENCHMARKS if run["benchmarks"].get(b.name, {}).get("run") == key]
        commit = f"`{meta['git']['commit']}`" + (" with uncommitted changes" if meta["git"]["uncommitted_changes"] else "")
        when = meta["started"].replace("T", " ").replace("Z", "")
        if meta["finished"] != meta["started"]:
            when += " to " + meta["finished"].replace("T", " ").replace("Z", "")
        lines += [f"**Run {key}** ({when} UTC), commit {commit}"
                  + (", **`--quick`: tiny scales, not figures to quote**" if meta.get("quick") else "")
                  + f"; sections: {', '.join(names)}." + (f" {meta['note']}" if meta.get("note") else ""),
                  "", "```bash", meta["command"], "```", ""]
        if meta["machine"] not in machines:
            machines.append(meta["machine"])
    for m in machines:
        lib = m["libraries"]
        lines.append(f"Machine{' of every run above' if len(machines) == 1 and len(run['runs']) > 1 else ''}: "
                     f"{m['cpu']}, {m['vcpus']} vCPUs, {(m['memory_bytes'] or 0) / 2**30:.1f} GiB of memory, "
                     f"{m['os']} (Linux {m['kernel']}), Python {m['python']}; "
                     + ", ".join(f"{k} {lib[k]}" for k in sorted(lib) if lib[k]) + ".")
    return lines


RENDER_ERROR = "The figures of this entry could not be rendered"


def render_page(text: str, run: dict, page_name: str = "the page") -> str:
    """The page with every generated block rewritten from `run`; every benchmark's marker must be there once."""
    blocks = {"run": render_runs(run)}
    for bench in BENCHMARKS:
        blocks[bench.name] = render_entry(bench.name, run["benchmarks"].get(bench.name), run)
    for name, lines in blocks.items():
        pattern = _marker(name)
        found = pattern.findall(text)
        if len(found) != 1:
            raise SystemExit(f"{page_name}: expected one `<!-- report:{name} -->` ... `<!-- /report:{name} -->` block, "
                             f"found {len(found)}; add it where the figures of {name} belong")
        text = pattern.sub(lambda match: match.group(1) + "\n".join(lines) + "\n" + match.group(3), text)
    return text


def write_page(page: str, run: dict) -> bool:
    """Rewrite the page's blocks from `run`; False if a block could not be rendered (it says so on the page)."""
    with open(page, encoding="utf-8") as f:
        text = f.read()
    new = render_page(text, run, page)
    with open(page, "w", encoding="utf-8") as f:
        f.write(new)
    if RENDER_ERROR in new:
        print(f"{page}: some blocks could not be rendered from the stored run; search the page for "
              f"\"{RENDER_ERROR}\"", file=sys.stderr)
        return False
    return True


# -- main ------------------------------------------------------------------------------------------------------------

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree-dir", help="the real-sized full phase-1 tree (phase1, prejoined); default: generated "
                                           "as phase1.py does, ~/.cache/emm1/bench-real-full")
    parser.add_argument("--quarter-tree-dir", help="the real-sized tree at scale 0.25 (phase1_all, phase1_lean); "
                                                   "default: generated, ~/.cache/emm1/bench-real-0.25")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BY_NAME)}")
    parser.add_argument("--quick", action="store_true", help="tiny scales and 1 repeat (a smoke run; needs --page and "
                                                             "--json away from the docs')")
    parser.add_argument("--render-only", metavar="RUN_JSON", help="rewrite the page from this stored run; run nothing")
    parser.add_argument("--plan", action="store_true", help="print the commands and their time estimates; run nothing")
    parser.add_argument("--page", default=DEFAULT_PAGE, help="the page to rewrite (default docs/performance.md)")
    parser.add_argument("--json", default=DEFAULT_JSON, help="the stored run the figures are merged into "
                                                             "(default docs/perf-run.json)")
    parser.add_argument("--work-dir", help="scratch space for trees of --quick and prepared outputs (default: a "
                                           "temporary folder, removed at the end)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.only.split(",") if n and n not in BY_NAME]
    if unknown:
        parser.error(f"--only: unknown benchmarks {unknown}; choose from {','.join(BY_NAME)}")
    if args.quick and (os.path.abspath(args.page) == DEFAULT_PAGE or os.path.abspath(args.json) == DEFAULT_JSON):
        parser.error("--quick measures tiny scales: give --page and --json copies, not docs/performance.md and "
                     "docs/perf-run.json")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        rendered = write_page(args.page, load_run(args.render_only))
        print(f"rewrote {args.page} from {args.render_only}")
        return 0 if rendered else 1
    selected = [BY_NAME[n] for n in args.only.split(",") if n] or BENCHMARKS
    own_work = args.work_dir is None
    args.work_dir = os.path.abspath(args.work_dir or tempfile.mkdtemp(prefix="emm1-report-"))
    plan = [(bench, (bench.quick if args.quick else bench.args)(args)) for bench in selected]
    total = sum(b.estimate_s for b, _ in plan)
    for bench, bench_argv in plan:
        print(f"{bench.name:17s} ~{bench.estimate_s / 60:4.1f} min  {command_line(bench, bench_argv)}")
    print(f"estimated {total / 60:.1f} min on a quiet 2-vCPU machine" + (" (default arguments; --quick is much less)"
                                                                        if args.quick else f" (budget {BUDGET_S / 60:.0f} min)"))
    if args.plan:
        if own_work:
            shutil.rmtree(args.work_dir, ignore_errors=True)
        return 0
    run = load_run(args.json)
    key = _utc_now()
    meta = {"started": key, "command": shlex.join(["python", "benchmarks/report.py", *(argv if argv is not None else
                                                                                         sys.argv[1:])]),
            "machine": machine(), "git": git_state(), "quick": args.quick}
    failures = []
    os.makedirs(args.work_dir, exist_ok=True)
    try:
        for bench, bench_argv in plan:
            print(f"== {bench.name}: load average {_load()}", flush=True)
            try:
                entry = run_benchmark(bench, bench_argv, os.path.join(args.work_dir, f"{bench.name}.json"), sys.stdout)
            except RuntimeError as err:
                failures.append(str(err))
                print(err, file=sys.stderr, flush=True)
                continue
            entry["run"] = key
            run["benchmarks"][bench.name] = entry
            run["runs"][key] = {**meta, "finished": _utc_now()}
            save_run(run, args.json)  # after each benchmark: an interrupted run keeps what it measured
            if not write_page(args.page, load_run(args.json)):  # the page is what the stored file renders
                failures.append(f"{bench.name}: its figures could not be rendered (see the page)")
    finally:
        if own_work:
            shutil.rmtree(args.work_dir, ignore_errors=True)
    print(f"wrote {args.json} and {args.page}")
    if failures:
        print(f"{len(failures)} benchmark(s) failed; their sections keep their earlier figures:\n" + "\n".join(failures),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
