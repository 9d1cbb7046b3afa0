"""What happens at the boundaries between finals, measured from events only (pure).

Input: the timed events of one streaming run (finals, partials, VAD events, in emission order),
the reference tokens and, optionally, the offline decode's words (for the times of reference
words the finals miss). Nothing here looks at engine internals, so it measures any engine that
emits :class:`~streamcap.events.FinalCaption` / :class:`~streamcap.events.PartialCaption` /
:class:`~streamcap.events.VadEvent`. Definitions (also in ``docs/bench.md``):

- **Finals** are taken in emission order, every one of them (several may share an utterance id).
  Finals with no word are ignored here. Each word is normalised on its own
  (:class:`~streamcap.bench.scoring.TextScorer`); its tokens keep the word's start and end.
- **Boundary**: between two consecutive finals F(k) and F(k+1). Its **time** is the midpoint of
  F(k)'s last word end and F(k+1)'s first word start. It is **at a pause** when the VAD emitted a
  ``speech_end`` whose time t satisfies ``F(k).first_word_start < t <= F(k+1).first_word_start``,
  otherwise it is a **cut inside speech** (the engine split running speech).
- **Lost word**: a reference token with no counterpart in any final: deleted in the minimum-edit
  alignment of the reference to all finals' tokens (a substituted word has a counterpart, it
  counts in the WER only). It is **lost at a boundary** when it sits, in that alignment, between
  tokens of two different finals, or when its time span (from the offline decode's matching
  word, else between its aligned neighbours) comes within :data:`CUT_WINDOW_S` of a boundary's
  time. It takes the kind (inside speech / at a pause) of the nearest such boundary. A lost
  word before the first final's first token or after the last final's last token (and not near
  a boundary) is **lost at an edge** (``start`` / ``end``) instead: speech no final reaches.
- **Doubled word**: a final token the alignment inserts (no reference word) that lies within
  :data:`DOUBLE_SPAN` tokens of a boundary and whose text equals one of the
  :data:`DOUBLE_SPAN` tokens on the other side of that boundary: a word said once, emitted on
  both sides of the cut.
- **Stable word changed**: every token a partial flags ``stable``, identified by (utterance id,
  how many finals of that utterance came before the partial, position, text), is checked once
  against the tokens of the finals of the same utterance emitted *after* that partial,
  concatenated: it is changed when the in-order text alignment (difflib) of the partial's tokens
  with those finals' tokens leaves it unmatched (also when the utterance never gets a final), so
  a final that splits or merges one word changes that word, not every word after it. Rate =
  changed / distinct stable tokens shown.
- **Final delay**: per final, its emission wall time minus the end of its last word. The final is
  **at a pause** when the boundary after it is at a pause, or, for the last final, when a
  ``speech_end`` came after its first word start; otherwise **inside speech**.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..events import Event, FinalCaption, PartialCaption, VadEvent, Word
from .align import align
from .latency import TimedLike
from .scoring import TextScorer

CUT_WINDOW_S = 1.0
DOUBLE_SPAN = 3


@dataclass(frozen=True)
class TimedToken:
    """A normalised token of a caption word with the word's times."""

    text: str
    start: float
    end: float


def timed_tokens(scorer: TextScorer, words: Sequence[Word]) -> list[TimedToken]:
    """Normalise each word on its own; its tokens carry its start and end."""
    return [TimedToken(t, float(w.start), float(w.end))
            for w in words for t in scorer.tokens(w.text)]


@dataclass(frozen=True)
class Boundary:
    """The boundary between finals ``index`` and ``index + 1`` (in emission order)."""

    index: int
    time: float
    at_pause: bool

    @property
    def kind(self) -> str:
        return "at_pause" if self.at_pause else "inside_speech"


@dataclass(frozen=True)
class LostWord:
    """A reference word no final has, next to a boundary."""

    ref_index: int
    text: str
    time: float | None
    boundary: Boundary


@dataclass(frozen=True)
class EdgeLoss:
    """A reference word no final has, before the first final or after the last one."""

    ref_index: int
    text: str
    time: float | None
    edge: str  # "start" or "end"


@dataclass(frozen=True)
class DoubledWord:
    """A final token that repeats a word across a boundary (an insertion against the reference)."""

    text: str
    final_index: int
    boundary: Boundary


