"""The API on a real caption server on 127.0.0.1 (no model: the worker is not running), next
to its WebSocket clients: routing by method, early refusals, slow and silent clients."""

from __future__ import annotations

import asyncio
import json

from support.net import http_get, recv_json
from support.timing import run, unit
from websockets.asyncio.client import connect

from streamcap.api.service import ApiService
from streamcap.config import from_dict
from streamcap.events import Session, StatusEvent
from streamcap.sinks.websocket import CaptionServer, HelloInfo

SESSION = Session(id="sess0000test", epoch=1_700_000_000.0)
HELLO = HelloInfo(model="tiny.en", language="en", audio_device="test")
BOUNDARY = "b0undary"
STATUS = StatusEvent(lag=0.0, rtf=0.0, device_state="running", dropped_frames=0, clients=0)


def make_server(**server: object) -> CaptionServer:
    cfg = from_dict({"server": {"host": "127.0.0.1", "port": 0, **server}})
    api = ApiService(cfg.server, cfg.vad, "tiny.en", lambda: None)
    return CaptionServer(cfg.server, SESSION, HELLO, close_timeout=1.0, api=api,
                         open_timeout=1.0 * unit())


def form(fields: dict[str, str], file: bytes | None) -> bytes:
    out = b""
    for k, v in fields.items():
        out += (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                .encode())
    if file is not None:
        out += (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="a.wav"\r\n\r\n').encode() + file + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


async def post(port: int, body: bytes, headers: dict[str, str] | None = None,
               path: str = "/v1/audio/transcriptions") -> tuple[int, dict[str, str], bytes]:
    hdrs = {"Host": f"127.0.0.1:{port}", "Content-Length": str(len(body)),
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **(headers or {})}
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    return await http_get(port, "", raw=head.encode() + b"\r\n" + body)


def error(body: bytes) -> dict[str, object]:
    obj = json.loads(body)
    assert set(obj["error"]) == {"message", "type", "param", "code"}
    err: dict[str, object] = obj["error"]
    return err


def test_get_and_other_methods_share_the_port_with_websocket_clients() -> None:
    """WebSocket and /healthz as before; GET /v1/models; a POST transcription reaches the API
    (503 without a running model); POST elsewhere is 405 in plain text; /metrics counts the
    API's answers."""

    async def main() -> None:
        server = make_server()
        await server.start()
        port = server.port
        try:
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                assert (await recv_json(ws))["type"] == "hello"
                status, headers, body = await http_get(port, "/v1/models")
                assert status == 200 and headers["content-type"] == "application/json"
                assert json.loads(body)["data"][0]["id"] == "tiny.en"
                status, _, body = await post(port, form({"model": "whisper-1"}, b"RIFF"))
                assert status == 503 and "not ready" in str(error(body)["message"])
                status, headers, body = await post(port, b"", path="/healthz")
                assert status == 405 and body == b"method 'POST' not allowed (only GET)\n"
                status, _, body = await post(port, b"x", path="/v1/chat/completions")
                assert status == 404 and error(body)["code"] == "not_found"
                status, _, body = await http_get(port, "/healthz")
                assert status == 200
                status, _, body = await http_get(port, "/metrics")
                text = body.decode()
                for code, n in (("200", 1), ("503", 1), ("404", 1)):
                    assert f'streamcap_api_requests_total{{status="{code}"}} {n}.0' in text
                assert 'status="405"' not in text  # POST /healthz is not an API request
                server.publish(STATUS)
                assert (await recv_json(ws))["type"] == "status"
        finally:
            await server.stop()

    run(main())


def test_bad_requests_get_the_error_shape() -> None:
    """Wrong token, foreign or doubled Host, doubled token, not multipart, no file,
    malformed HTTP: each its status."""

    async def main() -> None:
        server = make_server(token="t0k")
        await server.start()
        port = server.port
        ok = {"Authorization": "Bearer t0k"}
        try:
            status, headers, body = await post(port, form({"model": "whisper-1"}, b"RIFF"))
            assert status == 401 and error(body)["code"] == "invalid_api_key"
            assert headers["www-authenticate"].startswith("Bearer")
            status, _, body = await post(port, b"{}", {**ok, "Content-Type": "application/json"})
            assert status == 415
            status, _, body = await post(port, form({"model": "whisper-1"}, None), ok)
            assert status == 400 and error(body)["param"] == "file"
            status, _, body = await post(port, form({}, b"RIFF"), {**ok, "Host": "evil.example"})
            assert status == 403
            status, _, body = await post(port, form({}, b"RIFF"), {
                "Authorization": "Bearer x\r\nAuthorization: Bearer t0k"})
            assert status == 400 and error(body)["message"] == "Authorization header given 2 times"
            status, _, body = await post(port, form({}, b"RIFF"),
                                         {**ok, "Host": "127.0.0.1\r\nHost: evil.example"})
            assert status == 400 and "multiple Host" in str(error(body)["message"])
            status, _, body = await http_get(
                port, "", raw=b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: nope\r\n\r\n")
            assert status == 400 and "malformed HTTP request" in str(error(body)["message"])
        finally:
            await server.stop()

    run(main())


def test_an_oversize_upload_is_refused_while_it_is_still_being_sent() -> None:
    """A 10 MB body against a 1 MB cap: the 413 arrives while the client is still sending,
    and the connection is not reset under it."""

    async def main() -> None:
        server = make_server(max_upload_mb=1)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            size = 10 * 1024 * 1024
            writer.write((f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                          f"Content-Length: {size}\r\n\r\n").encode())
            sent = 0

            async def send() -> None:
                nonlocal sent
                chunk = b"\0" * 65536
                while sent < size:
                    writer.write(chunk)
                    sent += len(chunk)
                    await writer.drain()

            sender = asyncio.create_task(send())
            data = await asyncio.wait_for(reader.read(), 10 * unit())
            sender.cancel()
            writer.close()
            assert data.startswith(b"HTTP/1.1 413 ")
            body = data.partition(b"\r\n\r\n")[2]
            assert "server.max_upload_mb" in str(error(body)["message"])
        finally:
            await server.stop()

    run(main())


def test_silent_and_stalled_clients_are_dropped_after_the_open_timeout() -> None:
    """A connection that sends nothing, or half a request line, is closed after open_timeout;
    the server keeps serving."""

    async def main() -> None:
        server = make_server()
        await server.start()
        try:
            for first in (b"", b"POS", b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost"):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(first)
                assert await asyncio.wait_for(reader.read(), 5 * unit()) == b""
                writer.close()
            status, _, _ = await http_get(server.port, "/v1/models")
            assert status == 200
        finally:
            await server.stop()

    run(main())
