"""A transcription as a background job of the live worker: one window decode per step."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from ..asr.decoder import DecodeRequest, HypothesisSource
from ..audio.reframe import Samples
from ..events import SAMPLE_RATE
from .transcript import Transcript, TranscriptBuilder
from .windows import Window


class JobCancelled(Exception):
    """The client went away (or the server is stopping): the job stopped between windows."""


class TranscriptionJob:
    """Implements :class:`~streamcap.asr.worker.BackgroundJob`; the result is :attr:`future`.

    Each :meth:`step` runs one final-quality decode of the next window with the previous
    window's text (or the user's prompt, for the first) as context. With ``language`` None a
    multilingual model detects it on the first window and keeps it for the rest.
    :meth:`cancel` is thread-safe; the job then ends at its next step without decoding.
    """

    def __init__(
        self,
        audio: Samples,
        windows: list[Window],
        decoder: HypothesisSource,
        *,
        language: str | None,
        prompt: str = "",
        on_step: Callable[[], None] | None = None,
    ) -> None:
        self.audio = audio
        self.decoder = decoder
        self.language = language if language or decoder.multilingual else "en"
        self.prompt = prompt
        self.on_step = on_step
        self.future: Future[Transcript] = Future()
        self.builder = TranscriptBuilder(windows, len(audio) / SAMPLE_RATE)
        self.decode_seconds = 0.0
        self._cancelled = threading.Event()

    def cancel(self, reason: str = "cancelled") -> None:
        self._cancelled.set()
        self._settle(JobCancelled(reason))

    def _settle(self, exc: BaseException | None = None) -> None:
        if self.future.done():
            return
        try:
            if exc is None:
                self.future.set_result(self.builder.result(self.decode_seconds))
            else:
                self.future.set_exception(exc)
        except Exception:  # settled by another thread in between: the first answer stands
            pass

    def step(self) -> bool:
        if self._cancelled.is_set() or self.future.done():
            return True
        b = self.builder
        if b.finished:
            self._settle()
            return True
        w = b.next_window
        t0 = time.monotonic()
        hyp = self.decoder.decode(DecodeRequest(
            audio=self.audio[w.span.start : w.span.end],
            offset=w.span.start / SAMPLE_RATE,
            context=b.context() or self.prompt,
            final=True,
            language=self.language,
        ))
        self.decode_seconds += time.monotonic() - t0
        if self.on_step is not None:
            self.on_step()
        b.add(hyp)
        if self.language is None:
            self.language = hyp.language
        if b.finished:
            self._settle()
            return True
        return False

    def fail(self, exc: BaseException) -> None:
        self._settle(exc)
