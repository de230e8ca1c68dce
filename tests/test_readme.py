"""The code blocks of README.md and docs/*.md still parse, and run where they can.

Each document is a session, run in order like a reader would: Python blocks share one namespace, and shell
commands run in the same working folder. That folder stands in for a checkout of the repository (links to
`emm1.py`, `eshot.py`, `emm1_lib/`, `metrics/`, `benchmarks/`, `tests/`, `dataset_card/`) holding the sample
tree `emm1-sample/`, written by the document's own `emm1 sample emm1-sample` or, when it has none, by the
generator beforehand. The `datasets` cache and `$EMM1_CACHE` point into the session; nothing reaches the
network.

One test item per Python block and per shell command:
- Python blocks compile, then run.
- `emm1` / `eshot` commands are parsed by the real command-line entry points (`emm1_lib.tools.cli.main`,
  `emm1_lib.tools.eshot_cli.main`, which hand `export` / `validate` to their own parsers), then run in-process.
- `python benchmarks/X.py ...` is parsed by the script's own parser, not run (benchmarks take minutes).
- pip, venv, `python -m pytest`, Hub and `dask scheduler` / `dask worker` commands are recognised and skipped with
  their reason.
- Any other command fails: teach this file how to check it.
A block preceded by `<!-- docs-test: no-run: REASON -->` is only compiled / parsed; one preceded by
`<!-- docs-test: only-with REQUIREMENT -->` (`torch`, `datasets<4`) runs only where that holds. Every step
that does not run is a pytest skip with its reason (`pytest -rs tests/test_readme.py` lists them).
"""
import argparse
import contextlib
import dataclasses
import glob
import importlib
import io
import json
import os
import re
import runpy
import shlex
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple
from unittest import mock

import datasets
import pytest
from packaging.requirements import Requirement

from emm1_lib.testing.sample import SampleTree
from emm1_lib.testing.sample import generate_sample_tree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md"] + sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
# What the sessions link from the repository: the files and folders the documents refer to.
CHECKOUT_ENTRIES = ("emm1.py", "eshot.py", "emm1_lib", "metrics", "benchmarks", "tests", "dataset_card")
SAMPLE = "emm1-sample"
CODE_LANGUAGES = ("python", "bash")
TEXT_LANGUAGES = ("text",)  # trees, output: not commands


def _sample_layout_has_metadata_folder() -> bool:
    """Whether the sample generator writes `OUT/metadata/` beside the media root `OUT/media/`."""
    return "metadata_dir" in {f.name for f in dataclasses.fields(SampleTree)}


def _sample_paths(text: str) -> str:
    """The documents' sample paths for the generator in use (a generator without the metadata/media split
    writes both into `emm1-sample/` itself)."""
    if _sample_layout_has_metadata_folder():
        return text
    return text.replace(f"{SAMPLE}/metadata", SAMPLE).replace(f"{SAMPLE}/media", SAMPLE)


# -- reading the documents --------------------------------------------------------------------------------

@dataclasses.dataclass
class Block:
    doc: str
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    section: str  # the enclosing "## " heading
    marker: Optional[str]  # the text of a `<!-- docs-test: ... -->` comment right before the fence


_FENCE = re.compile(r"^```(.*)$")
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->$")


