"""Every way users read rows decodes the same values: `ds[i]`, `for row in ds`, `ds.iter(batch_size)`, `ds[a:b]`
and a torch `DataLoader` with worker processes, on real files of every modality.

Also runs benchmarks/decode.py's passes (both sides of every route) and decode_breakdown.py's parts on two files
per medium, so the benchmarks keep working, and checks that the breakdown's unchecked point reader differs from our
decode only by the checks it leaves out; nothing is timed.
"""
import os
import sys

import datasets
import numpy as np
import pyarrow as pa
import pytest
from datasets.table import table_cast

from emm1_lib.media.features import media_feature
from emm1_lib.testing import sample_media

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import decode as decode_benchmark  # noqa: E402

FILES = {"image": [".jpg", ".png"], "audio": [".wav", ".mp4"], "video": [".mp4"], "points": [".npy", ".npz"]}


def _dataset(tmp_path, modality):
    folder = tmp_path / "media" / modality
    folder.mkdir(parents=True)
    paths = []
    for i, suffix in enumerate(FILES[modality] * 2):
        path = folder / f"{i}{suffix}"
        sample_media.write_media(path, seed=i, kind=modality)
        paths.append(str(path))
    paths.append(None)  # a row without media
    features = datasets.Features({"id": datasets.Value("int64"), modality: media_feature(modality, media_root=str(tmp_path))})
    table = pa.table({"id": pa.array(range(len(paths)), pa.int64()), modality: pa.array(paths, pa.string())})
    return datasets.Dataset(table_cast(table, features.arrow_schema), info=datasets.DatasetInfo(features=features))


def _comparable(modality, value):
    """A decoded value as plain data: image pixels, audio samples, every video frame, point arrays."""
    if value is None:
        return None
    if modality == "image":
        return (value.mode, value.size, np.asarray(value).tobytes())
    if modality == "audio":
        return (value["sampling_rate"], value["array"].dtype.str, value["array"].tobytes())
    if modality == "video":
        with value:
            return (value.num_frames, value.get_frames(range(value.num_frames)).tobytes())
    return (value["xyz"].tobytes(), None if value["rgb"] is None else value["rgb"].tobytes())


@pytest.mark.parametrize("modality", sorted(FILES))
def test_every_route_decodes_what_row_access_decodes(tmp_path, modality):
    ds = _dataset(tmp_path, modality)
    expected = [_comparable(modality, ds[i][modality]) for i in range(len(ds))]
    assert expected[-1] is None and all(value is not None for value in expected[:-1])
    assert [_comparable(modality, row[modality]) for row in ds] == expected
    assert [_comparable(modality, value) for batch in ds.iter(batch_size=3) for value in batch[modality]] == expected
    assert [_comparable(modality, value) for value in ds[1:][modality]] == expected[1:]
    last = len(ds) - 1
    assert [_comparable(modality, value) for value in ds[[last, 0, 1]][modality]] == [expected[last], expected[0], expected[1]]


@pytest.mark.parametrize("modality", sorted(FILES))
def test_a_dataloader_with_workers_decodes_what_row_access_decodes(tmp_path, modality):
    torch_data = pytest.importorskip("torch.utils.data")
    ds = _dataset(tmp_path, modality)
    expected = [_comparable(modality, ds[i][modality]) for i in range(len(ds))]
    loader = torch_data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=_Collate(modality))
    got = [item for batch in loader for item in batch]  # decoded and made comparable in the workers
    assert got == [(i, value) for i, value in enumerate(expected)]


class _Collate:
    def __init__(self, modality):
        self.modality = modality

    def __call__(self, rows):
        return [(row["id"], _comparable(self.modality, row[self.modality])) for row in rows]


@pytest.mark.parametrize("case", range(len(decode_benchmark.CASES)))
def test_the_decode_benchmark_reads_every_file_by_every_route(tmp_path, case):
    name, modality, suffix = decode_benchmark.CASES[case][:3]
    paths = decode_benchmark.write_files(tmp_path / modality, modality, suffix, 2)
    routes = [r for r in decode_benchmark.ROUTES if r != "loader"]
    try:
        import torch  # noqa: F401

        routes.append("loader")
    except ImportError:
        pass
    for route in routes:
        rates = decode_benchmark.run_pair(case, route, paths, str(tmp_path), passes=1, batch_size=2, workers=1)
        assert set(rates) == {"plain", "dataset"}, (name, route)
        for side in rates.values():
            assert side["wall"] > 0 and (side["cpu"] is None) == (route == "loader"), (name, route)


@pytest.mark.parametrize("case", range(len(decode_benchmark.CASES)))
def test_the_decode_breakdown_times_every_part_of_a_row(tmp_path, case):
    import decode_breakdown

    modality, suffix = decode_benchmark.CASES[case][1:3]
    paths = decode_benchmark.write_files(tmp_path / modality, modality, suffix, 2)
    parts = decode_breakdown.measure(case, paths, str(tmp_path), passes=1)
    assert list(parts) == list(decode_breakdown.PARTS)
    applies = {part: (modality, suffix) in decode_breakdown.UNCHECKED_CASES or part != "ds[i] unchecked" for part in parts}
    assert all((microseconds is not None) == applies[part] for part, microseconds in parts.items()), parts
    assert all(microseconds > 0 for microseconds in parts.values() if microseconds is not None), parts


def test_the_unchecked_point_reader_decodes_as_ours_does_but_skips_the_value_checks(tmp_path):
    """The breakdown's "ds[i] unchecked" part differs from our decode only by the checks it measures."""
    import decode_breakdown
    import numpy as np

    from emm1_lib.media.features import media_feature
    from emm1_lib.media.files import MediaDecodeError
    from emm1_lib.media.files import MediaOutsideRootError
    from emm1_lib.testing.sample_media import points_arrays
    from emm1_lib.testing.sample_media import write_openshape_npy
    from emm1_lib.testing.sample_media import write_points_array

    root = tmp_path / "root"
    paths = decode_benchmark.write_files(root / "points", "points", ".npy", 2)
    read = decode_breakdown.unchecked_points_reader(str(root))
    ours = media_feature("points", media_root=str(root))
    for path in paths:
        expected, unchecked = ours.decode_example({"bytes": None, "path": path}), read(path)
        for key in ("xyz", "rgb"):
            assert type(unchecked[key]) is np.ndarray and unchecked[key].dtype == np.float32
            np.testing.assert_array_equal(unchecked[key], expected[key])
    no_colours = root / "points" / "xyz.npy"
    write_points_array(no_colours, 3, n=50, columns=3)
    assert read(str(no_colours))["rgb"] is None
    assert ours.decode_example({"bytes": None, "path": str(no_colours)})["rgb"] is None

    def broken(key: str) -> str:
        """An OpenShape-style file with one NaN in `key`: our decode refuses it, the unchecked reader passes it."""
        path = root / "points" / f"nan-{key}.npy"
        xyz, rgb = points_arrays(7, n=50)
        record = {"xyz": xyz, "rgb": rgb}
        record[key][3, 1] = np.nan
        holder = np.empty((), dtype=object)
        holder[()] = record
        np.save(path, holder, allow_pickle=True)
        return str(path)

    for key in ("xyz", "rgb"):
        assert np.isnan(read(broken(key))[key][3, 1])
        with pytest.raises(MediaDecodeError, match="NaN"):
            ours.decode_example({"bytes": None, "path": broken(key)})
    outside = tmp_path / "outside.npy"
    write_openshape_npy(outside, 8, n=50)
    with pytest.raises(MediaOutsideRootError):  # still located under the media root, as ours is
        read(str(outside))
