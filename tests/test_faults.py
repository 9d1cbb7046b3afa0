"""The fault-injection facility (:mod:`streamcap.faults`): parsing and the delegating wrapper.

The wrapper is pure delegation logic, so a scripted stand-in decoder is enough here; the real
model under the wrapper in a real daemon is exercised by tests/test_daemon_process.py.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from streamcap.asr.decoder import DecodeRequest, Hypothesis
from streamcap.errors import ConfigError
from streamcap.faults import (
    DELAY_VAR,
    HANG_VAR,
    DecodeFaults,
    FaultyDecoder,
    faults_from_env,
    wrap_decoder,
)


class Scripted:
    """A stand-in decoder that counts its calls and offers the real one's extras."""

    def __init__(self) -> None:
        self.calls = 0
        self.retuned: Any = None
        self.decode_seconds = 1.25

    def decode(self, req: DecodeRequest) -> Hypothesis:
        self.calls += 1
        return Hypothesis(words=(), audio_end=req.offset + len(req.audio) / 16000)

    def detect_language(self, audio: Any) -> tuple[str, float]:
        return "de", 0.75

    @property
    def multilingual(self) -> bool:
        return True

    def retune(self, cfg: Any) -> None:
        self.retuned = cfg


REQ = DecodeRequest(audio=np.zeros(1600, dtype=np.float32), offset=2.0)


def test_no_variables_means_no_faults_and_the_decoder_itself() -> None:
    """Unset or empty variables inject nothing, and the real decoder is returned unwrapped."""
    for env in ({}, {DELAY_VAR: "", HANG_VAR: "  "}, {DELAY_VAR: "0"}):
        faults = faults_from_env(env)
        assert not faults.active and faults.describe() == "none"
        dec = Scripted()
        assert wrap_decoder(dec, faults) is dec


def test_variables_are_parsed() -> None:
    """Both variables are read, with surrounding blanks, and described for the warning line."""
    faults = faults_from_env({DELAY_VAR: " 1.5 ", HANG_VAR: "3"})
    assert faults == DecodeFaults(1.5, 3)
    assert DELAY_VAR in faults.describe() and HANG_VAR in faults.describe()


@pytest.mark.parametrize(
    ("env", "culprit"),
    [
        ({DELAY_VAR: "abc"}, DELAY_VAR),
        ({DELAY_VAR: "-1"}, DELAY_VAR),
        ({DELAY_VAR: "nan"}, DELAY_VAR),
        ({DELAY_VAR: "inf"}, DELAY_VAR),
        ({DELAY_VAR: "1e9"}, DELAY_VAR),
        ({HANG_VAR: "-1"}, HANG_VAR),
        ({HANG_VAR: "2.5"}, HANG_VAR),
        ({HANG_VAR: "²"}, HANG_VAR),
        ({HANG_VAR: "9" * 50}, HANG_VAR),
        ({HANG_VAR: "\x00"}, HANG_VAR),
    ],
)
def test_bad_values_are_config_errors_naming_the_variable(env: dict[str, str],
                                                          culprit: str) -> None:
    """A hostile or malformed value is one ConfigError line that names the variable."""
    with pytest.raises(ConfigError) as info:
        faults_from_env(env)
    assert info.value.path == culprit
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


def test_wrapper_delegates_everything_to_the_real_decoder() -> None:
    """Decodes, multilingual and retune go to the real decoder; its decode time counts the
    injected delay too (a slowed decoder is slow)."""
    inner = Scripted()
    dec = wrap_decoder(inner, DecodeFaults(delay_s=0.001))
    assert isinstance(dec, FaultyDecoder)
    hyp = dec.decode(REQ)
    assert hyp.audio_end == pytest.approx(2.1) and inner.calls == 1
    assert dec.multilingual is True
    dec.retune("new settings")  # type: ignore[arg-type]
    assert inner.retuned == "new settings"
    assert 1.25 + 0.001 <= dec.decode_seconds < 1.25 + 0.5
    with pytest.raises(AttributeError):
        dec.no_such_thing  # type: ignore[attr-defined]  # noqa: B018


def test_hang_after_n_passes_blocks_until_released() -> None:
    """The first N decodes pass; the next one blocks (the real decoder is not called) until
    release(), after which it and later ones decode normally."""
    inner = Scripted()
    dec = FaultyDecoder(inner, DecodeFaults(hang_after=2))
    dec.decode(REQ)
    dec.decode(REQ)
    assert not dec.hanging.is_set() and inner.calls == 2
    done = threading.Event()
    t = threading.Thread(target=lambda: (dec.decode(REQ), done.set()), daemon=True)
    t.start()
    assert dec.hanging.wait(10)
    assert not done.is_set() and inner.calls == 2
    dec.release()
    assert done.wait(10)
    t.join(10)
    assert inner.calls == 3
    dec.decode(REQ)
    assert inner.calls == 4


def test_hang_after_zero_blocks_the_very_first_decode() -> None:
    """HANG_AFTER=0 blocks the first decode (the daemon's warm-up)."""
    dec = FaultyDecoder(Scripted(), faults_from_env({HANG_VAR: "0"}))
    t = threading.Thread(target=lambda: dec.decode(REQ), daemon=True)
    t.start()
    assert dec.hanging.wait(10)
    dec.release()
    t.join(10)
    assert not t.is_alive()
