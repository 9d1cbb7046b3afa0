"""Echo suppression inside the MultiEngine with the real model (tiny.en) on shared speech: the
microphone hears the monitor 30-80 ms later and quieter; one caption comes out, the monitor's."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from support.clips import need
from support.model import AUDIO, decoder

from streamcap.audio.decode import load_audio
from streamcap.bench.echo import LABELS, MIC, MONITOR, echo_of, mix
from streamcap.bench.scoring import TextScorer, score
from streamcap.config import from_dict
from streamcap.echo import EchoFilter
from streamcap.engine import CaptionEngine
from streamcap.events import SAMPLE_RATE, FinalCaption, PartialCaption
from streamcap.multi import Lane, MultiEngine

JFK = "en_misc/jfk.flac"
STEW = "en_librispeech/1089-134686-0000.flac"
STEW_REF = ("HE HOPED THERE WOULD BE STEW FOR DINNER TURNIPS AND CARROTS AND BRUISED POTATOES "
            "AND FAT MUTTON PIECES TO BE LADLED OUT IN THICK PEPPERED FLOUR FATTENED SAUCE")


@functools.lru_cache(maxsize=4)
def clip(rel: str) -> np.ndarray:
    return load_audio(need(AUDIO / rel))


def run(mic: np.ndarray, monitor: np.ndarray) -> tuple[MultiEngine, list[object]]:
    """Both signals through a MultiEngine whose echo filter pairs the microphone with the
    monitor (as the daemon builds it in meeting mode)."""
    cfg = from_dict({})
    dec = decoder(cfg)
    lanes = [Lane(LABELS[i], CaptionEngine(cfg, dec)) for i in (MIC, MONITOR)]
    multi = MultiEngine(lanes, echo=EchoFilter({MIC: MONITOR}, 2))
    return multi, list(multi.feed([mic, monitor]))


def finals(events: list[object], lane: int) -> list[FinalCaption]:
    return [e for e in events if isinstance(e, FinalCaption) and e.source == LABELS[lane]]


def test_echo_of_the_monitor_gives_one_caption() -> None:
    """Two clips played on the monitor and heard by the microphone 30 and 80 ms later, 6 and 12
    dB quieter: every final published is the monitor's, none is held at the end."""
    shown = 0
    for rel, delay, gain in ((JFK, 30, -6), (STEW, 80, -12)):
        sig = clip(rel)
        multi, events = run(echo_of(sig, delay, gain), sig)
        assert multi.echo is not None and multi.echo.holding == 0
        mon = finals(events, MONITOR)
        assert mon, f"{rel}: the monitor had no final"
        assert finals(events, MIC) == [], f"{rel}: echo leaked: {finals(events, MIC)}"
        assert multi.echo.suppressed[MIC] >= 1
        # What the microphone showed live of the echo, if anything, ends up cleared.
        last: dict[int, PartialCaption] = {}
        for e in events:
            if isinstance(e, PartialCaption) and e.source == LABELS[MIC]:
                last[e.utterance_id] = e
        shown += sum(bool(p.words) for p in last.values())
    assert shown == 0


def test_own_speech_over_a_silent_monitor_is_never_suppressed() -> None:
    """The user speaking while the monitor is silent keeps every final, word for word."""
    sig = clip(STEW)
    multi, events = run(sig, np.zeros(len(sig) + SAMPLE_RATE, np.float32))
    assert multi.echo is not None
    assert multi.echo.suppressed == [0, 0] and multi.echo.trimmed == [0, 0]
    mine = finals(events, MIC)
    wer = score(TextScorer("en"), STEW_REF, " ".join(f.text for f in mine)).rate  # percent
    assert mine and wer <= 4.0  # measured 3.6 (one word: "flower" for "flour")


def test_both_talking_keeps_the_users_words() -> None:
    """The monitor plays one speaker while the user says something else (and the microphone
    hears the monitor too): the user's words are kept and the echo is not repeated."""
    other, mine = clip(STEW), clip(JFK)
    _, events = run(mix(mine, echo_of(other, 45, -9)), other)
    text = " ".join(f.text for f in finals(events, MIC)).lower()
    for word in ("fellow", "country", "what you can do"):
        assert word in text
    assert "turnips" not in text and "potatoes" not in text


def test_echo_filter_must_fit_the_inputs() -> None:
    """An echo filter built for another number of inputs is refused; without one, progress
    is still reported (audio consumed, words known) for every input."""
    cfg = from_dict({})
    lanes = [Lane(LABELS[i], CaptionEngine(cfg, decoder(cfg))) for i in (MIC, MONITOR)]
    with pytest.raises(ValueError, match="for 3 inputs, not 2"):
        MultiEngine(lanes, echo=EchoFilter({0: 1}, 3))
    multi = MultiEngine(lanes)
    multi.push(MIC, np.zeros(SAMPLE_RATE, np.float32))
    p = multi.progress()
    assert [x.heard for x in p] == [1.0, 0.0] and all(x.known <= x.heard for x in p)
    multi.close_lane(MONITOR)
    assert multi.progress()[MONITOR].known == float("inf")
