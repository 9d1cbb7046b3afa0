"""Voice activity gating (webrtcvad) and the fixed-capacity ring buffer of recent audio.

:class:`VadSegmenter` is pure: 16 kHz mono samples in, segment events out. It decides when an
utterance starts (``start_frames`` voiced frames in a row, with ``preroll_s`` of audio kept from
before the onset) and when it ends (``end_silence_s`` of unvoiced frames). Silence produces no
audio output at all, so it costs no decoding.

:class:`RingBuffer` keeps the most recent ``capacity`` samples addressed by absolute sample index;
memory is allocated once and does not grow with the session.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from .audio.reframe import Samples
from .config import VadConfig
from .events import SAMPLE_RATE

# Silence after which the VAD reports a pause; it is also the trailing silence a final pass
# hears after the last voiced frame (Whisper finishes words better when it hears the end).
PAUSE_S = 0.2


@dataclass(frozen=True)
class SpeechStart:
    """Speech began; ``sample`` is where the kept audio (pre-roll included) starts."""

    sample: int


@dataclass(frozen=True)
class SpeechAudio:
    """Audio that belongs to the open utterance, starting at absolute ``sample``."""

    sample: int
    samples: Samples


@dataclass(frozen=True)
class SpeechPause:
    """Speech has paused for ``pause_s``; ``sample`` is the end of the last voiced frame.

    The utterance may still go on (then no :class:`SpeechEnd` follows this pause); consumers use
    it to start work that the end would need, such as a speculative final decode.
    """

    sample: int


@dataclass(frozen=True)
class SpeechResume:
    """Speech went on after a :class:`SpeechPause` (at absolute ``sample``)."""

    sample: int


@dataclass(frozen=True)
class SpeechEnd:
    """Speech ended; ``sample`` is the end of the last voiced frame."""

    sample: int


Segment = SpeechStart | SpeechAudio | SpeechPause | SpeechResume | SpeechEnd


class VadSegmenter:
    """webrtcvad-based speech gate driven by ``feed(samples)``."""

    def __init__(self, cfg: VadConfig, frame_ms: int = 30, pause_s: float = PAUSE_S) -> None:
        if frame_ms not in (10, 20, 30):
            raise ValueError("frame_ms must be 10, 20 or 30")
        self.cfg = cfg
        self.frame = SAMPLE_RATE * frame_ms // 1000
        self._vad = webrtcvad.Vad(cfg.aggressiveness)
        self._pending = np.zeros(0, dtype=np.float32)
        self._pos = 0  # absolute sample index of the next frame to classify
        preroll_frames = max(1, round(cfg.preroll_s * SAMPLE_RATE / self.frame))
        self._preroll: deque[Samples] = deque(maxlen=preroll_frames)
        self._onset: list[Samples] = []
        self._in_speech = False
        self._voiced_run = 0
        self._silence_run = 0
        self._last_voiced_end = 0
        self._end_frames = max(1, round(cfg.end_silence_s * SAMPLE_RATE / self.frame))
        pause = max(1, math.ceil(pause_s * SAMPLE_RATE / self.frame))
        self._pause_frames = pause if pause < self._end_frames else 0

    def retune(self, cfg: VadConfig) -> None:
        """Apply new thresholds to a running segmenter (the open utterance carries on)."""
        self.cfg = cfg
        self._vad.set_mode(cfg.aggressiveness)
        preroll_frames = max(1, round(cfg.preroll_s * SAMPLE_RATE / self.frame))
        self._preroll = deque(self._preroll, maxlen=preroll_frames)
        self._end_frames = max(1, round(cfg.end_silence_s * SAMPLE_RATE / self.frame))
        pause = max(1, math.ceil(PAUSE_S * SAMPLE_RATE / self.frame))
        self._pause_frames = pause if pause < self._end_frames else 0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def position(self) -> int:
        """Absolute sample index up to which audio has been classified."""
        return self._pos

    def _is_speech(self, frame: Samples) -> bool:
        pcm = (np.clip(frame, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        return bool(self._vad.is_speech(pcm, SAMPLE_RATE))

    def feed(self, samples: Samples) -> list[Segment]:
        out: list[Segment] = []
        buf = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n = len(buf) // self.frame
        for i in range(n):
            frame = buf[i * self.frame : (i + 1) * self.frame]
            start = self._pos
            self._pos += self.frame
            voiced = self._is_speech(frame)
            if not self._in_speech:
                if voiced:
                    self._voiced_run += 1
                    self._onset.append(frame)
                else:
                    self._voiced_run = 0
                    for f in self._onset:
                        self._preroll.append(f)
                    self._onset = []
                    self._preroll.append(frame)
                if self._voiced_run >= self.cfg.start_frames:
                    kept = list(self._preroll) + self._onset
                    first = self._pos - len(kept) * self.frame
                    self._in_speech = True
                    self._silence_run = 0
                    self._last_voiced_end = self._pos
                    self._preroll.clear()
                    self._onset = []
                    self._voiced_run = 0
                    out.append(SpeechStart(first))
                    out.append(SpeechAudio(first, np.concatenate(kept)))
            else:
                out.append(SpeechAudio(start, frame))
                if voiced:
                    if self._pause_frames and self._silence_run >= self._pause_frames:
                        out.append(SpeechResume(start))
                    self._silence_run = 0
                    self._last_voiced_end = self._pos
                else:
                    self._silence_run += 1
                    if self._silence_run == self._pause_frames:
                        out.append(SpeechPause(self._last_voiced_end))
                    if self._silence_run >= self._end_frames:
                        self._in_speech = False
                        out.append(SpeechEnd(self._last_voiced_end))
        self._pending = buf[n * self.frame :].copy()
        return _merge_audio(out)

    def finish(self) -> list[Segment]:
        """End of input: close an open utterance (the tail frame is padded with silence)."""
        out: list[Segment] = []
        if self._in_speech:
            if len(self._pending):
                out.append(SpeechAudio(self._pos, self._pending.copy()))
                self._pos += len(self._pending)
            self._pending = np.zeros(0, dtype=np.float32)
            self._in_speech = False
            # Input that ends during a pause ends the utterance where its speech ended (so a
            # final pass made during the pause still applies); otherwise at the very end.
            paused = self._pause_frames and self._silence_run >= self._pause_frames
            out.append(SpeechEnd(self._last_voiced_end if paused else self._pos))
        return out


def _merge_audio(segments: list[Segment]) -> list[Segment]:
    """Join consecutive SpeechAudio pieces so callers handle one array per feed."""
    merged: list[Segment] = []
    run: list[SpeechAudio] = []

    def flush() -> None:
        if run:
            merged.append(SpeechAudio(run[0].sample, np.concatenate([r.samples for r in run])))
            run.clear()

    for s in segments:
        if isinstance(s, SpeechAudio):
            run.append(s)
        else:
            flush()
            merged.append(s)
    flush()
    return merged


class RingBuffer:
    """Fixed-capacity store of the newest samples, addressed by absolute sample index."""

    def __init__(self, capacity_s: float) -> None:
        self.capacity = int(capacity_s * SAMPLE_RATE)
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self.start = 0  # absolute index of the oldest retained sample
        self.end = 0  # absolute index one past the newest sample

    def __len__(self) -> int:
        return self.end - self.start

    def reset(self, at: int) -> None:
        """Drop everything; the next append starts at absolute index ``at``."""
        self.start = self.end = at

    def append(self, sample: int, samples: Samples) -> None:
        """Append ``samples`` that start at absolute index ``sample`` (gaps are zero-filled)."""
        if sample > self.end:
            self.append(self.end, np.zeros(sample - self.end, dtype=np.float32))
        elif sample < self.end:
            samples = samples[self.end - sample :]
        n = len(samples)
        if n == 0:
            return
        if n >= self.capacity:
            samples = samples[-self.capacity :]
            self.end += n
            self.start = self.end - self.capacity
            self._buf[:] = samples
            return
        overflow = len(self) + n - self.capacity
        if overflow > 0:
            self.start += overflow
        pos = self.end % self.capacity
        first = min(n, self.capacity - pos)
        self._buf[pos : pos + first] = samples[:first]
        if first < n:
            self._buf[: n - first] = samples[first:]
        self.end += n

    def release(self, until: int) -> None:
        """Forget audio before absolute index ``until``."""
        self.start = max(self.start, min(until, self.end))

    def get(self, start: int, end: int | None = None) -> Samples:
        """A copy of absolute range ``[start, end)`` clipped to what is retained."""
        end = self.end if end is None else min(end, self.end)
        start = max(start, self.start)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        a, b = start % self.capacity, end % self.capacity
        if a < b or (b == 0 and a > 0):
            return self._buf[a : (b or self.capacity)].copy()
        return np.concatenate([self._buf[a:], self._buf[:b]])
