"""The API's answers and errors, and the validation of a transcription request (pure)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final, Literal

from ..errors import ProtocolError


@dataclass(frozen=True)
class Part:
    """One form field: its ``name``, the ``filename`` for a file, and the raw ``data``."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None


ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
RESPONSE_FORMATS: Final = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES: Final = ("segment", "word")
# Fields OpenAI's endpoint takes that this one reads (``temperature`` is checked, then ignored:
# every window gets one deterministic final-quality decode).
FIELDS: Final = ("file", "model", "language", "prompt", "response_format", "temperature",
                 "timestamp_granularities[]", "timestamp_granularities", "stream")
MODEL_ALIAS: Final = "whisper-1"  # what most OpenAI clients send; it names the loaded model


class ApiError(ProtocolError):
    """A request refused with ``status`` and OpenAI's error shape (a one-line ``message``)."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, type: str = "invalid_request_error") -> None:
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type
        super().__init__(f"{status}: {message}")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}

    def response(self) -> ApiResponse:
        extra: tuple[tuple[str, str], ...] = ()
        if self.status == 401:
            extra = (("WWW-Authenticate", 'Bearer realm="streamcap"'),)
        elif self.status in (429, 503):
            extra = (("Retry-After", "5"),)
        return ApiResponse.json(self.status, self.body(), extra)


@dataclass(frozen=True)
class ApiResponse:
    """An HTTP answer, independent of the server that sends it."""

    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def reason(self) -> str:
        return HTTPStatus(self.status).phrase

    @classmethod
    def json(cls, status: int, obj: Any, headers: tuple[tuple[str, str], ...] = ()
             ) -> ApiResponse:
        body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        return cls(status, body, "application/json", headers)

    @classmethod
    def text(cls, body: str, content_type: str = "text/plain; charset=utf-8") -> ApiResponse:
        return cls(200, body.encode("utf-8"), content_type)


@dataclass(frozen=True)
class TranscriptionRequest:
    """A validated ``POST /v1/audio/transcriptions``."""

    audio: bytes
    filename: str
    model: str
    language: str | None = None
    prompt: str = ""
    response_format: ResponseFormat = "json"
    temperature: float = 0.0
    granularities: tuple[str, ...] = ("segment",)


def _one(fields: dict[str, list[Part]], name: str) -> str | None:
    parts = fields.get(name)
    if not parts:
        return None
    if len(parts) > 1:
        raise ApiError(400, f"{name}: given {len(parts)} times", param=name)
    if parts[0].filename is not None:
        raise ApiError(400, f"{name}: expected a text field, got a file", param=name)
    try:
        return parts[0].data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, f"{name}: not valid UTF-8", param=name) from None


def parse_transcription(
    parts: Sequence[Part],
    *,
    models: Iterable[str],
    languages: Iterable[str],
    multilingual: bool,
) -> TranscriptionRequest:
    """Check the form of a transcription request; raises :class:`ApiError` naming the field.

    ``models`` are the names the loaded model answers to; ``languages`` the language codes the
    model knows; an English-only model (``multilingual`` False) refuses any other language.
    """
    fields: dict[str, list[Part]] = {}
    for p in parts:
        if p.name not in FIELDS:
            raise ApiError(400, f"unknown field {p.name[:40]!r} (known: file, model, language, "
                           "prompt, response_format, temperature, timestamp_granularities[])",
                           param=p.name[:40], code="unknown_parameter")
        fields.setdefault(p.name, []).append(p)
    files = fields.get("file", [])
    if not files:
        raise ApiError(400, "file: missing (send the audio as the multipart field 'file')",
                       param="file")
    if len(files) > 1:
        raise ApiError(400, f"file: given {len(files)} times", param="file")
    upload = files[0]
    if upload.filename is None:
        raise ApiError(400, "file: expected a file upload, got a text field", param="file")
    if not upload.data:
        raise ApiError(400, f"file: {upload.filename[:60]!r} is empty", param="file",
                       code="invalid_file")
    model = _one(fields, "model")
    known = list(models)
    if not model:
        raise ApiError(400, "model: missing (try " + " or ".join(map(repr, known)) + ")",
                       param="model")
    if model not in known:
        raise ApiError(404, f"model: {model[:60]!r} is not loaded here (try "
                       + " or ".join(map(repr, known)) + ")", param="model",
                       code="model_not_found")
    fmt = _one(fields, "response_format") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise ApiError(400, f"response_format: {fmt[:40]!r} is not one of "
                       f"{', '.join(RESPONSE_FORMATS)}", param="response_format")
    language = _one(fields, "language") or None
    if language is not None:
        language = language.strip().lower()
        if language not in set(languages):
            raise ApiError(400, f"language: {language[:20]!r} is not an ISO-639-1 code Whisper "
                           "knows", param="language")
        if not multilingual and language != "en":
            raise ApiError(400, f"language: {language!r} asked of an English-only model",
                           param="language")
    temp_raw = _one(fields, "temperature")
    temperature = 0.0
    if temp_raw is not None and temp_raw.strip():
        try:
            temperature = float(temp_raw)
        except ValueError:
            temperature = math.nan
        if not 0.0 <= temperature <= 1.0:
            raise ApiError(400, f"temperature: expected a number 0..1, got {temp_raw[:20]!r}",
                           param="temperature")
    stream = _one(fields, "stream")
    if stream is not None and stream.strip().lower() not in ("", "false", "0"):
        raise ApiError(400, "stream: streamed transcriptions are not supported here",
                       param="stream")
    grans = [p.data.decode("utf-8", "replace")
             for key in ("timestamp_granularities[]", "timestamp_granularities")
             for p in fields.get(key, [])]
    for g in grans:
        if g not in GRANULARITIES:
            raise ApiError(400, f"timestamp_granularities: {g[:20]!r} is not 'segment' or "
                           "'word'", param="timestamp_granularities")
    if grans and fmt != "verbose_json":
        raise ApiError(400, "timestamp_granularities: needs response_format 'verbose_json'",
                       param="timestamp_granularities")
    return TranscriptionRequest(
        audio=upload.data,
        filename=upload.filename,
        model=model,
        language=language,
        prompt=(_one(fields, "prompt") or "").strip(),
        response_format=fmt,  # type: ignore[arg-type]  # checked against RESPONSE_FORMATS
        temperature=temperature,
        granularities=tuple(dict.fromkeys(grans)) or ("segment",),
    )


def models_body(model: str, created: int) -> dict[str, Any]:
    """The ``GET /v1/models`` answer: the one loaded model."""
    return {"object": "list", "data": [
        {"id": model, "object": "model", "created": created, "owned_by": "streamcap"},
    ]}
