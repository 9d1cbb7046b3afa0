"""HTTP/1.1 requests other than ``GET`` on the caption server's port, through ``h11``.

websockets parses only ``GET`` requests, so :func:`connection_class` makes a
``ServerConnection`` subclass that looks at the first bytes of each connection: a ``GET``
goes to websockets as before (WebSocket, ``/healthz``, ``/metrics``, ``/overlay``,
``GET /v1/models``); anything else is read by :class:`HttpExchange` (h11) and answered by the
:class:`~.service.ApiService`. Its ``handshake()`` runs the whole exchange, so websockets'
connection bookkeeping (handler tasks, server close) covers it unchanged. websockets'
``open_timeout`` is therefore applied here, around the WebSocket handshake and the reading of
an HTTP request head, and not around a transcription, which may take minutes.

One request per connection (``Connection: close``). A response is flushed before the
connection closes; when the server answers before it has read the whole body (an error such as
413), it reads and drops the rest for a few seconds so the client sees the answer instead of a
reset connection. A client that goes away cancels its transcription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import h11
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from .form import MultipartForm
from .request import ApiError, ApiResponse, parse_transcription
from .service import TRANSCRIPTIONS, ApiService, Slot, is_api_path

log = logging.getLogger("streamcap.api")

MAX_HEAD_BYTES = 16 * 1024
BODY_IDLE_S = 60.0  # an upload that stalls this long is dropped
LINGER_S = 10.0  # reading (and dropping) the rest of a refused upload, at most this long
LINGER_BYTES = 64 * 1024 * 1024  # ... and at most this much beyond twice the upload cap
FLUSH_S = 30.0  # waiting for a slow client to take the response
FORM_OVERHEAD = 1024 * 1024  # the body may exceed the file cap by this much (fields, framing)


class HttpExchange:
    """One HTTP/1.1 request read with h11 (no I/O: bytes in, state out).

    ``head`` is set once the request line and headers are in; the body then goes to
    ``consumer`` (a callable that may raise :class:`ApiError`, which becomes ``error`` and
    turns the rest of the body into bytes to drop). ``complete`` when the body ended.
    """

    def __init__(self) -> None:
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.head: h11.Request | None = None
        self.consumer: Callable[[bytes], None] | None = None
        self.error: ApiError | None = None
        self.complete = False
        self.received = 0
        self.dropped = 0
        self.eof = False

    def header(self, name: str) -> str | None:
        """A request header (the last one given; ``None`` without a head or the header)."""
        if self.head is None:
            return None
        key = name.lower().encode("ascii")
        found = [v for k, v in self.head.headers if k == key]
        return found[-1].decode("latin-1") if found else None

    def headers_named(self, name: str) -> list[str]:
        if self.head is None:
            return []
        key = name.lower().encode("ascii")
        return [v.decode("latin-1") for k, v in self.head.headers if k == key]

    def receive(self, data: bytes) -> None:
        """Take bytes from the socket (``b""`` at the end of input)."""
        if not data:
            self.eof = True
        self.conn.receive_data(data)
        self._pump()

    def attach(self, consumer: Callable[[bytes], None] | None) -> None:
        """Start reading the body into ``consumer`` (None: drop it). Until then, body bytes
        wait in h11's buffer (the head is checked before the body is read)."""
        self.consumer = consumer if consumer is not None else self._drop
        self._pump()

    def _drop(self, data: bytes) -> None:
        self.dropped += len(data)

    def _pump(self) -> None:
        while self.head is None or self.consumer is not None:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                if self.error is None:
                    self.error = ApiError(400, f"malformed HTTP request: {exc}")
                self.eof = True
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self.head = event
            elif isinstance(event, h11.Data):
                self.received += len(event.data)
                if self.error is not None or self.consumer is None:
                    self.dropped += len(event.data)
                    continue
                try:
                    self.consumer(bytes(event.data))
                except ApiError as exc:
                    self.error = exc
                    self.dropped += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
            elif isinstance(event, h11.ConnectionClosed):
                self.eof = True
                return

    def render(self, resp: ApiResponse, server: str) -> bytes:
        """The response's bytes (status line, headers, body, end)."""
        out = self.conn.send(h11.Response(status_code=resp.status,
                                          headers=response_headers(resp, server),
                                          reason=resp.reason.encode("ascii")))
        out = (out or b"") + (self.conn.send(h11.Data(data=resp.body)) or b"")
        return out + (self.conn.send(h11.EndOfMessage()) or b"")

    def continue_100(self) -> bytes:
        if self.conn.they_are_waiting_for_100_continue:
            return self.conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
        return b""


