"""Tests for the pure caption formatter: finals in, broadcast-style cues out."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random

import pytest
import srt
import webvtt
from support.captions import final_of, jfk_words, shifted, timed
from support.clips import AUDIO

from streamcap.errors import ConfigError, StreamcapError
from streamcap.events import FinalCaption, Word
from streamcap.sinks.captions import (
    VTT_HEADER,
    CaptionFormatter,
    Cue,
    original_final,
    translation_final,
)


def check_rules(cues: list[Cue], fm: CaptionFormatter, *, first_index: int = 1) -> None:
    """The broadcast rules every stream of cues must keep (see the module docstring); one
    speaker's cues never overlap (two speakers' may)."""
    prev_ends: dict[str | None, float] = {}
    for n, cue in enumerate(cues):
        prev_end = prev_ends.get(cue.speaker, -1.0)
        assert cue.index == first_index + n
        assert 1 <= len(cue.lines) <= fm.max_lines
        for line in cue.lines:
            assert 0 < len(line) <= fm.max_line_chars, line
            assert line == line.strip() and "\n" not in line
        assert cue.start >= prev_end - 1e-9, "cues must not overlap or go backwards"
        assert cue.end > cue.start
        assert cue.end - cue.start <= fm.max_cue_s + 1e-9
        prev_ends[cue.speaker] = cue.end
    for a, b in itertools.pairwise(cues):
        if a.speaker != b.speaker:
            continue
        # Shorter than min_cue_s only where the next cue leaves no room.
        if a.end - a.start < fm.min_cue_s - 1e-9:
            assert b.start == pytest.approx(a.end, abs=1e-6)


def squeeze(text: str) -> str:
    """The text without any whitespace (what must survive line breaking and hard wraps)."""
    return "".join(text.split())


def words_of(cues: list[Cue]) -> list[str]:
    return [w for c in cues for line in c.lines for w in line.split(" ")]


@pytest.mark.slow
def test_real_jfk_final_is_split_on_word_timestamps() -> None:
    """The 11 s JFK sentence as one final becomes several cues within the rules, cut at words."""
    words = jfk_words()
    fin = final_of(words)
    fm = CaptionFormatter()
    cues = fm.feed(fin)
    assert len(cues) >= 2, "a final longer than max_cue_s must be split"
    check_rules(cues, fm)
    assert words_of(cues) == fin.text.split(), "no word lost, added or reordered"
    starts = {round(w.start, 3) for w in words}
    for cue in cues[1:]:
        assert round(cue.start, 3) in starts, "each cue starts at a word"
    assert cues[0].start == pytest.approx(words[0].start, abs=1e-3)
    assert cues[-1].end >= words[-1].end - 1e-3


@pytest.mark.slow
def test_real_jfk_numbering_is_continuous_across_many_finals() -> None:
    """Forty finals from real words get cues numbered 1..N without gaps, overlaps or reversals."""
    words = jfk_words()
    halves = [words[: len(words) // 2], words[len(words) // 2 :]]
    fm = CaptionFormatter()
    cues: list[Cue] = []
    for k in range(20):
        for h, part in enumerate(halves):
            cues += fm.feed(final_of(shifted(part, 12.0 * k), uid=2 * k + h))
    assert len(cues) >= 40
    check_rules(cues, fm)
    assert [c.index for c in cues] == list(range(1, len(cues) + 1))
    assert fm.cues_emitted == len(cues)


def test_line_rules_hold_for_many_texts_and_settings() -> None:
    """Random real-word finals keep line length, line count and duration limits in every setting."""
    manifest = AUDIO / "en_librispeech" / "manifest.tsv"
    refs = [
        row.split("\t")[6]
        for row in manifest.read_text(encoding="utf-8").splitlines()[1:]
        if row.strip()
    ]
    vocab = [w for r in refs for w in r.split()]
    assert len(vocab) > 50
    rng = random.Random(1234)
    for width, lines, lo, hi in [(42, 2, 1.0, 7.0), (10, 1, 0.5, 2.0), (32, 3, 1.5, 5.0)]:
        fm = CaptionFormatter(width, lines, lo, hi)
        t = 0.0
        cues: list[Cue] = []
        for uid in range(30):
            n = rng.randint(1, 45)
            ws = []
            for _ in range(n):
                d = rng.uniform(0.08, 0.6)
                ws.append(Word(" " + rng.choice(vocab), t, t + d))
                t += d + rng.choice([0.0, 0.0, 0.05, 0.4, 1.2])
            fin = final_of(ws, uid=uid)
            got = fm.feed(fin)
            assert squeeze(" ".join(c.text for c in got)) == squeeze(fin.text)
            if all(len(w) <= width for w in fin.text.split()):
                assert words_of(got) == fin.text.split()
            cues += got
            t += rng.uniform(0.0, 2.0)
        check_rules(cues, fm)


def test_short_final_is_extended_and_the_next_final_never_overlaps() -> None:
    """A 0.3 s final lasts min_cue_s, and a final starting inside that time starts after it."""
    fm = CaptionFormatter()
    a = fm.feed(final_of(timed([" Yes."], t0=2.0, step=0.3)))
    assert len(a) == 1 and a[0].start == 2.0 and a[0].end == pytest.approx(3.0)
    b = fm.feed(final_of(timed([" Right", " away."], t0=2.6, step=0.4), uid=2))
    assert b[0].index == 2
    assert b[0].start >= a[0].end
    c = fm.feed(final_of(timed([" Later."], t0=10.0, step=1.5), uid=3))
    assert c[0].start == 10.0 and c[0].end == pytest.approx(11.5), "long enough: left as is"


def test_short_cue_inside_a_final_stops_where_the_next_cue_starts() -> None:
    """When a final must split after a short sentence, that cue ends where the next one starts."""
    fm = CaptionFormatter(max_cue_s=2.0)
    rest = [" everyone", " please", " listen", " to", " this", " carefully", " now"]
    words = [Word(" Stop.", 0.0, 0.2), *timed(rest, t0=0.3, step=0.28)]
    cues = fm.feed(final_of(words))
    check_rules(cues, fm)
    assert cues[0].lines == ("Stop.",)
    assert cues[0].end == pytest.approx(0.3) and cues[1].start == pytest.approx(0.3)
    assert cues[0].end - cues[0].start < fm.min_cue_s, "no room: shorter than min_cue_s"


def test_split_prefers_sentence_ends_then_pauses() -> None:
    """A forced split falls after a full stop rather than mid-sentence, and at the longest pause."""
    fm = CaptionFormatter(max_line_chars=42, max_lines=2, max_cue_s=2.5)
    words = timed([" We", " came", " here", " today."], step=0.4) + timed(
        [" It", " was", " worth", " it"], t0=1.6, step=0.4
    )
    cues = fm.feed(final_of(words))
    assert [c.text for c in cues] == ["We came here today.", "It was worth it"]
    paused = timed([" one", " two", " three"], step=0.5) + timed(
        [" four", " five", " six"], t0=2.6, step=0.5
    )
    fm2 = CaptionFormatter(max_cue_s=3.0)
    cues2 = fm2.feed(final_of(paused))
    assert [c.text for c in cues2] == ["one two three", "four five six"]


def test_two_lines_are_balanced() -> None:
    """A cue that needs two lines gets two lines of similar length, not one full and one stub."""
    fm = CaptionFormatter(max_line_chars=42, max_lines=2, max_cue_s=30.0)
    text = "the quick brown fox jumps over the lazy dog and runs far away"
    cues = fm.feed(final_of(timed([" " + w for w in text.split()], step=0.3)))
    assert len(cues) == 1 and len(cues[0].lines) == 2
    a, b = (len(x) for x in cues[0].lines)
    assert abs(a - b) <= 12
    assert " ".join(cues[0].lines) == text


def test_word_longer_than_a_line_is_hard_wrapped() -> None:
    """A 130-character word is cut into line-sized pieces and every character is kept."""
    fm = CaptionFormatter(max_line_chars=42)
    long_word = "https://example.com/" + "x" * 110
    ws = timed([" see", " " + long_word, " now"], step=1.0)
    cues = fm.feed(final_of(ws))
    check_rules(cues, fm)
    flat = "".join(line for c in cues for line in c.lines)
    assert long_word in flat and flat.startswith("see") and flat.endswith("now")


def test_empty_final_yields_no_cue_and_keeps_numbering() -> None:
    """Empty or blank finals produce nothing and do not use up cue numbers."""
    fm = CaptionFormatter()
    assert fm.feed(FinalCaption(1, "", (), 0.0, 1.0)) == []
    assert fm.feed(FinalCaption(2, "   ", (Word("  ", 0.0, 1.0),), 0.0, 1.0)) == []
    assert fm.feed(FinalCaption(3, "", (Word(" hi", 0.0, 1.0),), 0.0, 1.0)) == []
    cues = fm.feed(final_of(timed([" Hello."], t0=5.0)))
    assert [c.index for c in cues] == [1]


def test_text_without_word_timestamps_spans_start_to_end() -> None:
    """A final with text but no words yields one cue from start to end (capped at max_cue_s)."""
    fm = CaptionFormatter()
    cues = fm.feed(FinalCaption(1, "Good evening.", (), 3.0, 5.5))
    assert [(c.start, c.end, c.lines) for c in cues] == [(3.0, 5.5, ("Good evening.",))]
    long_span = fm.feed(FinalCaption(2, "Hello again.", (), 10.0, 25.0))
    assert long_span[0].start == 10.0 and long_span[0].end == pytest.approx(17.0)
    wordy = " ".join(["word"] * 60)
    many = fm.feed(FinalCaption(3, wordy, (), 30.0, 44.0))
    check_rules(cues + long_span + many, fm)
    assert len(many) >= 3 and words_of(many) == wordy.split()


def test_chinese_and_japanese_break_by_characters() -> None:
    """CJK text is broken between characters, gets no spaces, and no line starts with 。 or 、."""
    fm = CaptionFormatter(max_line_chars=10, max_lines=2, max_cue_s=7.0)
    zh = "广州市房地产中介协会分析"
    zh_words = timed(["广州市", "房地产", "中介", "协会", "分析"], step=0.4)
    zh_cues = fm.feed(final_of(zh_words, lang="zh"))
    ja = (
        "客観的実在の判断的知識が成立するのである。"
        "真っ昼間なのに、キャンプの外れの電柱に電球がともっていた。"
    )
    ja_words = timed([ja[k : k + 3] for k in range(0, len(ja), 3)], t0=3.0, step=0.3)
    ja_cues = fm.feed(final_of(ja_words, uid=2, lang="ja"))
    check_rules(zh_cues + ja_cues, fm)
    assert "".join(line for c in zh_cues for line in c.lines) == zh
    assert "".join(line for c in ja_cues for line in c.lines) == ja
    assert all(c.language == "ja" for c in ja_cues) and zh_cues[0].language == "zh"
    for c in ja_cues:
        for line in c.lines:
            assert " " not in line and line[0] not in "。、，"
    assert len(ja_cues) == math.ceil(len(ja) / 20), "no more cues than the text needs"


def test_arabic_text_keeps_its_order_and_round_trips() -> None:
    """Right-to-left Arabic stays in logical order, unchanged, through SRT and WebVTT parsers."""
    text = "مرحبا بكم في هذا البث المباشر، نتمنى لكم مشاهدة ممتعة ومفيدة مع أطيب التحيات من فريقنا."
    fm = CaptionFormatter(max_cue_s=5.0)
    cues = fm.feed(final_of(timed([" " + w for w in text.split()], step=0.45), lang="ar"))
    check_rules(cues, fm)
    assert len(cues) >= 2
    assert " ".join(line for c in cues for line in c.lines) == text
    parsed = list(srt.parse("".join(c.to_srt() for c in cues)))
    assert " ".join(p.content.replace("\n", " ") for p in parsed) == text
    vtt = webvtt.from_string(VTT_HEADER + "".join(c.to_vtt() for c in cues))
    assert " ".join(c.text.replace("\n", " ") for c in vtt.captions) == text
    for c in cues:
        c.to_srt().encode("utf-8")  # valid UTF-8 (raises otherwise)


def test_cue_round_trips_through_srt_and_webvtt_readers() -> None:
    """One cue rendered to SRT and WebVTT parses back to the same number, times and lines."""
    cue = Cue(index=7, start=3725.25, end=3727.5, lines=("Caf\u00e9 & co", "<not a tag> -->"))
    (sub,) = list(srt.parse(cue.to_srt()))
    assert sub.index == 7
    assert sub.start.total_seconds() == pytest.approx(3725.25)
    assert sub.end.total_seconds() == pytest.approx(3727.5)
    assert sub.content.split("\n")[0] == "Caf\u00e9 & co"
    (cap,) = webvtt.from_string(VTT_HEADER + cue.to_vtt()).captions
    assert (cap.identifier, cap.start, cap.end) == ("7", "01:02:05.250", "01:02:07.500")
    assert cap.raw_text == "Caf\u00e9 &amp; co\n&lt;not a tag&gt; --&gt;"
    assert cue.to_srt().endswith("\n\n") and cue.to_vtt().endswith("\n\n")


def test_hostile_text_and_times_still_give_valid_cues() -> None:
    """Control characters, arrows, tags, lone surrogates, NaN and reversed times stay parseable."""
    fm = CaptionFormatter()
    nasty = [
        Word(" a\x00b\x1b[31m", 0.0, 0.2),
        Word(" 00:00:01,000 --> 00:00:02,000", 0.2, 0.5),
        Word("\n\n2\n", 0.5, 0.7),
        Word(" <i>x</i>&amp;", 0.9, 0.8),
        Word(" \ud800bad", -5.0, 1.0),
    ]
    cues = fm.feed(final_of(nasty))
    nan_words = (Word(" nan", math.nan, 1.0), Word(" times", 1.0, 2.0))
    cues += fm.feed(FinalCaption(2, "nan times", nan_words, 3.0, 4.0))
    check_rules(cues, fm)
    text = "".join(c.to_srt() for c in cues)
    text.encode("utf-8")
    assert len(list(srt.parse(text))) == len(cues)
    vtt = webvtt.from_string(VTT_HEADER + "".join(c.to_vtt() for c in cues))
    assert len(vtt.captions) == len(cues)
    assert cues[-1].text == "nan times" and cues[-1].start >= 3.0
    with pytest.raises(StreamcapError, match="final 9"):
        fm.feed(FinalCaption(9, "bad", (), math.nan, math.inf))


def test_huge_final_is_formatted_within_the_rules() -> None:
    """A 3000-word final (far past any real utterance) is still split into valid cues."""
    fm = CaptionFormatter()
    words = timed([f" word{k % 17}" for k in range(3000)], step=0.2)
    cues = fm.feed(final_of(words))
    check_rules(cues, fm)
    assert len(words_of(cues)) == 3000


def test_out_of_order_final_never_goes_back_in_time() -> None:
    """A final that starts before the previous cue ended is moved after it."""
    fm = CaptionFormatter()
    a = fm.feed(final_of(timed([" later"], t0=10.0, step=2.0)))
    b = fm.feed(final_of(timed([" earlier"], t0=5.0, step=1.0), uid=2))
    check_rules(a + b, fm)
    assert b[0].start >= a[0].end == 12.0


def test_translation_views() -> None:
    """The translation becomes an English final over the original's words; the original loses it."""
    fin = FinalCaption(
        4,
        "Guten Morgen",
        tuple(timed([" Guten", " Morgen"], t0=2.0)),
        1.5,
        3.5,
        "de",
        translation="Good morning",
    )
    en = translation_final(fin)
    assert en is not None
    assert (en.text, en.language, en.words, en.start) == ("Good morning", "en", (), 2.0)
    assert en.end == pytest.approx(2.6)
    assert original_final(fin).translation is None and original_final(fin).text == "Guten Morgen"
    assert translation_final(original_final(fin)) is None


