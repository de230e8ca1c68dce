"""Decoded media features of the E-MM1 builders: images, audio, video and point clouds.

Every feature stores media as `{"bytes": binary, "path": string}` (the storage of
`datasets.Image`/`Audio`/`Video`), so `cast_column` to the stock features works, and decodes
only when an example is accessed. None of them needs torch: audio uses soundfile/PyAV,
video PyAV, point clouds numpy/trimesh.

Builders yield a `pa.string()` column of file paths per media column and cast it with
`datasets.table.table_cast`; `cast_storage` turns strings into `{bytes: null, path: s}`.

The feature classes are registered with `datasets.features.register_feature` when this module
is imported, so features JSON (`Features.from_dict`, cached `DatasetInfo`, `load_from_disk`)
round-trips in any process that imported it. Works with datasets 3.6 and 5.x.
"""
import io
import os
import warnings
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from typing import Any
from typing import ClassVar
from typing import Dict
from typing import Optional
from typing import Union

import datasets
import numpy as np
import pyarrow as pa
from datasets.features.features import register_feature
from datasets.table import array_cast

from emm1_lib.media.audio import read_audio
from emm1_lib.media.files import MediaDecodeError
from emm1_lib.media.files import check_on_missing_media
from emm1_lib.media.files import resolve_media
from emm1_lib.media.pointcloud import DEFAULT_MESH_POINTS
from emm1_lib.media.pointcloud import read_point_cloud
from emm1_lib.media.video import VideoReader
from emm1_lib.io.fs import is_remote
from emm1_lib.schema.layout import MODALITIES

_STORAGE_TYPE = pa.struct({"bytes": pa.binary(), "path": pa.string()})
# Pillow formats an image may be decoded as: those of E-MM1's sources (COCO, Flickr30k, ImageNet,
# Conceptual Captions' web images). Others are refused before Pillow's plugins look at the bytes
# (EPS, for one, hands the file to Ghostscript).
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG includes multi-picture (MPO) files


def cast_to_bytes_path(storage: pa.Array) -> pa.StructArray:
    """Cast paths (string), bytes (binary) or a struct with `bytes`/`path` fields to the storage struct.

    Nulls stay nulls (a missing media id gives a null path and a null row).
    """
    if pa.types.is_null(storage.type):
        storage = pa.nulls(len(storage), pa.string())
    if pa.types.is_large_string(storage.type):
        storage = storage.cast(pa.string())
    if pa.types.is_large_binary(storage.type):
        storage = storage.cast(pa.binary())
    if pa.types.is_string(storage.type):
        bytes_array = pa.nulls(len(storage), pa.binary())
        storage = pa.StructArray.from_arrays([bytes_array, storage], ["bytes", "path"], mask=storage.is_null())
    elif pa.types.is_binary(storage.type):
        path_array = pa.nulls(len(storage), pa.string())
        storage = pa.StructArray.from_arrays([storage, path_array], ["bytes", "path"], mask=storage.is_null())
    elif pa.types.is_struct(storage.type):
        names = [storage.type.field(i).name for i in range(storage.type.num_fields)]
        if "bytes" in names:
            bytes_array = storage.field("bytes")
        else:
            bytes_array = pa.nulls(len(storage), pa.binary())
        if "path" in names:
            path_array = storage.field("path")
        else:
            path_array = pa.nulls(len(storage), pa.string())
        storage = pa.StructArray.from_arrays(
            [bytes_array.cast(pa.binary()), path_array.cast(pa.string())], ["bytes", "path"], mask=storage.is_null()
        )
    else:
        raise TypeError(f"Cannot cast {storage.type} to media storage {_STORAGE_TYPE}; give paths (string) or bytes")
    return array_cast(storage, _STORAGE_TYPE)


