"""Decode audio files of any format, rate and channel count to 16 kHz mono float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AudioError
from .reframe import Samples


def load_audio(path: str | Path) -> Samples:
    """Decode ``path`` with PyAV (through faster-whisper); raise :class:`AudioError` if unusable."""
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such file")
    if p.is_dir():
        raise AudioError(f"{p}: is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: file is empty")
    from faster_whisper.audio import decode_audio

    try:
        audio = decode_audio(str(p), sampling_rate=16000)
    except Exception as exc:  # PyAV raises many types; all mean "not decodable audio"
        raise AudioError(f"{p}: cannot decode audio ({type(exc).__name__}: {exc})") from None
    if not isinstance(audio, np.ndarray) or audio.size == 0:
        raise AudioError(f"{p}: contains no audio samples")
    out: Samples = np.ascontiguousarray(audio, dtype=np.float32)
    return out
