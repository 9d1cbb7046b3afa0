"""The caption server: one engine, any number of WebSocket clients, plus HTTP routes.

The protocol is documented in ``docs/protocol.md``. Its rules (envelope, replay, per-client
queue and drop policy, request checks, hello) live in :mod:`.ws_protocol`, which does no I/O;
this module is the asyncio shell that runs them on ``websockets.asyncio.server``:

* :class:`CaptionServer` serves WebSocket clients on ``/`` and ``/healthz``, ``/metrics``,
  ``/overlay`` and the session transcript (``/transcript`` and its ``.json``, ``.srt``, ``.vtt``
  and ``.txt`` downloads, see :mod:`.transcript`) over HTTP, all on one port;
* one relay task per client writes that client's queue to its socket, so a slow client never
  slows the engine or the other clients.

:class:`CaptionServer` is a :class:`~streamcap.sinks.base.Sink`: ``start()``, ``publish(event)``
on the event loop thread, ``stop(timeout)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import math
import socket
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .. import __version__
from ..config import ServerConfig
from ..errors import ConfigError
from ..events import Event, FinalCaption, PartialCaption, Session, StatusEvent
from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..metrics import Metrics
from .transcript import (
    CONTENT_TYPES,
    TRANSCRIPT_ROUTES,
    TranscriptLog,
    View,
    download_name,
    transcript_document,
)
from .ws_protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TRY_AGAIN_LATER,
    EVENT_TYPES,
    MAX_CLIENT_ERRORS,
    ClientFrameError,
    ClientParams,
    ClientQueue,
    Envelope,
    HelloInfo,
    Offer,
    Outgoing,
    ReplayBuffer,
    RequestRejected,
    check_request,
    close_reason,
    hello_message,
    load_overlay,
    overlay_csp,
    parse_client_frame,
)

if TYPE_CHECKING:
    from ..api.service import ApiService
    from .base import Sink

__all__ = ["CLOSE_GOING_AWAY", "CaptionServer", "ClientBacklog", "HelloInfo"]

log = logging.getLogger("streamcap.server")

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


def _peer(ws: ServerConnection) -> str:
    addr = ws.remote_address
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


def _local_tz() -> datetime.tzinfo:
    """This machine's time zone now (the clock times of the .txt download)."""
    return datetime.datetime.now().astimezone().tzinfo or datetime.timezone.utc


def _single_header(headers: Headers, name: str) -> str | None:
    values = headers.get_all(name)
    if len(values) > 1:
        raise RequestRejected(400, f"{name} header given {len(values)} times")
    return values[0] if values else None


