"""Reframer: any block size, sample rate, channel count and dtype in; 16 kHz mono float32 out."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

from ..errors import AudioError
from ..events import SAMPLE_RATE

Samples = npt.NDArray[np.float32]


def to_float_mono(block: npt.NDArray[np.generic], channels: int) -> Samples:
    """Convert a block of interleaved or (n, ch) samples of any common dtype to float32 mono."""
    a = np.asarray(block)
    if a.dtype == np.int16:
        f = a.astype(np.float32) / 32768.0
    elif a.dtype == np.int32:
        f = a.astype(np.float32) / 2147483648.0
    elif a.dtype == np.uint8:
        f = (a.astype(np.float32) - 128.0) / 128.0
    elif a.dtype in (np.float32, np.float64):
        f = a.astype(np.float32, copy=False)
    else:
        raise AudioError(f"unsupported sample type {a.dtype}")
    if f.ndim == 1 and channels > 1:
        usable = len(f) - len(f) % channels
        f = f[:usable].reshape(-1, channels)
    if f.ndim == 2:
        f = f.mean(axis=1, dtype=np.float32) if f.shape[1] > 1 else f[:, 0]
    return np.ascontiguousarray(f, dtype=np.float32)


class Reframer:
    """Stateful converter to 16 kHz mono float32, streaming-safe across block boundaries."""

    def __init__(self, in_rate: int, channels: int = 1) -> None:
        if in_rate <= 0:
            raise AudioError(f"sample rate must be positive, got {in_rate}")
        if channels <= 0:
            raise AudioError(f"channel count must be positive, got {channels}")
        self.in_rate = int(in_rate)
        self.channels = int(channels)
        self._resampler = (
            None
            if self.in_rate == SAMPLE_RATE
            else soxr.ResampleStream(self.in_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        )

    def feed(self, block: npt.NDArray[np.generic]) -> Samples:
        mono = to_float_mono(block, self.channels)
        if self._resampler is None:
            return mono
        out: Samples = self._resampler.resample_chunk(mono, last=False)
        return out

    def flush(self) -> Samples:
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        out: Samples = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        return out


def split_frames(samples: Samples, frame_samples: int) -> tuple[list[Samples], Samples]:
    """Cut ``samples`` into whole frames; return the frames and the remainder."""
    n = len(samples) // frame_samples
    frames = [samples[i * frame_samples : (i + 1) * frame_samples] for i in range(n)]
    return frames, samples[n * frame_samples :]
