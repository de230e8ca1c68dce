"""E-MM1: captions linked to images, audio, video and point clouds (E-MM1:100M and E-MM1:1M).

Configs:
- `phase1_nn1` … `phase1_nn16`: E-MM1:100M, one row per caption with its k-th nearest image,
  audio clip, video and point cloud (`nn_{k}/data_groups.csv` joined with `infos/*.csv`).
- `phase1_all`: all 16 neighbours (`nn_index` 1–16), ~107 M rows at full scale.
- `phase2_triplets`: E-MM1:1M, human-rated (caption, paired item, annotated item) triplets.

Usage (today's `datasets`): `import emm1; datasets.load_dataset("emm1", "phase1_nn1", data_dir=..., root_data_path=...)`.
Usage (`datasets` 3.6): `datasets.load_dataset("path/to/emm1.py", "phase1_nn1", data_dir=..., trust_remote_code=True)`.
The metadata CSVs of both schema generations (the seed draft and the release) are accepted.
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
