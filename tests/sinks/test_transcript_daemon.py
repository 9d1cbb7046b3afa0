"""The real daemon with two labelled file inputs: /transcript, its downloads and the caption
files carry both labels, each on its own speaker's words."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
import srt
import webvtt
from support.chromium import CHROMIUM, chromium_page
from support.daemon_proc import AUDIO, SONNETS, mostly_from, need, reference, start_daemon
from support.pulse import wait_until
from support.timing import run

pytestmark = [pytest.mark.system, pytest.mark.slow]

YOU = AUDIO / "en_librispeech" / "1089-134686-0000.flac"  # 10.4 s, a LibriSpeech reader
TOKEN = "meeting-token"
ROWS_JS = ("Array.from(document.querySelectorAll('#log .final'), "
           "e => [e.dataset.speaker, e.querySelector('.body .text').textContent])")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def who(label: str) -> str:
    """The input a label names ("Others 2", a turn of "Others", is "Others")."""
    return label.split()[0]


def test_daemon_with_two_inputs_labels_the_transcript_page_and_downloads(tmp_path: Path) -> None:
    """Two file inputs of different speakers, named "You" and "Others": the daemon's
    /transcript page, its SRT/WebVTT/text downloads and its own SRT file show both labels, and
    each label's text is that input's speech."""
    need(YOU, SONNETS)
    cfg = tmp_path / "meeting.yaml"
    cfg.write_text(
        "inputs:\n"
        f"  - {{name: You, input: {json.dumps('file:' + str(YOU))}}}\n"
        f"  - {{name: Others, input: {json.dumps('file:' + str(SONNETS))}}}\n"
        f"server:\n  token: {TOKEN}\n",
        encoding="utf-8",
    )
    d = start_daemon(tmp_path, ["--config", str(cfg), "--set", "daemon.shutdown_timeout_s=60"])
    try:
        port = d.wait_listening(120)

        def finals() -> list[dict[str, Any]]:
            status, body = d.http_get(f"/transcript.json?token={TOKEN}")
            assert status == 200, body
            got: list[dict[str, Any]] = json.loads(body)["finals"]
            return got

        def both_spoke() -> bool:
            fs = finals()
            return sum(f.get("source") == "You" for f in fs) >= 1 and sum(
                f.get("source") == "Others" for f in fs) >= 2

        wait_until(both_spoke, 90, "finals of both inputs in /transcript.json")
        fs = finals()
        you = " ".join(f["text"] for f in fs if f["source"] == "You")
        others = " ".join(f["text"] for f in fs if f["source"] == "Others")
        assert mostly_from(reference(YOU), you), you
        assert mostly_from(reference(SONNETS), others), others
        assert all(f["speaker"].startswith(f["source"]) for f in fs)

        status, body = d.http_get(f"/transcript.srt?token={TOKEN}")
        assert status == 200
        subs = list(srt.parse(body))
        assert {who(s.content.split(": ", 1)[0]) for s in subs} == {"You", "Others"}
        status, body = d.http_get(f"/transcript.vtt?token={TOKEN}")
        assert status == 200
        assert {who(c.voice or "-") for c in webvtt.from_string(body).captions} == {"You", "Others"}
        status, body = d.http_get(f"/transcript.txt?token={TOKEN}")
        assert status == 200 and "] You: " in body and "] Others: " in body
        assert d.http_get("/transcript.srt?token=wrong")[0] == 401

        async def page() -> list[list[str]]:
            url = f"http://127.0.0.1:{port}/transcript?token={TOKEN}"
            async with chromium_page(url, tmp_path, width=900, height=700) as p:
                rows: list[list[str]] = await p.wait_for(
                    f"document.body.dataset.state === 'open' && {ROWS_JS}", 30,
                    "the transcript page with the daemon's finals")
                return rows

        rows = run(page(), units=90)
        assert {who(r[0]) for r in rows} == {"You", "Others"}
        assert mostly_from(reference(YOU), " ".join(t for s, t in rows if who(s) == "You"))
        d.send(signal.SIGTERM)
        assert d.wait_exit(90) == 0, d.stderr()
    finally:
        d.stop()
    cues = [c for p in d.files(".srt") for c in srt.parse(p.read_text(encoding="utf-8"))]
    assert {who(c.content.split(": ", 1)[0]) for c in cues} == {"You", "Others"}
    vtt = [c for p in d.files(".vtt") for c in webvtt.read(str(p)).captions]
    assert {who(c.voice or "-") for c in vtt} == {"You", "Others"}
