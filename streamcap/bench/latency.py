"""Per-word latency and caption stability from a timed event stream (pure).

Input: the events of one streaming run, each with ``wall`` = seconds since the first audio
sample was released to the engine (in a real-time run, stream time and wall time share the same
zero, so ``wall - word.end`` is how long after the word was spoken something happened), and the
reference transcript of the file.

How a reference word gets its times (all definitions are also in ``docs/bench.md``):

1. Every word of every final caption is normalised on its own (:class:`TextScorer`); each token
   keeps its word's ``end``. The tokens of all finals, in order, are aligned to the reference
   tokens (:func:`~streamcap.bench.align.align`). A reference word *is in the final* when it is
   aligned to an equal token; its **audio end** is that word's ``end``. Otherwise its audio end
   comes from the offline decode's word timestamps (same alignment, ``fallback_ends``) and, if
   the offline decode missed it too, the word has no latency figures.
2. Each utterance owns the reference words aligned to its final's tokens, plus the unmatched
   reference words on either side up to its neighbours. Every partial of the utterance is
   aligned to that span with :func:`~streamcap.bench.align.align_prefix`.
3. **shown** (``latency.partial``): the first wall time an equal token appears in a partial of the
   utterance, or in its final if no partial showed it. **stable** (``latency.stable``): the first
   wall time it appears flagged stable in a partial, or in its final. **final**
   (``latency.final``): the wall time of the final that contains it. Each delay is that wall
   time minus the word's audio end; it may be negative (a guess can precede the word's end).
4. **final after speech end**: per utterance, the final's wall time minus the end of its last
   word (not the VAD ``speech_end``, which lags the real end by ``vad.end_silence_s``).

Stability: for consecutive displays of one utterance (each partial, then the final), tokens of
the earlier display that the later one substitutes or drops are *changed* words; tokens that a
display adds or substitutes are *shown* words. Partial words of an utterance that never gets a
final vanish, so they count as changed. A changed word that had been flagged stable breaks
the policy's promise and is counted separately.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..events import Event, FinalCaption, PartialCaption, Word
from .align import align, align_prefix
from .scoring import TextScorer


class TimedLike(Protocol):
    """What :class:`streamcap.runner.TimedEvent` provides."""

    @property
    def wall(self) -> float: ...

    @property
    def event(self) -> Event: ...


@dataclass(frozen=True)
class Token:
    """A normalised token of a caption word, with that word's audio end and stable flag."""

    text: str
    end: float
    stable: bool = True


def word_tokens(scorer: TextScorer, words: Sequence[Word]) -> list[Token]:
    """Normalise each word separately; every resulting token carries the word's end and flag."""
    out: list[Token] = []
    for w in words:
        for t in scorer.tokens(w.text):
            out.append(Token(t, float(w.end), bool(w.stable)))
    return out


def reference_ends(
    scorer: TextScorer, ref: Sequence[str], words: Sequence[Word]
) -> list[float | None]:
    """Audio end per reference token from a decode's word timestamps (``None`` if unmatched)."""
    toks = word_tokens(scorer, words)
    ends: list[float | None] = [None] * len(ref)
    for p in align(ref, [t.text for t in toks]):
        if p.op == "equal" and p.ref is not None and p.hyp is not None:
            ends[p.ref] = toks[p.hyp].end
    return ends


@dataclass
class WordTiming:
    """What happened to one reference word."""

    index: int
    text: str
    audio_end: float | None = None
    end_source: str = "none"  # "final", "offline" or "none"
    utterance_id: int | None = None
    shown: float | None = None
    stable: float | None = None
    final: float | None = None

    def delay(self, kind: str) -> float | None:
        at = {"partial": self.shown, "stable": self.stable, "final": self.final}[kind]
        if at is None or self.audio_end is None:
            return None
        return at - self.audio_end


@dataclass
class UtteranceTiming:
    """One finalised utterance: when its final came, relative to the end of its last word."""

    utterance_id: int
    final_wall: float
    last_word_end: float
    start: float
    end: float

    @property
    def final_after_speech_end(self) -> float:
        return self.final_wall - self.last_word_end


@dataclass
class Stability:
    """Word changes in the displayed captions of one run."""

    shown_words: int = 0
    changed_words: int = 0
    stable_words_changed: int = 0
    speech_seconds: float = 0.0

    @property
    def changes_per_minute(self) -> float:
        if self.speech_seconds <= 0:
            return 0.0
        return self.changed_words / (self.speech_seconds / 60.0)

    @property
    def changed_fraction(self) -> float:
        return self.changed_words / self.shown_words if self.shown_words else 0.0

    def __add__(self, other: Stability) -> Stability:
        return Stability(
            self.shown_words + other.shown_words,
            self.changed_words + other.changed_words,
            self.stable_words_changed + other.stable_words_changed,
            self.speech_seconds + other.speech_seconds,
        )


@dataclass
class FileLatency:
    """Latency and stability of one streaming run against its reference."""

    words: list[WordTiming]
    utterances: list[UtteranceTiming]
    stability: Stability
    partials_seen: int = 0
    words_first_shown_in_final: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def delays(self, kind: str) -> list[float]:
        """Delays of ``kind`` (``partial``, ``stable``, ``final``) for the words that have one."""
        out = [w.delay(kind) for w in self.words]
        return [d for d in out if d is not None]

    def final_after_speech_end(self) -> list[float]:
        return [u.final_after_speech_end for u in self.utterances]


