"""Known-answer tests for the scoring of labelled inputs (attribution and WER per input), and
the meeting benchmark's real-time shell on the real model."""

from __future__ import annotations

import numpy as np
import pytest
from support.daemon_proc import need, reference
from support.model import AUDIO, decoder

from streamcap.audio.decode import load_audio
from streamcap.bench.meeting import Attribution, Heard, Spoken, attribution, per_label
from streamcap.bench.meeting_run import run_inputs, timeline
from streamcap.config import Config

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


def test_timeline_gives_each_input_its_turns_and_silence_meanwhile() -> None:
    """Turns are laid out in order with gaps; each input is silent while the other speaks."""
    a, b = np.ones(3, np.float32), np.full(2, 2.0, np.float32)
    you, others = timeline([(0, a), (1, b)], 2, gap_s=1 / 16000)
    assert you.tolist() == [0, 1, 1, 1, 0, 0, 0, 0]
    assert others.tolist() == [0, 0, 0, 0, 0, 2, 2, 0]
    assert [len(s) for s in timeline([], 2, gap_s=0.0)] == [0, 0]


def test_run_inputs_paces_two_inputs_through_one_worker_with_labels() -> None:
    """A clip on one input and silence on the other, paced at real time through the worker:
    the finals carry the first input's label and match the clip, nothing is dropped, and both
    inputs' lags are sampled."""
    clip = AUDIO / "en_librispeech" / "1089-134691-0000.flac"  # 2.1 s
    need(clip)
    speech = np.concatenate([load_audio(clip), np.zeros(16000, np.float32)])
    run = run_inputs([speech, np.zeros_like(speech)], ["You", "Others"], Config(), decoder())
    you, others = run.lanes
    assert [f.source for _, f in you.finals] == ["You"] * len(you.finals)
    assert not others.finals and not others.events
    said = " ".join(f.text for _, f in you.finals)
    assert per_label([Spoken("You", reference(clip))], [Heard("You", 0.0, said)])["You"].rate \
        < 30.0, said
    assert run.dropped_samples == 0 and not you.lost_utterances()
    assert you.lags and others.lags and run.cpu_seconds > 0
    with pytest.raises(ValueError):
        run_inputs([], [], Config(), decoder())
