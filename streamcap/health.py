"""What the daemon's status and watch loop decide, as pure functions of what they observe.

The daemon samples the capture source and the engine worker on its event loop and asks these
functions what to report and whether to stop; nothing here touches a thread, clock or socket.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config
from .events import SAMPLE_RATE


def dropped_frames(cfg: Config, dropped_blocks: int, dropped_samples: int) -> int:
    """Audio lost before recognition, in frames of ``audio.frame_ms``."""
    frame = SAMPLE_RATE * cfg.audio.frame_ms // 1000
    block_samples = SAMPLE_RATE * cfg.audio.block_ms // 1000
    return (dropped_blocks * block_samples + dropped_samples) // frame


@dataclass(frozen=True)
class PipelineView:
    """One look at the pipeline: the worker's and the capture source's state."""

    worker_alive: bool
    worker_error: BaseException | None
    source_finished: bool
    source_state: str
    source_alive: bool
    source_error: str | None
    source_description: str = ""


@dataclass(frozen=True)
class StopVerdict:
    """The pipeline should stop: why, and whether that is a failure (exit non-zero)."""

    reason: str
    failure: bool


def verdict(view: PipelineView) -> StopVerdict | None:
    """Whether the daemon should shut down by itself: a dead worker or capture is a failure,
    the end of a file (or stdin) input is not; ``None`` while everything runs."""
    if not view.worker_alive:
        return StopVerdict(f"the recognition worker stopped: {view.worker_error!r}", True)
    if view.source_finished:
        return StopVerdict(f"input finished ({view.source_description}); shutting down", False)
    if view.source_state == "stopped" and not view.source_alive:
        return StopVerdict(f"capture stopped: {view.source_error or 'unknown reason'}", True)
    return None
