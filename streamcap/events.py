"""Typed events that flow between pipeline stages, each owning its JSON form.

Times are *stream seconds*: sample counts divided by 16000 since the session started. A
:class:`Session` carries the one wall-clock epoch that maps stream time to wall time.

The JSON form of an event is a flat object with a ``type`` field (``partial``, ``final``,
``vad``, ``status``, ``error``, ``hello``); :func:`event_from_json` turns it back. The WebSocket
server adds the envelope fields ``v``, ``seq`` and ``session`` (see ``docs/protocol.md``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SAMPLE_RATE = 16000


def _r(x: float) -> float:
    """Round a time or probability for the wire (millisecond resolution is plenty)."""
    return round(float(x), 3)


@dataclass(frozen=True)
class Session:
    """One capture session: an id and the wall-clock time of stream time zero."""

    id: str
    epoch: float

    @staticmethod
    def new(epoch: float) -> Session:
        return Session(id=uuid.uuid4().hex[:12], epoch=epoch)


@dataclass(frozen=True)
class Word:
    """One recognised word with stream-time bounds."""

    text: str
    start: float
    end: float
    probability: float = 1.0
    stable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "start": _r(self.start),
            "end": _r(self.end),
            "probability": _r(self.probability),
            "stable": self.stable,
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Word:
        return Word(
            text=str(d["text"]),
            start=float(d["start"]),
            end=float(d["end"]),
            probability=float(d.get("probability", 1.0)),
            stable=bool(d.get("stable", True)),
        )


def _who(source: str | None, speaker: str | None) -> dict[str, str]:
    """The optional ``source``/``speaker`` fields (present only with labelled inputs)."""
    d: dict[str, str] = {}
    if source is not None:
        d["source"] = source
    if speaker is not None:
        d["speaker"] = speaker
    return d


def _opt_str(d: dict[str, Any], key: str) -> str | None:
    v = d.get(key)
    return None if v is None else str(v)


def join_words(words: tuple[Word, ...] | list[Word]) -> str:
    """Join Whisper word pieces (which carry their own leading spaces) into clean text."""
    return "".join(w.text for w in words).strip()


class _JsonMixin:
    type: str

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        for k, v in asdict(self).items():  # type: ignore[call-overload]
            if k == "type":
                continue
            d[k] = v
        return d

    def to_json(self) -> str:
        return json.dumps(
            self.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )


@dataclass(frozen=True)
class PartialCaption(_JsonMixin):
    """A still-changing caption: a stable prefix that will never change, and an unstable tail."""

    utterance_id: int
    revision: int
    words: tuple[Word, ...]
    start: float
    end: float
    language: str = "en"
    language_probability: float = 1.0
    source: str | None = None  # the input's label ("You", "Others") with several inputs
    speaker: str | None = None  # who spoke: the source label, or a finer turn label
    type: Literal["partial"] = field(default="partial", init=False)

    @property
    def stable_text(self) -> str:
        return join_words([w for w in self.words if w.stable])

    @property
    def unstable_text(self) -> str:
        return join_words([w for w in self.words if not w.stable])

    @property
    def text(self) -> str:
        return join_words(self.words)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "utterance_id": self.utterance_id,
            "revision": self.revision,
            "stable_text": self.stable_text,
            "unstable_text": self.unstable_text,
            "words": [w.to_dict() for w in self.words],
            "start": _r(self.start),
            "end": _r(self.end),
            "language": self.language,
            "language_probability": _r(self.language_probability),
        } | _who(self.source, self.speaker)


@dataclass(frozen=True)
class FinalCaption(_JsonMixin):
    """A finished caption for one utterance: never retracted.

    ``translation`` holds the English text when the task is ``translate`` and the original
    language text was decoded too (then ``text`` is the original); otherwise it is ``None``.
    """

    utterance_id: int
    text: str
    words: tuple[Word, ...]
    start: float
    end: float
    language: str = "en"
    language_probability: float = 1.0
    translation: str | None = None
    source: str | None = None  # the input's label ("You", "Others") with several inputs
    speaker: str | None = None  # who spoke: the source label, or a finer turn label
    type: Literal["final"] = field(default="final", init=False)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "type": self.type,
            "utterance_id": self.utterance_id,
            "text": self.text,
            "words": [w.to_dict() for w in self.words],
            "start": _r(self.start),
            "end": _r(self.end),
            "language": self.language,
            "language_probability": _r(self.language_probability),
        }
        if self.translation is not None:
            d["translation"] = self.translation
        return d | _who(self.source, self.speaker)


@dataclass(frozen=True)
class VadEvent(_JsonMixin):
    """Speech started or ended at a stream time."""

    state: Literal["speech_start", "speech_end"]
    time: float
    utterance_id: int
    source: str | None = None
    type: Literal["vad"] = field(default="vad", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "state": self.state,
            "time": _r(self.time),
            "utterance_id": self.utterance_id,
        } | _who(self.source, None)


@dataclass(frozen=True)
class StatusEvent(_JsonMixin):
    """Health of the live pipeline, sent periodically by the daemon."""

    lag: float
    rtf: float
    device_state: str
    dropped_frames: int
    clients: int = 0
    # With several inputs: one {name, device_state, lag, dropped_frames} object per input.
    inputs: tuple[dict[str, Any], ...] = ()
    type: Literal["status"] = field(default="status", init=False)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "lag": self.lag, "rtf": self.rtf,
                             "device_state": self.device_state,
                             "dropped_frames": self.dropped_frames, "clients": self.clients}
        if self.inputs:
            d["inputs"] = [dict(x) for x in self.inputs]
        return d


@dataclass(frozen=True)
class ErrorEvent(_JsonMixin):
    """Something went wrong that clients should know about (the daemon keeps running)."""

    code: str
    message: str
    type: Literal["error"] = field(default="error", init=False)


Event = PartialCaption | FinalCaption | VadEvent | StatusEvent | ErrorEvent
CaptionEvent = PartialCaption | FinalCaption


def event_from_dict(d: dict[str, Any]) -> Event:
    """Rebuild an event from its JSON object (envelope fields are ignored)."""
    t = d.get("type")
    if t == "partial":
        return PartialCaption(
            utterance_id=int(d["utterance_id"]),
            revision=int(d["revision"]),
            words=tuple(Word.from_dict(w) for w in d["words"]),
            start=float(d["start"]),
            end=float(d["end"]),
            language=str(d.get("language", "en")),
            language_probability=float(d.get("language_probability", 1.0)),
            source=_opt_str(d, "source"),
            speaker=_opt_str(d, "speaker"),
        )
    if t == "final":
        tr = d.get("translation")
        return FinalCaption(
            utterance_id=int(d["utterance_id"]),
            text=str(d["text"]),
            words=tuple(Word.from_dict(w) for w in d["words"]),
            start=float(d["start"]),
            end=float(d["end"]),
            language=str(d.get("language", "en")),
            language_probability=float(d.get("language_probability", 1.0)),
            translation=None if tr is None else str(tr),
            source=_opt_str(d, "source"),
            speaker=_opt_str(d, "speaker"),
        )
    if t == "vad":
        state = d["state"]
        if state not in ("speech_start", "speech_end"):
            raise ValueError(f"vad.state: unknown value {state!r}")
        return VadEvent(state=state, time=float(d["time"]), utterance_id=int(d["utterance_id"]),
                        source=_opt_str(d, "source"))
    if t == "status":
        return StatusEvent(
            lag=float(d["lag"]),
            rtf=float(d["rtf"]),
            device_state=str(d["device_state"]),
            dropped_frames=int(d["dropped_frames"]),
            clients=int(d.get("clients", 0)),
            inputs=tuple(dict(x) for x in d.get("inputs", ()) if isinstance(x, dict)),
        )
    if t == "error":
        return ErrorEvent(code=str(d["code"]), message=str(d["message"]))
    raise ValueError(f"type: unknown event type {t!r}")


def event_from_json(text: str) -> Event:
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError("event JSON must be an object")
    return event_from_dict(obj)
