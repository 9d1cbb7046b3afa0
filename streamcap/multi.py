"""Several inputs, one model: a caption engine per input, one decode at a time for all of them.

:class:`MultiEngine` is pure (no thread, socket or clock), like :class:`~streamcap.engine.
CaptionEngine`: audio goes in per input (``push(lane, samples)``), and ``step()`` runs at most
one decode, chosen by a fixed rule:

1. a final waiting for its pass, of any input: the one that ends earliest in stream time first
   (finals are never skipped);
2. otherwise the partial pass of the input that is furthest behind: the most audio since its
   last decode (inputs take turns; a busy input cannot starve a quiet one).

When compute cannot keep up, partial passes are what gets skipped: each input's policy asks for
a partial of its newest audio only when the pass runs.

Events come out labelled: with several inputs (or a labelled single input) every caption and
VAD event carries ``source`` (the input's label) and ``speaker`` (the same label; a finer turn
label may replace it later), and utterance ids are made unique across inputs (input ``i`` of
``n`` maps its own id ``u`` to ``u * n + i``, so each input's ids still increase). One
unlabelled input passes through unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .asr.policy import PolicyEvent
from .audio.reframe import Samples
from .engine import CaptionEngine
from .events import FinalCaption, PartialCaption, VadEvent


@dataclasses.dataclass(frozen=True)
class Lane:
    """One input: its label (``None``: unlabelled) and its engine."""

    label: str | None
    engine: CaptionEngine


class MultiEngine:
    """A caption engine per input sharing one decoder; see the module docstring."""

    def __init__(self, lanes: Sequence[Lane]) -> None:
        if not lanes:
            raise ValueError("MultiEngine needs at least one input")
        self.lanes = tuple(lanes)
        self._decoded_at = [0] * len(self.lanes)  # samples_in of each lane at its last decode
        self.steps = [0] * len(self.lanes)  # decodes run per lane
        self.last_lane: int | None = None

    @staticmethod
    def single(engine: CaptionEngine, label: str | None = None) -> MultiEngine:
        return MultiEngine([Lane(label, engine)])

    @property
    def engines(self) -> tuple[CaptionEngine, ...]:
        return tuple(lane.engine for lane in self.lanes)

    # --- audio in ---------------------------------------------------------------------------

    def push(self, lane: int, samples: Samples) -> list[PolicyEvent]:
        """New audio of input ``lane`` through its VAD gate; no decoding happens here."""
        return self._stamp(lane, self.lanes[lane].engine.push(samples))

    # --- decoding ---------------------------------------------------------------------------

    @property
    def due(self) -> bool:
        return any(lane.engine.due for lane in self.lanes)

    def pick(self) -> int | None:
        """The input whose decode runs next (see the module docstring), or None."""
        finals = [(end, i) for i, lane in enumerate(self.lanes)
                  if (end := lane.engine.final_due) is not None]
        if finals:
            return min(finals)[1]
        waiting = [(lane.engine.samples_in - self._decoded_at[i], -i) for i, lane in
                   enumerate(self.lanes) if lane.engine.due]
        if not waiting:
            return None
        return -max(waiting)[1]

    def step(self) -> list[PolicyEvent]:
        """Run at most one decode, for the input :meth:`pick` chooses."""
        i = self.pick()
        if i is None:
            return []
        engine = self.lanes[i].engine
        events = engine.step()  # may raise (e.g. BackendUnavailable): nothing moved on then
        self._decoded_at[i] = engine.samples_in
        self.steps[i] += 1
        self.last_lane = i
        return self._stamp(i, events)

    def finish(self) -> list[PolicyEvent]:
        """End of input on every lane: finalise what is in flight, nothing is lost."""
        out: list[PolicyEvent] = []
        for i in range(len(self.lanes)):
            out += self.close_lane(i)
        while self.due:
            out += self.step()
        return out

    def close_lane(self, i: int) -> list[PolicyEvent]:
        """End of input on one lane (its file ended, or it was lost for good), without
        decoding: its utterance in flight becomes a pending final, served by ``step()``."""
        return self._stamp(i, self.lanes[i].engine.close())

    def feed(self, audio: Sequence[Samples], chunk_s: float = 0.05) -> list[PolicyEvent]:
        """Deterministic run over whole signals, one per input, advancing them together in
        chunks and decoding whatever is due after each chunk (as an infinitely fast worker
        keeping to the cadence would)."""
        if len(audio) != len(self.lanes):
            raise ValueError(f"feed: {len(audio)} signals for {len(self.lanes)} inputs")
        signals = [np.asarray(a, dtype=np.float32) for a in audio]
        n = max((len(s) for s in signals), default=0)
        chunk = max(1, int(chunk_s * 16000))
        out: list[PolicyEvent] = []
        for pos in range(0, n, chunk):
            for i, s in enumerate(signals):
                if pos < len(s):
                    out += self.push(i, s[pos : pos + chunk])
            while self.due:
                out += self.step()
        return out + self.finish()

    # --- labels -----------------------------------------------------------------------------

    def _stamp(self, i: int, events: list[PolicyEvent]) -> list[PolicyEvent]:
        label = self.lanes[i].label
        n = len(self.lanes)
        if label is None and n == 1:
            return events
        out: list[PolicyEvent] = []
        for ev in events:
            uid = ev.utterance_id * n + i
            if isinstance(ev, (PartialCaption, FinalCaption)):
                out.append(dataclasses.replace(ev, utterance_id=uid, source=label,
                                               speaker=ev.speaker or label))
            elif isinstance(ev, VadEvent):
                out.append(dataclasses.replace(ev, utterance_id=uid, source=label))
            else:  # pragma: no cover - the policy emits only the three kinds above
                out.append(ev)
        return out