def embed_bytes_path(
    storage: pa.StructArray,
    on_missing_media: str = "error",
    token_per_repo_id: Optional[Dict[str, Union[str, bool, None]]] = None,
    local_files: bool = True,
    remote_files: bool = True,
    media_root: Optional[str] = None,
    read_paths: bool = True,
    column: str = "media",
) -> pa.StructArray:
    """Read the files `{bytes, path}` rows reference into `bytes` and keep only the basename as path.

    `local_files`/`remote_files` choose what to embed (datasets >= 4.8 passes them). A missing
    file raises `MissingMediaError`, or with `on_missing_media="null"` keeps its reference unembedded.
    A local file outside `media_root` raises `MediaOutsideRootError`: it is never read, so never uploaded.
    `read_paths=False`: no file is read; a value without bytes follows `on_missing_media` (see `resolve_media`).
    """
    out_bytes, out_paths = [], []
    for row in storage.to_pylist():
        if row is None:
            out_bytes.append(None)
            out_paths.append(None)
            continue
        data, path = row.get("bytes"), row.get("path")
        wanted = path is not None and ((remote_files and is_remote(path)) or (local_files and not is_remote(path)))
        if data is None and wanted:
            source = resolve_media({"bytes": None, "path": path}, on_missing_media, token_per_repo_id, media_root,
                                   read_paths, column)
            if source is None:  # missing and on_missing_media="null": keep the reference
                out_bytes.append(None)
                out_paths.append(path)
                continue
            with source.open() as f:
                data = f.read()
            path = os.path.basename(path.split("::")[0])
        out_bytes.append(data)
        out_paths.append(path)
    embedded = pa.StructArray.from_arrays(
        [pa.array(out_bytes, type=pa.binary()), pa.array(out_paths, type=pa.string())],
        ["bytes", "path"],
        mask=storage.is_null(),
    )
    return array_cast(embedded, _STORAGE_TYPE)


# Where local media must resolve (see check_under_root). It is saved in the features JSON, like
# on_missing_media: `datasets` rebuilds the features of a cached builder or a `load_from_disk` from that
# JSON, and a root left out would silently turn the check off there. It names no more of the machine than
# the absolute paths under it stored in the same table. Not part of equality (the same data under another
# root is the same feature) nor of the repr.
def _media_root_field():
    return field(default=None, compare=False, repr=False)


# False on the media columns `emm1.resolve` gives an export with the media inside when no root was passed: an
# item without bytes is then never opened from its stored path (a string from whoever wrote the repository),
# it follows `on_missing_media` instead. Saved in the features JSON for the same reason as `media_root`. Part of
# equality, unlike the root: `concatenate_datasets` keeps the first dataset's features when they compare equal,
# so a dataset that may open stored paths joined with one that must not would open the second one's paths.
def _read_paths_field():
    return field(default=True, repr=False)


class _BytesPathMedia:
    """Shared storage logic of the media features: `{bytes, path}` like `datasets.Image`."""

    pa_type: ClassVar[Any] = _STORAGE_TYPE

    def __call__(self) -> pa.DataType:
        return self.pa_type

    def __post_init__(self) -> None:
        check_on_missing_media(self.on_missing_media)

    def _encode_decoded(self, value: Any) -> Optional[dict]:
        """Encode an already-decoded value (array, dict of arrays...) to `{bytes, path}`; None if not one."""
        return None

    def encode_example(self, value: Any) -> dict:
        """Encode a path, bytes, `{"bytes", "path"}` dict (or a decoded value) for Arrow."""
        encoded = self._encode_decoded(value)
        if encoded is not None:
            return encoded
        if isinstance(value, (str, os.PathLike)):
            return {"bytes": None, "path": os.fspath(value)}
        if isinstance(value, (bytes, bytearray)):
            return {"bytes": bytes(value), "path": None}
        if isinstance(value, dict) and (value.get("bytes") is not None or value.get("path") is not None):
            return {"bytes": value.get("bytes"), "path": value.get("path")}
        raise ValueError(f"A {type(self).__name__} value needs a path or bytes, got {type(value).__name__}: {value!r:.200}")

    def cast_storage(self, storage: pa.Array) -> pa.StructArray:
        """Cast file paths (`pa.string()`), bytes (`pa.binary()`) or `{bytes, path}` structs to the storage type."""
        return cast_to_bytes_path(storage)

    def embed_storage(
        self,
        storage: pa.StructArray,
        token_per_repo_id: Optional[Dict[str, Union[str, bool, None]]] = None,
        local_files: bool = True,
        remote_files: bool = True,
    ) -> pa.StructArray:
        """Read referenced files into the `bytes` field (for `push_to_hub`/`to_parquet`); path -> basename.

        Missing files raise, or stay unembedded (bytes null) with `on_missing_media="null"`.
        """
        return embed_bytes_path(storage, self.on_missing_media, token_per_repo_id, local_files, remote_files,
                                self.media_root, self.read_paths, self.column)

    def flatten(self) -> Union["_BytesPathMedia", Dict[str, Any]]:
        """Undecoded features flatten to their `bytes`/`path` columns; decoded ones cannot."""
        if self.decode:
            raise ValueError(f"Cannot flatten a decoded {type(self).__name__} feature.")
        return {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}

    def _source(self, value: Any, token_per_repo_id: Optional[Dict[str, Any]]):
        if not self.decode:
            raise RuntimeError(f"Decoding is disabled for this feature. Use {type(self).__name__}(decode=True).")
        return resolve_media(value, self.on_missing_media, token_per_repo_id, self.media_root, self.read_paths,
                             self.column)


