"""EShot: zero-shot audio <-> point-cloud classification benchmark of E-MM1 (112 categories, ~3,500 samples).

Configs (split `test`):
- `eshot_audio`: one row per audio clip: `eshot_audio_id`, `category`, `audio_file_path`, `audio` (decoded on
  access), `youtube_id`, `start_time`, `end_time`.
- `eshot_points`: one row per point cloud: `eshot_point_id`, `category`, `points_file_path`, `points`, `file_id`.

`category` is a `ClassLabel` over the sorted union of the categories of `category_to_audio_ids.json` and
`category_to_point_ids.json`, so a category has the same id in both configs. Rows are sorted by id: that is the
"dataset order" of embeddings files given to `eshot evaluate`.

Both schema generations are read (detected from the CSV headers):
- seed draft: `eshot_audio_id, youtube_id, start_time, end_time` and `eshot_point_id, object_id`; media in
  `eshot/audio/` and `eshot/point-clouds/`, named by id with any extension;
- release: `file_name, save_folder` added, points `eshot_point_id, file_id, file_name, save_folder`; media at
  `root_data_path/save_folder/{audio|points}/file_name` (the released example's `ROOT/eshot/audio/file_name`).

Usage (today's `datasets`): `import eshot; datasets.load_dataset("eshot", "eshot_audio", data_dir=...)`.
Usage (`datasets` 3.6):
`datasets.load_dataset("path/to/eshot.py", "eshot_audio", data_dir=..., trust_remote_code=True)`.
Evaluate with the `metrics/eshot` metric (see its card).
"""
from emm1_lib.builders.compat import register_builder_module
from emm1_lib.builders.eshot import EShot
from emm1_lib.builders.eshot import EShotConfig
from emm1_lib.schema.eshot_files import UncategorisedRowWarning

__all__ = ["EShot", "EShotConfig", "UncategorisedRowWarning"]

if __name__ == "eshot":  # imported as a module (not as a datasets 3.6 script copy): load_dataset("eshot") finds it
    register_builder_module("eshot", __name__, __file__)
