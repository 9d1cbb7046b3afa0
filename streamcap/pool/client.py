"""The daemon's side of the pool: :class:`RayDecoder`, a hypothesis source on a Serve handle.

``connect()`` joins the Ray cluster at ``asr.ray.address`` (``auto``: this host is a node of it;
``ray://HEAD:10001``: Ray Client) and takes a handle to ``asr.ray.deployment`` of
``asr.ray.app``. ``decode()`` sends the request with the daemon's decoding settings and returns
the replica's hypothesis; anything that keeps it from answering within
``asr.ray.request_timeout_s`` (no cluster, no application, a replica that died mid-request, a
slow pool) raises :class:`~streamcap.errors.BackendUnavailable`, and the request is sent again on
the next try (the replica holds no state between requests, so a retry is safe). An exception
raised by the replica's own code is retried the same way up to ``APP_ERROR_LIMIT`` times in a
row (an application that stops or starts fails requests in flight so), then it is a
:class:`~streamcap.errors.ModelError`.

``decode_seconds`` adds up the replicas' decode time (of the batch each request was in);
:attr:`RayDecoder.trips` keeps the latest round trips with their replica and decode times, so
the transport's share (round trip minus time in the replica) can be measured.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..asr.decoder import DecodeRequest, Hypothesis
from ..config import AsrConfig
from ..errors import BackendUnavailable, ModelError

log = logging.getLogger(__name__)

_INIT_LOCK = threading.Lock()  # ray.init once per process, whichever decoder connects first


@dataclass(frozen=True)
class Trip:
    """One request's timings, seconds: round trip, in the replica, decoding its batch."""

    round_trip: float
    replica: float
    decode: float
    batch_size: int
    final: bool

    @property
    def overhead(self) -> float:
        """Transport and queueing outside the replica: round trip minus time in the replica."""
        return self.round_trip - self.replica