@dataclass(frozen=True)
class FinalDelay:
    """When one final came, relative to the end of its last word."""

    utterance_id: int
    wall: float
    last_word_end: float
    at_pause: bool

    @property
    def delay(self) -> float:
        return self.wall - self.last_word_end


@dataclass
class Continuity:
    """The boundary figures of one run."""

    boundaries: list[Boundary] = field(default_factory=list)
    deleted_words: int = 0
    lost: list[LostWord] = field(default_factory=list)
    lost_at_edges: list[EdgeLoss] = field(default_factory=list)
    doubled: list[DoubledWord] = field(default_factory=list)
    stable_shown: int = 0
    stable_changed: int = 0
    stable_changed_examples: list[str] = field(default_factory=list)
    final_delays: list[FinalDelay] = field(default_factory=list)

    def count(self, items: Sequence[LostWord | DoubledWord], kind: str | None = None) -> int:
        return sum(1 for x in items if kind is None or x.boundary.kind == kind)


@dataclass(frozen=True)
class _Final:
    wall: float
    order: int
    event: FinalCaption
    tokens: list[TimedToken]


def _finals(events: Sequence[TimedLike], scorer: TextScorer) -> list[_Final]:
    out = []
    for order, te in enumerate(events):
        ev = te.event
        if isinstance(ev, FinalCaption):
            toks = timed_tokens(scorer, ev.words)
            if toks:
                out.append(_Final(float(te.wall), order, ev, toks))
    return out


def boundaries(finals: Sequence[_Final], speech_ends: Sequence[float]) -> list[Boundary]:
    """One boundary per pair of consecutive finals, at a pause or inside speech."""
    out = []
    for k in range(len(finals) - 1):
        a, b = finals[k].tokens, finals[k + 1].tokens
        lo, hi = a[0].start, b[0].start
        pause = any(lo < t <= hi for t in speech_ends)
        out.append(Boundary(k, (a[-1].end + b[0].start) / 2, pause))
    return out


def _ref_spans(
    ref: Sequence[str], scorer: TextScorer, offline: Sequence[Word] | None
) -> list[tuple[float, float] | None]:
    spans: list[tuple[float, float] | None] = [None] * len(ref)
    if offline:
        toks = timed_tokens(scorer, offline)
        for p in align(ref, [t.text for t in toks]):
            if p.op == "equal" and p.ref is not None and p.hyp is not None:
                spans[p.ref] = (toks[p.hyp].start, toks[p.hyp].end)
    return spans


def _lost_and_doubled(
    ref: Sequence[str], finals: Sequence[_Final], bounds: Sequence[Boundary],
    spans: Sequence[tuple[float, float] | None], out: Continuity,
    ref_words: Sequence[int] | None = None,
) -> None:
    hyp = [t for f in finals for t in f.tokens]
    owner = [k for k, f in enumerate(finals) for _ in f.tokens]
    pairs = align(ref, [t.text for t in hyp])
    # A written word whose tokens are partly matched has a counterpart: a deleted token of it
    # (the "would" of "remember'd" heard as "remembered") is misheard, not lost.
    heard_words = {ref_words[p.ref] for p in pairs
                   if ref_words is not None and p.ref is not None and p.hyp is not None}
    # For each pair, the hypothesis tokens just before and after it (for deleted words).
    prev_hyp: list[int | None] = []
    last: int | None = None
    for p in pairs:
        prev_hyp.append(last)
        if p.hyp is not None:
            last = p.hyp
    next_hyp: list[int | None] = [None] * len(pairs)
    nxt: int | None = None
    for i in range(len(pairs) - 1, -1, -1):
        next_hyp[i] = nxt
        if pairs[i].hyp is not None:
            nxt = pairs[i].hyp
    for i, p in enumerate(pairs):
        if p.op == "delete" and p.ref is not None:
            out.deleted_words += 1
            if ref_words is not None and ref_words[p.ref] in heard_words:
                continue
            a, b = prev_hyp[i], next_hyp[i]
            span = spans[p.ref]
            if span is None and a is not None and b is not None:
                span = (hyp[a].end, hyp[b].start)
            near: Boundary | None = None
            if a is not None and b is not None and owner[a] != owner[b]:
                near = bounds[owner[a]]
            elif span is not None and bounds:
                mid = (span[0] + span[1]) / 2
                cand = min(bounds, key=lambda bd: abs(bd.time - mid))
                lo, hi = min(span), max(span)
                if lo - CUT_WINDOW_S <= cand.time <= hi + CUT_WINDOW_S:
                    near = cand
            t = None if span is None else round((span[0] + span[1]) / 2, 3)
            if near is not None:
                out.lost.append(LostWord(p.ref, ref[p.ref], t, near))
            elif (a is None) != (b is None):
                out.lost_at_edges.append(EdgeLoss(p.ref, ref[p.ref], t,
                                                  "end" if b is None else "start"))
        elif p.op == "insert" and p.hyp is not None:
            k = owner[p.hyp]
            pos = p.hyp - sum(len(f.tokens) for f in finals[:k])
            text = hyp[p.hyp].text
            toks = finals[k].tokens
            if k + 1 < len(finals) and pos >= len(toks) - DOUBLE_SPAN and text in [
                t.text for t in finals[k + 1].tokens[:DOUBLE_SPAN]
            ]:
                out.doubled.append(DoubledWord(text, k, bounds[k]))
            elif k > 0 and pos < DOUBLE_SPAN and text in [
                t.text for t in finals[k - 1].tokens[-DOUBLE_SPAN:]
            ]:
                out.doubled.append(DoubledWord(text, k, bounds[k - 1]))