def test_bad_settings_are_refused_naming_the_key() -> None:
    """Nonsense limits raise ConfigError naming the output key."""
    with pytest.raises(ConfigError, match=r"output\.max_line_chars"):
        CaptionFormatter(max_line_chars=0)
    with pytest.raises(ConfigError, match=r"output\.min_cue_s"):
        CaptionFormatter(min_cue_s=8.0, max_cue_s=7.0)
    with pytest.raises(ConfigError, match=r"output\.max_lines"):
        CaptionFormatter(max_lines=0)


# --- labelled finals (several inputs) --------------------------------------------------------


def _labelled(words: list[Word], uid: int, source: str | None, speaker: str | None = None
              ) -> FinalCaption:
    return dataclasses.replace(final_of(words, uid=uid), source=source, speaker=speaker)


def test_labelled_final_gets_an_srt_prefix_and_a_webvtt_voice() -> None:
    """A labelled final's SRT cues start ``LABEL: `` (speaker over source) and its WebVTT cues
    carry the label as the voice that webvtt-py reads back, with the line limit kept."""
    fm = CaptionFormatter(max_line_chars=32, max_lines=2)
    words = timed([f" word{i}" for i in range(30)], 0.0, 0.25, 0.05)
    cues = fm.feed(_labelled(words, 1, "Others", "Others 2"))
    assert len(cues) >= 2
    subs = list(srt.parse("".join(c.to_srt() for c in cues)))
    assert [s.content.split("\n")[0].split(": ")[0] for s in subs] == ["Others 2"] * len(cues)
    assert all(len(line) <= 32 for s in subs for line in s.content.split("\n"))
    doc = webvtt.from_string(VTT_HEADER + "".join(c.to_vtt() for c in cues))
    assert [c.voice for c in doc.captions] == ["Others 2"] * len(cues)
    assert " ".join(c.text.replace("\n", " ") for c in doc.captions).split() == [
        w.text.strip() for w in words
    ]
    only_source = fm.feed(_labelled(timed([" hi", " there"], 20.0), 2, "You"))
    assert only_source[0].to_srt().split("\n")[2] == "You: hi there"


