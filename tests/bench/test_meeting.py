"""Known-answer tests for the scoring of labelled inputs (attribution and WER per input)."""

from __future__ import annotations

from streamcap.bench.meeting import Attribution, Heard, Spoken, attribution, per_label

SPOKEN = [Spoken("You", "The cat sat on the mat."), Spoken("Others", "Dogs bark at night.")]


def test_right_labels_on_alternating_speech_score_every_word() -> None:
    """Finals that repeat each clip under its input's label are all attributed right."""
    heard = [Heard("Others", 5.0, "dogs bark at night"),
             Heard("You", 1.0, "the cat sat on the mat")]
    assert attribution(SPOKEN, heard) == Attribution(words=10, right=10, inserted=0)


def test_a_wrong_label_counts_the_words_of_that_final() -> None:
    """A final carrying the other input's label makes its words wrong, the others stay right."""
    heard = [Heard("You", 1.0, "the cat sat"), Heard("Others", 2.0, "on the mat"),
             Heard("Others", 5.0, "dogs bark at night")]
    got = attribution(SPOKEN, heard)
    assert (got.words, got.right) == (10, 7)
    assert abs(got.fraction - 0.7) < 1e-9


def test_misrecognised_words_keep_their_label_and_extra_words_are_set_apart() -> None:
    """A substituted word is still attributed; a word with no reference word is an insertion."""
    heard = [Heard("You", 1.0, "the bat sat on the mat"),
             Heard("Others", 5.0, "hello hello dogs bark at night")]
    got = attribution(SPOKEN, heard)
    assert got == Attribution(words=10, right=10, inserted=2)


def test_empty_and_hostile_inputs_score_without_error() -> None:
    """Nothing heard, nothing spoken, unlabelled finals, punctuation only and control
    characters: defined results, no exception."""
    assert attribution(SPOKEN, []) == Attribution(0, 0, 0)
    assert attribution(SPOKEN, []).fraction == 1.0
    assert attribution([], [Heard("You", 0.0, "words")]) == Attribution(0, 0, 1)
    got = attribution(SPOKEN, [Heard(None, 0.0, "the cat\x00 sat on the mat ..."),
                               Heard("Others", 1.0, "!!! \x1b ...")])
    assert (got.words, got.right) == (6, 0)


def test_per_label_scores_each_input_against_what_was_played_on_it() -> None:
    """Each input's finals, in start order, against its own references; a label that nothing
    was played on is all insertions."""
    heard = [Heard("Others", 5.0, "dogs bark at night"), Heard("You", 2.0, "on the mat"),
             Heard("You", 1.0, "the cat sat"), Heard("Ghost", 3.0, "boo")]
    got = per_label(SPOKEN, heard)
    assert got["You"].rate == 0.0 and got["Others"].rate == 0.0
    assert (got["Ghost"].ref_tokens, got["Ghost"].insertions) == (0, 1)
    missing = per_label(SPOKEN, [Heard("You", 1.0, "the cat sat on the mat")])
    assert missing["Others"].deletions == 4
