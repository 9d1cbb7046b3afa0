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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..config import Config, with_overrides
from ..errors import ConfigError
from .manifest import Clip

CONTINUOUS_SET = "en_continuous"
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
