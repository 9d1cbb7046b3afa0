"""The hypothesis source: one Whisper decode of an utterance's audio, with word timings.

This is a thin layer over CTranslate2's Whisper (through faster-whisper's model object), used
directly instead of ``WhisperModel.transcribe`` for two reasons:

- *short context*: ``transcribe`` pads every window to 30 s, so even a 1 s window costs a full
  encoder pass (~0.26 s for tiny.en on two cores). The encoder also accepts shorter inputs (the
  idea whisper.cpp exposes as ``audio_ctx``). Partial passes encode the utterance plus a few
  seconds of padding, several times cheaper. A bare short window tends to make the decoder run
  on past the end of speech, so the padding, a length cap proportional to the audio, and the
  loop cutter in :mod:`streamcap.asr.policy` keep it honest.
- *forced prefix*: the words the streaming policy has committed are fed back as the decoder
  prefix, so they are never re-guessed and a final can never retract them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..audio.reframe import Samples
from ..config import AsrConfig
from ..events import SAMPLE_RATE, Word
from .model import LoadedModel

# Mel frames per second (hop 160 at 16 kHz) and the encoder's maximum input.
FRAMES_PER_S = 100
MAX_FRAMES = 3000
SHORT_PAD_FRAMES = 400  # 4 s of padding after the audio in short-context passes
BUCKET_FRAMES = 100  # encoder inputs are whole seconds long
ALIGN_SLACK_FRAMES = 50  # frames of padding the word alignment may use
# Whisper's text context: 448 tokens; a prompt of earlier text takes at most half of it (as in
# Whisper's own decoding), and the forced prefix is capped below what is left.
TEXT_CONTEXT_TOKENS = 448
MAX_PROMPT_TOKENS = TEXT_CONTEXT_TOKENS // 2 - 1
MAX_PREFIX_TOKENS = 200
# New tokens a pass may produce: a floor plus a rate per second of audio after the prefix.
# Speech runs at 2-5 words/s, about 1.3 tokens a word plus punctuation. Partial passes on short
# context are capped tight (a bare short window tempts the decoder to run on); a final pass,
# which may re-decode a whole sentence, gets room for fast speech.
MIN_NEW_TOKENS = 6
PARTIAL_TOKENS_PER_S = 5
FINAL_TOKENS_PER_S = 10


@dataclass(frozen=True)
class DecodeRequest:
    """What to decode: ``audio`` starts at stream time ``offset``; ``prefix`` is forced."""

    audio: Samples
    offset: float
    prefix: tuple[Word, ...] = ()
    context: str = ""
    final: bool = False
    language: str | None = None
    task: str = "transcribe"
    speculative: bool = False  # a final pass made during a pause, kept if the utterance ends
    # With language=None: if detection is less sure than this, return the language only (no
    # words): the policy would throw the words away anyway.
    min_language_probability: float = 0.0


@dataclass(frozen=True)
class Hypothesis:
    """The decoder's guess for the words after the prefix, in absolute stream time."""

    words: tuple[Word, ...]
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 1.0
    language: str = "en"
    language_probability: float = 1.0
    audio_end: float = 0.0


class HypothesisSource(Protocol):
    """Anything that turns a :class:`DecodeRequest` into a :class:`Hypothesis`.

    This is what the engine, the worker and the runners use: ``decode`` (the one place a decode
    is timed: ``decode_seconds`` adds up its wall time), ``retune`` (new decoding settings from
    the next pass on, e.g. on SIGHUP) and ``multilingual`` (whether the language is detected).
    """

    def decode(self, req: DecodeRequest) -> Hypothesis: ...

    def retune(self, cfg: AsrConfig) -> None: ...

    @property
    def multilingual(self) -> bool: ...

    @property
    def decode_seconds(self) -> float: ...


@dataclass(frozen=True)
class DecodePlan:
    """What one generation pass needs: tokenizer, prompt (ending with the forced prefix),
    the forced prefix's tokens, the length limit and the beam."""

    tok: Any
    language: str
    language_probability: float
    prompt: list[int]
    prefix_tokens: list[int]
    max_length: int
    beam: int

    @property
    def sot_position(self) -> int:
        """Where ``<|startoftranscript|>`` is in the prompt (after the earlier-text prompt)."""
        return self.prompt.index(self.tok.sot) if self.tok.sot in self.prompt else 0

    @property
    def result_cap(self) -> int:
        """The most tokens (forced prefix included) a result of this pass may hold."""
        return self.max_length - len(self.prompt)

    def generate_options(self, max_length: int | None = None) -> dict[str, Any]:
        """The keyword arguments of ``ctranslate2.models.Whisper.generate`` for this pass."""
        return dict(
            beam_size=self.beam,
            patience=1.0,
            length_penalty=1.0,
            max_length=self.max_length if max_length is None else max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=False,
            suppress_tokens=[-1],
        )


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


