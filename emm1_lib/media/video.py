"""A lazy video reader on PyAV: metadata at open, frames decoded only when asked for.

`VideoReader` pickles as its source (path or bytes), so datasets' multi-worker loaders can
ship decoded examples between processes; the PyAV container is reopened on demand.
"""
import io
from fractions import Fraction
from typing import Iterator
from typing import List
from typing import Optional
from typing import Sequence
from typing import Union

import numpy as np

from emm1_lib.media.files import MediaDecodeError
from emm1_lib.media.files import MediaSource
from emm1_lib.media.files import open_av_container
from emm1_lib.media.files import resolve_media


class VideoReader:
    """Frames of one video stream, decoded on demand as (height, width, 3) uint8 RGB arrays.

    Args:
        source: a `MediaSource`, path, bytes or stored `{"bytes", "path"}` dict.
        stream_index: which video stream of the container to read.

    Attributes (read from the container header when the reader is created, so a file that
    cannot be opened fails here, naming the file): `fps`, `num_frames`, `duration` (seconds),
    `width`, `height`, `path`.

    Access: `reader[i]`, `reader[a:b:c]`, `reader.get_frames([i, j, ...])` (stacked), iteration,
    `len(reader)`. Decoding is sequential: asking for an earlier frame than the last decoded
    one restarts from the beginning, which is cheap for clip-length videos.
    """

    def __init__(self, source: Union[MediaSource, str, bytes, dict], stream_index: int = 0):
        if not isinstance(source, MediaSource):
            source = resolve_media(source)
        self.path: Optional[str] = source.path
        self.name = source.name
        # keep what is needed to reopen: a local path, or the bytes
        self._file = source.file if isinstance(source.file, str) else source.open().read()
        self.stream_index = stream_index
        self._container = None
        self._frames = None  # generator of decoded frames
        self._next_index = 0
        self._open()

    # ------------------------------------------------------------ container handling
    def _open(self) -> None:
        self.close()
        file = self._file if isinstance(self._file, str) else io.BytesIO(self._file)
        try:
            self._container = open_av_container(file, self.name)
            streams = self._container.streams.video
            if len(streams) <= self.stream_index:
                raise ValueError(f"no video stream #{self.stream_index} (found {len(streams)} video streams)")
            stream = streams[self.stream_index]
            # PyAV's default threading, as a plain loop gets: frame threading ("AUTO") starts decoder threads for
            # every file, which for clips costs more than it gains (0.6x the throughput measured on 24-frame clips)
            self._stream = stream
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            self.fps: float = float(rate) if rate else 0.0
            self.width: int = stream.codec_context.width
            self.height: int = stream.codec_context.height
            if stream.duration is not None and stream.time_base is not None:
                self.duration: float = float(stream.duration * stream.time_base)
            elif self._container.duration is not None:
                self.duration = self._container.duration / 1_000_000  # av.time_base is microseconds
            else:
                self.duration = 0.0
            frames = stream.frames
            self._at_start = True
            if not frames:  # some containers (mkv, webm) don't store it: count packets, no decoding
                frames = sum(1 for packet in self._container.demux(stream) if packet.size)
                self._at_start = False
            self.num_frames: int = int(frames)
        except MediaDecodeError:
            self.close()
            raise
        except Exception as err:
            self.close()
            raise MediaDecodeError(
                f"Cannot decode {self.name} as video: {type(err).__name__}: {err}. "
                "The file may be truncated or corrupt (re-download it) or in an unsupported format."
            ) from err
        self._frames = None
        self._next_index = 0

    def _restart(self) -> None:
        if self._container is None:
            self._open()
        if not self._at_start:  # a freshly opened container needs no seek
            self._container.seek(0)
        self._at_start = False
        self._frames = self._container.decode(self._stream)
        self._next_index = 0

    def close(self) -> None:
        """Release the decoder and file handle (reopened automatically on the next access)."""
        if getattr(self, "_container", None) is not None:
            self._container.close()
        self._container = None
        self._frames = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    # ------------------------------------------------------------ pickling
    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_container", "_frames", "_stream")}
        state["_next_index"] = 0
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._container = None
        self._frames = None

    # ------------------------------------------------------------ frame access
    def _decode_indices(self, indices: Sequence[int]) -> List[np.ndarray]:
        """Frames at sorted, unique, in-range `indices`, in one forward pass."""
        out = []
        if not indices:
            return out
        if self._frames is None or indices[0] < self._next_index:
            self._restart()
        wanted = iter(indices)
        target = next(wanted)
        try:
            for frame in self._frames:
                index = self._next_index
                self._next_index += 1
                if index == target:
                    out.append(frame.to_ndarray(format="rgb24"))
                    target = next(wanted, None)
                    if target is None:
                        break
        except Exception as err:
            raise MediaDecodeError(
                f"Cannot decode frame {target} of {self.name}: {type(err).__name__}: {err}. "
                "The file may be truncated or corrupt (re-download it)."
            ) from err
        if len(out) < len(indices):  # the header promised more frames than the stream has
            raise IndexError(f"{self.name}: frame {target} not found; the stream ended after {self._next_index} frames")
        return out

    def _check_index(self, index: int) -> int:
        if index < 0:
            index += self.num_frames
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame index {index} out of range for {self.name} with {self.num_frames} frames")
        return index

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at `indices` (any order, repeats allowed) as a (k, height, width, 3) uint8 array."""
        indices = [self._check_index(int(i)) for i in indices]
        unique = sorted(set(indices))
        decoded = dict(zip(unique, self._decode_indices(unique)))
        if not indices:
            return np.zeros((0, self.height, self.width, 3), np.uint8)
        return np.stack([decoded[i] for i in indices])

    def __getitem__(self, key: Union[int, slice]) -> np.ndarray:
        if isinstance(key, slice):
            return self.get_frames(range(*key.indices(self.num_frames)))
        return self._decode_indices([self._check_index(int(key))])[0]

    def __len__(self) -> int:
        return self.num_frames

    def __iter__(self) -> Iterator[np.ndarray]:
        self._restart()
        for frame in self._frames:
            self._next_index += 1
            yield frame.to_ndarray(format="rgb24")

    def frame_at(self, seconds: float) -> np.ndarray:
        """The frame shown at time `seconds` (index = floor(seconds * fps))."""
        return self[min(int(seconds * self.fps), self.num_frames - 1)]

    @property
    def time_base(self) -> Optional[Fraction]:
        """Time base of the stream's timestamps."""
        if self._container is None:
            self._open()
        return self._stream.time_base

    def __repr__(self) -> str:
        return (
            f"VideoReader({self.name!r}, num_frames={self.num_frames}, fps={self.fps:.3f}, "
            f"duration={self.duration:.3f}s, size={self.width}x{self.height})"
        )
