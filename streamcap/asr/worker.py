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
from ..multi import MultiEngine

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


class _Silence:
    """A stretch of time an input did not capture (see :meth:`EngineWorker.skip`)."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


class _Inbox:
    """One input's bounded hand-over queue (guarded by the worker's condition)."""

    def __init__(self) -> None:
        self.queue: deque[Samples | _Silence] = deque()
        self.queued = 0
        self.gap = 0  # dropped samples not yet replaced by silence
        self.dropped = 0
        self.submitted = 0
        self.ended = False  # the input ended: finalise its utterance once its audio is in
        self.finished = False

    @property
    def waiting(self) -> bool:
        return bool(self.queue) or self.gap > 0


class EngineWorker:
    """Thread shell around a :class:`CaptionEngine` (one input) or a
    :class:`~streamcap.multi.MultiEngine` (several inputs on one model)."""

    def __init__(
        self,
        engine: CaptionEngine | MultiEngine,
        on_event: Callable[[Event], None],
        queue_seconds: float = 10.0,
        name: str = "streamcap-asr",
    ) -> None:
        self.multi = engine if isinstance(engine, MultiEngine) else MultiEngine.single(engine)
        self.engine = self.multi.lanes[0].engine
        self.on_event = on_event
        self.max_queued = int(queue_seconds * SAMPLE_RATE)
        self._inboxes = [_Inbox() for _ in self.multi.lanes]
        self._cond = threading.Condition()
        self._stop = False
        self._finish = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.last_progress = time.monotonic()
        self.error: BaseException | None = None
        self._started_at = 0.0
        self._jobs: deque[BackgroundJob] = deque()
        self.degraded: str | None = None  # why the backend cannot decode now, while it cannot
        self._retry_at = 0.0
        self._closed = False

    # --- producer side ---------------------------------------------------------------------

    def submit(self, samples: Samples, lane: int = 0) -> None:
        """Hand over 16 kHz mono audio of input ``lane``; never blocks. Overflow drops that
        input's oldest queued audio (it reaches the engine as silence of the same length)."""
        if len(samples) == 0:
            return
        with self._cond:
            box = self._inboxes[lane]
            box.queue.append(samples)
            box.queued += len(samples)
            box.submitted += len(samples)
            while box.queued > self.max_queued and len(box.queue) > 1:
                old = box.queue.popleft()
                if isinstance(old, _Silence):  # silence already: it stays silence
                    box.gap += old.n
                    continue
                box.queued -= len(old)
                box.dropped += len(old)
                box.gap += len(old)
            self._cond.notify()

    def skip(self, lane: int, samples: int) -> None:
        """Input ``lane`` captured nothing for ``samples`` (its device was lost meanwhile):
        that stretch reaches its engine as silence, after the audio already queued, so its
        stream time stays in step with the other inputs'. Not counted as dropped."""
        if samples <= 0:
            return
        with self._cond:
            box = self._inboxes[lane]
            box.queue.append(_Silence(samples))
            box.submitted += samples
            self._cond.notify()

    def end_input(self, lane: int) -> None:
        """Input ``lane`` ended (its file ran out, or it was lost for good): once its queued
        audio is in, its utterance in flight is finalised; the other inputs carry on."""
        with self._cond:
            self._inboxes[lane].ended = True
            self._cond.notify()

    @property
    def dropped_samples(self) -> int:
        return sum(b.dropped for b in self._inboxes)

    @property
    def submitted_samples(self) -> int:
        return sum(b.submitted for b in self._inboxes)

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
        """Audio waiting in the fullest input queue, in seconds."""
        return max(b.queued for b in self._inboxes) / SAMPLE_RATE

    def queued_seconds_of(self, lane: int) -> float:
        return self._inboxes[lane].queued / SAMPLE_RATE

    def lag_of(self, lane: int) -> float:
        """How far input ``lane``'s engine is behind the audio handed to it, in seconds."""
        engine = self.multi.lanes[lane].engine
        return (self._inboxes[lane].submitted - engine.samples_in) / SAMPLE_RATE

    @property
    def lag_s(self) -> float:
        """How far the furthest-behind input is behind the audio handed to it, in seconds."""
        return max(self.lag_of(i) for i in range(len(self._inboxes)))

    @property
    def audio_time(self) -> float:
        """Stream seconds consumed, summed over inputs (progress, for the watchdog)."""
        return sum(e.audio_time for e in self.multi.engines)

    @property
    def decode_seconds(self) -> float:
        """Wall time spent decoding so far (timed by the decoder, the one place decodes run)."""
        return self.engine.decoder.decode_seconds

    @property
    def rtf(self) -> float:
        """Decoding time per second of audio consumed so far (the longest input's audio)."""
        t = max(e.audio_time for e in self.multi.engines)
        return self.decode_seconds / t if t > 0 else 0.0

    # --- the loop ----------------------------------------------------------------------------

    def _idle(self) -> bool:
        """Nothing to do now (called with the condition held)."""
        if self._stop or self._finish or self._jobs:
            return False
        if any(b.waiting or (b.ended and not b.finished) for b in self._inboxes):
            return False
        return not self.multi.due or time.monotonic() < self._retry_at

    def _take(self) -> list[tuple[int, Samples]]:
        """All audio that has arrived, per input (dropped audio first, as silence)."""
        with self._cond:
            while self._idle():
                wait = 0.5
                if self.multi.due:  # degraded: wake when the backend may be back
                    wait = min(wait, max(0.01, self._retry_at - time.monotonic()))
                self._cond.wait(wait)
            out: list[tuple[int, Samples]] = []
            for i, box in enumerate(self._inboxes):
                if box.gap > GAP_PIECE:  # a long stall: catch up a piece at a time
                    box.gap -= GAP_PIECE
                    out.append((i, np.zeros(GAP_PIECE, np.float32)))
                    continue
                parts = [np.zeros(p.n, np.float32) if isinstance(p, _Silence) else p
                         for p in box.queue]
                if box.gap:
                    parts.insert(0, np.zeros(box.gap, np.float32))
                    box.gap = 0
                if not parts:
                    continue
                out.append((i, np.concatenate(parts) if len(parts) > 1 else parts[0]))
                box.queue.clear()
                box.queued = 0
            return out

    def _emit(self, events: list[Event]) -> None:
        for ev in events:
            try:
                self.on_event(ev)
            except Exception:  # a sink must never kill the worker
                log.exception("event handler failed for %s event", ev.type)

    def _step(self) -> None:
        """One decode; a backend that cannot decode now leaves it pending until retry time."""
        if time.monotonic() < self._retry_at:
            return
        try:
            events = self.multi.step()
        except BackendUnavailable as exc:
            if self.degraded is None:
                log.warning("ASR backend unavailable: %s (finals are kept until it is back)",
                            exc)
            self.degraded = str(exc)
            self._retry_at = time.monotonic() + max(0.01, exc.retry_after_s)
            return
        if self.degraded is not None:
            log.info("ASR backend is back")
            self.degraded = None
        self.last_progress = time.monotonic()
        self._emit(list(events))

    def _finish_all(self) -> bool:
        """Stopping: close every input, then run the pending finals like any other step (while
        the backend is down they wait for it, up to the stop timeout). True when all is done."""
        if not self._closed:
            self._closed = True
            for i, box in enumerate(self._inboxes):
                if not box.finished:
                    box.finished = True
                    self._emit(list(self.multi.close_lane(i)))
        if not self.multi.due:
            return True
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            with self._cond:
                self._cond.wait(wait)
        else:
            self._step()
        return False

    def _ended_lanes(self) -> None:
        """Close inputs that ended and whose audio is all in (their finals are then due)."""
        for i, box in enumerate(self._inboxes):
            if box.ended and not box.finished and not box.waiting:
                box.finished = True
                self._emit(list(self.multi.close_lane(i)))

    def _run(self) -> None:
        try:
            while not self._stop:
                for lane, chunk in self._take():
                    self._emit(list(self.multi.push(lane, chunk)))
                    self.last_progress = time.monotonic()
                if self._stop:
                    break
                self._ended_lanes()
                if self.multi.due and time.monotonic() >= self._retry_at:
                    self._step()
                    continue
                if self._finish and not any(b.waiting for b in self._inboxes):
                    if self._finish_all():
                        break
                    continue
                if self._jobs and not any(b.waiting for b in self._inboxes):
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
