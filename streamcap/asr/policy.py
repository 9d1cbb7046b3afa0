"""The streaming policy: VAD segments and decoder hypotheses in, partial and final captions out.

It is pure: no model, thread or clock. The engine asks it for the next :class:`DecodeRequest`,
runs the decoder, and hands the :class:`Hypothesis` back.

Rules
-----
- While a VAD utterance is open, the policy keeps a *decode window*: the audio since the last
  final (plus an overlap, below). A partial pass is due every ``asr.partial_interval_s`` of new
  audio and always decodes the whole window up to the newest audio (a worker that falls behind
  simply skips the passes it could not make). Its cost is bounded by the window, not by the
  length of the utterance.
- Stability is LocalAgreement-``n`` (``asr.agreement``, default 3): a word is committed when the
  last ``n`` hypotheses agree on it (compared after normalisation) *and* it ends at least
  ``asr.commit_margin_s`` before the end of the audio the newest hypothesis saw. Committed words
  are forced as the decoder prefix of every later partial pass.
- **Sentence finals** (``asr.sentence_finals``): once a committed word ends a sentence (or a
  clause, when the words since the last final span ``asr.clause_after_s``) and the newest pass
  has heard a next word, those words become a final and the window moves on, with no pause
  needed. ``vad.max_utterance_s`` is only a safety net for speech with no punctuation: the
  window is then cut at its last committed word.
- **Lossless cuts**: the next window starts before the last words of the finished ones
  (``asr.overlap_s`` of audio, never from a single timestamp near a window end: the cut point
  comes from committed words, agreed by several passes and well inside the audio). Those words
  are forced as the start of the next window's decoder prefix, so the word that straddles the
  cut is heard whole, and they are never emitted again.
- **How a final is made** (``asr.final_mode``): ``redecode`` (default) runs one beam-search,
  full-context pass over the window with only the overlap forced; a sentence final is split
  from it where its words align (by text) with the committed sentence, so the final may correct
  a committed word (a pass that loses words keeps the committed ones instead). ``keep_stable``
  makes a sentence final of the committed words as they are (instantly, no decode) and forces
  them as the prefix of the end-of-speech pass: stable words never change. At the VAD end of an
  utterance one final pass decodes the rest (run during the 0.2 s pause already, and used as is
  if speech does end there). Pending finals are never skipped, however far behind.
- Hallucination guards: nothing is decoded outside speech; a pass whose ``no_speech_prob`` is high
  while its log-probability is low yields no words; repeated n-gram loops are cut; a pass whose
  text still compresses too well is dropped; loops never reach the prompt of later passes.
"""

from __future__ import annotations

import difflib
import re
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from ..config import Config
from ..events import (
    SAMPLE_RATE,
    FinalCaption,
    PartialCaption,
    VadEvent,
    Word,
    join_words,
)
from ..vad import (
    PAUSE_S,
    RingBuffer,
    Segment,
    SpeechAudio,
    SpeechEnd,
    SpeechPause,
    SpeechResume,
    SpeechStart,
)
from .decoder import DecodeRequest, Hypothesis

PolicyEvent = PartialCaption | FinalCaption | VadEvent

_NORM_RE = re.compile(r"[^\w']+", re.UNICODE)


def norm(word: str) -> str:
    """Normalise a word for agreement: case, punctuation and spacing do not matter."""
    return _NORM_RE.sub("", word.lower()).replace("'", "")


def _loop_start(keys: list[str], first: int) -> int | None:
    """Index where a loop's first repetition starts, looking at repeats that reach ``first``.

    A unigram must occur 5 times in a row (people do say "words words words"), a bigram 3 times,
    and an n-gram of three to ten words twice: real speech almost never repeats a whole phrase
    back to back, while a decoder stuck in a loop does exactly that.
    """
    n_words = len(keys)
    for i in range(n_words):
        for n in range(1, 11):
            need = 5 if n == 1 else 3 if n == 2 else 2
            if i + n * need > n_words:
                break
            gram = keys[i : i + n]
            if not all(gram):
                continue
            reps = 1
            while keys[i + reps * n : i + (reps + 1) * n] == gram:
                reps += 1
            if reps >= need and i + reps * n > first:
                return max(first, i + n)
    return None


