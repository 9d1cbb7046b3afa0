"""The worker thread shell: bounded hand-over, newest-audio decoding, finalising on stop."""

from __future__ import annotations

import threading
import time

import numpy as np
from support.model import timeout
from support.scripted import SlowSource, voiced

from streamcap.asr.worker import EngineWorker, WorkerStopped
from streamcap.config import from_dict
from streamcap.engine import CaptionEngine
from streamcap.events import SAMPLE_RATE, Event, FinalCaption
from streamcap.multi import Lane, MultiEngine


def test_queue_is_bounded_and_drops_are_counted() -> None:
    """Audio submitted beyond queue_seconds to a stalled worker is dropped and counted."""
    worker = EngineWorker(CaptionEngine(from_dict({}), SlowSource(0.0)), lambda e: None, 1.0)
    # Not started: nothing drains the queue.
    for _ in range(30):
        worker.submit(np.zeros(1600, np.float32))
    assert worker.queued_seconds <= 1.0 + 0.1
    assert worker.dropped_samples >= 2 * SAMPLE_RATE - 1600


def test_slow_decoder_skips_partials_but_never_finals() -> None:
    """A decoder slower than the cadence sees fewer partial passes, and the final still comes."""
    events: list[Event] = []
    lock = threading.Lock()

    def on_event(e: Event) -> None:
        with lock:
            events.append(e)

    src = SlowSource(0.3)
    worker = EngineWorker(CaptionEngine(from_dict({}), src), on_event, 30.0)
    worker.start()
    audio = np.concatenate([voiced(4.0), np.zeros(SAMPLE_RATE, np.float32)])
    for i in range(0, len(audio), 800):  # 20x faster than real time
        worker.submit(audio[i : i + 800])
        time.sleep(0.0025)
    assert worker.stop(timeout(30))
    partial_passes = [r for r in src.requests if not r.final]
    assert len(partial_passes) < 4.0 / 0.4  # fewer than the cadence would ask for
    assert any(isinstance(e, FinalCaption) for e in events)
    assert worker.error is None and worker.lag_s == 0


def test_stop_finalises_the_utterance_in_flight() -> None:
    """Stopping mid-speech finalises the open utterance before the thread ends."""
    events: list[Event] = []
    worker = EngineWorker(CaptionEngine(from_dict({}), SlowSource(0.0)), events.append, 30.0)
    worker.start()
    worker.submit(voiced(2.0))
    assert worker.stop(timeout(30))
    assert not worker.alive
    assert any(isinstance(e, FinalCaption) for e in events)


def test_a_failing_sink_does_not_kill_the_worker() -> None:
    """An exception in the event callback is logged and the worker carries on to the final."""
    seen: list[Event] = []

    def boom(e: Event) -> None:
        seen.append(e)
        raise RuntimeError("sink broke")

    worker = EngineWorker(CaptionEngine(from_dict({}), SlowSource(0.0)), boom, 30.0)
    worker.start()
    worker.submit(voiced(2.0))
    assert worker.stop(timeout(30))
    assert worker.error is None
    # Every event after the first failure still reached the sink, the final included.
    assert seen[0].type == "vad"
    assert isinstance(seen[-1], FinalCaption) and seen[-1].text == "hello"


def test_dropped_audio_keeps_stream_time_and_lag_honest() -> None:
    """Audio dropped by a stalled worker becomes silence of the same length: later captions keep
    their true times and the lag counts only audio still waiting."""
    events: list[Event] = []
    worker = EngineWorker(CaptionEngine(from_dict({}), SlowSource(0.0)), events.append, 1.0)
    audio = np.concatenate([np.zeros(2 * SAMPLE_RATE, np.float32), voiced(2.0)])
    for i in range(0, len(audio), 1600):  # not started: only the last second is kept
        worker.submit(audio[i : i + 1600])
    assert worker.dropped_samples >= 2.9 * SAMPLE_RATE
    worker.start()
    assert worker.stop(timeout(30))
    assert worker.engine.samples_in == len(audio) and worker.lag_s == 0
    (final,) = [e for e in events if isinstance(e, FinalCaption)]
    assert final.start >= 3.0 - 0.35  # the kept second, minus the VAD pre-roll


