"""The caption engine: VAD segmenter + streaming policy + a hypothesis source, driven by feed().

It owns no thread, socket or clock. ``feed()`` is deterministic (as if the worker were infinitely
fast and kept to the decoding cadence); live shells call ``push()`` with all audio that has
arrived and then ``step()`` once, so a worker that falls behind always decodes the newest audio
(partials are skipped, finals never).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .asr.decoder import DecodeRequest, HypothesisSource
from .asr.policy import PolicyEvent, StreamingPolicy
from .audio.reframe import Samples
from .config import Config
from .events import SAMPLE_RATE, FinalCaption, join_words
from .vad import VadSegmenter


class CaptionEngine:
    """Audio in (16 kHz mono float32), caption events out."""

    def __init__(self, cfg: Config, decoder: HypothesisSource) -> None:
        self.cfg = cfg
        self.decoder = decoder
        self.vad = VadSegmenter(cfg.vad, cfg.audio.frame_ms)
        self.policy = StreamingPolicy(cfg, multilingual=decoder.multilingual)
        self.samples_in = 0
        self._chunk = max(self.vad.frame, int(0.05 * SAMPLE_RATE))

    def retune(self, cfg: Config) -> None:
        """Apply a new configuration's thresholds to the running engine.

        The model, the language settings and the ring-buffer size stay as they are (changing
        them needs a restart); VAD thresholds, cadence, agreement, margins, hallucination
        thresholds, beam size and prompts take effect at once.
        """
        self.cfg = cfg
        self.vad.retune(cfg.vad)
        self.policy.retune(cfg)
        retune = getattr(self.decoder, "retune", None)
        if retune is not None:
            retune(cfg.asr)

    @property
    def audio_time(self) -> float:
        """Stream seconds of audio consumed so far."""
        return self.samples_in / SAMPLE_RATE

    def push(self, samples: Samples) -> list[PolicyEvent]:
        """Take new audio through the VAD gate; no decoding happens here."""
        samples = np.asarray(samples, dtype=np.float32)
        self.samples_in += len(samples)
        out: list[PolicyEvent] = []
        for seg in self.vad.feed(samples):
            out += self.policy.on_segment(seg)
        return out

    def step(self) -> list[PolicyEvent]:
        """Run at most one decode (a pending final first, else a due partial)."""
        req = self.policy.next_request()
        if req is None:
            return []
        hyp = self.decoder.decode(req)
        events = self.policy.on_hypothesis(req, hyp)
        if req.final and req.task == "translate" and self.cfg.asr.translate_keep_original:
            events = [self._with_original(ev, req) for ev in events]
        return events

    def _with_original(self, ev: PolicyEvent, req: DecodeRequest) -> PolicyEvent:
        """Translate finals keep the English text as ``translation`` and decode the original."""
        if not isinstance(ev, FinalCaption) or ev.language == "en":
            return ev
        orig = self.decoder.decode(
            replace(req, prefix=(), task="transcribe", language=ev.language, context="")
        )
        text = join_words(orig.words)
        if not text:
            return ev
        return replace(ev, text=text, words=tuple(replace(w, stable=True) for w in orig.words),
                       translation=ev.text)

    @property
    def due(self) -> bool:
        """Whether a decode is due now (a pending final, or a partial at the cadence)."""
        return self.policy.due()

    def feed(self, samples: Samples) -> list[PolicyEvent]:
        """Push audio in small chunks and decode at the configured cadence (deterministic)."""
        out: list[PolicyEvent] = []
        samples = np.asarray(samples, dtype=np.float32)
        for i in range(0, len(samples), self._chunk):
            out += self.push(samples[i : i + self._chunk])
            while self.due:
                out += self.step()
        return out

    def finish(self) -> list[PolicyEvent]:
        """End of input: finalise the utterance in flight; nothing is lost at the end."""
        out: list[PolicyEvent] = []
        for seg in self.vad.finish():
            out += self.policy.on_segment(seg)
        while self.policy.closing:
            out += self.step()
        return out
