"""Dangling-id counts of `num_proc` preparation jobs, carried from the pool's workers to the preparing process.

`datasets` runs each job of a `num_proc` preparation in a pool worker and hands back only its own results
(examples, bytes, shards), and a warning raised in a worker never reaches the caller. So each job writes its
counts to a small file in a folder the preparing process made for this preparation; once the pool has ended,
that process merges them, in job order (jobs are runs of consecutive shards, so this is data order), and warns
once per id column, as a single-process preparation does. The preparing process removes the folder, whatever
happened; a job that failed leaves an incomplete set, but then the preparation raises and nothing is merged.
"""
import glob
import json
import os
import tempfile
from typing import Dict, Iterable, List, Tuple

from emm1_lib.schema.ids import DanglingCount

_PREFIX = "dangling-"


def write_job_counts(folder: str, job_id: int, counts: Iterable[DanglingCount]) -> None:
    """Record one job's counts in `folder` (atomically: a reader sees the whole file or none)."""
    fd, scratch = tempfile.mkstemp(prefix=".writing-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump([count.to_dict() for count in counts], f)
        os.replace(scratch, os.path.join(folder, f"{_PREFIX}{int(job_id):06d}.json"))
    except BaseException:
        if os.path.exists(scratch):
            os.unlink(scratch)
        raise


def merged_job_counts(folder: str) -> List[DanglingCount]:
    """The counts recorded in `folder` by every job, merged per id column (column order of the first job)."""
    merged: Dict[Tuple[str, str], DanglingCount] = {}
    # The job id is zero-padded in the name: sorted names are job order.
    for path in sorted(glob.glob(os.path.join(folder, f"{_PREFIX}*.json"))):
        with open(path, encoding="utf-8") as f:
            for data in json.load(f):
                count = DanglingCount.from_dict(data)
                key = (count.column, count.infos_file)
                if key in merged:
                    merged[key].merge(count)
                else:
                    merged[key] = count
    return list(merged.values())
