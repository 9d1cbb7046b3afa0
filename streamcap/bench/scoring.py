"""Text normalisation and error rates, Whisper style (pure).

- English: ``whisper_normalizer.english.EnglishTextNormalizer`` (case, punctuation, spelled-out
  numbers, British spellings, ``mr`` -> ``mister``; it already drops ``uh``/``um``/``hmm``).
- Other languages: ``whisper_normalizer.basic.BasicTextNormalizer`` (case and punctuation).
- Curly apostrophes are made straight first, so ``beauty’s`` and ``beauty's`` score the same.
- Spontaneous speech (``remove_fillers``): the filler tokens in :data:`FILLERS` are dropped from
  both sides.
- References keep words written in brackets or parentheses: the Whisper normalisers delete
  ``[...]``, ``<...>`` and ``(...)`` spans (meant for non-speech tags in *model output*), so
  :meth:`TextScorer.reference_tokens` turns those brackets into spaces first. Hypotheses keep
  the normaliser's behaviour (a ``[MUSIC]`` tag from the model is not a word).
- zh and ja (no word spaces) are scored by character error rate: the normalised text without
  whitespace, one token per character. Everything else is scored by word error rate.

Counts come from ``jiwer.process_words`` on the token lists, so they are the standard figures.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import jiwer

Metric = Literal["wer", "cer"]

CER_LANGUAGES = frozenset({"zh", "ja", "yue"})
FILLERS = frozenset({"uh", "um", "umm", "uhm", "hmm", "mm", "mhm", "er", "erm", "ah", "yknow"})
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'"})
# Brackets the normalisers treat as "delete what is inside"; in a reference they are just text.
_BRACKETS = str.maketrans({c: " " for c in "[]()<>{}"})


def _clean(text: str) -> str:
    """Straight apostrophes; control and format characters (NUL, ESC, zero-width) become spaces."""
    text = text.translate(_APOSTROPHES)
    return "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)


@lru_cache(maxsize=2)
def _normaliser(english: bool) -> Callable[[str], str]:
    if english:
        from whisper_normalizer.english import EnglishTextNormalizer

        fn: Callable[[str], str] = EnglishTextNormalizer()
        return fn
    from whisper_normalizer.basic import BasicTextNormalizer

    basic: Callable[[str], str] = BasicTextNormalizer()
    return basic


def metric_for(language: str) -> Metric:
    """``cer`` for languages written without word spaces, ``wer`` otherwise."""
    return "cer" if language.lower() in CER_LANGUAGES else "wer"


@dataclass(frozen=True)
class TextScorer:
    """Turns caption or reference text into the tokens that are compared, for one language."""

    language: str = "en"
    remove_fillers: bool = False

    @property
    def metric(self) -> Metric:
        return metric_for(self.language)

    def normalise(self, text: str) -> str:
        english = self.language.lower() == "en" or self.language.lower().startswith("en-")
        return _normaliser(english)(_clean(text))

    def tokens(self, text: str) -> list[str]:
        """Normalised tokens: words, or characters for the CER languages."""
        # A token with no letter or digit left (a stray "." or "-") is not a word.
        words = [w for w in self.normalise(text).split() if any(c.isalnum() for c in w)]
        if self.remove_fillers:
            words = [w for w in words if w not in FILLERS]
        if self.metric == "cer":
            return [c for w in words for c in w]
        return words

    def reference_tokens(self, text: str) -> list[str]:
        """Tokens of a reference transcript: like :meth:`tokens`, but bracketed words are kept."""
        return self.tokens(text.translate(_BRACKETS))

    def reference_words(self, text: str) -> list[int]:
        """For each token of :meth:`reference_tokens`, the index of the written word it comes
        from (the normaliser turns "remember'd" into "remember would" and "feel'st" into "feel
        saint": two tokens, one spoken word). Tokens that normalising word by word does not
        reproduce (numbers spelled across words) each get a word of their own (negative)."""
        owners: list[int] = []
        alone: list[str] = []
        for i, word in enumerate(text.translate(_BRACKETS).split()):
            toks = self.tokens(word)
            alone += toks
            owners += [i] * len(toks)
        whole = self.reference_tokens(text)
        out = [-1 - k for k in range(len(whole))]
        matcher = difflib.SequenceMatcher(a=alone, b=whole, autojunk=False)
        for a, b, n in matcher.get_matching_blocks():
            out[b : b + n] = owners[a : a + n]
        return out


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations against ``ref_tokens`` reference tokens; adds up over files."""

    ref_tokens: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Error rate in percent (0 when there is nothing to compare at all)."""
        if self.ref_tokens == 0:
            return 100.0 if self.insertions else 0.0
        return 100.0 * self.errors / self.ref_tokens

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.ref_tokens + other.ref_tokens,
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
        )

    def to_dict(self) -> dict[str, float | int]:
        return {
            "rate": round(self.rate, 3),
            "ref_tokens": self.ref_tokens,
            "substitutions": self.substitutions,
            "deletions": self.deletions,
            "insertions": self.insertions,
        }


def count_errors(ref: list[str], hyp: list[str]) -> ErrorCounts:
    """Count substitutions, deletions and insertions between two token lists (jiwer)."""
    if not ref:
        return ErrorCounts(0, 0, 0, len(hyp))
    if not hyp:
        return ErrorCounts(len(ref), 0, len(ref), 0)
    # Tokens never contain whitespace, so joining with spaces and letting jiwer split is exact.
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return ErrorCounts(len(ref), int(out.substitutions), int(out.deletions), int(out.insertions))


def score(scorer: TextScorer, reference: str, hypothesis: str) -> ErrorCounts:
    """Normalise both texts with ``scorer`` and count the errors."""
    return count_errors(scorer.reference_tokens(reference), scorer.tokens(hypothesis))


def total(counts: Iterable[ErrorCounts]) -> ErrorCounts:
    """Pool counts (corpus-level rate: all errors over all reference tokens)."""
    out = ErrorCounts()
    for c in counts:
        out = out + c
    return out
