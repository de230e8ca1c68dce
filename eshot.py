"""EShot for `datasets`: the `EShot` builder (configs `eshot_audio`, `eshot_points`). The builder's
documentation is its module, `emm1_lib.builders.eshot`, and the README; the metric is `metrics/eshot`.

Importing this module registers the name: `import eshot; datasets.load_dataset("eshot", "eshot_audio", data_dir=...)`.
On `datasets` 3.6 this file is also the loading script: `datasets.load_dataset("path/to/eshot.py", ...)`.
"""
from emm1_lib.builders.compat import register_builder_module
from emm1_lib.builders.eshot import EShot
from emm1_lib.builders.eshot import EShotConfig
from emm1_lib.schema.eshot_files import UncategorisedRowWarning

__all__ = ["EShot", "EShotConfig", "UncategorisedRowWarning"]

if __name__ == "eshot":  # imported as a module (not as a datasets 3.6 script copy): load_dataset("eshot") finds it
    register_builder_module("eshot", __name__, __file__)
