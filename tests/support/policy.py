"""A scripted speaker and hypothesis source for pure tests of the streaming policy (no model).

Word ``i`` of a script is spoken from ``0.5 * i`` to ``0.5 * i + 0.4`` seconds; a *truthful*
source answers each request with the script's words heard whole inside the request's audio,
after its forced prefix, exactly as a perfect decoder would.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from streamcap.asr.decoder import DecodeRequest, Hypothesis
from streamcap.asr.policy import StreamingPolicy
from streamcap.config import Config, from_dict
from streamcap.events import SAMPLE_RATE, FinalCaption, PartialCaption, Word
from streamcap.vad import SpeechAudio, SpeechEnd, SpeechStart

# A scripted "speaker": word i is spoken from 0.5*i to 0.5*i + 0.4 seconds.
SCRIPT = "the quick brown fox jumps over the lazy dog and then it runs away".split()


def spoken(i: int) -> Word:
    return Word(" " + SCRIPT[i], 0.5 * i, 0.5 * i + 0.4, 0.9, stable=False)


Script = Callable[[DecodeRequest], list[Word]]


def script_words(script: list[str]) -> list[Word]:
    """The words of ``script`` as spoken: word i from 0.5*i to 0.5*i + 0.4 s."""
    return [Word(" " + t, 0.5 * i, 0.5 * i + 0.4, 0.9, stable=False) for i, t in enumerate(script)]


def heard(words: list[Word], req: DecodeRequest) -> list[Word]:
    """The words a perfect decoder returns for ``req``: heard whole in its audio, after its
    forced prefix."""
    end = req.offset + len(req.audio) / SAMPLE_RATE
    inside = [w for w in words if req.offset <= w.start and w.end <= end]
    return inside[len(req.prefix) :]


def truthful(req: DecodeRequest) -> list[Word]:
    """Returns every word of the request's audio fully heard by its end, after the prefix."""
    end = req.offset + len(req.audio) / SAMPLE_RATE
    words = [w for w in map(spoken, range(len(SCRIPT))) if req.offset <= w.start and w.end <= end]
    return words[len(req.prefix) :]


class Scripted:
    """A hypothesis source that answers from a script and records the requests."""

    multilingual = False

    def __init__(self, script: Script, **hyp: float) -> None:
        self.script = script
        self.hyp = hyp
        self.requests: list[DecodeRequest] = []
        self.decode_seconds = 0.0

    def retune(self, cfg: object) -> None:
        pass

    def decode(self, req: DecodeRequest) -> Hypothesis:
        self.requests.append(req)
        end = req.offset + len(req.audio) / SAMPLE_RATE
        return Hypothesis(words=tuple(self.script(req)), audio_end=end, **self.hyp)  # type: ignore[arg-type]

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        return "en", 1.0


def drive(
    policy: StreamingPolicy, source: Scripted, seconds: float, end: bool = True
) -> list[object]:
    """Feed `seconds` of speech in 0.1 s pieces, decoding whenever a pass is due."""
    events: list[object] = list(policy.on_segment(SpeechStart(0)))
    step = SAMPLE_RATE // 10
    for k in range(int(seconds * 10)):
        events += policy.on_segment(SpeechAudio(k * step, np.zeros(step, np.float32)))
        while (req := policy.next_request()) is not None:
            assert policy.due()
            events += policy.on_hypothesis(req, source.decode(req))
        assert not policy.due()
    if end:
        events += policy.on_segment(SpeechEnd(int(seconds * SAMPLE_RATE)))
        while (req := policy.next_request()) is not None:
            events += policy.on_hypothesis(req, source.decode(req))
    return events


def cfg(**over: object) -> Config:
    data: dict[str, dict[str, object]] = {"asr": {}, "vad": {}}
    for k, v in over.items():
        section, key = k.split("__")
        data[section][key] = v
    return from_dict(data)


def partials(events: list[object]) -> list[PartialCaption]:
    return [e for e in events if isinstance(e, PartialCaption)]


def finals(events: list[object]) -> list[FinalCaption]:
    return [e for e in events if isinstance(e, FinalCaption)]