class CaptionServer:
    """Serves captions over WebSocket and ``/healthz``, ``/metrics``, ``/overlay`` and
    ``/transcript`` (with its downloads) over HTTP, all on one port; a
    :class:`~streamcap.sinks.base.Sink`.

    ``publish(event)`` runs on the event loop thread (a caller on another thread hands events
    over with ``loop.call_soon_threadsafe``). Events published while no client is connected
    still reach the replay buffer. ``health()`` says whether capture and worker are alive (for
    ``/healthz``). ``session`` and ``hello`` may be replaced while running (the daemon anchors
    the epoch and names the device once capture starts).
    """

    name: str = "websocket"

    def __init__(
        self,
        cfg: ServerConfig,
        session: Session,
        hello: HelloInfo,
        health: Callable[[], bool | str] = lambda: True,
        registry: CollectorRegistry | None = None,
        *,
        ping_interval: float | None = 20.0,
        close_timeout: float = 2.0,
        send_buffer_bytes: int | None = 64 * 1024,
        api: ApiService | None = None,
        open_timeout: float = 10.0,
    ) -> None:
        self.cfg = cfg
        self.api = api
        self._open_timeout = open_timeout
        self.session = session
        self.hello = hello
        self.metrics = Metrics(registry)
        if api is not None:
            api.metrics = self.metrics
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
        self._tasks: set[asyncio.Task[None]] = set()
        self._overlay, self._overlay_csp = load_overlay()
        self._page, self._page_csp = load_overlay("transcript.html")
        self._transcript = TranscriptLog(cfg.transcript_finals)
        self._documents: dict[tuple[str, str], tuple[tuple[str, int, int], bytes]] = {}
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
        server_header = f"streamcap/{__version__}"
        extra: dict[str, Any] = {"open_timeout": self._open_timeout}
        if self.api is not None:
            from ..api.http import connection_class

            self.api.reopen()
            # The API's connections apply open_timeout themselves (not to a transcription).
            extra = {"open_timeout": None, "create_connection": connection_class(
                self.api, self._open_timeout, server_header)}
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
                server_header=server_header,
                **extra,
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
        self,
        timeout: float | None = None,
        reason: str = "server shutting down",
        *,
        code: int = CLOSE_GOING_AWAY,
    ) -> None:
        """Stop listening, let every client's relay send what is queued, close each client
        with ``code`` (1001, going away) and ``reason``, and wait for the handlers.

        The whole stop takes at most ``timeout`` seconds: sending what is queued gets up to
        half of it, the close handshakes the rest, and a client that has not taken its close
        frame by then is cut off. Each step is also bounded by the server's close timeout
        (with ``timeout`` None only by that). A stopped server can be started again.
        """
        server = self._server
        if server is None:
            return
        self._server = None
        if self.api is not None:
            self.api.shutdown()
        loop = asyncio.get_running_loop()
        deadline = math.inf if timeout is None else loop.time() + max(0.0, timeout)

        def left(cap: float, share: float = 1.0) -> float:
            return max(0.0, min(cap, (deadline - loop.time()) * share))

        server.close(close_connections=False)
        clients = list(self._clients)
        relays = [c.relay for c in clients if c.relay is not None]
        for c in clients:
            c.draining = True
            c.wake.set()
        if relays:
            await asyncio.wait(relays, timeout=left(self._close_timeout, 0.5))
        if clients:
            close_within = left(self._close_timeout)
            await asyncio.gather(*(self._close(c, code, reason, close_within) for c in clients))
        try:
            await asyncio.wait_for(server.wait_closed(), left(self._close_timeout * 2 + 1))
        except TimeoutError:
            log.warning("caption server: handlers still running after stop")
        for task in list(self._tasks):
            task.cancel()
        self._clients.clear()
        self.metrics.clients.set(0)

    # -- publishing ----------------------------------------------------------------------

    def publish(self, event: Event, emitted: float | None = None) -> None:
        """Send ``event`` to every client (call on the event loop thread; never blocks).

        ``emitted`` is the wall time the event was made (default: now); a caller that hops
        threads to get here passes the time before the hop, so the hop counts as delivery
        delay.
        """
        now = time.time() if emitted is None else emitted
        m = self.metrics
        if isinstance(event, StatusEvent):
            event = dataclasses.replace(event, clients=len(self._clients))
            m.observe_status(event.lag, event.rtf, event.dropped_frames,
                             event.asr_state == "degraded")
            m.observe_inputs(event.inputs)
        elif isinstance(event, (PartialCaption, FinalCaption)):
            m.observe_caption_latency(event.type, now - (self.session.epoch + event.end))
            if isinstance(event, FinalCaption):
                m.finals.labels(source=event.source or "").inc()
        msg = self._env.seal(event, now)
        m.events.labels(type=msg.type).inc()
        if isinstance(event, FinalCaption):
            self._replay.append(msg)
            self._transcript.append(msg.seq, event)
        for c in list(self._clients):
            self._offer(c, msg)

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
            c, CLOSE_TRY_AGAIN_LATER, f"client too slow; reconnect with since={c.last_seq}",
            self._close_timeout,
        ))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget(self, c: _Client) -> None:
        self._clients.discard(c)
        self.metrics.clients.set(len(self._clients))

    async def _close(self, c: _Client, code: int, reason: str, timeout: float) -> None:
        """Close a client; abort the TCP connection if it does not take the close frame within
        ``timeout`` (a client that never reads would otherwise block the close forever)."""
        try:
            await asyncio.wait_for(c.ws.close(code, close_reason(reason)), timeout)
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

    def _process_request(
        self, ws: ServerConnection, request: Request
    ) -> Response | Coroutine[Any, Any, Response] | None:
        if self.api is not None:
            from ..api.http import answer_get
            from ..api.service import is_api_path

            if is_api_path(request.path):
                return answer_get(self.api, request, f"streamcap/{__version__}")
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
                ok = self._health()
            except Exception as exc:  # a broken probe is an unhealthy daemon, not a crash
                return self._text(503, f"unhealthy: health check failed: {exc}")
            if isinstance(ok, str):  # alive but degraded (e.g. the ASR pool is away)
                return self._text(200, ok)
            return self._text(200, "ok") if ok else self._text(503, "unhealthy")
        if checked.route == "/metrics":
            self.metrics.set_queue_depths([len(c.queue) for c in self._clients])
            self.metrics.clients.set(len(self._clients))
            return self._respond(200, self.metrics.render(), METRICS_CONTENT_TYPE)
        if checked.route == "/overlay":
            return self._respond(200, self._overlay, "text/html; charset=utf-8", (
                ("Content-Security-Policy", overlay_csp(self._overlay_csp, checked.host)),
                ("Referrer-Policy", "no-referrer"),
            ))
        if checked.route in TRANSCRIPT_ROUTES:
            return self._transcript_response(checked.route, checked.host, checked.view)
        self._params[ws] = checked.params
        return None

    async def _transcript_response(self, route: str, host: str, view: View) -> Response:
        """The transcript page, its JSON, or a download built from the kept finals.

        Documents are rendered on a worker thread from a snapshot of the finals (5000 finals
        take seconds), so live captions keep flowing; the last rendering of each route and
        view is kept until a final arrives.
        """
        if route == "/transcript":
            return self._respond(200, self._page, "text/html; charset=utf-8", (
                ("Content-Security-Policy", overlay_csp(self._page_csp, host)),
                ("Referrer-Policy", "no-referrer"),
            ))
        log = self._transcript
        head = self._env.head
        stamp = (self.session.id, log.appended, head if route == "/transcript.json" else 0)
        cached = self._documents.get((route, view))
        if cached is not None and cached[0] == stamp:
            body = cached[1]
        else:
            entries, dropped, session = log.entries, log.dropped, self.session
            text = await asyncio.to_thread(transcript_document, route, entries, session, head,
                                           view, dropped, _local_tz())
            body = text.encode("utf-8")
            self._documents[(route, view)] = (stamp, body)
        extra: tuple[tuple[str, str], ...] = ()
        if route != "/transcript.json":
            name = download_name(self.session, route)
            extra = (("Content-Disposition", f'attachment; filename="{name}"'),)
        return self._respond(200, body, CONTENT_TYPES[route], extra)

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
            queue=ClientQueue(self.cfg.client_queue, params.types, self._count_drop),
            peer=_peer(ws),
        )
        replay = self._replay.select(
            since=params.since,
            last=params.last,
            head=self._env.head,
            same_session=params.session in (None, self.session.id),
        )
        hello = hello_message(self._env, self.hello, self.session, params, replay)
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
                await self._close(c, exc.close_code, exc.message, self._close_timeout)
                return
            c.errors += 1
            if c.errors > MAX_CLIENT_ERRORS:
                log.info("client %s closed with %d: too many invalid messages", c.peer,
                         CLOSE_POLICY_VIOLATION)
                self.metrics.disconnects.labels(reason="protocol").inc()
                self._forget(c)
                await self._close(c, CLOSE_POLICY_VIOLATION, "too many invalid messages",
                                  self._close_timeout)
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


if TYPE_CHECKING:

    def _is_a_sink(server: CaptionServer) -> Sink:
        return server  # mypy proves that CaptionServer implements the Sink protocol
