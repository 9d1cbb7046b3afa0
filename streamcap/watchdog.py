"""Feeds systemd's watchdog while the pipeline lives (a thin shell on the daemon's loop).

:class:`~streamcap.service.WatchdogGate` decides (pure); :class:`WatchdogFeeder` samples the
worker and the capture source, sends ``WATCHDOG=1`` when the gate says so, and logs when it
stops or starts feeding.
"""

from __future__ import annotations

import logging
import time

from .asr.worker import EngineWorker
from .service import Liveness, Notifier, WatchdogGate

log = logging.getLogger("streamcap.daemon")


class WatchdogFeeder:
    """``check()`` once per round of the daemon's loop.

    The stall check always runs (``/healthz`` and the status line report a hung worker); the
    ``WATCHDOG=1`` pings are sent only when systemd asked for them (``WATCHDOG_USEC``).
    """

    #: A worker with audio waiting and no progress for this long counts as hung; a long final
    #: decode on a slow machine is not a hang.
    STALL_S = 10.0

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        interval = notifier.watchdog_interval()
        self._pings = interval is not None
        self._gate = WatchdogGate(interval or 1.0, stall_s=max(interval or 0.0, self.STALL_S))
        self._logged: str | None = None

    @property
    def interval_s(self) -> float | None:
        """How often to ping (None: systemd asked for no watchdog)."""
        return self._gate.interval_s if self._pings else None

    @property
    def problem(self) -> str | None:
        """Why the pipeline is not healthy (a stalled or dead worker or capture), or None."""
        return self._gate.reason

    def check(self, worker: EngineWorker, capture_alive: bool) -> None:
        """``capture_alive``: some input still captures (or ended normally)."""
        gate = self._gate
        live = Liveness(capture_alive=capture_alive, worker_alive=worker.alive,
                        progress=worker.audio_time, backlog_s=worker.queued_seconds)
        if gate.check(time.monotonic(), live) and self._pings:
            self.notifier.watchdog()
        # Log when the kind of problem changes, not every second its figures do.
        kind = None if gate.reason is None else gate.reason.split(" for ")[0]
        if kind != self._logged:
            self._logged = kind
            if gate.reason is not None:
                log.warning("%s: %s", "not feeding the watchdog" if self._pings else "unhealthy",
                            gate.reason)
            else:
                log.info("feeding the watchdog again" if self._pings else "healthy again")
