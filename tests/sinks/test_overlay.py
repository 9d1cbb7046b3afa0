"""The /overlay page in real headless Chromium, driven over the DevTools protocol."""

from __future__ import annotations

import asyncio
import base64
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
import pytest
from PIL import Image
from support.events import final, partial
from support.timing import run, unit
from websockets.asyncio.client import ClientConnection, connect

from streamcap.config import ServerConfig
from streamcap.events import Session
from streamcap.sinks.websocket import CaptionServer, HelloInfo

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FINAL_RGB = (255, 0, 255)
PARTIAL_RGB = (0, 255, 0)


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
async def chromium_page(url: str, tmp: Path) -> AsyncIterator[Cdp]:
    assert CHROMIUM is not None
    profile = tmp / "profile"
    profile.mkdir()
    log = (tmp / "chromium.log").open("wb")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
         "--remote-debugging-port=0", "--window-size=1280,360", "about:blank"],
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
            await cdp.call("Emulation.setDeviceMetricsOverride", width=1280, height=360,
                           deviceScaleFactor=1, mobile=False)
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
    img = Image.open(io.BytesIO(png)).convert("RGB")
    pixels = np.asarray(img).reshape(-1, 3)
    return int(np.count_nonzero((pixels == np.array(rgb, dtype=np.uint8)).all(axis=1)))


@pytest.mark.system
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_overlay_in_headless_chromium_shows_captions_and_resumes(tmp_path: Path) -> None:
    """In Chromium the overlay shows the last finals in the colour from the query, the partial
    tail in its own colour, hostile text as text, and after a server restart it reconnects by
    itself and shows the final it missed exactly once."""
    server = CaptionServer(
        ServerConfig(host="127.0.0.1", port=0),
        Session("overlaytest1", time.time()),
        HelloInfo("tiny.en", "en", "test"),
        close_timeout=1.0,
    )

    async def main() -> None:
        await server.start()
        try:
            server.publish(final(0, "Too old to be replayed"))
            server.publish(final(1, "Oldest line on screen"))
            server.publish(final(2, "Hello from the captions"))
            server.publish(final(3, "<img src=x onerror=alert(1)> as text"))
            url = (f"http://127.0.0.1:{server.port}/overlay?color=ff00ff&partial_color=00ff00"
                   "&bg=000000&size=48&lines=3&font=DejaVu%20Sans")
            async with chromium_page(url, tmp_path) as page:
                finals_js = ("Array.from(document.querySelectorAll('#box .final'), "
                             "e => e.textContent)")
                shown = await page.wait_for(f"{finals_js}.length >= 3 && {finals_js}", 30,
                                            "replayed finals on first load")
                assert shown == ["Oldest line on screen", "Hello from the captions",
                                 "<img src=x onerror=alert(1)> as text"]
                assert await page.eval("document.querySelectorAll('img').length") == 0
                server.publish(partial(4, text="the partial", tail="tail"))
                tail = await page.wait_for(
                    "(document.querySelector('#box .partial') || {}).textContent", 20,
                    "the partial tail")
                assert tail == "the partial tail"
                rolled = await page.eval(
                    "document.querySelector('#box .final').getBoundingClientRect().bottom <= "
                    "document.getElementById('box').getBoundingClientRect().top + 1")
                assert rolled, "with lines=3 the oldest of four lines should have rolled off"
                shot = await page.call("Page.captureScreenshot", format="png")
                png = base64.b64decode(shot["data"])
                (tmp_path / "overlay.png").write_bytes(png)
                img = Image.open(io.BytesIO(png))
                assert img.size == (1280, 360)
                assert count_rgb(png, FINAL_RGB) > 2000
                assert count_rgb(png, PARTIAL_RGB) > 500
                assert count_rgb(png, (0, 0, 0)) > 1280 * 360 // 2  # bg=000000 applied

                await server.stop(10 * unit(), "restarting", code=1012)
                assert await page.wait_for("document.body.dataset.state === 'closed'", 20,
                                           "the page to notice the restart")
                server.publish(final(4, "Words spoken while away"))
                await server.start()
                shown = await page.wait_for(
                    f"{finals_js}.includes('Words spoken while away') && {finals_js}", 40,
                    "the missed final after reconnecting")
                assert shown.count("Words spoken while away") == 1
                assert shown.count("Hello from the captions") == 1
                assert await page.eval("document.querySelector('#box .partial')") is None
                assert await page.eval("document.body.dataset.state") == "open"
                server.publish(final(5, "And live again"))
                await page.wait_for(f"{finals_js}.includes('And live again')", 20,
                                    "a live final after reconnecting")
        finally:
            await server.stop()

    run(main(), units=150)
