"""The daemon's set of inputs: shared stream time, one state for several inputs."""

from __future__ import annotations

import numpy as np

from streamcap.audio.sources import BlockCallback, SourceState, StateCallback
from streamcap.capture import CaptureSet, combined_state


class PushSource:
    """A source whose blocks the test pushes (a stand-in for a device)."""

    description = "pushed"
    dropped_blocks = 0
    last_error: str | None = None
    finished = False

    def __init__(self) -> None:
        self.on_block: BlockCallback | None = None
        self.state: SourceState = "stopped"
        self.alive = False

    def start(self, on_block: BlockCallback, on_state: StateCallback | None = None) -> None:
        self.on_block, self.state, self.alive = on_block, "running", True
        if on_state is not None:
            on_state("running", "")

    def stop(self) -> None:
        self.state, self.alive = "stopped", False


def test_a_later_input_starts_with_silence_so_stream_times_line_up() -> None:
    """The epoch is the first sample of any input; an input whose first block comes 0.25 s
    later gets 0.25 s of silence first, so the same moment has the same stream time."""
    now = [100.0]
    a, b = PushSource(), PushSource()
    got: list[tuple[int, int, float]] = []
    epochs: list[float] = []
    states: list[tuple[int, str]] = []
    cap = CaptureSet([a, b], ["You", "Others"], clock=lambda: now[0])
    assert cap.states == ["starting", "starting"]
    cap.start(lambda i, s: got.append((i, len(s), float(np.abs(s).max()))),
              lambda i, st, d: states.append((i, st)), epochs.append)
    assert states == [(0, "running"), (1, "running")] and cap.running()
    assert a.on_block is not None and b.on_block is not None
    a.on_block(np.ones(800, np.float32))  # 50 ms block ending at 100.0
    now[0] = 100.25
    b.on_block(np.ones(800, np.float32))
    a.on_block(np.ones(800, np.float32))
    assert epochs == [100.0 - 0.05]
    assert got == [(0, 800, 1.0), (1, 4000, 0.0), (1, 800, 1.0), (0, 800, 1.0)]


def test_one_state_for_several_inputs_is_the_worst_of_them() -> None:
    """device_state of several inputs: running only when all run; a lost one shows."""
    assert combined_state(["running", "running"]) == "running"
    assert combined_state(["running", "lost"]) == "lost"
    assert combined_state(["finished", "running"]) == "finished"
    assert combined_state(["reopening", "lost"]) == "lost"
    assert combined_state([]) == "starting"
