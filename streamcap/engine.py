"""The caption engine: VAD segmenter + streaming policy + a hypothesis source, driven by feed().

It owns no thread, socket or clock. ``feed()`` is deterministic (as if the worker were infinitely
fast and kept to the decoding cadence); live shells call ``push()`` with all audio that has
arrived and then ``step()`` once, so a worker that falls behind always decodes the newest audio
(partials are skipped, finals never). ``push()`` never decodes; ``step()`` runs exactly one decode
(or none), so timing ``step()`` times every decode.
"""

from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np

from .asr.decoder import DecodeRequest, HypothesisSource
from .asr.policy import PolicyEvent, StreamingPolicy
from .audio.reframe import Samples
from .config import Config
from .events import SAMPLE_RATE, FinalCaption, join_words
from .speakers import SpeakerTurns
from .vad import VadSegmenter


class CaptionEngine:
    """Audio in (16 kHz mono float32), caption events out.

    With ``speakers`` (``meeting.speaker_turns``), each final gets a ``speaker`` turn label from
    the voice in its own audio (:mod:`streamcap.speakers`), on the same thread as the decodes.
    """

    def __init__(
        self, cfg: Config, decoder: HypothesisSource, speakers: SpeakerTurns | None = None
    ) -> None:
        self.cfg = cfg
        self.decoder = decoder
        self.speakers = speakers
        self.vad = VadSegmenter(cfg.vad, cfg.audio.frame_ms)
        self.policy = StreamingPolicy(cfg, multilingual=decoder.multilingual)
        self.samples_in = 0
        self._keep_original = cfg.asr.task == "translate" and cfg.asr.translate_keep_original
        # Translated finals waiting for their original-language pass: (final, audio, offset).
        self._held: deque[tuple[FinalCaption, np.ndarray | None, float]] = deque()
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
        self.decoder.retune(cfg.asr)

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
            out += self._turns(self.policy.on_segment(seg))
        # A final made during a pause comes out here, at the end of speech.
        return self._hold(out)

    def step(self) -> list[PolicyEvent]:
        """Run at most one decode: a held final's original-language pass, a pending final, or
        a due partial, in that order."""
        if self._held:
            final, audio, offset = self._held.popleft()
            return [self._with_original(final, audio, offset), *self._release()]
        req = self.policy.next_request()
        if req is None:
            return []
        hyp = self.decoder.decode(req)
        return self._hold(self._turns(self.policy.on_hypothesis(req, hyp)))

    def _turns(self, events: list[PolicyEvent]) -> list[PolicyEvent]:
        """Finals labelled with their speaker turn (when speaker turns are on)."""
        if self.speakers is None:
            return events
        out: list[PolicyEvent] = []
        for ev in events:
            if isinstance(ev, FinalCaption):
                audio = self.policy.final_audio(ev.utterance_id)
                ev = self.speakers.feed(ev, audio[0] if audio is not None else None)
            out.append(ev)
        return out

    def _hold(self, events: list[PolicyEvent]) -> list[PolicyEvent]:
        """With ``translate_keep_original``, a translated final waits for its original-language
        pass (the next step's decode); later finals wait behind it so finals stay in order."""
        if not self._keep_original:
            return events
        out: list[PolicyEvent] = []
        for ev in events:
            if isinstance(ev, FinalCaption) and (self._held or self._needs_original(ev)):
                audio = self.policy.final_audio(ev.utterance_id)
                self._held.append((ev, *audio) if audio is not None else (ev, None, 0.0))
            else:
                out.append(ev)
        return out + self._release()

    def _needs_original(self, ev: FinalCaption) -> bool:
        return ev.language != "en"

    def _release(self) -> list[PolicyEvent]:
        """Held finals at the head of the line that need no decode go out now."""
        out: list[PolicyEvent] = []
        while self._held:
            final, audio, _ = self._held[0]
            if audio is not None and self._needs_original(final):
                break
            out.append(self._held.popleft()[0])
        return out

    def _with_original(
        self, ev: FinalCaption, audio: np.ndarray | None, offset: float
    ) -> FinalCaption:
        """A translated final keeps the English text as ``translation`` and gets the original."""
        if audio is None:
            return ev
        orig = self.decoder.decode(
            DecodeRequest(audio, offset, final=True, language=ev.language, task="transcribe")
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
    def final_due(self) -> float | None:
        """The stream time a waiting final ends at (held or pending), or None: the scheduler
        of several inputs serves the oldest waiting final first."""
        if self._held:
            return self._held[0][0].end
        return self.policy.pending_final_end()

    @property
    def due(self) -> bool:
        """Whether a decode is due now (a held or pending final, or a partial at the cadence)."""
        return bool(self._held) or self.policy.due()

    def feed(self, samples: Samples) -> list[PolicyEvent]:
        """Push audio in small chunks and decode at the configured cadence (deterministic)."""
        out: list[PolicyEvent] = []
        samples = np.asarray(samples, dtype=np.float32)
        for i in range(0, len(samples), self._chunk):
            out += self.push(samples[i : i + self._chunk])
            while self.due:
                out += self.step()
        return out

    def close(self) -> list[PolicyEvent]:
        """End of input, without decoding: the utterance in flight becomes a pending final
        (``due`` stays true until every pending final has had its ``step()``)."""
        out: list[PolicyEvent] = []
        for seg in self.vad.finish():
            out += self._hold(self._turns(self.policy.on_segment(seg)))
        return out

    def finish(self) -> list[PolicyEvent]:
        """End of input: finalise the utterance in flight; nothing is lost at the end."""
        out = self.close()
        while self.policy.closing or self._held:
            out += self.step()
        return out