@dataclass
class EMM1PointCloud(_BytesPathMedia):
    """Point cloud [`Feature`]: stores `{bytes, path}`, decodes to `{"xyz", "rgb"}` numpy arrays.

    Decoded value: `{"xyz": float32 (N, 3), "rgb": float32 (N, 3) in [0, 1] or None}`.
    Formats: OpenShape `.npy` (a pickled dict, read with an allow-list unpickler that refuses
    anything but numpy data), plain `.npy` (N x 3 or N x 6), `.npz` (`xyz`, `rgb`), `.ply`
    point clouds; meshes (`.obj`, `.glb`, `.gltf`, `.stl`, `.off`, mesh `.ply`) are sampled on
    the surface. Colours stored as 0-255 (integers, or floats above 1) are divided by 255.

    Args:
        num_points (`int`, *optional*): resample every cloud to exactly this many points
            (random subset, or all points plus repeats), deterministic in `seed`.
        normalize (`bool`, defaults to `False`): centre on the centroid and scale into the unit sphere.
        seed (`int`, defaults to `0`): seed of resampling and mesh sampling (same file -> same points).
        mesh_points (`int`, defaults to `10000`): points sampled on a mesh when `num_points` is None.
        decode (`bool`, defaults to `True`): decode; if `False`, examples are `{"bytes", "path"}`.
        on_missing_media (`str`, defaults to `"error"`): `"error"` raises `MissingMediaError`
            (a `FileNotFoundError`) naming the file; `"null"` decodes a missing file to None.
        media_root (`str`, *optional*): local files that resolve (through symlinks) outside this folder
            raise `MediaOutsideRootError` (a `PermissionError`) instead of being read. None: no check.
        read_paths (`bool`, defaults to `True`): `False` never opens a value's stored path when it has no
            bytes (`emm1.resolve` of an export with the media inside, without a root); it follows `on_missing_media`.
        id (`str`, *optional*): unused, for symmetry with `datasets` features.
    """

    num_points: Optional[int] = None
    normalize: bool = False
    seed: int = 0
    mesh_points: int = DEFAULT_MESH_POINTS
    decode: bool = True
    on_missing_media: str = "error"
    media_root: Optional[str] = _media_root_field()
    read_paths: bool = _read_paths_field()
    id: Optional[str] = field(default=None, repr=False)
    dtype: ClassVar[str] = "dict"
    _type: str = field(default="EMM1PointCloud", init=False, repr=False)
    column: ClassVar[str] = "points"  # the media column of this modality, named in errors

    def _encode_decoded(self, value: Any) -> Optional[dict]:
        if isinstance(value, np.ndarray):
            arrays = {"xyz": value[:, :3]} if value.shape[-1] == 3 else {"xyz": value[:, :3], "rgb": value[:, 3:6]}
        elif isinstance(value, dict) and value.get("xyz") is not None and value.get("bytes") is None:
            arrays = {k: np.asarray(value[k], dtype=np.float32) for k in ("xyz", "rgb") if value.get(k) is not None}
        else:
            return None
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # npz, not a pickle: safe to decode anywhere
        return {"bytes": buffer.getvalue(), "path": None}

    def decode_example(
        self, value: Any, token_per_repo_id: Optional[Dict[str, Union[str, bool, None]]] = None
    ) -> Optional[Dict[str, Optional[np.ndarray]]]:
        """Decode `{bytes, path}` to `{"xyz", "rgb"}` (None for a missing file with on_missing_media="null")."""
        if not isinstance(value, (dict, str, bytes)) or (isinstance(value, dict) and "xyz" in value):
            return value  # already decoded
        source = self._source(value, token_per_repo_id)
        if source is None:
            return None
        return read_point_cloud(
            source, num_points=self.num_points, normalize=self.normalize, seed=self.seed, mesh_points=self.mesh_points
        )


