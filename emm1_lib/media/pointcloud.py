"""Point-cloud reading: OpenShape pickled `.npy` (safely), plain `.npy`/`.npz`, `.ply`, and meshes.

Output of `read_point_cloud`: `{"xyz": float32 (N, 3), "rgb": float32 (N, 3) in [0, 1] or None}`.

OpenShape stores each object as a pickled dict. Unpickling runs whatever callables the file
names, so pickles are read with `RestrictedUnpickler`, which only resolves the globals numpy
needs to rebuild arrays and scalars plus builtin containers; anything else raises
`UnsafePickleError` before it is called. `np.load(allow_pickle=True)` is never used.
"""
import io
import math
import operator
import os
import pickle
import zipfile
from typing import Any
from typing import BinaryIO
from typing import Dict
from typing import Optional
from typing import Tuple
from typing import Union

import numpy as np

from emm1_lib.media.files import MediaDecodeError
from emm1_lib.media.files import MediaSource
from emm1_lib.media.files import UnsafePickleError
from emm1_lib.media.files import resolve_media

NPY_EXTENSIONS = (".npy",)
NPZ_EXTENSIONS = (".npz",)
MESH_EXTENSIONS = (".obj", ".glb", ".gltf", ".stl", ".off")
PLY_EXTENSIONS = (".ply",)
POINT_CLOUD_EXTENSIONS = NPY_EXTENSIONS + NPZ_EXTENSIONS + PLY_EXTENSIONS + MESH_EXTENSIONS

# Points sampled on a mesh surface when no `num_points` is given (OpenShape uses 10,000).
DEFAULT_MESH_POINTS = 10000

# The only globals a pickle may reference: numpy array/scalar/dtype reconstruction (module
# path differs between numpy 1.x and 2.x) and harmless builtin containers/constructors.
_ALLOWED_GLOBALS = frozenset(
    [
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # how protocol-2 pickles (Python 2 era files) store bytes
    ]
)


try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct


class _StateCheckedArray(np.ndarray):
    """The arrays the restricted unpickler builds: `__setstate__` (pickle's BUILD) is checked first.

    numpy's own (2.4) does not check that an object array's list holds as many items as the shape
    says: it allocates the shape, then reads past the end of the list (a crash, or worse). After
    loading, `_as_plain_arrays` turns these back into plain ndarrays (views, no copy).
    """

    def __setstate__(self, state: Any) -> None:
        # state: ([version,] shape, dtype, is_fortran, data), data a list for object arrays
        if type(state[-1]) is list and len(state[-1]) != math.prod(map(int, state[-4])):
            raise ValueError(f"an object array of shape {state[-4]!r} pickled with {len(state[-1])} items")
        np.ndarray.__setstate__(self, state)


def _as_plain_arrays(obj: Any, done: Dict[int, Tuple[Any, Any]]) -> Any:
    """`obj` with each `_StateCheckedArray` in it (through dicts, lists, tuples, object arrays) an ndarray view.

    `done` maps id(object seen) to (object, result): shared and self-containing objects are walked once,
    and holding the object keeps its id from being reused meanwhile.
    """
    kind = type(obj)
    if kind is not _StateCheckedArray and not issubclass(kind, (dict, list, tuple)):
        return obj
    if id(obj) in done:
        return done[id(obj)][1]
    if kind is _StateCheckedArray:
        out = obj.view(np.ndarray)
        done[id(obj)] = obj, out
        if out.dtype.kind == "O":
            flat = out.flat  # assigning through it writes into `out`, whatever its layout
            for index in range(out.size):
                flat[index] = _as_plain_arrays(flat[index], done)
        return out
    done[id(obj)] = obj, obj
    if isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = _as_plain_arrays(value, done)
    elif isinstance(obj, list):
        obj[:] = [_as_plain_arrays(item, done) for item in obj]
    else:  # a tuple: rebuilt (a tuple holding itself keeps a reference to the original)
        out = tuple(_as_plain_arrays(item, done) for item in obj)
        done[id(obj)] = obj, out
        return out
    return obj


def allocation_budget(file_bytes: int) -> int:
    """What a pickle of `file_bytes` may ask allow-listed constructors to allocate: 16x its size + 1 MiB.

    numpy's own pickles carry their data and ask `_reconstruct` for shape (0,), so genuine files are
    charged next to nothing; the margin only has to be generous for hand-made ones.
    """
    return 16 * max(file_bytes, 0) + (1 << 20)


