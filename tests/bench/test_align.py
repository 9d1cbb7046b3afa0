"""Known-answer tests for the edit-distance word alignment."""

from __future__ import annotations

import jiwer

from streamcap.bench.align import Pair, align, align_prefix, edit_distance


def _ops(pairs: list[Pair]) -> list[str]:
    return [p.op for p in pairs]


def test_identical_sequences_align_as_all_equal() -> None:
    """Two identical token lists align one-to-one with no edits."""
    pairs = align(["a", "b", "c"], ["a", "b", "c"])
    assert pairs == [Pair("equal", 0, 0), Pair("equal", 1, 1), Pair("equal", 2, 2)]


def test_substitution_deletion_and_insertion_are_placed_where_they_happen() -> None:
    """A changed, a missing and an extra word each show up at their own position."""
    pairs = align(["the", "cat", "sat", "on", "mat"], ["the", "dog", "sat", "mat", "now"])
    assert pairs == [
        Pair("equal", 0, 0),
        Pair("substitute", 1, 1),
        Pair("equal", 2, 2),
        Pair("delete", 3, None),
        Pair("equal", 4, 3),
        Pair("insert", None, 4),
    ]


def test_empty_sides_give_only_deletions_or_insertions() -> None:
    """Against an empty side every token is a deletion (or insertion); both empty is empty."""
    assert _ops(align(["a", "b"], [])) == ["delete", "delete"]
    assert _ops(align([], ["x"])) == ["insert"]
    assert align([], []) == []
    assert align_prefix([], []) == []


def test_every_index_appears_exactly_once() -> None:
    """Each reference and hypothesis index occurs once, in increasing order."""
    ref = ["a", "b", "a", "b", "c", "a", "b"]
    hyp = ["b", "a", "c", "c", "a", "b", "b"]
    pairs = align(ref, hyp)
    assert [p.ref for p in pairs if p.ref is not None] == list(range(len(ref)))
    assert [p.hyp for p in pairs if p.hyp is not None] == list(range(len(hyp)))


def test_edit_distance_matches_jiwer_counts() -> None:
    """The alignment's edit count equals jiwer's substitutions + deletions + insertions."""
    cases = [
        ("he hoped there would be stew", "he hope there would be a stew for"),
        ("one two three four", "four three two one"),
        ("a a a a", "a"),
    ]
    for ref, hyp in cases:
        out = jiwer.process_words(ref, hyp)
        expected = out.substitutions + out.deletions + out.insertions
        pairs = align(ref.split(), hyp.split())
        assert sum(p.op != "equal" for p in pairs) == expected
        assert edit_distance(ref.split(), hyp.split()) == expected


def test_prefix_alignment_leaves_unspoken_reference_words_out() -> None:
    """A partial covering the first words matches them and claims nothing after it."""
    ref = ["for", "a", "full", "hour", "he", "had", "paced", "up", "and", "down"]
    pairs = align_prefix(ref, ["for", "a", "fool", "hour"])
    assert pairs == [
        Pair("equal", 0, 0),
        Pair("equal", 1, 1),
        Pair("substitute", 2, 2),
        Pair("equal", 3, 3),
    ]


def test_prefix_alignment_of_repeated_words_takes_the_earliest() -> None:
    """With a repeated word the partial's copies pair with the first occurrences."""
    ref = ["words", "words", "words", "words", "um", "and", "that"]
    pairs = align_prefix(ref, ["words", "words"])
    assert pairs == [Pair("equal", 0, 0), Pair("equal", 1, 1)]


def test_prefix_alignment_with_extra_words_reports_insertions() -> None:
    """Hypothesis words beyond the reference are insertions, not matches."""
    pairs = align_prefix(["hello"], ["hello", "there", "friend"])
    assert _ops(pairs) == ["equal", "insert", "insert"]


def test_growing_text_keeps_its_matches_early() -> None:
    """A word repeated at the end of an older display pairs with its first copy, not the last."""
    pairs = align(["more", "words", "words", "were"], ["more", "words"])
    assert pairs == [
        Pair("equal", 0, 0),
        Pair("equal", 1, 1),
        Pair("delete", 2, None),
        Pair("delete", 3, None),
    ]
