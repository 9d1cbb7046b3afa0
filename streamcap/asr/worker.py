"""The worker thread: owns the engine (and so the model) and moves audio and events around it.

Capture threads call :meth:`EngineWorker.submit` (thread-safe, never blocks). The worker loop
takes *all* audio that has arrived, pushes it through the VAD gate, then runs at most one decode:
when decoding falls behind, partial passes are skipped in favour of the newest audio, pending
finals never are. The queue is bounded by ``queue_seconds``; audio beyond that is dropped and
counted (``dropped_samples``), so a stalled worker never makes memory grow.

Background jobs (:class:`BackgroundJob`, e.g. a file sent to the transcription API) share the
model at a lower priority: one step of a job (at most one decode) runs only when no live audio
is waiting and no live decode is due, so live captions never wait for more than one job step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from ..audio.reframe import Samples
from ..engine import CaptionEngine
from ..errors import BackendUnavailable
from ..events import SAMPLE_RATE, Event

log = logging.getLogger(__name__)


GAP_PIECE = 10 * SAMPLE_RATE  # silence standing in for dropped audio, pushed this much at a time


class BackgroundJob(Protocol):
    """Low-priority work on the worker thread, done one step (at most one decode) at a time."""

    def step(self) -> bool:
        """Run at most one decode; return True when the job is finished."""
        ...

    def fail(self, exc: BaseException) -> None:
        """The job will not run (on): ``step`` raised ``exc``, or the worker is stopping."""
        ...


class WorkerStopped(Exception):
    """Given to background jobs still waiting when the worker stops."""


class EngineWorker:
    """Thread shell around a :class:`CaptionEngine`."""

    def __init__(
        self,
        engine: CaptionEngine,
        on_event: Callable[[Event], None],
        queue_seconds: float = 10.0,
        name: str = "streamcap-asr",
    ) -> None:
        self.engine = engine
        self.on_event = on_event
        self.max_queued = int(queue_seconds * SAMPLE_RATE)
        self._queue: deque[Samples] = deque()
        self._queued = 0
        self._gap = 0  # dropped samples not yet replaced by silence
        self._cond = threading.Condition()
        self._stop = False
        self._finish = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.dropped_samples = 0
        self.submitted_samples = 0
        self.last_progress = time.monotonic()
        self.error: BaseException | None = None
        self._started_at = 0.0
        self._jobs: deque[BackgroundJob] = deque()
        self.degraded: str | None = None  # why the ASR backend cannot decode now, or None
        self._retry_at = 0.0

    # --- producer side ---------------------------------------------------------------------

    def submit(self, samples: Samples) -> None:
        """Hand over 16 kHz mono audio; never blocks. Overflow drops the oldest queued audio."""
        if len(samples) == 0:
            return
        with self._cond:
            self._queue.append(samples)
            self._queued += len(samples)
            self.submitted_samples += len(samples)
            while self._queued > self.max_queued and len(self._queue) > 1:
                old = self._queue.popleft()
                self._queued -= len(old)
                self.dropped_samples += len(old)
                self._gap += len(old)
            self._cond.notify()

    def submit_job(self, job: BackgroundJob) -> None:
        """Queue low-priority work (thread-safe); it runs while live captioning is idle."""
        with self._cond:
            if self._stop or self._finish or not self._thread.is_alive():
                stopped = True
            else:
                stopped = False
                self._jobs.append(job)
                self._cond.notify()
        if stopped:
            job.fail(WorkerStopped("the captioning worker is not running"))

    @property
    def jobs_waiting(self) -> int:
        return len(self._jobs)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._started_at = time.monotonic()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Finish the audio already queued, finalise the utterance in flight, and stop.

        Returns False if the worker did not finish within ``timeout``.
        """
        with self._cond:
            self._finish = True
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def abort(self) -> None:
        """Stop as soon as the current decode returns, without finalising."""
        with self._cond:
            self._stop = True
            self._cond.notify()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.error is None

    @property
    def queued_seconds(self) -> float:
        return self._queued / SAMPLE_RATE

    @property
    def lag_s(self) -> float:
        """How far the engine is behind the audio handed to it, in seconds."""
        return (self.submitted_samples - self.engine.samples_in) / SAMPLE_RATE

    @property
    def decode_seconds(self) -> float:
        """Wall time spent decoding so far (timed by the decoder, the one place decodes run)."""
        return self.engine.decoder.decode_seconds

    @property
    def rtf(self) -> float:
        """Decoding time per second of audio consumed so far."""
        t = self.engine.audio_time
        return self.decode_seconds / t if t > 0 else 0.0

    # --- the loop ----------------------------------------------------------------------------

    def _take(self) -> Samples | None:
        with self._cond:
            while (not self._queue and not self._gap and not self._stop and not self._finish
                   and not self.engine.due and not self._jobs):
                self._cond.wait(0.5)
            if self._gap > GAP_PIECE:  # a long stall: catch up a piece at a time
                self._gap -= GAP_PIECE
                return np.zeros(GAP_PIECE, np.float32)
            # Dropped audio came before everything still queued: its silence goes first.
            parts = list(self._queue)
            if self._gap:
                parts.insert(0, np.zeros(self._gap, np.float32))
                self._gap = 0
            if not parts:
                return None
            chunk = np.concatenate(parts) if len(parts) > 1 else parts[0]
            self._queue.clear()
            self._queued = 0
            return chunk

    def _emit(self, events: list[Event]) -> None:
        for ev in events:
            try:
                self.on_event(ev)
            except Exception:  # a sink must never kill the worker
                log.exception("event handler failed for %s event", ev.type)

    def _run(self) -> None:
        try:
            while not self._stop:
                chunk = self._take()
                if chunk is not None:
                    self._emit(list(self.engine.push(chunk)))
                    self.last_progress = time.monotonic()
                if self._stop:
                    break
                if self.engine.due:
                    # PROVISIONAL (ray helper, issue 11): the lead reconciles this block.
                    wait = self._retry_at - time.monotonic()
                    if wait > 0:  # backend outage: keep taking audio, step again later
                        with self._cond:
                            if not self._queue and not self._stop:
                                self._cond.wait(min(wait, 0.5))
                        continue
                    try:
                        events = self.engine.step()
                    except BackendUnavailable as exc:  # the request stays pending
                        self.degraded = str(exc)
                        self._retry_at = time.monotonic() + exc.retry_after_s
                        continue
                    self.degraded = None
                    self.last_progress = time.monotonic()
                    self._emit(list(events))
                    continue
                if self._finish and not self._queue and not self._gap:
                    events = self.engine.finish()
                    self._emit(list(events))
                    break
                if self._jobs and not self._queue and not self._gap:
                    self._job_step()
                self.last_progress = time.monotonic()
        except BaseException as exc:  # surfaced through .error / .alive to the daemon
            self.error = exc
            log.exception("ASR worker crashed")
        finally:
            self._fail_jobs()

    def _job_step(self) -> None:
        """One step of the oldest background job (live work was idle when this was called)."""
        job = self._jobs[0]
        try:
            done = job.step()
        except Exception as exc:  # a bad job fails alone; live captioning carries on
            log.warning("background job failed: %s", exc)
            done = True
            job.fail(exc)
        if done:
            with self._cond:
                if self._jobs and self._jobs[0] is job:
                    self._jobs.popleft()

    def _fail_jobs(self) -> None:
        with self._cond:
            jobs = list(self._jobs)
            self._jobs.clear()
        for job in jobs:
            job.fail(WorkerStopped("the captioning worker stopped"))
