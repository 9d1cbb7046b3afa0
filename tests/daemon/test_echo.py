"""The real daemon with two inputs, one the echo of the other (``inputs[].echo_of``): captions
come out once, labelled with the input that played them; the suppressed finals are counted."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.daemon_proc import (
    AUDIO,
    PATIENT,
    STATUS_EVERY,
    Client,
    need,
    start_daemon,
    write_wav,
)

from streamcap.audio.decode import load_audio
from streamcap.bench.echo import echo_of

pytestmark = [pytest.mark.system, pytest.mark.slow]

JFK = AUDIO / "en_misc" / "jfk.flac"


def pcm(signal: np.ndarray) -> bytes:
    return bytes((np.clip(signal, -1.0, 1.0) * 32767).astype("<i2").tobytes())


def test_file_inputs_with_echo_of_publish_one_caption(tmp_path: Path) -> None:
    """A "Room" file input and a "Desk" input hearing it 60 ms later and 9 dB quieter: every
    final in the JSON Lines file and on the socket is Room's, and status counts Desk's
    suppressed finals."""
    need(JFK)
    sig = load_audio(JFK)
    room = write_wav(tmp_path / "room.wav", pcm(sig))
    desk = write_wav(tmp_path / "desk.wav", pcm(echo_of(sig, 60, -9)))
    conf = tmp_path / "config.yaml"
    conf.write_text(yaml.safe_dump({"inputs": [
        {"name": "Desk", "input": f"file:{desk}", "echo_of": "Room"},
        {"name": "Room", "input": f"file:{room}"},
    ]}), encoding="utf-8")
    d = start_daemon(tmp_path, ["--config", str(conf), *STATUS_EVERY, *PATIENT])
    try:
        client = Client(d.wait_listening(60))
        d.wait_log(r"echo suppression: captions of 'Desk' that repeat 'Room'", 10)
        assert d.wait_exit(60) == 0, d.stderr()  # both files ended
        client.join(10)
    finally:
        d.stop()
    finals = [e for e in d.events() if e["type"] == "final"]
    assert finals and {e["source"] for e in finals} == {"Room"}, finals
    assert "country" in " ".join(e["text"] for e in finals).lower()
    sent = client.of("final")
    assert sent and {m["source"] for m in sent} == {"Room"}
    m = d.wait_log(r"echo suppression: (\d+) final\(s\) of 'Desk' suppressed", 1)
    assert int(m.group(1)) >= 1
    # While running, status counts them per input (the field is there from the start).
    figures = [x["echo_suppressed"] for s in client.of("status") for x in s.get("inputs", ())
               if x["name"] == "Desk"]
    assert figures and all(0 <= n <= int(m.group(1)) for n in figures)
