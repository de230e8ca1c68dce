"""Streaming decoded media from the (stand-in) Hub: an export with the media inside, served by tests/standin_hub.py,
`load_dataset(repo, config, streaming=True)` -> `emm1.resolve` -> decoded image, audio, video and points with no
local media root; the stand-in counts the bytes it sent, so the test says what the first rows cost."""
import os
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import __version__ as datasets_version

from emm1_lib.errors import DanglingIdWarning
from emm1_lib.testing.sample import generate_sample_tree
from emm1_lib.tools.export_media import export_media
from standin_hub import run_client

REPO = "someone/e-mm1-media"
FIRST_ROWS = 12
DATASETS_5 = int(datasets_version.split(".")[0]) >= 5
# pyarrow's pre-buffering coalesces a Parquet file's reads into requests of up to 32 MiB (CacheOptions
# range_size_limit); datasets 3.6 always pre-buffers and has no option to turn it off.
PYARROW_COALESCE_LIMIT = 32 << 20
PYARROW_BATCH_READAHEAD = 16

CHILD = r'''
import itertools, json, os, sys
import datasets
import emm1
OPTIONS
stream = datasets.load_dataset(REPO, "phase1_nn1", split="train", streaming=True, **options)
stream = emm1.resolve(stream)  # no root: the media are in the shards
out = []
for row in itertools.islice(stream, FIRST):
    out.append({"id": row["encord_text_id"], "image": list(row["image"].size), "audio": len(row["audio"]["array"]),
                "rate": row["audio"]["sampling_rate"], "frames": row["video"].num_frames,
                "frame0": int(row["video"][0].sum()), "points": list(row["points"]["xyz"].shape),
                "points_sum": float(row["points"]["xyz"].sum())})
print(json.dumps(out))
sys.stdout.flush()
os._exit(0)  # stop here: a Parquet read still in flight at interpreter exit would abort it
'''
OPTIONS_5 = ('import pyarrow.dataset as pds\n'
             'options = dict(fragment_scan_options=pds.ParquetFragmentScanOptions(pre_buffer=False), '
             'storage_options={"hf": {"block_size": 256 << 10}})')
OPTIONS_36 = "options = {}"


@pytest.fixture(scope="module")
def big_export(tmp_path_factory):
    """One phase-1 config whose shard is well over 32 MiB: point clouds of 10,000 points (as OpenShape's) make rows
    of ~250 kB where they have points: a ~45 MB shard in row groups of 10 rows."""
    base = tmp_path_factory.mktemp("hub-media")
    tree = generate_sample_tree(str(base / "tree"), schema="released", num_captions=340, num_neighbours=1,
                                num_triplets=8, formats={"points": (".npy",)})
    rng = np.random.default_rng(0)
    for folder, _, files in os.walk(tree.root):
        for name in files:
            if name.endswith(".npy") and os.sep + "points" in folder:
                np.save(os.path.join(folder, name), rng.uniform(-1, 1, (10_000, 6)).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        result = export_media(str(base / "repo"), tree.metadata_dir, tree.root, ["phase1_nn1"], all_licenses=True,
                              cache_dir=str(base / "cache"))
    return tree, result


def test_first_rows_stream_decoded_from_the_hub_reading_only_their_share(big_export, standin_hub, tmp_path):
    tree, result = big_export
    (shard,) = result.configs[0].files["train"]
    shard_path = os.path.join(result.out_dir, shard)
    size = os.path.getsize(shard_path)
    meta = pq.ParquetFile(shard_path).metadata
    assert size > PYARROW_COALESCE_LIMIT + (8 << 20) and meta.num_row_groups >= 30
    standin_hub.add_repo(REPO, result.out_dir)
    code = (CHILD.replace("OPTIONS", OPTIONS_5 if DATASETS_5 else OPTIONS_36).replace("REPO", repr(REPO))
            .replace("FIRST", str(FIRST_ROWS)))
    rows = run_client(code, standin_hub.client_env(hf_home=str(tmp_path / "hf-home")))
    standin_hub.wait_idle()

    # Decoded media equal what the project decodes from the local files.
    import datasets
    import emm1

    local = emm1.resolve(datasets.load_dataset(result.out_dir, "phase1_nn1", split="train")).select(range(FIRST_ROWS))
    assert [r["id"] for r in rows] == local["encord_text_id"]
    for got, want in zip(rows, local):
        assert got["image"] == list(want["image"].size)
        assert got["audio"] == len(want["audio"]["array"]) and got["rate"] == want["audio"]["sampling_rate"]
        assert got["frames"] == want["video"].num_frames and got["frame0"] == int(want["video"][0].sum())
        assert got["points"] == [10_000, 3] and got["points_sum"] == pytest.approx(float(want["points"]["xyz"].sum()),
                                                                                  rel=1e-5)

    read = standin_hub.bytes_read(REPO)[shard]
    groups = -(-FIRST_ROWS // meta.row_group(0).num_rows)
    rows_share = sum(meta.row_group(i).column(j).total_compressed_size for i in range(groups)
                     for j in range(meta.num_columns))
    footer = pq.ParquetFile(shard_path).metadata.serialized_size
    requests = [(r.range, r.bytes_sent) for r in standin_hub.requests(path=shard)]
    print(f"read {read:,} of {size:,} bytes; rows {rows_share:,}; footer {footer:,}; requests {requests}")
    assert read >= rows_share  # the rows did come from the server
    if DATASETS_5:
        # With pre-buffering off and 256 KiB blocks: the footer, then row group after row group. While the rows are
        # decoded, pyarrow's scanner keeps reading ahead, up to 16 batches (its default batch_readahead; how far it
        # gets depends on the machine's speed), so the bound is the rows' row groups plus 16, not the shard.
        ahead = min(meta.num_row_groups, groups + PYARROW_BATCH_READAHEAD)
        ahead_share = sum(meta.row_group(i).column(j).total_compressed_size for i in range(ahead)
                          for j in range(meta.num_columns))
        assert read <= ahead_share + 2 * footer + (512 << 10), (read, ahead_share, size)
        assert ahead < meta.num_row_groups and read < size * 0.75
    else:
        # datasets 3.6 always pre-buffers (pyarrow's default; 3.6 has no fragment_scan_options): coalesced range
        # requests of up to 32 MiB from the start of the row groups, and the next one may already be on its way
        # when the rows are out (how far depends on the machine's speed): up to the whole shard, read once.
        assert read <= size + 2 * footer + (512 << 10), (read, size)
