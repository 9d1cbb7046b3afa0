"""The caption server: pure policy classes, then a real server on 127.0.0.1 with real clients."""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamcap.config import ServerConfig
from streamcap.errors import ConfigError, ProtocolError
from streamcap.events import (
    ErrorEvent,
    Event,
    FinalCaption,
    PartialCaption,
    Session,
    StatusEvent,
    VadEvent,
    Word,
    event_from_dict,
)
from streamcap.sinks.websocket import (
    CLOSE_GOING_AWAY,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNSUPPORTED_DATA,
    CaptionServer,
    ClientFrameError,
    ClientQueue,
    Envelope,
    HelloInfo,
    Offer,
    Outgoing,
    ReplayBuffer,
    RequestRejected,
    check_request,
    parse_client_frame,
)

T = TypeVar("T")


def unit() -> float:
    """One timeout unit in seconds, scaled by STREAMCAP_TIMEOUT_SCALE for slow machines."""
    try:
        return max(0.1, float(os.environ.get("STREAMCAP_TIMEOUT_SCALE", "1")))
    except ValueError:
        return 1.0


def run(coro: Awaitable[T], units: float = 20) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, units * unit())

    return asyncio.run(bounded())


SESSION = Session(id="sess0000test", epoch=1_700_000_000.0)
HELLO = HelloInfo(model="tiny.en", language="en", audio_device="test-null-sink")


def words(text: str, start: float) -> tuple[Word, ...]:
    out = []
    t = start
    for w in text.split():
        out.append(Word(text=" " + w, start=round(t, 3), end=round(t + 0.25, 3), probability=0.9))
        t += 0.3
    return tuple(out)


def final(uid: int, text: str | None = None) -> FinalCaption:
    text = text if text is not None else f"final number {uid} of the test session"
    ws = words(text, uid * 5.0)
    return FinalCaption(utterance_id=uid, text=text, words=ws, start=ws[0].start, end=ws[-1].end)


def partial(uid: int, rev: int, text: str = "partial words here") -> PartialCaption:
    ws = words(text, uid * 5.0)
    ws = (*ws[:-1], Word(ws[-1].text, ws[-1].start, ws[-1].end, 0.5, stable=False))
    return PartialCaption(utterance_id=uid, revision=rev, words=ws, start=ws[0].start,
                          end=ws[-1].end)


def out(seq: int, type_: str, uid: int | None = None, emitted: float | None = 1.0) -> Outgoing:
    return Outgoing(seq=seq, type=type_, body=f'{{"seq":{seq}', utterance_id=uid, emitted=emitted)


# --- Envelope ------------------------------------------------------------------------------


def test_envelope_numbers_events_and_round_trips() -> None:
    """Sealed events get seq 1, 2, 3 and their JSON carries v, session, emitted, t and the event."""
    env = Envelope(SESSION)
    events: list[Event] = [VadEvent("speech_start", 1.5, 0), partial(0, 1), final(0)]
    for i, ev in enumerate(events, start=1):
        msg = env.seal(ev, emitted=1000.0 + i)
        assert msg.seq == i == env.head
        obj = json.loads(msg.render(2000.25))
        assert obj["v"] == 1 and obj["seq"] == i and obj["session"] == SESSION.id
        assert obj["type"] == ev.type and obj["emitted"] == 1000.0 + i and obj["t"] == 2000.25
        assert "replay" not in obj
        assert event_from_dict(obj) == ev
    assert json.loads(env.seal(final(1), 0.0).render(1.0, replay=True))["replay"] is True


def test_envelope_direct_messages_repeat_the_head_seq() -> None:
    """hello/pong messages carry the current head seq without advancing it, and no emitted time."""
    env = Envelope(SESSION)
    assert env.direct("hello", {"model": "x"}).seq == 0
    env.seal(final(0), 1.0)
    pong = env.direct("pong")
    assert pong.seq == 1 and env.head == 1 and pong.emitted is None
    assert json.loads(pong.render(3.0)) == {"v": 1, "type": "pong", "seq": 1,
                                            "session": SESSION.id, "t": 3.0}


