"""The multi-input scheduler (pure, scripted decoder): which decode runs next, labels, ids."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from support.scripted import SlowSource, silence, voiced

from streamcap.config import from_dict
from streamcap.engine import CaptionEngine
from streamcap.errors import BackendUnavailable
from streamcap.events import FinalCaption, PartialCaption, VadEvent
from streamcap.multi import Lane, MultiEngine


def two(words: tuple[str, str] = (" one", " two"), labels: tuple[str | None, str | None] = (
        "You", "Others")) -> tuple[MultiEngine, SlowSource, SlowSource]:
    a, b = SlowSource(word=words[0]), SlowSource(word=words[1])
    m = MultiEngine([Lane(labels[0], CaptionEngine(from_dict({}), a)),
                     Lane(labels[1], CaptionEngine(from_dict({}), b))])
    return m, a, b


def test_each_input_gets_its_own_label_and_every_final() -> None:
    """Two inputs speaking at different times: each final carries its input's label and text."""
    m, _, _ = two()
    events = m.feed([np.concatenate([voiced(1.5), silence(3.0)]),
                     np.concatenate([silence(2.0), voiced(1.5), silence(1.0)])])
    finals = [e for e in events if isinstance(e, FinalCaption)]
    assert [(f.source, f.speaker, f.text) for f in finals] == [
        ("You", "You", "one"), ("Others", "Others", "two")]


def test_utterance_ids_are_unique_across_inputs_and_increase_per_input() -> None:
    """Input i of n maps its own utterance id u to u*n+i: no two inputs share an id."""
    m, _, _ = two()
    burst = np.concatenate([voiced(1.0), silence(1.0)])
    events = m.feed([np.tile(burst, 3), np.tile(burst, 3)])
    ids = {src: [e.utterance_id for e in events if isinstance(e, FinalCaption)
                 and e.source == src] for src in ("You", "Others")}
    assert len(ids["You"]) == len(ids["Others"]) == 3
    assert not set(ids["You"]) & set(ids["Others"])
    assert ids["You"] == sorted(ids["You"]) and all(i % 2 == 0 for i in ids["You"])
    assert all(i % 2 == 1 for i in ids["Others"])
    vads = [e for e in events if isinstance(e, VadEvent)]
    assert {v.source for v in vads} == {"You", "Others"}


def test_one_unlabelled_input_passes_events_through_unchanged() -> None:
    """A single input without a label gives exactly the events its engine alone gives."""
    signal = np.concatenate([voiced(1.5), silence(1.0), voiced(1.0), silence(1.0)])
    engine = CaptionEngine(from_dict({}), SlowSource())
    alone = engine.feed(signal) + engine.finish()
    assert any(isinstance(e, FinalCaption) for e in alone)
    m = MultiEngine.single(CaptionEngine(from_dict({}), SlowSource()))
    assert m.feed([signal]) == alone


def test_a_pending_final_of_any_input_runs_before_any_partial() -> None:
    """Input 1 has a final waiting and input 0 a partial due: input 1's final runs first."""
    m, a, b = two()
    m.push(0, voiced(2.0))  # speaking, a partial is due
    m.push(1, np.concatenate([voiced(1.0), silence(1.0)]))  # ended: its final waits
    assert m.lanes[1].engine.final_due is not None
    assert m.pick() == 1
    events = m.step()
    assert [type(e) for e in events] == [FinalCaption] and b.requests[-1].final
    assert m.pick() == 0 and not a.requests


def test_partials_go_to_the_input_furthest_behind() -> None:
    """With both inputs speaking and room for one decode per chunk, the input with the most
    audio since its last decode goes next: the inputs take turns."""
    m, _a, _b = two()
    order = []
    for _ in range(12):
        m.push(0, voiced(0.5))
        m.push(1, voiced(0.5))
        if m.due:
            m.step()
            order.append(m.last_lane)
    assert order.count(0) >= 5 and order.count(1) >= 5
    assert all(x != y for x, y in itertools.pairwise(order))


def test_a_backend_outage_leaves_the_final_pending_and_delivers_it_once() -> None:
    """A decode that raises BackendUnavailable moves nothing on: the final runs again later and
    comes out exactly once."""
    src = SlowSource(fail=1)
    m = MultiEngine([Lane("You", CaptionEngine(from_dict({}), src))])
    out = m.push(0, np.concatenate([voiced(0.25), silence(0.8)]))
    assert m.lanes[0].engine.final_due is not None
    with pytest.raises(BackendUnavailable):
        m.step()
    assert m.lanes[0].engine.final_due is not None  # still pending
    while m.due:
        out += m.step()
    finals = [e for e in out if isinstance(e, FinalCaption)]
    assert [f.text for f in finals] == ["hello"]


def test_feed_needs_one_signal_per_input_and_an_engine_needs_an_input() -> None:
    """Hostile use: a signal count that does not match the inputs, or no inputs at all."""
    m, _, _ = two()
    with pytest.raises(ValueError, match="2 inputs"):
        m.feed([voiced(1.0)])
    with pytest.raises(ValueError, match="at least one input"):
        MultiEngine([])


def test_silence_on_every_input_gives_no_captions() -> None:
    """Empty input: silence on both inputs gives no caption and no decode."""
    m, a, b = two()
    events = m.feed([silence(3.0), silence(3.0)])
    assert not [e for e in events if isinstance(e, (PartialCaption, FinalCaption))]
    assert not a.requests and not b.requests
