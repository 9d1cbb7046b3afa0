"""Fault injection into the real decoder: a test and diagnostic facility, off unless asked for.

Environment variables, read by :func:`streamcap.runner.make_decoder` before the model loads:

``STREAMCAP_FAULT_DECODE_DELAY_S=SECONDS``
    every decode takes this much longer (the real model still decodes; the wait comes after).
``STREAMCAP_FAULT_DECODE_HANG_AFTER=N``
    the first ``N`` decodes run normally, every later one blocks forever (the daemon's warm-up
    is the first decode, so ``N=1`` hangs the first decode of real audio).

With either set, :func:`wrap_decoder` returns a :class:`FaultyDecoder` that delegates to the real
one, and a warning is logged, so that a slowed or hanging daemon is never a mystery. A bad value
is a :class:`~streamcap.errors.ConfigError` naming the variable. Tests use this to drive the real
``streamcap run`` process into sustained overload, a shutdown timeout or a hung worker.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .asr.decoder import DecodeRequest, Hypothesis, HypothesisSource
from .config import AsrConfig
from .errors import ConfigError

log = logging.getLogger(__name__)

DELAY_VAR = "STREAMCAP_FAULT_DECODE_DELAY_S"
HANG_VAR = "STREAMCAP_FAULT_DECODE_HANG_AFTER"


@dataclass(frozen=True)
class DecodeFaults:
    """What to do to every decode: add ``delay_s``; block forever after ``hang_after`` passes."""

    delay_s: float = 0.0
    hang_after: int | None = None

    @property
    def active(self) -> bool:
        return self.delay_s > 0 or self.hang_after is not None

    def describe(self) -> str:
        parts = []
        if self.delay_s > 0:
            parts.append(f"every decode delayed by {self.delay_s:g} s ({DELAY_VAR})")
        if self.hang_after is not None:
            parts.append(f"decodes hang after {self.hang_after} pass(es) ({HANG_VAR})")
        return "; ".join(parts) or "none"


def faults_from_env(env: Mapping[str, str]) -> DecodeFaults:
    """Parse the fault variables of ``env`` (unset or empty: no fault); raises ConfigError."""
    delay_raw = env.get(DELAY_VAR, "").strip()
    hang_raw = env.get(HANG_VAR, "").strip()
    delay = 0.0
    if delay_raw:
        try:
            delay = float(delay_raw)
        except ValueError:
            delay = math.nan
        if not (math.isfinite(delay) and 0 <= delay <= 3600):
            raise ConfigError(DELAY_VAR, f"expected seconds 0..3600, got {delay_raw[:40]!r}")
    hang: int | None = None
    if hang_raw:
        if not (hang_raw.isascii() and hang_raw.isdigit()) or len(hang_raw) > 9:
            raise ConfigError(HANG_VAR,
                              f"expected a pass count 0..999999999, got {hang_raw[:40]!r}")
        hang = int(hang_raw)
    return DecodeFaults(delay, hang)


class FaultyDecoder:
    """Delegates to a real decoder, slowing or hanging its decodes as ``faults`` says."""

    def __init__(self, inner: HypothesisSource, faults: DecodeFaults) -> None:
        self.inner = inner
        self.faults = faults
        self.calls = 0
        self.hanging = threading.Event()
        """Set once a decode is blocked (for tests)."""
        self._release = threading.Event()
        self._injected = 0.0  # seconds the faults added to decodes

    def decode(self, req: DecodeRequest) -> Hypothesis:
        t0 = time.monotonic()
        self.calls += 1
        hang_after = self.faults.hang_after
        if hang_after is not None and self.calls > hang_after and not self._release.is_set():
            if not self.hanging.is_set():
                self.hanging.set()
                log.warning("fault injection: decode %d blocks for good (%s=%d)", self.calls,
                            HANG_VAR, hang_after)
            self._release.wait()
        if self.faults.delay_s > 0:
            time.sleep(self.faults.delay_s)
        self._injected += time.monotonic() - t0
        return self.inner.decode(req)

    def release(self) -> None:
        """Let blocked and later decodes through (a test's way out of a hang)."""
        self._release.set()

    def retune(self, cfg: AsrConfig) -> None:
        self.inner.retune(cfg)

    @property
    def multilingual(self) -> bool:
        return self.inner.multilingual

    @property
    def decode_seconds(self) -> float:
        """The real decoder's time plus what the faults added: a slowed decoder is slow."""
        return self.inner.decode_seconds + self._injected


def wrap_decoder(decoder: HypothesisSource, faults: DecodeFaults) -> HypothesisSource:
    """``decoder`` itself, or a :class:`FaultyDecoder` around it when ``faults`` are active."""
    if not faults.active:
        return decoder
    log.warning("fault injection active: %s (a test facility; unset the variables for normal "
                "operation)", faults.describe())
    return FaultyDecoder(decoder, faults)
