"""`emm1.resolve` refuses what the builders refuse: media outside the root, by a stored path or a symlink.

An export stores media paths relative to the media root; after a Hub round trip those strings come
from whoever wrote the repository. Every route that opens a file (decoding, embedding for
`push_to_hub` / `to_parquet`, streaming) must stay under the root.
"""
import os
import pathlib

import datasets
import pyarrow as pa
import pytest
from datasets.table import embed_table_storage

import emm1
from emm1_lib.errors import EMM1DataError
from emm1_lib.errors import UnembeddedMediaWarning
from emm1_lib.media.files import MediaOutsideRootError
from emm1_lib.media.files import UnembeddedMediaError
from emm1_lib.testing.sample_media import write_image
from emm1_lib.testing.sample_media import write_openshape_npy

INSIDE = "shared/image/inside.jpg"
LINK = "shared/image/link.jpg"
POINTS_LINK = "shared/points/link.npy"


@pytest.fixture
def media_root(tmp_path):
    """A media root with one real image, and links to a real image and point cloud outside it."""
    root = tmp_path / "media"
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "shared" / "image").mkdir(parents=True)
    (root / "shared" / "points").mkdir(parents=True)
    write_image(outside / "secret.jpg", seed=1)
    write_openshape_npy(outside / "secret.npy", seed=2)
    write_image(root / INSIDE, seed=3)
    os.symlink(outside / "secret.jpg", root / LINK)
    os.symlink(outside / "secret.npy", root / POINTS_LINK)
    return root


def _export_rows(image_paths, points_paths=None):
    """A split as stock `datasets` loads an export: ids and root-relative path strings, no media columns."""
    n = len(image_paths)
    columns = {"encord_text_id": list(range(n)), "image_file_path": image_paths}
    if points_paths is not None:
        columns["points_file_path"] = points_paths
    return datasets.Dataset.from_dict(columns)


def test_resolve_without_a_root_says_what_to_pass():
    with pytest.raises(ValueError, match="needs root="):
        emm1.resolve(_export_rows([INSIDE]), None)
    with pytest.raises(ValueError, match="needs root="):
        emm1.resolve(_export_rows([INSIDE]), "")


def test_resolve_decodes_media_inside_the_root(media_root):
    resolved = emm1.resolve(_export_rows([INSIDE]), str(media_root))
    image = resolved[0]["image"]
    assert image.size == (32, 24)
    assert resolved[0]["image_file_path"] == str(media_root / INSIDE)


@pytest.mark.parametrize("stored", [
    "../../../../etc/passwd", "shared/../../outside/secret.jpg", "/etc/passwd", "~/secret.jpg",
    "shared/image/\x00x.jpg", "..\\..\\secret.jpg",
])
def test_resolve_refuses_stored_paths_that_leave_the_root(media_root, stored):
    ds = _export_rows([INSIDE, stored])
    with pytest.raises(EMM1DataError, match=r"image_file_path: row 1: unsafe stored path"):
        emm1.resolve(ds, str(media_root))


def test_resolve_streaming_refuses_stored_paths_that_leave_the_root(media_root):
    stream = _export_rows([INSIDE, INSIDE, "../../../../etc/passwd"]).to_iterable_dataset()
    resolved = emm1.resolve(stream, str(media_root))
    with pytest.raises(EMM1DataError, match=r"row 2: unsafe stored path '../../../../etc/passwd'"):
        list(resolved)


@pytest.mark.parametrize("column, link", [("image", LINK), ("points", POINTS_LINK)])
def test_resolve_refuses_a_symlink_out_of_the_root_when_decoding(media_root, column, link):
    ds = _export_rows([INSIDE], [link]) if column == "points" else _export_rows([link])
    resolved = emm1.resolve(ds, str(media_root))
    with pytest.raises(MediaOutsideRootError, match="outside the media root"):
        resolved[0][column]


def test_resolve_streaming_refuses_a_symlink_out_of_the_root(media_root):
    resolved = emm1.resolve(_export_rows([LINK]).to_iterable_dataset(), str(media_root))
    with pytest.raises(MediaOutsideRootError, match="outside the media root"):
        next(iter(resolved))


def test_embedding_a_resolved_dataset_never_reads_outside_the_root(media_root, tmp_path):
    """`push_to_hub` / `to_parquet` embed media bytes with `embed_table_storage`: the link must not be read."""
    resolved = emm1.resolve(_export_rows([INSIDE, LINK]), str(media_root), decode=False)
    table = resolved.with_format("arrow")[:]
    with pytest.raises(MediaOutsideRootError, match="outside the media root"):
        embed_table_storage(pa.table(table))
    inside_only = emm1.resolve(_export_rows([INSIDE]), str(media_root), decode=False)
    embedded = embed_table_storage(pa.table(inside_only.with_format("arrow")[:]))
    assert embedded["image"][0]["bytes"].as_py() == pathlib.Path(media_root / INSIDE).read_bytes()