def _group(
    events: Sequence[TimedLike],
) -> tuple[list[tuple[float, FinalCaption]], dict[int, list[tuple[float, PartialCaption]]]]:
    finals: dict[int, tuple[float, FinalCaption]] = {}
    order: list[int] = []
    partials: dict[int, list[tuple[float, PartialCaption]]] = {}
    for te in events:
        ev = te.event
        if isinstance(ev, FinalCaption):
            if ev.utterance_id not in finals:
                order.append(ev.utterance_id)
            finals[ev.utterance_id] = (float(te.wall), ev)
        elif isinstance(ev, PartialCaption):
            partials.setdefault(ev.utterance_id, []).append((float(te.wall), ev))
    return [finals[u] for u in order], partials


def _stability(
    scorer: TextScorer,
    finals: list[tuple[float, FinalCaption]],
    partials: dict[int, list[tuple[float, PartialCaption]]],
) -> Stability:
    st = Stability()
    final_by_id = {f.utterance_id: f for _, f in finals}
    for uid in sorted(set(partials) | set(final_by_id)):
        displays = [word_tokens(scorer, p.words) for _, p in partials.get(uid, [])]
        # An utterance that never gets a final loses its shown words: compare with nothing.
        displays.append(word_tokens(scorer, final_by_id[uid].words) if uid in final_by_id else [])
        if not displays:
            continue
        st.shown_words += len(displays[0])
        for prev, nxt in itertools.pairwise(displays):
            for p in align([t.text for t in prev], [t.text for t in nxt]):
                if p.op in ("substitute", "delete") and p.ref is not None:
                    st.changed_words += 1
                    if prev[p.ref].stable:
                        st.stable_words_changed += 1
                if p.op in ("substitute", "insert"):
                    st.shown_words += 1
    for _, f in finals:
        st.speech_seconds += max(0.0, float(f.end) - float(f.start))
    return st


def _earliest(current: float | None, wall: float) -> float:
    return wall if current is None or wall < current else current


def compute(
    events: Sequence[TimedLike],
    ref: Sequence[str],
    scorer: TextScorer,
    fallback_ends: Sequence[float | None] | None = None,
) -> FileLatency:
    """Word timings, utterance timings and stability for one run (see the module docstring)."""
    finals, partials = _group(events)
    words = [WordTiming(i, t) for i, t in enumerate(ref)]

    # 1. Global alignment of all finals' tokens to the reference.
    hyp: list[Token] = []
    hyp_utt: list[int] = []
    for _, f in finals:
        toks = word_tokens(scorer, f.words)
        hyp.extend(toks)
        hyp_utt.extend([f.utterance_id] * len(toks))
    final_wall = {f.utterance_id: wall for wall, f in finals}
    core: dict[int, list[int]] = {}
    for p in align(ref, [t.text for t in hyp]):
        if p.ref is None or p.hyp is None:
            continue
        uid = hyp_utt[p.hyp]
        core.setdefault(uid, []).append(p.ref)
        if p.op == "equal":
            w = words[p.ref]
            w.audio_end, w.end_source = hyp[p.hyp].end, "final"
            w.utterance_id = uid
            w.final = final_wall[uid]
    if fallback_ends is not None:
        for w in words:
            if w.audio_end is None and w.index < len(fallback_ends):
                fb = fallback_ends[w.index]
                if fb is not None:
                    w.audio_end, w.end_source = float(fb), "offline"

    # 2. Spans: each utterance's aligned reference words plus the unmatched ones around them.
    ordered = [(f.utterance_id, core[f.utterance_id]) for _, f in finals if f.utterance_id in core]
    spans: dict[int, tuple[int, int]] = {}
    for k, (uid, idx) in enumerate(ordered):
        lo = max(ordered[k - 1][1]) + 1 if k > 0 else 0
        hi = min(ordered[k + 1][1]) if k + 1 < len(ordered) else len(ref)
        spans[uid] = (min(lo, min(idx)), max(hi, max(idx) + 1))

    # 3. Partials: first shown and first stable, per reference word.
    seen = 0
    for uid, plist in partials.items():
        seen += len(plist)
        if uid not in spans:
            continue
        a, b = spans[uid]
        for wall, pc in plist:
            toks = word_tokens(scorer, pc.words)
            for p in align_prefix(ref[a:b], [t.text for t in toks]):
                if p.op != "equal" or p.ref is None or p.hyp is None:
                    continue
                w = words[a + p.ref]
                w.shown = _earliest(w.shown, wall)
                if toks[p.hyp].stable:
                    w.stable = _earliest(w.stable, wall)
                if w.utterance_id is None:
                    w.utterance_id = uid
    first_in_final = 0
    for w in words:
        if w.final is None:
            continue
        if w.shown is None or w.final < w.shown:
            first_in_final += 1
        w.shown = _earliest(w.shown, w.final)
        w.stable = _earliest(w.stable, w.final)

    # 4. Utterances.
    utts: list[UtteranceTiming] = []
    for wall, f in finals:
        spoken = [w for w in f.words if w.text.strip()]
        if spoken:
            utts.append(UtteranceTiming(f.utterance_id, wall, float(spoken[-1].end),
                                        float(f.start), float(f.end)))
    return FileLatency(
        words=words,
        utterances=utts,
        stability=_stability(scorer, finals, partials),
        partials_seen=seen,
        words_first_shown_in_final=first_in_final,
    )