def cut_loops(words: list[Word], before: list[Word] | None = None) -> tuple[list[Word], bool]:
    """Cut a repeated n-gram loop from ``words``, keeping its first occurrence.

    ``before`` are words already committed (they are not cut, but a loop that repeats them is
    detected). Returns the kept words and whether a loop was found.
    """
    before = before or []
    keys = [norm(w.text) for w in before + words]
    k = len(before)
    # A decoder that starts the utterance over: the new words repeat a 4-gram already said.
    if k >= 4 and len(words) >= 4:
        head = keys[k : k + 4]
        if all(head) and any(keys[i : i + 4] == head for i in range(k - 3)):
            return [], True
    cut = _loop_start(keys, k)
    if cut is None:
        return words, False
    return words[: cut - len(before)], True


def lcp(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y or not x:
            break
        n += 1
    return n


SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")
CLAUSE_END = (",", ";", ":", "，", "；", "：", "、")
_CLOSERS = "\"')]}”’»"
# Audio kept before the first overlap word's start (its timestamp may be a little late).
CUT_GUARD_S = 0.1
# A sentence final pass that returns fewer than this share of the sentence's committed words
# stopped early (or lost its way): the committed words are kept instead.
MIN_FINAL_SHARE = 0.75
# A final pass whose words end this long (plus the VAD's end silence) before the end of its
# speech stopped early (Whisper sometimes ends after a finished sentence): the rest of the
# audio gets a pass of its own instead of being lost.
REST_MIN_S = 1.0


def split_index(
    hyp: list[Word], ref: list[Word], boundary: int, boundary_time: float
) -> int:
    """How many leading words of ``hyp`` belong before position ``boundary`` of ``ref``.

    ``ref`` is what the partial passes saw (the sentence's committed words, then the words
    after it); ``hyp`` is a final pass over the same audio. The text decides (difflib over
    normalised words); time only settles words inside a stretch the two texts disagree on that
    straddles the boundary, so one wrong timestamp near a window end cannot move the split.
    """
    a = [norm(w.text) for w in ref]
    b = [norm(w.text) for w in hyp]
    before = [False] * len(hyp)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        for j in range(j1, j2):
            if tag == "equal":
                before[j] = i1 + (j - j1) < boundary
            elif i2 <= boundary and not i1 == i2 == boundary:
                before[j] = True
            elif i1 >= boundary and not i1 == i2 == boundary:
                before[j] = False
            else:  # straddles the boundary, or inserted right at it
                w = hyp[j]
                before[j] = (w.start + w.end) / 2 < boundary_time
    n = 0
    for j, is_before in enumerate(before):
        if is_before:
            n = j + 1
    return n


def ends_with(word: Word, marks: tuple[str, ...]) -> bool:
    """Whether a word ends with one of ``marks`` (closing quotes and brackets ignored)."""
    return word.text.rstrip().rstrip(_CLOSERS).endswith(marks)


# Words whose period is no sentence end ("Mr. John Dashwood" must not be cut after "Mr.").
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr prof rev gen col capt lt sgt mt vs etc eg ie no vol fig".split()
)


def ends_sentence(word: Word) -> bool:
    """Whether a word ends a sentence (``."``, ``?)`` and ``...`` too; not "Mr." or "J.")."""
    if not ends_with(word, SENTENCE_END):
        return False
    text = word.text.strip().rstrip(_CLOSERS)
    if text.endswith(".") and not text.endswith(".."):
        key = norm(text)
        if key in _ABBREVIATIONS or (len(key) == 1 and key.isalpha() and key != "i"):
            return False
    return True


