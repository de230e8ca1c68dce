"""Shared fixtures: generated E-MM1 trees (both schema generations) with real media files."""
import os
import pathlib

import pytest

# Tests never reach the network: the builders read local files only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from emm1_lib.testing.sample import generate_sample_tree  # noqa: E402


@pytest.fixture(scope="session", params=["released", "seed"])
def sample_tree(request, tmp_path_factory):
    """A small tree of either schema generation, with real media, 2 dangling ids per column and 2 duplicate rows."""
    root = tmp_path_factory.mktemp(f"emm1-{request.param}")
    return generate_sample_tree(str(root), schema=request.param, dangling=2, duplicate_groups=2)


@pytest.fixture(scope="session")
def released_tree(tmp_path_factory):
    """A clean released-schema tree (no dangling ids, no duplicates), with real media."""
    return generate_sample_tree(str(tmp_path_factory.mktemp("emm1-clean")), schema="released")


@pytest.fixture(scope="session")
def seed_tree(tmp_path_factory):
    """A clean seed-schema tree, with real media."""
    return generate_sample_tree(str(tmp_path_factory.mktemp("emm1-seed-clean")), schema="seed")


@pytest.fixture
def hf_cache(tmp_path):
    """A fresh `datasets` cache folder for one test."""
    return str(tmp_path / "hf-cache")


@pytest.fixture
def standin_hub():
    """A running stand-in Hugging Face Hub on 127.0.0.1 (tests/standin_hub.py), counting requests and bytes.

    Serve folders with `standin_hub.add_repo("owner/name", folder, ...)`, then point clients at it:
    `run_client(code, standin_hub.client_env(...))` in a fresh interpreter, or `use_standin_hub(monkeypatch,
    standin_hub)` in this one.
    """
    from standin_hub import StandinHub

    with StandinHub() as hub:
        yield hub


@pytest.fixture(scope="module")
def _template_tree(tmp_path_factory):
    return generate_sample_tree(str(tmp_path_factory.mktemp("download-template")), schema="released")


@pytest.fixture
def tree(_template_tree, tmp_path):
    """A fresh copy of a released tree (with media) that the test may edit: copying beats generating (the
    download tests; other modules define their own `tree`)."""
    import dataclasses
    import shutil

    template = pathlib.Path(_template_tree.root).parent
    shutil.copytree(template, tmp_path / "sample", symlinks=True)
    moved = {name: getattr(_template_tree, name).replace(str(template), str(tmp_path / "sample"))
             for name in ("root", "phase1_dir", "phase2_dir", "eshot_dir", "metadata_dir")}
    return dataclasses.replace(_template_tree, media_files=[], **moved)


@pytest.fixture
def server():
    """A running `tests/http_servers.py` MediaServer on 127.0.0.1 (Range, injected failures, counted bytes)."""
    from http_servers import MediaServer

    with MediaServer() as running:
        yield running
