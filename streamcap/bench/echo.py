"""Echo suppression measured on real speech (the real model, deterministic ``MultiEngine.feed``).

Two inputs: lane 0 the microphone ("You"), lane 1 the speakers' monitor ("Others"). Signals:

* :func:`echo_of`: what a microphone hears of the speakers: the monitor signal delayed
  (``delay_ms``), quieter (``gain_db``), with a little room noise (deterministic).
* scenarios: ``echo`` (monitor = a clip, microphone = its echo only), ``own`` (microphone = a
  clip, monitor silent), ``both`` (monitor = clip A, microphone = clip B + the echo of A).

Decoding is the costly part and does not depend on the filter, so :func:`run_pair` decodes once
with a pass-through tap that records every ``EchoFilter.feed`` call (lane, events, progress),
and :func:`replay` plays the record through a real :class:`~streamcap.echo.EchoFilter` (or
through none: suppression off) exactly as ``MultiEngine(lanes, echo=...)`` would have.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ..asr.decoder import HypothesisSource
from ..asr.policy import PolicyEvent
from ..config import Config
from ..echo import EchoFilter, EchoOptions, LaneProgress
from ..engine import CaptionEngine
from ..events import SAMPLE_RATE, FinalCaption
from ..multi import Lane, MultiEngine

MIC, MONITOR = 0, 1
LABELS = ("You", "Others")


def echo_of(signal: np.ndarray, delay_ms: float, gain_db: float, noise_db: float = -60.0,
            seed: int = 0) -> np.ndarray:
    """``signal`` as a microphone hears it from the speakers: ``delay_ms`` later, ``gain_db``
    quieter, plus white room noise at ``noise_db`` dBFS RMS (``-inf``: none)."""
    pad = np.zeros(round(delay_ms * SAMPLE_RATE / 1000), np.float32)
    out = np.concatenate([pad, np.asarray(signal, np.float32) * 10 ** (gain_db / 20)])
    if np.isfinite(noise_db):
        rng = np.random.default_rng(seed)
        out = out + rng.normal(0.0, 10 ** (noise_db / 20), len(out)).astype(np.float32)
    return out.astype(np.float32)


def mix(*signals: np.ndarray) -> np.ndarray:
    """Sum signals of any lengths (the shorter ones end in silence), clipped to [-1, 1]."""
    n = max((len(s) for s in signals), default=0)
    out = np.zeros(n, np.float32)
    for s in signals:
        out[: len(s)] += s
    return np.clip(out, -1.0, 1.0)


Call = tuple[int, list[PolicyEvent], list[LaneProgress]]


class _Tap(EchoFilter):
    """Passes everything through and records each call, for :func:`replay`."""

    def __init__(self, lanes: int) -> None:
        super().__init__({}, lanes)
        self.calls: list[Call] = []

    def feed(self, lane: int, events: Sequence[PolicyEvent],
             progress: Sequence[LaneProgress]) -> list[PolicyEvent]:
        self.calls.append((lane, list(events), list(progress)))
        return list(events)


def run_pair(cfg: Config, decoder: HypothesisSource, mic: np.ndarray,
             monitor: np.ndarray) -> list[Call]:
    """Decode the two signals together (``MultiEngine.feed``); the record of filter calls."""
    tap = _Tap(2)
    lanes = [Lane(LABELS[i], CaptionEngine(cfg, decoder)) for i in (MIC, MONITOR)]
    MultiEngine(lanes, echo=tap).feed([mic, monitor])
    return tap.calls


@dataclasses.dataclass(frozen=True)
class Replay:
    """What one filter (or none) published, and its counts."""

    events: list[PolicyEvent]
    suppressed: int
    trimmed: int

    def finals(self, lane: int) -> list[FinalCaption]:
        return [e for e in self.events if isinstance(e, FinalCaption)
                and e.source == LABELS[lane]]


def replay(calls: Sequence[Call], options: EchoOptions | None = None,
           on: bool = True) -> Replay:
    """Play a record through an :class:`EchoFilter` (``on``) or publish it as it was."""
    if not on:
        return Replay([e for _, evs, _ in calls for e in evs], 0, 0)
    f = EchoFilter({MIC: MONITOR}, 2, options)
    out: list[PolicyEvent] = []
    for lane, events, progress in calls:
        out += f.feed(lane, events, progress)
    out += f.flush()
    return Replay(out, f.suppressed[MIC], f.trimmed[MIC])
