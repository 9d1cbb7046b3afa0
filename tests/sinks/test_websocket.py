"""The caption server (sinks/websocket.py): a real server on 127.0.0.1 with real clients."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from support.events import final, partial
from support.net import http_get, recv_json
from support.timing import run, unit
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamcap.config import ServerConfig
from streamcap.errors import ConfigError
from streamcap.events import ErrorEvent, Event, Session, StatusEvent, VadEvent, event_from_dict
from streamcap.sinks.base import Sink
from streamcap.sinks.websocket import CLOSE_GOING_AWAY, CaptionServer, HelloInfo
from streamcap.sinks.ws_protocol import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNSUPPORTED_DATA,
)

SESSION = Session(id="sess0000test", epoch=1_700_000_000.0)
HELLO = HelloInfo(model="tiny.en", language="en", audio_device="test-null-sink")


# --- real server ---------------------------------------------------------------------------


def make_server(health: Callable[[], bool] = lambda: True, **cfg: Any) -> CaptionServer:
    """A server on 127.0.0.1, any free port, with ``cfg`` overriding the server config."""
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0}
    base.update(cfg)
    return CaptionServer(ServerConfig(**base), SESSION, HELLO, health, close_timeout=1.0)


def test_client_gets_hello_then_events_in_order() -> None:
    """A client gets hello, then every published event in seq order with a send time t."""

    async def main() -> None:
        server = make_server()
        await server.start()
        assert server.port > 0
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
                hello = await recv_json(ws)
                assert hello["type"] == "hello" and hello["v"] == 1 and hello["seq"] == 0
                assert hello["session"] == SESSION.id and hello["session_start"] == SESSION.epoch
                assert (hello["model"], hello["language"], hello["audio_device"]) == (
                    "tiny.en", "en", "test-null-sink")
                assert hello["version"] and hello["replay"] == {"count": 0, "gap": False}
                events: list[Event] = [
                    VadEvent("speech_start", 5.0, 1), partial(1, 1), final(1),
                    VadEvent("speech_end", 6.5, 1), ErrorEvent("device_lost", "mic went away"),
                ]
                for ev in events:
                    server.publish(ev)
                got = [await recv_json(ws) for _ in events]
                assert [g["seq"] for g in got] == [1, 2, 3, 4, 5]
                for g, ev in zip(got, events, strict=True):
                    assert g["v"] == 1 and g["session"] == SESSION.id
                    assert g["t"] >= g["emitted"] > 0
                    assert event_from_dict(g) == ev
                assert server.clients == 1
        finally:
            await server.stop()
        assert server.clients == 0

    run(main())


def test_resume_with_since_replays_missed_finals_first() -> None:
    """A client reconnecting with since=SEQ first gets the finals after SEQ, then live events."""

    async def main() -> None:
        server = make_server()
        await server.start()
        try:
            for uid in range(5):
                server.publish(partial(uid, 1))
                server.publish(final(uid))  # finals get seq 2, 4, 6, 8, 10
            url = f"ws://127.0.0.1:{server.port}/?since=4&session={SESSION.id}"
            async with connect(url) as ws:
                hello = await recv_json(ws)
                assert hello["seq"] == 10 and hello["replay"] == {"count": 3, "gap": False}
                replayed = [await recv_json(ws) for _ in range(3)]
                assert [r["seq"] for r in replayed] == [6, 8, 10]
                assert all(r["type"] == "final" and r["replay"] is True for r in replayed)
                server.publish(final(5))
                live = await recv_json(ws)
                assert live["seq"] == 11 and "replay" not in live
            async with connect(f"ws://127.0.0.1:{server.port}/?last=2") as ws:
                await recv_json(ws)
                assert [(await recv_json(ws))["seq"] for _ in range(2)] == [10, 11]
            async with connect(f"ws://127.0.0.1:{server.port}/?since=3&session=othersession") as ws:
                assert (await recv_json(ws))["replay"]["count"] == 6
        finally:
            await server.stop()

    run(main())


def test_finals_only_client_gets_only_finals() -> None:
    """A client connected with events=final receives finals and no partial, vad or status."""

    async def main() -> None:
        server = make_server()
        await server.start()
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/?events=final") as ws:
                assert (await recv_json(ws))["events"] == "final"
                server.publish(VadEvent("speech_start", 1.0, 0))
                server.publish(partial(0, 1))
                server.publish(StatusEvent(0.1, 0.2, "running", 0))
                server.publish(final(0))
                got = await recv_json(ws)
                assert got["type"] == "final" and got["seq"] == 4
        finally:
            await server.stop()

    run(main())


def test_token_auth_on_websocket_and_metrics() -> None:
    """With a token set, connections and /metrics without the right token get 401."""

    async def main() -> None:
        server = make_server(token="s3cret")
        await server.start()
        base = f"ws://127.0.0.1:{server.port}/"
        try:
            for url, headers in [(base, None), (base + "?token=nope", None),
                                 (base, {"Authorization": "Bearer nope"})]:
                with pytest.raises(InvalidStatus) as info:
                    async with connect(url, additional_headers=headers):
                        pass
                assert info.value.response.status_code == 401
            async with connect(base + "?token=s3cret") as ws:
                assert (await recv_json(ws))["type"] == "hello"
            async with connect(base, additional_headers={"Authorization": "Bearer s3cret"}) as ws:
                assert (await recv_json(ws))["type"] == "hello"
            assert (await http_get(server.port, "/metrics"))[0] == 401
            status, _, body = await http_get(server.port, "/metrics",
                                             {"Authorization": "Bearer s3cret"})
            assert status == 200 and b"streamcap_clients" in body
            assert (await http_get(server.port, "/healthz"))[0] == 200
        finally:
            await server.stop()

    run(main())


def test_origin_check_refuses_foreign_pages() -> None:
    """Browser origins other than the server's own page and the allow-list get 403."""

    async def main() -> None:
        server = make_server(allowed_origins=("https://studio.example",))
        await server.start()
        port = server.port
        base = f"ws://127.0.0.1:{port}/"
        try:
            for bad in ["https://evil.example", f"http://localhost:{port}", "null"]:
                with pytest.raises(InvalidStatus) as info:
                    async with connect(base, origin=bad):  # type: ignore[arg-type]
                        pass
                assert info.value.response.status_code == 403
            for good in [f"http://127.0.0.1:{port}", "https://studio.example", None]:
                async with connect(base, origin=good) as ws:  # type: ignore[arg-type]
                    assert (await recv_json(ws))["type"] == "hello"
            status, _, body = await http_get(port, "/metrics", {"Host": f"evil.example:{port}"})
            assert status == 403 and b"DNS rebinding" in body
        finally:
            await server.stop()

    run(main())


