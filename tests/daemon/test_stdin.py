"""``streamcap run --input -``: raw s16le PCM piped on stdin; EOF ends the session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.daemon_proc import (
    CLIP,
    PATIENT,
    STATUS_EVERY,
    Client,
    DaemonProc,
    need,
    pcm_s16le,
    reference,
    srt_text,
    start_daemon,
    valid_files,
    wer,
    words,
)

pytestmark = [pytest.mark.system, pytest.mark.slow]


# --- --input - ---------------------------------------------------------------------------


@dataclass
class Piped:
    d: DaemonProc
    client: Client
    code: int
    stderr: str


@pytest.fixture(scope="module")
def piped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Piped]:
    """The clip as raw PCM written to stdin at once (plus one stray byte), then EOF."""
    need(CLIP)
    tmp = tmp_path_factory.mktemp("stdin")
    d = start_daemon(tmp, ["--input", "-", *STATUS_EVERY, *PATIENT], stdin=True)
    try:
        d.wait_listening(90)
        c = Client(d.port)
        d.feed(pcm_s16le(CLIP, pad_s=1.5) + b"\x01", realtime=False)
        d.close_stdin()
        code = d.wait_exit(60)
        c.join(10)
        yield Piped(d, c, code, d.stderr(None))
    finally:
        d.stop()


def test_stdin_eof_ends_the_session_cleanly_with_the_finals_kept(piped: Piped) -> None:
    """PCM piped on stdin is captioned; EOF ends the session: exit 0, every utterance has its
    final over the WebSocket and in the SRT file, a stray odd byte is reported, not fatal."""
    p = piped
    assert p.code == 0, p.stderr[-3000:]
    assert "input finished" in p.stderr and "stopped cleanly" in p.stderr
    assert "ignored 1 trailing bytes" in p.stderr
    assert p.client.close_code == 1001
    assert p.client.settled()
    (srt_path,) = p.d.files(".srt")
    assert words(srt_text([srt_path])) == words(p.client.text())
    assert len(words(p.client.text())) >= 8, p.client.text()


def test_stdin_finals_match_the_clip(piped: Piped) -> None:
    """The finals of the piped clip match its reference transcript (WER at most 0.1)."""
    assert wer(reference(CLIP), piped.client.text()) <= 0.1, piped.client.text()


def test_stdin_with_no_audio_at_all_exits_0_with_empty_valid_files(tmp_path: Path) -> None:
    """Closing stdin at once (an empty pipe) ends the daemon with exit 0 and valid, empty
    caption files."""
    d = start_daemon(tmp_path, ["--input", "-", *PATIENT], stdin=True)
    try:
        d.wait_listening(90)
        d.close_stdin()
        code = d.wait_exit(30)
    finally:
        d.stop()
    assert code == 0, d.stderr()
    cues, vtt, events = valid_files(d)
    assert cues == [] and vtt == 0
    assert not [e for e in events if e["type"] in ("final", "partial")]
