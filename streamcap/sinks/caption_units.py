"""Caption text cut into units that a line or a cue may break before (pure).

Part of :mod:`.captions` (see its docstring for the rules): text of any script is cleaned,
split into units with stream-time bounds (words, or single CJK characters, with closing
punctuation glued to what precedes it), hard-wrapped at the line width, and judged for
sentence and clause ends.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

_SENTENCE_END = frozenset(".?!…。！？‼⁇⁈⁉؟۔")
_CLAUSE_END = frozenset(",;:،؛、，；：—–")
_TRAILING_CLOSERS = "\"')]}»”’」』）】〉》"


@dataclass(frozen=True)
class Unit:
    """The smallest piece a line or cue may break before, with its stream-time bounds."""

    text: str
    start: float
    end: float
    space: bool  # a space separates it from the unit before it on the same line


def clean(text: str) -> str:
    """Valid UTF-8, whitespace (newlines included) turned into spaces, control characters gone."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    out = []
    for ch in text:
        if ch.isspace():
            out.append(" ")
        elif unicodedata.category(ch) != "Cc":
            out.append(ch)
    return "".join(out)


def _is_wide(ch: str) -> bool:
    """A CJK character that lines may break around (Hangul excluded: Korean uses spaces)."""
    o = ord(ch)
    if 0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
        return False
    return unicodedata.east_asian_width(ch) in ("W", "F")


def _is_closing(ch: str) -> bool:
    return unicodedata.category(ch) in ("Pe", "Pf", "Po")


def _is_opening(ch: str) -> bool:
    return unicodedata.category(ch) in ("Ps", "Pi")


def _split_piece(piece: str) -> list[str]:
    """Split one space-free piece so that every wide character stands alone.

    Closing punctuation sticks to what precedes it and opening brackets to what follows.
    """
    subs: list[str] = []
    buf = ""
    opening = ""
    for ch in piece:
        if not _is_wide(ch):
            if not buf:
                buf, opening = opening, ""
            buf += ch
        elif _is_closing(ch):
            if buf:
                buf += ch
            elif subs:
                subs[-1] += ch
            else:
                opening += ch
        elif _is_opening(ch):
            if buf:
                subs.append(buf)
                buf = ""
            opening += ch
        else:
            if buf:
                subs.append(buf)
                buf = ""
            subs.append(opening + ch)
            opening = ""
    if buf or opening:
        subs.append(buf + opening if buf else opening)
    return subs


def units(spans: Sequence[tuple[str, float, float]], width: int) -> list[Unit]:
    """Break timed text spans (words) into units; times are spread over characters."""
    space_mode = any(clean(t)[:1] == " " for t, _, _ in spans[1:])
    raw: list[Unit] = []
    for text, start, end in spans:
        cleaned = clean(text)
        pieces = [p for p in cleaned.split(" ") if p]
        if not pieces:
            continue
        parts: list[tuple[str, bool]] = []
        for k, piece in enumerate(pieces):
            for m, sub in enumerate(_split_piece(piece)):
                if m > 0:
                    parts.append((sub, False))
                elif k > 0:
                    parts.append((sub, True))
                elif space_mode:
                    parts.append((sub, cleaned[:1] == " "))
                else:  # words carry no spaces: infer them, except around CJK characters
                    seam_wide = bool(raw) and (_is_wide(raw[-1].text[-1]) or _is_wide(sub[0]))
                    parts.append((sub, not seam_wide and not _is_closing(sub[0])))
        total = sum(len(p) for p, _ in parts)
        offset = 0
        for sub, space in parts:
            s = start + (end - start) * offset / total
            offset += len(sub)
            e = start + (end - start) * offset / total
            raw.append(Unit(sub, s, e, space))
    # Glue pieces that may not be broken apart: no space between them and no wide character
    # at the seam ("10" ",000"), or a piece of closing punctuation alone ("。").
    merged: list[Unit] = []
    for u in raw:
        if merged and not u.space:
            prev = merged[-1]
            seam_wide = _is_wide(prev.text[-1]) or _is_wide(u.text[0])
            if not seam_wide or all(_is_closing(c) for c in u.text):
                merged[-1] = Unit(prev.text + u.text, prev.start, max(prev.end, u.end), prev.space)
                continue
        merged.append(u)
    # Hard-wrap anything longer than a line.
    out: list[Unit] = []
    for u in merged:
        if len(u.text) <= width:
            out.append(u)
            continue
        n = len(u.text)
        for k in range(0, n, width):
            chunk = u.text[k : k + width]
            s = u.start + (u.end - u.start) * k / n
            e = u.start + (u.end - u.start) * min(n, k + width) / n
            out.append(Unit(chunk, s, e, u.space if k == 0 else False))
    return out


def ends_sentence(text: str) -> bool:
    t = text.rstrip(_TRAILING_CLOSERS)
    return bool(t) and t[-1] in _SENTENCE_END


def ends_clause(text: str) -> bool:
    t = text.rstrip(_TRAILING_CLOSERS)
    return bool(t) and t[-1] in _CLAUSE_END


def joined(pieces: Sequence[Unit]) -> str:
    parts: list[str] = []
    for k, u in enumerate(pieces):
        if k and u.space:
            parts.append(" ")
        parts.append(u.text)
    return "".join(parts)


