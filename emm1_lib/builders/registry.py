"""The project's builders and their configs, for tools that work on every config (export, demo)."""
from typing import Any
from typing import Dict
from typing import List
from typing import Type

import datasets

from emm1_lib.builders.emm1 import EMM1
from emm1_lib.builders.eshot import EShot

BuilderClass = Type[datasets.DatasetBuilder]
BUILDERS: List[BuilderClass] = [EMM1, EShot]


def builder_config_names() -> Dict[str, BuilderClass]:
    """Every config name of the builders, in builder order, with the class that builds it."""
    return {config.name: cls for cls in BUILDERS for config in cls.BUILDER_CONFIGS}


def path_column_options(name: str) -> Dict[str, Any]:
    """Config options that make config `name` store every media path in a `*_file_path` string column.

    Phase 1 stores its paths only in the media columns by default (`file_path_columns=False`); the
    exports publish paths in the `*_file_path` columns, so they ask for them. Phase 2 and EShot always
    have them: no option.
    """
    config = next(c for cls in BUILDERS for c in cls.BUILDER_CONFIGS if c.name == name)
    return {"file_path_columns": True} if getattr(config, "is_phase1", False) else {}
