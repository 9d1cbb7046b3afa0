"""Benchmark sets: choosing them by name, and the configuration a set runs with (pure).

A set is named after its manifest's folder. Some sets measure something only under a config
override, listed in :data:`SET_OVERRIDES` and shown in ``results.json`` (``set_overrides`` and
per file ``config_overrides``) and in ``report.md``:

- ``en_continuous`` (three sonnet readings and their 158 s join, one reader): its longest pause
  between two lines is 2.2 s (webrtcvad at the default aggressiveness; the pauses after the
  spoken numbers "One."/"Two."/"Three." and between the joined readings are the long ones, the
  line pauses are 0.5-1.0 s). ``vad.end_silence_s: 4.0`` (above every pause, below the config's
  5 s maximum) hides them from the VAD, so each file is one stretch of continuous speech and
  every final boundary inside it is the engine's own cut.

The continuous set also gets, when the ``en_librispeech`` set is read too, one clip per
LibriSpeech speaker with two or more files: those files (``SPEAKER-CHAPTER-UTTERANCE``, in name
order) joined end to end in memory (nothing is written), named ``librispeech-SPEAKER-joined``,
with the references joined by spaces (:func:`with_joined`). Their gaps are the files' own
lead-in and lead-out silences (well under 4 s), so the join is continuous speech too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..config import Config, with_overrides
from ..errors import ConfigError
from .manifest import Clip

CONTINUOUS_SET = "en_continuous"
LIBRISPEECH_SET = "en_librispeech"
_LIBRISPEECH_NAME = re.compile(r"^(\d+)-\d+-\d+")
SET_OVERRIDES: Mapping[str, Mapping[str, Any]] = {
    CONTINUOUS_SET: {"vad.end_silence_s": 4.0},
}


def overrides_for(set_name: str, enabled: bool = True) -> dict[str, Any]:
    """The config overrides set ``set_name`` runs with (none when ``enabled`` is false)."""
    return dict(SET_OVERRIDES.get(set_name, {})) if enabled else {}


def set_config(cfg: Config, set_name: str, enabled: bool = True) -> Config:
    """``cfg`` with the set's overrides applied (they win over the command line's)."""
    extra = overrides_for(set_name, enabled)
    return with_overrides(cfg, extra) if extra else cfg


def select_sets(clips: Sequence[Clip], names: Sequence[str]) -> list[Clip]:
    """The clips of the named sets, in their order; every name must match a set."""
    if not names:
        return list(clips)
    found = sorted({c.set for c in clips})
    for name in names:
        if name not in found:
            raise ConfigError(
                "--sets", f"no set named {name!r} among the manifests read "
                f"(sets found: {', '.join(found) or 'none'})")
    wanted = set(names)
    return [c for c in clips if c.set in wanted]


def with_joined(clips: Sequence[Clip]) -> list[Clip]:
    """``clips`` plus the joined same-speaker LibriSpeech clips of the continuous set."""
    by_speaker: dict[str, list[Clip]] = {}
    for c in clips:
        m = _LIBRISPEECH_NAME.match(c.path.name)
        if c.set == LIBRISPEECH_SET and not c.parts and m and not c.spontaneous:
            by_speaker.setdefault(m.group(1), []).append(c)
    out = list(clips)
    for speaker, group in sorted(by_speaker.items(), key=lambda kv: int(kv[0])):
        if len(group) < 2 or len({c.language for c in group}) != 1:
            continue
        group = sorted(group, key=lambda c: c.path.name)
        durations = [c.duration for c in group]
        out.append(replace(
            group[0], set=CONTINUOUS_SET, label=f"librispeech-{speaker}-joined",
            reference=" ".join(c.reference for c in group), parts=tuple(c.path for c in group),
            duration=None if None in durations else sum(d or 0.0 for d in durations), line=0))
    return out


def derived_twice(clips: Sequence[Clip]) -> set[str]:
    """Keys of joined clips whose parts are all in ``clips`` too (their words would count twice)."""
    singles = {c.path.resolve() for c in clips if not c.parts}
    return {c.key for c in clips if c.parts and all(p.resolve() in singles for p in c.parts)}