@dataclass
class EMM1Audio(_BytesPathMedia):
    """Audio [`Feature`] decoded without torch: soundfile for WAV/FLAC/OGG/MP3, PyAV (bundled
    FFmpeg) for MP4/M4A/AAC and anything libsndfile cannot read.

    Storage `{bytes, path}` as `datasets.Audio`, so `ds.cast_column("audio", datasets.Audio())`
    works for users with torchcodec. Decoded value:
    `{"path": str, "array": float32 ndarray, "sampling_rate": int}`; the array is 1-D when
    `mono`, else (channels, samples).

    Args:
        sampling_rate (`int`, *optional*): resample to this rate (soxr, high quality); None keeps the file's.
        mono (`bool`, defaults to `True`): average channels into one.
        decode (`bool`, defaults to `True`): decode; if `False`, examples are `{"bytes", "path"}`.
        on_missing_media (`str`, defaults to `"error"`): `"error"` raises `MissingMediaError`
            (a `FileNotFoundError`) naming the file; `"null"` decodes a missing file to None.
        media_root (`str`, *optional*): local files that resolve (through symlinks) outside this folder
            raise `MediaOutsideRootError` (a `PermissionError`) instead of being read. None: no check.
        read_paths (`bool`, defaults to `True`): `False` never opens a value's stored path when it has no
            bytes (`emm1.resolve` of an export with the media inside, without a root); it follows `on_missing_media`.
        id (`str`, *optional*): unused, for symmetry with `datasets` features.
    """

    sampling_rate: Optional[int] = None
    mono: bool = True
    decode: bool = True
    on_missing_media: str = "error"
    media_root: Optional[str] = _media_root_field()
    read_paths: bool = _read_paths_field()
    id: Optional[str] = field(default=None, repr=False)
    dtype: ClassVar[str] = "dict"
    _type: str = field(default="EMM1Audio", init=False, repr=False)
    column: ClassVar[str] = "audio"  # the media column of this modality, named in errors

    def _encode_decoded(self, value: Any) -> Optional[dict]:
        import soundfile

        if not (isinstance(value, dict) and value.get("array") is not None and value.get("bytes") is None):
            return None
        array = np.asarray(value["array"], dtype=np.float32)
        buffer = io.BytesIO()
        # decoded multi-channel arrays are (channels, samples); soundfile wants (samples, channels)
        soundfile.write(buffer, array.T if array.ndim == 2 else array, int(value["sampling_rate"]), format="WAV", subtype="FLOAT")
        return {"bytes": buffer.getvalue(), "path": None}

    def decode_example(
        self, value: Any, token_per_repo_id: Optional[Dict[str, Union[str, bool, None]]] = None
    ) -> Optional[Dict[str, Any]]:
        """Decode `{bytes, path}` to `{"path", "array", "sampling_rate"}` (None for a missing file with "null")."""
        if not isinstance(value, (dict, str, bytes)) or (isinstance(value, dict) and "array" in value):
            return value  # already decoded
        source = self._source(value, token_per_repo_id)
        if source is None:
            return None
        array, rate = read_audio(source, sampling_rate=self.sampling_rate, mono=self.mono)
        return {"path": source.path, "array": array, "sampling_rate": rate}