def response_headers(resp: ApiResponse, server: str) -> list[tuple[str, str]]:
    """The headers every API answer carries, then the response's own."""
    return [
        ("Content-Type", resp.content_type),
        ("Content-Length", str(len(resp.body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Connection", "close"),
        ("Server", server),
        *resp.headers,
    ]


def raw_response(resp: ApiResponse, server: str) -> bytes:
    """The response's bytes without h11 (for a request too malformed for h11 to answer)."""
    head = (f"HTTP/1.1 {resp.status} {resp.reason}\r\nContent-Type: {resp.content_type}\r\n"
            f"Content-Length: {len(resp.body)}\r\nConnection: close\r\nServer: {server}\r\n\r\n")
    return head.encode("latin-1") + resp.body


def to_ws_response(resp: ApiResponse, server: str) -> Response:
    """An :class:`ApiResponse` as a websockets ``Response`` (for ``GET`` API routes)."""
    from websockets.datastructures import Headers

    return Response(resp.status, resp.reason, Headers(response_headers(resp, server)),
                    resp.body)


def answer_get(api: ApiService, request: Request, server: str) -> Response:
    """``GET /v1/...`` through websockets' ``process_request``."""
    def one(name: str) -> str | None:
        values = request.headers.get_all(name)
        return values[-1] if values else None

    try:
        api.check("GET", request.path, host=one("Host"), origin=one("Origin"),
                  authorization=one("Authorization"))
        resp = api.models()
    except ApiError as exc:
        resp = exc.response()
    api.answered(resp.status)
    return to_ws_response(resp, server)


class ApiConnection(ServerConnection):
    """A server connection that hands requests other than ``GET`` to the API (see module)."""

    api: ApiService
    open_timeout: float | None
    server_name: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._first = b""
        self._mode: str | None = None  # "ws" or "http" once the first bytes tell
        self._decided: asyncio.Future[None] = self.loop.create_future()
        self._exchange: HttpExchange | None = None
        self._wake = asyncio.Event()

    # -- asyncio protocol ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._mode == "ws":
            super().data_received(data)
            return
        if self._mode == "http":
            assert self._exchange is not None
            self._exchange.receive(data)
            self._wake.set()
            return
        self._first += data
        head = self._first
        if head.startswith(b"GET ") or (len(head) < 4 and b"GET ".startswith(head)):
            if len(head) < 4:
                return
            self._mode = "ws"
            self._first = b""
            self._decide()
            super().data_received(head)
            return
        self._mode = "http"
        self._first = b""
        self._exchange = HttpExchange()
        self._exchange.receive(head)
        self._decide()
        self._wake.set()

    def _decide(self) -> None:
        if not self._decided.done():
            self._decided.set_result(None)

    def eof_received(self) -> None:
        if self._mode == "http":
            assert self._exchange is not None
            self._exchange.receive(b"")
            self._wake.set()
            # A client that shuts down its side has gone away (as uvicorn takes it): the
            # transport closes, connection_lost follows and cancels the transcription.
            return
        if self._mode is None and self._first:
            self._mode = "ws"
            super().data_received(self._first)
        super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._decide()
        self._wake.set()

    # -- the handshake, or an HTTP exchange ----------------------------------------------

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        async with asyncio.timeout(self.open_timeout):
            await asyncio.wait([self._decided, self.connection_lost_waiter],
                               return_when=asyncio.FIRST_COMPLETED)
            if self._mode != "http":
                await super().handshake(*args, **kwargs)
                return
            head_ready = await self._until(lambda: self._ex.head is not None
                                           or self._ex.error is not None or self._ex.eof)
        if head_ready:
            await self._exchange_http()
        else:
            self.transport.abort()

    @property
    def _ex(self) -> HttpExchange:
        assert self._exchange is not None
        return self._exchange

    @property
    def _lost(self) -> bool:
        return self.connection_lost_waiter.done()

    async def _until(self, cond: Callable[[], bool], idle: float | None = None) -> bool:
        """Wait until ``cond()`` (True) or the connection is lost (False); ``idle`` bounds
        each wait for more data (TimeoutError)."""
        while not cond():
            if self._lost:
                return False
            self._wake.clear()
            if idle is None:
                await self._wake.wait()
            else:
                await asyncio.wait_for(self._wake.wait(), idle)
        return True

    async def _exchange_http(self) -> None:
        ex = self._ex
        method = target = "?"
        try:
            if ex.head is None:
                raise ex.error or ApiError(400, "incomplete HTTP request")
            method = ex.head.method.decode("ascii", "replace")
            target = ex.head.target.decode("ascii", "replace")
            if not is_api_path(target):  # the caption routes answer as before: plain text
                resp = ApiResponse(405, f"method {method[:20]!r} not allowed (only GET)\n"
                                   .encode(), "text/plain; charset=utf-8")
                return await self._send(ex, method, target, resp)
            for name in ("Host", "Origin", "Authorization"):
                n = len(ex.headers_named(name))
                if n > 1:
                    raise ApiError(400, f"{name} header given {n} times")
            route = self.api.check(method, target, host=ex.header("Host"),
                                   origin=ex.header("Origin"),
                                   authorization=ex.header("Authorization"))
            if route != TRANSCRIPTIONS:
                raise ApiError(405, f"{route}: method {method[:20]!r} not allowed")
            resp = await self._transcription(ex)
        except ApiError as exc:
            resp = exc.response()
        except TimeoutError:
            resp = ApiError(408, f"the upload stalled for over {BODY_IDLE_S:g} s",
                            code="timeout").response()
        await self._send(ex, method, target, resp)

    async def _send(self, ex: HttpExchange, method: str, target: str, resp: ApiResponse
                    ) -> None:
        if self._lost:
            log.info("api %s %s: the client went away", method, target[:60])
            return
        log.info("api %s %s -> %d", method, target[:60], resp.status)
        if is_api_path(target):
            self.api.answered(resp.status)
        try:
            data = ex.render(resp, self.server_name)
        except h11.LocalProtocolError:  # h11 refuses to answer a request it could not parse
            data = raw_response(resp, self.server_name)
        self.transport.write(data)
        await self._finish(ex)

    async def _transcription(self, ex: HttpExchange) -> ApiResponse:
        api = self.api
        length = ex.header("Content-Length")
        limit = api.max_upload_bytes + FORM_OVERHEAD
        if length is not None and length.isdigit() and int(length) > limit:
            mb = api.cfg.max_upload_mb
            raise ApiError(413, f"file: the upload is larger than {mb:g} MB "
                           "(server.max_upload_mb)", param="file", code="file_too_large")
        form = MultipartForm(ex.header("Content-Type"), api.max_upload_bytes)
        slot = api.admit()
        try:
            return await self._run(ex, form, slot)
        finally:
            api.release(slot)

    async def _run(self, ex: HttpExchange, form: MultipartForm, slot: Slot) -> ApiResponse:
        def feed(data: bytes) -> None:
            if ex.received > self.api.max_upload_bytes + FORM_OVERHEAD:
                raise ApiError(413, f"file: the upload is larger than "
                               f"{self.api.cfg.max_upload_mb:g} MB (server.max_upload_mb)",
                               param="file", code="file_too_large")
            form.feed(data)

        self.transport.write(ex.continue_100())
        ex.attach(feed)
        ok = await self._until(lambda: ex.complete or ex.error is not None or ex.eof,
                               BODY_IDLE_S)
        if not ok:
            raise ApiError(400, "the client went away")
        if ex.error is not None:
            raise ex.error
        if not ex.complete:
            raise ApiError(400, "the request body ended early")
        req = parse_transcription(form.finish(), models=self.api.model_names,
                                  languages=self.api.languages(),
                                  multilingual=self.api.multilingual)
        return await self._unless_lost(self.api.transcribe(req, slot))

    async def _unless_lost(self, aw: Awaitable[ApiResponse]) -> ApiResponse:
        task = asyncio.ensure_future(aw)
        waits: list[asyncio.Future[Any]] = [task, self.connection_lost_waiter]
        await asyncio.wait(waits,
                           return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ApiError):
                await task
            raise ApiError(400, "the client went away")
        return task.result()

    async def _finish(self, ex: HttpExchange) -> None:
        """Drop what is left of the body for a while, then close once the answer is sent."""
        if ex.consumer is None:
            ex.attach(None)
        if not ex.complete and not ex.eof:
            cap = 2 * self.api.max_upload_bytes + LINGER_BYTES
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LINGER_S):
                    await self._until(lambda: ex.complete or ex.eof or ex.received > cap)
        self.transport.close()  # sends what is buffered, then closes
        try:
            await asyncio.wait_for(asyncio.shield(self.connection_lost_waiter), FLUSH_S)
        except TimeoutError:
            self.transport.abort()


def connection_class(api: ApiService, open_timeout: float | None, server_name: str
                     ) -> type[ServerConnection]:
    """The ``create_connection`` for ``websockets.asyncio.server.serve`` (pass the server
    ``open_timeout=None``: this class applies ``open_timeout`` itself)."""
    return type("BoundApiConnection", (ApiConnection,), {
        "api": api, "open_timeout": open_timeout, "server_name": server_name,
    })
