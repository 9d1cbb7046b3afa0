"""Validation of a transcription request and the API's error shape (pure)."""

from __future__ import annotations

import json

import pytest

from streamcap.api.form import Part
from streamcap.api.request import ApiError, parse_transcription

LANGS = ("en", "de", "fr")
FILE = Part("file", b"RIFF....", filename="a.wav")
MODEL = Part("model", b"whisper-1")


def parse(*parts: Part, multilingual: bool = False):  # type: ignore[no-untyped-def]
    return parse_transcription(list(parts), models=("tiny.en", "whisper-1"), languages=LANGS,
                               multilingual=multilingual)


def test_a_minimal_request_gets_the_defaults() -> None:
    """file + model alone: json, no language, no prompt, segment granularity."""
    req = parse(FILE, MODEL)
    assert (req.audio, req.filename, req.model) == (b"RIFF....", "a.wav", "whisper-1")
    assert req.response_format == "json" and req.language is None and req.prompt == ""
    assert req.granularities == ("segment",)


def test_every_field_is_read() -> None:
    """Language, prompt, format, temperature and both granularities are taken as given."""
    req = parse(FILE, Part("model", b"tiny.en"), Part("language", b"EN"),
                Part("prompt", b" Shakespeare. "), Part("response_format", b"verbose_json"),
                Part("temperature", b"0.2"), Part("timestamp_granularities[]", b"word"),
                Part("timestamp_granularities[]", b"segment"))
    assert (req.language, req.prompt, req.response_format) == ("en", "Shakespeare.",
                                                               "verbose_json")
    assert req.temperature == 0.2 and req.granularities == ("word", "segment")


@pytest.mark.parametrize("parts, status, param, says", [
    ((MODEL,), 400, "file", "missing"),
    ((Part("file", b"x"), MODEL), 400, "file", "text field"),
    ((Part("file", b"", filename="e.wav"), MODEL), 400, "file", "is empty"),
    ((FILE, FILE, MODEL), 400, "file", "2 times"),
    ((FILE,), 400, "model", "missing"),
    ((FILE, Part("model", b"gpt-4o")), 404, "model", "not loaded here"),
    ((FILE, MODEL, Part("response_format", b"docx")), 400, "response_format", "docx"),
    ((FILE, MODEL, Part("language", b"xx")), 400, "language", "ISO-639-1"),
    ((FILE, MODEL, Part("language", b"de")), 400, "language", "English-only"),
    ((FILE, MODEL, Part("temperature", b"hot")), 400, "temperature", "0..1"),
    ((FILE, MODEL, Part("temperature", b"nan")), 400, "temperature", "0..1"),
    ((FILE, MODEL, Part("temperature", b"2")), 400, "temperature", "0..1"),
    ((FILE, MODEL, Part("stream", b"true")), 400, "stream", "not supported"),
    ((FILE, MODEL, Part("timestamp_granularities[]", b"word")), 400,
     "timestamp_granularities", "verbose_json"),
    ((FILE, MODEL, Part("response_format", b"verbose_json"),
      Part("timestamp_granularities[]", b"char")), 400, "timestamp_granularities", "char"),
    ((FILE, MODEL, Part("colour", b"red")), 400, "colour", "unknown field"),
    ((FILE, MODEL, Part("prompt", b"\xff\xfe")), 400, "prompt", "UTF-8"),
    ((FILE, MODEL, Part("prompt", b"a", filename="p.txt")), 400, "prompt", "got a file"),
])
def test_bad_fields_are_refused_naming_the_field(parts: tuple[Part, ...], status: int,
                                                 param: str, says: str) -> None:
    """Each bad or missing field gets its status, its name as ``param`` and a one-line
    message."""
    with pytest.raises(ApiError) as err:
        parse(*parts)
    e = err.value
    assert (e.status, e.param) == (status, param) and says in e.message
    assert "\n" not in e.message


def test_a_multilingual_model_takes_other_languages() -> None:
    """German is fine for a multilingual model."""
    assert parse(FILE, MODEL, Part("language", b"de"), multilingual=True).language == "de"


def test_errors_have_openais_shape() -> None:
    """The body is {"error": {message, type, param, code}}; 401 asks for a Bearer token and
    429 says when to retry."""
    resp = ApiError(401, "wrong token", code="invalid_api_key").response()
    assert resp.status == 401 and ("WWW-Authenticate", 'Bearer realm="streamcap"') in resp.headers
    assert json.loads(resp.body) == {"error": {"message": "wrong token",
                                               "type": "invalid_request_error", "param": None,
                                               "code": "invalid_api_key"}}
    assert ("Retry-After", "5") in ApiError(429, "busy").response().headers
