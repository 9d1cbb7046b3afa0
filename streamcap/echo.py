"""Echo without doubles: captions of a microphone that repeat what the speakers played.

Without headphones the microphone also hears the speakers, so the words of the monitor input
(the *reference*) come back, a few tens of milliseconds later and quieter, on the microphone
input (the *echo lane*). :class:`EchoFilter` is a pure stage after the
:class:`~streamcap.multi.MultiEngine`: it sees every labelled event of every input plus how far
each input has got in stream time (:class:`LaneProgress`), and it removes from the echo lane the
words the reference carried at the same time. No clock: all times are stream seconds.

How a microphone caption is judged (:func:`echo_mask`)
    Its words are aligned (``difflib`` on normalised words: Whisper's English normaliser, then
    letters and digits only) with the reference's words of the same time span (``pad_s``
    either side, pairs at most ``pad_s`` apart). Aligned words, and substituted words spelled
    alike (``similar``) or one part of the other (the two sides split a compound differently),
    are *echo candidates*. A run of at least ``min_echo_run`` consecutive candidates is echo
    (one coincidental ``the`` is not), and a run that short needs ``min_echo_chars`` letters
    (``of the`` is a coincidence too) unless it is the whole caption; a caption of a single
    word echoes if that word does. In a caption of ``short_caption`` words or fewer a word is a
    candidate wherever it is in the reference's words of that time (``2 2`` heard for ``2``).

    A run of the words left that reads like a stretch of the reference's text is echo heard
    wrongly (``flour-fed and sauce`` for ``flower-fattened sauce``): ``rapidfuzz``
    ``partial_ratio`` at least ``text_ratio``, for runs of ``text_min_chars`` letters or more
    and no longer than the reference's text of that time. The words left are the user's own,
    except runs shorter than ``min_own_run`` that touch echo: those are the recogniser's slips
    on the echo and go with it.

    * no echo run: the caption passes unchanged (the user's speech over a silent monitor
      can never be suppressed: there are no reference words to match);
    * all words echo: the caption is *suppressed*;
    * some words kept: the caption is *trimmed* to the kept words (a final with a
      ``translation`` cannot be cut: it is kept whole when at least half its words are kept,
      else suppressed).

Holding finals
    A microphone final may come out before the reference's words of that time are known (the
    scheduler serves whichever final ends first, and the reference may still be mid-utterance).
    So echo-lane finals wait, in order, until the reference is *known* past the final's end
    plus ``margin_s`` (its finals are out or its partial pass decoded that far:
    :attr:`LaneProgress.known`; an ended reference is known to the end). The wait is bounded
    in the microphone's own stream time: ``max_hold_s`` past the final's end while the
    reference has not even *heard* that time (a stalled or lost reference never holds the
    user's captions longer), ``max_wait_s`` while it has the audio but its decoding is behind
    (its finals are never skipped, so they come; a worker that cannot keep up is what delays
    them). At the bound the final is judged with what is known. Partials are never held:
    a microphone partial is judged at once against the reference's words so far, and hidden or
    trimmed the same way. When a final is suppressed after partials of its utterance were
    shown, an empty partial of that utterance clears them from live displays.

Suppressed finals are not published (the SRT/VTT, overlay and JSON Lines get one caption, the
reference's); they are counted per input (:attr:`EchoFilter.suppressed`, shown in ``status``)
and logged at debug level with their text and the reference words they matched.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from difflib import SequenceMatcher

from rapidfuzz import fuzz

from .asr.policy import PolicyEvent
from .events import FinalCaption, PartialCaption, Word, join_words

log = logging.getLogger(__name__)

_NOT_WORD = re.compile(r"[^\w]+", re.UNICODE)


@dataclasses.dataclass(frozen=True)
class EchoOptions:
    """How echo is recognised; see the module docstring."""

    margin_s: float = 0.4  # acoustic delay + word-time slack past a final's end
    pad_s: float = 1.5  # reference words this far around a caption are compared
    max_hold_s: float = 4.0  # the most a final waits for a reference lacking the audio
    max_wait_s: float = 30.0  # the most it waits for a reference whose decoding is behind
    min_echo_run: int = 2  # consecutive matching words that make echo
    min_echo_chars: int = 8  # a run of min_echo_run words needs this many letters ("of the"
    # inside a longer caption is a coincidence), unless it is the whole caption
    min_own_run: int = 3  # own words next to echo kept only in runs at least this long
    short_caption: int = 3  # captions of this many words match words in any order
    similar: float = 0.75  # spelling similarity for a substituted word to count as the same
    text_ratio: float = 66.0  # rapidfuzz partial_ratio of a leftover run that makes it echo
    text_min_chars: int = 5  # leftover runs shorter than this (letters) are not text-checked
    keep_s: float = 60.0  # reference words kept this long (stream time) for comparison

    def __post_init__(self) -> None:
        for name in ("margin_s", "pad_s", "max_hold_s", "max_wait_s", "keep_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"EchoOptions.{name}: expected a finite value >= 0, "
                                 f"got {value!r}")
        if self.min_echo_run < 1 or self.min_own_run < 1:
            raise ValueError("EchoOptions: min_echo_run and min_own_run must be >= 1")
        if not 0.0 <= self.text_ratio <= 101.0:
            raise ValueError(f"EchoOptions.text_ratio: expected 0..101 (101: off), got "
                             f"{self.text_ratio!r}")
        if not 0.0 < self.similar <= 1.0:
            raise ValueError(f"EchoOptions.similar: expected 0 < x <= 1, got {self.similar!r}")


@dataclasses.dataclass(frozen=True)
class LaneProgress:
    """How far one input has got, in stream seconds.

    ``heard``: audio consumed. ``known``: the input's words before this time are all out (in
    finals, or in a partial of an utterance still open); ``math.inf`` once the input ended and
    has nothing left to decode."""

    heard: float
    known: float


@functools.lru_cache(maxsize=8192)
def norm(text: str) -> str:
    """A word as compared: Whisper's English normaliser (``Three`` and ``3``, ``colour`` and
    ``color`` compare equal; ``uh`` is nothing), then letters and digits only."""
    return _NOT_WORD.sub("", _normaliser()(text))


@functools.lru_cache(maxsize=1)
def _normaliser() -> Callable[[str], str]:
    from whisper_normalizer.english import EnglishTextNormalizer

    fn: Callable[[str], str] = EnglishTextNormalizer()
    return fn


def echo_mask(words: Sequence[Word], ref: Sequence[Word], opts: EchoOptions) -> list[bool]:
    """For each of ``words``, whether it is echo of ``ref`` (see the module docstring)."""
    a = [norm(w.text) for w in words]
    b = [norm(w.text) for w in ref]
    cand = [False] * len(a)
    if not a or not b:
        return cand
    sm = SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        for i in range(i1, i2):
            if not a[i]:
                continue
            if tag == "equal":
                j = j1 + (i - i1)
                cand[i] = abs(words[i].start - ref[j].start) <= opts.pad_s
            elif tag == "replace":
                cand[i] = any(abs(words[i].start - ref[j].start) <= opts.pad_s
                              and _alike(a[i], b[j], opts.similar) for j in range(j1, j2))
    # A caption of a few words need not keep the reference's order ("2 2" for "2").
    if len(a) <= opts.short_caption:
        for i in range(len(a)):
            cand[i] = cand[i] or (bool(a[i]) and any(
                x and abs(words[i].start - w.start) <= opts.pad_s
                and (a[i] == x or _alike(a[i], x, opts.similar)) for x, w in zip(b, ref,
                                                                                  strict=True)))
    # Punctuation-only pieces take the side of the word before them.
    for i in range(1, len(a)):
        if not a[i]:
            cand[i] = cand[i - 1]
    need = min(opts.min_echo_run, len(a))
    echo = [False] * len(a)
    for value, i1, i2 in _runs(cand):
        whole = i1 == 0 and i2 == len(a)
        short = i2 - i1 <= opts.min_echo_run and sum(map(len, a[i1:i2])) < opts.min_echo_chars
        if value and i2 - i1 >= need and (whole or not short):
            echo[i1:i2] = [True] * (i2 - i1)
    # Leftover runs that read like a stretch of the reference are echo heard wrongly.
    for value, i1, i2 in _runs(echo):
        t0, t1 = words[i1].start - opts.pad_s, words[i2 - 1].end + opts.pad_s
        ref_text = " ".join(x for x, w in zip(b, ref, strict=True)
                            if x and w.end >= t0 and w.start <= t1)
        run_text = " ".join(x for x in a[i1:i2] if x)
        letters = len(run_text.replace(" ", ""))
        if (not value and opts.text_min_chars <= letters and len(run_text) <= len(ref_text)
                and fuzz.partial_ratio(run_text, ref_text) >= opts.text_ratio):
            echo[i1:i2] = [True] * (i2 - i1)
    if not any(echo):
        return echo
    # Short own runs touching echo are the recogniser's slips on the echo.
    runs = _runs(echo)
    for k, (value, i1, i2) in enumerate(runs):
        touches = (k > 0 and runs[k - 1][0]) or (k + 1 < len(runs) and runs[k + 1][0])
        if not value and touches and i2 - i1 < opts.min_own_run:
            echo[i1:i2] = [True] * (i2 - i1)
    return echo


def _alike(a: str, b: str, similar: float) -> bool:
    """Substituted words that are the same word heard or split differently: spelled alike,
    or one a part of the other (``flower`` / ``flowerfattened``; four letters at least)."""
    if min(len(a), len(b)) >= 4 and (a in b or b in a):
        return True
    return SequenceMatcher(None, a, b).ratio() >= similar


def _runs(flags: Sequence[bool]) -> list[tuple[bool, int, int]]:
    out: list[tuple[bool, int, int]] = []
    start = 0
    for i in range(1, len(flags) + 1):
        if i == len(flags) or flags[i] != flags[start]:
            out.append((flags[start], start, i))
            start = i
    return out


class _Reference:
    """The words one reference input carried lately, per utterance (a partial's words until
    the utterance's final replaces them)."""

    def __init__(self) -> None:
        self.words: dict[int, tuple[Word, ...]] = {}

    def add(self, ev: PartialCaption | FinalCaption) -> None:
        self.words[ev.utterance_id] = ev.words

    def around(self, start: float, end: float, pad: float) -> list[Word]:
        out = [w for ws in self.words.values() for w in ws
               if w.end >= start - pad and w.start <= end + pad]
        out.sort(key=lambda w: (w.start, w.end))
        return out

    def prune(self, before: float) -> None:
        for uid in [u for u, ws in self.words.items() if not ws or ws[-1].end < before]:
            del self.words[uid]


class EchoFilter:
    """Removes the reference's words from echo lanes' captions; see the module docstring.

    ``refs`` maps an echo lane (a microphone) to its reference lane (what the speakers play),
    by input index. A reference cannot itself be an echo lane (no chains, no loops)."""

    def __init__(self, refs: Mapping[int, int], lanes: int,
                 options: EchoOptions | None = None) -> None:
        for mic, ref in refs.items():
            if not (0 <= mic < lanes and 0 <= ref < lanes):
                raise ValueError(f"echo pair {mic} -> {ref}: no such input (0..{lanes - 1})")
            if mic == ref:
                raise ValueError(f"echo pair {mic} -> {ref}: an input cannot echo itself")
            if ref in refs:
                raise ValueError(f"echo pair {mic} -> {ref}: input {ref} is itself an echo "
                                 "of another input")
        self.refs = dict(refs)
        self.lanes = lanes
        self.opts = options or EchoOptions()
        self._ref = {r: _Reference() for r in set(self.refs.values())}
        self._held: dict[int, deque[FinalCaption]] = {m: deque() for m in self.refs}
        # Per echo lane: (utterance id, revision) of the newest partial shown, and whether
        # it showed words (a suppressed final then clears it).
        self._shown: dict[int, tuple[int, int, bool]] = {}
        self.suppressed = [0] * lanes  # finals suppressed as echo, per input
        self.trimmed = [0] * lanes  # finals with echo words removed, per input
        self.words_removed = [0] * lanes
        self.held_max_s = 0.0  # the longest hold so far, microphone stream seconds

    @property
    def holding(self) -> int:
        """Finals waiting for their reference."""
        return sum(len(q) for q in self._held.values())

    def feed(self, lane: int, events: Sequence[PolicyEvent],
             progress: Sequence[LaneProgress]) -> list[PolicyEvent]:
        """Events of input ``lane`` in; what to publish out (held finals of any input whose
        reference has now caught up come out here too, after ``lane``'s own)."""
        if not 0 <= lane < self.lanes:
            raise ValueError(f"echo filter: no input {lane} (0..{self.lanes - 1})")
        if len(progress) != self.lanes:
            raise ValueError(f"echo filter: progress of {len(progress)} inputs, expected "
                             f"{self.lanes}")
        out: list[PolicyEvent] = []
        ref = self._ref.get(lane)
        for ev in events:
            if ref is not None and isinstance(ev, (PartialCaption, FinalCaption)):
                ref.add(ev)
            if lane in self.refs and isinstance(ev, FinalCaption):
                self._held[lane].append(ev)
            elif lane in self.refs and isinstance(ev, PartialCaption):
                out += self._partial(lane, ev)
            else:
                out.append(ev)
        if ref is not None:
            ref.prune(progress[lane].heard - self.opts.keep_s)
        return out + self._release(progress, force=False)

    def flush(self) -> list[PolicyEvent]:
        """End of the session: judge every held final with what is known."""
        return self._release(None, force=True)

    # --- judging -----------------------------------------------------------------------------

    def _judge(self, lane: int, words: Sequence[Word]) -> list[bool]:
        if not words:
            return []
        ref = self._ref[self.refs[lane]]
        start = min(w.start for w in words)
        end = max(w.end for w in words)
        return echo_mask(words, ref.around(start, end, self.opts.pad_s), self.opts)

    def _partial(self, lane: int, ev: PartialCaption) -> list[PolicyEvent]:
        mask = self._judge(lane, ev.words)
        if not any(mask):
            self._shown[lane] = (ev.utterance_id, ev.revision, bool(ev.words))
            return [ev]
        kept = tuple(w for w, e in zip(ev.words, mask, strict=True) if not e)
        shown = self._shown.get(lane)
        if not kept and not (shown and shown[0] == ev.utterance_id and shown[2]):
            return []  # pure echo, nothing of this utterance on screen: show nothing
        self._shown[lane] = (ev.utterance_id, ev.revision, bool(kept))
        return [dataclasses.replace(ev, words=kept, start=kept[0].start if kept else ev.start,
                                    end=kept[-1].end if kept else ev.end)]

    def _release(self, progress: Sequence[LaneProgress] | None,
                 force: bool) -> list[PolicyEvent]:
        out: list[PolicyEvent] = []
        for mic, queue in self._held.items():
            while queue:
                final = queue[0]
                if not force:
                    assert progress is not None
                    if math.isfinite(final.end) and not self._ready(
                            final.end, progress[mic], progress[self.refs[mic]]):
                        break
                    heard = progress[mic].heard
                    if math.isfinite(heard - final.end):
                        self.held_max_s = max(self.held_max_s, heard - final.end)
                queue.popleft()
                out += self._final(mic, final)
        return out

    def _ready(self, end: float, mic: LaneProgress, ref: LaneProgress) -> bool:
        """Whether a held final ending at ``end`` can be judged now (see the module docs)."""
        if ref.known >= end + self.opts.margin_s:
            return True  # the reference's words of that time are all out
        waited = mic.heard - end
        if ref.heard < end + self.opts.margin_s:  # the reference lacks the audio: stalled
            return waited >= self.opts.max_hold_s
        return waited >= self.opts.max_wait_s  # it has the audio: its decode is behind

    def _final(self, lane: int, ev: FinalCaption) -> list[PolicyEvent]:
        mask = self._judge(lane, ev.words)
        if not any(mask):
            return [ev]
        kept = tuple(w for w, e in zip(ev.words, mask, strict=True) if not e)
        if ev.translation is not None:
            kept = ev.words if 2 * len(kept) >= len(ev.words) else ()
        ref_text = join_words(self._ref[self.refs[lane]].around(ev.start, ev.end,
                                                                 self.opts.pad_s))
        if kept == ev.words:
            return [ev]
        self.words_removed[lane] += len(ev.words) - len(kept)
        if kept:
            self.trimmed[lane] += 1
            trimmed = dataclasses.replace(ev, words=kept, text=join_words(kept),
                                          start=kept[0].start, end=kept[-1].end)
            log.debug("echo: input %d final %d trimmed to %r (was %r; reference said %r)",
                      lane, ev.utterance_id, trimmed.text, ev.text, ref_text)
            return [trimmed]
        self.suppressed[lane] += 1
        log.debug("echo: input %d final %d suppressed: %r (reference said %r)",
                  lane, ev.utterance_id, ev.text, ref_text)
        shown = self._shown.get(lane)
        if shown and shown[0] == ev.utterance_id and shown[2]:
            self._shown[lane] = (ev.utterance_id, shown[1] + 1, False)
            return [PartialCaption(utterance_id=ev.utterance_id, revision=shown[1] + 1,
                                   words=(), start=ev.start, end=ev.end, language=ev.language,
                                   language_probability=ev.language_probability,
                                   source=ev.source, speaker=ev.speaker)]
        return []
