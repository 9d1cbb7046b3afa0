"""Sentence finals and lossless cuts inside continuous speech (pure logic, scripted decoder)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from support.policy import Scripted, cfg, drive, finals, heard, partials, script_words

from streamcap.asr.decoder import DecodeRequest
from streamcap.asr.policy import StreamingPolicy, ends_sentence, norm, split_index
from streamcap.events import SAMPLE_RATE, Word

# Continuous reading: sentences and clauses, no pause anywhere (word i at 0.5*i s).
TEXT = (
    "One. From fairest creatures we desire increase, that thereby beauty's rose might never "
    "die. But as the riper should by time decease, his tender heir might bear his memory. "
    "Thou that art now the world's fresh ornament and only herald to the gaudy spring within "
    "thine own bud buriest thy content and tender churl makest waste in niggarding."
).split()
WORDS = script_words(TEXT)
SECONDS = 0.5 * len(TEXT) + 0.5


def keys(words: list[Word] | tuple[Word, ...]) -> list[str]:
    return [norm(w.text) for w in words]


def final_keys(events: list[object]) -> list[str]:
    return [k for f in finals(events) for k in keys(f.words)]


def reader(req: DecodeRequest) -> list[Word]:
    """A perfect decoder of the continuous reading."""
    return heard(WORDS, req)


@pytest.mark.parametrize("mode", ["redecode", "keep_stable"])
def test_every_word_of_continuous_speech_is_in_the_finals_exactly_once(mode: str) -> None:
    """Sentence finals and safety cuts split a pause-free reading without losing or doubling a
    word, in both final modes."""
    events = drive(StreamingPolicy(cfg(asr__final_mode=mode, vad__max_utterance_s=8.0)),
                   Scripted(reader), SECONDS)
    assert final_keys(events) == keys(WORDS)
    assert len(finals(events)) >= 5


def test_a_sentence_final_comes_as_soon_as_the_next_word_is_heard() -> None:
    """The final of a sentence arrives while the speaker goes on, not at the end of speech."""
    policy = StreamingPolicy(cfg(asr__final_mode="keep_stable"))
    src = Scripted(reader)
    events = drive(policy, src, SECONDS, end=False)
    fs = finals(events)
    assert fs[0].text == "One."
    assert fs[1].text.endswith("never die.")
    # Every sentence but the last is final before the input ends.
    assert sum(f.text.endswith(".") for f in fs) >= 3


def test_the_next_window_overlaps_the_cut_and_forces_the_overlap_words() -> None:
    """After a cut the window starts before the last finished words, which lead the prefix."""
    src = Scripted(reader)
    drive(StreamingPolicy(cfg(asr__final_mode="keep_stable", asr__overlap_s=1.0)), src, SECONDS)
    cut = next(r for r in src.requests if not r.final and r.offset > 0)
    first = next(w for w in WORDS if w.start >= cut.offset)
    assert keys(cut.prefix)[0] == norm(first.text)
    # The overlap covers about a second of the previous sentence's words.
    assert cut.prefix[-1].end - cut.prefix[0].start + 0.1 >= 0.9
    assert cut.offset < cut.prefix[0].start


def test_a_word_straddling_a_safety_cut_is_heard_whole_by_the_next_window() -> None:
    """With no punctuation, a cut at max length loses no word, even the one being spoken at the
    cut."""
    plain = script_words([t.strip(".,").lower() for t in TEXT])
    src = Scripted(lambda req: heard(plain, req))
    events = drive(StreamingPolicy(cfg(vad__max_utterance_s=4.0)), src, SECONDS)
    assert final_keys(events) == keys(plain)
    starts = sorted({r.offset for r in src.requests})
    assert len(starts) >= 5  # several windows, so several cuts were made
    for s in starts[1:]:
        # No window starts inside a word that no earlier final has.
        inside = [w for w in plain if w.start < s < w.end]
        assert not inside


def test_wrong_timestamps_at_the_window_end_do_not_move_a_cut() -> None:
    """The newest words' timestamps collapse onto the audio end (as Whisper's often do); the
    cut still falls between whole words and nothing is lost."""

    def smeared(req: DecodeRequest) -> list[Word]:
        words = heard(WORDS, req)
        end = req.offset + len(req.audio) / SAMPLE_RATE
        return [replace(w, start=end - 0.02, end=end) if w.end > end - 1.0 else w for w in words]

    events = drive(StreamingPolicy(cfg(asr__final_mode="redecode")), Scripted(smeared), SECONDS)
    assert final_keys(events) == keys(WORDS)


def test_a_redecoded_final_may_correct_a_committed_word() -> None:
    """With final_mode redecode the final pass's better word replaces the committed one."""

    def partial_mishears(req: DecodeRequest) -> list[Word]:
        words = heard(WORDS, req)
        if req.final:
            return words
        return [replace(w, text=" heir!") if norm(w.text) == "rose" else w for w in words]

    events = drive(StreamingPolicy(cfg(asr__final_mode="redecode")), Scripted(partial_mishears),
                   SECONDS)
    assert any(w.stable and norm(w.text) == "heir" for p in partials(events) for w in p.words)
    assert final_keys(events) == keys(WORDS)


