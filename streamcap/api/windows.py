"""An upload's audio cut into decode windows: speech spans from the VAD, packed (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from ..audio.reframe import Samples
from ..config import VadConfig
from ..events import SAMPLE_RATE
from ..vad import SpeechEnd, SpeechStart, VadSegmenter

MAX_WINDOW_S = 28.0  # Whisper hears 30 s; the rest is room for the tail padding
TAIL_S = 0.3  # silence kept after the last voiced frame: Whisper finishes words when it hears it
FEED_S = 1.0


@dataclass(frozen=True)
class Span:
    """Samples ``start`` (inclusive) to ``end`` (exclusive) of the upload's audio."""

    start: int
    end: int

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


@dataclass(frozen=True)
class Window:
    """One decode: audio ``span`` holding the speech ``parts`` (each becomes a segment)."""

    span: Span
    parts: tuple[Span, ...]


def speech_spans(audio: Samples, cfg: VadConfig) -> list[Span]:
    """Where the VAD hears speech in ``audio`` (16 kHz mono), pre-roll and a short tail in."""
    vad = VadSegmenter(cfg)
    events = []
    step = int(FEED_S * SAMPLE_RATE)
    for i in range(0, len(audio), step):
        events += vad.feed(audio[i : i + step])
    events += vad.finish()
    spans: list[Span] = []
    start: int | None = None
    tail = int(TAIL_S * SAMPLE_RATE)
    for ev in events:
        if isinstance(ev, SpeechStart):
            start = ev.sample
        elif isinstance(ev, SpeechEnd) and start is not None:
            end = min(len(audio), max(ev.sample + tail, start + 1))
            if spans and start < spans[-1].end:  # a tail that ran into the next pre-roll
                start = spans[-1].end
            if end > start:
                spans.append(Span(start, end))
            start = None
    return spans


def pack(spans: list[Span], max_s: float = MAX_WINDOW_S) -> list[Window]:
    """Consecutive spans grouped into windows of at most ``max_s`` seconds; a longer span is
    cut into equal pieces that fit."""
    limit = int(max_s * SAMPLE_RATE)
    if limit <= 0:
        raise ValueError("max_s must be positive")
    pieces: list[Span] = []
    for s in spans:
        n = -(-(s.end - s.start) // limit)
        size = -(-(s.end - s.start) // n)
        pieces += [Span(a, min(s.end, a + size)) for a in range(s.start, s.end, size)]
    windows: list[Window] = []
    group: list[Span] = []
    for p in pieces:
        if group and p.end - group[0].start > limit:
            windows.append(Window(Span(group[0].start, group[-1].end), tuple(group)))
            group = []
        group.append(p)
    if group:
        windows.append(Window(Span(group[0].start, group[-1].end), tuple(group)))
    return windows


def plan_windows(audio: Samples, cfg: VadConfig, max_s: float = MAX_WINDOW_S) -> list[Window]:
    """The decode windows of an upload."""
    return pack(speech_spans(audio, cfg), max_s)
