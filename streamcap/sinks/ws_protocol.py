"""The caption protocol without I/O: what the WebSocket server decides, as plain calls.

The protocol is documented in ``docs/protocol.md``; :mod:`.websocket` runs these parts on
sockets. Nothing here touches a socket, a clock, a thread or an event loop: wall times come in
as arguments, so every rule is unit-tested with plain calls.

* :class:`Envelope` numbers events (``seq``) and builds the v1 JSON envelope once per event;
* :class:`ReplayBuffer` keeps the last finals for clients that resume with ``?since=SEQ``;
* :class:`ClientQueue` is one client's bounded queue with the drop policy: a newer partial
  of the same utterance (or a newer status) replaces the queued one; when the queue is full
  partials, status and VAD messages are dropped first; when it is full of finals the client
  is too slow and must be disconnected (close code 1013);
* :func:`check_request` decides routes, Host/Origin rules, token auth and query parameters
  (``since``, ``last``, ``session``, ``events``, ``token``);
* :func:`hello_message` builds the first message of a connection from what was replayed;
* :func:`parse_client_frame` judges what a client sent;
* :func:`load_overlay` and :func:`overlay_csp` make the ``/overlay`` page and its policy.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import ipaddress
import json
import math
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlsplit

from .. import __version__
from ..config import ServerConfig
from ..errors import ProtocolError
from ..events import Event, FinalCaption, PartialCaption, Session
from .transcript import TRANSCRIPT_ROUTES, VIEWS, View

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
ROUTES: Final = ("/", "/healthz", "/metrics", "/overlay", *TRANSCRIPT_ROUTES)
#: query parameters of the transcript page and downloads (``show``: see :mod:`.transcript`)
TRANSCRIPT_PARAMS: Final = ("labels", "show", "token")

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

    @property
    def types(self) -> frozenset[str] | None:
        """The event types this client's queue takes (None: all of them)."""
        return frozenset({"final"}) if self.finals_only else None


@dataclass(frozen=True)
class Checked:
    """An admitted request: its route, the validated ``host[:port]`` and the parameters."""

    route: str
    host: str
    params: ClientParams = ClientParams()
    view: View = "text"  # transcript routes: what to show of a translated final


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


def _check_origin(origin: str | None, clean_host: str, cfg: ServerConfig) -> None:
    """A browser request must come from this server's own pages or an allowed origin."""
    if origin is None:
        return
    o = _norm_origin(origin)
    own = {f"http://{clean_host}", f"https://{clean_host}"}
    allowed = {_norm_origin(a) for a in cfg.allowed_origins}
    if o not in own and o not in allowed:
        raise RequestRejected(
            403,
            f"Origin {origin[:80]!r} is not allowed (only this server's own pages and "
            "server.allowed_origins)",
        )


