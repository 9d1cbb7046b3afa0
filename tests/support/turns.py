"""Streams of alternating real speakers for the speaker-turn tests, and how to score labels."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamcap.audio.decode import load_audio
from streamcap.events import SAMPLE_RATE, FinalCaption

from .clips import AUDIO, need

GAP_S = 1.0  # silence between two turns (the VAD closes an utterance after 0.5 s)

# One LibriSpeech speaker with four utterances, and the LibriVox reader of the Sense and
# Sensibility clips (five utterances): the closest pair of voices in the shared audio.
SPEAKER_A = [f"en_librispeech/{n}" for n in (
    "1089-134686-0000.flac", "1089-134686-0001.flac", "1089-134691-0000.flac",
    "1089-134691-0001.flac")]
SPEAKER_B = [f"en_misc/sense_and_sensibility_01_austen_64kb-{n}.wav" for n in (
    "0870", "0880", "0890", "0920", "0930")]
# LibriSpeech speakers with one utterance each, for turns among several voices.
OTHERS = ["en_librispeech/2412-153948-0000.flac", "en_librispeech/1995-1837-0001.wav",
          "en_librispeech/61-70968-0000.flac"]


@dataclass(frozen=True)
class Turn:
    speaker: str
    start: float  # stream seconds
    end: float


def stream(turns: Sequence[tuple[str, str]]) -> tuple[np.ndarray, list[Turn]]:
    """``(speaker, clip)`` pairs joined with ``GAP_S`` of silence; and where each turn lies."""
    parts: list[np.ndarray] = []
    spans: list[Turn] = []
    t = 0.0
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)
    for speaker, clip in turns:
        audio = load_audio(need(AUDIO / clip))
        spans.append(Turn(speaker, t, t + len(audio) / SAMPLE_RATE))
        parts += [audio, gap]
        t += (len(audio) + len(gap)) / SAMPLE_RATE
    return np.concatenate(parts), spans


def alternate(a: Sequence[str], b: Sequence[str]) -> list[tuple[str, str]]:
    """A, B, A, B, ... as long as both have clips left, then the rest of the longer one."""
    out: list[tuple[str, str]] = []
    for i in range(max(len(a), len(b))):
        if i < len(a):
            out.append(("A", a[i]))
        if i < len(b):
            out.append(("B", b[i]))
    return out


def true_speaker(final: FinalCaption, spans: Sequence[Turn]) -> str:
    """The turn a final's words lie in (by the middle of the final)."""
    mid = (final.start + final.end) / 2
    return min(spans, key=lambda s: 0.0 if s.start <= mid <= s.end else
               min(abs(mid - s.start), abs(mid - s.end))).speaker


def label_accuracy(finals: Sequence[FinalCaption], spans: Sequence[Turn]) -> tuple[float, dict[
        str, str]]:
    """Share of final words whose label is their speaker's label (the label most of that
    speaker's words carry; two speakers sharing one label score zero), and that mapping."""
    words: dict[str, Counter[str | None]] = {}
    for f in finals:
        words.setdefault(true_speaker(f, spans), Counter())[f.speaker] += len(f.text.split())
    mapping = {spk: c.most_common(1)[0][0] for spk, c in words.items()}
    if len(set(mapping.values())) < len(mapping):
        return 0.0, {k: str(v) for k, v in mapping.items()}
    total = sum(sum(c.values()) for c in words.values())
    right = sum(c[mapping[spk]] for spk, c in words.items())
    return (right / total if total else 0.0), {k: str(v) for k, v in mapping.items()}