def test_an_input_that_ends_is_finalised_while_the_other_carries_on() -> None:
    """With two inputs, end_input(0) finalises input 0's utterance in flight at once; input 1
    keeps its utterance open until the worker stops."""
    events: list[Event] = []
    lock = threading.Lock()

    def on_event(e: Event) -> None:
        with lock:
            events.append(e)

    multi = MultiEngine([Lane("A", CaptionEngine(from_dict({}), SlowSource(word=" a"))),
                         Lane("B", CaptionEngine(from_dict({}), SlowSource(word=" b")))])
    worker = EngineWorker(multi, on_event, 30.0)
    worker.start()
    worker.submit(voiced(2.0), 0)
    worker.submit(voiced(2.0), 1)
    worker.end_input(0)

    def finals() -> list[tuple[str | None, str]]:
        with lock:
            return [(e.source, e.text) for e in events if isinstance(e, FinalCaption)]

    deadline = time.monotonic() + timeout(10)
    while ("A", "a") not in finals() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert finals() == [("A", "a")]
    assert worker.stop(timeout(30))
    assert finals() == [("A", "a"), ("B", "b")]


def test_a_backend_outage_marks_the_worker_degraded_and_loses_no_final() -> None:
    """Decodes that raise BackendUnavailable make the worker degraded and wait; once the backend
    answers the pending final comes out, once, and degraded clears."""
    events: list[Event] = []
    src = SlowSource(fail=5, retry_after_s=0.05)
    worker = EngineWorker(CaptionEngine(from_dict({}), src), events.append, 30.0)
    worker.start()
    worker.submit(np.concatenate([voiced(0.25), np.zeros(SAMPLE_RATE, np.float32)]))
    deadline = time.monotonic() + timeout(10)
    while src.failed < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.stop(timeout(30))
    assert src.failed == 5 and worker.degraded is None and worker.error is None
    assert [e.text for e in events if isinstance(e, FinalCaption)] == ["hello"]


class CountingJob:
    """A background job of ``steps`` steps that records when it ran and how it ended."""

    def __init__(self, steps: int, boom: bool = False) -> None:
        self.left = steps
        self.boom = boom
        self.ran = 0
        self.failed: BaseException | None = None
        self.done = threading.Event()

    def step(self) -> bool:
        if self.boom:
            raise ValueError("not audio")
        self.ran += 1
        self.left -= 1
        if self.left == 0:
            self.done.set()
        return self.left == 0

    def fail(self, exc: BaseException) -> None:
        self.failed = exc
        self.done.set()


def test_background_jobs_run_step_by_step_and_a_bad_job_fails_alone() -> None:
    """A job runs all its steps while live captioning is idle; a job that raises gets its error
    and the worker (and the next job) carry on."""
    worker = EngineWorker(CaptionEngine(from_dict({}), SlowSource()), lambda e: None, 30.0)
    worker.start()
    bad, good = CountingJob(1, boom=True), CountingJob(3)
    worker.submit_job(bad)
    worker.submit_job(good)
    assert good.done.wait(timeout(10)) and bad.done.is_set()
    assert isinstance(bad.failed, ValueError) and good.ran == 3 and good.failed is None
    assert worker.alive
    assert worker.stop(timeout(10))


def test_jobs_still_waiting_or_submitted_after_stop_are_failed() -> None:
    """Stopping the worker fails the jobs it will never run, and a job submitted to a stopped
    worker fails at once (nobody waits forever)."""
    worker = EngineWorker(CaptionEngine(from_dict({}), SlowSource()), lambda e: None, 30.0)
    late = CountingJob(1)
    worker.submit_job(late)  # never started
    assert isinstance(late.failed, WorkerStopped)
    worker.start()
    assert worker.stop(timeout(10))
    after = CountingJob(1)
    worker.submit_job(after)
    assert isinstance(after.failed, WorkerStopped)


def test_skipped_time_is_silence_in_order_and_not_dropped() -> None:
    """Time an input missed (``skip``) reaches the engine as silence after the audio queued
    before it, keeps later captions at their true stream times, and is neither counted as
    dropped nor pushes real audio out of a full queue; a skip of nothing is nothing."""
    events: list[Event] = []
    worker = EngineWorker(CaptionEngine(from_dict({}), SlowSource(0.0)), events.append, 1.0)
    worker.submit(np.zeros(SAMPLE_RATE // 5, np.float32))  # not started: all stays queued
    worker.skip(0, 3 * SAMPLE_RATE)
    worker.skip(0, 0)
    worker.skip(0, -5)
    speech = np.concatenate([voiced(0.5), np.zeros(SAMPLE_RATE // 5, np.float32)])
    for i in range(0, len(speech), 1600):
        worker.submit(speech[i : i + 1600])
    assert worker.dropped_samples == 0 and worker.queued_seconds <= 1.0
    worker.start()
    assert worker.stop(timeout(30))
    assert worker.engine.samples_in == SAMPLE_RATE // 5 + 3 * SAMPLE_RATE + len(speech)
    assert worker.lag_s == 0 and worker.dropped_samples == 0
    (final,) = [e for e in events if isinstance(e, FinalCaption)]
    assert final.start >= 3.2 - 0.35  # after the 0.2 s and the skipped 3 s (minus pre-roll)
