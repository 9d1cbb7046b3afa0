"""Network helpers for tests: free ports, a raw HTTP/1.1 GET, JSON over a WebSocket client."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from websockets.asyncio.client import ClientConnection

from .timing import unit


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def recv_json(ws: ClientConnection, units: float = 5) -> dict[str, Any]:
    """The next message of ``ws`` as a JSON object (fails after ``units`` timeout units)."""
    raw = await asyncio.wait_for(ws.recv(), units * unit())
    assert isinstance(raw, str), f"expected a text frame, got {type(raw).__name__}"
    obj = json.loads(raw)
    assert isinstance(obj, dict), f"expected a JSON object, got {raw[:80]!r}"
    return obj


async def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` from 127.0.0.1:``port`` over a fresh connection (or send ``raw`` bytes).

    Returns the status (0 when the server answered nothing), lower-cased headers and the body.
    """
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