class _ChargedConstructors:
    """The allow-listed constructors that take a size, charging what they would allocate to one budget.

    Pickle has no repeat opcode, but `bytearray(n)`, `ndarray(shape)` and `_reconstruct(ndarray, shape,
    dtype)` allocate from a number. Past `max_bytes` (None: no limit) they raise `MediaDecodeError`
    before allocating. Kept apart from the unpickler: the pickle memoises these bound methods, and
    methods of the unpickler would tie it and its memo (every array unpickled) into a reference cycle,
    freed only by a GC pass.
    """

    def __init__(self, name: str, max_bytes: Optional[int]):
        self.name = name
        self.max_bytes = max_bytes
        self.charged_bytes = 0

    def _charge(self, nbytes: int) -> None:
        self.charged_bytes += max(nbytes, 0)
        if self.max_bytes is not None and self.charged_bytes > self.max_bytes:
            raise MediaDecodeError(
                f"{self.name}: its pickle asks for more than {self.max_bytes} bytes of arrays, far more than the "
                "file holds; it is corrupt or hostile."
            )

    def _charge_array(self, shape: Any, dtype: Any) -> None:
        dims = shape if isinstance(shape, (tuple, list)) else (shape,)
        self._charge(math.prod(map(int, dims)) * np.dtype(dtype).itemsize)

    def ndarray(self, shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> np.ndarray:
        """What `numpy.ndarray` unpickles to; also `reconstruct`'s expected first argument."""
        self._charge_array(shape, dtype)
        return _StateCheckedArray(shape, dtype, *args, **kwargs)

    def reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if getattr(subtype, "__func__", None) is not _ChargedConstructors.ndarray:
            raise UnsafePickleError(f"Refusing to load {self.name}: it rebuilds an array of {subtype!r}, not numpy.ndarray.")
        if shape != (0,):  # what numpy's pickles ask for: the data comes with the state
            self._charge_array(shape, dtype)
        return _reconstruct(_StateCheckedArray, shape, dtype)

    def bytearray(self, *args: Any) -> bytearray:
        if args and hasattr(args[0], "__index__"):  # bytearray(n), n an int or numpy integer: n zero bytes
            self._charge(operator.index(args[0]))
        return bytearray(*args)  # the other forms copy bytes or items that the file holds


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals (numpy arrays, builtin containers).

    A pickle can only call what `find_class` returns, so refusing every other global means a
    crafted file cannot run code; it fails with `UnsafePickleError` instead. The constructors that
    take a size are charged against `max_bytes` (see `_ChargedConstructors`), so a 150-byte file
    cannot ask for gigabytes.
    """

    def __init__(self, file: BinaryIO, name: str = "<pickle>", max_bytes: Optional[int] = None):
        super().__init__(file)
        self.name = name
        self.constructors = _ChargedConstructors(name, max_bytes)

    def load(self) -> Any:
        """The unpickled object; its arrays are plain ndarrays."""
        return _as_plain_arrays(self.load_checked(), {})

    def load_checked(self) -> Any:
        """The unpickled object, its arrays still `_StateCheckedArray`s (for callers that convert what they keep)."""
        return super().load()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("numpy", "ndarray"):
            return self.constructors.ndarray
        if (module, name) in _ALLOWED_GLOBALS and name == "_reconstruct":
            return self.constructors.reconstruct
        if (module, name) == ("builtins", "bytearray"):
            return self.constructors.bytearray
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        # numpy >= 2 pickles dtypes of some kinds via their classes, e.g. numpy.dtypes.Float32DType
        if module == "numpy.dtypes" and name.endswith("DType"):
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"Refusing to load {self.name}: its pickle references {module}.{name}, which is not a numpy "
            "array or builtin container. Pickles can run arbitrary code, so only numpy data is allowed; "
            "nothing from the file was executed. If you trust the file, convert it to a plain .npy/.npz."
        )


def restricted_loads(data: bytes, name: str = "<pickle>") -> Any:
    """Unpickle `data` allowing only numpy arrays/scalars and builtin containers, within `allocation_budget`."""
    return RestrictedUnpickler(io.BytesIO(data), name, max_bytes=allocation_budget(len(data))).load()


def _remaining_bytes(f: BinaryIO, limit: Optional[int]) -> Optional[int]:
    """Bytes left in `f` from its position, if knowable (bounded by `limit` for zip members)."""
    if limit is not None:
        return limit - f.tell()
    try:
        pos = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(pos)
        return end - pos
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None


def load_npy(f: BinaryIO, name: str = "<npy>", size: Optional[int] = None, plain_arrays: bool = True) -> Any:
    """Read one `.npy` stream safely: a plain array, or the object a pickled `.npy` holds.

    The header is parsed first and the declared shape checked against the bytes actually
    present, so a lying header cannot make us allocate more than the file holds. Object
    arrays (pickles) go through `RestrictedUnpickler`. 0-d object arrays (OpenShape's dict)
    are unwrapped to the object.

    Args:
        f: binary stream positioned at the start of the `.npy` data.
        name: file name for error messages.
        size: total size of the stream when `f` cannot seek (zip members).
        plain_arrays: False leaves the arrays of a pickle as `_StateCheckedArray`s (ndarray subclasses),
            for a caller that converts what it keeps anyway (saves a walk through the object).
    """
    from numpy.lib import format as npformat

    start = f.tell() if size is not None else 0
    try:
        version = npformat.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = npformat.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran_order, dtype = npformat.read_array_header_2_0(f)
        else:  # 3.0 (utf-8 field names) has no public reader
            shape, fortran_order, dtype = npformat._read_array_header(f, version)
    except ValueError as err:
        raise MediaDecodeError(f"{name} is not a valid .npy file ({err}); it may be truncated or corrupt.") from err
    remaining = _remaining_bytes(f, None if size is None else size + start)
    if dtype.hasobject:
        # unpickle straight from the stream (no extra copy of the payload); the sizes it passes to
        # bytearray / ndarray are charged against a budget from the bytes left in the file
        budget = None if remaining is None else allocation_budget(remaining)
        try:
            unpickler = RestrictedUnpickler(f, name, max_bytes=budget)
            array = unpickler.load() if plain_arrays else unpickler.load_checked()
        except MediaDecodeError:  # UnsafePickleError, or over the budget
            raise
        except Exception as err:
            raise MediaDecodeError(
                f"{name}: cannot unpickle its object array ({type(err).__name__}: {err}); "
                "the file may be truncated or corrupt."
            ) from err
        if isinstance(array, np.ndarray) and array.shape == () and array.dtype == object:  # OpenShape's dict
            return array.item()
        return array
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = count * dtype.itemsize
    if remaining is not None and nbytes > remaining:
        raise MediaDecodeError(
            f"{name}: header declares shape {shape} ({nbytes} bytes) but only {remaining} bytes follow; "
            "the file is truncated or corrupt (re-download it)."
        )
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise MediaDecodeError(f"{name}: expected {nbytes} bytes of array data, got {len(data)}; the file is truncated.")
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)


def load_npz(f: BinaryIO, name: str = "<npz>") -> Dict[str, Any]:
    """Read every array of a `.npz` archive with `load_npy` (same safety and size checks)."""
    try:
        archive = zipfile.ZipFile(f)
    except zipfile.BadZipFile as err:
        raise MediaDecodeError(f"{name} is not a valid .npz (zip) file ({err}); it may be truncated or corrupt.") from err
    out = {}
    with archive:
        for info in archive.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            with archive.open(info) as member:
                out[key] = load_npy(_Counting(member), f"{name}[{info.filename}]", size=info.file_size)
    return out


class _Counting(io.RawIOBase):
    """Wraps a non-seekable zip member so `tell()` works (numpy's header readers need it)."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.pos = raw, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.pos += len(data)
        return data

    def tell(self) -> int:
        return self.pos


def _as_points(obj: Any, name: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Extract (xyz, rgb) from a loaded dict ({"xyz", "rgb"}) or an (N, 3)/(N, 6) array."""
    if isinstance(obj, dict):
        xyz = next((obj[k] for k in ("xyz", "points", "pos") if k in obj), None)
        if xyz is None and list(obj) == ["arr_0"]:  # np.savez(path, array): one unnamed (N, 3|6) array
            return _as_points(obj["arr_0"], name)
        if xyz is None:
            raise MediaDecodeError(f"{name}: no 'xyz' array among its keys {sorted(map(str, obj))}")
        rgb = next((obj[k] for k in ("rgb", "colors", "color") if k in obj and obj[k] is not None), None)
    elif isinstance(obj, np.ndarray) and obj.ndim == 2 and obj.shape[1] in (3, 6):
        xyz, rgb = obj[:, :3], (obj[:, 3:6] if obj.shape[1] == 6 else None)
    else:
        shape = getattr(obj, "shape", None)
        raise MediaDecodeError(
            f"{name}: expected a dict with 'xyz' or an (N, 3) / (N, 6) array, got {type(obj).__name__} {shape or ''}"
        )
    return xyz, rgb


def _checked_points(xyz: Any, rgb: Any, name: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """xyz as a numeric (N > 0, 3) array and rgb, if any, numeric with the same shape, or `MediaDecodeError`.

    Checked on what every format gives: a truncated mesh can parse to vertices of shape (1, 1).
    """
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or xyz.dtype.kind not in "fiu":
        raise MediaDecodeError(
            f"{name}: xyz must be a numeric (N, 3) array, got {xyz.dtype} {xyz.shape}; the file may be truncated or corrupt."
        )
    if len(xyz) == 0:
        raise MediaDecodeError(f"{name}: the point cloud is empty")
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != xyz.shape or rgb.dtype.kind not in "fiu":
            raise MediaDecodeError(f"{name}: rgb must be numeric with the shape of xyz {xyz.shape}, got {rgb.dtype} {rgb.shape}")
    return xyz, rgb


def rgb_to_unit(rgb: np.ndarray, name: str = "<colours>") -> np.ndarray:
    """Colours as float32 in [0, 1]: integers and floats above 1 are taken as 0-255 and divided.

    Raises `MediaDecodeError` naming `name` for NaN or infinite colours, which no scaling or clipping
    could place in [0, 1].
    """
    if rgb.size == 0:
        return rgb.astype(np.float32)
    low, high = float(rgb.min()), float(rgb.max())  # NaN propagates through both
    if not (math.isfinite(low) and math.isfinite(high)):
        raise MediaDecodeError(f"{name}: its colours hold NaN or infinite values; the file is corrupt.")
    if rgb.dtype.kind in "iu" or high > 1.0 + 1e-6:
        out, low, high = rgb.astype(np.float32) / np.float32(255.0), low / 255.0, high / 255.0
    else:
        out = rgb.astype(np.float32, copy=False)
    # clip only when needed (a copy): most files are already in range
    return np.clip(out, 0.0, 1.0) if low < 0.0 or high > 1.0 else out


def resample_points(
    xyz: np.ndarray, rgb: Optional[np.ndarray], num_points: int, seed: int = 0
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Deterministically pick exactly `num_points` points: a random subset without replacement
    when there are more, all points plus random repeats when there are fewer."""
    n = len(xyz)
    if n == 0:
        raise ValueError("cannot resample an empty point cloud")
    if n == num_points:
        return xyz, rgb
    rng = np.random.default_rng(seed)
    if n > num_points:
        index = np.sort(rng.choice(n, num_points, replace=False))
    else:
        index = np.concatenate([np.arange(n), rng.choice(n, num_points - n, replace=True)])
    return xyz[index], (rgb[index] if rgb is not None else None)


def normalize_points(xyz: np.ndarray) -> np.ndarray:
    """Centre on the centroid and scale so the farthest point lies on the unit sphere."""
    centred = xyz - xyz.mean(axis=0, dtype=np.float64)
    radius = float(np.sqrt((centred**2).sum(axis=1).max())) if len(centred) else 0.0
    if radius > 0:
        centred = centred / radius
    return centred.astype(np.float32)


def _sniff(head: bytes) -> str:
    """Guess the format of in-memory data without a file name."""
    if head.startswith(b"\x93NUMPY"):
        return ".npy"
    if head.startswith(b"PK\x03\x04"):
        return ".npz"
    if head.startswith(b"ply"):
        return ".ply"
    if head.startswith(b"glTF"):
        return ".glb"
    if head.lstrip().startswith(b"OFF"):
        return ".off"
    if head.startswith(b"solid") or len(head) >= 84:
        return ".stl"
    return ""


def _mesh_points(mesh: Any, count: int, seed: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Sample `count` points uniformly on the surface (by area), with interpolated colours."""
    import trimesh

    if len(mesh.faces) == 0:
        raise ValueError("the mesh has no faces")
    points, face_index, bary = trimesh.sample.sample_surface(mesh, count, seed=seed, return_barycentric=True)
    visual = mesh.visual
    if getattr(visual, "kind", None) == "texture":
        visual = visual.to_color()  # texture -> per-vertex colours sampled at the UVs
    rgb = None
    kind = getattr(visual, "kind", None)
    if kind == "vertex":
        corner_colours = np.asarray(visual.vertex_colors)[mesh.faces[face_index]][..., :3].astype(np.float64)
        rgb = (corner_colours * bary[:, :, None]).sum(axis=1) / 255.0
    elif kind == "face":
        rgb = np.asarray(visual.face_colors)[face_index][:, :3] / 255.0
    return np.asarray(points), rgb


def _read_trimesh(f: BinaryIO, suffix: str, num_points: Optional[int], mesh_points: int, seed: int):
    """Load a PLY/mesh with trimesh: point-cloud PLYs give their vertices, meshes are sampled."""
    import trimesh

    loaded = trimesh.load(f, file_type=suffix.lstrip("."), process=False)
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.dump(concatenate=True) if loaded.geometry else None
    if isinstance(loaded, trimesh.PointCloud):
        colours = np.asarray(loaded.colors)
        rgb = colours[:, :3] if colours.ndim == 2 and len(colours) == len(loaded.vertices) else None
        return np.asarray(loaded.vertices), rgb
    if isinstance(loaded, trimesh.Trimesh):
        if len(loaded.faces) == 0:  # a PLY of vertices only
            colours = np.asarray(loaded.visual.vertex_colors) if loaded.visual.kind == "vertex" else None
            return np.asarray(loaded.vertices), (colours[:, :3] if colours is not None else None)
        return _mesh_points(loaded, num_points or mesh_points, seed)
    raise ValueError(f"trimesh returned {type(loaded).__name__}, not a mesh or point cloud")


def read_point_cloud(
    source: Union[MediaSource, str, bytes, dict],
    *,
    num_points: Optional[int] = None,
    normalize: bool = False,
    seed: int = 0,
    mesh_points: int = DEFAULT_MESH_POINTS,
) -> Dict[str, Optional[np.ndarray]]:
    """Read a point cloud or mesh into `{"xyz": float32 (N, 3), "rgb": float32 (N, 3) in [0, 1] or None}`.

    Args:
        source: a `MediaSource`, a path, bytes, or a stored `{"bytes", "path"}` dict. The format
            comes from the path's extension (sniffed from the content for bare bytes):
            `.npy` (OpenShape pickled dict, read safely, or plain N x 3 / N x 6), `.npz`
            (`xyz`/`rgb` arrays), `.ply` (point cloud, or mesh -> sampled), `.obj`, `.glb`,
            `.gltf`, `.stl`, `.off` (sampled on the surface).
        num_points: resample to exactly this many points (deterministic in `seed`); meshes are
            sampled with this many points directly.
        normalize: centre on the centroid and scale into the unit sphere.
        seed: seed of the resampling and mesh sampling, so the same file always gives the same points.
        mesh_points: points sampled on a mesh when `num_points` is None.

    Raises:
        MissingMediaError: the file does not exist.
        UnsafePickleError: a pickle references anything but numpy data (nothing is executed).
        MediaDecodeError: any other unreadable input, naming the file.
    """
    if not isinstance(source, MediaSource):
        source = resolve_media(source)
    name = source.name
    suffix = source.suffix
    try:
        with _opened(source) as f:
            if suffix not in POINT_CLOUD_EXTENSIONS:
                pos = f.tell()
                suffix = _sniff(f.read(84))
                f.seek(pos)
                if not suffix:
                    raise MediaDecodeError(
                        f"{name}: unknown point-cloud format (extension {source.suffix!r}); "
                        f"supported: {', '.join(POINT_CLOUD_EXTENSIONS)}"
                    )
            if suffix in NPY_EXTENSIONS:
                # _checked_points makes plain arrays of the two it keeps
                xyz, rgb = _as_points(load_npy(f, name, plain_arrays=False), name)
            elif suffix in NPZ_EXTENSIONS:
                xyz, rgb = _as_points(load_npz(f, name), name)
            else:
                xyz, rgb = _read_trimesh(f, suffix, num_points, mesh_points, seed)
    except MediaDecodeError:
        raise
    except Exception as err:
        raise MediaDecodeError(
            f"Cannot decode {name} as a point cloud: {type(err).__name__}: {err}. "
            "The file may be truncated or corrupt (re-download it) or in an unsupported format."
        ) from err
    xyz, rgb = _checked_points(xyz, rgb, name)
    xyz = xyz.astype(np.float32, copy=False)
    rgb = rgb_to_unit(rgb, name) if rgb is not None else None
    if num_points is not None:
        xyz, rgb = resample_points(xyz, rgb, num_points, seed)
    if normalize:
        xyz = normalize_points(xyz)
    return {"xyz": np.ascontiguousarray(xyz), "rgb": None if rgb is None else np.ascontiguousarray(rgb)}


class _opened:
    """Context manager: open a MediaSource for reading; close only files we opened."""

    def __init__(self, source: MediaSource):
        self.source = source
        self.own = isinstance(source.file, str)

    def __enter__(self) -> BinaryIO:
        self.f = self.source.open()
        return self.f

    def __exit__(self, *exc) -> None:
        if self.own:
            self.f.close()
