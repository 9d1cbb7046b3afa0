"""The streaming policy driven by a scripted hypothesis source (pure logic, no model)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from support.policy import (
    SCRIPT,
    Scripted,
    cfg,
    drive,
    finals,
    partials,
    spoken,
    truthful,
)

from streamcap.asr.decoder import DecodeRequest
from streamcap.asr.policy import StreamingPolicy, cut_loops, norm
from streamcap.events import SAMPLE_RATE, VadEvent, Word
from streamcap.vad import PAUSE_S, SpeechAudio, SpeechEnd, SpeechPause, SpeechResume, SpeechStart


def test_truthful_source_yields_the_whole_script_as_one_final() -> None:
    """An utterance decoded by a perfect source ends as one final holding every word in order."""
    events = drive(StreamingPolicy(cfg()), Scripted(truthful), 7.0)
    (final,) = finals(events)
    assert [norm(w.text) for w in final.words] == SCRIPT
    assert isinstance(events[0], VadEvent) and events[0].state == "speech_start"


def test_stable_words_are_never_retracted() -> None:
    """Once a partial marks a word stable, every later partial and the final keep it unchanged."""
    events = drive(StreamingPolicy(cfg()), Scripted(truthful), 7.0)
    ps = partials(events)
    assert any(w.stable for p in ps for w in p.words)
    stable_so_far: list[str] = []
    for p in ps:
        texts = [w.text for w in p.words]
        assert texts[: len(stable_so_far)] == stable_so_far
        stable_so_far = [w.text for w in p.words if w.stable]
    assert [w.text for w in finals(events)[0].words][: len(stable_so_far)] == stable_so_far


def test_committed_words_are_fed_back_as_the_prefix() -> None:
    """Every request after a commit carries the committed words as its forced prefix."""
    src = Scripted(truthful)
    drive(StreamingPolicy(cfg()), src, 7.0)
    prefixes = [len(r.prefix) for r in src.requests if not r.final]
    assert prefixes == sorted(prefixes) and prefixes[-1] > 5


def test_agreement_needs_consecutive_matching_hypotheses() -> None:
    """A source that changes its mind on every pass never gets a word committed."""
    flip = [0]

    def fickle(req: DecodeRequest) -> list[Word]:
        flip[0] += 1
        w = spoken(0)
        return [Word(f" word{flip[0]}", w.start, w.end, 0.9, False)]

    events = drive(StreamingPolicy(cfg()), Scripted(fickle), 3.0, end=False)
    assert partials(events)
    assert not any(w.stable for p in partials(events) for w in p.words)


def test_higher_agreement_commits_later() -> None:
    """LocalAgreement-3 commits no earlier than LocalAgreement-2 on the same stream."""

    def first_stable(agreement: int) -> int:
        src = Scripted(truthful)
        drive(StreamingPolicy(cfg(asr__agreement=agreement)), src, 7.0)
        return next(i for i, r in enumerate(src.requests) if r.prefix)

    assert first_stable(3) > first_stable(2)


def test_words_near_the_buffer_end_stay_unstable() -> None:
    """A word is committed only once it ends commit_margin_s before the audio fed, and words do
    become stable."""
    margin = 1.0
    policy = StreamingPolicy(cfg(asr__commit_margin_s=margin))
    src = Scripted(truthful)
    policy.on_segment(SpeechStart(0))
    step = SAMPLE_RATE // 10
    stable_seen = 0
    for k in range(40):
        policy.on_segment(SpeechAudio(k * step, np.zeros(step, np.float32)))
        while (req := policy.next_request()) is not None:
            fed = req.offset + len(req.audio) / SAMPLE_RATE
            for p in partials(policy.on_hypothesis(req, src.decode(req))):
                stable = [w for w in p.words if w.stable]
                assert all(w.end <= fed - margin + 1e-9 for w in stable)
                stable_seen = max(stable_seen, len(stable))
    assert stable_seen >= 3


def test_decodes_follow_the_cadence() -> None:
    """Partial passes are requested about every partial_interval_s of new audio, no more."""
    src = Scripted(truthful)
    drive(StreamingPolicy(cfg(asr__partial_interval_s=0.5)), src, 5.0, end=False)
    ends = [r.offset + len(r.audio) / SAMPLE_RATE for r in src.requests]
    gaps = np.diff(ends)
    assert len(ends) >= 8 and gaps.min() >= 0.5 - 1e-6


def test_a_loop_is_cut_and_never_reaches_the_prompt() -> None:
    """A decoder stuck repeating a phrase gets the loop cut, and the looped text is not context."""

    def loopy(req: DecodeRequest) -> list[Word]:
        words = truthful(req)
        if len(req.prefix) + len(words) >= 4:
            extra = [Word(" over and over", 1.8, 1.9, 0.9, False)] * 6
            return [*words[:4], *extra]
        return words

    policy = StreamingPolicy(cfg())
    events = drive(policy, Scripted(loopy), 3.0)
    for f in finals(events):
        assert f.text.lower().count("over and over") <= 1
    assert "over and over over and over" not in policy._context_text()


def test_cut_loops_keeps_genuine_repetition() -> None:
    """Three repeats of a single word are speech, not a loop; a phrase said twice is a loop."""
    ws = [Word(" " + t, i, i + 0.5) for i, t in enumerate("words words words here".split())]
    assert cut_loops(ws) == (ws, False)
    phrase = "ask what you can do ask what you can do".split()
    ws2 = [Word(" " + t, i, i + 0.5) for i, t in enumerate(phrase)]
    kept, looped = cut_loops(ws2)
    assert looped and [norm(w.text) for w in kept] == phrase[:5]


def test_restarting_decoder_is_detected_against_committed_words() -> None:
    """New words that start the utterance over (repeat a committed 4-gram) are dropped."""
    before = [Word(" " + t, i, i + 0.5) for i, t in enumerate("and so my fellow americans".split())]
    new = [Word(" " + t, 9 + i, 9.5 + i) for i, t in enumerate("and so my fellow".split())]
    assert cut_loops(new, before) == ([], True)


def test_no_speech_pass_yields_no_caption() -> None:
    """A source that reports no speech with low confidence produces no partial and no final."""
    src = Scripted(truthful, no_speech_prob=0.9, avg_logprob=-2.0)
    events = drive(StreamingPolicy(cfg()), src, 3.0)
    assert not partials(events) and not finals(events)


def test_lone_low_confidence_word_is_dropped() -> None:
    """A lone word the model barely believes (the classic 'you' on noise) is not captioned."""

    def you(req: DecodeRequest) -> list[Word]:
        return [Word(" you", req.offset, req.offset + 0.3, 0.05, False)]

    events = drive(StreamingPolicy(cfg()), Scripted(you), 2.0)
    assert not partials(events) and not finals(events)


def test_forced_cut_happens_at_a_committed_word_boundary() -> None:
    """Speech longer than max_utterance_s is cut after a committed word, and nothing is lost."""
    long_script = [f"w{i}" for i in range(60)]

    def source(req: DecodeRequest) -> list[Word]:
        end = req.offset + len(req.audio) / SAMPLE_RATE
        ws = [Word(" " + t, 0.5 * i, 0.5 * i + 0.4, 0.9, False) for i, t in enumerate(long_script)]
        heard = [w for w in ws if w.start >= req.offset - 1e-6 and w.end <= end]
        return heard[len(req.prefix) :]

    policy = StreamingPolicy(cfg(vad__max_utterance_s=5.0))
    events = drive(policy, Scripted(source), 20.0)
    fs = finals(events)
    assert len(fs) >= 3
    words = [norm(w.text) for f in fs for w in f.words]
    assert words == [t for t in long_script if 0.5 * long_script.index(t) + 0.4 <= 20.0]
    for a, b in itertools.pairwise(fs):
        assert a.end <= b.start  # cuts fall between words


def test_stale_partial_result_is_ignored() -> None:
    """A partial hypothesis for an utterance that has since closed changes nothing."""
    policy = StreamingPolicy(cfg())
    src = Scripted(truthful)
    policy.on_segment(SpeechStart(0))
    policy.on_segment(SpeechAudio(0, np.zeros(SAMPLE_RATE, np.float32)))
    req = policy.next_request()
    assert req is not None and not req.final
    policy.on_segment(SpeechEnd(SAMPLE_RATE))
    assert policy.on_hypothesis(req, src.decode(req)) == []


def test_pending_finals_are_decoded_before_partials() -> None:
    """A closed utterance's final pass comes before any partial of the next utterance."""
    policy = StreamingPolicy(cfg())
    policy.on_segment(SpeechStart(0))
    policy.on_segment(SpeechAudio(0, np.zeros(SAMPLE_RATE, np.float32)))
    policy.on_segment(SpeechEnd(SAMPLE_RATE))
    policy.on_segment(SpeechStart(2 * SAMPLE_RATE))
    policy.on_segment(SpeechAudio(2 * SAMPLE_RATE, np.zeros(SAMPLE_RATE, np.float32)))
    req = policy.next_request()
    assert req is not None and req.final and req.offset == 0.0


