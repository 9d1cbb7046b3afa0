"""Headless Chromium driven over the DevTools protocol, for tests of the served pages."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from websockets.asyncio.client import ClientConnection, connect

from .timing import unit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Cdp:
    """A minimal DevTools-protocol client for one page (flattened session)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.session: str | None = None

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if self.session is not None:
            msg["sessionId"] = self.session
        await self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), 20 * unit()))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result

    async def eval(self, expr: str) -> Any:
        r = await self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        return r["result"].get("value")

    async def wait_for(self, expr: str, units: float, what: str) -> Any:
        deadline = time.monotonic() + units * unit()
        while True:
            value = await self.eval(expr)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def chromium_page(
    url: str, tmp: Path, width: int = 1280, height: int = 360, mobile: bool = False
) -> AsyncIterator[Cdp]:
    """Headless Chromium showing ``url`` in a ``width`` x ``height`` page, driven over CDP."""
    assert CHROMIUM is not None
    profile = tmp / "profile"
    profile.mkdir()
    log = (tmp / "chromium.log").open("wb")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
         "--remote-debugging-port=0", f"--window-size={width},{height}", "about:blank"],
        stdout=log, stderr=log,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30 * unit()
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            assert proc.poll() is None, f"chromium exited early, see {tmp / 'chromium.log'}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        async with connect(f"ws://127.0.0.1:{port}{path}", max_size=None) as ws:
            cdp = Cdp(ws)
            target = await cdp.call("Target.createTarget", url="about:blank")
            attached = await cdp.call("Target.attachToTarget", targetId=target["targetId"],
                                      flatten=True)
            cdp.session = attached["sessionId"]
            await cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                           deviceScaleFactor=1, mobile=mobile)
            await cdp.call("Page.navigate", url=url)
            yield cdp
            cdp.session = None
            with contextlib.suppress(Exception):
                await cdp.call("Browser.close")
    finally:
        try:
            proc.wait(timeout=10 * unit())
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def count_rgb(png: bytes, rgb: tuple[int, int, int]) -> int:
    """How many pixels of the PNG image have exactly the colour ``rgb``."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    pixels = np.asarray(img).reshape(-1, 3)
    return int(np.count_nonzero((pixels == np.array(rgb, dtype=np.uint8)).all(axis=1)))