def _stable_changes(events: Sequence[TimedLike], scorer: TextScorer, out: Continuity) -> None:
    finals_of: dict[int, list[tuple[int, list[str]]]] = {}
    for order, te in enumerate(events):
        ev = te.event
        if isinstance(ev, FinalCaption):
            toks = [t.text for t in timed_tokens(scorer, ev.words)]
            finals_of.setdefault(ev.utterance_id, []).append((order, toks))
    checked: set[tuple[int, int, int, str]] = set()
    for order, te in enumerate(events):
        pc: Event = te.event
        if not isinstance(pc, PartialCaption):
            continue
        fl = finals_of.get(pc.utterance_id, [])
        before = sum(1 for o, _ in fl if o < order)
        later = [t for o, toks in fl if o > order for t in toks]
        shown = [(tok, w.stable) for w in pc.words for tok in scorer.tokens(w.text)]
        # Where each partial token ended up in the finals: matched by text, in order, so a
        # final that splits or merges one word does not shift every word after it.
        kept: dict[int, int] = {}
        matcher = difflib.SequenceMatcher(a=[t for t, _ in shown], b=later, autojunk=False)
        for a, b, n in matcher.get_matching_blocks():
            for k in range(n):
                kept[a + k] = b + k
        for pos, (tok, stable) in enumerate(shown):
            key = (pc.utterance_id, before, pos, tok)
            if stable and key not in checked:
                checked.add(key)
                out.stable_shown += 1
                if pos not in kept:
                    out.stable_changed += 1
                    if len(out.stable_changed_examples) < 20:
                        got = later[pos] if pos < len(later) else None
                        out.stable_changed_examples.append(
                            f"utterance {pc.utterance_id} word {pos}: {tok!r} -> {got!r}")


def compute_continuity(
    events: Sequence[TimedLike],
    ref: Sequence[str],
    scorer: TextScorer,
    offline_words: Sequence[Word] | None = None,
    ref_words: Sequence[int] | None = None,
) -> Continuity:
    """Boundaries, lost and doubled words, stable words changed and final delays of one run."""
    out = Continuity()
    finals = _finals(events, scorer)
    speech_ends = [float(te.event.time) for te in events
                   if isinstance(te.event, VadEvent) and te.event.state == "speech_end"]
    out.boundaries = boundaries(finals, speech_ends)
    _lost_and_doubled(ref, finals, out.boundaries, _ref_spans(ref, scorer, offline_words), out,
                      ref_words)
    _stable_changes(events, scorer, out)
    for k, f in enumerate(finals):
        if k < len(out.boundaries):
            pause = out.boundaries[k].at_pause
        else:
            pause = any(t > f.tokens[0].start for t in speech_ends)
        out.final_delays.append(
            FinalDelay(f.event.utterance_id, f.wall, f.tokens[-1].end, pause))
    return out
