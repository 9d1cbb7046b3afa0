"""Known-answer tests for per-word latency and stability on synthetic event streams."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from streamcap.bench.latency import compute, reference_ends
from streamcap.bench.scoring import TextScorer
from streamcap.events import Event, FinalCaption, PartialCaption, VadEvent, Word

EN = TextScorer("en")


@dataclass(frozen=True)
class Timed:
    wall: float
    event: Event


ENDS = {"he": 0.5, "could": 0.8, "wait": 1.1, "weight": 1.1, "no": 1.4, "longer": 1.8}


def _w(text: str, stable: bool = True, end: float | None = None) -> Word:
    e = ENDS[text.strip(" ,.").lower()] if end is None else end
    return Word(" " + text, e - 0.25, e, 0.9, stable)


def _partial(uid: int, rev: int, *words: Word) -> PartialCaption:
    return PartialCaption(uid, rev, tuple(words), words[0].start, words[-1].end)


def _final(uid: int, *words: Word, start: float = 0.2, end: float = 1.8) -> FinalCaption:
    return FinalCaption(uid, "".join(w.text for w in words).strip(), tuple(words), start, end)


def _one_utterance() -> list[Timed]:
    return [
        Timed(0.3, VadEvent("speech_start", 0.2, 0)),
        Timed(1.0, _partial(0, 0, _w("He", False), _w("could", False))),
        Timed(1.5, _partial(0, 1, _w("He"), _w("could"), _w("weight", False), _w("no", False))),
        Timed(2.0, _partial(0, 2, _w("He"), _w("could"), _w("wait", False), _w("no", False),
                            _w("longer", False))),
        Timed(2.4, VadEvent("speech_end", 2.3, 0)),
        Timed(2.6, _final(0, _w("He"), _w("could"), _w("wait"), _w("no"), _w("longer."))),
    ]


def test_shown_stable_and_final_delays_have_the_known_values() -> None:
    """Each word's delays are its first correct partial, first stable and final, minus its end."""
    res = compute(_one_utterance(), EN.tokens("HE COULD WAIT NO LONGER"), EN)
    got = {w.text: (w.delay("partial"), w.delay("stable"), w.delay("final")) for w in res.words}
    expected = {
        "he": (0.5, 1.0, 2.1),
        "could": (0.2, 0.7, 1.8),
        "wait": (0.9, 1.5, 1.5),  # "weight" at 1.5 s is not a match
        "no": (0.1, 1.2, 1.2),  # never stable in a partial: stable when final
        "longer": (0.2, 0.8, 0.8),
    }
    for word, delays in expected.items():
        assert got[word] == pytest.approx(delays), word
    assert all(w.end_source == "final" for w in res.words)
    assert res.final_after_speech_end() == pytest.approx([0.8])
    assert res.words_first_shown_in_final == 0
    assert res.partials_seen == 3


def test_stability_counts_the_replaced_partial_word() -> None:
    """Replacing an unstable partial word counts one change and breaks no stable promise."""
    st = compute(_one_utterance(), EN.tokens("he could wait no longer"), EN).stability
    assert (st.shown_words, st.changed_words, st.stable_words_changed) == (6, 1, 0)
    assert st.speech_seconds == pytest.approx(1.6)
    assert st.changes_per_minute == pytest.approx(1 / (1.6 / 60))


def test_changed_stable_word_is_counted_as_a_broken_promise() -> None:
    """A word shown as stable and later replaced counts as a stable-word change."""
    events = [
        Timed(1.0, _partial(0, 0, _w("He"), _w("weight"))),
        Timed(2.0, _final(0, _w("He"), _w("wait"))),
    ]
    res = compute(events, EN.tokens("he wait"), EN)
    assert res.stability.stable_words_changed == 1
    wait = res.words[1]
    assert wait.delay("stable") == pytest.approx(2.0 - 1.1)


