"""What differs between `datasets` 3.6 (runs loading scripts) and today's `datasets` (≥ 4).

The builders run in both worlds: as importable classes (and `load_dataset("emm1", ...)` after
`import emm1`) on today's `datasets`, and as loading scripts on 3.6.
"""
import os
from typing import List

import datasets
import datasets.builder

# datasets ≥ 4 keys Arrow tables with `Key(shard, batch)`; 3.6 with any hashable, by convention a string.
_Key = getattr(datasets.builder, "Key", None)


def table_key(shard_index: int, batch_index: int):
    """The key `_generate_tables` yields with a table, in the form the installed `datasets` expects."""
    if _Key is not None:
        return _Key(shard_index, batch_index)
    return f"{shard_index}_{batch_index}"


def _hash_source_files(paths: List[str]) -> str:
    from datasets.packaged_modules import _hash_python_lines

    lines: List[str] = []
    for path in sorted(paths):
        with open(path, encoding="utf-8") as f:
            lines.extend(f.read().splitlines())
    return _hash_python_lines(lines)


# What prepared data depends on: readers, schema and rules, media features, builders. Tools (CLI,
# export, validate, demo) and test-data generators do not change prepared data, so they stay out.
PREPARED_DATA_PACKAGES = ("io", "schema", "media", "builders")


def prepared_data_sources(module_file: str) -> List[str]:
    """The source files whose content is the cache key of prepared data: a builder module and the layers below it."""
    library_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sources = [module_file, os.path.join(library_dir, "errors.py")]
    for package in PREPARED_DATA_PACKAGES:
        folder = os.path.join(library_dir, package)
        sources += [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith(".py")]
    return sources


def register_builder_module(name: str, module_name: str, module_file: str) -> None:
    """Make `datasets.load_dataset(name, ...)` use the builder of an imported module.

    Today's `datasets` runs no scripts but resolves names of packaged modules first, so an
    imported builder module is registered as one. The hash (the cache key of prepared data)
    covers the module and the layers it is built from, so editing them invalidates old caches.
    """
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    _PACKAGED_DATASETS_MODULES[name] = (module_name, _hash_source_files(prepared_data_sources(module_file)))


def root_from_environment(config_kwargs: dict) -> dict:
    """`config_kwargs` with `root_data_path` taken from `$ROOT_DATA_PATH` when not given.

    Config kwargs are hashed into the cache key of prepared data, so resolving the environment
    default here makes another media root prepare another cache instead of serving old paths.
    """
    if config_kwargs.get("root_data_path") is None and os.environ.get("ROOT_DATA_PATH"):
        config_kwargs = {**config_kwargs, "root_data_path": os.environ["ROOT_DATA_PATH"]}
    return config_kwargs
