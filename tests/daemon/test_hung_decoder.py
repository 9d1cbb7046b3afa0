"""A hung decoder in the real daemon (``STREAMCAP_FAULT_DECODE_HANG_AFTER``): the watchdog
pings to a real ``NOTIFY_SOCKET`` stop, and ``/healthz`` and the status tell."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.daemon_proc import (
    SONNET,
    STATUS_EVERY,
    Client,
    DaemonProc,
    NotifySocket,
    kinds,
    need,
    start_daemon,
)
from support.pulse import wait_until

from streamcap.faults import HANG_VAR

pytestmark = [pytest.mark.system, pytest.mark.slow]


# --- a hung decoder ----------------------------------------------------------------------

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s; the daemon calls 10 s without progress a hang


@dataclass
class Hung:
    d: DaemonProc
    client: Client
    before: list[str] = field(default_factory=list)
    window: list[str] = field(default_factory=list)
    healthz: tuple[int, str] = (0, "")
    healthz_at_start: tuple[int, str] = (0, "")
    code: int | None = None
    reason: str = ""


@pytest.fixture(scope="module")
def hung(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hung]:
    """A daemon on the sonnet whose decoder hangs after the warm-up and seven passes."""
    need(SONNET)
    tmp = tmp_path_factory.mktemp("hung")
    notify = NotifySocket()
    env = {k: v for k, v in os.environ.items() if k != "WATCHDOG_PID"}
    env.update(notify.env(WATCHDOG_USEC))
    d = start_daemon(tmp, ["--input", f"file:{SONNET}", *STATUS_EVERY,
                           "--set", "daemon.shutdown_timeout_s=1"],
                     env=env, extra_env={HANG_VAR: "8"})
    try:
        d.wait_listening(90)
        h = Hung(d, Client(d.port))
        # The listening line comes just before capture starts: wait for a running device.
        wait_until(lambda: any(m["device_state"] == "running" for m in h.client.of("status")),
                   20, "capture running")
        # Healthy before the hang (a decode that is merely slow on a loaded machine may make
        # it unhealthy for a moment: poll).
        def healthy() -> bool:
            h.healthz_at_start = d.http_get("/healthz")
            return h.healthz_at_start[0] == 200

        with contextlib.suppress(AssertionError):
            wait_until(healthy, 20, "a healthy daemon before the hang")
        # A decode slower than the stall limit on a loaded machine also stops the pings for a
        # while: look for the watchdog line only after the injected hang began.
        hang = d.wait_log(r"fault injection: decode \d+ blocks for good", 60)
        m = d.wait_log(r"not feeding the watchdog: (.*)", 60, after=hang.end())
        seen = time.monotonic()
        h.reason = m.group(1)
        h.before = notify.between(0.0, seen)
        # Observe six ping intervals, starting one second after the log line was seen: a ping
        # sent before the line may still be on its way to the reader thread for a moment.
        time.sleep(4.0)
        h.window = notify.between(seen + 1.0)
        h.healthz = d.http_get("/healthz")
        d.send(signal.SIGTERM)
        h.code = d.wait_exit(30)
        yield h
    finally:
        d.stop()
        notify.close()


def test_hung_decoder_stops_the_watchdog_pings(hung: Hung) -> None:
    """Once the decoder hangs, WATCHDOG=1 stops (systemd would restart us) while the daemon
    still sends STATUS, and the log says why."""
    assert hung.d.proc.returncode is not None
    assert "decodes hang after 8 pass(es)" in hung.d.stderr(None)
    before = kinds(hung.before)
    assert "READY" in before and "WATCHDOG" in before[before.index("READY"):]
    assert "WATCHDOG" not in kinds(hung.window), hung.window
    assert "STATUS" in kinds(hung.window)
    assert "made no progress" in hung.reason and "audio waiting" in hung.reason


def test_hung_decoder_shows_in_the_status_lag(hung: Hung) -> None:
    """The status messages show the lag growing past the stall limit while the decoder hangs."""
    lags = [m["lag"] for m in hung.client.of("status")]
    assert lags and lags[0] < 2.0
    assert max(lags) >= 10.0, lags


def test_hung_decoder_makes_healthz_503(hung: Hung) -> None:
    """/healthz answers 200 before the hang and 503 once the watchdog gate declared it."""
    assert hung.healthz_at_start[0] == 200
    assert hung.healthz[0] == 503, hung.healthz


def test_hung_decoder_status_line_says_why(hung: Hung) -> None:
    """The STATUS= line sent to systemd during the hang names it (no progress)."""
    statuses = [m for m in hung.window if m.startswith("STATUS=")]
    assert statuses and "progress" in statuses[-1], statuses


def test_hung_decoder_sigterm_ends_after_the_shutdown_timeout(hung: Hung) -> None:
    """SIGTERM with the decoder hung still ends the process, with exit code 1 (timed out)."""
    assert hung.code == 1, hung.d.stderr()
    assert "took longer than daemon.shutdown_timeout_s" in hung.d.stderr(None)
