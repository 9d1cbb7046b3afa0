"""The worker thread shell: bounded hand-over, newest-audio decoding, finalising on stop."""

from __future__ import annotations

import threading
import time

import numpy as np
from support.model import timeout

from streamcap.asr.decoder import DecodeRequest, Hypothesis
from streamcap.asr.worker import EngineWorker
from streamcap.config import from_dict
from streamcap.engine import CaptionEngine
from streamcap.events import SAMPLE_RATE, Event, FinalCaption, Word


class SlowSource:
    """A scripted hypothesis source that takes `delay` seconds per decode."""

    multilingual = False

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests: list[DecodeRequest] = []
        self.decode_seconds = 0.0

    def retune(self, cfg: object) -> None:
        pass

    def decode(self, req: DecodeRequest) -> Hypothesis:
        self.requests.append(req)
        time.sleep(self.delay)
        self.decode_seconds += self.delay
        end = req.offset + len(req.audio) / SAMPLE_RATE
        words = () if req.prefix else (Word(" hello", req.offset, req.offset + 0.3, 0.9, False),)
        return Hypothesis(words=words, audio_end=end)



def voiced(seconds: float) -> np.ndarray:
    """A buzzy vowel-like signal that webrtcvad classifies as speech."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 120 + 10 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    sig = sum(np.sin(k * phase) / k for k in range(1, 30))
    return (0.3 * sig).astype(np.float32)


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
