"""The reframer turns any rate, channel count and dtype into 16 kHz mono float32."""

from __future__ import annotations

import numpy as np
import pytest
from support.model import AUDIO

from streamcap.audio.decode import load_audio
from streamcap.audio.reframe import Reframer, split_frames, to_float_mono
from streamcap.errors import AudioError


def tone(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampled_length_and_pitch_are_preserved(rate: int) -> None:
    """A 2 s tone at any rate comes out as 2 s at 16 kHz with the same pitch."""
    r = Reframer(rate, 1)
    src = tone(rate, 2.0)
    parts = [r.feed(src[i : i + 1000]) for i in range(0, len(src), 1000)]
    out = np.concatenate([*parts, r.flush()])
    assert abs(len(out) - 32000) <= 64
    spectrum = np.abs(np.fft.rfft(out[:16000]))
    assert abs(np.argmax(spectrum) - 440) <= 2


def test_block_boundaries_do_not_matter() -> None:
    """Feeding in odd-sized blocks gives the same audio as one big block."""
    src = tone(44100, 1.0)
    a = Reframer(44100, 1)
    whole = np.concatenate([a.feed(src), a.flush()])
    b = Reframer(44100, 1)
    parts = [b.feed(src[i : i + 777]) for i in range(0, len(src), 777)] + [b.flush()]
    pieces = np.concatenate(parts)
    n = min(len(whole), len(pieces))
    assert np.allclose(whole[:n], pieces[:n], atol=1e-4)


def test_stereo_int16_is_mixed_down() -> None:
    """Interleaved and (n, 2) int16 stereo are both averaged to mono floats."""
    left = np.full(100, 16384, np.int16)
    right = np.zeros(100, np.int16)
    st = np.stack([left, right], axis=1)
    assert np.allclose(to_float_mono(st, 2), 0.25)
    assert np.allclose(to_float_mono(st.reshape(-1), 2), 0.25)


def test_unsupported_input_is_refused() -> None:
    """Complex samples, zero rates and zero channels are refused with AudioError."""
    with pytest.raises(AudioError):
        to_float_mono(np.zeros(4, np.complex64), 1)
    with pytest.raises(AudioError):
        Reframer(0, 1)
    with pytest.raises(AudioError):
        Reframer(16000, 0)


def test_split_frames_keeps_the_remainder() -> None:
    """Whole frames come out and the leftover samples are returned, nothing lost."""
    frames, rest = split_frames(np.arange(1000, dtype=np.float32), 480)
    assert len(frames) == 2 and len(rest) == 40 and rest[0] == 960


def test_load_audio_decodes_44k_stereo_flac_to_16k_mono() -> None:
    """The JFK clip (44.1 kHz stereo FLAC) decodes to 11 s of 16 kHz mono."""
    audio = load_audio(AUDIO / "en_misc" / "jfk.flac")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 10.9 < len(audio) / 16000 < 11.1


def test_load_audio_errors_name_the_file(tmp_path: object) -> None:
    """Missing, empty, directory and corrupt inputs each raise AudioError naming the path."""
    from pathlib import Path

    d = Path(str(tmp_path))
    empty = d / "empty.wav"
    empty.write_bytes(b"")
    junk = d / "junk.mp3"
    junk.write_bytes(b"this is not audio at all" * 50)
    for p, msg in [
        (d / "missing.wav", "no such file"),
        (empty, "empty"),
        (d, "directory"),
        (junk, "cannot decode"),
    ]:
        with pytest.raises(AudioError, match=msg) as info:
            load_audio(p)
        assert str(p) in str(info.value)
