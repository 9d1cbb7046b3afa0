"""A transcript in each ``response_format`` of the API (pure)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import srt
import webvtt

from .request import ApiResponse, ResponseFormat
from .transcript import Transcript


def _vtt_time(t: float) -> str:
    ms = max(0, round(t * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def to_srt(t: Transcript) -> str:
    return str(srt.compose([
        srt.Subtitle(i + 1, timedelta(seconds=s.start), timedelta(seconds=s.end), s.text)
        for i, s in enumerate(t.segments)
    ], reindex=False))


def to_vtt(t: Transcript) -> str:
    doc = webvtt.WebVTT(captions=[
        webvtt.Caption(_vtt_time(s.start), _vtt_time(s.end), s.text) for s in t.segments
    ])
    return str(doc.content)


def to_verbose(t: Transcript, granularities: tuple[str, ...]) -> dict[str, Any]:
    """OpenAI's ``verbose_json``: segments (unless only words were asked for) and words."""
    out: dict[str, Any] = {
        "task": "transcribe",
        "language": t.language,
        "duration": round(t.duration, 3),
        "text": t.text,
    }
    if "segment" in granularities:
        out["segments"] = [{
            "id": s.id,
            "seek": 0,
            "start": round(s.start, 3),
            "end": round(s.end, 3),
            "text": s.text,
            "tokens": [],
            "temperature": 0.0,
            "avg_logprob": round(s.avg_logprob, 4),
            "compression_ratio": round(s.compression_ratio, 4),
            "no_speech_prob": round(s.no_speech_prob, 4),
        } for s in t.segments]
    if "word" in granularities:
        out["words"] = [{"word": w.text.strip(), "start": round(w.start, 3),
                         "end": round(w.end, 3)} for w in t.words]
    return out


def render(t: Transcript, fmt: ResponseFormat, granularities: tuple[str, ...] = ("segment",)
           ) -> ApiResponse:
    """The HTTP answer carrying ``t`` as ``fmt``."""
    if fmt == "json":
        return ApiResponse.json(200, {"text": t.text})
    if fmt == "verbose_json":
        return ApiResponse.json(200, to_verbose(t, granularities))
    if fmt == "text":
        return ApiResponse.text(t.text + "\n")
    if fmt == "srt":
        return ApiResponse.text(to_srt(t), "application/x-subrip; charset=utf-8")
    return ApiResponse.text(to_vtt(t), "text/vtt; charset=utf-8")
