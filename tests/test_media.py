"""Media features (emm1_lib.media.features) inside `datasets`: casting from path columns, lazy decoding,
decode=False, missing and corrupt media, save/load, features JSON, streaming, pickling."""
import multiprocessing
import pathlib
import pickle

import datasets
import numpy as np
import pyarrow as pa
import pytest
import soundfile
from datasets.table import embed_table_storage
from datasets.table import table_cast

import hostile_media

from emm1_lib.testing import sample_media
from emm1_lib.media.features import EMM1Audio
from emm1_lib.media.features import EMM1Image
from emm1_lib.media.features import EMM1PointCloud
from emm1_lib.media.features import EMM1Video
from emm1_lib.media.features import media_feature
from emm1_lib.media.files import MediaDecodeError
from emm1_lib.media.files import MissingMediaError
from emm1_lib.media.video import VideoReader

KINDS = {"image": None, "audio": "audio", "video": "video", "points": None}
NAMES = {"image": "i.jpg", "audio": "a.mp4", "video": "v.mp4", "points": "p.npy"}


@pytest.fixture
def media(tmp_path) -> dict:
    """One real file per modality (E-MM1's released formats: jpg, AAC mp4, mp4, OpenShape npy)."""
    paths = {}
    for modality, name in NAMES.items():
        paths[modality] = tmp_path / name
        sample_media.write_media(paths[modality], seed=11, kind=KINDS[modality])
    return paths


def features(decode: bool = True, on_missing_media: str = "error") -> datasets.Features:
    return datasets.Features({m: media_feature(m, decode=decode, on_missing_media=on_missing_media) for m in NAMES})


def builder_style_dataset(paths: dict, feats: datasets.Features, extra_missing: pathlib.Path = None) -> datasets.Dataset:
    """As the builders do: a pa.string() path column per modality (nulls allowed), `table_cast` to the features."""
    columns = {}
    for m in NAMES:
        values = [str(paths[m]), None]
        if extra_missing is not None:
            values.append(str(extra_missing / NAMES[m]))
        columns[m] = pa.array(values, type=pa.string())
    table = table_cast(pa.table(columns), feats.arrow_schema)
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=feats))


