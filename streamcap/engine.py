"""The caption engine: VAD segmenter + streaming policy + a hypothesis source, driven by feed().

It owns no thread, socket or clock. ``feed()`` is deterministic (as if the worker were infinitely
fast and kept to the decoding cadence); live shells call ``push()`` with all audio that has
arrived and then ``step()`` once, so a worker that falls behind always decodes the newest audio
(partials are skipped, finals never).
"""

from __future__ import annotations

import dataclasses

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
        # A final made during a pause comes out here, at the end of speech.
        return self._post(out)

    def step(self) -> list[PolicyEvent]:
        """Run at most one decode (a pending final first, else a due partial)."""
        req = self.policy.next_request()
        if req is None:
            return []
        hyp = self.decoder.decode(req)
        return self._post(self.policy.on_hypothesis(req, hyp))

    def _post(self, events: list[PolicyEvent]) -> list[PolicyEvent]:
        """Finishing touches on finals, wherever the policy produced them."""
        if self.cfg.asr.task == "translate" and self.cfg.asr.translate_keep_original:
            events = [self._with_original(ev) for ev in events]
        return events

    def _with_original(self, ev: PolicyEvent) -> PolicyEvent:
        """Translate finals keep the English text as ``translation`` and decode the original."""
        if not isinstance(ev, FinalCaption) or ev.language == "en":
            return ev
        audio = self.policy.final_audio(ev.utterance_id)
        if audio is None:
            return ev
        samples, offset = audio
        orig = self.decoder.decode(
            DecodeRequest(samples, offset, final=True, language=ev.language, task="transcribe")
        )
        text = join_words(orig.words)
        if not text:
            return ev
        return dataclasses.replace(
            ev,
            text=text,
            words=tuple(dataclasses.replace(w, stable=True) for w in orig.words),
            translation=ev.text,
        )

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
            out += self._post(self.policy.on_segment(seg))
        while self.policy.closing:
            out += self.step()
        return out