@dataclass
class _Utterance:
    """An open decode window (or, in ``closing``, a final waiting for its pass).

    ``carried`` are the last words of the previous final whose audio starts this window: they
    are forced as the start of the decoder prefix and never emitted again. ``committed`` are the
    stable words not yet in a final; ``tail`` the newest pass's unstable words after them.
    """

    id: int
    start: int  # absolute sample where this window's audio starts
    carried: list[Word] = field(default_factory=list)
    committed: list[Word] = field(default_factory=list)
    history: deque[list[str]] = field(default_factory=lambda: deque(maxlen=8))
    tail: list[Word] = field(default_factory=list)
    last_decode_end: int = 0
    revision: int = 0
    language: str | None = None
    language_probability: float = 1.0
    end: int | None = None
    audio: np.ndarray | None = None  # copied when the utterance closes
    pause_end: int | None = None  # while paused: where a final pass would end its audio
    spec: tuple[int, int, Hypothesis] | None = None  # (audio end, prefix length, final pass)
    shown: tuple[tuple[str, bool], ...] = ()
    # A sentence final waiting for its pass: ``committed`` is the sentence, ``tail`` the words
    # the partial passes saw after it (for the text alignment that splits the pass).
    sentence: bool = False


class StreamingPolicy:
    """Turns VAD segments and hypotheses into partial and final captions."""

    LOW_CONFIDENCE = 0.3
    SURE_NO_SPEECH = 0.8
    CONFIDENT_LANGUAGE = 0.95
    UNSURE_LOGPROB = -0.3

    def __init__(self, cfg: Config, multilingual: bool = False) -> None:
        self.multilingual = multilingual
        if not multilingual:
            self.fixed_language: str | None = "en"
        else:
            self.fixed_language = None if cfg.asr.language == "auto" else cfg.asr.language
        self.ring = RingBuffer(cfg.vad.buffer_s)
        self._next_id = 0
        self.open: _Utterance | None = None
        self.closing: deque[_Utterance] = deque()
        self._last_final: tuple[int, np.ndarray, float] | None = None
        self._context: deque[str] = deque(maxlen=40)
        self.retune(cfg)
        # Language detection (auto mode) needs audio: a confident guess may lock the language
        # after 1 s; otherwise it is locked at 3 s (base: 9/19 clips right at 1 s, 18/19 at 3 s).
        # Trailing silence kept for the final pass (the VAD reports a pause after as much).
        self._tail_keep = int(PAUSE_S * SAMPLE_RATE)
        self.min_first = int((1.0 if self.fixed_language is None else 0.3) * SAMPLE_RATE)
        self._lock_after = int(3.0 * SAMPLE_RATE)

    def retune(self, cfg: Config) -> None:
        """Apply new thresholds and cadence (e.g. on SIGHUP); utterances in flight carry on."""
        self.cfg = cfg
        self.asr = cfg.asr
        self._interval = int(cfg.asr.partial_interval_s * SAMPLE_RATE)
        self._max_len = int(cfg.vad.max_utterance_s * SAMPLE_RATE)
        self._margin = cfg.asr.commit_margin_s
        self._redecode = cfg.asr.final_mode == "redecode"

    # --- VAD side ------------------------------------------------------------------------

    def _new_utterance(self, start: int) -> _Utterance:
        u = _Utterance(id=self._next_id, start=start, last_decode_end=start)
        self._next_id += 1
        return u

    def on_segment(self, seg: Segment) -> list[PolicyEvent]:
        out: list[PolicyEvent] = []
        if isinstance(seg, SpeechStart):
            if self.open is not None:  # should not happen; close defensively
                out += self._close(self.open, self.ring.end)
            self.ring.reset(seg.sample)
            self.open = self._new_utterance(seg.sample)
            out.append(VadEvent("speech_start", seg.sample / SAMPLE_RATE, self.open.id))
        elif isinstance(seg, SpeechAudio):
            if self.open is None:
                return out
            self.ring.append(seg.sample, seg.samples)
            if self.ring.end - self.open.start >= self._max_len:
                out += self._forced_cut(self.open)
        elif isinstance(seg, SpeechPause) and self.open is not None:
            self.open.pause_end = seg.sample + self._tail_keep
            self.open.spec = None
        elif isinstance(seg, SpeechResume) and self.open is not None:
            self.open.pause_end = None
            self.open.spec = None
        elif isinstance(seg, SpeechEnd) and self.open is not None:
            u = self.open
            out.append(VadEvent("speech_end", seg.sample / SAMPLE_RATE, u.id))
            out += self._close(u, max(seg.sample, u.start))
        return out

    def _close(self, u: _Utterance, end: int) -> list[PolicyEvent]:
        u.end = min(self.ring.end, end + self._tail_keep)
        self.open = None
        u.audio = self.ring.get(u.start, u.end)
        if u.spec is not None and u.spec[0] == u.end and u.spec[1] == len(self._final_prefix(u)):
            # The final pass already ran during the pause, on exactly this audio.
            return self._finalise(u, u.spec[2], front=False)
        if len(u.audio) == 0 and not u.committed:
            return []
        self.closing.append(u)
        return []

    def _forced_cut(self, u: _Utterance) -> list[PolicyEvent]:
        """The safety net: a window reached ``vad.max_utterance_s`` with no sentence end."""
        if u.committed:
            return self._cut(u, len(u.committed))
        # Nothing stable after max length (noise, music, or a decoder in trouble): finalise
        # the whole window with a proper final pass and start afresh.
        end = self.ring.end
        self._close(u, end)
        self.open = self._new_utterance(end)
        self.ring.release(end)
        return []

    def _sentence_end(self, u: _Utterance) -> int | None:
        """How many committed words form finished sentences (None: no boundary yet).

        A boundary is a committed word ending a sentence, or a clause once the words since the
        last final span ``asr.clause_after_s``, with a next word already begun (heard by the
        newest pass). The last such boundary wins.
        """
        if not self.asr.sentence_finals or not u.committed:
            return None
        words = u.committed
        following = len(words) + len(u.tail)
        first = words[0].start
        clause_s = self.asr.clause_after_s
        best = None
        for i, w in enumerate(words):
            if i + 1 >= following:
                break
            if ends_sentence(w) or (
                clause_s > 0 and w.end - first >= clause_s and ends_with(w, CLAUSE_END)
            ):
                best = i + 1
        return best

    def _cut(self, u: _Utterance, n: int) -> list[PolicyEvent]:
        """Finish the first ``n`` committed words as a final and move the window on, losslessly.

        The next window starts before the last words of the finished ones (``asr.overlap_s`` of
        audio): those words are forced as its prefix, so the word that straddles the cut is
        heard whole and nothing is said twice.
        """
        sentence, rest = u.committed[:n], u.committed[n:]
        pool = u.carried + sentence
        k = len(pool) - 1
        while k > 0 and pool[-1].end - pool[k].start < self.asr.overlap_s:
            k -= 1
        overlap = pool[k:]
        new_start = int((overlap[0].start - CUT_GUARD_S) * SAMPLE_RATE)
        new_start = min(self.ring.end, max(u.start, new_start))
        out: list[PolicyEvent] = []
        if self._redecode:
            out += self._partial_event(u)  # show the sentence until its final arrives
            pending = replace(
                u, committed=sentence, tail=rest + u.tail, sentence=True, end=self.ring.end,
                audio=self.ring.get(u.start, self.ring.end), history=deque(), spec=None,
            )
            self.closing.append(pending)
        else:
            cut = min(self.ring.end, max(u.start, int(sentence[-1].end * SAMPLE_RATE)))
            self._last_final = (u.id, self.ring.get(u.start, cut), u.start / SAMPLE_RATE)
            final = self._final_event(u, sentence)
            out += [final] if final else []
        nu = self._new_utterance(new_start)
        nu.carried, nu.committed, nu.tail = overlap, rest, u.tail
        nu.history, nu.last_decode_end = u.history, u.last_decode_end
        nu.language, nu.language_probability = u.language, u.language_probability
        nu.pause_end = u.pause_end
        self.open = nu
        self.ring.release(new_start)
        return out + self._partial_event(nu)

    # --- decoder side --------------------------------------------------------------------

    def due(self) -> bool:
        """Whether :meth:`next_request` would return a request (without building it)."""
        if self.closing:
            return True
        u = self.open
        if u is None:
            return False
        if u.pause_end is not None:
            return u.spec is None and self.ring.end >= u.pause_end
        return (
            self.ring.end - u.start >= self.min_first
            and self.ring.end - u.last_decode_end >= self._interval
        )

    def pending_final_end(self) -> float | None:
        """Where the oldest final waiting for its pass ends (stream seconds), if any."""
        if not self.closing:
            return None
        u = self.closing[0]
        return (u.end if u.end is not None else self.ring.end) / SAMPLE_RATE

    def _final_prefix(self, u: _Utterance) -> tuple[Word, ...]:
        """What a final pass is forced to start with: the overlap words, and with
        ``final_mode: keep_stable`` the committed words too."""
        if self._redecode:
            return tuple(u.carried)
        return tuple(u.carried + u.committed)

    def next_request(self) -> DecodeRequest | None:
        """The decode to run now, if any: a pending final first, else a due partial."""
        if self.closing:
            u = self.closing[0]
            assert u.audio is not None
            return DecodeRequest(
                audio=u.audio,
                offset=u.start / SAMPLE_RATE,
                prefix=self._final_prefix(u),
                context=self._context_text(),
                final=True,
                language=u.language or self.fixed_language,
                task=self.asr.task,
            )
        cur = self.open
        if cur is None:
            return None
        u = cur
        if u.pause_end is not None:
            # Paused: no partials (the audio is silence); one speculative final pass instead.
            if u.spec is not None or self.ring.end < u.pause_end:
                return None
            return DecodeRequest(
                audio=self.ring.get(u.start, u.pause_end),
                offset=u.start / SAMPLE_RATE,
                prefix=self._final_prefix(u),
                context=self._context_text(),
                final=True,
                language=u.language or self.fixed_language,
                task=self.asr.task,
                speculative=True,
            )
        have = self.ring.end - u.start
        if have < self.min_first or self.ring.end - u.last_decode_end < self._interval:
            return None
        language = u.language or self.fixed_language
        return DecodeRequest(
            audio=self.ring.get(u.start),
            offset=u.start / SAMPLE_RATE,
            prefix=tuple(u.carried + u.committed),
            context=self._context_text(),
            final=False,
            language=language,
            task=self.asr.task,
            min_language_probability=(
                self.CONFIDENT_LANGUAGE if language is None and have < self._lock_after else 0.0
            ),
        )

    def _context_text(self) -> str:
        return " ".join(self._context)

    def _clean(
        self, hyp: Hypothesis, after: float, before: list[Word]
    ) -> tuple[list[Word], bool]:
        """Apply the hallucination guards to a hypothesis; return usable words and loop flag."""
        if hyp.no_speech_prob > self.asr.no_speech_threshold and (
            hyp.avg_logprob < self.asr.log_prob_threshold
        ):
            return [], False
        # The model is all but sure it heard no speech and is not confident of its words either
        # (tones, music, breath): nothing to show.
        if hyp.no_speech_prob > self.SURE_NO_SPEECH and hyp.avg_logprob < self.UNSURE_LOGPROB:
            return [], False
        words, looped = cut_loops(list(hyp.words), before[-30:])
        if not looped and hyp.compression_ratio > self.asr.compression_ratio_threshold:
            return [], True
        # A few words the model itself barely believes (a lone "you" over a cough, a breath or
        # distant speech) are Whisper's classic hallucination: drop them.
        if words and len(words) <= 2 and (
            sum(w.probability for w in words) / len(words) < self.LOW_CONFIDENCE
        ):
            return [], looped
        # Monotonic, non-overlapping times after the committed words.
        fixed: list[Word] = []
        t = after
        for w in words:
            start = max(w.start, t)
            end = max(w.end, start)
            fixed.append(replace(w, start=start, end=end))
            t = end
        return fixed, looped

    def on_hypothesis(self, req: DecodeRequest, hyp: Hypothesis) -> list[PolicyEvent]:
        if req.speculative:
            cur = self.open
            end = round((req.offset + len(req.audio) / SAMPLE_RATE) * SAMPLE_RATE)
            if (
                cur is not None
                and cur.pause_end == end
                and req.offset == cur.start / SAMPLE_RATE
                and len(req.prefix) == len(self._final_prefix(cur))
            ):
                cur.spec = (end, len(req.prefix), hyp)
            return []
        if req.final:
            return self._finalise(self.closing.popleft(), hyp)
        return self._partial(req, hyp)

    def final_audio(self, utterance_id: int) -> tuple[np.ndarray, float] | None:
        """The audio (and its stream offset) of the utterance whose final was made last."""
        if self._last_final is None or self._last_final[0] != utterance_id:
            return None
        return self._last_final[1], self._last_final[2]

    def _finalise(self, u: _Utterance, hyp: Hypothesis, front: bool = True
                  ) -> list[PolicyEvent]:
        """Turn the final pass of a closed utterance (or finished sentence) into its final.

        ``front``: ``u`` was the head of ``closing`` (a continuation for speech the pass did
        not reach goes first); otherwise it is the newest pending final."""
        out = self._finalise_words(u, hyp)
        final = out[0] if out else None
        if isinstance(final, FinalCaption) and not u.sentence and final.words:
            self._rest(u, list(final.words), front)
        return out

    def _rest(self, u: _Utterance, words: list[Word], front: bool) -> None:
        """When the final pass stopped well before the end of the utterance's speech, queue a
        final pass for the rest: it starts before the final's last words (``asr.overlap_s``),
        which it is forced to begin with and never emits again, as at a cut."""
        if u.end is None or u.audio is None:
            return
        end_s = u.end / SAMPLE_RATE
        quiet = self.cfg.vad.end_silence_s + self._tail_keep / SAMPLE_RATE
        if end_s - words[-1].end < quiet + REST_MIN_S:
            return
        pool = u.carried + words
        k = len(pool) - 1
        while k > 0 and pool[-1].end - pool[k].start < self.asr.overlap_s:
            k -= 1
        overlap = pool[k:]
        start = max(u.start, min(u.end, int((overlap[0].start - CUT_GUARD_S) * SAMPLE_RATE)))
        rest = self._new_utterance(start)
        rest.carried, rest.end = list(overlap), u.end
        rest.audio = u.audio[start - u.start :]
        rest.language, rest.language_probability = u.language, u.language_probability
        if front:
            self.closing.appendleft(rest)
        else:
            self.closing.append(rest)

    def _finalise_words(self, u: _Utterance, hyp: Hypothesis) -> list[PolicyEvent]:
        audio = u.audio if u.audio is not None else self.ring.get(u.start, u.end)
        self._last_final = (u.id, audio, u.start / SAMPLE_RATE)
        if u.language is None:
            u.language, u.language_probability = hyp.language, hyp.language_probability
        prefix = list(self._final_prefix(u))
        after = prefix[-1].end if prefix else u.start / SAMPLE_RATE
        words, looped = self._clean(hyp, after, prefix)
        if self._redecode:
            # The pass re-decoded the committed words too: it may correct them, but must not
            # lose them (a pass that stops early keeps what the partial passes committed).
            if u.sentence and words and not looped:
                boundary_time = (
                    (u.committed[-1].end + u.tail[0].start) / 2
                    if u.tail else u.committed[-1].end + CUT_GUARD_S
                )
                words = words[: split_index(words, u.committed + u.tail, len(u.committed),
                                            boundary_time)]
            if looped or not words or len(words) < MIN_FINAL_SHARE * len(u.committed):
                if u.sentence:
                    words, looped = list(u.committed), False
                else:
                    kept, tail_looped = cut_loops(u.tail, (prefix + u.committed)[-30:])
                    words, looped = u.committed + kept, looped or tail_looped
            final = self._final_event(u, words, looped=looped)
            return [final] if final else []
        if looped or not words:
            # The final pass went wrong: keep what the last partial pass saw instead.
            fallback, tail_looped = cut_loops(u.tail, (prefix)[-30:])
            if len(fallback) > len(words):
                words, looped = fallback, looped or tail_looped
        final = self._final_event(u, u.committed + words, looped=looped)
        return [final] if final else []

    def _partial(self, req: DecodeRequest, hyp: Hypothesis) -> list[PolicyEvent]:
        """Apply a partial pass: agreement, commits, sentence finals and the partial caption."""
        cur = self.open
        if (
            cur is None
            or req.offset != cur.start / SAMPLE_RATE
            or len(req.prefix) != len(cur.carried) + len(cur.committed)
        ):
            return []  # the window moved on while decoding; the result is stale
        u = cur
        u.last_decode_end = round((req.offset + len(req.audio) / SAMPLE_RATE) * SAMPLE_RATE)
        if u.language is None and self.fixed_language is None:
            heard = u.last_decode_end - u.start
            if hyp.language_probability < self.CONFIDENT_LANGUAGE and heard < self._lock_after:
                return []  # not sure of the language yet: show nothing, detect again next pass
            u.language, u.language_probability = hyp.language, hyp.language_probability
        prefix = u.carried + u.committed
        after = prefix[-1].end if prefix else u.start / SAMPLE_RATE
        words, _looped = self._clean(hyp, after, prefix)
        keys = [norm(w.text) for w in words]
        # LocalAgreement-n over the words after the committed prefix.
        n_agree = len(keys)
        needed = self.asr.agreement - 1
        if needed > 0:
            if len(u.history) < needed:
                n_agree = 0
            else:
                for old in list(u.history)[-needed:]:
                    n_agree = min(n_agree, lcp(keys, old))
        limit = -1.0 if req.task == "translate" else hyp.audio_end - self._margin
        commit = 0
        while commit < n_agree and words[commit].end <= limit:
            commit += 1
        if commit:
            u.committed += [replace(w, stable=True) for w in words[:commit]]
            words = words[commit:]
            keys = keys[commit:]
            # Older hypotheses agreed on the committed words: re-base them.
            u.history = deque(
                (h[commit:] for h in u.history), maxlen=u.history.maxlen
            )
        u.history.append(keys)
        u.tail = words
        n = self._sentence_end(u)
        if n is not None:
            return self._cut(u, n)
        return self._partial_event(u)

    def _partial_event(self, u: _Utterance) -> list[PolicyEvent]:
        words = tuple(u.committed) + tuple(u.tail)
        shown = tuple((w.text, w.stable) for w in words)
        if not words or shown == u.shown:
            return []
        u.shown = shown
        u.revision += 1
        return [
            PartialCaption(
                utterance_id=u.id,
                revision=u.revision,
                words=words,
                start=words[0].start,
                end=words[-1].end,
                language=u.language or self.fixed_language or "en",
                language_probability=u.language_probability,
            )
        ]

    def _final_event(
        self, u: _Utterance, words: list[Word], looped: bool = False
    ) -> FinalCaption | None:
        words = [replace(w, stable=True) for w in words]
        text = join_words(words)
        if not words or not text:
            return None
        if not looped:
            for w in text.split():
                self._context.append(w)
        return FinalCaption(
            utterance_id=u.id,
            text=text,
            words=tuple(words),
            start=words[0].start,
            end=words[-1].end,
            language=u.language or self.fixed_language or "en",
            language_probability=u.language_probability,
        )