def _parse_transcript_query(query: str, route: str) -> tuple[View, str | None]:
    """``show``, ``labels`` and ``token`` of a transcript route (``show=both`` only where a
    final can show two texts: the page, its JSON and the .txt download)."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=len(TRANSCRIPT_PARAMS))
    except ValueError:
        raise RequestRejected(400, "too many query parameters") from None
    seen: dict[str, str] = {}
    for k, v in pairs:
        if k not in TRANSCRIPT_PARAMS:
            raise RequestRejected(400, f"unknown query parameter {k[:40]!r} "
                                  f"(known: {', '.join(TRANSCRIPT_PARAMS)})")
        if k in seen:
            raise RequestRejected(400, f"query parameter {k!r} given twice")
        seen[k] = v
    show = seen.get("show", "text")
    if show not in VIEWS:
        raise RequestRejected(400, f"show: expected one of {', '.join(VIEWS)}, got {show[:40]!r}")
    if show == "both" and route in ("/transcript.srt", "/transcript.vtt"):
        raise RequestRejected(400, "show: 'both' is for the page and .txt; "
                              "use 'text' or 'translation' for subtitles")
    if seen.get("labels", "1") not in ("0", "1"):
        raise RequestRejected(400, f"labels: expected 0 or 1, got {seen['labels'][:40]!r}")
    view: View = "text" if show == "text" else "translation" if show == "translation" else "both"
    return view, seen.get("token")


def check_host(host: str | None, cfg: ServerConfig, local_names: Iterable[str] = ()) -> str:
    """The validated ``host[:port]`` of a request's ``Host`` header (see :func:`check_request`);
    raises :class:`RequestRejected`."""
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
    return f"{name}:{port}" if port else name


def check_origin(origin: str | None, clean_host: str, cfg: ServerConfig) -> None:
    """A browser request (``Origin`` given) must come from this server's pages or
    ``server.allowed_origins`` (the rule of ``/``; the transcription API uses it too)."""
    _check_origin(origin, clean_host, cfg)


def check_token(cfg: ServerConfig, authorization: str | None, query_token: str | None) -> None:
    """Refuse (401) a request without ``server.token`` when one is set."""
    _check_token(cfg, authorization, query_token)


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
    holds no captions) do not. The transcript routes (``/transcript`` and its ``.json``,
    ``.srt``, ``.vtt``, ``.txt``) follow the rules of ``/``: Origin, then token.
    """
    if method != "GET":
        raise RequestRejected(405, f"method {method[:20]!r} not allowed (only GET)")
    parts = urlsplit(path)
    route = parts.path
    if route not in ROUTES:
        raise RequestRejected(
            404, f"no such path {route[:60]!r} (try / /healthz /metrics /overlay /transcript)"
        )
    clean_host = check_host(host, cfg, local_names)
    if route in ("/healthz", "/overlay"):
        return Checked(route, clean_host)
    if route in TRANSCRIPT_ROUTES:
        view, query_token = _parse_transcript_query(parts.query, route)
        _check_origin(origin, clean_host, cfg)
        _check_token(cfg, authorization, query_token)
        return Checked(route, clean_host, view=view)
    params, query_token = _parse_query(parts.query, cfg)
    if route == "/":
        _check_origin(origin, clean_host, cfg)
    _check_token(cfg, authorization, query_token)
    if route == "/metrics":
        return Checked(route, clean_host)
    return Checked(route, clean_host, params)


# --- overlay page -----------------------------------------------------------------------


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def load_overlay(name: str = "overlay.html") -> tuple[bytes, str]:
    """A page of this package (the overlay by default) and the script/style source list of
    its Content-Security-Policy."""
    html = resources.files("streamcap.sinks").joinpath(name).read_text("utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    policy = (
        "script-src " + " ".join(_csp_hash(s) for s in scripts)
        + "; style-src " + " ".join(_csp_hash(s) for s in styles)
    )
    return html.encode("utf-8"), policy



def overlay_csp(policy: str, host: str) -> str:
    """The Content-Security-Policy of ``/overlay`` served as ``host`` (``policy`` is the
    script/style part from :func:`load_overlay`): it may only talk back to that host."""
    return (
        f"default-src 'none'; {policy}; "
        f"connect-src 'self' ws://{host} wss://{host}; "
        "img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


# --- connection start and end ----------------------------------------------------------


def hello_message(
    env: Envelope, info: HelloInfo, session: Session, params: ClientParams, replay: Replay
) -> Outgoing:
    """The ``hello`` a new connection gets first: the daemon, the session, the event filter
    and how many finals follow as replay (and whether some asked for were lost)."""
    return env.direct("hello", {
        "server": "streamcap",
        "version": info.version,
        "protocol": PROTOCOL_VERSION,
        "model": info.model,
        "language": info.language,
        "audio_device": info.audio_device,
        "session_start": session.epoch,
        "events": "final" if params.finals_only else "all",
        "replay": {"count": len(replay.messages), "gap": replay.gap},
    })


def close_reason(text: str) -> str:
    """A close reason cut to the 123 bytes a close frame can carry (never mid-character)."""
    data = text.encode("utf-8")[:123]
    return data.decode("utf-8", "ignore")
