"""What differs between `datasets` 3.6 (runs loading scripts) and today's `datasets` (≥ 4).

The builders run in both worlds: as importable classes (and `load_dataset("emm1", ...)` after
`import emm1`) on today's `datasets`, and as loading scripts on 3.6.
"""
import functools
import hashlib
import inspect
import os
from typing import Any, Dict, List, Optional, Sequence

import datasets
import datasets.builder

from emm1_lib.errors import EMM1DataError
from emm1_lib.io.fs import hub_commit
from emm1_lib.io.fs import is_remote
from emm1_lib.io.fs import use_hub_token

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


def library_sources() -> List[str]:
    """The library's source files whose content prepared data depends on (`errors.py` and the layers above)."""
    library_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sources = [os.path.join(library_dir, "errors.py")]
    for package in PREPARED_DATA_PACKAGES:
        folder = os.path.join(library_dir, package)
        sources += [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith(".py")]
    return sources


def prepared_data_sources(module_file: str) -> List[str]:
    """The source files whose content is the cache key of prepared data: a builder module and the layers below it."""
    return [module_file] + library_sources()


@functools.lru_cache(maxsize=1)
def _library_hash() -> str:
    return _hash_source_files(library_sources())


def prepared_data_hash() -> str:
    """The hash of `library_sources()` (read once per process): part of every cache path of prepared data."""
    return _library_hash()


def cache_hash(given: Optional[str], data_commit: Optional[str] = None) -> str:
    """The `hash` a builder passes to `datasets`: the one `datasets` gave (a loading script's, a registered
    module's; None when the class is made directly) combined with `prepared_data_hash()`.

    `datasets` puts `hash` in the cache path (`<cache>/<name>/<config id>/<version>/<hash>/`) and serves what
    it finds there. The builder class made directly gets no hash, and a loading script's covers the script
    alone (a thin file importing this library): without the library's part, editing a reader or a builder
    would leave the old prepared data served. `data_commit` is the commit an `hf://` data_dir's revision names
    (`io.fs.hub_commit`): a push to the branch then prepares anew instead of serving the old commit's data.
    """
    library = prepared_data_hash()
    if data_commit:
        library = hashlib.sha256(f"{library}\ncommit {data_commit}".encode("utf-8")).hexdigest()
    if not given:
        return library
    return hashlib.sha256(f"{given}\n{library}".encode("utf-8")).hexdigest()


# Names registered by `register_builder_module`: `load_dataset(name)` builds them without data-file discovery.
_DIRECT_BUILDERS = set()


def register_builder_module(name: str, module_name: str, module_file: str) -> None:
    """Make `datasets.load_dataset(name, ...)` use the builder of an imported module.

    Today's `datasets` runs no scripts but resolves names of packaged modules first, so an
    imported builder module is registered as one. The hash (the cache key of prepared data)
    covers the module and the layers it is built from, so editing them invalidates old caches.

    A packaged module is normally given the files under `data_dir` (every file below it is
    listed, media included: minutes for a real media root). These builders find their own files
    from `data_dir`, so `load_dataset` is made to skip that discovery for the names registered here.
    """
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    _PACKAGED_DATASETS_MODULES[name] = (module_name, _hash_source_files(prepared_data_sources(module_file)))
    _DIRECT_BUILDERS.add(name)
    _install_direct_module_factory()