def read_blocks(path: str, doc: str) -> List[Block]:
    """The fenced code blocks of a Markdown file, with their line, language, section and marker."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks, section, previous, i = [], "", "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        fence = _FENCE.match(line)
        if fence:
            start, body = i, []
            i += 1
            while i < len(lines) and lines[i] != "```":
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise AssertionError(f"{doc}:{start + 1}: code block never closed")
            marker = _MARKER.match(previous.strip())
            blocks.append(Block(doc, start + 1, fence.group(1).strip(), "\n".join(body) + "\n", section,
                                marker.group(1) if marker else None))
        elif line.strip():
            previous = line
        i += 1
    return blocks


def shell_commands(code: str) -> List[Tuple[int, List[str]]]:
    """(line offset, tokens) of every command of a shell block: continuation lines joined, comments dropped,
    `&&` / `;` chains split into their commands (`>` stays a token)."""
    logical, offset, pending = [], 0, ""
    for number, line in enumerate(code.split("\n")):
        if not pending:
            offset = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append((offset, pending + line))
        pending = ""
    commands = []
    for offset, line in logical:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
        lexer.whitespace_split = True
        tokens, current = list(lexer), []
        for token in tokens + [";"]:
            if token in ("&&", ";"):
                if current:
                    commands.append((offset, current))
                current = []
            elif token in ("|", "||", "&", "<"):
                raise AssertionError(f"shell operator {token!r} in {line!r}: the docs test checks plain commands, "
                                     "`&&` chains and `> FILE` only")
            else:
                current.append(token)
    return commands


# -- steps ------------------------------------------------------------------------------------------------

class _Parsed(BaseException):  # not an Exception: an entry point's `except Exception` must not catch it
    """Raised by the patched `ArgumentParser.parse_args` once it has parsed: parse without running."""


def parse_with_entry_point(entry: Callable[[], Any], label: str) -> None:
    """Call `entry` (which parses a command line with argparse) and stop right after the parse.

    A bad command line makes argparse exit with status 2 and a message: that fails, with the message.
    """
    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    err = io.StringIO()
    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_args), contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        try:
            entry()
        except _Parsed:
            return
        except SystemExit as exit_:
            if exit_.code in (0, None):  # --help, --version
                return
            raise AssertionError(f"{label}: the command line does not parse (exit {exit_.code}):\n{err.getvalue()}")
    raise AssertionError(f"{label}: no argparse parser ran, so nothing checked the command line")


def _entry_point(program: str) -> Callable[[List[str]], Optional[int]]:
    module = {"emm1": "emm1_lib.tools.cli", "eshot": "emm1_lib.tools.eshot_cli"}[program]
    return importlib.import_module(module).main


def _requirement_met(text: str) -> Tuple[bool, str]:
    requirement = Requirement(text)
    try:
        module = importlib.import_module(requirement.name)
    except Exception as err:  # noqa: BLE001 - any import failure means "not available here"
        return False, f"needs {text}: `import {requirement.name}` fails here ({type(err).__name__})"
    version = getattr(module, "__version__", "0").split("+")[0]
    if requirement.specifier and version not in requirement.specifier:
        return False, f"needs {text}; this is {requirement.name} {version}"
    return True, ""


@dataclasses.dataclass
class Step:
    block: Block
    line: int
    kind: str  # "python" or a shell command's program
    argv: List[str] = dataclasses.field(default_factory=list)
    env: Dict[str, str] = dataclasses.field(default_factory=dict)
    stdout_file: Optional[str] = None
    only_with: Optional[str] = None  # a requirement (`torch`, `datasets<4`) without which the step does not run
    skip_reason: Optional[str] = None  # recognised, not run
    parse_only_reason: Optional[str] = None  # compiled / parsed, not run

    @property
    def id(self) -> str:
        what = "python" if self.kind == "python" else " ".join(self.argv)[:60]
        return f"{self.block.doc}:{self.line} {what}"


def _python_program(argv: List[str]) -> bool:
    return os.path.basename(argv[0]) in ("python", "python3")


def classify(block: Block) -> List[Step]:
    """The steps of a code block: one per Python block, one per shell command."""
    no_run = only_with = None
    if block.marker:
        kind, _, value = block.marker.partition(" ")
        if kind == "no-run:":
            no_run = value.strip()
        elif kind == "only-with":
            only_with = value.strip()
        else:
            raise AssertionError(f"{block.doc}:{block.line}: unknown docs-test marker {block.marker!r} "
                                 "(use `no-run: REASON` or `only-with REQUIREMENT`)")
    if block.language == "python":
        return [Step(block, block.line + 1, "python", only_with=only_with, parse_only_reason=no_run)]
    steps = []
    for offset, tokens in shell_commands(block.code):
        env = {}
        while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
            name, _, value = tokens.pop(0).partition("=")
            env[name] = value
        stdout_file = None
        if ">" in tokens:
            at = tokens.index(">")
            if at != len(tokens) - 2:
                raise AssertionError(f"{block.doc}:{block.line + 1 + offset}: `>` must be followed by one file name")
            stdout_file, tokens = tokens[at + 1], tokens[:at]
        program = os.path.basename(tokens[0])
        step = Step(block, block.line + 1 + offset, program, tokens, env, stdout_file, only_with, parse_only_reason=no_run)
        if program in ("emm1", "eshot"):
            pass
        elif _python_program(tokens) and tokens[1:3] == ["-m", "venv"]:
            step.skip_reason = "creates a virtual environment (`python -m venv`): not run by the tests"
        elif program == "pip" or (_python_program(tokens) and tokens[1:3] == ["-m", "pip"]):
            step.skip_reason = "installs packages from a package index (network): not run by the tests"
        elif _python_program(tokens) and tokens[1:3] == ["-m", "pytest"]:
            step.kind = "pytest"
        elif _python_program(tokens) and len(tokens) > 1 and tokens[1].startswith("benchmarks/"):
            step.kind = "benchmark"
        elif program in ("hf", "huggingface-cli"):
            step.skip_reason = "talks to the Hugging Face Hub (network, token): not run by the tests"
        elif program == "dask" and tokens[1:2] in (["scheduler"], ["worker"]):
            step.skip_reason = "starts a Dask scheduler or worker (a server that runs until stopped): not run by the tests"
        else:
            raise AssertionError(f"{block.doc}:{step.line}: unrecognised command {' '.join(tokens)!r}. "
                                 "tests/test_readme.py checks emm1, eshot, python benchmarks/..., python -m pytest, "
                                 "pip, venv, hf and dask scheduler/worker commands; teach it how to check this one.")
        steps.append(step)
    return steps


def collect_steps() -> List[Step]:
    steps = []
    for doc in DOCS:
        for block in read_blocks(os.path.join(REPO, doc), doc):
            if block.language in CODE_LANGUAGES:
                steps.extend(classify(block))
    return steps


class StepFailure(AssertionError):
    """A step that did not compile, parse or run, with what it printed or raised."""


# -- sessions ---------------------------------------------------------------------------------------------

class Session:
    """One document, run step by step in its own working folder (a stand-in for the checkout)."""

    def __init__(self, doc: str, steps: List[Step], folder: str):
        self.doc, self.steps, self.folder = doc, steps, folder
        self.namespace: Dict[str, Any] = {"__name__": "__docs_session__"}
        self.outputs: Dict[int, Any] = {}  # step index -> what it printed, or its StepFailure
        self.done = 0
        self.failures: List[str] = []
        for entry in CHECKOUT_ENTRIES:
            os.symlink(os.path.join(REPO, entry), os.path.join(folder, entry))
        writes_sample = any(s.kind == "emm1" and s.argv[1:3] == ["sample", SAMPLE] and self.runs(s)[0] for s in steps)
        if not writes_sample:
            generate_sample_tree(os.path.join(folder, SAMPLE))

    def runs(self, step: Step) -> Tuple[bool, str]:
        """Whether the step runs here, or why not."""
        if step.skip_reason:
            return False, step.skip_reason
        if step.only_with:
            met, why = _requirement_met(step.only_with)
            if not met:
                return False, why
        if step.parse_only_reason:
            return False, step.parse_only_reason
        if step.kind in ("pytest", "benchmark"):
            return False, {"pytest": "runs the test suite, which this test is part of",
                           "benchmark": "a benchmark (minutes at full size)"}[step.kind]
        return True, ""

    @contextlib.contextmanager
    def _environment(self, step: Step):
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(self.folder)
            patch.setenv("EMM1_CACHE", os.path.join(self.folder, ".emm1-cache"))
            patch.setenv("HF_HUB_OFFLINE", "1")
            patch.setenv("HF_DATASETS_OFFLINE", "1")
            patch.delenv("ROOT_DATA_PATH", raising=False)
            for name, value in step.env.items():
                patch.setenv(name, value)
            patch.setattr(datasets.config, "HF_DATASETS_CACHE", os.path.join(self.folder, ".hf-datasets-cache"))
            yield

    def check(self, step: Step) -> None:
        """Compile or parse the step (always), without running it."""
        if step.kind == "python":
            compile(step.block.code, f"{step.block.doc}:{step.block.line}", "exec")
        elif step.kind in ("emm1", "eshot"):
            main = _entry_point(step.kind)
            parse_with_entry_point(lambda: main(_sample_args(step.argv[1:])), step.id)
        elif step.kind == "benchmark":
            script = os.path.join(REPO, step.argv[1])
            assert os.path.isfile(script), f"{step.id}: no such script {step.argv[1]}"
            with mock.patch.object(sys, "argv", [script, *step.argv[2:]]):
                parse_with_entry_point(lambda: runpy.run_path(script, run_name="__main__"), step.id)
        elif step.kind == "pytest":
            for arg in step.argv[3:]:
                if arg.startswith("tests/"):
                    assert os.path.exists(os.path.join(REPO, arg.split("::")[0])), f"{step.id}: no such test file {arg}"

    def run(self, step: Step) -> str:
        """Run the step; what it printed."""
        out = self._output = io.StringIO()
        with self._environment(step), contextlib.redirect_stdout(out):
            if step.kind == "python":
                exec(compile(_sample_paths(step.block.code), f"{step.block.doc}:{step.block.line}", "exec"),
                     self.namespace)
            else:
                status = _run_command(_entry_point(step.kind), _sample_args(step.argv[1:]))
                if step.stdout_file:
                    with open(step.stdout_file, "w", encoding="utf-8") as f:
                        f.write(out.getvalue())
                assert status in (0, None), f"{step.id}: exit status {status}\n{out.getvalue()}"
        return out.getvalue()

    def execute(self, index: int) -> None:
        """Run the steps before `index` (once), then check and run step `index`; skip it with its reason."""
        while self.done < index:
            self._execute_one(self.done)
        if self.done == index:
            self._execute_one(index)
        step = self.steps[index]
        failure = self.outputs.get(index)
        if isinstance(failure, StepFailure):
            earlier = [f for f in self.failures if not f.startswith(step.id)]
            note = f"\n(earlier steps of {self.doc} failed too: {earlier})" if earlier else ""
            raise StepFailure(f"{failure}{note}")
        runs, why = self.runs(step)
        if not runs:
            what = {"python": "compiled", "emm1": "parsed", "eshot": "parsed", "benchmark": "parsed"}.get(step.kind)
            pytest.skip(f"{step.id}: {what + ', not run: ' if what else ''}{why}")

    def _execute_one(self, index: int) -> None:
        step = self.steps[index]
        self.done = index + 1
        self._output = io.StringIO()
        try:
            self.check(step)
            if self.runs(step)[0]:
                self.outputs[index] = self.run(step)
        except Exception as err:  # noqa: BLE001 - reported by the step's own test item
            printed = self._output.getvalue()[-3000:]
            self.outputs[index] = StepFailure(f"{step.id}: {type(err).__name__}: {err}\n{traceback.format_exc()}"
                                              + (f"\nIt printed:\n{printed}" if printed else ""))
            self.failures.append(f"{step.id}: {type(err).__name__}")

    def run_all(self) -> None:
        for index in range(len(self.steps)):
            if self.done <= index:
                self._execute_one(index)
        failed = [str(o) for o in self.outputs.values() if isinstance(o, StepFailure)]
        assert not failed, "\n".join(failed)


def _sample_args(argv: List[str]) -> List[str]:
    return [_sample_paths(arg) for arg in argv]


def _run_command(main: Callable[[List[str]], Optional[int]], argv: List[str]) -> Optional[int]:
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


STEPS = collect_steps()


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    created: Dict[str, Session] = {}

    def get(doc: str) -> Session:
        if doc not in created:
            folder = tmp_path_factory.mktemp(re.sub(r"\W", "-", doc))
            created[doc] = Session(doc, [s for s in STEPS if s.block.doc == doc], str(folder))
        return created[doc]

    return get


@pytest.mark.parametrize("step", STEPS, ids=[s.id for s in STEPS])
def test_doc_step(step, sessions):
    """Each Python block and shell command of the docs compiles / parses, and runs where it can."""
    session = sessions(step.block.doc)
    session.execute(session.steps.index(step))


# -- checks on top of "it runs" -----------------------------------------------------------------------------

def test_every_code_block_is_checked_or_text():
    """A block without a language, or in one this test does not check, would hide commands from it."""
    unchecked = [f"{doc}:{b.line} ```{b.language}" for doc in DOCS for b in read_blocks(os.path.join(REPO, doc), doc)
                 if b.language not in CODE_LANGUAGES + TEXT_LANGUAGES]
    assert not unchecked, f"code blocks in a language this test does not check (use python, bash or text): {unchecked}"
    assert len({s.block.doc for s in STEPS}) == len(DOCS), "a document without a single checked command"


def test_set_up_commands_are_the_documented_ones():
    """The README's two set-up commands: install + demo on sample data, then the tests."""
    (block,) = [b for b in read_blocks(os.path.join(REPO, "README.md"), "README.md") if b.section == "Set up"]
    assert block.code == ('python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && .venv/bin/emm1 demo\n'
                          ".venv/bin/python -m pytest\n")


