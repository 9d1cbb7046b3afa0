"""Run the streaming engine over a file: as fast as the worker goes, or paced at real time.

``realtime=True`` is computation-aware: a feeder thread releases audio at wall-clock speed to the
same :class:`~streamcap.asr.worker.EngineWorker` the daemon uses, and decoding takes the time it
really takes, so event times measure real latency. ``realtime=False`` drives the engine with its
deterministic ``feed()``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .asr.decoder import HypothesisSource, WhisperDecoder
from .asr.model import load_model
from .asr.worker import EngineWorker
from .audio.decode import load_audio
from .audio.reframe import Samples
from .config import Config
from .engine import CaptionEngine
from .errors import BackendUnavailable, ConfigError
from .events import SAMPLE_RATE, Event
from .faults import DecodeFaults, faults_from_env, wrap_decoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimedEvent:
    """An event and when it was emitted: seconds since the first sample reached the engine."""

    wall: float
    event: Event


@dataclass
class RunResult:
    events: list[TimedEvent] = field(default_factory=list)
    duration: float = 0.0
    decode_seconds: float = 0.0
    model_load_seconds: float = 0.0
    wall_seconds: float = 0.0
    dropped_samples: int = 0


def make_decoder(cfg: Config) -> tuple[HypothesisSource, float]:
    """Load the model; the decoder is wrapped when ``STREAMCAP_FAULT_*`` asks for faults.

    With ``asr.backend: ray``: connect to the pool instead (:mod:`streamcap.pool`), with a
    local model loaded too for ``asr.ray.on_outage: local``.
    """
    faults = faults_from_env(os.environ)  # a bad value is an error before the model loads
    if cfg.asr.backend == "ray":
        return make_pool_decoder(cfg, faults)
    loaded = load_model(cfg.asr)
    return wrap_decoder(WhisperDecoder(loaded, cfg.asr), faults), loaded.load_seconds


def make_pool_decoder(cfg: Config, faults: DecodeFaults) -> tuple[HypothesisSource, float]:
    """The Ray pool's decoder wrapped for outages (see :mod:`streamcap.pool.outage`).

    The pool must answer at startup, unless ``on_outage: local`` (then the daemon starts on
    the local model, degraded, and moves to the pool when it answers).
    """
    try:
        from .pool.client import RayDecoder
        from .pool.outage import ResilientDecoder
    except ImportError as exc:
        raise ConfigError("asr.backend", f"'ray' needs Ray Serve: pip install 'streamcap[ray]' "
                          f"({exc})") from None
    ray_cfg = cfg.asr.ray
    fallback: HypothesisSource | None = None
    load_s = 0.0
    if ray_cfg.on_outage == "local":
        loaded = load_model(cfg.asr)
        fallback, load_s = WhisperDecoder(loaded, cfg.asr), loaded.load_seconds
    primary = RayDecoder(cfg.asr)
    try:
        primary.connect()
    except BackendUnavailable as exc:
        if fallback is None:
            raise
        log.warning("%s; starting on the local model (on_outage: local)", exc)
        primary.assume_multilingual(fallback.multilingual)
    wrapped = ResilientDecoder(wrap_decoder(primary, faults), ray_cfg, fallback=fallback)
    return wrapped, load_s


def run_audio(
    audio: Samples,
    cfg: Config,
    decoder: HypothesisSource,
    *,
    realtime: bool,
    on_event: Callable[[TimedEvent], None] | None = None,
    block_s: float = 0.05,
) -> RunResult:
    """Caption ``audio`` (16 kHz mono) with ``decoder``; see the module docstring."""
    result = RunResult(duration=len(audio) / SAMPLE_RATE)
    engine = CaptionEngine(cfg, decoder)
    lock = threading.Lock()
    t0 = time.monotonic()

    def emit(ev: Event) -> None:
        te = TimedEvent(time.monotonic() - t0, ev)
        with lock:
            result.events.append(te)
        if on_event is not None:
            on_event(te)

    block = max(1, int(block_s * SAMPLE_RATE))
    decoded_before = decoder.decode_seconds
    if not realtime:
        for i in range(0, len(audio), block):
            for ev in engine.feed(audio[i : i + block]):
                emit(ev)
        for ev in engine.finish():
            emit(ev)
    else:
        # Generous queue: the file shell must never drop audio (the daemon's is bounded).
        worker = EngineWorker(engine, emit, queue_seconds=max(60.0, result.duration + 1))
        worker.start()
        t0 = time.monotonic()
        for i in range(0, len(audio), block):
            due = t0 + (i + block) / SAMPLE_RATE
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            worker.submit(audio[i : i + block])
        worker.stop(timeout=max(60.0, result.duration))
        if worker.error is not None:
            raise worker.error
        result.dropped_samples = worker.dropped_samples
    # The decoder may be shared across runs: count this run's decoding only.
    result.decode_seconds = decoder.decode_seconds - decoded_before
    result.wall_seconds = time.monotonic() - t0
    return result


def transcribe_file(
    path: str | Path,
    cfg: Config,
    *,
    realtime: bool,
    decoder: HypothesisSource | None = None,
    on_event: Callable[[TimedEvent], None] | None = None,
) -> RunResult:
    """Decode ``path`` and caption it with the streaming engine."""
    audio = load_audio(path)
    load_s = 0.0
    if decoder is None:
        decoder, load_s = make_decoder(cfg)
    result = run_audio(audio, cfg, decoder, realtime=realtime, on_event=on_event)
    result.model_load_seconds = load_s
    return result
