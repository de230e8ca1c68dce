"""The package's layers and the one direction of imports between them (README, "Architecture").

errors.py -> io/ -> schema/ -> media/ -> builders/ -> tools/; evaluation/ (the EShot protocol) stands
alone; testing/ (sample generators) and acquire/ (media downloads) sit beside builders and may use io,
schema and media. A
lower layer never imports a higher one, and nothing but tools/ imports tools/.
"""
import ast
import json
import pathlib
import subprocess
import sys
from typing import Dict, List, Set, Tuple

import pytest

from emm1_lib.builders.compat import prepared_data_sources

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = REPO / "emm1_lib"
LAYERS = ("io", "schema", "media", "evaluation", "builders", "acquire", "tools", "testing")
# What each part may import from the package (itself always allowed).
ALLOWED: Dict[str, Set[str]] = {
    "errors": set(),
    "io": {"errors"},
    "schema": {"errors", "io"},
    "media": {"errors", "io", "schema"},
    "evaluation": set(),
    "builders": {"errors", "io", "schema", "media"},
    "acquire": {"errors", "io", "schema", "media"},
    "testing": {"errors", "io", "schema", "media"},
    "tools": {"errors", "io", "schema", "media", "evaluation", "builders", "acquire", "testing"},
}
TOP_LEVEL_MODULES = {"emm1.py": ALLOWED["builders"] | {"builders"}, "eshot.py": ALLOWED["builders"] | {"builders"},
                     "metrics/eshot/eshot.py": {"evaluation"}}


def _part_of(module: str) -> str:
    """'emm1_lib.schema.paths' -> 'schema'; 'emm1_lib.errors' -> 'errors'; '' for the package itself."""
    names = module.split(".")
    return names[1] if len(names) > 1 else ""


def _package_of(path: pathlib.Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])


def _imports(path: pathlib.Path, package: str) -> List[Tuple[int, str]]:
    """(line, absolute module) of every import of the package in a file, function-level ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "emm1_lib"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "emm1_lib":
                continue
            if module == "emm1_lib":  # `from emm1_lib import io` names the part in the alias
                found += [(node.lineno, f"emm1_lib.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return found


def _violations(path: pathlib.Path, own_part: str, allowed: Set[str], package: str = "") -> List[str]:
    return [
        f"{path.name}:{line}: {own_part or path.name} imports {module}"
        for line, module in _imports(path, package or _package_of(path))
        if _part_of(module) not in allowed | {own_part}
    ]


def test_every_module_lives_in_a_layer():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "errors.py"))
    assert not loose, f"modules outside the layers: {loose}; put each in the folder of its layer"
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(LAYERS)


def test_imports_point_one_way():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        part = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if part == "__init__":
            continue
        problems += _violations(path, part, ALLOWED[part])
    for name, allowed in TOP_LEVEL_MODULES.items():
        problems += _violations(REPO / name, "", allowed)
    assert not problems, "upward or tools/ imports:\n" + "\n".join(problems)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The walk above finds function-level, relative and `from emm1_lib import x` imports alike."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ..tools import cli\n    from emm1_lib import media\n    import emm1_lib.builders.emm1\n")
    found = _violations(probe, "schema", ALLOWED["schema"], package="emm1_lib.schema")
    assert [v.split(": ", 1)[1] for v in found] == [
        "schema imports emm1_lib.tools", "schema imports emm1_lib.media", "schema imports emm1_lib.builders.emm1"
    ]


@pytest.mark.parametrize("module", ["emm1", "eshot"])
def test_importing_a_builder_module_loads_no_tools(module):
    code = f"import json, sys; import {module}; print(json.dumps(sorted(m for m in sys.modules if m.startswith('emm1_lib'))))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO), check=True)
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert f"emm1_lib.builders.{module}" in loaded
    assert not [m for m in loaded if _part_of(m) in ("tools", "testing", "evaluation", "acquire")], loaded


def test_the_metric_imports_only_the_protocol_core():
    metric = REPO / "metrics" / "eshot" / "eshot.py"
    imported = {_part_of(module) for _, module in _imports(metric, _package_of(metric))}
    assert imported == {"evaluation"}


def test_the_cache_key_covers_what_prepared_data_depends_on_and_nothing_else():
    sources = [pathlib.Path(p).resolve() for p in prepared_data_sources(str(REPO / "emm1.py"))]
    parts = {p.relative_to(PACKAGE).parts[0] for p in sources if PACKAGE in p.parents}
    assert parts == {"errors.py", "io", "schema", "media", "builders"}
    for layer in ("io", "schema", "media", "builders"):
        assert set((PACKAGE / layer).glob("*.py")) <= set(sources), layer
    assert not [p for p in sources if PACKAGE in p.parents and p.relative_to(PACKAGE).parts[0] in ("tools", "testing", "acquire")]
