"""Caption formatting: finals in, broadcast-style subtitle cues out (pure: no I/O, no clocks).

:class:`CaptionFormatter` turns each :class:`~streamcap.events.FinalCaption` into zero or more
:class:`Cue` objects the moment it arrives, so a file writer can append and fsync them live.
The rules it keeps:

* every line holds at most ``max_line_chars`` characters and a cue at most ``max_lines`` lines;
  a cue uses the fewest lines its text needs, and when it needs several they are balanced;
* a cue lasts between ``min_cue_s`` and ``max_cue_s``.  A final that is too long or too wordy
  is split on its word timestamps into several cues, preferring breaks after sentence
  punctuation, then after clause punctuation, then at the largest pause.  A short cue is
  extended into the following gap.  Inside one final it stops where the next cue of that final
  starts, so such a cue can stay shorter than ``min_cue_s`` when the next cue leaves no room.
  The last cue of a final is always extended to ``min_cue_s``, because the next final is not
  known yet and cues are written live.  When the next final then starts inside that extension,
  its first cue starts when the extension ends, so it appears up to ``min_cue_s`` late;
* cue numbering is continuous over the formatter's life (1, 2, 3, …); cue times are rounded to
  milliseconds, never overlap and never go backwards, even when finals come out of order;
* a word longer than a line is hard-wrapped at ``max_line_chars`` instead of dropped;
* text with no spaces between words (Chinese, Japanese) breaks between any two wide (CJK)
  characters and is measured in characters.  Closing punctuation (``。``, ``、``, ``,``) never
  starts a line, and opening brackets never end one.  Right-to-left text keeps its logical order
  untouched;
* a labelled final (``speaker`` or else ``source`` set, with several inputs) yields cues that
  carry the label in :attr:`Cue.speaker`; cues never hold text of two finals, so never of two
  speakers.  SRT shows the label as a prefix of the first line (``You: text``) and WebVTT as a
  voice span (``<v You>text</v>``).  The lines of a labelled cue are laid out in
  ``max_line_chars`` less the prefix (``"You: "``), so the prefixed first line keeps the limit;
  a label longer than half a line is shortened with ``…``.  Unlabelled finals are unchanged;
* a final with empty text yields no cue.  A final with text but no usable word timestamps
  yields cues spanning ``start..end`` (at most ``max_cue_s``, more than one cue only when the
  text does not fit the lines).

Rendering: :meth:`Cue.to_srt` uses the ``srt`` library (``srt.Subtitle.to_srt``).
:meth:`Cue.to_vtt` builds a ``webvtt.Caption`` and renders its single cue block with webvtt-py's
``WebVTTCueBlock.format_lines``.  webvtt-py has no public call for a single cue, and it does not
escape cue text, so ``&``, ``<`` and ``>`` are escaped here.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import srt
import webvtt
from webvtt.models import Timestamp
from webvtt.vtt import WebVTTCueBlock

from ..config import OutputConfig
from ..errors import ConfigError, StreamcapError
from ..events import FinalCaption, join_words
from .caption_units import Unit as _Unit
from .caption_units import clean as _clean
from .caption_units import ends_clause as _ends_clause
from .caption_units import ends_sentence as _ends_sentence
from .caption_units import joined as _joined
from .caption_units import units as _units

VTT_HEADER = "WEBVTT\n\n"
"""What a WebVTT file starts with; every cue block after it ends with a blank line."""

# In SRT, "-->" (or "- >") followed by a time on a later line can start a new cue for parsers.
_SRT_ARROW = re.compile(r"-[ -] *>")


@dataclass(frozen=True)
class Cue:
    """One subtitle cue: its number, stream-time bounds in seconds, lines and language."""

    index: int
    start: float
    end: float
    lines: tuple[str, ...]
    language: str = "en"
    speaker: str | None = None  # who said it (a display label), None for unlabelled captions

    @property
    def text(self) -> str:
        """The cue's lines joined with newlines."""
        return "\n".join(self.lines)

    @property
    def labelled_lines(self) -> tuple[str, ...]:
        """The lines with ``"LABEL: "`` before the first one (the lines when unlabelled)."""
        if self.speaker is None or not self.lines:
            return self.lines
        return (f"{self.speaker}: {self.lines[0]}", *self.lines[1:])

    def to_srt(self) -> str:
        """The cue as an SRT block (number, times, lines), ending with a blank line."""
        return str(self.to_subtitle().to_srt())

    def to_subtitle(self) -> srt.Subtitle:
        """The cue as an ``srt.Subtitle`` (labelled first line, ``-->`` defused)."""
        content = "\n".join(_SRT_ARROW.sub("→", line) for line in self.labelled_lines)
        return srt.Subtitle(
            index=self.index,
            start=datetime.timedelta(milliseconds=_ms(self.start)),
            end=datetime.timedelta(milliseconds=_ms(self.end)),
            content=content,
        )

    def to_vtt(self) -> str:
        """The cue as a WebVTT block (identifier, times, escaped lines) and a blank line."""
        block: list[str] = WebVTTCueBlock.format_lines(self.to_caption())
        return "\n".join(block[1:]) + "\n\n"

    def to_caption(self) -> webvtt.Caption:
        """The cue as a ``webvtt.Caption`` (escaped lines in a voice span when labelled)."""
        text = [_vtt_escape(line) for line in self.lines]
        if self.speaker is not None and text:
            text[0] = f"<v {_vtt_escape(self.speaker)}>{text[0]}"
            text[-1] = f"{text[-1]}</v>"
        return webvtt.Caption(
            start=str(Timestamp.from_seconds(_ms(self.start) / 1000)),
            end=str(Timestamp.from_seconds(_ms(self.end) / 1000)),
            text=text,
            identifier=str(self.index),
        )


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _vtt_escape(line: str) -> str:
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def final_label(final: FinalCaption) -> str | None:
    """Who said ``final``: its ``speaker``, else its ``source``, cleaned to one line (``None``
    when unlabelled or blank)."""
    raw = final.speaker if final.speaker is not None else final.source
    if raw is None:
        return None
    label = " ".join(_clean(raw).split())
    return label or None


