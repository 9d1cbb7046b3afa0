"""The API service's admission and request-head rules (no sockets, no model)."""

from __future__ import annotations

import json

import pytest

from streamcap.api.request import ApiError
from streamcap.api.service import ApiService, is_api_path
from streamcap.config import from_dict


def service(**server: object) -> ApiService:
    cfg = from_dict({"server": {"api_jobs": 2, **server}})
    return ApiService(cfg.server, cfg.vad, "tiny.en", lambda: None, local_names=("box",))


def test_only_v1_paths_belong_to_the_api() -> None:
    """/v1 and below are the API's; the caption routes are not."""
    assert is_api_path("/v1/models") and is_api_path("/v1/audio/transcriptions?x=1")
    assert not is_api_path("/") and not is_api_path("/v10") and not is_api_path("/metrics")


def test_admission_is_bounded_and_released() -> None:
    """Up to server.api_jobs transcriptions at once; the next gets 429, a release frees one;
    a stopping server refuses with 503 until it is started again."""
    api = service()
    a, _ = api.admit(), api.admit()
    with pytest.raises(ApiError) as err:
        api.admit()
    assert err.value.status == 429 and "server.api_jobs" in err.value.message
    assert err.value.type == "rate_limit_error"
    api.release(a)
    api.admit()
    api.shutdown()
    with pytest.raises(ApiError) as err:
        api.admit()
    assert err.value.status == 503
    api.reopen()
    with pytest.raises(ApiError) as err:
        api.admit()
    assert err.value.status == 429  # started again: the two places are still taken


CHECKS = [
    ("POST", "/v1/audio/transcriptions", "127.0.0.1:8765", None, "Bearer t", None),
    ("GET", "/v1/models", "localhost", "http://localhost", "Bearer t", None),
    ("GET", "/v1/models", "box:1", None, "bearer t", None),
    ("GET", "/v1/audio/transcriptions", "127.0.0.1", None, "Bearer t", 405),
    ("POST", "/v1/models", "127.0.0.1", None, "Bearer t", 405),
    ("POST", "/v1/chat/completions", "127.0.0.1", None, "Bearer t", 404),
    ("POST", "/v1/audio/transcriptions", None, None, "Bearer t", 400),
    ("POST", "/v1/audio/transcriptions", "evil.example", None, "Bearer t", 403),
    ("POST", "/v1/audio/transcriptions", "127.0.0.1", "http://evil.example", "Bearer t", 403),
    ("POST", "/v1/audio/transcriptions", "127.0.0.1", None, None, 401),
    ("POST", "/v1/audio/transcriptions", "127.0.0.1", None, "Bearer x", 401),
    ("POST", "/v1/audio/transcriptions", "127.0.0.1", None, "Basic dDp0", 401),
]


@pytest.mark.parametrize("method, target, host, origin, auth, status", CHECKS)
def test_heads_follow_the_sockets_rules(method: str, target: str, host: str | None,
                                        origin: str | None, auth: str | None,
                                        status: int | None) -> None:
    """Route and method, the Host and Origin checks and the Bearer token of the socket."""
    api = service(token="t")
    if status is None:
        assert api.check(method, target, host=host, origin=origin, authorization=auth)
        return
    with pytest.raises(ApiError) as err:
        api.check(method, target, host=host, origin=origin, authorization=auth)
    assert err.value.status == status and "\n" not in err.value.message
    if status == 401:
        assert err.value.code == "invalid_api_key"


def test_without_a_token_any_local_client_may_call() -> None:
    """No server.token: no Authorization needed; the models answer lists the model."""
    api = service()
    assert api.check("GET", "/v1/models", host="127.0.0.1", origin=None, authorization=None)
    body = json.loads(api.models().body)
    assert [m["id"] for m in body["data"]] == ["tiny.en"] and body["object"] == "list"
    assert api.model_names == ("tiny.en", "whisper-1") and "en" in api.languages()


class IdleNever:
    """A stand-in live worker that is always busy: it takes jobs and never runs them."""

    alive = True

    def __init__(self) -> None:
        self.jobs: list[object] = []
        self.engine = self
        self.decoder = self
        self.multilingual = False

    def submit_job(self, job: object) -> None:
        self.jobs.append(job)


def test_a_transcription_kept_from_the_model_gives_up_with_503() -> None:
    """When live captions never leave the model idle, the request ends with 503 naming
    server.api_stall_s, and its job is cancelled."""
    from support.clips import AUDIO, need
    from support.timing import run

    from streamcap.api.job import TranscriptionJob
    from streamcap.api.request import TranscriptionRequest

    jfk = need(AUDIO / "en_misc" / "jfk.flac")
    cfg = from_dict({"server": {"api_stall_s": 1}})
    worker = IdleNever()
    api = ApiService(cfg.server, cfg.vad, "tiny.en", lambda: worker)  # type: ignore[arg-type,return-value]
    req = TranscriptionRequest(audio=jfk.read_bytes(), filename="jfk.flac", model="whisper-1")
    with pytest.raises(ApiError) as err:
        run(api.transcribe(req, api.admit()), 30)
    assert err.value.status == 503 and "server.api_stall_s" in err.value.message
    (job,) = worker.jobs
    assert isinstance(job, TranscriptionJob) and job.future.done() and job.step()
