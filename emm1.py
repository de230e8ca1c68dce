"""E-MM1 for `datasets`: the `EMM1` builder (configs `phase1_nn1` … `phase1_nn16`, `phase1_all`,
`phase2_triplets`) and `resolve` for an exported copy. The builder's documentation is its module,
`emm1_lib.builders.emm1`, and the README.

Importing this module registers the name: `import emm1; datasets.load_dataset("emm1", "phase1_nn1", data_dir=...)`.
On `datasets` 3.6 this file is also the loading script: `datasets.load_dataset("path/to/emm1.py", ...)`.
"""
from emm1_lib.builders.compat import register_builder_module
from emm1_lib.builders.emm1 import EMM1
from emm1_lib.builders.emm1 import EMM1Config
from emm1_lib.builders.resolve import resolve
from emm1_lib.errors import DanglingIdWarning
from emm1_lib.errors import EMM1DataError

__all__ = ["EMM1", "EMM1Config", "resolve", "DanglingIdWarning", "EMM1DataError"]

if __name__ == "emm1":  # imported as a module (not as a datasets 3.6 script copy): load_dataset("emm1") finds it
    register_builder_module("emm1", __name__, __file__)