def test_readme_eshot_section_cli_agrees_with_python(sessions):
    """The README's EShot section, run on the sample tree: the CLI on the saved embeddings == the metric in Python."""
    session = sessions("README.md")
    indices = [i for i, s in enumerate(session.steps) if s.block.section == "Evaluating a model on EShot"]
    kinds = [session.steps[i].kind for i in indices]
    assert kinds == ["python", "python", "eshot"], kinds
    for index in indices:
        session.execute(index)
    namespace = session.namespace
    results = namespace["results"]
    assert set(results["audio_to_points_per_category"]) <= set(namespace["audio_ds"].features["category"].names)
    assert results["num_audio"] == len(namespace["audio_ds"]) and results["embedding_dim"] == 65
    with open(os.path.join(session.folder, "eshot-results", "result.json"), encoding="utf-8") as f:
        saved = json.load(f)["result"]
    assert saved == json.loads(json.dumps(results))
    assert "audio -> points" in session.outputs[indices[-1]]


def test_training_example_batches_every_row_once(sessions):
    """docs/training.md, run as written: fixed-shape batches from 2 workers, every row exactly once per epoch."""
    torch = pytest.importorskip("torch", reason="torch is not installed: the DataLoader example needs it "
                                                "(pip install torch; it is not a dependency of the project)")
    session = sessions("docs/training.md")
    session.run_all()
    namespace = session.namespace
    ds, batch = namespace["ds"], namespace["batch"]
    n = len(batch["caption"])
    expected = {"image": ((n, 3, 224, 224), torch.uint8), "audio": ((n, 80_000), torch.float32),
                "video": ((n, 8, 3, 112, 112), torch.uint8), "points": ((n, 2048, 6), torch.float32)}
    for modality, (shape, dtype) in expected.items():
        assert tuple(batch[modality].shape) == shape and batch[modality].dtype == dtype, modality
        assert batch[f"{modality}_mask"].dtype == torch.bool and batch[f"{modality}_mask"].shape == (n,)
    assert namespace["rows"] == len(ds)
    loader = namespace["loader"]
    assert loader.num_workers == 2 and namespace["stream"].num_shards >= 2  # both workers get shards
    with session._environment(session.steps[-1]):
        seen = [i for b in loader for i in b["encord_text_id"].tolist()]
    assert sorted(seen) == sorted(ds["encord_text_id"])


