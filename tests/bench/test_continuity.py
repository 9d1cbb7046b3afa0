"""Known-answer tests for the boundary metrics (lost and doubled words, stable words changed,
final delays) on scripted event streams: pure logic, so a scripted stand-in is the input."""

from __future__ import annotations

from dataclasses import dataclass

from streamcap.bench.continuity import CUT_WINDOW_S, compute_continuity
from streamcap.bench.scoring import TextScorer
from streamcap.events import Event, FinalCaption, PartialCaption, VadEvent, Word

EN = TextScorer("en")


@dataclass(frozen=True)
class Timed:
    wall: float
    event: Event


def _words(text: str, start: float, step: float = 0.4, stable: bool = True) -> tuple[Word, ...]:
    """Words of ``text`` one after another, ``step`` seconds each, from ``start``."""
    return tuple(Word(" " + t, start + i * step, start + (i + 1) * step - 0.05, 0.9, stable)
                 for i, t in enumerate(text.split()))


def _final(uid: int, text: str, start: float) -> FinalCaption:
    words = _words(text, start)
    return FinalCaption(uid, text, words, start, words[-1].end if words else start)


def _partial(uid: int, rev: int, words: tuple[Word, ...]) -> PartialCaption:
    return PartialCaption(uid, rev, words, words[0].start, words[-1].end)


REF = EN.tokens("from fairest creatures we desire increase that thereby")


def test_word_lost_at_a_cut_inside_speech() -> None:
    """A reference word between two finals with no speech_end between them is lost inside speech."""
    events = [
        Timed(0.1, VadEvent("speech_start", 0.0, 0)),
        Timed(1.8, _final(0, "from fairest creatures", 0.0)),
        Timed(3.9, _final(1, "desire increase that thereby", 1.6)),  # "we" (1.2-1.6 s) is gone
        Timed(4.0, VadEvent("speech_end", 3.2, 1)),
    ]
    c = compute_continuity(events, REF, EN)
    assert [b.kind for b in c.boundaries] == ["inside_speech"]
    assert [(w.text, w.boundary.kind) for w in c.lost] == [("we", "inside_speech")]
    assert c.deleted_words == 1 and c.doubled == []


def test_word_lost_at_a_pause_is_counted_as_such() -> None:
    """The same loss with a VAD speech_end between the finals is a loss at a pause."""
    events = [
        Timed(1.8, _final(0, "from fairest creatures", 0.0)),
        Timed(1.9, VadEvent("speech_end", 1.15, 0)),
        Timed(3.9, _final(1, "desire increase that thereby", 1.6)),
    ]
    c = compute_continuity(events, REF, EN)
    assert [b.kind for b in c.boundaries] == ["at_pause"]
    assert [(w.text, w.boundary.kind) for w in c.lost] == [("we", "at_pause")]


def test_deletion_far_from_any_boundary_is_not_a_loss_at_a_cut() -> None:
    """A word dropped in the middle of one long final counts as deleted but not lost at a cut."""
    events = [Timed(4.0, _final(0, "from fairest creatures we increase that thereby", 0.0)),
              Timed(8.0, _final(1, "beauty rose", 6.0))]
    ref = EN.tokens("from fairest creatures we desire increase that thereby beauty rose")
    c = compute_continuity(events, ref, EN)
    assert c.deleted_words == 1 and c.lost == []


def test_lost_word_timed_by_the_offline_decode_near_a_cut() -> None:
    """A lost word at the edge of a final is placed by the offline words and found near the cut."""
    offline = list(_words("from fairest creatures we desire increase that thereby", 0.0))
    # Final 0 drops its own last word "creatures", which lies within the window of the cut.
    events = [Timed(1.8, _final(0, "from fairest", 0.0)),
              Timed(3.9, _final(1, "we desire increase that thereby", 1.2))]
    c = compute_continuity(events, REF, EN, offline)
    assert [w.text for w in c.lost] == ["creatures"]
    lost = c.lost[0]
    assert lost.time is not None and abs(lost.time - lost.boundary.time) <= CUT_WINDOW_S


def test_word_doubled_across_a_cut() -> None:
    """A word emitted at the end of one final and again at the start of the next is doubled."""
    ref = EN.tokens("thy self thy foe to thy sweet self too cruel")
    events = [Timed(3.0, _final(0, "thy self thy foe to thy sweet self", 0.0)),
              Timed(5.0, _final(1, "self too cruel", 3.0))]
    c = compute_continuity(events, ref, EN)
    assert [(d.text, d.boundary.kind) for d in c.doubled] == [("self", "inside_speech")]
    assert c.lost == []


def test_a_repeated_reference_word_across_a_cut_is_not_doubled() -> None:
    """When the reference itself says the word twice, the two copies are not a doubling."""
    ref = EN.tokens("the world the world")
    events = [Timed(1.0, _final(0, "the world", 0.0)), Timed(2.0, _final(1, "the world", 0.8))]
    c = compute_continuity(events, ref, EN)
    assert c.doubled == [] and c.lost == [] and c.deleted_words == 0


def test_stable_word_changed_in_the_final() -> None:
    """A word shown stable in a partial that the final has differently counts once as changed."""
    events = [
        Timed(0.5, _partial(0, 0, _words("he could", 0.0, stable=True))),
        Timed(0.9, _partial(0, 1, _words("he could wait", 0.0, stable=True))),
        Timed(1.5, _final(0, "he would wait no", 0.0)),
    ]
    c = compute_continuity(events, EN.tokens("he could wait no"), EN)
    assert (c.stable_shown, c.stable_changed) == (3, 1)
    assert c.stable_changed_examples == ["utterance 0 word 1: 'could' -> 'would'"]