@dataclass
class EMM1Video(_BytesPathMedia):
    """Video [`Feature`] decoded lazily with PyAV into a `VideoReader` (no torch needed).

    Storage `{bytes, path}` as `datasets.Video`, so `cast_column("video", datasets.Video())`
    works for users with torchcodec. Decoding opens the container and reads the header only
    (`fps`, `num_frames`, `duration`, `width`, `height`); frames are decoded when indexed
    (`reader[i]`, `reader.get_frames([...])`, iteration) as (H, W, 3) uint8 RGB arrays. The
    reader pickles (as its path or bytes), so it crosses DataLoader worker processes.

    Args:
        stream_index (`int`, defaults to `0`): which video stream of the container to read.
        decode (`bool`, defaults to `True`): decode; if `False`, examples are `{"bytes", "path"}`.
        on_missing_media (`str`, defaults to `"error"`): `"error"` raises `MissingMediaError`
            (a `FileNotFoundError`) naming the file; `"null"` decodes a missing file to None.
        media_root (`str`, *optional*): local files that resolve (through symlinks) outside this folder
            raise `MediaOutsideRootError` (a `PermissionError`) instead of being read. None: no check.
        read_paths (`bool`, defaults to `True`): `False` never opens a value's stored path when it has no
            bytes (`emm1.resolve` of an export with the media inside, without a root); it follows `on_missing_media`.
        id (`str`, *optional*): unused, for symmetry with `datasets` features.
    """

    stream_index: int = 0
    decode: bool = True
    on_missing_media: str = "error"
    media_root: Optional[str] = _media_root_field()
    read_paths: bool = _read_paths_field()
    id: Optional[str] = field(default=None, repr=False)
    dtype: ClassVar[str] = "emm1_lib.media.video.VideoReader"
    _type: str = field(default="EMM1Video", init=False, repr=False)
    column: ClassVar[str] = "video"  # the media column of this modality, named in errors

    def _encode_decoded(self, value: Any) -> Optional[dict]:
        if not isinstance(value, VideoReader):
            return None
        if isinstance(value._file, str):
            return {"bytes": None, "path": value._file}
        return {"bytes": value._file, "path": value.path}

    def decode_example(
        self, value: Any, token_per_repo_id: Optional[Dict[str, Union[str, bool, None]]] = None
    ) -> Optional[VideoReader]:
        """Open `{bytes, path}` as a lazy `VideoReader` (None for a missing file with "null")."""
        if not isinstance(value, (dict, str, bytes)):
            return value  # already decoded
        source = self._source(value, token_per_repo_id)
        if source is None:
            return None
        return VideoReader(source, stream_index=self.stream_index)