# -- the checker itself fails on broken commands -------------------------------------------------------------

BROKEN = '''# Broken

```python
print(undefined_name)
```

```bash
emm1 validate emm1-sample/metadata --no-such-flag
emm1 sampel emm1-sample
eshot evaluate --audio-embeddings a.npy
python benchmarks/phase1.py --scale many
frobnicate --now
```
'''


def test_checker_fails_on_broken_commands(tmp_path):
    doc = tmp_path / "BROKEN.md"
    doc.write_text(BROKEN, encoding="utf-8")
    blocks = read_blocks(str(doc), "BROKEN.md")
    with pytest.raises(AssertionError, match="unrecognised command 'frobnicate --now'"):
        classify(blocks[1])
    blocks[1].code = blocks[1].code.replace("frobnicate --now\n", "")
    steps = classify(blocks[0]) + classify(blocks[1])
    folder = tmp_path / "session"
    folder.mkdir()
    session = Session("BROKEN.md", steps, str(folder))
    for index, expected in enumerate(["NameError: name 'undefined_name'", "unrecognized arguments: --no-such-flag",
                                      "invalid choice: 'sampel'", "required: --points-embeddings, --data-dir",
                                      "--scale: invalid float value: 'many'"]):
        with pytest.raises(AssertionError, match=re.escape(expected)):
            session.execute(index)


def test_checker_reads_markers_and_shell_syntax():
    block = Block("X.md", 3, "bash", 'A=1 emm1 validate "d d" --json > r.json && pip install x  # note\n'
                                      "emm1 export --to o \\\n    --data-dir d\n", "S", "no-run: example")
    first, second, third = classify(block)
    assert (first.argv, first.env, first.stdout_file, first.parse_only_reason) == (
        ["emm1", "validate", "d d", "--json"], {"A": "1"}, "r.json", "example")
    assert second.skip_reason.startswith("installs packages")
    assert third.argv == ["emm1", "export", "--to", "o", "--data-dir", "d"] and third.line == 5
    with pytest.raises(AssertionError, match="unknown docs-test marker"):
        classify(Block("X.md", 1, "python", "x = 1\n", "S", "skip please"))
