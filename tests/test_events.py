"""Events own their JSON form: every type round-trips, and bad JSON is refused."""

from __future__ import annotations

import json
import math

import pytest

from streamcap.events import (
    ErrorEvent,
    Event,
    FinalCaption,
    PartialCaption,
    Session,
    StatusEvent,
    VadEvent,
    Word,
    event_from_json,
)

W = (Word(" Ask", 8.16, 8.5, 0.91, True), Word(" not", 8.5, 8.8, 0.42, False))
EVENTS: list[Event] = [
    PartialCaption(3, 2, W, 8.16, 8.8, "en", 0.99),
    FinalCaption(3, "Ask not", W, 8.16, 8.8, "de", 0.87, translation="Ask not"),
    FinalCaption(4, "客観的実在", (Word("客観", 1.0, 1.5),), 1.0, 1.5, "ja"),
    VadEvent("speech_start", 8.0, 3),
    StatusEvent(lag=0.2, rtf=0.31, device_state="running", dropped_frames=0, clients=2),
    StatusEvent(lag=3.2, rtf=0.0, device_state="running", dropped_frames=0,
                asr_state="degraded", asr_detail="ASR pool unavailable for 4 s"),
    ErrorEvent("device_lost", "capture device went away"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_round_trip(event: Event) -> None:
    """to_json then event_from_json gives back an equal event."""
    assert event_from_json(event.to_json()) == event


def test_partial_json_splits_stable_and_unstable_text() -> None:
    """A partial's JSON carries the stable prefix and the unstable tail as text."""
    d = json.loads(EVENTS[0].to_json())
    assert d["stable_text"] == "Ask" and d["unstable_text"] == "not"
    assert d["type"] == "partial" and d["words"][1]["stable"] is False


def test_non_ascii_text_is_kept_verbatim() -> None:
    """CJK text is written as UTF-8 characters, not escapes."""
    assert "客観的実在" in EVENTS[2].to_json()


def test_non_finite_times_are_refused() -> None:
    """A NaN time cannot be serialised into invalid JSON."""
    bad = FinalCaption(1, "x", (), math.nan, 1.0)
    with pytest.raises(ValueError):
        bad.to_json()


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "nope"}',
        "[1, 2]",
        '{"type": "vad", "state": "maybe", "time": 1, "utterance_id": 1}',
    ],
)
def test_bad_json_is_refused(text: str) -> None:
    """Unknown types, non-objects and bad enum values raise ValueError."""
    with pytest.raises(ValueError):
        event_from_json(text)


def test_missing_field_is_refused() -> None:
    """A final without its text field raises KeyError, not a half-built event."""
    with pytest.raises(KeyError):
        event_from_json('{"type": "final", "utterance_id": 1}')


def test_session_ids_are_unique() -> None:
    """Two sessions made at the same instant get different ids and keep their epoch."""
    a, b = Session.new(100.0), Session.new(100.0)
    assert a.id != b.id and a.epoch == b.epoch == 100.0