def test_envelope_writes_non_finite_numbers_as_null() -> None:
    """A status with an infinite or NaN figure still becomes valid JSON (null), not NaN."""
    env = Envelope(SESSION)
    msg = env.seal(StatusEvent(lag=math.inf, rtf=math.nan, device_state="ok", dropped_frames=0), 1)
    obj = json.loads(msg.render(1.0))
    assert obj["lag"] is None and obj["rtf"] is None


# --- ReplayBuffer --------------------------------------------------------------------------


def test_replay_buffer_since_last_and_gap() -> None:
    """since=N gives finals after N; last=K the newest K; evicted finals asked for set gap."""
    buf = ReplayBuffer(3)
    assert buf.select(since=0, last=0, head=0) .messages == ()
    for seq in (2, 4, 6, 8, 10):
        buf.append(out(seq, "final", seq))
    assert len(buf) == 3
    r = buf.select(since=6, last=0, head=10)
    assert [m.seq for m in r.messages] == [8, 10] and not r.gap
    r = buf.select(since=1, last=0, head=10)
    assert [m.seq for m in r.messages] == [6, 8, 10] and r.gap
    r = buf.select(since=None, last=2, head=10)
    assert [m.seq for m in r.messages] == [8, 10] and not r.gap
    assert buf.select(since=None, last=0, head=10).messages == ()
    assert buf.select(since=10, last=0, head=10).messages == ()


def test_replay_buffer_foreign_session_replays_everything() -> None:
    """A since from another session (or beyond the head) replays the whole buffer."""
    buf = ReplayBuffer(10)
    for seq in (1, 2, 3):
        buf.append(out(seq, "final", seq))
    assert len(buf.select(since=2, last=0, head=3, same_session=False).messages) == 3
    assert len(buf.select(since=99, last=0, head=3).messages) == 3


def test_replay_buffer_of_zero_capacity_keeps_nothing() -> None:
    """With replay disabled nothing is replayed and a resume reports the gap."""
    buf = ReplayBuffer(0)
    buf.append(out(1, "final", 1))
    r = buf.select(since=0, last=5, head=1)
    assert r.messages == () and r.gap


# --- ClientQueue ---------------------------------------------------------------------------


def test_queue_newer_partial_replaces_queued_one_of_same_utterance() -> None:
    """A newer partial for the same utterance replaces the queued one (moved to the back)."""
    dropped: list[str] = []
    q = ClientQueue(10, on_drop=dropped.append)
    assert q.offer(out(1, "partial", 0)) is Offer.QUEUED
    assert q.offer(out(2, "vad", 0)) is Offer.QUEUED
    assert q.offer(out(3, "partial", 0)) is Offer.QUEUED
    assert q.offer(out(4, "partial", 1)) is Offer.QUEUED
    assert q.offer(out(5, "status")) is Offer.QUEUED
    assert q.offer(out(6, "status")) is Offer.QUEUED
    seqs = []
    while (m := q.pop()) is not None:
        seqs.append(m.seq)
    assert seqs == [2, 3, 4, 6]
    assert dropped == ["partial", "status"]
    assert q.pop() is None


def test_queue_full_drops_partials_never_finals() -> None:
    """A full queue loses partials/vad first; full of finals it reports overflow for a final."""
    dropped: list[str] = []
    q = ClientQueue(3, on_drop=dropped.append)
    q.offer(out(1, "final", 0))
    q.offer(out(2, "partial", 1))
    q.offer(out(3, "final", 1))
    assert q.offer(out(4, "final", 2)) is Offer.QUEUED  # the partial made room
    assert dropped == ["partial"]
    assert q.offer(out(5, "partial", 3)) is Offer.DROPPED
    assert q.offer(out(6, "vad", 3)) is Offer.DROPPED
    assert q.offer(out(7, "final", 3)) is Offer.OVERFLOW
    assert q.offer(out(8, "pong", emitted=None), direct=True) is Offer.OVERFLOW
    assert [q.pop().seq for _ in range(3)] == [1, 3, 4]  # type: ignore[union-attr]


def test_queue_filter_and_direct_messages() -> None:
    """A finals-only queue skips other events but still takes direct replies like pong."""
    q = ClientQueue(4, types=frozenset({"final"}))
    assert q.offer(out(1, "partial", 0)) is Offer.FILTERED
    assert q.offer(out(2, "status")) is Offer.FILTERED
    assert q.offer(out(2, "pong", emitted=None), direct=True) is Offer.QUEUED
    assert q.offer(out(3, "final", 0)) is Offer.QUEUED
    assert len(q) == 2