def test_unstable_changes_do_not_count_and_stable_words_of_a_lost_utterance_do() -> None:
    """Unstable words may change freely; stable words of an utterance with no final all change."""
    events = [
        Timed(0.5, _partial(0, 0, _words("he could", 0.0, stable=False))),
        Timed(1.5, _final(0, "she would", 0.0)),
        Timed(2.5, _partial(1, 0, _words("gone words", 2.0, stable=True))),
    ]
    c = compute_continuity(events, EN.tokens("she would"), EN)
    assert (c.stable_shown, c.stable_changed) == (2, 2)


def test_partials_after_a_sentence_final_of_the_same_utterance_compare_with_later_finals() -> None:
    """Partials after a sentence final of the same utterance id are checked against later finals."""
    events = [
        Timed(1.0, _partial(0, 0, _words("from fairest", 0.0))),
        Timed(1.2, _final(0, "from fairest", 0.0)),
        Timed(2.0, _partial(0, 1, _words("creatures we", 1.0))),
        Timed(2.5, _final(0, "creatures we", 1.0)),
    ]
    c = compute_continuity(events, EN.tokens("from fairest creatures we"), EN)
    assert (c.stable_shown, c.stable_changed) == (4, 0)
    assert [b.kind for b in c.boundaries] == ["inside_speech"]


def test_final_delay_at_a_pause_and_inside_speech() -> None:
    """Each final's delay is its wall time minus its last word's end, split by the VAD pause."""
    events = [
        Timed(1.5, _final(0, "from fairest creatures", 0.0)),  # a forced cut: no speech_end
        Timed(2.6, VadEvent("speech_end", 2.3, 1)),
        Timed(2.9, _final(1, "we desire increase", 1.2)),  # at a pause
        Timed(6.0, _final(2, "that thereby", 4.0)),  # last final, speech ended at the input's end
        Timed(6.1, VadEvent("speech_end", 4.8, 2)),
    ]
    c = compute_continuity(events, REF, EN)
    got = [(d.utterance_id, round(d.delay, 3), d.at_pause) for d in c.final_delays]
    assert got == [(0, 0.35, False), (1, 0.55, True), (2, 1.25, True)]


def test_empty_and_wordless_input() -> None:
    """No events, or finals with no words, give no boundary, loss, doubling or delay."""
    empty = compute_continuity([], REF, EN)
    assert (empty.boundaries, empty.lost, empty.doubled, empty.final_delays) == ([], [], [], [])
    assert empty.deleted_words == len(REF)  # nothing was captioned, but no cut lost it
    hostile = [
        Timed(1.0, FinalCaption(0, "", (), 0.0, 1.0)),
        Timed(2.0, FinalCaption(1, "...", (Word(" ...", 1.0, 1.5),), 1.0, 1.5)),
        Timed(3.0, VadEvent("speech_end", 2.0, 1)),
    ]
    c = compute_continuity(hostile, [], EN)
    assert (c.boundaries, c.lost, c.doubled, c.final_delays) == ([], [], [], [])
    assert (c.stable_shown, c.stable_changed, c.deleted_words) == (0, 0, 0)


def test_words_after_the_last_final_are_lost_at_the_end() -> None:
    """Reference words after the last final's last word count as lost at the end, not at a cut."""
    text = "from fairest creatures we desire increase that thereby beauty rose"
    offline = list(_words(text, 0.0))
    events = [Timed(1.8, _final(0, "from fairest", 0.0)),
              Timed(4.0, _final(1, "creatures we desire increase that thereby", 0.8))]
    c = compute_continuity(events, EN.tokens(text), EN, offline)
    assert c.lost == []
    assert [(w.text, w.edge) for w in c.lost_at_edges] == [("beauty", "end"), ("rose", "end")]
    lead = compute_continuity([Timed(3.0, _final(0, "increase", 2.0))],
                              EN.tokens("desire increase"), EN)
    assert [(w.text, w.edge) for w in lead.lost_at_edges] == [("desire", "start")]


def test_a_written_word_split_by_the_normaliser_is_misheard_not_lost() -> None:
    """ "remember'd" normalises to two tokens; heard as "remembered" across a cut, the dropped
    "would" token is a misrecognition, while a word with no token heard is still lost."""
    text = "but if thou live remember'd not to be"
    ref = EN.reference_tokens(text)
    assert ref[4:6] == ["remember", "would"]
    events = [
        Timed(2.0, _final(0, "but if thou live", 0.0)),
        Timed(4.0, _final(1, "remembered not be", 1.6)),  # "to" is gone
    ]
    c = compute_continuity(events, ref, EN, ref_words=EN.reference_words(text))
    assert [w.text for w in c.lost] == ["to"]
    without = compute_continuity(events, ref, EN)
    assert sorted(w.text for w in without.lost) == ["to", "would"]


def test_a_final_that_merges_two_stable_words_changes_only_those() -> None:
    """A final that hears two stable words as one changes those two, not every word after."""
    shown = _words("look in thy glass and tell the face", 0.0)
    events = [
        Timed(3.0, _partial(0, 1, shown)),
        Timed(4.0, _final(0, "looking thy glass and tell the face", 0.0)),
    ]
    c = compute_continuity(events, EN.tokens("look in thy glass and tell the face"), EN)
    assert c.stable_shown == 8 and c.stable_changed == 2
