"""Tests for the Whisper-style normalisation and the error counts."""

from __future__ import annotations

import pytest

from streamcap.bench.scoring import ErrorCounts, TextScorer, count_errors, metric_for, score, total


def test_case_punctuation_and_numbers_do_not_count_as_errors() -> None:
    """Upper-case unpunctuated references match cased, punctuated hypotheses with digits."""
    s = TextScorer("en")
    ref = "HE COULD WAIT NO LONGER FOR TWENTY FIVE MINUTES"
    c = score(s, ref, "He could wait no longer, for 25 minutes.")
    assert c.errors == 0
    assert c.ref_tokens == 8


def test_curly_and_straight_apostrophes_score_the_same() -> None:
    """A curly apostrophe in the reference equals a straight one in the hypothesis."""
    s = TextScorer("en")
    assert score(s, "thy beauty’s rose, feed’st", "Thy beauty's rose, feed'st").errors == 0


def test_fillers_are_removed_only_for_spontaneous_speech() -> None:
    """``yknow`` is dropped when fillers are removed and counted otherwise."""
    ref, hyp = "we're just yknow there's some", "we're just there's some"
    assert score(TextScorer("en", remove_fillers=True), ref, hyp).errors == 0
    assert score(TextScorer("en", remove_fillers=False), ref, hyp).deletions == 1


def test_chinese_and_japanese_are_scored_by_characters() -> None:
    """zh and ja use CER: one token per character, whitespace and punctuation ignored."""
    assert metric_for("zh") == "cer" and metric_for("ja") == "cer" and metric_for("de") == "wer"
    s = TextScorer("ja")
    assert s.tokens("客観的 実在。") == ["客", "観", "的", "実", "在"]
    c = score(s, "客観的実在", "客観的実存")
    assert (c.ref_tokens, c.substitutions) == (5, 1)


def test_other_languages_use_the_basic_normaliser() -> None:
    """German keeps its words but loses case and punctuation."""
    assert TextScorer("de").tokens("Der Raum, genutzt.") == ["der", "raum", "genutzt"]


def test_empty_hypothesis_and_empty_reference() -> None:
    """Nothing recognised is all deletions; text against an empty reference is insertions."""
    assert count_errors(["a", "b"], []) == ErrorCounts(2, 0, 2, 0)
    assert count_errors([], ["x"]).rate == 100.0
    assert count_errors([], []).rate == 0.0


def test_pooled_rate_is_errors_over_all_reference_tokens() -> None:
    """Pooling adds counts, so the corpus rate weights long files more."""
    pooled = total([ErrorCounts(10, 1, 0, 0), ErrorCounts(90, 0, 0, 0)])
    assert pooled.rate == pytest.approx(1.0)
    assert pooled.to_dict()["ref_tokens"] == 100


def test_hostile_text_does_not_break_normalisation() -> None:
    """Control characters, emoji and markup normalise to plain tokens or nothing."""
    s = TextScorer("en")
    toks = s.tokens("\x00\x1b[31m 🙂 <b></b> ... -")
    assert all(t.isprintable() and any(c.isalnum() for c in t) for t in toks)
    assert score(s, "hello", "\x00 hello \u200b").errors == 0


def test_bracketed_reference_words_are_kept() -> None:
    """Words a reference writes in brackets or parentheses are scored, not dropped (issue 9)."""
    s = TextScorer("en")
    ref = "He said (quietly) that [the] night <was> cold {again}"
    assert s.reference_tokens(ref) == ["he", "said", "quietly", "that", "the", "night", "was",
                                       "cold", "again"]
    # The model's words are all there: no error; the brackets' words missing: 4 deletions.
    assert score(s, ref, "He said quietly that the night was cold again").errors == 0
    assert score(s, ref, "He said that night cold").deletions == 4


def test_bracketed_hypothesis_tags_are_still_dropped() -> None:
    """A non-speech tag such as ``[MUSIC]`` in model output is not counted as a word."""
    s = TextScorer("en")
    assert s.tokens("[MUSIC] hello (laughs) world") == ["hello", "world"]
    assert score(s, "hello world", "[MUSIC] hello (laughs) world").errors == 0


def test_hostile_bracket_references_do_not_crash() -> None:
    """Unbalanced, nested and bracket-only references give the words that are there, or none."""
    s = TextScorer("en")
    assert s.reference_tokens("((a [b) c] <") == ["a", "b", "c"]
    assert s.reference_tokens("()[]<>{}") == []
    assert s.reference_tokens("") == []
    assert TextScorer("de").reference_tokens("Er sagte (leise) hallo") == [
        "er", "sagte", "leise", "hallo"]


def test_reference_words_map_tokens_to_the_written_words() -> None:
    """Each reference token knows its written word; tokens made across words stand alone."""
    scorer = TextScorer("en")
    text = "When thou feel'st it cold, twenty one [laughs]"
    tokens = scorer.reference_tokens(text)
    owners = scorer.reference_words(text)
    assert len(owners) == len(tokens)
    assert list(zip(tokens, owners))[:5] == [
        ("when", 0), ("thou", 1), ("feel", 2), ("saint", 2), ("it", 3)]
    assert owners[tokens.index("21")] < 0 and owners[-1] == 7
    assert scorer.reference_words("") == []