def test_queue_rejects_zero_size() -> None:
    """A queue that could hold nothing is a programming error."""
    with pytest.raises(ValueError, match="maxsize"):
        ClientQueue(0)


# --- client frames -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code", "close"),
    [
        (b"\x00\xff\x13junk", "binary_frame", CLOSE_UNSUPPORTED_DATA),
        ("x" * 5000, "too_big", CLOSE_MESSAGE_TOO_BIG),
        ("", "bad_json", None),
        ("{not json", "bad_json", None),
        ("[" * 2000 + "]" * 2000, "bad_json", None),
        ("[1, 2]", "bad_message", None),
        ('"ping"', "bad_message", None),
        ('{"type": "subscribe"}', "unknown_type", None),
        ('{"type": ["ping"]}', "unknown_type", None),
        ("{}", "unknown_type", None),
    ],
)
def test_parse_client_frame_refuses_hostile_frames(
    frame: str | bytes, code: str, close: int | None
) -> None:
    """Binary, oversize, malformed or unknown frames raise a ProtocolError naming the fault."""
    with pytest.raises(ClientFrameError) as info:
        parse_client_frame(frame, 4096)
    assert isinstance(info.value, ProtocolError)
    assert info.value.code == code and info.value.close_code == close
    assert info.value.message and "\n" not in info.value.message


def test_parse_client_frame_accepts_ping() -> None:
    """The one client request, a ping object, is recognised (extra fields are ignored)."""
    assert parse_client_frame('{"type": "ping", "id": 7}', 4096) == "ping"


# --- request checks ------------------------------------------------------------------------


def _check(path: str, host: str | None = "127.0.0.1:8765", origin: str | None = None,
           auth: str | None = None, **cfg: Any) -> Any:
    return check_request(path, host=host, origin=origin, authorization=auth,
                         cfg=ServerConfig(**cfg), local_names=("myhost",))


def test_check_request_routes_and_params() -> None:
    """Known routes are admitted and the WebSocket query is parsed into typed parameters."""
    c = _check("/?since=12&events=final&session=abc_DEF-1&last=3")
    assert c.route == "/" and c.host == "127.0.0.1:8765"
    assert (c.params.since, c.params.last, c.params.session, c.params.finals_only) == (
        12, 3, "abc_DEF-1", True)
    assert _check("/").params.since is None
    assert _check("/overlay?font=Arial&size=40&whatever=1").route == "/overlay"
    assert _check("/healthz").route == "/healthz"
    assert _check("/metrics").route == "/metrics"
    assert _check("/", host="localhost:8765").host == "localhost:8765"
    assert _check("/", host="[::1]:8765").host == "[::1]:8765"
    assert _check("/", host="MYHOST").host == "myhost"


@pytest.mark.parametrize(
    ("path", "status", "needle"),
    [
        ("/nope", 404, "/nope"),
        ("/?since=abc", 400, "since"),
        ("/?since=-1", 400, "since"),
        ("/?since=99999999999999999999999", 400, "since"),
        ("/?last=x", 400, "last"),
        ("/?events=partial", 400, "events"),
        ("/?session=../../etc", 400, "session"),
        ("/?foo=1", 400, "foo"),
        ("/?since=1&since=2", 400, "since"),
        ("/?a=1&b=2&c=3&d=4&e=5&f=6&g=7", 400, "too many"),
    ],
)
def test_check_request_refuses_bad_paths_and_queries(path: str, status: int, needle: str) -> None:
    """Unknown paths and malformed query parameters are refused with a reason naming them."""
    with pytest.raises(RequestRejected) as info:
        _check(path)
    assert info.value.status == status and needle in info.value.message


def test_check_request_refuses_methods_other_than_get() -> None:
    """POST and other methods are refused with 405 naming the method."""
    with pytest.raises(RequestRejected) as info:
        check_request("/healthz", host="127.0.0.1", origin=None, authorization=None,
                      cfg=ServerConfig(), method="POST")
    assert info.value.status == 405 and "POST" in info.value.message