def test_keep_stable_finals_never_change_a_committed_word() -> None:
    """With final_mode keep_stable a committed word is in the final exactly as shown."""

    def partial_mishears(req: DecodeRequest) -> list[Word]:
        words = heard(WORDS, req)
        if req.final:
            return words
        return [replace(w, text=" heir") if norm(w.text) == "rose" else w for w in words]

    events = drive(StreamingPolicy(cfg(asr__final_mode="keep_stable")),
                   Scripted(partial_mishears), SECONDS)
    assert "heir" in final_keys(events) and "rose" not in final_keys(events)


def test_a_final_pass_that_stops_early_keeps_the_committed_words() -> None:
    """A redecoded sentence pass that returns only its first words cannot lose the rest."""

    def final_gives_up(req: DecodeRequest) -> list[Word]:
        words = heard(WORDS, req)
        return words[:2] if req.final else words

    events = drive(StreamingPolicy(cfg(asr__final_mode="redecode")), Scripted(final_gives_up),
                   SECONDS)
    fs = final_keys(events)
    # Committed words survive; only the never-committed tail at the very end may be missing.
    assert fs == keys(WORDS)[: len(fs)] and len(fs) >= len(WORDS) - 3


def test_split_index_aligns_by_text_not_time() -> None:
    """A final pass is split where its words align with the sentence, whatever their times."""
    ref = script_words("that thereby beauty's rose might never die. but as".split())
    hyp = [replace(w, start=9.0, end=9.0) for w in
           script_words("that thereby beauties rose might never die. But as the".split())]
    assert split_index(hyp, ref, 7, boundary_time=3.45) == 7


def test_split_index_uses_time_only_inside_a_disagreement_at_the_boundary() -> None:
    """Where the texts disagree right at the boundary, the words' times decide."""
    ref = script_words("never die. but as".split())
    hyp = script_words("never dye but us".split())
    assert split_index(hyp, ref, 2, boundary_time=0.95) == 2
    assert split_index([], ref, 2, boundary_time=0.95) == 0


def test_sentence_finals_can_be_switched_off() -> None:
    """With sentence_finals off, continuous speech is one final per safety window."""
    events = drive(StreamingPolicy(cfg(asr__sentence_finals=False)), Scripted(reader), 10.0)
    assert len(finals(events)) == 1
    assert final_keys(events) == keys([w for w in WORDS if w.end <= 10.0])


def test_abbreviations_and_initials_do_not_end_a_sentence() -> None:
    """ "Mr." and "J." end no sentence; "I." and a real period do."""
    def w(text: str) -> Word:
        return Word(text, 0.0, 0.1, 0.9, False)

    assert not ends_sentence(w(" Mr.")) and not ends_sentence(w(" J."))
    assert ends_sentence(w(" die.")) and ends_sentence(w(' sea?"')) and ends_sentence(w(" I."))
    assert not ends_sentence(w(" increase,"))


@pytest.mark.parametrize("mode", ["redecode", "keep_stable"])
def test_a_final_pass_that_stops_after_a_sentence_gets_a_pass_for_the_rest(mode: str) -> None:
    """Whisper may end a final pass after a finished sentence although speech goes on (seen
    live: a reader's second sentence vanished). When the final's words end well before the
    end of the speech, the rest of the audio gets its own final pass, forced to start with the
    last words said: every word comes out once."""
    text = ("He began a confused complaint against the wizard. Unless to be rather cold "
            "hearted and rather selfish is to be ill disposed").split()
    spoken = script_words(text)

    def stops_early(req: DecodeRequest) -> list[Word]:
        if not req.final:
            return []  # a busy worker: no partial pass told the policy anything
        words = heard(spoken, req)
        if not req.prefix:  # the first pass ends after the first sentence
            n = next(i for i, w in enumerate(words) if ends_sentence(w)) + 1
            return words[:n]
        return words

    src = Scripted(stops_early)
    events = drive(StreamingPolicy(cfg(asr__final_mode=mode)), src, 0.5 * len(text) + 0.5)
    assert final_keys(events) == keys(spoken)
    assert len(finals(events)) == 2
    rest = [r for r in src.requests if r.final and r.prefix]
    # The overlap (asr.overlap_s = 1 s of the last words): "against the wizard."
    assert rest and keys(rest[0].prefix) == keys(spoken[5:8])


def test_a_final_that_reaches_the_end_of_the_speech_gets_no_extra_pass() -> None:
    """A final whose words run to the end of the speech (the usual case) is the last pass: no
    pass on trailing silence, where Whisper could make things up."""
    text = "He began a confused complaint against the wizard.".split()
    spoken = script_words(text)
    src = Scripted(lambda req: heard(spoken, req) if req.final else [])
    events = drive(StreamingPolicy(cfg()), src, 0.5 * len(text) + 0.5)
    assert final_keys(events) == keys(spoken)
    assert len([r for r in src.requests if r.final]) == 1
