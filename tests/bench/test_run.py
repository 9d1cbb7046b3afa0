"""Tests for the benchmark shell's pure decisions."""

from __future__ import annotations

from pathlib import Path

from streamcap.bench.manifest import Clip
from streamcap.bench.run import skip_reason


def test_files_the_model_cannot_transcribe_are_skipped(tmp_path: Path) -> None:
    """English-only models skip other languages; multilingual ones skip unknown codes only."""
    de = Clip("s", tmp_path / "a.wav", "de", "hallo")
    en = Clip("s", tmp_path / "b.wav", "en-gb", "hello")
    xx = Clip("s", tmp_path / "c.wav", "xx", "?")
    assert "English-only" in (skip_reason(de, False, "tiny.en") or "")
    assert skip_reason(en, False, "tiny.en") is None
    assert skip_reason(de, True, "base", ["en", "de"]) is None
    assert "does not know language 'xx'" in (skip_reason(xx, True, "base", ["en", "de"]) or "")