def _short_label(label: str, max_line_chars: int) -> str:
    """``label`` shortened with ``…`` so that ``"LABEL: "`` takes at most half a line."""
    room = max(1, max_line_chars // 2 - 2)
    return label if len(label) <= room else label[: max(0, room - 1)] + "…"


def translation_final(final: FinalCaption) -> FinalCaption | None:
    """The English translation of ``final`` as a final of its own, or ``None`` when there is none.

    A translation has no word timestamps, so it spans the words of the original (or the final's
    ``start..end`` when it has no words).
    """
    if final.translation is None:
        return None
    start, end = final.start, final.end
    times = [t for w in final.words for t in (w.start, w.end)]
    if times and all(math.isfinite(t) for t in times):
        start, end = min(times), max(times)
    return FinalCaption(
        utterance_id=final.utterance_id,
        text=final.translation,
        words=(),
        start=start,
        end=end,
        language="en",
        language_probability=final.language_probability,
        source=final.source,
        speaker=final.speaker,
    )


def original_final(final: FinalCaption) -> FinalCaption:
    """``final`` without its translation (what goes to the files of its own language)."""
    if final.translation is None:
        return final
    return dataclasses.replace(final, translation=None)


# --- the formatter --------------------------------------------------------------------------

_CUE_COST = 1.0  # every extra cue costs this much: prefer fewer, fuller cues
_BREAK_COST_SENTENCE = 0.0
_BREAK_COST_CLAUSE = 0.8
_BREAK_COST_PLAIN = 2.0
_PAUSE_BONUS_PER_S = 1.0  # a pause of up to 1.5 s before the break lowers its cost
_PAUSE_BONUS_MAX_S = 1.5
_SHORT_CUE_COST = 2.0  # times the missing fraction of min_cue_s
_FILL_COST = 1.0  # times the squared fill of the cue: among equal breaks, balance the cues


class CaptionFormatter:
    """Turns finals into numbered subtitle cues that keep broadcast norms.

    Pure: ``feed()`` in, cues out; the only state is the next cue number and where each
    speaker's last cue ends. One formatter serves one output track (one language), for a whole
    session. One speaker's cues never overlap; two speakers talking at once get cues that do
    (each at its own time, as players show overlapping cues together), instead of the second
    speaker's words waiting for the first one's cue to end.
    """

    def __init__(
        self,
        max_line_chars: int = 42,
        max_lines: int = 2,
        min_cue_s: float = 1.0,
        max_cue_s: float = 7.0,
    ) -> None:
        if max_line_chars < 1:
            raise ConfigError("output.max_line_chars", f"expected at least 1, got {max_line_chars}")
        if max_lines < 1:
            raise ConfigError("output.max_lines", f"expected at least 1, got {max_lines}")
        if not (math.isfinite(max_cue_s) and max_cue_s > 0):
            raise ConfigError("output.max_cue_s", f"expected a positive number, got {max_cue_s}")
        if not (math.isfinite(min_cue_s) and 0 <= min_cue_s <= max_cue_s):
            raise ConfigError(
                "output.min_cue_s", f"expected 0..output.max_cue_s ({max_cue_s}), got {min_cue_s}"
            )
        self.max_line_chars = max_line_chars
        self.max_lines = max_lines
        self.min_cue_s = min_cue_s
        self.max_cue_s = max_cue_s
        self._next_index = 1
        self._last_ends: dict[str | None, float] = {}  # by speaker label (None: unlabelled)
        self._width = max_line_chars  # the line width of the final being formatted

    @classmethod
    def from_config(cls, out: OutputConfig) -> CaptionFormatter:
        """A formatter with the line and duration rules of ``out``."""
        return cls(out.max_line_chars, out.max_lines, out.min_cue_s, out.max_cue_s)

    @property
    def cues_emitted(self) -> int:
        """How many cues this formatter has produced so far."""
        return self._next_index - 1

    @property
    def last_end(self) -> float:
        """Where the last cue of any speaker ends (0 before the first); the next cue of the same
        speaker starts no earlier."""
        return max(self._last_ends.values(), default=0.0)

    def feed(self, final: FinalCaption) -> list[Cue]:
        """The cues for one final (possibly none), numbered on from the previous ones."""
        if not final.text.strip():
            return []
        label = final_label(final)
        self._width = self.max_line_chars
        if label is not None:
            label = _short_label(label, self.max_line_chars)
            self._width = max(1, self.max_line_chars - len(label) - 2)
        spans, timed = self._spans(final)
        units = _units(spans, self._width)
        if not units:
            return []
        segments = self._segment(units, timed)
        return self._timed_cues(units, segments, final.language, label)

    # -- steps --

    def _spans(self, final: FinalCaption) -> tuple[list[tuple[str, float, float]], bool]:
        """Timed text spans: the words if their times are usable, else the text over start..end."""
        words = [w for w in final.words if w.text.strip()]
        if words and all(math.isfinite(w.start) and math.isfinite(w.end) for w in words):
            spans: list[tuple[str, float, float]] = []
            last_start = 0.0
            for w in words:
                s = max(float(w.start), last_start, 0.0)
                e = max(float(w.end), s)
                spans.append((w.text, s, e))
                last_start = s
            return spans, True
        if not (math.isfinite(final.start) and math.isfinite(final.end)):
            raise StreamcapError(
                f"final {final.utterance_id}: start/end must be finite numbers of seconds "
                f"when word times are unusable, got {final.start!r}..{final.end!r}"
            )
        start = max(float(final.start), 0.0)
        end = max(float(final.end), start)
        text = join_words(words) if words else final.text
        return [(text, start, end)], False

    def _layout_fits_from(self, units: Sequence[_Unit], i: int) -> list[int]:
        """For the cue ending before unit ``i``: the fewest lines each start ``j`` needs.

        Right-to-left greedy filling gives the minimum line count, one unit at a time.
        """
        width = self._width
        lines_needed: list[int] = []
        lines, cur = 0, 0
        for j in range(i - 1, -1, -1):
            u = units[j]
            if lines == 0:
                lines, cur = 1, len(u.text)
            else:
                joint = 1 if units[j + 1].space else 0
                if cur + joint + len(u.text) <= width:
                    cur += joint + len(u.text)
                else:
                    lines, cur = lines + 1, len(u.text)
            lines_needed.append(lines)
            if lines > self.max_lines:
                break
        return lines_needed

    def _break_cost(self, units: Sequence[_Unit], i: int) -> float:
        """The cost of ending a cue after unit ``i - 1`` (0 at the very end)."""
        if i >= len(units):
            return 0.0
        prev = units[i - 1].text
        if _ends_sentence(prev):
            cost = _BREAK_COST_SENTENCE
        elif _ends_clause(prev):
            cost = _BREAK_COST_CLAUSE
        else:
            cost = _BREAK_COST_PLAIN
        gap = max(0.0, units[i].start - units[i - 1].end)
        return cost - _PAUSE_BONUS_PER_S * min(gap, _PAUSE_BONUS_MAX_S)

    def _segment(self, units: Sequence[_Unit], timed: bool) -> list[tuple[int, int]]:
        """Split units into cues ``[(j, i), ...]`` of least total cost (dynamic programming)."""
        n = len(units)
        capacity = float(self.max_lines * self._width)
        ends = [0] * (n + 1)  # ends[i]: characters in units[:i], spaces included
        for k, u in enumerate(units):
            ends[k + 1] = ends[k] + len(u.text) + (1 if k and u.space else 0)
        best = [math.inf] * (n + 1)
        back = [0] * (n + 1)
        best[0] = 0.0
        for i in range(1, n + 1):
            needed = self._layout_fits_from(units, i)
            brk = self._break_cost(units, i)
            for k, lines in enumerate(needed):
                j = i - 1 - k
                if k > 0:
                    if lines > self.max_lines:
                        break
                    if timed and units[i - 1].end - units[j].start > self.max_cue_s:
                        break
                fill = (ends[i] - ends[j]) / capacity
                cost = best[j] + _CUE_COST + brk + _FILL_COST * fill * fill
                if timed:
                    dur = units[i - 1].end - units[j].start
                    if dur < self.min_cue_s and self.min_cue_s > 0:
                        cost += _SHORT_CUE_COST * (self.min_cue_s - dur) / self.min_cue_s
                if cost < best[i]:
                    best[i] = cost
                    back[i] = j
        segments: list[tuple[int, int]] = []
        i = n
        while i > 0:
            segments.append((back[i], i))
            i = back[i]
        segments.reverse()
        return segments

    def _lines(self, units: Sequence[_Unit]) -> tuple[str, ...]:
        """Lay the units of one cue on the fewest lines, balanced, preferring punctuation breaks."""
        width = self._width
        one = _joined(units)
        if len(one) <= width:
            return (one,)
        m = len(units)
        # dp[k][l]: least cost to lay units[k:] on exactly l lines (sum of squared line lengths,
        # less a bonus for a line that ends at punctuation)
        inf = math.inf
        target = min(self._layout_fits_from(units, m)[-1], self.max_lines)
        dp: list[list[float]] = [[inf] * (target + 1) for _ in range(m + 1)]
        nxt: list[list[int]] = [[0] * (target + 1) for _ in range(m + 1)]
        dp[m][0] = 0.0
        for k in range(m - 1, -1, -1):
            length = 0
            for e in range(k + 1, m + 1):
                u = units[e - 1]
                if e - 1 > k and u.space:
                    length += 1
                length += len(u.text)
                if length > width and e > k + 1:
                    break
                bonus = 0.0
                if e < m and (_ends_sentence(u.text) or _ends_clause(u.text)):
                    bonus = (width * width) / 8
                for lines in range(1, target + 1):
                    rest = dp[e][lines - 1]
                    if rest == inf:
                        continue
                    cost = length * length - bonus + rest
                    if cost < dp[k][lines]:
                        dp[k][lines] = cost
                        nxt[k][lines] = e
        out: list[str] = []
        k, lines = 0, target
        if dp[0][target] == inf:  # cannot happen for a segment the splitter accepted
            return (one,)
        while k < m:
            e = nxt[k][lines]
            out.append(_joined(units[k:e]))
            k, lines = e, lines - 1
        return tuple(out)

    def _timed_cues(
        self,
        units: Sequence[_Unit],
        segments: Sequence[tuple[int, int]],
        language: str,
        speaker: str | None = None,
    ) -> list[Cue]:
        cues: list[Cue] = []
        for n, (j, i) in enumerate(segments):
            nat_start, nat_end = units[j].start, units[i - 1].end
            start = round(max(nat_start, self._last_ends.get(speaker, 0.0)), 3)
            end = max(nat_end, start)
            if end - start < self.min_cue_s:
                room = units[segments[n + 1][0]].start if n + 1 < len(segments) else math.inf
                end = max(end, min(start + self.min_cue_s, room))
                if end - start < 0.001:  # no room at all: show it anyway, the next one moves
                    end = start + self.min_cue_s
            end = min(end, start + self.max_cue_s)
            end = round(end, 3)
            if end <= start:
                end = round(start + 0.001, 3)
            cues.append(
                Cue(
                    index=self._next_index,
                    start=start,
                    end=end,
                    lines=self._lines(units[j:i]),
                    language=language,
                    speaker=speaker,
                )
            )
            self._next_index += 1
            self._last_ends[speaker] = end
        return cues
