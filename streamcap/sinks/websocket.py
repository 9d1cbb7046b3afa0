"""The caption server: one engine, any number of WebSocket clients, plus HTTP routes.

The protocol is documented in ``docs/protocol.md``; this module implements it.

Pure parts (no sockets, clocks or tasks; unit-tested on their own):

* :class:`Envelope` numbers events (``seq``) and builds the JSON envelope once per event;
* :class:`ReplayBuffer` keeps the last finals for clients that resume with ``?since=SEQ``;
* :class:`ClientQueue` is one client's bounded queue with the drop policy: a newer partial
  of the same utterance (or a newer status) replaces the queued one; when the queue is full
  partials, status and VAD messages are dropped first; when it is full of finals the client
  is too slow and must be disconnected (close code 1013);
* :func:`check_request` decides routes, Host/Origin rules, token auth and query parameters;
* :func:`parse_client_frame` judges what a client sent.

The shell, :class:`CaptionServer`, runs them on ``websockets.asyncio.server``: one relay task
per client writes that client's queue to its socket, so a slow client never slows the engine
or the other clients.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import enum
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import re
import socket
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlsplit

from prometheus_client import CollectorRegistry
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .. import __version__
from ..config import ServerConfig
from ..errors import ConfigError, ProtocolError
from ..events import Event, FinalCaption, PartialCaption, Session, StatusEvent
from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..metrics import Metrics

log = logging.getLogger("streamcap.server")

PROTOCOL_VERSION: Final = 1

CLOSE_GOING_AWAY: Final = 1001
CLOSE_UNSUPPORTED_DATA: Final = 1003
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_MESSAGE_TOO_BIG: Final = 1009
CLOSE_TRY_AGAIN_LATER: Final = 1013

#: invalid text frames a client may send (each answered with an ``error``) before it is closed
MAX_CLIENT_ERRORS: Final = 8
#: messages that a newer one makes useless, and the ones a full queue drops first
SUPERSEDED: Final = frozenset({"partial", "status"})
DROPPABLE: Final = frozenset({"partial", "status", "vad"})
EVENT_TYPES: Final = frozenset({"partial", "final", "vad", "status", "error"})
QUERY_PARAMS: Final = ("events", "last", "session", "since", "token")
ROUTES: Final = ("/", "/healthz", "/metrics", "/overlay")

_SESSION_RE = re.compile(r"[0-9A-Za-z_-]{1,64}")
_HOSTNAME_RE = re.compile(r"[0-9a-z]([0-9a-z.-]{0,252})?")


# --- envelope ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HelloInfo:
    """What the ``hello`` message tells a client about the running daemon."""

    model: str
    language: str
    audio_device: str
    version: str = __version__


@dataclass(frozen=True)
class Outgoing:
    """One server message, serialised once and shared by every client queue.

    ``body`` is the JSON object without its closing brace; :meth:`render` appends the
    per-send fields (``replay`` and the send wall time ``t``).
    """

    seq: int
    type: str
    body: str
    utterance_id: int | None = None
    emitted: float | None = None  # wall time of emission; None for per-connection messages

    def render(self, t: float, replay: bool = False) -> str:
        tail = ',"replay":true' if replay else ""
        return f'{self.body}{tail},"t":{t:.6f}}}'


class Envelope:
    """Numbers the events of one session and wraps them in the ``v``/``seq``/``session``
    envelope (pure: the caller passes the wall times)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._seq = 0

    @property
    def head(self) -> int:
        """The seq of the last event sealed (0 before the first)."""
        return self._seq

    def _body(self, seq: int, fields: dict[str, Any]) -> str:
        d: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": fields["type"], "seq": seq,
                             "session": self.session.id}
        for k, v in fields.items():
            if k not in d:
                d[k] = v
        text = json.dumps(d, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text[:-1]

    def seal(self, event: Event, emitted: float) -> Outgoing:
        """Give ``event`` the next seq and serialise it with its emission wall time."""
        self._seq += 1
        fields = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in event.to_dict().items()
        }
        fields["emitted"] = round(emitted, 6)
        uid = event.utterance_id if isinstance(event, (PartialCaption, FinalCaption)) else None
        return Outgoing(self._seq, event.type, self._body(self._seq, fields), uid, emitted)

    def direct(self, type_: str, fields: dict[str, Any] | None = None) -> Outgoing:
        """A per-connection message (``hello``, ``pong``, an ``error`` reply): it carries the
        current head seq and is never replayed."""
        return Outgoing(self._seq, type_, self._body(self._seq, {"type": type_, **(fields or {})}))