def test_word_missing_from_final_uses_offline_end_and_the_neighbour_partial() -> None:
    """A word the finals dropped takes its end from offline and its shown time from a partial."""
    ref = EN.tokens("red green blue black white")
    events = [
        Timed(1.5, _final(0, _w("red", end=0.5), _w("green", end=1.0), start=0.0, end=1.0)),
        Timed(2.5, _partial(1, 0, _w("blue", False, end=2.0), _w("black", False, end=2.4))),
        Timed(3.5, _final(1, _w("black", end=2.4), _w("white", end=2.9), start=1.6, end=2.9)),
    ]
    offline = [Word(" red", 0, 0.5), Word(" green", 0.5, 1.0), Word(" blue", 1.5, 2.0)]
    res = compute(events, ref, EN, fallback_ends=reference_ends(EN, ref, offline))
    three = res.words[2]
    assert (three.end_source, three.audio_end) == ("offline", 2.0)
    assert three.delay("partial") == pytest.approx(0.5)
    assert three.delay("stable") is None and three.delay("final") is None
    assert res.words[3].delay("partial") == pytest.approx(0.1)
    assert res.words[4].delay("partial") == pytest.approx(0.6)  # first shown in the final
    assert res.words_first_shown_in_final == 3  # red, green, white
    assert res.final_after_speech_end() == pytest.approx([0.5, 0.6])
    assert len(res.delays("final")) == 4 and len(res.delays("partial")) == 5


def test_reference_ends_match_words_through_normalisation() -> None:
    """Offline word timestamps map onto reference tokens after normalisation; misses are None."""
    ref = EN.tokens("Mr. Quilter is the apostle")
    words = [Word(" Mister", 0, 0.4), Word(" Quilter", 0.4, 0.9), Word(" was", 0.9, 1.0),
             Word(" the", 1.0, 1.1), Word(" apostle.", 1.1, 1.6)]
    assert reference_ends(EN, ref, words) == [0.4, 0.9, None, 1.1, 1.6]


def test_empty_stream_and_empty_reference_give_no_figures() -> None:
    """No events, or no reference words, produce empty delay lists and zero stability."""
    empty = compute([], EN.tokens("he could wait"), EN)
    assert empty.delays("partial") == [] and empty.final_after_speech_end() == []
    assert empty.stability.changes_per_minute == 0.0
    noref = compute(_one_utterance(), [], EN)
    assert noref.words == [] and noref.final_after_speech_end() == pytest.approx([0.8])


def test_hostile_stream_is_tolerated() -> None:
    """Orphan partials, empty finals and repeated finals neither crash nor double count."""
    events = [
        Timed(0.5, _partial(7, 0, _w("he", False))),  # no final ever comes for utterance 7
        Timed(1.0, FinalCaption(3, "", (), 0.0, 0.0)),  # empty final
        Timed(2.0, _final(0, _w("he"), _w("could"))),
        Timed(2.5, _final(0, _w("he"), _w("could"))),  # repeated final: the last one counts
    ]
    res = compute(events, EN.tokens("he could"), EN)
    assert [w.final for w in res.words] == [2.5, 2.5]
    assert res.stability.changed_words == 1  # the orphan partial's word never reached a final
    assert len(res.utterances) == 1


def test_dropped_unstable_repeat_does_not_count_against_the_stable_word() -> None:
    """Dropping an unstable repeated word changes it, not the identical stable word before it."""
    def w(text: str, end: float, stable: bool) -> Word:
        return Word(text, end - 0.3, end, 0.9, stable)

    shown = (w(" some", 1.0, True), w(" more", 1.3, True), w(" words.", 1.6, True),
             w(" Words", 1.9, False), w(" were", 2.1, False))
    final = shown[:3]
    events = [
        Timed(2.3, PartialCaption(3, 5, shown, 0.7, 2.1)),
        Timed(2.9, FinalCaption(3, "some more words.", final, 0.7, 1.6)),
    ]
    st = compute(events, EN.tokens("some more words"), EN).stability
    assert (st.changed_words, st.stable_words_changed) == (2, 0)
