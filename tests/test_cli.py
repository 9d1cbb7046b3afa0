"""The `streamcap transcribe` command on real files with the real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import srt
import webvtt
from support.model import AUDIO, timeout

pytestmark = pytest.mark.slow


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamcap.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout(300),
        check=False,
    )


def test_transcribe_writes_srt_vtt_jsonl_and_prints_captions(tmp_path: Path) -> None:
    """transcribe prints partials then finals and writes matching SRT, WebVTT and JSON Lines."""
    out = tmp_path / "jfk.srt"
    vtt = tmp_path / "jfk.vtt"
    jsonl = tmp_path / "jfk.jsonl"
    p = run("transcribe", str(AUDIO / "en_misc" / "jfk.flac"), "-o", str(out),
            "--vtt", str(vtt), "--jsonl", str(jsonl))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert any(line.startswith("~ ") for line in lines)  # partials (not a terminal)
    finals = [line for line in lines if line.startswith("[")]
    assert finals and "country" in " ".join(finals).lower()
    subs = list(srt.parse(out.read_text(encoding="utf-8")))
    assert [s.index for s in subs] == list(range(1, len(subs) + 1))
    srt_text = " ".join(s.content.replace("\n", " ") for s in subs).lower()
    assert "what your country can do for you" in "".join(c for c in srt_text if c not in ",.")
    cues = webvtt.read(str(vtt))
    assert len(cues) == len(subs)
    events = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    kinds = {e["type"] for e in events}
    assert {"vad", "partial", "final"} <= kinds


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"RIFF\x00\x00junk" * 20, "cannot decode")],
)
def test_bad_audio_is_a_one_line_error(tmp_path: Path, content: bytes, message: str) -> None:
    """Empty and corrupt files fail with one stderr line naming the file, before any output."""
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    out = tmp_path / "out.srt"
    p = run("transcribe", str(bad), "-o", str(out))
    assert p.returncode == 3
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and message in err[0]
    assert not out.exists()


def test_unknown_model_offline_lists_local_models(tmp_path: Path) -> None:
    """A model that is neither local nor reachable fails with the list of local models."""
    p = run("transcribe", str(AUDIO / "en_misc" / "jfk.flac"), "--model", "./no-such-model")
    assert p.returncode == 5
    assert "asr.model" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_hub_name_without_network_fails_clearly() -> None:
    """A hub model name that is not cached fails offline with one line listing local models."""
    p = subprocess.run(
        [sys.executable, "-m", "streamcap.cli", "transcribe", "--model",
         "Systran/faster-whisper-large-v3", str(AUDIO / "en_misc" / "jfk.flac")],
        capture_output=True, text=True, timeout=timeout(300), check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert p.returncode == 5
    assert "available locally: tiny.en" in p.stderr
