"""Tests for the pure session transcript: the kept finals, their downloads and the route rules."""

from __future__ import annotations

import datetime
import itertools
import json

import pytest
import srt
import webvtt
from support.events import final

from streamcap.config import ServerConfig
from streamcap.events import FinalCaption, Session
from streamcap.sinks.transcript import (
    TRANSCRIPT_ROUTES,
    TranscriptLog,
    download_name,
    transcript_document,
    transcript_json,
    transcript_srt,
    transcript_text,
    transcript_vtt,
)
from streamcap.sinks.ws_protocol import RequestRejected, check_request

SESSION = Session("sess01", 1_700_000_000.0)  # 2023-11-14 22:13:20 UTC


def meeting() -> TranscriptLog:
    """Finals of two inputs, published in decode order (uid 2 of "Others" before uid 1)."""
    log = TranscriptLog(100)
    log.append(3, final(2, "the others answer here", source="Others", speaker="Others 2",
                        translation="les autres"))
    log.append(5, final(1, "you open the meeting", source="You"))
    log.append(9, final(3, "and you close it", source="You"))
    return log


def test_log_keeps_the_last_finals_and_counts_the_dropped() -> None:
    """The log keeps at most its capacity, oldest out first, and counts what fell out."""
    log = TranscriptLog(2)
    for seq in range(1, 6):
        log.append(seq, final(seq))
    assert [e.seq for e in log.entries] == [4, 5] and log.dropped == 3 and log.appended == 5
    none = TranscriptLog(0)
    none.append(1, final(1))
    assert len(none) == 0 and none.dropped == 1
    log.clear()
    assert len(log) == 0 and log.dropped == 0
    with pytest.raises(ValueError, match="capacity"):
        TranscriptLog(-1)


def test_srt_download_is_chronological_and_labelled() -> None:
    """The SRT download parses with ``srt``, in start-time order, each cue with its label."""
    subs = list(srt.parse(transcript_srt(meeting().entries)))
    assert [s.index for s in subs] == list(range(1, len(subs) + 1))
    assert [s.content for s in subs] == [
        "You: you open the meeting", "Others 2: the others answer here", "You: and you close it"]
    assert all(a.end <= b.start for a, b in itertools.pairwise(subs))
    shown = list(srt.parse(transcript_srt(meeting().entries, "translation")))
    assert shown[1].content == "Others 2: les autres"


def test_vtt_download_carries_voices() -> None:
    """The WebVTT download parses with webvtt-py and every cue's voice is its speaker."""
    doc = webvtt.from_string(transcript_vtt(meeting().entries))
    assert [(c.voice, c.text) for c in doc.captions] == [
        ("You", "you open the meeting"), ("Others 2", "the others answer here"),
        ("You", "and you close it")]


def test_text_download_has_clock_times_labels_and_translations() -> None:
    """The text download is one ``[HH:MM:SS] LABEL: text`` line per final in wall-clock time,
    with the translation under it when asked."""
    text = transcript_text(meeting().entries, SESSION, "both", datetime.timezone.utc)
    lines = text.splitlines()
    assert lines[0] == "streamcap transcript, session sess01, started 22:13:20 (UTC)"
    assert lines[1:] == [
        "[22:13:25] You: you open the meeting",
        "[22:13:30] Others 2: the others answer here",
        "    → les autres",
        "[22:13:35] You: and you close it",
    ]
    only = transcript_text(meeting().entries, SESSION, "translation", datetime.timezone.utc,
                           dropped=4)
    assert "[4 earlier finals are no longer kept]" in only
    assert "Others 2: les autres" in only and "answer here" not in only


def test_unlabelled_and_empty_transcripts() -> None:
    """Unlabelled finals have no prefix or voice; an empty log gives valid empty documents;
    blank finals and hostile text are handled."""
    log = TranscriptLog(10)
    log.append(1, final(1, "plain words"))
    log.append(2, FinalCaption(2, "   ", (), 12.0, 13.0))
    log.append(3, final(4, "a --> b <c> & d"))
    subs = list(srt.parse(transcript_srt(log.entries)))
    assert [s.content for s in subs] == ["plain words", "a → b <c> & d"]
    doc = webvtt.from_string(transcript_vtt(log.entries))
    assert [(c.voice, c.text) for c in doc.captions] == [
        (None, "plain words"), (None, "a --&gt; b &lt;c&gt; &amp; d")]
    assert transcript_text(log.entries, SESSION).splitlines()[1] == "[22:13:25] plain words"
    empty = TranscriptLog(10)
    assert transcript_srt(empty.entries) == ""
    assert webvtt.from_string(transcript_vtt(empty.entries)).captions == []
    assert len(transcript_text(empty.entries, SESSION).splitlines()) == 1


