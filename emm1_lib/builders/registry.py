"""The project's builders and their configs, for tools that work on every config (export, demo)."""
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
