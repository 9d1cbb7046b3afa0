"""The daemon's inputs: one capture source per configured input, started, watched and stopped
together (a thin shell: threads and devices live in the sources themselves).

Stream time is shared by every input: the session epoch is the wall time of the first sample
any input delivers, and an input whose first sample comes later starts with that much silence,
so that the same moment has the same stream time on every input (echo suppression compares
them). An input whose device was lost gets, when it captures again, silence for the time it
missed (``skip``), so that its stream time stays in step with the others' after a loss too.
One input's end or loss does not stop the others.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .audio.reframe import Samples
from .audio.sources import AudioSource, MicrophoneSource, SourceState, open_source
from .config import Config, InputConfig
from .errors import AudioDeviceError
from .events import SAMPLE_RATE

log = logging.getLogger("streamcap.capture")

#: How states rank when several inputs are summed up in one ``device_state``: the worst wins.
_RANK = {"running": 0, "finished": 1, "starting": 2, "reopening": 3, "lost": 4, "stopped": 5}


@dataclass(frozen=True)
class InputState:
    """One input as ``status`` reports it."""

    name: str
    device_state: str
    lag: float
    dropped_frames: int


def open_sources(cfg: Config, inputs: Sequence[InputConfig]) -> list[AudioSource]:
    """Build (not start) a source per input; errors name the input (``inputs[1].input``)."""
    import dataclasses

    out: list[AudioSource] = []
    single = len(inputs) == 1 and not inputs[0].name
    for i, inp in enumerate(inputs):
        audio = cfg.audio if inp.device is None else dataclasses.replace(cfg.audio,
                                                                         device=inp.device)
        culprit = "--input" if single else f"input {inp.name!r} (inputs[{i}].input)"
        out.append(open_source(inp.input, audio, culprit=culprit,
                               reopen_backoff_max_s=cfg.daemon.reopen_backoff_max_s))
    return out


def combined_state(states: Sequence[str]) -> str:
    """One ``device_state`` for several inputs: the worst of them."""
    return max(states, key=lambda s: _RANK.get(s, 6)) if states else "starting"


class CaptureSet:
    """The sources of every input, as one thing to start, watch and stop."""

    def __init__(self, sources: Sequence[AudioSource], labels: Sequence[str], *,
                 clock: Callable[[], float] = time.time) -> None:
        if len(sources) != len(labels):
            raise ValueError("one label per source")
        self.sources = list(sources)
        self.labels = list(labels)
        self.started = False
        self._lock = threading.Lock()
        self._epoch: float | None = None
        self.ended = [False] * len(self.sources)  # inputs told to the worker as ended
        self._begun = [False] * len(self.sources)
        self._clock = clock
        self._resumed = [False] * len(self.sources)  # lost since its last block
        self._delivered = [0] * len(self.sources)  # samples handed over per input

    def __len__(self) -> int:
        return len(self.sources)

    def describe(self, i: int) -> str:
        label = self.labels[i]
        return f"{label}: {self.sources[i].description}" if label else self.sources[i].description

    @property
    def description(self) -> str:
        return "; ".join(self.describe(i) for i in range(len(self.sources)))

    def preflight(self) -> None:
        """Off the loop: look every capture device up (raises AudioDeviceError, naming the
        input when there are several)."""
        for i, src in enumerate(self.sources):
            if isinstance(src, MicrophoneSource):
                try:
                    src.find_device()
                except AudioDeviceError as exc:
                    if len(self.sources) > 1 and self.labels[i]:
                        raise AudioDeviceError(f"input {self.labels[i]!r}: {exc}") from None
                    raise

    def start(
        self,
        submit: Callable[[int, Samples], None],
        on_state: Callable[[int, SourceState, str], None],
        anchor: Callable[[float], None],
        skip: Callable[[int, int], None] | None = None,
    ) -> None:
        """Start every source; ``anchor`` gets the wall time of the first sample (once);
        ``skip(lane, samples)`` stands silence in for time an input missed (default: zeros
        through ``submit``)."""
        self.started = True
        if skip is None:
            def skip(lane: int, n: int) -> None:
                submit(lane, np.zeros(n, np.float32))
        for i, src in enumerate(self.sources):
            self._begun[i] = True
            src.start(self._on_block(i, submit, anchor, skip),
                      functools.partial(self._on_state, i, on_state))

    def _on_state(self, i: int, on_state: Callable[[int, SourceState, str], None],
                  state: SourceState, detail: str) -> None:
        if state in ("lost", "reopening"):
            self._resumed[i] = True
        on_state(i, state, detail)

    def _on_block(self, i: int, submit: Callable[[int, Samples], None],
                  anchor: Callable[[float], None],
                  skip: Callable[[int, int], None]) -> Callable[[Samples], None]:
        first = [True]

        def on_block(block: Samples) -> None:
            start = self._clock() - len(block) / SAMPLE_RATE
            if first[0]:
                first[0] = False
                with self._lock:
                    if self._epoch is None:
                        self._epoch = start
                        anchor(start)
                    late = start - self._epoch
                if late > 0.0 and len(self.sources) > 1:
                    # This input started after the first one: line its stream time up.
                    n = int(late * SAMPLE_RATE)
                    submit(i, np.zeros(n, np.float32))
                    self._delivered[i] += n
            elif self._resumed[i] and len(self.sources) > 1 and self._epoch is not None:
                # Back after a loss: the time it missed is silence, in step with the others.
                missed = int((start - self._epoch) * SAMPLE_RATE) - self._delivered[i]
                if missed > 0:
                    skip(i, missed)
                    self._delivered[i] += missed
            self._resumed[i] = False
            submit(i, block)
            self._delivered[i] += len(block)

        return on_block

    def stop(self) -> None:
        for src in self.sources:
            try:
                src.stop()
            except Exception:
                log.exception("stopping %s failed", src.description)

    # --- what the daemon watches ------------------------------------------------------------

    @property
    def states(self) -> list[str]:
        return [s.state if begun else "starting" for s, begun in zip(self.sources, self._begun,
                                                                     strict=True)]

    @property
    def device_state(self) -> str:
        return combined_state(self.states)

    def running(self) -> bool:
        """Every input is capturing."""
        return self.started and all(s.state == "running" and s.alive for s in self.sources)

    def done(self, i: int) -> bool:
        """Input ``i`` will deliver no more audio: its file ended or its capture died."""
        s = self.sources[i]
        return s.finished or (s.state == "stopped" and not s.alive)

    @property
    def alive(self) -> bool:
        """Some input still captures (or ended normally): the watchdog's capture check."""
        return any(s.alive or s.finished for s in self.sources)

    @property
    def dropped_blocks(self) -> int:
        return sum(s.dropped_blocks for s in self.sources)
