"""Safe `.npy` / `.npz` reading: a restricted unpickler for pickled object arrays, size-checked plain arrays.

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
import stat
import threading
import zipfile
from typing import Any
from typing import BinaryIO
from typing import Dict
from typing import Optional
from typing import Tuple

import numpy as np

from emm1_lib.media.files import MediaDecodeError
from emm1_lib.media.files import UnsafePickleError

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


# numpy parses a .npy header with `ast.literal_eval`; CPython 3.11's AST builder keeps its recursion depth in
# interpreter-wide state, so two threads parsing at once can fail with "SystemError: AST constructor recursion
# depth mismatch" (a download's fetch threads decode-check many .npy files at once). Headers are tiny: serialise.
_HEADER_LOCK = threading.Lock()


def _remaining_bytes(f: BinaryIO, limit: Optional[int]) -> Optional[int]:
    """Bytes left in `f` from its position, if knowable (bounded by `limit` for zip members)."""
    if limit is not None:
        return limit - f.tell()
    try:  # a regular file: its size, without seeking (a seek to the end drops the read buffer)
        info = os.fstat(f.fileno())
        if stat.S_ISREG(info.st_mode):
            return info.st_size - f.tell()
    except (OSError, AttributeError, io.UnsupportedOperation):
        pass
    try:
        pos = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(pos)
        return end - pos
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None


# Parsed `.npy` headers by their exact bytes. numpy parses a header with `ast.literal_eval` (about 20 us,
# a third of reading a 10,000-point OpenShape file), and every OpenShape file carries the same header, as
# do plain arrays of one shape. Parsing is a pure function of these bytes, so a header seen before gives
# the same (shape, fortran_order, dtype), checks included; bounded so hostile inputs cannot grow it.
_HEADER_CACHE: Dict[Tuple[Tuple[int, int], bytes], Tuple[Tuple[int, ...], bool, np.dtype]] = {}
_HEADER_CACHE_SIZE = 256
_MAX_HEADER_CHARS = 10000  # numpy's default max_header_size; utf-8 needs at most 4 bytes a character
_MAGIC_PREFIX = b"\x93NUMPY"  # numpy.lib.format.MAGIC_PREFIX, then a major and a minor version byte
_MAGIC_LEN = len(_MAGIC_PREFIX) + 2


def _read_array_header_any_version(f: BinaryIO, version: Tuple[int, int]) -> Tuple[Tuple[int, ...], bool, np.dtype]:
    """numpy's header reader for any version: private, in `numpy.lib.format` before numpy 2.x moved it."""
    try:
        from numpy.lib._format_impl import _read_array_header
    except ImportError:  # numpy 1.x
        from numpy.lib.format import _read_array_header
    return _read_array_header(f, version)


def _read_up_to(f: BinaryIO, n: int) -> bytes:
    """`n` bytes of `f`, fewer only at its end: a stream may return fewer than asked (numpy's reader retries too)."""
    data = f.read(n)
    while len(data) < n:
        more = f.read(n - len(data))
        if not more:
            break
        data += more
    return data


def read_npy_header(f: BinaryIO) -> Tuple[Tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the `.npy` stream at `f`, which is left at the array data.

    The same checks as numpy's `read_array_header_*` (it parses every header not seen before); raises
    `ValueError` for a bad magic string, a truncated or malformed header.
    """
    magic = _read_up_to(f, _MAGIC_LEN)
    if len(magic) == _MAGIC_LEN and magic.startswith(_MAGIC_PREFIX):
        version = (magic[-2], magic[-1])
    else:
        from numpy.lib import format as npformat

        npformat.read_magic(io.BytesIO(magic))  # raises numpy's own error for a short or wrong magic string
        raise ValueError(f"the magic string is not correct: {magic!r}")  # unreachable with numpy's reader
    length_size = 2 if version == (1, 0) else 4  # versions 2.0 and 3.0 use a 4-byte header length
    length_bytes = _read_up_to(f, length_size)
    length = int.from_bytes(length_bytes, "little")
    if length > 4 * _MAX_HEADER_CHARS:  # numpy refuses it after reading it; refuse before (up to 4 GiB)
        raise ValueError(f"the header declares {length} bytes, over numpy's limit of {_MAX_HEADER_CHARS} characters")
    header = _read_up_to(f, length) if len(length_bytes) == length_size else b""
    key = (version, length_bytes + header)
    parsed = _HEADER_CACHE.get(key)
    if parsed is None:
        with _HEADER_LOCK:
            parsed = _parse_npy_header(version, key[1])
        if len(_HEADER_CACHE) >= _HEADER_CACHE_SIZE:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[key] = parsed
    return parsed


def _parse_npy_header(version: Tuple[int, int], length_and_header: bytes) -> Tuple[Tuple[int, ...], bool, np.dtype]:
    """numpy's own parse of a header (its length field included: numpy checks it against what is there)."""
    from numpy.lib import format as npformat

    raw = io.BytesIO(length_and_header)
    if version == (1, 0):
        return npformat.read_array_header_1_0(raw)
    if version == (2, 0):
        return npformat.read_array_header_2_0(raw)
    return _read_array_header_any_version(raw, version)  # 3.0 (utf-8 field names) has no public reader


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
    start = f.tell() if size is not None else 0
    try:
        shape, fortran_order, dtype = read_npy_header(f)
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
