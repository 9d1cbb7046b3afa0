"""Decoded windows assembled into segments, and the transcript in each response format."""

from __future__ import annotations

import json

import srt
import webvtt

from streamcap.api.render import render
from streamcap.api.transcript import Transcript, TranscriptBuilder
from streamcap.api.windows import Span, Window
from streamcap.asr.decoder import Hypothesis
from streamcap.events import SAMPLE_RATE, Word

SR = SAMPLE_RATE


def w(text: str, start: float, end: float) -> Word:
    return Word(text=text, start=start, end=end, probability=0.9, stable=True)


WINDOWS = [Window(Span(0, 10 * SR), (Span(0, 4 * SR), Span(5 * SR, 10 * SR))),
           Window(Span(12 * SR, 20 * SR), (Span(12 * SR, 20 * SR),))]


def built() -> Transcript:
    b = TranscriptBuilder(WINDOWS, duration=21.0)
    assert b.context() == ""
    b.add(Hypothesis(words=(w(" Hello", 0.5, 1.0), w(" there.", 1.1, 1.6), w(" General", 5.2, 5.8),
                            w(" Kenobi,", 5.9, 6.5)), avg_logprob=-0.2, no_speech_prob=0.01))
    assert b.context() == "General Kenobi,"
    b.add(Hypothesis(words=(w(" you", 12.5, 12.8), w(" are", 12.9, 13.1), w(" bold.", 13.2, 14.0)),
                     avg_logprob=-0.3))
    assert b.finished
    return b.result(decode_seconds=1.5)


def test_words_go_to_the_speech_part_that_holds_them() -> None:
    """One segment per VAD part with words, in order, timed by its words."""
    t = built()
    assert [s.text for s in t.segments] == ["Hello there.", "General Kenobi,", "you are bold."]
    assert [(s.start, s.end) for s in t.segments] == [(0.5, 1.6), (5.2, 6.5), (12.5, 14.0)]
    assert t.text == "Hello there. General Kenobi, you are bold."
    assert [s.id for s in t.segments] == [0, 1, 2] and len(t.words) == 7


def test_a_window_that_sounds_like_silence_adds_nothing() -> None:
    """Whisper's no-speech rule (likely silence, unsure decode) drops a window's words."""
    b = TranscriptBuilder(WINDOWS[:1], duration=10.0)
    b.add(Hypothesis(words=(w(" Thanks", 1.0, 1.5), w(" for watching!", 1.5, 2.0)),
                     no_speech_prob=0.9, avg_logprob=-1.5))
    assert b.result().segments == () and b.result().text == ""


def test_every_format_carries_the_same_text() -> None:
    """json, text, srt, vtt and verbose_json (segments and words) parse back to the text."""
    t = built()
    assert json.loads(render(t, "json").body) == {"text": t.text}
    assert render(t, "text").body.decode() == t.text + "\n"
    cues = list(srt.parse(render(t, "srt").body.decode()))
    assert [c.content for c in cues] == [s.text for s in t.segments]
    assert cues[1].start.total_seconds() == 5.2 and cues[2].end.total_seconds() == 14.0
    vtt = webvtt.from_string(render(t, "vtt").body.decode())
    assert [c.text for c in vtt.captions] == [s.text for s in t.segments]
    assert vtt.captions[2].start == "00:00:12.500"
    verbose = json.loads(render(t, "verbose_json", ("segment", "word")).body)
    assert verbose["text"] == t.text and verbose["duration"] == 21.0
    assert [s["text"] for s in verbose["segments"]] == [s.text for s in t.segments]
    assert [x["word"] for x in verbose["words"]][:2] == ["Hello", "there."]
    only_words = json.loads(render(t, "verbose_json", ("word",)).body)
    assert "segments" not in only_words and len(only_words["words"]) == 7


def test_an_empty_transcript_renders_in_every_format() -> None:
    """No speech: empty text, no cues, and still valid SRT/WebVTT."""
    t = TranscriptBuilder([], duration=3.0).result()
    assert json.loads(render(t, "json").body) == {"text": ""}
    assert list(srt.parse(render(t, "srt").body.decode())) == []
    assert webvtt.from_string(render(t, "vtt").body.decode()).captions == []
    assert json.loads(render(t, "verbose_json").body)["segments"] == []
