"""The asyncio side of the transcription API: admission, the upload, the job, the answer.

:class:`ApiService` knows nothing of sockets: the HTTP shell (:mod:`.http`, and the caption
server for ``GET``) asks it to check a request head (:meth:`ApiService.check`), to admit a
transcription (:meth:`ApiService.admit`, a bounded number at once), and to answer
(:meth:`ApiService.transcribe`, :meth:`ApiService.models`). Upload decoding and the VAD run on a
thread; the decodes run as a :class:`~.job.TranscriptionJob` on the live worker, which runs a
job step only while live captioning is idle.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np

from ..config import ServerConfig, VadConfig
from ..events import SAMPLE_RATE
from ..sinks.ws_protocol import RequestRejected, check_host, check_origin, check_token
from .job import JobCancelled, TranscriptionJob
from .render import render
from .request import MODEL_ALIAS, ApiError, ApiResponse, TranscriptionRequest, models_body
from .transcript import Transcript
from .windows import Window, plan_windows

if TYPE_CHECKING:
    from ..asr.decoder import HypothesisSource
    from ..asr.worker import EngineWorker
    from ..audio.reframe import Samples
    from ..metrics import Metrics

log = logging.getLogger("streamcap.api")

TRANSCRIPTIONS = "/v1/audio/transcriptions"
MODELS = "/v1/models"
API_ROUTES = {TRANSCRIPTIONS: "POST", MODELS: "GET"}


def decoder_of(worker: EngineWorker) -> HypothesisSource:
    """The decoder the live worker owns (the one place that knows where it lives)."""
    return worker.engine.decoder


def is_api_path(target: str) -> bool:
    path = urlsplit(target).path
    return path == "/v1" or path.startswith("/v1/")


def decode_upload(data: bytes, filename: str) -> Samples:
    """The upload as 16 kHz mono float32 (PyAV through faster-whisper); raises ApiError."""
    from faster_whisper.audio import decode_audio

    name = filename[:60]
    try:
        audio = decode_audio(io.BytesIO(data), sampling_rate=SAMPLE_RATE)
    except Exception as exc:  # PyAV raises many types; all mean "not audio it can decode"
        detail = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise ApiError(400, f"file: {name!r} is not audio that can be decoded "
                       f"({type(exc).__name__}: {detail})", param="file",
                       code="invalid_file") from None
    if not isinstance(audio, np.ndarray) or audio.size == 0:
        raise ApiError(400, f"file: {name!r} holds no audio samples", param="file",
                       code="invalid_file")
    out: Samples = np.ascontiguousarray(audio, dtype=np.float32)
    return out


def prepare(data: bytes, filename: str, vad: VadConfig) -> tuple[Samples, list[Window]]:
    """Decode the upload and find its speech windows (CPU work, run on a thread)."""
    audio = decode_upload(data, filename)
    return audio, plan_windows(audio, vad)


@dataclass
class Slot:
    """An admitted transcription; :meth:`ApiService.release` gives it back."""

    job: TranscriptionJob | None = None
    released: bool = False


class ApiService:
    """See the module docstring. ``worker()`` is the live worker, or None before it runs."""

    def __init__(
        self,
        cfg: ServerConfig,
        vad: VadConfig,
        model: str,
        worker: Callable[[], EngineWorker | None],
        *,
        local_names: Iterable[str] = (),
    ) -> None:
        self.cfg = cfg
        self.vad = vad
        self.model = model
        self._worker = worker
        self._local_names = (*local_names, socket.gethostname().lower())
        self._created = int(time.time())
        self._active: dict[int, Slot] = {}
        self._closing = False
        self._progress = time.monotonic()  # the last decode of any transcription
        self.metrics: Metrics | None = None  # the server's, once it has one

    @property
    def max_upload_bytes(self) -> int:
        return int(self.cfg.max_upload_mb * 1024 * 1024)

    @property
    def busy(self) -> int:
        return len(self._active)

    # -- request heads ---------------------------------------------------------------------

    def check(self, method: str, target: str, *, host: str | None, origin: str | None,
              authorization: str | None) -> str:
        """Admit a request head for an API route; return the route or raise ApiError."""
        route = urlsplit(target).path
        want = API_ROUTES.get(route)
        if want is None:
            raise ApiError(404, f"no such API path {route[:60]!r} (try POST {TRANSCRIPTIONS} "
                           f"or GET {MODELS})", code="not_found")
        if method != want:
            raise ApiError(405, f"{route}: method {method[:20]!r} not allowed (use {want})",
                           code="method_not_allowed")
        try:
            clean = check_host(host, self.cfg, self._local_names)
            if origin is not None:
                check_origin(origin, clean, self.cfg)
            check_token(self.cfg, authorization, None)
        except RequestRejected as exc:
            raise ApiError(exc.status, exc.message,
                           code="invalid_api_key" if exc.status == 401 else None) from None
        if self._closing:
            raise ApiError(503, "the server is shutting down", code="unavailable")
        return route

    def answered(self, status: int) -> None:
        """Count an answer (the HTTP shells call this for every API response)."""
        if self.metrics is not None:
            self.metrics.api_requests.labels(status=str(status)).inc()

    def models(self) -> ApiResponse:
        return ApiResponse.json(200, models_body(self.model, self._created))

    @property
    def multilingual(self) -> bool:
        """Whether the loaded model is multilingual (True while it is not known yet: the
        transcription checks again)."""
        worker = self._worker()
        return True if worker is None else decoder_of(worker).multilingual

    @staticmethod
    def languages() -> tuple[str, ...]:
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        return tuple(_LANGUAGE_CODES)

    @property
    def model_names(self) -> tuple[str, ...]:
        return (self.model, MODEL_ALIAS)

    # -- transcriptions --------------------------------------------------------------------

    def admit(self) -> Slot:
        """Take one of ``server.api_jobs`` places (raises ApiError 429 when all are taken)."""
        if self._closing:
            raise ApiError(503, "the server is shutting down", code="unavailable")
        if len(self._active) >= self.cfg.api_jobs:
            raise ApiError(429, f"busy: {len(self._active)} transcriptions under way "
                           "(server.api_jobs); retry later", type="rate_limit_error",
                           code="rate_limit_exceeded")
        slot = Slot()
        self._active[id(slot)] = slot
        return slot

    def release(self, slot: Slot) -> None:
        if slot.job is not None:
            slot.job.cancel("the request ended")
        slot.released = True
        self._active.pop(id(slot), None)

    async def transcribe(self, req: TranscriptionRequest, slot: Slot) -> ApiResponse:
        """Decode ``req`` at low priority on the live worker; the answer in its format.

        Cancelling the awaiting task (client gone) cancels the job between two windows.
        """
        worker = self._worker()
        if worker is None or not worker.alive:
            raise ApiError(503, "the model is not ready (the daemon is starting or stopping)",
                           type="server_error", code="unavailable")
        decoder = decoder_of(worker)
        if req.language not in (None, "en") and not decoder.multilingual:
            raise ApiError(400, f"language: {req.language!r} asked of an English-only model",
                           param="language")
        t0 = time.monotonic()
        audio, windows = await asyncio.to_thread(prepare, req.audio, req.filename, self.vad)
        job = TranscriptionJob(audio, windows, decoder, language=req.language,
                               prompt=req.prompt, on_step=self._stepped)
        slot.job = job
        if slot.released or self._closing:
            job.cancel()
        worker.submit_job(job)
        try:
            transcript = await self._wait(job, time.monotonic())
        except JobCancelled:
            raise ApiError(503, "the transcription was cancelled (server shutting down)",
                           type="server_error", code="unavailable") from None
        except ApiError:
            raise
        except Exception as exc:
            log.warning("transcription of %r failed: %s", req.filename[:60], exc)
            raise ApiError(500, f"the transcription failed: {exc}", type="server_error",
                           code="internal_error") from None
        wall = time.monotonic() - t0
        dur = transcript.duration
        log.info("transcribed %r: %.1f s of audio, %d windows, decode %.2f s (RTF %.3f), "
                 "wall %.2f s", req.filename[:60], dur, transcript.windows,
                 transcript.decode_seconds, transcript.decode_seconds / dur if dur else 0.0,
                 wall)
        if self.metrics is not None:
            self.metrics.api_audio.inc(dur)
            self.metrics.api_decode.inc(transcript.decode_seconds)
        resp = render(transcript, req.response_format, req.granularities)
        return ApiResponse(resp.status, resp.body, resp.content_type, (
            ("X-Streamcap-Audio-Seconds", f"{dur:.3f}"),
            ("X-Streamcap-Decode-Seconds", f"{transcript.decode_seconds:.3f}"),
        ))

    def _stepped(self) -> None:  # on the worker thread; a float store is atomic
        self._progress = time.monotonic()

    async def _wait(self, job: TranscriptionJob, submitted: float) -> Transcript:
        fut = asyncio.wrap_future(job.future)
        try:
            while True:
                done, _ = await asyncio.wait([fut], timeout=1.0)
                if done:
                    return fut.result()
                # Jobs run only while live captioning is idle: on a machine too slow for its
                # live stream they would wait forever.
                idle = time.monotonic() - max(self._progress, submitted)
                if idle > self.cfg.api_stall_s:
                    job.cancel("starved")
                    raise ApiError(503, "the model is kept busy by live captions (no "
                                   f"transcription progress for {self.cfg.api_stall_s:g} s, "
                                   "server.api_stall_s); retry "
                                   "later", type="server_error", code="unavailable")
        finally:
            if not fut.done():
                fut.cancel()  # nobody will read it: no "exception never retrieved"
            elif not fut.cancelled():
                fut.exception()

    def reopen(self) -> None:
        """Admit transcriptions again (the server was started again after a stop)."""
        self._closing = False

    def shutdown(self) -> None:
        """Refuse new transcriptions and cancel those under way (their clients get 503)."""
        self._closing = True
        for slot in list(self._active.values()):
            if slot.job is not None:
                slot.job.cancel("server shutting down")
