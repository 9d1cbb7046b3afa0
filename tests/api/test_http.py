"""The h11 request reader of the API: head first, body only once attached, bad requests."""

from __future__ import annotations

import h11

from streamcap.api.http import HttpExchange, raw_response
from streamcap.api.request import ApiError, ApiResponse

HEAD = (b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n"
        b"Authorization: Bearer one\r\nAuthorization: Bearer two\r\nContent-Length: 10\r\n\r\n")


def test_the_body_waits_until_the_head_was_checked() -> None:
    """Body bytes that came with the head reach the consumer only once it is attached."""
    ex = HttpExchange()
    got: list[bytes] = []
    ex.receive(HEAD + b"01234")
    assert ex.head is not None and ex.head.method == b"POST" and ex.received == 0
    assert ex.header("authorization") == "Bearer two"  # the last one given
    assert ex.headers_named("Authorization") == ["Bearer one", "Bearer two"]
    ex.attach(got.append)
    assert b"".join(got) == b"01234" and not ex.complete
    ex.receive(b"56789")
    assert b"".join(got) == b"0123456789" and ex.complete


def test_a_consumer_error_drops_the_rest() -> None:
    """An ApiError from the consumer is kept and the rest of the body is counted, not fed."""
    ex = HttpExchange()
    ex.receive(HEAD)

    def refuse(data: bytes) -> None:
        raise ApiError(413, "too big")

    ex.attach(refuse)
    ex.receive(b"0123456789")
    assert ex.error is not None and ex.error.status == 413 and ex.dropped == 10 and ex.complete


def test_a_malformed_request_is_an_error_not_a_crash() -> None:
    """Garbage, a cut head and a TLS hello become a 400 ApiError (or wait for more data)."""
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"POST / HTTP/9\r\n\r\n",
                 b"BREW /pot HTTP/1.1\r\nHost x\r\n\r\n"):
        ex = HttpExchange()
        ex.receive(junk)
        ex.receive(b"\r\n\r\n")
        assert ex.error is not None and ex.error.status == 400, junk
        assert ex.head is None
    ex = HttpExchange()
    ex.receive(b"POST /v1/audio/trans")
    assert ex.head is None and ex.error is None


def test_a_response_is_rendered_for_h11_and_without_it() -> None:
    """The answer parses as HTTP/1.1 with its status, type, length and Connection: close."""
    ex = HttpExchange()
    ex.receive(HEAD)
    resp = ApiResponse.json(401, {"error": {}}, (("WWW-Authenticate", "Bearer"),))
    for data in (ex.render(resp, "streamcap/x"), raw_response(resp, "streamcap/x")):
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        client.receive_data(data)
        r = client.next_event()
        assert isinstance(r, h11.Response) and r.status_code == 401
        headers = dict(r.headers)
        assert headers[b"content-type"] == b"application/json"
        assert headers[b"connection"] == b"close"
        body = client.next_event()
        assert isinstance(body, h11.Data) and bytes(body.data) == b'{"error": {}}'
