"""The /transcript page and its downloads on a real CaptionServer, in real headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import srt
import webvtt
from PIL import Image
from support.chromium import CHROMIUM, Cdp, chromium_page
from support.events import final, partial
from support.timing import run, unit

from streamcap.config import ServerConfig
from streamcap.events import Session
from streamcap.sinks.websocket import CaptionServer, HelloInfo

TOKEN = "page-token"
ROWS_JS = ("Array.from(document.querySelectorAll('#log .final'), e => [e.dataset.speaker || null, "
           "(e.querySelector('.who') || {}).textContent || null, "
           "e.querySelector('.body .text').textContent])")
PARTIALS_JS = ("Array.from(document.querySelectorAll('#partials .partial'), "
               "e => e.querySelector('.body').textContent)")


def http_get(url: str, origin: str | None = None) -> tuple[int, str, dict[str, str]]:
    """GET ``url``; the status, the body and the headers (errors are returned, not raised)."""
    req = urllib.request.Request(url, headers={"Origin": origin} if origin else {})
    try:
        with urllib.request.urlopen(req, timeout=10 * unit()) as r:
            return r.status, r.read().decode("utf-8"), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8"), dict(exc.headers)


def rgb_of(css: str) -> tuple[int, int, int]:
    r, g, b = (int(x) for x in re.findall(r"\d+", css)[:3])
    return r, g, b


def count_near(png: bytes, rgb: tuple[int, int, int], tol: int = 6) -> int:
    """Pixels within ``tol`` of ``rgb`` on every channel (text is anti-aliased)."""
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(np.count_nonzero((np.abs(img - np.array(rgb)) <= tol).all(axis=2)))


async def fetch_in_page(page: Cdp, expr: str) -> Any:
    r = await page.call("Runtime.evaluate", expression=expr, awaitPromise=True,
                        returnByValue=True)
    return r["result"].get("value")


def spoken(n: int) -> list[tuple[int, str, str]]:
    """``n`` alternating finals of two inputs: (utterance id, source, text)."""
    return [(k, "You" if k % 2 == 0 else "Others",
             f"{'my' if k % 2 == 0 else 'their'} point number {k} about the budget")
            for k in range(n)]


@pytest.mark.system
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_transcript_page_labels_follow_find_and_downloads(tmp_path: Path) -> None:
    """On a phone-sized page the transcript shows every final with its time and coloured
    speaker label, one partial per input at the bottom, follows live finals until the reader
    scrolls up (then offers "jump to live"), finds words, downloads SRT/WebVTT/text with the
    labels in them, hides labels and shows translations on request, and refuses a wrong
    token or a foreign Origin."""
    server = CaptionServer(
        ServerConfig(host="127.0.0.1", port=0, token=TOKEN),
        Session("pagetest01", time.time() - 600),
        HelloInfo("tiny.en", "en", "test"),
        close_timeout=1.0,
    )
    history = spoken(24)

    async def main() -> None:
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        try:
            for uid, src, text in history:
                server.publish(final(uid, text, source=src))
            async with chromium_page(f"{base}/transcript?token={TOKEN}", tmp_path,
                                     width=390, height=700, mobile=True) as page:
                await page.wait_for("document.body.dataset.state === 'open'", 30,
                                    "the page to load the history and go live")
                rows = await page.eval(ROWS_JS)
                assert rows == [[src, f"{src}:", text] for _, src, text in history]
                times = await page.eval(
                    "Array.from(document.querySelectorAll('#log .time'), e => e.textContent)")
                assert all(re.fullmatch(r"\d\d:\d\d:\d\d", t) for t in times)
                assert await page.eval(
                    "document.documentElement.scrollWidth <= window.innerWidth"), "no h-scroll"

                # live: a final each, then a partial of each input at the bottom
                server.publish(final(24, "a live word from you", source="You"))
                await page.wait_for(f"{ROWS_JS}.length === 25", 20, "the live final")
                assert await page.eval("document.body.dataset.follow") == "on"
                server.publish(partial(25, text="others still", tail="talking",
                                       source="Others"))
                server.publish(partial(26, text="me too", tail="now", source="You"))
                shown = await page.wait_for(f"{PARTIALS_JS}.length === 2 && {PARTIALS_JS}",
                                            20, "two partials")
                assert shown == ["Others:others still talking", "You:me too now"]
                assert await page.eval(
                    "(() => { const s = document.getElementById('scroll');"
                    " return s.scrollHeight - s.scrollTop - s.clientHeight < 40; })()")
                server.publish(final(26, "me too now", source="You"))
                shown = await page.wait_for(
                    f"{PARTIALS_JS}.length === 1 && {ROWS_JS}.length === 26 && {PARTIALS_JS}",
                    20, "the final replacing its own input's partial only")
                assert shown == ["Others:others still talking"]

                shot = await page.call("Page.captureScreenshot", format="png")
                png = base64.b64decode(shot["data"])
                (tmp_path / "transcript.png").write_bytes(png)
                colours = await page.eval(
                    "['You', 'Others'].map(s => getComputedStyle(document.querySelector("
                    "`#log .final[data-speaker=\"${s}\"] .who`)).color)")
                you, others = rgb_of(colours[0]), rgb_of(colours[1])
                assert you != others
                assert count_near(png, you) > 150, "the 'You:' labels are on screen"
                assert count_near(png, others) > 150, "the 'Others:' labels are on screen"

                # the reader scrolls up: follow pauses, new finals do not move the view
                await page.eval("document.getElementById('scroll').scrollTop = 0")
                await page.wait_for("document.body.dataset.follow === 'off'", 10,
                                    "follow mode to pause")
                assert await page.eval(
                    "getComputedStyle(document.getElementById('live')).display") == "block"
                server.publish(final(27, "while the reader is away", source="Others"))
                await page.wait_for(f"{ROWS_JS}.length === 27", 20, "a final while away")
                assert await page.eval("document.getElementById('scroll').scrollTop") == 0
                await page.eval("document.getElementById('live').click()")
                await page.wait_for("document.body.dataset.follow === 'on'", 10,
                                    "jump to live")

                # find in transcript
                await page.eval("(() => { const q = document.getElementById('q');"
                                " q.value = 'BUDGET'; q.dispatchEvent(new Event('input')); })()")
                count = await page.wait_for("document.getElementById('count').textContent", 10,
                                            "the match count")
                assert count == f"{len(history)}/{len(history)}"
                assert await page.eval("document.body.dataset.matches") == str(len(history))
                await page.eval("document.getElementById('next').click()")
                assert await page.eval("document.getElementById('count').textContent") == (
                    f"1/{len(history)}")
                assert await page.eval("document.body.dataset.follow") == "off"
                marked = await page.eval(
                    "document.querySelector('mark.current').closest('.final').dataset.seq")
                assert marked == "1"

                # downloads, through the page's own links (same origin, same token)
                srt_text = await fetch_in_page(
                    page, "fetch(document.getElementById('dl-srt').href).then(r => r.text())")
                subs = list(srt.parse(srt_text))
                assert subs[0].content == "You: my point number 0 about the budget"
                labels = {s.content.split(": ", 1)[0] for s in subs}
                assert labels == {"You", "Others"}
                vtt_text = await fetch_in_page(
                    page, "fetch(document.getElementById('dl-vtt').href).then(r => r.text())")
                voices = [c.voice for c in webvtt.from_string(vtt_text).captions]
                assert set(voices) == {"You", "Others"} and len(voices) == len(subs)
                status, txt, headers = await asyncio.to_thread(
                    http_get, await page.eval("document.getElementById('dl-txt').href"))
                assert status == 200 and "attachment" in headers["Content-Disposition"]
                assert "Others: while the reader is away" in txt

                # labels hidden, translation shown
                server.publish(final(28, "hola a todos", source="Others",
                                     translation="hello everyone"))
                await page.call("Page.navigate",
                                url=f"{base}/transcript?token={TOKEN}&labels=0&show=both")
                await page.wait_for(f"document.body.dataset.state === 'open' && "
                                    f"{ROWS_JS}.length === 28", 30, "the page reloaded")
                assert await page.eval("document.querySelectorAll('.who').length") == 0
                assert await page.eval(
                    "document.querySelector('#log .final:last-child .tr').textContent"
                ) == "hello everyone"

            # the same rules as the socket: token and Origin
            get = asyncio.to_thread
            assert (await get(http_get, f"{base}/transcript.srt?token=wrong"))[0] == 401
            assert (await get(http_get, f"{base}/transcript"))[0] == 401
            assert (await get(http_get, f"{base}/transcript.vtt?token={TOKEN}",
                              origin="http://evil.example"))[0] == 403
            status, body, _ = await get(http_get,
                                        f"{base}/transcript.srt?token={TOKEN}&show=translation")
            assert status == 200 and "Others: hello everyone" in body
        finally:
            await server.stop()

    run(main(), units=240)