@dataclass
class EMM1Image(datasets.Image):
    """`datasets.Image` (decodes to `PIL.Image.Image`) plus the E-MM1 missing/corrupt-media handling.

    It is a `datasets.Image` subclass with the same storage, so everything that works with
    `datasets.Image` works with it, and `cast_column("image", datasets.Image())` is free.

    Args:
        mode (`str`, *optional*): convert decoded images to this PIL mode (e.g. "RGB").
        decode (`bool`, defaults to `True`): decode; if `False`, examples are `{"bytes", "path"}`.
        id (`str`, *optional*): unused, as in `datasets.Image`.
        on_missing_media (`str`, defaults to `"error"`): `"error"` raises `MissingMediaError`
            (a `FileNotFoundError`) naming the file; `"null"` decodes a missing file to None.
        media_root (`str`, *optional*): local files that resolve (through symlinks) outside this folder
            raise `MediaOutsideRootError` (a `PermissionError`) instead of being read. None: no check.
        read_paths (`bool`, defaults to `True`): `False` never opens a value's stored path when it has no
            bytes (`emm1.resolve` of an export with the media inside, without a root); it follows `on_missing_media`.
    """

    on_missing_media: str = "error"
    media_root: Optional[str] = _media_root_field()
    read_paths: bool = _read_paths_field()
    _type: str = field(default="EMM1Image", init=False, repr=False)
    column: ClassVar[str] = "image"  # the media column of this modality, named in errors

    def __post_init__(self) -> None:
        check_on_missing_media(self.on_missing_media)

    def embed_storage(
        self,
        storage: pa.StructArray,
        token_per_repo_id: Optional[Dict[str, Union[str, bool, None]]] = None,
        local_files: bool = True,
        remote_files: bool = True,
    ) -> pa.StructArray:
        """Embed file bytes as `datasets.Image` does, honouring `on_missing_media` for missing files."""
        return embed_bytes_path(storage, self.on_missing_media, token_per_repo_id, local_files, remote_files,
                                self.media_root, self.read_paths, self.column)

    def decode_example(self, value: Any, token_per_repo_id: Optional[Dict[str, Union[str, bool, None]]] = None):
        """Decode like `datasets.Image` (EXIF orientation applied, `mode`), within `IMAGE_FORMATS`.

        Missing files follow `on_missing_media`; local files outside `media_root` are refused; decode
        errors name the file.
        """
        if not isinstance(value, (dict, str, bytes)):
            return value  # already decoded
        if not self.decode:
            raise RuntimeError("Decoding is disabled for this feature. Use EMM1Image(decode=True).")
        source = resolve_media(value, self.on_missing_media, token_per_repo_id, self.media_root, self.read_paths,
                               self.column)
        if source is None:
            return None
        import PIL.Image
        import PIL.ImageOps

        try:
            image = PIL.Image.open(source.file if isinstance(source.file, str) else source.open(), formats=IMAGE_FORMATS)
            image.load()  # reads the pixels and closes the file: no open file per row
            if image.getexif().get(PIL.Image.ExifTags.Base.Orientation) is not None:
                image = PIL.ImageOps.exif_transpose(image)
            if self.mode and self.mode != image.mode:
                image = image.convert(self.mode)
            return image
        except Exception as err:
            raise MediaDecodeError(
                f"Cannot decode {source.name} as an image ({', '.join(IMAGE_FORMATS)}): {type(err).__name__}: {err}. "
                "The file may be truncated or corrupt (re-download it) or in an unsupported format."
            ) from err


with warnings.catch_warnings():  # register_feature is marked experimental; the warning is noise for users
    warnings.simplefilter("ignore", UserWarning)
    for _feature_cls in (EMM1Image, EMM1Audio, EMM1Video, EMM1PointCloud):
        register_feature(_feature_cls, _feature_cls.__name__)

_FEATURE_CLASSES = {"image": EMM1Image, "audio": EMM1Audio, "video": EMM1Video, "points": EMM1PointCloud}


def media_feature(
    modality: str, decode: bool = True, on_missing_media: str = "error", media_root: Optional[str] = None,
    read_paths: bool = True, **options: Any
):
    """The `datasets` feature of a media column of `modality`.

    Args:
        modality: "image", "audio", "video" or "points".
        decode: decode on access; `False` gives `{"bytes", "path"}` dicts.
        on_missing_media: "error" (a missing file raises, naming it) or "null" (decodes to None).
        media_root: local files resolving (symlinks followed) outside this folder raise
            `MediaOutsideRootError`; None (the default) checks nothing.
        read_paths: False: a value without bytes is never opened from its stored path; it follows
            `on_missing_media` (`UnembeddedMediaError`, or None). For exports with the media inside read
            without a media root.
        **options: feature options: image `mode`; audio `sampling_rate`, `mono`; video
            `stream_index`; points `num_points`, `normalize`, `seed`, `mesh_points`.

    Returns:
        `EMM1Image`, `EMM1Audio`, `EMM1Video` or `EMM1PointCloud`; builders yield a string
        path column and cast it to this feature's arrow type.
    """
    if modality not in _FEATURE_CLASSES:
        raise ValueError(f"Unknown media modality {modality!r}; expected one of {MODALITIES}")
    cls = _FEATURE_CLASSES[modality]
    allowed = {f.name for f in fields(cls) if f.init} - {"decode", "on_missing_media", "media_root", "read_paths", "id"}
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"Unknown {modality} option(s) {sorted(unknown)}; {cls.__name__} accepts {sorted(allowed)}")
    return cls(decode=decode, on_missing_media=check_on_missing_media(on_missing_media), media_root=media_root,
               read_paths=read_paths, **options)
