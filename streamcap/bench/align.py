"""Word alignment by edit distance, with a fixed, documented tie-break (pure).

:func:`align` pairs two token sequences the way WER counts them (unit cost for substitution,
insertion and deletion) and returns the pairs in order. Among alignments with the fewest edits it
picks one with the most matches; remaining ties put matches as early as possible (walking back
from the end, a deletion, then an insertion, is preferred over a diagonal step), so a repeated
word pairs with its first occurrence and the result is deterministic.

:func:`align_prefix` aligns a *growing* hypothesis (a partial caption) against a whole reference:
reference words after the last hypothesis word are not yet spoken, so deleting them is free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Op = Literal["equal", "substitute", "delete", "insert"]


@dataclass(frozen=True)
class Pair:
    """One step of an alignment: ``ref`` and/or ``hyp`` index (``None`` when absent)."""

    op: Op
    ref: int | None
    hyp: int | None


def _table(ref: Sequence[str], hyp: Sequence[str]) -> tuple[list[list[int]], int]:
    """Cost table: ``edits * big - matches``, so fewest edits first, then most matches."""
    n, m = len(ref), len(hyp)
    big = n + m + 1
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        d[i][0] = i * big
    for j in range(1, m + 1):
        d[0][j] = j * big
    for i in range(1, n + 1):
        ri = ref[i - 1]
        row, prev = d[i], d[i - 1]
        for j in range(1, m + 1):
            sub = prev[j - 1] + (-1 if ri == hyp[j - 1] else big)
            row[j] = min(sub, prev[j] + big, row[j - 1] + big)
    return d, big


def _backtrace(
    table: tuple[list[list[int]], int], ref: Sequence[str], hyp: Sequence[str], i: int, j: int
) -> list[Pair]:
    d, big = table
    out: list[Pair] = []
    # Walking back from the end, a gap is taken before a diagonal step whenever both are
    # optimal: matches land as early as possible, as for text that grows at its end.
    while i > 0 or j > 0:
        if i > 0 and d[i][j] == d[i - 1][j] + big:
            out.append(Pair("delete", i - 1, None))
            i -= 1
            continue
        if j > 0 and d[i][j] == d[i][j - 1] + big:
            out.append(Pair("insert", None, j - 1))
            j -= 1
            continue
        same = ref[i - 1] == hyp[j - 1]
        out.append(Pair("equal" if same else "substitute", i - 1, j - 1))
        i, j = i - 1, j - 1
    out.reverse()
    return out


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[Pair]:
    """Minimum-edit alignment of ``hyp`` against ``ref``, every index of both appearing once."""
    return _backtrace(_table(ref, hyp), ref, hyp, len(ref), len(hyp))


def align_prefix(ref: Sequence[str], hyp: Sequence[str]) -> list[Pair]:
    """Align ``hyp`` against the best-matching *prefix* of ``ref`` (the rest is not yet spoken).

    Only the pairs that involve a hypothesis word or a reference word inside the chosen prefix
    are returned; reference words after it are left out (neither matched nor deleted).
    """
    table = _table(ref, hyp)
    d, m = table[0], len(hyp)
    # The shortest prefix with the lowest cost: never claim words the partial has not reached.
    best_i = min(range(len(ref) + 1), key=lambda i: (d[i][m], i))
    return _backtrace(table, ref, hyp, best_i, m)


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """The number of substitutions, deletions and insertions that turn ``ref`` into ``hyp``."""
    return sum(p.op != "equal" for p in align(ref, hyp))
