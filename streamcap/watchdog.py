"""Feeds systemd's watchdog while the pipeline lives (a thin shell on the daemon's loop).

:class:`~streamcap.service.WatchdogGate` decides (pure); :class:`WatchdogFeeder` samples the
worker and the capture source, sends ``WATCHDOG=1`` when the gate says so, and logs when it
stops or starts feeding.
"""

from __future__ import annotations

import logging
import time

from .asr.worker import EngineWorker
from .audio.sources import AudioSource
from .service import Liveness, Notifier, WatchdogGate

log = logging.getLogger("streamcap.daemon")


class WatchdogFeeder:
    """``check()`` once per round of the daemon's loop; a no-op without ``WATCHDOG_USEC``."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self._gate: WatchdogGate | None = None
        self._reason: str | None = None
        interval = notifier.watchdog_interval()
        if interval is not None:
            # A worker with audio waiting and no progress for this long counts as hung (the pings
            # stop, systemd restarts us); 10 s at least, as a long final decode is not a hang.
            self._gate = WatchdogGate(interval, stall_s=max(interval, 10.0))

    @property
    def interval_s(self) -> float | None:
        """How often to ping (None: no watchdog)."""
        return self._gate.interval_s if self._gate is not None else None

    def check(self, worker: EngineWorker, source: AudioSource) -> None:
        gate = self._gate
        if gate is None:
            return
        live = Liveness(capture_alive=source.alive or source.finished, worker_alive=worker.alive,
                        progress=worker.engine.audio_time, backlog_s=worker.queued_seconds)
        if gate.check(time.monotonic(), live):
            self.notifier.watchdog()
        if gate.reason != self._reason:
            self._reason = gate.reason
            if self._reason is not None:
                log.warning("not feeding the watchdog: %s", self._reason)
            else:
                log.info("feeding the watchdog again")