def check_decoded(row: dict, paths: dict) -> None:
    """Decoded values equal independent reads of the same files."""
    from PIL import Image

    with Image.open(paths["image"]) as reference:
        np.testing.assert_array_equal(np.asarray(row["image"]), np.asarray(reference.convert("RGB")))
    import av

    with av.open(str(paths["audio"])) as c:
        audio = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)[0]
    np.testing.assert_allclose(row["audio"]["array"], audio, atol=1e-6)
    assert row["audio"]["sampling_rate"] == sample_media.AUDIO_SAMPLING_RATE
    assert pathlib.Path(row["audio"]["path"]).name == "a.mp4"
    with av.open(str(paths["video"])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert isinstance(row["video"], VideoReader) and row["video"].num_frames == len(frames)
    np.testing.assert_array_equal(row["video"][3], frames[3])
    xyz, rgb = sample_media.points_arrays(11)
    np.testing.assert_array_equal(row["points"]["xyz"], xyz)
    np.testing.assert_array_equal(row["points"]["rgb"], rgb)


def test_media_feature_types():
    assert isinstance(media_feature("image"), EMM1Image) and isinstance(media_feature("image"), datasets.Image)
    assert isinstance(media_feature("audio"), EMM1Audio)
    assert isinstance(media_feature("video"), EMM1Video)
    assert media_feature("points", num_points=64, normalize=True) == EMM1PointCloud(num_points=64, normalize=True)
    assert media_feature("audio", sampling_rate=8000, mono=False) == EMM1Audio(sampling_rate=8000, mono=False)
    with pytest.raises(ValueError, match="Unknown media modality 'text'"):
        media_feature("text")
    with pytest.raises(TypeError, match="num_points"):
        media_feature("audio", num_points=3)
    with pytest.raises(ValueError, match="on_missing_media"):
        media_feature("points", on_missing_media="skip")


def test_builder_style_cast_and_lazy_decode(media):
    ds = builder_style_dataset(media, features())
    assert ds.data.table.schema.field("points").type == pa.struct({"bytes": pa.binary(), "path": pa.string()})
    check_decoded(ds[0], media)
    assert ds[1] == {m: None for m in NAMES}  # null path (missing id) -> None
    batch = ds[:2]  # batch decoding path
    check_decoded({m: batch[m][0] for m in NAMES}, media)
    assert [batch[m][1] for m in NAMES] == [None] * 4


def test_decode_false_gives_bytes_and_path(media):
    ds = builder_style_dataset(media, features(decode=False))
    assert ds[0] == {m: {"bytes": None, "path": str(media[m])} for m in NAMES}
    assert ds.flatten().column_names == [f"{m}.{k}" for m in NAMES for k in ("bytes", "path")]
    decoded = ds.cast(features())  # switching decode on later works
    check_decoded(decoded[0], media)


def test_cast_column_from_strings(media):
    ds = datasets.Dataset.from_dict({"points": [str(media["points"])], "audio": [str(media["audio"])]})
    ds = ds.cast_column("points", media_feature("points", num_points=32)).cast_column("audio", media_feature("audio", sampling_rate=8000))
    row = ds[0]
    assert row["points"]["xyz"].shape == (32, 3)
    assert row["audio"]["sampling_rate"] == 8000


@pytest.mark.parametrize("modality", list(NAMES))
def test_missing_media_error_and_null(media, tmp_path, modality):
    gone = tmp_path / "gone"
    ds = builder_style_dataset(media, features(), extra_missing=gone)
    with pytest.raises(MissingMediaError) as info:
        ds[2]
    assert isinstance(info.value, FileNotFoundError)
    assert str(gone / NAMES[modality]) in str(info.value) or "gone" in str(info.value)
    assert "on_missing_media='null'" in str(info.value)
    relaxed = builder_style_dataset(media, features(on_missing_media="null"), extra_missing=gone)
    assert relaxed[2] == {m: None for m in NAMES}
    check_decoded(relaxed[0], media)
    only = relaxed.select_columns([modality])
    with pytest.raises(MissingMediaError, match=NAMES[modality].replace(".", r"\.")):
        only.cast_column(modality, media_feature(modality))[2]


@pytest.mark.parametrize("modality", list(NAMES))
def test_corrupt_media_names_the_file(tmp_path, modality):
    path = tmp_path / ("bad_" + NAMES[modality])
    hostile_media.write_corrupt(path, seed=1, kind=KINDS[modality], keep=0.4)
    ds = datasets.Dataset.from_dict({modality: [str(path)]}).cast_column(modality, media_feature(modality))
    with pytest.raises(MediaDecodeError, match="bad_"):
        ds[0]


def test_features_json_and_save_load_roundtrip(media, tmp_path):
    feats = datasets.Features(
        {
            "image": media_feature("image", mode="L"),
            "audio": media_feature("audio", sampling_rate=8000, on_missing_media="null"),
            "video": media_feature("video"),
            "points": media_feature("points", num_points=100, normalize=True, seed=3),
        }
    )
    assert datasets.Features.from_dict(feats.to_dict()) == feats
    datasets.DatasetInfo(features=feats).write_to_directory(str(tmp_path))  # as the builder cache does
    assert datasets.DatasetInfo.from_directory(str(tmp_path)).features == feats
    ds = builder_style_dataset(media, feats)
    ds.save_to_disk(str(tmp_path / "saved"))
    loaded = datasets.load_from_disk(str(tmp_path / "saved"))
    assert loaded.features == feats
    for original, restored in zip(ds, loaded):
        if original["points"] is None:
            assert restored == original
            continue
        np.testing.assert_array_equal(original["points"]["xyz"], restored["points"]["xyz"])
        np.testing.assert_array_equal(original["audio"]["array"], restored["audio"]["array"])
        assert original["image"].mode == restored["image"].mode == "L"
        np.testing.assert_array_equal(original["video"][7], restored["video"][7])


def test_media_root_is_kept_by_json_save_load_and_pickle(media, tmp_path):
    """media_root is saved like on_missing_media: `datasets` rebuilds the features of a cached builder and of
    load_from_disk from the JSON, where a dropped root would turn the check off. It is not part of equality
    or the repr, and an unset root writes nothing."""
    root = str(tmp_path)
    feats = datasets.Features({m: media_feature(m, media_root=root) for m in NAMES})

    def roots(f: datasets.Features) -> dict:
        return {m: f[m].media_root for m in NAMES}

    assert roots(datasets.Features.from_dict(feats.to_dict())) == {m: root for m in NAMES}
    (tmp_path / "info").mkdir()
    datasets.DatasetInfo(features=feats).write_to_directory(str(tmp_path / "info"))
    assert roots(datasets.DatasetInfo.from_directory(str(tmp_path / "info")).features) == roots(feats)
    ds = builder_style_dataset(media, feats)
    ds.save_to_disk(str(tmp_path / "saved"))
    loaded = datasets.load_from_disk(str(tmp_path / "saved"))
    assert roots(loaded.features) == roots(feats)
    check_decoded(loaded[0], media)
    assert roots(pickle.loads(pickle.dumps(ds)).features) == roots(feats)
    assert feats == features() and root not in repr(feats)
    assert all("media_root" not in value for value in features().to_dict().values())


def test_embed_storage_bytes_decode_like_paths(media, tmp_path):
    ds = builder_style_dataset(media, features(on_missing_media="null"), extra_missing=tmp_path / "gone")
    embedded = embed_table_storage(ds.data.table)
    assert embedded.column("points")[0].as_py()["bytes"] == media["points"].read_bytes()
    assert embedded.column("audio")[0].as_py()["path"] == "a.mp4"
    assert embedded.column("audio")[2].as_py() == {"bytes": None, "path": str(tmp_path / "gone" / "a.mp4")}
    from_bytes = datasets.Dataset(embedded, info=ds.info)
    check_decoded(from_bytes[0], media)
    assert from_bytes[2] == {m: None for m in NAMES}


def test_encode_decoded_values_roundtrip():
    xyz, rgb = sample_media.points_arrays(2)
    wave = sample_media.audio_array(2)[:, 0]
    feats = datasets.Features({"points": media_feature("points"), "audio": media_feature("audio")})
    ds = datasets.Dataset.from_dict(
        {"points": [{"xyz": xyz, "rgb": rgb}], "audio": [{"array": wave, "sampling_rate": 16000}]}, features=feats
    )
    row = ds[0]
    np.testing.assert_array_equal(row["points"]["xyz"], xyz)
    np.testing.assert_array_equal(row["points"]["rgb"], rgb)
    np.testing.assert_array_equal(row["audio"]["array"], wave)
    # pickles are never produced when encoding: the stored bytes are a plain npz
    assert ds.data.table.column("points")[0].as_py()["bytes"][:4] == b"PK\x03\x04"


def test_cast_to_stock_datasets_features(media):
    ds = builder_style_dataset(media, features())
    stock = ds.cast_column("audio", datasets.Audio(decode=False)).cast_column("video", datasets.Video(decode=False))
    stock = stock.cast_column("image", datasets.Image())
    assert type(stock.features["audio"]) is datasets.Audio and type(stock.features["video"]) is datasets.Video
    row = stock[0]
    assert row["audio"] == {"bytes": None, "path": str(media["audio"])}
    assert row["video"] == {"bytes": None, "path": str(media["video"])}
    assert row["image"].size == sample_media.IMAGE_SIZE
    back = stock.cast_column("audio", media_feature("audio"))
    assert back[0]["audio"]["sampling_rate"] == sample_media.AUDIO_SAMPLING_RATE


def test_iterable_dataset_streams_decoded(media, tmp_path):
    ds = builder_style_dataset(media, features(on_missing_media="null"), extra_missing=tmp_path / "gone")
    rows = list(ds.to_iterable_dataset(num_shards=2))
    assert len(rows) == 3
    check_decoded(rows[0], media)
    assert rows[1] == rows[2] == {m: None for m in NAMES}
    generated = datasets.IterableDataset.from_generator(
        lambda: iter([{m: str(media[m]) for m in NAMES}]), features=features()
    )
    check_decoded(next(iter(generated)), media)


def test_features_and_decoded_values_pickle(media):
    feats = features()
    assert pickle.loads(pickle.dumps(feats)) == feats
    ds = builder_style_dataset(media, feats)
    row = pickle.loads(pickle.dumps(ds[0]))
    check_decoded(row, media)
    check_decoded(pickle.loads(pickle.dumps(ds))[0], media)


def _decode_in_worker(args):
    ds, index = args
    row = ds[index]
    return {"frames": row["video"].num_frames, "xyz": row["points"]["xyz"], "audio": row["audio"]["array"]}


def test_multi_worker_decoding(media):
    ds = builder_style_dataset(media, features())
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        results = pool.map(_decode_in_worker, [(ds, 0), (ds, 0)])
    local = ds[0]
    for result in results:
        assert result["frames"] == local["video"].num_frames
        np.testing.assert_array_equal(result["xyz"], local["points"]["xyz"])
        np.testing.assert_array_equal(result["audio"], local["audio"]["array"])


def test_flac_column_matches_soundfile(tmp_path):
    paths = [tmp_path / f"{i}.flac" for i in range(3)]
    for i, path in enumerate(paths):
        sample_media.write_media(path, seed=i)
    ds = datasets.Dataset.from_dict({"audio": [str(p) for p in paths]}).cast_column("audio", media_feature("audio"))
    for path, row in zip(paths, ds):
        np.testing.assert_array_equal(row["audio"]["array"], soundfile.read(str(path), dtype="float32")[0])