class RayDecoder:
    """Decode through the Ray Serve pool; see the module docstring."""

    APP_ERROR_LIMIT = 5  # replica-side failures in a row before they count as a bug

    def __init__(self, cfg: AsrConfig, keep_trips: int = 100_000) -> None:
        self.cfg = cfg
        self.decode_seconds = 0.0
        self.passes = 0
        self.trips: deque[Trip] = deque(maxlen=keep_trips)
        self.info: Any = None
        self._handle: Any = None
        self._multilingual: bool | None = None
        self._app_errors = 0  # replica-side failures in a row

    # --- connection ------------------------------------------------------------------------

    def connect(self) -> None:
        """Join the cluster and find the deployment; raise :class:`BackendUnavailable`."""
        import ray
        from ray import serve

        r = self.cfg.ray
        logging.getLogger("ray.serve").setLevel(logging.WARNING)  # no INFO lines per handle
        with _INIT_LOCK:
            try:
                if not ray.is_initialized():
                    probe(r.address, r.connect_timeout_s)
                    ray.init(address=r.address, log_to_driver=False, logging_level=logging.WARNING,
                             configure_logging=False)
                self._handle = serve.get_deployment_handle(r.deployment, r.app)
                ref = self._handle.info.remote()
                self.info = ref.result(timeout_s=r.connect_timeout_s)
            except Exception as exc:
                self._handle = None
                raise BackendUnavailable(
                    f"asr.ray: cannot reach deployment {r.deployment!r} of Serve application "
                    f"{r.app!r} at {r.address!r}: {_first_line(exc)}", r.retry_backoff_s
                ) from None
        if self._multilingual is None:
            self._multilingual = bool(self.info.multilingual)
        elif self._multilingual != bool(self.info.multilingual):
            kind = "multilingual" if self.info.multilingual else "English-only"
            raise ModelError(f"asr.ray: the pool now serves {self.info.model!r} ({kind}), "
                             "unlike when the daemon started")
        if self.info.model != self.cfg.model:
            log.warning("asr.model is %r but the pool serves %r", self.cfg.model, self.info.model)
        log.info("ASR pool: %s on %s/%s (replica %s, batches up to %d)", self.info.model,
                 self.info.device, self.info.compute_type, self.info.replica,
                 self.info.max_batch_size)

    def assume_multilingual(self, multilingual: bool) -> None:
        """Before the first connection: what the pool's model is expected to be (checked on
        connecting; used when the daemon starts on its local fallback)."""
        self._multilingual = multilingual

    # --- HypothesisSource ------------------------------------------------------------------

    @property
    def multilingual(self) -> bool:
        """Whether the pool's model is multilingual (asked on connecting, the first time)."""
        if self._multilingual is None:
            self.connect()
        assert self._multilingual is not None
        return self._multilingual

    def retune(self, cfg: AsrConfig) -> None:
        """New decoding settings travel with the next request."""
        self.cfg = cfg

    def decode(self, req: DecodeRequest) -> Hypothesis:
        from .replica import PoolRequest

        r = self.cfg.ray
        if self._handle is None:
            self.connect()
        t0 = time.monotonic()
        resp = None
        try:
            resp = self._handle.decode.remote(PoolRequest(req, self.cfg))
            reply = resp.result(timeout_s=r.request_timeout_s)
        except Exception as exc:
            if _is_application_error(exc):
                # The replica's code raised. While an application stops or starts, requests in
                # flight fail this way too, so a few in a row are retried like an outage; a
                # request that keeps failing is a bug and stops the daemon with the message.
                self._app_errors += 1
                why = f"the pool failed to decode: {_first_line(exc)}"
                if self._app_errors >= self.APP_ERROR_LIMIT:
                    raise ModelError(f"asr.ray: {why} ({self._app_errors} times in a row)"
                                     ) from None
                log.warning("asr.ray: %s (retried)", why)
                raise BackendUnavailable(f"asr.ray: {why}", r.retry_backoff_s) from None
            if resp is not None:
                try:
                    resp.cancel()
                except Exception:  # the request may be gone already
                    log.debug("cancel failed", exc_info=True)
            slow = isinstance(exc, TimeoutError) or type(exc).__name__ == "GetTimeoutError"
            why = (f"no answer within asr.ray.request_timeout_s={r.request_timeout_s:g} s"
                   if slow else _first_line(exc))
            raise BackendUnavailable(f"asr.ray: decode failed: {why}", r.retry_backoff_s) from None
        rtt = time.monotonic() - t0
        self._app_errors = 0
        self.passes += 1
        self.decode_seconds += reply.decode_s
        self.trips.append(Trip(rtt, reply.replica_s, reply.decode_s, reply.batch_size, req.final))
        hyp: Hypothesis = reply.hypothesis
        return hyp


def split_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST:PORT`` or ``ray://HOST:PORT`` (``[v6]:PORT`` too); ``None``
    for ``auto`` and anything without a port (pure)."""
    rest = address.strip()
    if rest.startswith("ray://"):
        rest = rest[len("ray://"):]
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def probe(address: str, timeout_s: float) -> None:
    """Fail fast (``ConnectionError``) when nothing listens at the address: ``ray.init`` on a
    dead address retries for minutes and cannot be interrupted."""
    import socket

    hp = split_address(address)
    if hp is None:
        return
    try:
        socket.create_connection(hp, timeout=min(timeout_s, 10.0)).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {hp[0]}:{hp[1]} ({exc.strerror or exc})"
                              ) from None


def _is_application_error(exc: BaseException) -> bool:
    """An exception raised by the replica's own code (a RayTaskError that is not about a dead
    or unreachable actor); those are not retried."""
    from ray import exceptions as rex

    return isinstance(exc, rex.RayTaskError) and not isinstance(
        exc, (rex.RayActorError, rex.ActorUnavailableError))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line[:200]}" if line else type(exc).__name__
