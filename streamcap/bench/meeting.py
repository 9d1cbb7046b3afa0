"""Scoring several labelled inputs: who said what, and how well, per input (pure).

* :func:`attribution`: speech played on labelled inputs one after another (``Spoken``, in the
  order it was played) against the finals that came out (``Heard``, each with its label and
  start time). The finals, in order of start time, are aligned word by word with the references
  in play order (:func:`~streamcap.bench.align.align`, the alignment WER counts); every final
  word paired with a reference word (a match or a substitution) is *attributed*, and it is
  *right* when its final's label is the label of the input that reference word was played on.
  Words the alignment inserts (no reference word) are recognition errors, counted apart.
* :func:`per_label`: the error counts of each input alone, its finals against the references of
  what was played on it (the WER of each side of the call, also when both talk at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .align import align
from .scoring import ErrorCounts, TextScorer, count_errors


@dataclass(frozen=True)
class Spoken:
    """One clip played on the input labelled ``label``; ``reference`` is what it says."""

    label: str
    reference: str


@dataclass(frozen=True)
class Heard:
    """One final caption: its label (``source``; None when unlabelled), start and text."""

    label: str | None
    start: float
    text: str


@dataclass(frozen=True)
class Attribution:
    """Final words paired with a reference word, how many carry its input's label, and the
    final words paired with none."""

    words: int = 0
    right: int = 0
    inserted: int = 0

    @property
    def fraction(self) -> float:
        """Share of attributed words with the right label (1.0 when none was attributed)."""
        return self.right / self.words if self.words else 1.0

    def to_dict(self) -> dict[str, float | int]:
        return {"fraction": round(self.fraction, 4), "words": self.words, "right": self.right,
                "inserted": self.inserted}


def attribution(
    spoken: Sequence[Spoken], heard: Sequence[Heard], scorer: TextScorer | None = None
) -> Attribution:
    """Score the labels of ``heard`` against the inputs ``spoken`` was played on (see the
    module docstring)."""
    sc = scorer or TextScorer()
    ref: list[str] = []
    ref_label: list[str] = []
    for s in spoken:
        toks = sc.reference_tokens(s.reference)
        ref += toks
        ref_label += [s.label] * len(toks)
    hyp: list[str] = []
    hyp_label: list[str | None] = []
    for h in sorted(heard, key=lambda h: h.start):
        toks = sc.tokens(h.text)
        hyp += toks
        hyp_label += [h.label] * len(toks)
    words = right = inserted = 0
    for pair in align(ref, hyp):
        if pair.hyp is None:
            continue
        if pair.ref is None:
            inserted += 1
            continue
        words += 1
        right += hyp_label[pair.hyp] == ref_label[pair.ref]
    return Attribution(words, right, inserted)


def per_label(
    spoken: Sequence[Spoken], heard: Sequence[Heard], scorer: TextScorer | None = None
) -> dict[str, ErrorCounts]:
    """For each label played on, its finals (by start time) against its references (in play
    order); finals with a label nothing was played on count as insertions under that label."""
    sc = scorer or TextScorer()
    labels = list(dict.fromkeys([s.label for s in spoken]
                                + [h.label for h in heard if h.label is not None]))
    ordered = sorted(heard, key=lambda h: h.start)
    out: dict[str, ErrorCounts] = {}
    for label in labels:
        ref = [t for s in spoken if s.label == label for t in sc.reference_tokens(s.reference)]
        hyp = [t for h in ordered if h.label == label for t in sc.tokens(h.text)]
        out[label] = count_errors(ref, hyp)
    return out