def test_json_has_the_session_head_and_finals_without_words() -> None:
    """The JSON the page loads names the session and the head seq, and lists every kept final
    with its seq and labels but not its words."""
    d = json.loads(transcript_json(meeting().entries, SESSION, 42))
    assert (d["v"], d["session"], d["session_start"], d["head"], d["dropped"]) == (
        1, "sess01", 1_700_000_000.0, 42, 0)
    assert [(f["seq"], f.get("speaker"), f["text"]) for f in d["finals"]] == [
        (3, "Others 2", "the others answer here"), (5, "You", "you open the meeting"),
        (9, "You", "and you close it")]
    assert all("words" not in f for f in d["finals"])
    assert d["finals"][0]["translation"] == "les autres"
    nan = TranscriptLog(1)
    nan.append(1, FinalCaption(1, "x", (), float("nan"), float("inf")))
    assert json.loads(transcript_json(nan.entries, SESSION, 1))["finals"][0]["start"] is None
    assert json.loads(transcript_json((), SESSION, 0, dropped=7))["dropped"] == 7


def test_documents_by_route() -> None:
    """Each document route renders its format (``both`` gives the text in subtitles); another
    route is an error naming it."""
    entries = meeting().entries
    for route, probe in [("/transcript.json", '"head":7'), ("/transcript.srt", "You: you open"),
                         ("/transcript.vtt", "<v You>you open"), ("/transcript.txt", "] You: ")]:
        assert probe in transcript_document(route, entries, SESSION, 7, "both")
    assert "les autres" not in transcript_document("/transcript.srt", entries, SESSION, 7, "both")
    with pytest.raises(ValueError, match=r"/transcript\.pdf"):
        transcript_document("/transcript.pdf", entries, SESSION, 7)


def test_download_names_are_safe() -> None:
    """Download file names carry the session id, cleaned."""
    assert download_name(SESSION, "/transcript.srt") == "transcript-sess01.srt"
    assert download_name(Session('a"/\\b', 0.0), "/transcript.vtt") == "transcript-ab.vtt"


CFG = ServerConfig(host="127.0.0.1", port=8765, token="s3cret")


def _check(path: str, origin: str | None = None, auth: str | None = None) -> str:
    return check_request(path, host="127.0.0.1:8765", origin=origin, authorization=auth,
                         cfg=CFG).view


def test_transcript_routes_need_the_token_and_a_good_origin() -> None:
    """Every transcript route follows the socket's rules: the token (query or header) and,
    from a browser, this server's own origin."""
    for route in TRANSCRIPT_ROUTES:
        assert _check(f"{route}?token=s3cret") == "text"
        assert _check(route, origin="http://127.0.0.1:8765", auth="Bearer s3cret") == "text"
        with pytest.raises(RequestRejected) as exc:
            _check(route)
        assert exc.value.status == 401
        with pytest.raises(RequestRejected) as exc:
            _check(f"{route}?token=wrong")
        assert exc.value.status == 401
        with pytest.raises(RequestRejected) as exc:
            _check(f"{route}?token=s3cret", origin="http://evil.example")
        assert exc.value.status == 403


@pytest.mark.parametrize(("path", "needle"), [
    ("/transcript?token=s3cret&since=1", "unknown query parameter 'since'"),
    ("/transcript?token=s3cret&show=all", "show: expected one of text, translation, both"),
    ("/transcript.srt?token=s3cret&show=both", "'both' is for the page and .txt"),
    ("/transcript.vtt?token=s3cret&show=both", "'both' is for the page and .txt"),
    ("/transcript?token=s3cret&labels=no", "labels: expected 0 or 1"),
    ("/transcript?token=s3cret&token=s3cret", "given twice"),
    ("/transcript?" + "&".join(f"x{i}=1" for i in range(9)), "too many query parameters"),
    ("/transcript.pdf?token=s3cret", "no such path"),
])
def test_transcript_routes_refuse_bad_queries(path: str, needle: str) -> None:
    """Bad transcript queries are refused with one line naming the culprit."""
    with pytest.raises(RequestRejected) as exc:
        _check(path)
    assert exc.value.status in (400, 404) and needle in exc.value.message


def test_transcript_views() -> None:
    """``show`` picks the view; ``both`` is allowed on the page, its JSON and the text file."""
    assert _check("/transcript?token=s3cret&show=both&labels=0") == "both"
    assert _check("/transcript.txt?token=s3cret&show=both") == "both"
    assert _check("/transcript.srt?token=s3cret&show=translation") == "translation"