def test_empty_utterance_produces_no_final() -> None:
    """Speech start immediately followed by speech end yields no final caption."""
    policy = StreamingPolicy(cfg())
    events = policy.on_segment(SpeechStart(0)) + policy.on_segment(SpeechEnd(0))
    assert policy.next_request() is None
    assert [type(e) for e in events] == [VadEvent, VadEvent]


@pytest.mark.parametrize("agreement", [1, 2, 3])
def test_final_never_loses_committed_words_when_final_pass_is_empty(agreement: int) -> None:
    """If the final pass returns nothing, the final still holds the committed and shown words."""

    def empty_final(req: DecodeRequest) -> list[Word]:
        return [] if req.final else truthful(req)

    events = drive(StreamingPolicy(cfg(asr__agreement=agreement)), Scripted(empty_final), 7.0)
    (final,) = finals(events)
    last_partial = partials(events)[-1]
    assert [w.text for w in final.words] == [w.text for w in last_partial.words]


@pytest.mark.parametrize(("probability", "first_at"), [(0.99, 1.0), (0.5, 3.0)])
def test_auto_language_locks_when_confident_or_after_three_seconds(
    probability: float, first_at: float
) -> None:
    """In auto mode nothing is shown until the language is confidently known, or 3 s have passed."""
    src = Scripted(truthful, language_probability=probability)
    src.hyp["language"] = "de"  # type: ignore[assignment]
    policy = StreamingPolicy(cfg(), multilingual=True)
    events = drive(policy, src, 6.0)
    first = partials(events)[0]
    first_req = src.requests[0]
    assert first_req.language is None
    assert first.end <= first_at + 0.5 and first.words[-1].end > first_at - 1.0
    assert all(p.language == "de" for p in partials(events))
    later = [r for r in src.requests if r.offset + len(r.audio) / SAMPLE_RATE > first_at + 0.5]
    assert later and all(r.language == "de" for r in later)


