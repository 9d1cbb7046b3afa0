"""Reload planning for SIGHUP (pure: configs in, a plan out; no I/O, no clocks, no threads).

:func:`plan_reload` splits the differences between the running and the newly read configuration
into keys a running daemon applies at once (:data:`LIVE_KEYS` and the :data:`LIVE_SECTIONS`) and
keys that need a restart. :func:`retuned` computes the engine configuration that takes the live
recognition thresholds; the daemon hands it to ``CaptionEngine.retune``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from . import config as config_mod
from .config import Config

#: Keys a SIGHUP applies at once (besides every ``output.*`` and ``obs.*`` key).
LIVE_KEYS: frozenset[str] = frozenset({
    "vad.aggressiveness",
    "vad.start_frames",
    "vad.end_silence_s",
    "vad.max_utterance_s",
    "vad.min_speech_s",
    "asr.no_speech_threshold",
    "asr.log_prob_threshold",
    "asr.compression_ratio_threshold",
    "asr.agreement",
    "asr.partial_interval_s",
    "asr.commit_margin_s",
    "asr.beam_size",
    "asr.hotwords",
    "asr.initial_prompt",
    "server.status_interval_s",
    "daemon.shutdown_timeout_s",
    "daemon.log_level",
})
LIVE_SECTIONS: tuple[str, ...] = ("output", "obs")

VAD_LIVE: tuple[str, ...] = tuple(k.split(".", 1)[1] for k in sorted(LIVE_KEYS)
                                  if k.startswith("vad."))
ASR_LIVE: tuple[str, ...] = tuple(k.split(".", 1)[1] for k in sorted(LIVE_KEYS)
                                  if k.startswith("asr."))


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def is_live_key(key: str) -> bool:
    """Whether a SIGHUP can apply the dotted config ``key`` without a restart."""
    return key in LIVE_KEYS or key.split(".", 1)[0] in LIVE_SECTIONS


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload changes: the config to run with now, and what it leaves for a restart."""

    effective: Config
    applied: tuple[str, ...]
    """Dotted keys whose new values take effect now."""
    restart_needed: tuple[str, ...]
    """Dotted keys that changed but need a restart; they keep their running values."""

    @property
    def output_changed(self) -> bool:
        return any(k.startswith("output.") for k in self.applied)

    @property
    def obs_changed(self) -> bool:
        """OBS settings, or the line width the OBS sink wraps captions at, changed."""
        return any(k.startswith("obs.") or k == "output.max_line_chars" for k in self.applied)

    @property
    def thresholds_changed(self) -> bool:
        return any(k.startswith(("vad.", "asr.")) for k in self.applied)


def plan_reload(running: Config, new: Config) -> ReloadPlan:
    """Split the differences between ``running`` and ``new`` into live and restart-needing ones.

    The effective config takes the live keys from ``new`` and every other key from ``running``;
    it is validated again (raises :class:`~streamcap.errors.ConfigError`), since a live key may
    relate to one that stays, e.g. ``vad.max_utterance_s`` to ``vad.buffer_s``.
    """
    old_flat = _flatten(config_mod.to_dict(running))
    new_flat = _flatten(config_mod.to_dict(new))
    changed = sorted(k for k in new_flat if new_flat[k] != old_flat.get(k))
    applied = tuple(k for k in changed if is_live_key(k))
    restart = tuple(k for k in changed if not is_live_key(k))
    effective = (
        config_mod.with_overrides(running, {k: new_flat[k] for k in applied}) if applied
        else running
    )
    return ReloadPlan(effective, applied, restart)


def retuned(engine_cfg: Config, cfg: Config) -> Config:
    """``engine_cfg`` with the live recognition thresholds (:data:`VAD_LIVE`, :data:`ASR_LIVE`)
    taken from ``cfg``; every other key stays as the engine runs it."""
    vad_live = {k: getattr(cfg.vad, k) for k in VAD_LIVE}
    asr_live = {k: getattr(cfg.asr, k) for k in ASR_LIVE}
    return dataclasses.replace(
        engine_cfg,
        vad=dataclasses.replace(engine_cfg.vad, **vad_live),
        asr=dataclasses.replace(engine_cfg.asr, **asr_live),
    )