def test_http_routes() -> None:
    """/healthz follows the health probe, /metrics is Prometheus text, /overlay is a locked-down
    HTML page, and unknown paths or bad queries get one-line errors."""
    healthy: list[bool | str | None] = [True]

    def probe() -> bool | str:
        if healthy[0] is None:
            raise RuntimeError("probe exploded")
        return healthy[0]

    async def main() -> None:
        server = make_server(health=probe)
        await server.start()
        port = server.port
        try:
            status, _, body = await http_get(port, "/healthz")
            assert (status, body) == (200, b"ok\n")
            healthy[0] = "degraded: ASR pool unavailable for 3 s"  # alive, captions held
            status, _, body = await http_get(port, "/healthz")
            assert (status, body) == (200, b"degraded: ASR pool unavailable for 3 s\n")
            healthy[0] = False
            assert (await http_get(port, "/healthz"))[0] == 503
            healthy[0] = None
            status, _, body = await http_get(port, "/healthz")
            assert status == 503 and b"probe exploded" in body
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await recv_json(ws)
                server.publish(StatusEvent(lag=0.5, rtf=0.25, device_state="running",
                                           dropped_frames=7))
                status_msg = await recv_json(ws)
                assert status_msg["clients"] == 1 and status_msg["rtf"] == 0.25
                server.publish(final(0))
                await recv_json(ws)
                status, headers, body = await http_get(port, "/metrics")
            assert status == 200 and headers["content-type"].startswith("text/plain")
            text = body.decode()
            assert "streamcap_clients 1.0" in text
            assert "streamcap_rtf 0.25" in text and "streamcap_lag_seconds 0.5" in text
            assert "streamcap_dropped_frames_total 7.0" in text
            assert 'streamcap_messages_sent_total{type="final"} 1.0' in text
            assert "streamcap_delivery_seconds_count 2.0" in text
            assert "streamcap_client_queue_depth_max" in text
            status, headers, body = await http_get(port, "/overlay?font=Arial&color=ff0")
            assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
            csp = headers["content-security-policy"]
            assert "default-src 'none'" in csp and "'sha256-" in csp and "unsafe" not in csp
            assert f"ws://127.0.0.1:{port}" in csp
            assert b"<script>" in body
            for path, code, needle in [("/nope", 404, b"/nope"), ("/?since=x", 400, b"since"),
                                       ("/?events=all&events=final", 400, b"twice")]:
                status, _, body = await http_get(port, path)
                assert status == code and needle in body and body.count(b"\n") == 1
            status, _, body = await http_get(
                port, "", raw=b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert status == 405 and b"POST" in body
            status, _, _ = await http_get(port, "", raw=b"\x16\x03\x01garbage\r\n\r\n")
            assert status in (0, 400)
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                assert (await recv_json(ws))["type"] == "hello"
        finally:
            await server.stop()

    run(main())


def test_overlay_page_is_self_contained() -> None:
    """The overlay HTML loads nothing from elsewhere and connects to its own host."""

    async def main() -> bytes:
        server = make_server()
        await server.start()
        try:
            return (await http_get(server.port, "/overlay"))[2]
        finally:
            await server.stop()

    html = run(main()).decode()
    for needle in ["src=", "href=", "@import", "url(", "//cdn", "fetch("]:
        assert needle not in html
    assert "location.host" in html and "since" in html


def test_hostile_frames_are_refused_without_harm() -> None:
    """Bad JSON and unknown types get error replies, binary and huge frames and floods close the
    sender with 1003/1009/1008, and another client keeps receiving meanwhile."""

    async def main() -> None:
        server = make_server(max_message_bytes=1024)
        await server.start()
        url = f"ws://127.0.0.1:{server.port}/"
        try:
            async with connect(url) as watcher, connect(url) as bad:
                await recv_json(watcher)
                await recv_json(bad)
                await bad.send("{oops")
                reply = await recv_json(bad)
                assert reply["type"] == "error" and reply["code"] == "bad_json"
                await bad.send('{"type": "subscribe"}')
                assert (await recv_json(bad))["code"] == "unknown_type"
                await bad.send('{"type": "ping"}')
                assert (await recv_json(bad))["type"] == "pong"
                await bad.send(b"\x00\x01binary junk")
                with pytest.raises(ConnectionClosed):
                    await recv_json(bad)
                assert bad.close_code == CLOSE_UNSUPPORTED_DATA
                server.publish(final(0))
                assert (await recv_json(watcher))["type"] == "final"
            async with connect(url, max_size=None) as watcher, connect(url) as big:
                await recv_json(watcher)
                await recv_json(big)
                await big.send("x" * 100_000)
                with pytest.raises(ConnectionClosed):
                    await recv_json(big)
                assert big.close_code == CLOSE_MESSAGE_TOO_BIG
                server.publish(final(1))
                assert (await recv_json(watcher))["utterance_id"] == 1
            async with connect(url) as flood:
                await recv_json(flood)
                with pytest.raises(ConnectionClosed):
                    for _ in range(50):
                        await flood.send("[]")
                        await recv_json(flood)
                assert flood.close_code == CLOSE_POLICY_VIOLATION
            assert server.clients == 0
        finally:
            await server.stop()

    run(main())


def test_stop_delivers_queued_finals_then_closes_1001() -> None:
    """A final published just before stop() still reaches the client, then it is closed 1001."""

    async def main() -> None:
        server = make_server()
        await server.start()
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await recv_json(ws)
            server.publish(final(0, "the last words"))
            await server.stop()
            assert (await recv_json(ws))["text"] == "the last words"
            with pytest.raises(ConnectionClosed):
                await recv_json(ws)
            assert ws.close_code == CLOSE_GOING_AWAY
            assert ws.close_reason == "server shutting down"

    run(main())


def test_the_server_works_through_the_sink_interface() -> None:
    """Driven only through the Sink interface (name, start, publish, stop with a timeout), the
    server delivers a final and then closes its client with 1001; stopping twice is harmless."""

    async def main() -> None:
        server = make_server()
        sink: Sink = server
        assert sink.name == "websocket"
        await sink.start()
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await recv_json(ws)
            sink.publish(final(0, "through the interface"))
            await sink.stop(5 * unit())
            assert (await recv_json(ws))["text"] == "through the interface"
            with pytest.raises(ConnectionClosed):
                await recv_json(ws)
            assert ws.close_code == CLOSE_GOING_AWAY
        await sink.stop(5 * unit())
        assert server.clients == 0

    run(main())


def test_stop_keeps_its_timeout_when_a_client_never_reads() -> None:
    """stop(timeout) returns within its timeout even though one client never reads (its
    connection is cut off), while a reading client still gets every final and a 1001 close."""
    budget = 2 * unit()

    async def main() -> None:
        # A close timeout far beyond the budget: only stop's own timeout can end it in time.
        server = CaptionServer(ServerConfig(host="127.0.0.1", port=0, client_queue=100_000),
                               SESSION, HELLO, close_timeout=60 * unit())
        await server.start()
        stuck = await asyncio.to_thread(_stuck_client, server.port)
        try:
            stuck_peer = f"127.0.0.1:{stuck.getsockname()[1]}"
            async with connect(f"ws://127.0.0.1:{server.port}/?events=final",
                               max_queue=None) as ws:
                await recv_json(ws)
                published = 0
                while not any(b.peer == stuck_peer and b.queued > 0 for b in server.backlog()):
                    assert published < 5000, "the stuck client's socket never filled up"
                    server.publish(final(published, "a fairly long caption line " * 20))
                    published += 1
                    await asyncio.sleep(0)
                stopping = asyncio.ensure_future(server.stop(budget))
                done, _ = await asyncio.wait({stopping}, timeout=4 * budget)
                stuck.close()  # (only now: a stop that overran must not be unblocked by it)
                assert done, f"stop({budget:g}) was still running after {4 * budget:g} s"
                got = []
                with pytest.raises(ConnectionClosed):
                    while True:
                        got.append((await recv_json(ws))["utterance_id"])
                assert got == list(range(published))
                assert ws.close_code == CLOSE_GOING_AWAY
            assert server.clients == 0
        finally:
            stuck.close()
            await server.stop(1.0)

    run(main(), units=60)


def test_stop_with_a_restart_code_then_start_again_on_the_same_port() -> None:
    """stop(code=1012) closes clients with that code and reason; the server then starts again
    on the port it had and a resuming client gets the finals published while it was down."""

    async def main() -> None:
        server = make_server()
        await server.start()
        port = server.port
        try:
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await recv_json(ws)
                server.publish(final(0))
                assert (await recv_json(ws))["seq"] == 1
                await server.stop(5 * unit(), "restarting", code=1012)
                with pytest.raises(ConnectionClosed):
                    await recv_json(ws)
                assert (ws.close_code, ws.close_reason) == (1012, "restarting")
            server.publish(final(1, "spoken while the server was down"))
            await server.start()
            assert server.port == port
            async with connect(f"ws://127.0.0.1:{port}/?since=1&session={SESSION.id}") as ws:
                assert (await recv_json(ws))["replay"] == {"count": 1, "gap": False}
                assert (await recv_json(ws))["text"] == "spoken while the server was down"
        finally:
            await server.stop()

    run(main())


def test_stop_before_start_does_nothing() -> None:
    """Stopping a server that never started (or with a zero timeout) returns without error."""

    async def main() -> None:
        server = make_server()
        await server.stop(0)
        await server.stop()
        assert server.clients == 0 and server.head_seq == 0

    run(main())


def test_port_in_use_raises_config_error() -> None:
    """Binding a port that is taken raises ConfigError naming server.port."""

    async def main() -> None:
        first = make_server()
        await first.start()
        try:
            second = make_server(port=first.port)
            with pytest.raises(ConfigError) as info:
                await second.start()
            assert info.value.path == "server.port" and str(first.port) in str(info.value)
        finally:
            await first.stop()

    run(main())


# --- 200 clients, one never reading --------------------------------------------------------


def _stuck_client(port: int) -> socket.socket:
    """A WebSocket client with a tiny receive buffer that completes the handshake, then never
    reads again."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, "server closed during handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101")
    return s


def _read_frames_until_close(sock: socket.socket) -> list[tuple[int, bytes]]:
    """Read unmasked server frames (opcode, payload) from a raw socket up to a close frame."""
    sock.settimeout(10 * unit())
    buf = b""
    frames: list[tuple[int, bytes]] = []

    def need(n: int) -> None:
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("connection ended before a close frame")
            buf += chunk

    while True:
        need(2)
        op, length, off = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if length == 126:
            need(4)
            length, off = int.from_bytes(buf[2:4], "big"), 4
        elif length == 127:
            need(10)
            length, off = int.from_bytes(buf[2:10], "big"), 10
        need(off + length)
        frames.append((op, buf[off : off + length]))
        buf = buf[off + length :]
        if op == 0x8:
            return frames


def test_client_that_stops_reading_is_closed_1013_and_can_resume() -> None:
    """A client that stops reading gets, once it reads again, an unbroken run of finals and a
    1013 close whose reason names the since= to resume from; resuming there fills the gap."""

    async def main() -> None:
        server = CaptionServer(ServerConfig(host="127.0.0.1", port=0, client_queue=8),
                               SESSION, HELLO, close_timeout=10 * unit())
        await server.start()
        try:
            stuck = await asyncio.to_thread(_stuck_client, server.port)
            await asyncio.sleep(0)
            published = 0
            while server.clients and published < 3000:
                server.publish(final(published, "a fairly long caption line " * 20))
                published += 1
                await asyncio.sleep(0)
            assert server.clients == 0, "the stuck client was never disconnected"
            frames = await asyncio.to_thread(_read_frames_until_close, stuck)
            stuck.close()
            texts = [json.loads(p) for op, p in frames if op == 0x1]
            assert texts[0]["type"] == "hello"
            seqs = [t["seq"] for t in texts[1:]]
            assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) < published
            payload = frames[-1][1]
            code, reason = int.from_bytes(payload[:2], "big"), payload[2:].decode()
            assert code == CLOSE_TRY_AGAIN_LATER
            assert reason == f"client too slow; reconnect with since={seqs[-1]}"
            url = f"ws://127.0.0.1:{server.port}/?since={seqs[-1]}&session={SESSION.id}"
            async with connect(url) as ws:
                hello = await recv_json(ws)
                assert hello["replay"] == {"count": published - len(seqs), "gap": False}
                rest = [(await recv_json(ws))["seq"] for _ in range(published - len(seqs))]
                assert rest == list(range(len(seqs) + 1, published + 1))
        finally:
            await server.stop()

    run(main(), units=60)


@pytest.mark.slow
def test_200_clients_one_stuck_others_get_every_final() -> None:
    """With 200 clients, one never reading, the other 199 get every final in order, the stuck
    one is held to a bounded backlog and then disconnected, and no one else is."""
    n_clients, n_finals, queue = 200, 250, 32  # the stuck one overflows near final 130

    async def main() -> None:
        server = make_server(client_queue=queue)
        await server.start()
        port = server.port
        received: list[list[int]] = []
        ready = asyncio.Event()
        connected = 0

        async def reader() -> None:
            nonlocal connected
            seqs: list[int] = []
            received.append(seqs)
            async with connect(f"ws://127.0.0.1:{port}/", max_queue=64) as ws:
                await recv_json(ws)
                connected += 1
                if connected == n_clients - 1:
                    ready.set()
                while True:
                    msg = await recv_json(ws, units=30)
                    if msg["type"] == "final":
                        seqs.append(msg["seq"])
                        if msg["utterance_id"] == n_finals - 1:
                            return

        try:
            stuck = await asyncio.to_thread(_stuck_client, port)
            tasks = [asyncio.create_task(reader()) for _ in range(n_clients - 1)]
            await asyncio.wait_for(ready.wait(), 30 * unit())
            assert server.clients == n_clients
            stuck_peer = f"127.0.0.1:{stuck.getsockname()[1]}"
            final_seqs: list[int] = []
            peak_queued = peak_bytes = 0
            for uid in range(n_finals):
                if uid % 4 == 0:
                    server.publish(partial(uid, 1))
                server.publish(final(uid, ("word " * 12) + str(uid)))
                final_seqs.append(server.head_seq)
                # pace like a live engine: let healthy clients drain before the next final
                deadline = time.monotonic() + 10 * unit()
                while True:
                    backlog = server.backlog()
                    for b in backlog:
                        if b.peer == stuck_peer:
                            peak_queued = max(peak_queued, b.queued)
                            peak_bytes = max(peak_bytes, b.write_buffer_bytes)
                    if all(b.queued <= 2 for b in backlog if b.peer != stuck_peer):
                        break
                    assert time.monotonic() < deadline, "healthy clients stopped draining"
                    await asyncio.sleep(0.001)
            assert server.clients == n_clients - 1
            assert all(b.peer != stuck_peer for b in server.backlog())
            await asyncio.wait_for(asyncio.gather(*tasks), 60 * unit())
            assert len(received) == n_clients - 1
            for seqs in received:
                assert seqs == final_seqs
            assert peak_queued <= queue
            assert peak_bytes <= 96 * 1024
            metrics = server.metrics.render().decode()
            assert 'streamcap_client_disconnects_total{reason="slow"} 1.0' in metrics
            stuck.close()
        finally:
            await server.stop()

    run(main(), units=120)
