"""Shared fixtures: generated E-MM1 trees (both schema generations) with real media files."""
import os

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
