"""benchmarks/report.py: one run fills the page's generated blocks, and the page is a function of the stored run.

The smoke run measures two cheap benchmarks at tiny scales (`--quick`) into copies of the page and the stored
run. No timing is asserted.
"""
import json
import os
import re
import shutil
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import report  # noqa: E402

QUICK = ("eshot_metric", "load_route")


def _block(text: str, name: str) -> str:
    match = re.search(rf"<!-- report:{name} -->\n(.*?)<!-- /report:{name} -->", text, re.S)
    assert match, f"no block {name}"
    return match.group(1)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    page, stored = folder / "performance.md", folder / "perf-run.json"
    shutil.copy(report.DEFAULT_PAGE, page)
    status = report.main(["--quick", "--only", ",".join(QUICK), "--page", str(page), "--json", str(stored),
                          "--work-dir", str(folder / "work")])
    assert status == 0
    return folder, page, stored


def test_quick_run_fills_the_blocks_with_commands_and_figures(quick_run):
    folder, page, stored = quick_run
    text = page.read_text(encoding="utf-8")
    run = json.loads(stored.read_text())
    assert set(run["benchmarks"]) == set(QUICK)
    (meta,) = run["runs"].values()
    assert meta["quick"] and meta["machine"]["vcpus"] == os.cpu_count() and meta["git"]["commit"]
    assert meta["machine"]["libraries"]["datasets"] and meta["machine"]["libraries"]["pyarrow"]
    header = _block(text, "run")
    assert "python benchmarks/report.py --quick --only eshot_metric,load_route" in header
    assert f"{os.cpu_count()} vCPUs" in header and "not figures to quote" in header
    for name in QUICK:
        entry = run["benchmarks"][name]
        assert len(entry["load_before"]) == 3 and len(entry["load_after"]) == 3 and entry["wall_s"] > 0
        block = _block(text, name)
        assert entry["sync_s"] >= 0 and f"flush of earlier writes before it: {report._seconds_text(entry['sync_s'])}" in block
        command = f"python benchmarks/{name}.py "
        assert f"```bash\n{command}" in block and entry["command"].startswith(command)
        assert "--json" not in entry["command"]  # the command as a reader runs it; report.py adds --json
        table = [line for line in block.splitlines() if line.startswith("| ")]
        assert len(table) >= 4 and any(re.search(r"\d+\.\d+", line) for line in table[2:]), block
        assert f"commit `{meta['git']['commit']}`" in block
    assert "_Not in the stored run: `python benchmarks/report.py --only phase1`" in _block(text, "phase1")
    assert "**" in _block(text, "load_route") and "(target ≤ 2)" in _block(text, "load_route")
    assert run["benchmarks"]["load_route"]["result"]["rows"] == 300  # the quick tree's captions


def test_render_only_is_deterministic(quick_run, tmp_path):
    folder, page, stored = quick_run
    again = tmp_path / "again.md"
    shutil.copy(report.DEFAULT_PAGE, again)
    assert report.main(["--render-only", str(stored), "--page", str(again)]) == 0
    assert again.read_text(encoding="utf-8") == page.read_text(encoding="utf-8")
    assert report.main(["--render-only", str(stored), "--page", str(again)]) == 0  # rendering its own output
    assert again.read_text(encoding="utf-8") == page.read_text(encoding="utf-8")


def test_the_docs_page_is_what_its_stored_run_renders():
    """Figures edited by hand inside a generated block, or a page not regenerated after a run, fail here."""
    with open(report.DEFAULT_PAGE, encoding="utf-8") as f:
        text = f.read()
    assert report.render_page(text, report.load_run(report.DEFAULT_JSON)) == text
    assert report.RENDER_ERROR not in text


def test_a_result_of_another_shape_is_reported_on_the_page(quick_run, tmp_path):
    """A script whose --json output changed shape: the block says so and the exit status is not 0."""
    folder, page, stored = quick_run
    run = json.loads(stored.read_text())
    del run["benchmarks"]["load_route"]["result"]["median"]
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(run))
    copy = tmp_path / "page.md"
    shutil.copy(page, copy)
    assert report.main(["--render-only", str(changed), "--page", str(copy)]) == 1
    block = _block(copy.read_text(encoding="utf-8"), "load_route")
    assert report.RENDER_ERROR in block and "KeyError" in block and "python benchmarks/load_route.py" in block


def test_a_page_without_a_block_is_refused(tmp_path):
    page = tmp_path / "p.md"
    text = open(report.DEFAULT_PAGE, encoding="utf-8").read()
    page.write_text(re.sub(r"<!-- report:decode -->.*?<!-- /report:decode -->\n", "", text, flags=re.S), encoding="utf-8")
    with pytest.raises(SystemExit, match="report:decode"):
        report.main(["--render-only", report.DEFAULT_JSON, "--page", str(page)])


def test_quick_mode_refuses_the_docs_page():
    with pytest.raises(SystemExit):
        report.parse_args(["--quick", "--only", "eshot_metric"])