def test_allow_outside_root_lets_your_own_links_through(media_root):
    resolved = emm1.resolve(_export_rows([LINK]), str(media_root), allow_outside_root=True)
    assert resolved[0]["image"].size == (32, 24)


def _embedded_export_rows(media_root, stored_without_bytes):
    """A split as stock `datasets` loads an export with the media inside: row 0 embedded, row 1 published without
    bytes (its licence was left out) whose stored path names `stored_without_bytes`."""
    embedded = pathlib.Path(media_root / INSIDE).read_bytes()
    return datasets.Dataset.from_dict(
        {"encord_text_id": [0, 1], "image_file_path": [INSIDE, "shared/image/not-embedded.jpg"],
         "image": [{"bytes": embedded, "path": "inside.jpg"}, {"bytes": None, "path": stored_without_bytes}]},
        features=datasets.Features({"encord_text_id": datasets.Value("int64"),
                                    "image_file_path": datasets.Value("string"), "image": datasets.Image()}))


@pytest.fixture
def secret(tmp_path):
    """A real image outside any media root: what a hostile stored path would name."""
    path = tmp_path / "elsewhere" / "secret.jpg"
    path.parent.mkdir()
    write_image(path, seed=7)
    return str(path)


def test_resolve_without_a_root_never_opens_the_stored_path_of_an_item_without_bytes(media_root, secret):
    ds = _embedded_export_rows(media_root, secret)
    with pytest.warns(UnembeddedMediaWarning, match=r"1 in column 'image' \(the first: row 1, .*secret\.jpg\).*"
                                                    r"Pass root=\.\.\.") as record:
        resolved = emm1.resolve(ds)
    assert {w.filename for w in record if w.category is UnembeddedMediaWarning} == {__file__}  # the caller's line
    with pytest.warns(UnembeddedMediaWarning) as record:
        emm1.resolve(datasets.DatasetDict({"train": ds}))
    assert {w.filename for w in record if w.category is UnembeddedMediaWarning} == {__file__}
    assert resolved[0]["image"].size == (32, 24)  # embedded bytes need no root
    with pytest.raises(UnembeddedMediaError, match=r"Column 'image': .*secret\.jpg was published without its bytes.*"
                                                   r"Pass root=\.\.\. to read media the export did not embed"):
        resolved[1]["image"]
    with pytest.warns(UnembeddedMediaWarning, match="decode to None"):
        nulls = emm1.resolve(ds, on_missing_media="null")
    assert nulls[1]["image"] is None and nulls[0]["image"].size == (32, 24)


def test_joining_a_dataset_resolved_without_a_root_never_lets_it_open_stored_paths(media_root, secret):
    """concatenate_datasets keeps the first dataset's features when they compare equal: they must not here."""
    from datasets import concatenate_datasets

    with pytest.warns(UnembeddedMediaWarning):
        no_root = emm1.resolve(_embedded_export_rows(media_root, secret))
    opens_paths = emm1.resolve(_embedded_export_rows(media_root, INSIDE), str(media_root), allow_outside_root=True)
    assert opens_paths.features["image"] != no_root.features["image"]
    with pytest.raises(ValueError):
        joined = concatenate_datasets([opens_paths, no_root])
        joined[3]["image"]  # were it accepted: the second half's item without bytes must still not be opened


def test_resolve_streaming_without_a_root_never_opens_the_stored_path_of_an_item_without_bytes(media_root, secret):
    stream = emm1.resolve(_embedded_export_rows(media_root, secret).to_iterable_dataset())
    rows = iter(stream)
    assert next(rows)["image"].size == (32, 24)
    with pytest.raises(UnembeddedMediaError, match=r"Column 'image': .*secret\.jpg.*Pass root="):
        next(rows)
    nulls = list(emm1.resolve(_embedded_export_rows(media_root, secret).to_iterable_dataset(), on_missing_media="null"))
    assert nulls[1]["image"] is None


def test_embedding_an_export_resolved_without_a_root_never_reads_a_stored_path(media_root, secret):
    """`push_to_hub` / `to_parquet` of a dataset resolved without a root: nothing is read from stored paths."""
    with pytest.warns(UnembeddedMediaWarning):
        resolved = emm1.resolve(_embedded_export_rows(media_root, secret), decode=False)
    with pytest.raises(UnembeddedMediaError, match=r"secret\.jpg"):
        embed_table_storage(pa.table(resolved.with_format("arrow")[:]))


def test_resolve_with_a_root_reads_items_without_bytes_under_it(media_root):
    """With root=, an item published without bytes is read from root/path, under the root's checks."""
    ds = _embedded_export_rows(media_root, INSIDE)
    resolved = emm1.resolve(ds, str(media_root))
    assert resolved[1]["image"].size == (32, 24)