def _install_direct_module_factory() -> None:
    """Give the registered names a module factory that lists no files (datasets 3.6 and 4/5 alike).

    `dataset_module_factory` looks the factory of packaged modules up by name in `datasets.load`
    at each call, so a subclass put there serves our names and hands every other name to the
    original. Were the class ever gone, `load_dataset` would still work, only with the listing.
    """
    import datasets.load as load

    original = getattr(load, "PackagedDatasetModuleFactory", None)
    if original is None or getattr(original, "serves_direct_builders", False):
        return

    class DirectBuilderModuleFactory(original):
        serves_direct_builders = True

        def get_module(self):
            if self.name not in _DIRECT_BUILDERS:
                return super().get_module()
            from datasets.data_files import DataFilesDict
            from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

            module_path, module_hash = _PACKAGED_DATASETS_MODULES[self.name]
            # load_dataset_builder refuses a packaged module given no data files at all, so an empty set
            # stands for "none"; the builder drops it (and refuses files a user passes: they would be unused).
            data_files = DataFilesDict() if self.data_files is None else self.data_files
            return load.DatasetModule(module_path, module_hash, {"data_files": data_files, "dataset_name": self.name})

    load.PackagedDatasetModuleFactory = DirectBuilderModuleFactory


def builder_kwargs(name: str, args: Sequence[Any], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The keyword arguments a builder passes on to `DatasetBuilder.__init__` (given its `*args, **kwargs`).

    Positional arguments become keywords (`DatasetBuilder.__init__`'s order). `hash` becomes
    `cache_hash(hash)`, so the cache path depends on the library's prepared-data sources on every route.
    `data_files` is refused when it names files (the builders read what `data_dir` holds, so they
    would be ignored) and dropped when empty (what `load_dataset` passes), so both routes give the
    same config and the same cache. `root_data_path` defaults to `$ROOT_DATA_PATH`. A `token` is the
    one the readers use for an `hf://` data_dir (`io.fs.use_hub_token`).
    """
    kwargs = dict(kwargs)
    for parameter, value in zip(_builder_parameters(), args):
        if parameter in kwargs:
            raise TypeError(f"{name}: got multiple values for argument {parameter!r}")
        kwargs[parameter] = value
    if len(args) > len(_builder_parameters()):
        raise TypeError(f"{name}: takes at most {len(_builder_parameters())} positional arguments, got {len(args)}")
    use_hub_token(kwargs.get("data_dir"), kwargs.get("token"))
    data_files = kwargs.pop("data_files", None)
    if data_files:
        raise ValueError(
            f"{name}: data_files={data_files!r} is not used: the builder finds its files in data_dir. "
            "Pass data_dir= the metadata folder instead."
        )
    kwargs["hash"] = cache_hash(kwargs.get("hash"), hub_commit(kwargs.get("data_dir") or ""))
    return root_from_environment(kwargs)


def _builder_parameters() -> List[str]:
    """The names of `DatasetBuilder.__init__`'s positional parameters, in order (without `self`)."""
    signature = inspect.signature(datasets.DatasetBuilder.__init__)
    return [p.name for p in list(signature.parameters.values())[1:] if p.kind is p.POSITIONAL_OR_KEYWORD]


def check_data_dir_exists(data_dir: str, what: str, hint: str) -> None:
    """Raise `EMM1DataError` naming a local `data_dir` that does not exist or is no folder (URLs are not probed).

    `what` starts the message (e.g. "config phase1_nn1: data_dir"), `hint` ends it (what to pass instead).
    """
    if is_remote(data_dir):
        return
    path = os.path.abspath(os.path.expanduser(data_dir[len("file://"):] if data_dir.startswith("file://") else data_dir))
    if not os.path.exists(path):
        raise EMM1DataError(f"{what} {path} does not exist. {hint}")
    if not os.path.isdir(path):
        raise EMM1DataError(f"{what} {path} is a file, not a folder. {hint}")


def root_from_environment(config_kwargs: dict) -> dict:
    """`config_kwargs` with `root_data_path` taken from `$ROOT_DATA_PATH` when not given.

    Config kwargs are hashed into the cache key of prepared data, so resolving the environment
    default here makes another media root prepare another cache instead of serving old paths.
    """
    if config_kwargs.get("root_data_path") is None and os.environ.get("ROOT_DATA_PATH"):
        config_kwargs = {**config_kwargs, "root_data_path": os.environ["ROOT_DATA_PATH"]}
    return config_kwargs