def test_final_pass_runs_during_the_pause_and_is_used_at_the_end() -> None:
    """After a pause the final pass runs at once; when speech ends, the final needs no decode."""
    policy = StreamingPolicy(cfg())
    src = Scripted(truthful)
    step = SAMPLE_RATE // 10
    policy.on_segment(SpeechStart(0))
    for k in range(20):
        policy.on_segment(SpeechAudio(k * step, np.zeros(step, np.float32)))
        while (req := policy.next_request()) is not None:
            policy.on_hypothesis(req, src.decode(req))
    # Silence: the VAD reports a pause at the end of the last voiced frame (2.0 s) ...
    policy.on_segment(SpeechPause(2 * SAMPLE_RATE))
    for k in range(20, 23):
        policy.on_segment(SpeechAudio(k * step, np.zeros(step, np.float32)))
    req = policy.next_request()
    assert req is not None and req.final and req.speculative
    assert len(req.audio) == int((2.0 + PAUSE_S) * SAMPLE_RATE)  # speech + trailing silence
    assert policy.on_hypothesis(req, src.decode(req)) == []
    assert policy.next_request() is None  # no partials over the silence
    n = len(src.requests)
    # ... and the end confirms it: the final comes out of on_segment with no further decode.
    events = policy.on_segment(SpeechEnd(2 * SAMPLE_RATE))
    (final,) = finals(events)
    assert len(src.requests) == n and policy.next_request() is None
    assert [norm(w.text) for w in final.words] == SCRIPT[:4]


def test_speech_resuming_after_a_pause_discards_the_early_final() -> None:
    """If speech goes on after a pause, the speculative pass is dropped and decoding resumes."""
    policy = StreamingPolicy(cfg())
    src = Scripted(truthful)
    step = SAMPLE_RATE // 10
    policy.on_segment(SpeechStart(0))
    for k in range(20):
        policy.on_segment(SpeechAudio(k * step, np.zeros(step, np.float32)))
    policy.on_segment(SpeechPause(2 * SAMPLE_RATE))
    for k in range(20, 23):
        policy.on_segment(SpeechAudio(k * step, np.zeros(step, np.float32)))
    while (req := policy.next_request()) is not None:
        policy.on_hypothesis(req, src.decode(req))
    policy.on_segment(SpeechResume(int(2.3 * SAMPLE_RATE)))
    for k in range(23, 60):
        policy.on_segment(SpeechAudio(k * step, np.zeros(step, np.float32)))
        while (req := policy.next_request()) is not None:
            assert not req.speculative
            policy.on_hypothesis(req, src.decode(req))
    events = policy.on_segment(SpeechEnd(6 * SAMPLE_RATE))
    assert finals(events) == []  # no early final matches: the final pass is queued
    req = policy.next_request()
    assert req is not None and req.final and not req.speculative
    (final,) = finals(policy.on_hypothesis(req, src.decode(req)))
    assert [norm(w.text) for w in final.words] == SCRIPT[:12]
