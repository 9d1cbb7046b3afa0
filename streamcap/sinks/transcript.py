"""The session transcript the caption server keeps, and its downloads (pure: no I/O, no clock).

:class:`TranscriptLog` keeps the last ``server.transcript_finals`` finals of the session (each
with the ``seq`` the server gave it), in the order they were published. The ``/transcript``
page reads them as JSON (:func:`transcript_json`) and then follows the WebSocket with
``?since=<head>``; the downloads build whole files from them:

* :func:`transcript_srt` and :func:`transcript_vtt`: the finals in order of their start time,
  formatted into cues by a fresh :class:`~.captions.CaptionFormatter` (the default line and
  duration rules), composed with ``srt.compose`` / ``webvtt.WebVTT``.  Labelled finals get the
  ``LABEL:`` prefix (SRT) or a voice span (WebVTT), as the live files do;
* :func:`transcript_text`: one line per final, ``[HH:MM:SS] LABEL: text`` in the wall-clock
  time of the session (the ``tz`` given, default UTC).

``view`` picks what is shown of a final that carries a ``translation``: ``text`` (the
original, the default), ``translation`` (the translation instead) or, for the JSON and the
text file only, ``both`` (the translation under the text).
"""

from __future__ import annotations

import datetime
import json
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Final, Literal

import srt
import webvtt

from ..events import FinalCaption, Session
from .captions import CaptionFormatter, Cue, final_label, translation_final

View = Literal["text", "translation", "both"]
VIEWS: Final = ("text", "translation", "both")

#: the routes of the transcript: the page, its JSON and the three downloads
TRANSCRIPT_ROUTES: Final = (
    "/transcript", "/transcript.json", "/transcript.srt", "/transcript.vtt", "/transcript.txt",
)
CONTENT_TYPES: Final = {
    "/transcript.json": "application/json",
    "/transcript.srt": "application/x-subrip; charset=utf-8",
    "/transcript.vtt": "text/vtt; charset=utf-8",
    "/transcript.txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class Entry:
    """One final of the session and the ``seq`` it was published under."""

    seq: int
    final: FinalCaption


class TranscriptLog:
    """The last ``capacity`` finals of a session (0 keeps none), oldest first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"TranscriptLog: capacity must be >= 0, got {capacity!r}")
        self.capacity = capacity
        self._buf: deque[Entry] = deque()
        self.dropped = 0  # finals that fell out (the transcript no longer starts at the start)
        self.appended = 0  # finals ever appended (a change stamp)

    def __len__(self) -> int:
        return len(self._buf)

    def append(self, seq: int, final: FinalCaption) -> None:
        """Keep ``final``; the oldest one goes when the log is full."""
        self._buf.append(Entry(seq, final))
        self.appended += 1
        while len(self._buf) > self.capacity:
            self._buf.popleft()
            self.dropped += 1

    def clear(self) -> None:
        """Forget every final (a new session starts)."""
        self._buf.clear()
        self.dropped = 0
        self.appended = 0

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._buf)


def _view(final: FinalCaption, view: View) -> FinalCaption:
    """``final`` as shown: the translation instead of the text when asked and present."""
    if view == "translation":
        return translation_final(final) or final
    return final


def _chronological(entries: tuple[Entry, ...]) -> list[FinalCaption]:
    """Finals by start time (two inputs publish in decode order, not speech order)."""
    return [e.final for e in sorted(entries, key=lambda e: (e.final.start, e.seq))]


def transcript_cues(entries: tuple[Entry, ...], view: View = "text") -> list[Cue]:
    """The cues of the whole transcript, numbered from 1."""
    formatter = CaptionFormatter()
    cues: list[Cue] = []
    for final in _chronological(entries):
        cues.extend(formatter.feed(_view(final, view)))
    return cues


def transcript_srt(entries: tuple[Entry, ...], view: View = "text") -> str:
    """The transcript as one SRT document (empty text when there is no caption)."""
    return str(srt.compose([c.to_subtitle() for c in transcript_cues(entries, view)]))


def transcript_vtt(entries: tuple[Entry, ...], view: View = "text") -> str:
    """The transcript as one WebVTT document (the header alone when there is no caption)."""
    doc = webvtt.WebVTT(captions=[c.to_caption() for c in transcript_cues(entries, view)])
    return str(doc.content)


def _clock(session: Session, t: float, tz: datetime.tzinfo) -> str:
    try:
        when = datetime.datetime.fromtimestamp(session.epoch + t, tz)
    except (OverflowError, OSError, ValueError):
        return "--:--:--"
    return f"{when:%H:%M:%S}"


def transcript_text(
    entries: tuple[Entry, ...],
    session: Session,
    view: View = "text",
    tz: datetime.tzinfo = datetime.timezone.utc,
    dropped: int = 0,
) -> str:
    """The transcript as plain text: a header line, then ``[HH:MM:SS] LABEL: text`` per final."""
    start = _clock(session, 0.0, tz)
    lines = [f"streamcap transcript, session {session.id}, started {start} ({tz})"]
    if dropped:
        lines.append(f"[{dropped} earlier finals are no longer kept]")
    for final in _chronological(entries):
        shown = _view(final, view)
        text = " ".join(shown.text.split())
        if not text:
            continue
        label = final_label(final)
        who = f"{label}: " if label is not None else ""
        lines.append(f"[{_clock(session, final.start, tz)}] {who}{text}")
        if view == "both" and final.translation is not None:
            lines.append(f"    → {' '.join(final.translation.split())}")
    return "\n".join(lines) + "\n"


def transcript_json(
    entries: tuple[Entry, ...], session: Session, head: int, dropped: int = 0
) -> str:
    """What the ``/transcript`` page loads first: the session, the head ``seq`` to follow the
    socket from, and the kept finals (without their words)."""
    finals: list[dict[str, Any]] = []
    for e in entries:
        d = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in e.final.to_dict().items()
            if k != "words"
        }
        d["seq"] = e.seq
        finals.append(d)
    body = {
        "v": 1,
        "session": session.id,
        "session_start": session.epoch,
        "head": head,
        "dropped": dropped,
        "finals": finals,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def transcript_document(
    route: str,
    entries: tuple[Entry, ...],
    session: Session,
    head: int,
    view: View = "text",
    dropped: int = 0,
    tz: datetime.tzinfo = datetime.timezone.utc,
) -> str:
    """The body of a transcript route other than the page (``.json``, ``.srt``, ``.vtt``,
    ``.txt``); ``both`` shows the text in subtitles."""
    if route == "/transcript.json":
        return transcript_json(entries, session, head, dropped)
    sub_view: View = "text" if view == "both" else view
    if route == "/transcript.srt":
        return transcript_srt(entries, sub_view)
    if route == "/transcript.vtt":
        return transcript_vtt(entries, sub_view)
    if route == "/transcript.txt":
        return transcript_text(entries, session, view, tz, dropped)
    raise ValueError(f"not a transcript document route: {route!r}")


def download_name(session: Session, route: str) -> str:
    """The file name offered for a download route (``transcript-<session>.srt``)."""
    ext = route.rsplit(".", 1)[-1]
    safe = "".join(ch for ch in session.id if ch.isalnum() or ch in "-_")[:64] or "session"
    return f"transcript-{safe}.{ext}"