class WhisperDecoder:
    """Decode utterances with a loaded faster-whisper model."""

    def __init__(self, loaded: LoadedModel, cfg: AsrConfig) -> None:
        from faster_whisper.tokenizer import Tokenizer

        self.loaded = loaded
        self.cfg = cfg
        self._wm = loaded.model
        self._ct2 = loaded.model.model
        self._fe = loaded.model.feature_extractor
        self._Tokenizer = Tokenizer
        self._tokenizers: dict[tuple[str, str], Any] = {}
        self.passes = 0
        self.decode_seconds = 0.0

    @property
    def multilingual(self) -> bool:
        return bool(self._ct2.is_multilingual)

    def retune(self, cfg: AsrConfig) -> None:
        """Use new decoding settings (beam, prompts, contexts) from the next pass on."""
        self.cfg = cfg

    def _tokenizer(self, language: str, task: str) -> Any:
        key = (language, task)
        tok = self._tokenizers.get(key)
        if tok is None:
            if self.multilingual:
                tok = self._Tokenizer(self._wm.hf_tokenizer, True, task=task, language=language)
            else:
                tok = self._Tokenizer(
                    self._wm.hf_tokenizer, False, task="transcribe", language="en"
                )
            self._tokenizers[key] = tok
        return tok

    def mel(self, audio: Samples, full: bool) -> tuple[np.ndarray, int]:
        """The encoder input of ``audio``: log-mel features of shape (1, 80, frames), padded to
        whole seconds (the shape bucket), and the number of frames that hold audio."""
        # Pad the *waveform* with digital silence (as Whisper was trained), not the features.
        n = min(len(audio) // 160, MAX_FRAMES)
        total = MAX_FRAMES if full else min(MAX_FRAMES, n + SHORT_PAD_FRAMES)
        # Round the input up to whole seconds: a few distinct shapes instead of one per pass
        # (every new shape costs CTranslate2 fresh buffers, and memory grew without bound).
        total = min(MAX_FRAMES, -(-total // BUCKET_FRAMES) * BUCKET_FRAMES)
        pad = max(160, total * 160 - len(audio) + 160)
        feats = self._fe(audio[: MAX_FRAMES * 160], padding=pad)[:, :total]
        return np.ascontiguousarray(feats[None], dtype=np.float32), n

    def encode(self, mel: np.ndarray, to_cpu: bool = False) -> Any:
        """Run the encoder on a batch of features (B, 80, frames) of one shape."""
        import ctranslate2

        return self._ct2.encode(ctranslate2.StorageView.from_array(mel), to_cpu=to_cpu)

    def _features(self, audio: Samples, full: bool) -> tuple[Any, int]:
        arr, n = self.mel(audio, full)
        return self.encode(arr), n

    def detect_language(self, audio: Samples) -> tuple[str, float]:
        if not self.multilingual:
            return "en", 1.0
        enc, _ = self._features(audio[: 30 * SAMPLE_RATE], full=True)
        return self._detect(enc)

    def _detect(self, enc: Any) -> tuple[str, float]:
        results = self._ct2.detect_language(enc)[0]
        allowed = set(self.cfg.languages)
        for token, prob in results:
            code = token[2:-2]
            if not allowed or code in allowed:
                if allowed:
                    total = sum(p for t, p in results if t[2:-2] in allowed) or 1.0
                    return code, float(prob) / total
                return code, float(prob)
        return results[0][0][2:-2], float(results[0][1])

    def decode(self, req: DecodeRequest) -> Hypothesis:
        import time

        t0 = time.monotonic()
        try:
            return self._decode(req)
        finally:
            self.passes += 1
            self.decode_seconds += time.monotonic() - t0

    def full_context(self, req: DecodeRequest, cfg: AsrConfig | None = None) -> bool:
        """Whether ``req`` is encoded with the full 30 s context (else short); ``cfg``: the
        decoding settings to use instead of this decoder's (a pool serves many daemons)."""
        c = cfg or self.cfg
        return (c.final_context if req.final else c.partial_context) == "full"

    def _decode(self, req: DecodeRequest) -> Hypothesis:
        enc, n_frames = self._features(req.audio, self.full_context(req))
        plan = self.plan(req, enc)
        if isinstance(plan, Hypothesis):
            return plan
        result = self._ct2.generate(enc, [plan.prompt], **plan.generate_options())[0]
        return self.finish(req, plan, result, enc, n_frames)

    def plan(
        self, req: DecodeRequest, enc: Any, cfg: AsrConfig | None = None
    ) -> DecodePlan | Hypothesis:
        """The prompt and limits of one pass over the encoder output ``enc`` (a Hypothesis
        without words instead when language detection is not sure enough); ``cfg`` as in
        :meth:`full_context`."""
        c = cfg or self.cfg
        audio_end = req.offset + len(req.audio) / SAMPLE_RATE
        full = self.full_context(req, c)
        language = req.language or "en"
        lang_prob = 1.0
        if self.multilingual and req.language is None:
            # Detection is trained on 30 s windows: use full context for it even when the pass
            # itself is short (only until the policy locks the utterance's language).
            language, lang_prob = self._detect(enc) if full else self.detect_language(req.audio)
            if lang_prob < req.min_language_probability:
                return Hypothesis(
                    words=(), language=language, language_probability=lang_prob,
                    audio_end=audio_end,
                )
        tok = self._tokenizer(language, req.task)

        prompt: list[int] = []
        ctx_parts = [p for p in (c.hotwords, c.initial_prompt, req.context) if p]
        if ctx_parts:
            ctx_tokens = tok.encode(" " + " ".join(s.strip() for s in ctx_parts))
            prompt = [tok.sot_prev, *ctx_tokens[-(MAX_PROMPT_TOKENS - 1) :]]
        prompt += list(tok.sot_sequence)
        prompt.append(tok.no_timestamps)
        prefix_text = "".join(w.text for w in req.prefix).strip()
        # Scripts written without spaces must not get one before the forced prefix.
        lead = "" if language in ("zh", "ja", "yue", "th", "lo", "my") else " "
        prefix_tokens: list[int] = tok.encode(lead + prefix_text) if prefix_text else []
        prefix_tokens = prefix_tokens[-MAX_PREFIX_TOKENS:]
        prompt += prefix_tokens

        # Cap the new tokens by the audio length (counted from the end of the forced prefix:
        # the prefix is already decoded).
        fresh = audio_end - (req.prefix[-1].end if req.prefix else req.offset)
        rate = FINAL_TOKENS_PER_S if req.final else PARTIAL_TOKENS_PER_S
        max_new = int(MIN_NEW_TOKENS + rate * max(0.0, fresh))
        # CTranslate2 counts the forced prefix twice against max_length (prompt and result).
        max_length = min(TEXT_CONTEXT_TOKENS, len(prompt) + len(prefix_tokens) + max_new)
        beam = c.beam_size if req.final else c.partial_beam_size
        return DecodePlan(tok, language, lang_prob, prompt, prefix_tokens, max_length, beam)

    def finish(
        self, req: DecodeRequest, plan: DecodePlan, result: Any, enc: Any, n_frames: int
    ) -> Hypothesis:
        """Turn a generation ``result`` for ``plan`` into words with timings (aligned on
        ``enc``, this request's own encoder output)."""
        from faster_whisper.transcribe import merge_punctuations

        audio_end = req.offset + len(req.audio) / SAMPLE_RATE
        tok, prefix_tokens = plan.tok, plan.prefix_tokens
        tokens = [t for t in result.sequences_ids[0] if t < tok.eot]
        # CTranslate2 returns the forced prefix as part of the sequence: keep the new tokens.
        if prefix_tokens and tokens[: len(prefix_tokens)] == prefix_tokens:
            tokens = tokens[len(prefix_tokens) :]
        seq_len = len(tokens)
        avg_logprob = float(result.scores[0]) * seq_len / (seq_len + 1) if seq_len else 0.0
        text = tok.decode(tokens)
        ratio = compression_ratio(text.strip())

        words: list[Word] = []
        all_tokens = prefix_tokens + tokens
        if tokens:
            # Let the alignment see a little of the padding: a word that ends exactly at the
            # audio end otherwise collapses to the first frames.
            align_frames = min(n_frames + ALIGN_SLACK_FRAMES, int(enc.shape[1]) * 2)
            align = self._wm.find_alignment(tok, [all_tokens], enc, align_frames)[0]
            merge_punctuations(
                align, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、"
            )
            # Skip the words that came from the forced prefix.
            consumed = 0
            for a in align:
                if not a["word"]:
                    consumed += len(a["tokens"])
                    continue
                if consumed >= len(prefix_tokens):
                    start = req.offset + float(a["start"])
                    end = max(start, req.offset + float(a["end"]))
                    words.append(
                        Word(
                            text=a["word"],
                            start=min(start, audio_end),
                            end=min(end, audio_end),
                            probability=float(a["probability"]),
                            stable=False,
                        )
                    )
                consumed += len(a["tokens"])
        return Hypothesis(
            words=tuple(words),
            no_speech_prob=float(result.no_speech_prob),
            avg_logprob=avg_logprob,
            compression_ratio=ratio,
            language=plan.language,
            language_probability=plan.language_probability,
            audio_end=audio_end,
        )
