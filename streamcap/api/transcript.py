"""Decoded windows in, a transcript of segments and words out (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from ..asr.decoder import Hypothesis
from ..events import SAMPLE_RATE, Word
from .windows import Span, Window

# Whisper's own rule for a window that is not speech: likely silence and an unsure decode.
NO_SPEECH_PROB = 0.6
LOGPROB_FLOOR = -1.0


@dataclass(frozen=True)
class Segment:
    """A stretch of speech (one VAD utterance or a piece of a long one) and its words."""

    id: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


@dataclass(frozen=True)
class Transcript:
    """The result of one upload."""

    text: str
    language: str
    duration: float
    segments: tuple[Segment, ...]
    windows: int = 0
    decode_seconds: float = 0.0

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(w for s in self.segments for w in s.words)


def _join(words: list[Word]) -> str:
    return "".join(w.text for w in words).strip()


class TranscriptBuilder:
    """Takes each window's :class:`Hypothesis` in order; :meth:`result` assembles them.

    A window whose decode looks like silence (Whisper's no-speech rule) adds nothing. Each
    word goes to the speech part of its window that holds its middle (the nearest one when it
    falls in a gap), and each part with words becomes a segment.
    """

    def __init__(self, windows: list[Window], duration: float) -> None:
        self.windows = windows
        self.duration = duration
        self.language = "en"
        self._segments: list[Segment] = []
        self._done = 0

    @property
    def finished(self) -> bool:
        return self._done >= len(self.windows)

    @property
    def next_window(self) -> Window:
        return self.windows[self._done]

    def context(self) -> str:
        """The text of the last segment so far: the prompt of the next window's decode."""
        return self._segments[-1].text if self._segments else ""

    def add(self, hyp: Hypothesis) -> None:
        window = self.windows[self._done]
        self._done += 1
        self.language = hyp.language
        if hyp.no_speech_prob > NO_SPEECH_PROB and hyp.avg_logprob < LOGPROB_FLOOR:
            return
        groups: list[list[Word]] = [[] for _ in window.parts]
        for w in hyp.words:
            mid = (w.start + w.end) / 2 * SAMPLE_RATE
            best = min(range(len(window.parts)), key=lambda i: _distance(window.parts[i], mid))
            groups[best].append(w)
        for ws in groups:
            text = _join(ws)
            if not text:
                continue
            self._segments.append(Segment(
                id=len(self._segments),
                start=ws[0].start,
                end=max(ws[-1].end, ws[0].start),
                text=text,
                words=tuple(ws),
                avg_logprob=hyp.avg_logprob,
                compression_ratio=hyp.compression_ratio,
                no_speech_prob=hyp.no_speech_prob,
            ))

    def result(self, decode_seconds: float = 0.0) -> Transcript:
        return Transcript(
            text=" ".join(s.text for s in self._segments),
            language=self.language,
            duration=self.duration,
            segments=tuple(self._segments),
            windows=len(self.windows),
            decode_seconds=decode_seconds,
        )


def _distance(part: Span, sample: float) -> float:
    if part.start <= sample < part.end:
        return 0.0
    return min(abs(sample - part.start), abs(sample - part.end))
