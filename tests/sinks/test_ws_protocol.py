"""The caption protocol without I/O (sinks/ws_protocol.py): envelope, replay, client queues,
client frames, request checks and hello, driven with plain calls."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from support.events import final, partial

from streamcap.config import ServerConfig
from streamcap.errors import ProtocolError
from streamcap.events import Event, Session, StatusEvent, VadEvent, event_from_dict
from streamcap.sinks.ws_protocol import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_UNSUPPORTED_DATA,
    ClientFrameError,
    ClientParams,
    ClientQueue,
    Envelope,
    HelloInfo,
    Offer,
    Outgoing,
    Replay,
    ReplayBuffer,
    RequestRejected,
    check_request,
    close_reason,
    hello_message,
    load_overlay,
    overlay_csp,
    parse_client_frame,
)

SESSION = Session(id="sess0000test", epoch=1_700_000_000.0)
HELLO = HelloInfo(model="tiny.en", language="en", audio_device="test-null-sink")


def out(seq: int, type_: str, uid: int | None = None, emitted: float | None = 1.0) -> Outgoing:
    """A queued message of ``type_`` with a stand-in body (queues and replay never read it)."""
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


def test_check_request_refuses_a_missing_or_empty_host() -> None:
    """A request without a Host header, or with an empty one, is refused with 400 naming it."""
    for host in (None, "", "   "):
        with pytest.raises(RequestRejected) as info:
            _check("/", host=host)
        assert info.value.status == 400 and "Host" in info.value.message


def test_client_params_pick_the_queue_filter() -> None:
    """events=final makes a finals-only queue; the default lets every event type through."""
    assert _check("/?events=final").params.types == frozenset({"final"})
    assert _check("/?events=all").params.types is None
    assert ClientParams().types is None


# --- hello, close reasons, overlay ---------------------------------------------------------


def test_hello_names_the_daemon_the_filter_and_the_replay() -> None:
    """hello carries the daemon's model, language, device and session start, the event filter,
    and how many replayed finals follow (with the gap flag), at the current head seq."""
    env = Envelope(SESSION)
    env.seal(final(0), 1.0)
    replay = Replay((out(1, "final", 0),), gap=True)
    msg = hello_message(env, HELLO, SESSION, ClientParams(finals_only=True), replay)
    obj = json.loads(msg.render(5.0))
    assert obj["type"] == "hello" and obj["seq"] == 1 and obj["v"] == obj["protocol"] == 1
    assert (obj["model"], obj["language"], obj["audio_device"]) == (
        "tiny.en", "en", "test-null-sink")
    assert obj["session"] == SESSION.id and obj["session_start"] == SESSION.epoch
    assert obj["server"] == "streamcap" and obj["version"] == HELLO.version
    assert obj["events"] == "final" and obj["replay"] == {"count": 1, "gap": True}
    assert msg.emitted is None and env.head == 1  # never replayed, seq not advanced
    empty = json.loads(hello_message(env, HELLO, SESSION, ClientParams(), Replay((), False))
                       .render(5.0))
    assert empty["events"] == "all" and empty["replay"] == {"count": 0, "gap": False}


def test_close_reason_fits_a_close_frame_without_splitting_characters() -> None:
    """Reasons are cut to 123 UTF-8 bytes, never in the middle of a character; short and
    empty reasons pass unchanged."""
    assert close_reason("") == ""
    assert close_reason("server shutting down") == "server shutting down"
    long = close_reason("x" * 500)
    assert long == "x" * 123
    cjk = close_reason("字" * 100)  # 3 bytes each: 41 whole characters fit
    assert cjk == "字" * 41 and len(cjk.encode("utf-8")) == 123
    mixed = close_reason("a" + "é" * 100)  # 1 + 2*61 = 123 bytes
    assert mixed == "a" + "é" * 61


def test_overlay_page_and_its_policy() -> None:
    """The overlay's CSP allows exactly its own inline script and style (by hash) and a
    connection back to the host it was served from, nothing else."""
    html, policy = load_overlay()
    text = html.decode("utf-8")
    assert text.count("<script>") == 1 and "<style>" in text
    assert policy.startswith("script-src 'sha256-") and "; style-src 'sha256-" in policy
    csp = overlay_csp(policy, "127.0.0.1:8765")
    assert csp.startswith("default-src 'none'; " + policy + "; ")
    assert "connect-src 'self' ws://127.0.0.1:8765 wss://127.0.0.1:8765;" in csp
    assert "unsafe" not in csp and "frame-ancestors 'none'" in csp
