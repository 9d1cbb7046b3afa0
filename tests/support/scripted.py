"""Scripted stand-ins for pure tests of the worker and the multi-input scheduler: a hypothesis
source that records its requests (optionally slow, optionally failing for a while) and a
voiced signal that webrtcvad takes for speech."""

from __future__ import annotations

import time

import numpy as np

from streamcap.asr.decoder import DecodeRequest, Hypothesis
from streamcap.errors import BackendUnavailable
from streamcap.events import SAMPLE_RATE, Word


class SlowSource:
    """A scripted hypothesis source that takes ``delay`` seconds per decode and answers
    ``word`` (once per utterance: nothing after a forced prefix); the first ``fail`` decodes
    raise :class:`BackendUnavailable`."""

    multilingual = False

    def __init__(self, delay: float = 0.0, word: str = " hello", fail: int = 0,
                 retry_after_s: float = 0.05) -> None:
        self.delay = delay
        self.word = word
        self.fail = fail
        self.retry_after_s = retry_after_s
        self.requests: list[DecodeRequest] = []
        self.failed = 0
        self.decode_seconds = 0.0

    def retune(self, cfg: object) -> None:
        pass

    def decode(self, req: DecodeRequest) -> Hypothesis:
        if self.failed < self.fail:
            self.failed += 1
            raise BackendUnavailable("scripted outage", self.retry_after_s)
        self.requests.append(req)
        time.sleep(self.delay)
        self.decode_seconds += self.delay
        end = req.offset + len(req.audio) / SAMPLE_RATE
        words = () if req.prefix else (Word(self.word, req.offset, req.offset + 0.3, 0.9, False),)
        return Hypothesis(words=words, audio_end=end)


def voiced(seconds: float) -> np.ndarray:
    """A buzzy vowel-like signal that webrtcvad classifies as speech."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 120 + 10 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    sig = sum(np.sin(k * phase) / k for k in range(1, 30))
    return (0.3 * sig).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)
