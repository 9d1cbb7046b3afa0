"""The /overlay page in real headless Chromium, driven over the DevTools protocol."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import pytest
from PIL import Image
from support.chromium import CHROMIUM, chromium_page, count_rgb
from support.events import final, partial
from support.timing import run, unit

from streamcap.config import ServerConfig
from streamcap.events import Session
from streamcap.sinks.websocket import CaptionServer, HelloInfo

FINAL_RGB = (255, 0, 255)
PARTIAL_RGB = (0, 255, 0)


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


@pytest.mark.system
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_overlay_labels_speakers_in_colours_with_one_partial_per_input(tmp_path: Path) -> None:
    """With two labelled inputs the overlay starts each line with its speaker's label in a
    colour of that speaker's own, shows the partials of both inputs at once (a final replaces
    only its own input's partial), hides labels with labels=0 and shows translations with
    show=translation."""
    server = CaptionServer(
        ServerConfig(host="127.0.0.1", port=0),
        Session("overlaylabels1", time.time()),
        HelloInfo("tiny.en", "en", "test"),
        close_timeout=1.0,
    )
    lines_js = "Array.from(document.querySelectorAll('#box > div'), e => e.textContent)"
    who_js = ("Array.from(document.querySelectorAll('#box .who'), "
              "e => [e.textContent, getComputedStyle(e).color])")

    async def main() -> None:
        await server.start()
        base = f"http://127.0.0.1:{server.port}/overlay?bg=000000&lines=4&size=32"
        try:
            server.publish(final(1, "Hello from my side", source="You"))
            server.publish(final(2, "Hola desde aqui", source="Others", speaker="Others 2",
                                 translation="Hello from here"))
            async with chromium_page(base, tmp_path) as page:
                shown = await page.wait_for(f"{lines_js}.length >= 2 && {lines_js}", 30,
                                            "the labelled finals")
                assert shown == ["You:Hello from my side", "Others 2:Hola desde aqui"]
                server.publish(partial(3, text="still", tail="talking", source="You"))
                server.publish(partial(4, text="me", tail="too", source="Others"))
                shown = await page.wait_for(f"{lines_js}.length === 4 && {lines_js}", 20,
                                            "two partials at once")
                assert shown[2:] == ["You:still talking", "Others:me too"]
                server.publish(final(3, "still talking", source="You"))
                shown = await page.wait_for(
                    f"document.querySelectorAll('#box .partial').length === 1 && {lines_js}",
                    20, "the final of one input")
                assert shown[-2:] == ["You:still talking", "Others:me too"]
                who = dict(await page.eval(who_js))
                assert len({who["You:"], who["Others 2:"], who["Others:"]}) == 3
                png = base64.b64decode(
                    (await page.call("Page.captureScreenshot", format="png"))["data"])
                (tmp_path / "overlay-labels.png").write_bytes(png)
                for css in who.values():
                    rgb = tuple(int(x) for x in css[css.index("(") + 1 : -1].split(","))
                    assert count_rgb(png, rgb) > 30, f"label colour {css} not on screen"

                await page.call("Page.navigate", url=base + "&labels=0&show=translation")
                shown = await page.wait_for(
                    f"document.body.dataset.state === 'open' && {lines_js}.length >= 3 && "
                    f"{lines_js}", 30, "the overlay without labels")
                assert "Hello from here" in shown and "Hello from my side" in shown
                assert await page.eval("document.querySelectorAll('#box .who').length") == 0
        finally:
            await server.stop()

    run(main(), units=150)
