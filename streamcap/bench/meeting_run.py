"""The meeting benchmark's shell: several inputs paced at real time through the daemon's worker.

:func:`run_inputs` releases one signal per input at wall-clock speed, in 50 ms blocks, all inputs
together, to the same :class:`~streamcap.asr.worker.EngineWorker` around a
:class:`~streamcap.multi.MultiEngine` that the daemon runs (one model, one worker thread), and
records every event with its wall time (seconds since the first block, the zero of stream time
too), each input's lag (``worker.lag_of``, as ``status`` reports it) every 0.1 s, and the process
CPU time (``psutil``) of the run. One unlabelled input is the single-input daemon.

:func:`timeline` lays clips out as turns: each input gets its own clips at their places and
silence while the other input speaks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import psutil

from ..asr.decoder import HypothesisSource
from ..asr.worker import EngineWorker
from ..config import Config
from ..engine import CaptionEngine
from ..events import SAMPLE_RATE, Event, FinalCaption, PartialCaption, VadEvent
from ..multi import Lane, MultiEngine
from ..runner import TimedEvent


@dataclass
class LaneRun:
    """What one input of a run produced."""

    label: str | None
    events: list[TimedEvent] = field(default_factory=list)
    lags: list[tuple[float, float]] = field(default_factory=list)  # (wall, lag s)
    speech_end: float = 0.0  # stream time of the end of the input's signal

    @property
    def finals(self) -> list[tuple[float, FinalCaption]]:
        return [(te.wall, te.event) for te in self.events if isinstance(te.event, FinalCaption)]

    def lost_utterances(self) -> list[int]:
        """Utterances the VAD opened that showed words in a partial but got no final."""
        shown = {te.event.utterance_id for te in self.events
                 if isinstance(te.event, PartialCaption) and te.event.words}
        finals = {f.utterance_id for _, f in self.finals}
        return sorted(shown - finals)

    def opened(self) -> int:
        return sum(1 for te in self.events
                   if isinstance(te.event, VadEvent) and te.event.state == "speech_start")


@dataclass
class InputsRun:
    """One real-time run of one or more inputs."""

    lanes: list[LaneRun]
    duration: float
    wall_seconds: float
    cpu_seconds: float
    decode_seconds: float
    dropped_samples: int

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0


def timeline(turns: Sequence[tuple[int, np.ndarray]], n_inputs: int,
             gap_s: float = 1.0) -> list[np.ndarray]:
    """Signals for ``n_inputs`` inputs: each turn ``(input, audio)`` in order, ``gap_s`` of
    silence between turns, and silence on every other input meanwhile."""
    gap = int(gap_s * SAMPLE_RATE)
    total = sum(len(a) for _, a in turns) + gap * (len(turns) + 1)
    out = [np.zeros(total, np.float32) for _ in range(n_inputs)]
    pos = gap
    for lane, audio in turns:
        out[lane][pos : pos + len(audio)] = audio
        pos += len(audio) + gap
    return out


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def run_inputs(
    signals: Sequence[np.ndarray],
    labels: Sequence[str | None],
    cfg: Config,
    decoder: HypothesisSource,
    *,
    block_s: float = 0.05,
    tail_s: float = 120.0,
) -> InputsRun:
    """Pace ``signals`` (one per input, 16 kHz mono) at real time through one worker; see the
    module docstring. Waits up to ``tail_s`` after the audio for the last finals."""
    if len(signals) != len(labels) or not signals:
        raise ValueError("run_inputs: one label per signal, at least one signal")
    lanes = [LaneRun(label, speech_end=len(s) / SAMPLE_RATE) for s, label in
             zip(signals, labels, strict=True)]
    multi = MultiEngine([Lane(label, CaptionEngine(cfg, decoder)) for label in labels])
    lock = threading.Lock()
    t0 = time.monotonic()
    index = {label: i for i, label in enumerate(labels)}

    def emit(ev: Event) -> None:
        te = TimedEvent(time.monotonic() - t0, ev)
        lane = index.get(getattr(ev, "source", None), 0)
        with lock:
            lanes[lane].events.append(te)

    duration = max(len(s) for s in signals) / SAMPLE_RATE
    worker = EngineWorker(multi, emit, queue_seconds=max(60.0, duration + 1))
    proc = psutil.Process()
    decoded0 = decoder.decode_seconds
    cpu0 = _cpu(proc)
    worker.start()
    t0 = time.monotonic()
    block = max(1, int(block_s * SAMPLE_RATE))
    n = max(len(s) for s in signals)
    next_lag = 0.0
    for pos in range(0, n, block):
        due = t0 + (pos + block) / SAMPLE_RATE
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for i, s in enumerate(signals):
            if pos < len(s):
                worker.submit(s[pos : pos + block], lane=i)
        now = time.monotonic() - t0
        if now >= next_lag:
            next_lag = now + 0.1
            for i, lane in enumerate(lanes):
                lane.lags.append((now, worker.lag_of(i)))
    for i in range(len(signals)):
        worker.end_input(i)
    # Keep sampling the lags while the worker catches up and finalises.
    deadline = time.monotonic() + tail_s
    stopper = threading.Thread(target=worker.stop, args=(tail_s,), daemon=True)
    stopper.start()
    while stopper.is_alive() and time.monotonic() < deadline:
        now = time.monotonic() - t0
        for i, lane in enumerate(lanes):
            lane.lags.append((now, worker.lag_of(i)))
        stopper.join(0.1)
    if worker.error is not None:
        raise worker.error
    wall = time.monotonic() - t0
    return InputsRun(lanes=lanes, duration=duration, wall_seconds=wall,
                     cpu_seconds=max(0.0, _cpu(proc) - cpu0),
                     decode_seconds=decoder.decode_seconds - decoded0,
                     dropped_samples=worker.dropped_samples)