# --- replay buffer ----------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """The finals a (re)connecting client gets first, and whether some were already lost."""

    messages: tuple[Outgoing, ...]
    gap: bool


class ReplayBuffer:
    """The last ``capacity`` finals, for clients that resume with ``since``."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._buf: deque[Outgoing] = deque()
        self._evicted_upto = 0  # highest seq of a final that fell out of the buffer

    def __len__(self) -> int:
        return len(self._buf)

    def append(self, msg: Outgoing) -> None:
        if self.capacity <= 0:
            self._evicted_upto = msg.seq
            return
        self._buf.append(msg)
        while len(self._buf) > self.capacity:
            self._evicted_upto = self._buf.popleft().seq

    def select(
        self,
        *,
        since: int | None,
        last: int,
        head: int,
        same_session: bool = True,
    ) -> Replay:
        """Finals to send first.

        With ``since``: every buffered final with ``seq > since``; a ``since`` from another
        session (``same_session`` false) or ahead of ``head`` replays the whole buffer. Without
        ``since``: the last ``last`` finals. ``gap`` is true when finals the client asked for
        had already been evicted.
        """
        if since is None:
            if last <= 0:
                return Replay((), False)
            msgs = tuple(self._buf)[-last:]
            return Replay(msgs, False)
        if not same_session or since > head:
            since = 0
        msgs = tuple(m for m in self._buf if m.seq > since)
        return Replay(msgs, since < self._evicted_upto)


# --- per-client queue -------------------------------------------------------------------


class Offer(enum.Enum):
    QUEUED = "queued"  # in the queue (maybe replacing a superseded message)
    FILTERED = "filtered"  # the client did not ask for this type
    DROPPED = "dropped"  # the queue is full and this message may be lost
    OVERFLOW = "overflow"  # the queue is full of messages that must not be lost


class ClientQueue:
    """One client's bounded queue with the drop policy (pure; see the module docstring).

    ``on_drop(type)`` is called for every message lost to the policy.
    """

    def __init__(
        self,
        maxsize: int,
        types: frozenset[str] | None = None,
        on_drop: Callable[[str], None] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.types = types
        self._on_drop = on_drop
        self._q: deque[Outgoing] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def _drop(self, index: int) -> None:
        msg = self._q[index]
        del self._q[index]
        if self._on_drop is not None:
            self._on_drop(msg.type)

    def offer(self, msg: Outgoing, *, direct: bool = False) -> Offer:
        """Queue ``msg`` under the policy; ``direct`` messages (hello, pong, replies) bypass
        the type filter."""
        if not direct and self.types is not None and msg.type not in self.types:
            return Offer.FILTERED
        if msg.type in SUPERSEDED and msg.emitted is not None:
            for i, old in enumerate(self._q):
                if (
                    old.type == msg.type
                    and old.utterance_id == msg.utterance_id
                    and old.emitted is not None
                ):
                    self._drop(i)
                    break
        if len(self._q) >= self.maxsize:
            for i, old in enumerate(self._q):
                if old.type in DROPPABLE and old.emitted is not None:
                    self._drop(i)
                    break
            else:
                if msg.type in DROPPABLE and not direct:
                    if self._on_drop is not None:
                        self._on_drop(msg.type)
                    return Offer.DROPPED
                return Offer.OVERFLOW
        self._q.append(msg)
        return Offer.QUEUED

    def pop(self) -> Outgoing | None:
        return self._q.popleft() if self._q else None

    def clear(self) -> None:
        self._q.clear()


# --- client frames ----------------------------------------------------------------------


class ClientFrameError(ProtocolError):
    """A frame the protocol does not allow; ``close_code`` set means the client is closed,
    otherwise it gets an ``error`` message with ``code``."""

    def __init__(self, code: str, message: str, close_code: int | None = None) -> None:
        self.code = code
        self.message = message
        self.close_code = close_code
        super().__init__(message)


def parse_client_frame(frame: str | bytes, max_bytes: int) -> Literal["ping"]:
    """Judge one frame from a client; the only request is ``{"type": "ping"}``."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        raise ClientFrameError(
            "binary_frame", "binary frames are not accepted", CLOSE_UNSUPPORTED_DATA
        )
    size = len(frame.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ClientFrameError(
            "too_big", f"message of {size} bytes exceeds {max_bytes}", CLOSE_MESSAGE_TOO_BIG
        )
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        raise ClientFrameError("bad_json", "message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ClientFrameError("bad_message", "message must be a JSON object")
    kind = obj.get("type")
    if kind == "ping":
        return "ping"
    shown = kind if isinstance(kind, str) else json.dumps(kind)
    raise ClientFrameError(
        "unknown_type", f"unknown message type {shown[:40]!r} (only 'ping' is accepted)"
    )


# --- HTTP request checks ----------------------------------------------------------------


class RequestRejected(ProtocolError):
    """An HTTP request refused with ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")


@dataclass(frozen=True)
class ClientParams:
    """The query parameters of a WebSocket connection."""

    since: int | None = None
    last: int = 0
    session: str | None = None
    finals_only: bool = False


@dataclass(frozen=True)
class Checked:
    """An admitted request: its route, the validated ``host[:port]`` and the parameters."""

    route: str
    host: str
    params: ClientParams = ClientParams()


def _split_host(host: str) -> tuple[str, str | None]:
    """``name[:port]`` or ``[v6][:port]`` into (name, port); raises ValueError if malformed."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise ValueError(host)
        name, rest = host[1:end], host[end + 1 :]
        ipaddress.IPv6Address(name.split("%")[0])
        if rest and not (rest.startswith(":") and rest[1:].isdigit() and len(rest) <= 6):
            raise ValueError(host)
        return f"[{name}]", rest[1:] or None
    name, sep, port = host.rpartition(":")
    if not sep:
        name, port = host, ""
    elif not (port.isdigit() and len(port) <= 5):
        raise ValueError(host)
    return name, port or None


def _origin_host(origin: str) -> str | None:
    parts = urlsplit(origin)
    return parts.hostname


def _allowed_host_names(cfg: ServerConfig, local_names: Iterable[str]) -> set[str]:
    names = {"localhost", *(n.lower() for n in local_names)}
    names.add(cfg.host.lower())
    for o in cfg.allowed_origins:
        h = _origin_host(o.strip().lower())
        if h:
            names.add(h)
    return names


def _norm_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def _parse_int(name: str, raw: str, lo: int, hi: int) -> int:
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not lo <= int(raw) <= hi:
        raise RequestRejected(400, f"{name}: expected an integer {lo}..{hi}, got {raw[:40]!r}")
    return int(raw)


def _parse_query(query: str, cfg: ServerConfig) -> tuple[ClientParams, str | None]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=len(QUERY_PARAMS))
    except ValueError:
        raise RequestRejected(400, "too many query parameters") from None
    seen: dict[str, str] = {}
    for k, v in pairs:
        if k not in QUERY_PARAMS:
            raise RequestRejected(
                400, f"unknown query parameter {k[:40]!r} (known: {', '.join(QUERY_PARAMS)})"
            )
        if k in seen:
            raise RequestRejected(400, f"query parameter {k!r} given twice")
        seen[k] = v
    since = _parse_int("since", seen["since"], 0, 2**62) if "since" in seen else None
    last = _parse_int("last", seen["last"], 0, 1_000_000) if "last" in seen else 0
    session = seen.get("session")
    if session is not None and not _SESSION_RE.fullmatch(session):
        raise RequestRejected(400, f"session: expected a session id, got {session[:40]!r}")
    events = seen.get("events", "all")
    if events not in ("all", "final"):
        raise RequestRejected(400, f"events: expected 'all' or 'final', got {events[:40]!r}")
    params = ClientParams(since=since, last=last, session=session, finals_only=events == "final")
    return params, seen.get("token")


def _check_token(cfg: ServerConfig, authorization: str | None, query_token: str | None) -> None:
    if cfg.token is None:
        return
    given: str | None = None
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise RequestRejected(401, "Authorization: expected 'Bearer TOKEN'")
        given = value.strip()
    elif query_token is not None:
        given = query_token
    if given is None:
        raise RequestRejected(401, "missing token (send 'Authorization: Bearer TOKEN' or ?token=)")
    if not hmac.compare_digest(given.encode("utf-8", "replace"), cfg.token.encode("utf-8")):
        raise RequestRejected(401, "wrong token")


def check_request(
    path: str,
    *,
    host: str | None,
    origin: str | None,
    authorization: str | None,
    cfg: ServerConfig,
    local_names: Iterable[str] = (),
    method: str = "GET",
) -> Checked:
    """Admit or refuse one HTTP request (pure).

    Rules: the ``Host`` must be an IP address, ``localhost``, the configured host, a name of
    this machine (``local_names``) or the host of an allowed origin, which defeats DNS
    rebinding. WebSocket requests (``/``) with an ``Origin`` are admitted only from this
    server's own pages (``http(s)://<Host>``) or ``server.allowed_origins``; requests without
    ``Origin`` (OBS, scripts) are admitted. With ``server.token`` set, ``/`` and ``/metrics``
    need it (``Authorization: Bearer`` or ``?token=``); ``/healthz`` and ``/overlay`` (which
    holds no captions) do not.
    """
    if method != "GET":
        raise RequestRejected(405, f"method {method[:20]!r} not allowed (only GET)")
    parts = urlsplit(path)
    route = parts.path
    if route not in ROUTES:
        raise RequestRejected(
            404, f"no such path {route[:60]!r} (try / /healthz /metrics /overlay)"
        )
    if host is None or not host.strip():
        raise RequestRejected(400, "missing Host header")
    host = host.strip().lower()
    try:
        name, port = _split_host(host)
    except ValueError:
        raise RequestRejected(400, f"malformed Host header {host[:60]!r}") from None
    is_ip = name.startswith("[")
    if not is_ip:
        try:
            ipaddress.IPv4Address(name)
            is_ip = True
        except ValueError:
            is_ip = False
    if not is_ip and not (
        _HOSTNAME_RE.fullmatch(name) and name in _allowed_host_names(cfg, local_names)
    ):
        raise RequestRejected(
            403,
            f"Host {host[:60]!r} is not a name of this server (DNS rebinding?); "
            "list the page origin in server.allowed_origins",
        )
    clean_host = f"{name}:{port}" if port else name
    if route in ("/healthz", "/overlay"):
        return Checked(route, clean_host)
    params, query_token = _parse_query(parts.query, cfg)
    if route == "/" and origin is not None:
        o = _norm_origin(origin)
        own = {f"http://{clean_host}", f"https://{clean_host}"}
        allowed = {_norm_origin(a) for a in cfg.allowed_origins}
        if o not in own and o not in allowed:
            raise RequestRejected(
                403,
                f"Origin {origin[:80]!r} is not allowed (only this server's /overlay and "
                "server.allowed_origins)",
            )
    _check_token(cfg, authorization, query_token)
    if route == "/metrics":
        return Checked(route, clean_host)
    return Checked(route, clean_host, params)


# --- overlay page -----------------------------------------------------------------------


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def load_overlay() -> tuple[bytes, str]:
    """The overlay page and the script/style source list of its Content-Security-Policy."""
    html = resources.files("streamcap.sinks").joinpath("overlay.html").read_text("utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    policy = (
        "script-src " + " ".join(_csp_hash(s) for s in scripts)
        + "; style-src " + " ".join(_csp_hash(s) for s in styles)
    )
    return html.encode("utf-8"), policy


# --- the server shell -------------------------------------------------------------------


@dataclass
class _Client:
    ws: ServerConnection
    queue: ClientQueue
    peer: str
    pending: deque[tuple[Outgoing, bool]] = dataclasses.field(default_factory=deque)
    wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    relay: asyncio.Task[None] | None = None
    draining: bool = False
    errors: int = 0
    last_seq: int = 0

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def next(self) -> tuple[Outgoing, bool] | None:
        if self.pending:
            return self.pending.popleft()
        msg = self.queue.pop()
        return None if msg is None else (msg, False)


@dataclass(frozen=True)
class ClientBacklog:
    """What the server holds for one client right now."""

    peer: str
    queued: int
    write_buffer_bytes: int


def _reason(text: str) -> str:
    """A close reason cut to the 123 bytes a close frame can carry."""
    data = text.encode("utf-8")[:123]
    return data.decode("utf-8", "ignore")


def _peer(ws: ServerConnection) -> str:
    addr = ws.remote_address
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


def _single_header(headers: Headers, name: str) -> str | None:
    values = headers.get_all(name)
    if len(values) > 1:
        raise RequestRejected(400, f"{name} header given {len(values)} times")
    return values[0] if values else None


class CaptionServer:
    """Serves captions over WebSocket and ``/healthz``, ``/metrics``, ``/overlay`` over HTTP,
    all on one port.

    ``publish(event)`` runs on the event loop; ``publish_threadsafe(event)`` from any thread
    (the engine worker). Events published while no client is connected still reach the replay
    buffer. ``health()`` says whether capture and worker are alive (for ``/healthz``).
    """

    def __init__(
        self,
        cfg: ServerConfig,
        session: Session,
        hello: HelloInfo,
        health: Callable[[], bool] = lambda: True,
        registry: CollectorRegistry | None = None,
        *,
        ping_interval: float | None = 20.0,
        close_timeout: float = 2.0,
        send_buffer_bytes: int | None = 64 * 1024,
    ) -> None:
        self.cfg = cfg
        self.session = session
        self.hello = hello
        self.metrics = Metrics(registry)
        self._health = health
        self._ping_interval = ping_interval
        self._close_timeout = close_timeout
        self._send_buffer_bytes = send_buffer_bytes
        self._env = Envelope(session)
        self._replay = ReplayBuffer(cfg.replay_finals)
        self._clients: set[_Client] = set()
        self._params: weakref.WeakKeyDictionary[ServerConnection, ClientParams] = (
            weakref.WeakKeyDictionary()
        )
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._overlay, self._overlay_csp = load_overlay()
        self._local_names = {socket.gethostname().lower()}
        self._port = cfg.port
        m = self.metrics
        self._sent = {t: m.messages_sent.labels(type=t) for t in (*EVENT_TYPES, "hello", "pong")}
        self._dropped = {t: m.messages_dropped.labels(type=t) for t in EVENT_TYPES}

    # -- properties ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the real one when the configured port is 0)."""
        return self._port

    @property
    def clients(self) -> int:
        return len(self._clients)

    @property
    def head_seq(self) -> int:
        return self._env.head

    def backlog(self) -> list[ClientBacklog]:
        """Queued messages and unsent socket bytes of every connected client."""
        out = []
        for c in self._clients:
            transport = c.ws.transport
            size = transport.get_write_buffer_size() if transport is not None else 0
            out.append(ClientBacklog(c.peer, len(c.queue) + len(c.pending), size))
        return out

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve; raises :class:`ConfigError` naming ``server.port``/``server.host``
        when the address cannot be bound."""
        if self._server is not None:
            return
        self._loop = asyncio.get_running_loop()
        try:
            self._server = await serve(
                self._handler,
                self.cfg.host,
                self._port,  # the configured port, or after a restart the one bound before
                process_request=self._process_request,
                compression=None,  # same bytes to every client; deflate would cost CPU per client
                max_size=self.cfg.max_message_bytes,
                max_queue=4,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_interval,
                close_timeout=self._close_timeout,
                server_header=f"streamcap/{__version__}",
            )
        except socket.gaierror as exc:
            raise ConfigError("server.host", f"cannot resolve {self.cfg.host!r}: {exc}") from None
        except OSError as exc:
            raise ConfigError(
                "server.port",
                f"cannot listen on {self.cfg.host}:{self.cfg.port}: "
                f"{exc.strerror or exc}",
            ) from None
        self._port = int(self._server.sockets[0].getsockname()[1])
        log.info("caption server listening on %s:%d", self.cfg.host, self._port)

    async def stop(
        self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down"
    ) -> None:
        """Stop listening, let every client's relay send what is queued (bounded by the close
        timeout), close each client with ``code``/``reason``, and wait for the handlers."""
        server = self._server
        if server is None:
            return
        self._server = None
        server.close(close_connections=False)
        clients = list(self._clients)
        relays = [c.relay for c in clients if c.relay is not None]
        for c in clients:
            c.draining = True
            c.wake.set()
        if relays:
            await asyncio.wait(relays, timeout=self._close_timeout)
        if clients:
            await asyncio.gather(*(self._close(c, code, reason) for c in clients))
        try:
            await asyncio.wait_for(server.wait_closed(), self._close_timeout * 2 + 1)
        except TimeoutError:
            log.warning("caption server: handlers still running after stop")
        for task in list(self._tasks):
            task.cancel()
        self._clients.clear()
        self.metrics.clients.set(0)

    # -- publishing ----------------------------------------------------------------------

    def publish(self, event: Event, emitted: float | None = None) -> None:
        """Send ``event`` to every client (call on the event loop)."""
        now = time.time() if emitted is None else emitted
        m = self.metrics
        if isinstance(event, StatusEvent):
            event = dataclasses.replace(event, clients=len(self._clients))
            m.observe_status(event.lag, event.rtf, event.dropped_frames)
        elif isinstance(event, (PartialCaption, FinalCaption)):
            m.observe_caption_latency(event.type, now - (self.session.epoch + event.end))
        msg = self._env.seal(event, now)
        m.events.labels(type=msg.type).inc()
        if msg.type == "final":
            self._replay.append(msg)
        for c in list(self._clients):
            self._offer(c, msg)

    def publish_threadsafe(self, event: Event) -> None:
        """Publish from another thread (after :meth:`start`); the emission time is taken
        here, so the loop hop counts as delivery delay."""
        emitted = time.time()
        loop = self._loop
        if loop is None:
            raise RuntimeError("CaptionServer.publish_threadsafe() called before start()")
        with contextlib.suppress(RuntimeError):  # loop closed: the process is shutting down
            loop.call_soon_threadsafe(self.publish, event, emitted)

    def _offer(self, c: _Client, msg: Outgoing, *, direct: bool = False) -> None:
        result = c.queue.offer(msg, direct=direct)
        if result is Offer.QUEUED:
            c.wake.set()
        elif result is Offer.OVERFLOW:
            self._drop_slow(c)

    def _count_drop(self, type_: str) -> None:
        counter = self._dropped.get(type_)
        if counter is not None:
            counter.inc()

    def _drop_slow(self, c: _Client) -> None:
        if c not in self._clients:
            return
        self._forget(c)
        c.queue.clear()
        c.pending.clear()
        self.metrics.disconnects.labels(reason="slow").inc()
        log.warning(
            "client %s too slow: %d finals queued; closing with %d",
            c.peer, c.queue.maxsize, CLOSE_TRY_AGAIN_LATER,
        )
        if c.relay is not None:
            c.relay.cancel()
        self._spawn(self._close(
            c, CLOSE_TRY_AGAIN_LATER, f"client too slow; reconnect with since={c.last_seq}"
        ))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget(self, c: _Client) -> None:
        self._clients.discard(c)
        self.metrics.clients.set(len(self._clients))

    async def _close(self, c: _Client, code: int, reason: str) -> None:
        """Close a client; abort the TCP connection if it does not take the close frame in
        time (a client that never reads would otherwise block the close forever)."""
        try:
            await asyncio.wait_for(c.ws.close(code, _reason(reason)), self._close_timeout)
        except (TimeoutError, ConnectionClosed, OSError):
            if c.ws.transport is not None:
                c.ws.transport.abort()

    # -- HTTP ----------------------------------------------------------------------------

    def _respond(
        self, status: int, body: bytes, content_type: str, extra: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        headers = Headers([
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Connection", "close"),
            *extra,
        ])
        return Response(status, HTTPStatus(status).phrase, headers, body)

    def _text(self, status: int, text: str) -> Response:
        return self._respond(status, (text + "\n").encode("utf-8"), "text/plain; charset=utf-8")

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        try:
            checked = check_request(
                request.path,
                host=_single_header(request.headers, "Host"),
                origin=_single_header(request.headers, "Origin"),
                authorization=_single_header(request.headers, "Authorization"),
                cfg=self.cfg,
                local_names=self._local_names,
                method=request.method,
            )
        except RequestRejected as exc:
            log.info("refused %s %s: %d %s", _peer(ws), urlsplit(request.path).path[:60],
                     exc.status, exc.message)
            return self._text(exc.status, exc.message)
        if checked.route == "/healthz":
            try:
                ok = bool(self._health())
            except Exception as exc:  # a broken probe is an unhealthy daemon, not a crash
                return self._text(503, f"unhealthy: health check failed: {exc}")
            return self._text(200, "ok") if ok else self._text(503, "unhealthy")
        if checked.route == "/metrics":
            self.metrics.set_queue_depths([len(c.queue) for c in self._clients])
            self.metrics.clients.set(len(self._clients))
            return self._respond(200, self.metrics.render(), METRICS_CONTENT_TYPE)
        if checked.route == "/overlay":
            csp = (
                f"default-src 'none'; {self._overlay_csp}; "
                f"connect-src 'self' ws://{checked.host} wss://{checked.host}; "
                "img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            )
            return self._respond(200, self._overlay, "text/html; charset=utf-8", (
                ("Content-Security-Policy", csp),
                ("Referrer-Policy", "no-referrer"),
            ))
        self._params[ws] = checked.params
        return None

    # -- WebSocket -----------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        params = self._params.pop(ws, ClientParams())
        if self._send_buffer_bytes is not None:
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer_bytes)
        c = _Client(
            ws=ws,
            queue=ClientQueue(
                self.cfg.client_queue,
                frozenset({"final"}) if params.finals_only else None,
                self._count_drop,
            ),
            peer=_peer(ws),
        )
        replay = self._replay.select(
            since=params.since,
            last=params.last,
            head=self._env.head,
            same_session=params.session in (None, self.session.id),
        )
        hello = self._env.direct("hello", {
            "server": "streamcap",
            "version": self.hello.version,
            "protocol": PROTOCOL_VERSION,
            "model": self.hello.model,
            "language": self.hello.language,
            "audio_device": self.hello.audio_device,
            "session_start": self.session.epoch,
            "events": "final" if params.finals_only else "all",
            "replay": {"count": len(replay.messages), "gap": replay.gap},
        })
        c.pending.append((hello, False))
        c.pending.extend((m, True) for m in replay.messages)
        self._clients.add(c)
        self.metrics.clients.set(len(self._clients))
        log.info("client %s connected (since=%s, events=%s, replay=%d)", c.peer, params.since,
                 "final" if params.finals_only else "all", len(replay.messages))
        c.relay = asyncio.create_task(self._relay(c))
        try:
            async for frame in ws:
                await self._on_frame(c, frame)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            sent = exc.sent
            if sent is not None and sent.code == CLOSE_MESSAGE_TOO_BIG:
                log.info("client %s closed with 1009: %s", c.peer, sent.reason)
            elif rcvd is None and sent is None:
                log.info("client %s connection lost", c.peer)
        finally:
            self._forget(c)
            if c.relay is not None and not c.draining:
                c.relay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await c.relay
            log.info("client %s disconnected", c.peer)

    async def _on_frame(self, c: _Client, frame: str | bytes) -> None:
        try:
            parse_client_frame(frame, self.cfg.max_message_bytes)
        except ClientFrameError as exc:
            if exc.close_code is not None:
                log.info("client %s closed with %d: %s", c.peer, exc.close_code, exc.message)
                self.metrics.disconnects.labels(reason="protocol").inc()
                self._forget(c)
                await self._close(c, exc.close_code, exc.message)
                return
            c.errors += 1
            if c.errors > MAX_CLIENT_ERRORS:
                log.info("client %s closed with %d: too many invalid messages", c.peer,
                         CLOSE_POLICY_VIOLATION)
                self.metrics.disconnects.labels(reason="protocol").inc()
                self._forget(c)
                await self._close(c, CLOSE_POLICY_VIOLATION, "too many invalid messages")
                return
            log.info("client %s sent an invalid message: %s", c.peer, exc.message)
            self._offer(c, self._env.direct("error", {"code": exc.code, "message": exc.message}),
                        direct=True)
            return
        self._offer(c, self._env.direct("pong"), direct=True)

    async def _relay(self, c: _Client) -> None:
        ws = c.ws
        try:
            while True:
                item = c.next()
                if item is None:
                    if c.draining:
                        return
                    c.wake.clear()
                    await c.wake.wait()
                    continue
                msg, replayed = item
                now = time.time()
                if msg.emitted is not None:
                    # send() writes to the transport before it waits for the buffer to drain:
                    # once called, the message is as delivered as the connection itself
                    c.last_seq = max(c.last_seq, msg.seq)
                await ws.send(msg.render(now, replayed))
                if msg.emitted is not None and not replayed:
                    self.metrics.delivery.observe(max(0.0, now - msg.emitted))
                counter = self._sent.get(msg.type)
                if counter is not None:
                    counter.inc()
        except ConnectionClosed:
            return
