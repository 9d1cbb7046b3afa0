"""What a daemon does while the ASR pool is away.

:class:`OutageState` is the pure part (time comes in as an argument): the backoff schedule and
how long the outage has lasted. :class:`ResilientDecoder` is the shell around the pool's
:class:`~streamcap.pool.client.RayDecoder`: it tries the pool at most once per backoff step,
and in between either decodes with a local model (``asr.ray.on_outage: local``) or raises
:class:`~streamcap.errors.BackendUnavailable` so that the worker keeps the request pending and
keeps taking audio (``on_outage: buffer``). A final still pending after ``asr.ray.buffer_s`` of
outage is given up (an empty hypothesis: the words its partials committed still come out), so
memory stays bounded in an outage that never ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..asr.decoder import DecodeRequest, Hypothesis, HypothesisSource
from ..config import AsrConfig, RayConfig
from ..errors import BackendUnavailable
from ..events import SAMPLE_RATE

log = logging.getLogger(__name__)


@dataclass
class OutageState:
    """Backoff and outage bookkeeping (pure: every method takes ``now``)."""

    backoff_s: float
    backoff_max_s: float
    buffer_s: float
    failures: int = 0
    since: float | None = None  # when the outage began (first failure)
    next_try: float = 0.0
    reason: str = ""

    def may_try(self, now: float) -> bool:
        """Whether the pool may be asked now (no outage, or the backoff wait is over)."""
        return now >= self.next_try

    def failed(self, now: float, reason: str) -> float:
        """Record a failure at ``now``; return how long to wait before the next try."""
        if self.since is None:
            self.since = now
        self.failures += 1
        self.reason = reason
        wait = min(self.backoff_max_s, self.backoff_s * 2.0 ** min(self.failures - 1, 30))
        self.next_try = now + wait
        return wait

    def succeeded(self, now: float) -> float:
        """Record a success; return how long the outage lasted (0 if there was none)."""
        lasted = 0.0 if self.since is None else now - self.since
        self.failures, self.since, self.next_try, self.reason = 0, None, 0.0, ""
        return lasted

    def retry_after(self, now: float) -> float:
        return max(0.0, self.next_try - now)

    def down_for(self, now: float) -> float:
        return 0.0 if self.since is None else now - self.since

    def gave_up(self, now: float) -> bool:
        """Whether the outage has outlasted the buffer (pending finals are given up)."""
        return self.since is not None and now - self.since > self.buffer_s

    def describe(self, now: float) -> str | None:
        if self.since is None:
            return None
        return (f"ASR pool unavailable for {self.down_for(now):.0f} s ({self.reason}); "
                f"retry in {self.retry_after(now):.1f} s")


class ResilientDecoder:
    """A :class:`HypothesisSource` over the pool that survives its outages (module docstring).

    ``fallback`` (``on_outage: local``) is made on first need by ``make_fallback`` unless
    given; ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        primary: HypothesisSource,
        cfg: RayConfig,
        *,
        fallback: HypothesisSource | None = None,
        make_fallback: Callable[[], HypothesisSource] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.cfg = cfg
        self.fallback = fallback
        self._make_fallback = make_fallback
        self._clock = clock
        self.state = OutageState(cfg.retry_backoff_s, cfg.retry_backoff_max_s, cfg.buffer_s)
        self.outages = 0
        self.finals_given_up = 0
        self.fallback_decodes = 0

    @property
    def degraded(self) -> str | None:
        """Why captions are degraded now (the pool is unavailable), or None."""
        return self.state.describe(self._clock())

    @property
    def multilingual(self) -> bool:
        return self.primary.multilingual

    @property
    def decode_seconds(self) -> float:
        local = self.fallback.decode_seconds if self.fallback is not None else 0.0
        return self.primary.decode_seconds + local

    def retune(self, cfg: AsrConfig) -> None:
        self.primary.retune(cfg)
        if self.fallback is not None:
            self.fallback.retune(cfg)

    def decode(self, req: DecodeRequest) -> Hypothesis:
        st = self.state
        if st.may_try(self._clock()):
            t0 = self._clock()
            try:
                hyp = self.primary.decode(req)
            except BackendUnavailable as exc:
                now = self._clock()
                log.debug("pool attempt failed after %.2f s: %s", now - t0, exc)
                if st.since is None:
                    self.outages += 1
                    log.warning("ASR pool unavailable: %s (captions held: on_outage=%s)",
                                exc, self.cfg.on_outage)
                st.failed(now, str(exc))
            else:
                lasted = st.succeeded(self._clock())
                if lasted:
                    log.warning("ASR pool back after %.1f s", lasted)
                return hyp
        return self._during_outage(req)

    def _during_outage(self, req: DecodeRequest) -> Hypothesis:
        now = self._clock()
        st = self.state
        if self.cfg.on_outage == "local":
            if self.fallback is None and self._make_fallback is not None:
                log.warning("loading the local model for the outage (on_outage: local)")
                self.fallback = self._make_fallback()
            if self.fallback is not None:
                self.fallback_decodes += 1
                t0 = self._clock()
                hyp = self.fallback.decode(req)
                log.debug("local fallback decode (%s, %.1f s of audio) took %.2f s",
                          "final" if req.final else "partial", len(req.audio) / SAMPLE_RATE,
                          self._clock() - t0)
                return hyp
        if req.final and not req.speculative and st.gave_up(now):
            self.finals_given_up += 1
            log.error("ASR pool away for %.0f s (> asr.ray.buffer_s): a pending final of "
                      "%.1f s is given up", st.down_for(now), len(req.audio) / SAMPLE_RATE)
            return Hypothesis(words=(), audio_end=req.offset + len(req.audio) / SAMPLE_RATE)
        raise BackendUnavailable(st.describe(now) or "ASR pool unavailable",
                                 max(0.05, st.retry_after(now)))