@pytest.mark.parametrize(
    ("host", "origin", "ok"),
    [
        ("127.0.0.1:8765", None, True),
        ("127.0.0.1:8765", "http://127.0.0.1:8765", True),
        ("localhost:8765", "http://localhost:8765", True),
        ("127.0.0.1:8765", "https://evil.example", False),
        ("127.0.0.1:8765", "null", False),
        ("127.0.0.1:8765", "http://localhost:8765", False),
        ("127.0.0.1:8765", "http://127.0.0.1:9999", False),
        ("127.0.0.1:8765", "https://studio.example", True),
        ("evil.example:8765", "http://evil.example:8765", False),  # DNS rebinding
        ("evil.example:8765", None, False),
        ("studio.example", "https://studio.example", True),
        (None, None, False),
        ("127.0.0.1:80:80", None, False),
        ("127.0.0.1:port", None, False),
        ("[::1", None, False),
        ("a b:8765", None, False),
    ],
)
def test_check_request_origin_and_host_rules(host: str | None, origin: str | None,
                                             ok: bool) -> None:
    """Only own-origin pages, allowed origins and origin-less clients reach a known Host."""
    cfg: dict[str, Any] = {"allowed_origins": ("https://studio.example/",)}
    if ok:
        assert _check("/", host=host, origin=origin, **cfg).route == "/"
    else:
        with pytest.raises(RequestRejected) as info:
            _check("/", host=host, origin=origin, **cfg)
        assert info.value.status in (400, 403)


def test_check_request_token_rules() -> None:
    """With a token, / and /metrics need it by header or query; /healthz and /overlay do not."""
    tok = {"token": "s3cret"}
    assert _check("/?token=s3cret", **tok).route == "/"
    assert _check("/", auth="Bearer s3cret", **tok).route == "/"
    assert _check("/metrics", auth="bearer s3cret", **tok).route == "/metrics"
    assert _check("/healthz", **tok).route == "/healthz"
    assert _check("/overlay", **tok).route == "/overlay"
    for path, auth in [("/", None), ("/?token=wrong", None), ("/", "Bearer wrong"),
                       ("/", "Basic czNjcmV0"), ("/metrics", None), ("/?token=", None)]:
        with pytest.raises(RequestRejected) as info:
            _check(path, auth=auth, **tok)
        assert info.value.status == 401


# --- real server ---------------------------------------------------------------------------


def make_server(health: Callable[[], bool] = lambda: True, **cfg: Any) -> CaptionServer:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0}
    base.update(cfg)
    return CaptionServer(ServerConfig(**base), SESSION, HELLO, health, close_timeout=1.0)


async def recv_json(ws: ClientConnection, units: float = 5) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), units * unit())
    assert isinstance(raw, str)
    obj = json.loads(raw)
    assert isinstance(obj, dict)
    return obj


async def http_get(port: int, path: str, headers: dict[str, str] | None = None,
                   raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    hdrs = {"Host": f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
    req = raw if raw is not None else (
        f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    ).encode()
    writer.write(req)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5 * unit())
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0]:
        return 0, {}, body
    status = int(lines[0].split()[1])
    parsed = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, parsed, body


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
    healthy: list[bool | None] = [True]

    def probe() -> bool:
        if healthy[0] is None:
            raise RuntimeError("probe exploded")
        return bool(healthy[0])

    async def main() -> None:
        server = make_server(health=probe)
        await server.start()
        port = server.port
        try:
            status, _, body = await http_get(port, "/healthz")
            assert (status, body) == (200, b"ok\n")
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


def test_publish_threadsafe_from_a_worker_thread() -> None:
    """Events published from another thread arrive complete and in order."""

    async def main() -> None:
        server = make_server()
        await server.start()
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/?events=final") as ws:
                await recv_json(ws)

                def worker() -> None:
                    for uid in range(20):
                        server.publish_threadsafe(partial(uid, 1))
                        server.publish_threadsafe(final(uid))

                th = threading.Thread(target=worker)
                th.start()
                got = [await recv_json(ws) for _ in range(20)]
                th.join()
                assert [g["utterance_id"] for g in got] == list(range(20))
                assert all(g["t"] >= g["emitted"] for g in got)
        finally:
            await server.stop()

    run(main())


def test_publish_threadsafe_before_start_is_an_error() -> None:
    """Publishing from a thread before the server has a loop fails loudly instead of losing it."""
    server = make_server()
    with pytest.raises(RuntimeError, match="before start"):
        server.publish_threadsafe(final(0))


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
