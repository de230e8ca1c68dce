"""Point-cloud reading: OpenShape pickled `.npy` (safely), plain `.npy`/`.npz`, `.ply`, and meshes.

Output of `read_point_cloud`: `{"xyz": float32 (N, 3), "rgb": float32 (N, 3) in [0, 1] or None}`.

OpenShape's pickled `.npy` files and any `.npz` are read by `safe_npy` (a restricted unpickler:
`np.load(allow_pickle=True)` is never used); this module turns what they hold into points.
"""
import math
from typing import Any
from typing import BinaryIO
from typing import Dict
from typing import Optional
from typing import Tuple
from typing import Union

import numpy as np

from emm1_lib.media.files import MediaDecodeError
from emm1_lib.media.files import MediaSource
from emm1_lib.media.files import resolve_media
from emm1_lib.media.safe_npy import load_npy
from emm1_lib.media.safe_npy import load_npz

NPY_EXTENSIONS = (".npy",)
NPZ_EXTENSIONS = (".npz",)
MESH_EXTENSIONS = (".obj", ".glb", ".gltf", ".stl", ".off")
PLY_EXTENSIONS = (".ply",)
POINT_CLOUD_EXTENSIONS = NPY_EXTENSIONS + NPZ_EXTENSIONS + PLY_EXTENSIONS + MESH_EXTENSIONS

# Points sampled on a mesh surface when no `num_points` is given (OpenShape uses 10,000).
DEFAULT_MESH_POINTS = 10000


def _first_present(obj: dict, keys: Tuple[str, ...]) -> Any:
    """The value of the first of `keys` in `obj` whose value is not None (None if there is none)."""
    for key in keys:
        value = obj.get(key)
        if value is not None:
            return value
    return None


def _as_points(obj: Any, name: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Extract (xyz, rgb) from a loaded dict ({"xyz", "rgb"}) or an (N, 3)/(N, 6) array."""
    if isinstance(obj, dict):
        xyz = next((obj[k] for k in ("xyz", "points", "pos") if k in obj), None)
        if xyz is None and list(obj) == ["arr_0"]:  # np.savez(path, array): one unnamed (N, 3|6) array
            return _as_points(obj["arr_0"], name)
        if xyz is None:
            raise MediaDecodeError(f"{name}: no 'xyz' array among its keys {sorted(map(str, obj))}")
        rgb = _first_present(obj, ("rgb", "colors", "color"))
    elif isinstance(obj, np.ndarray) and obj.ndim == 2 and obj.shape[1] in (3, 6):
        xyz, rgb = obj[:, :3], (obj[:, 3:6] if obj.shape[1] == 6 else None)
    else:
        shape = getattr(obj, "shape", None)
        raise MediaDecodeError(
            f"{name}: expected a dict with 'xyz' or an (N, 3) / (N, 6) array, got {type(obj).__name__} {shape or ''}"
        )
    return xyz, rgb


# The ufuncs' reductions themselves: `ndarray.min` and `.all` go through Python wrappers (numpy's `_methods`).
_MINIMUM = np.minimum.reduce
_MAXIMUM = np.maximum.reduce
_ALL = np.logical_and.reduce

# Colours as floats in [0, 1] are the common case, and one pass tells it: for a non-negative float its bits,
# read as an unsigned integer, order as the float does, so a maximum of the bits at most those of 1.0 means
# every value lies in [+0.0, 1.0] (a sign bit, NaN or infinity all read as larger). Passes are what the checks
# cost: within a `datasets` row read, one over a 10,000-point array takes 6-8 us (2 us when it is in the cache).
_UNIT_BITS = {
    np.dtype(np.float32): (np.dtype(np.uint32), 0x3F800000),
    np.dtype(np.float64): (np.dtype(np.uint64), 0x3FF0000000000000),
}


def _finite_bounds(values: np.ndarray) -> Tuple[float, float, bool]:
    """(min, max, both finite) of a non-empty numeric array, in two passes; NaN propagates through both."""
    low, high = float(_MINIMUM(values, axis=None)), float(_MAXIMUM(values, axis=None))
    return low, high, math.isfinite(low) and math.isfinite(high)


def _all_finite(values: np.ndarray) -> bool:
    """No NaN nor infinity in a float array: one pass over it (min and max would take two)."""
    return bool(_ALL(np.isfinite(values), axis=None))


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
    if xyz.dtype.kind == "f" and not _all_finite(xyz):
        # one non-finite point would spread to every point on normalize=True
        bad = int(np.count_nonzero(~np.isfinite(xyz).all(axis=1)))
        raise MediaDecodeError(f"{name}: {bad} of its {len(xyz)} points have NaN or infinite coordinates; the file is corrupt.")
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
    unit = _UNIT_BITS.get(rgb.dtype)
    if unit is not None and int(_MAXIMUM(rgb.view(unit[0]), axis=None)) <= unit[1]:
        return rgb.astype(np.float32, copy=False)  # all in [0, 1]: what the checks below conclude, in one pass
    low, high, finite = _finite_bounds(rgb)
    if not finite:
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