def test_cues_never_mix_two_speakers() -> None:
    """Finals of two speakers, even overlapping in time, give cues each holding one speaker's
    words only; one speaker's cues never overlap, while the second speaker's cue starts when
    that speaker spoke (not when the first speaker's cue ends)."""
    fm = CaptionFormatter()
    a = _labelled(timed([" alpha", " beta", " gamma"], 0.0), 1, "You")
    b = _labelled(timed([" one", " two", " three"], 0.4), 2, "Others")
    c = _labelled(timed([" delta"], 2.0), 3, "You")
    cues = [cue for f in (a, b, c) for cue in fm.feed(f)]
    check_rules(cues, fm)
    said = {"You": {"alpha", "beta", "gamma", "delta"}, "Others": {"one", "two", "three"}}
    assert [c.start for c in cues if c.speaker == "Others"] == [0.4]
    assert cues[0].end > 0.4  # the two speakers' cues overlap in time
    for cue in cues:
        assert cue.speaker is not None
        assert set(cue.text.split()) <= said[cue.speaker], cue


def test_unlabelled_and_blank_labels_keep_todays_output() -> None:
    """A final without labels, or with a blank label, renders exactly as an unlabelled one; a
    hostile label is cleaned to one line, shortened, and escaped in WebVTT."""
    words = timed([" hello", " world"], 1.0)
    plain = CaptionFormatter().feed(final_of(words))
    blank = CaptionFormatter().feed(_labelled(words, 1, " \n "))
    assert [c.to_srt() for c in blank] == [c.to_srt() for c in plain]
    assert plain[0].speaker is None and "<v" not in plain[0].to_vtt()
    assert plain[0].to_srt().split("\n")[2] == "hello world"
    hostile = CaptionFormatter(max_line_chars=20).feed(
        _labelled(words, 1, "<b>Evil\n--> 00:00:00,000 & co very long name</b>"))
    vtt = hostile[0].to_vtt()
    assert "<b>" not in vtt and "\n-->" not in vtt
    voice = webvtt.from_string(VTT_HEADER + vtt).captions[0].voice
    assert voice is not None and voice.startswith("&lt;b&gt;Evil") and voice.endswith("…")
    for s in srt.parse(hostile[0].to_srt()):
        assert s.content.split(": ")[0].endswith("…")
        assert all(len(line) <= 20 for line in s.content.split("\n"))


def test_translation_keeps_the_label() -> None:
    """The translation view of a labelled final keeps its source and speaker."""
    f = dataclasses.replace(_labelled(timed([" hola"], 0.0), 1, "Others"), translation="hello")
    tr = translation_final(f)
    assert tr is not None and (tr.source, tr.speaker, tr.text) == ("Others", None, "hello")
