"""The command-line options every configuration-loading subcommand shares, and how they build
a :class:`~streamcap.config.Config`.

Subcommand modules (``cli.py``, ``bench/cli.py``) import this module; it imports no subcommand,
so no module needs to import ``cli.py`` back.
"""

from __future__ import annotations

import argparse
from typing import Any

from . import config as config_mod
from .config import Config


def add_config_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that loads a configuration."""
    p.add_argument("--config", metavar="FILE", help="configuration file (YAML); default: embedded")
    p.add_argument("--model", help="asr.model: tiny.en, base, small, a CTranslate2 dir, a hub name")
    p.add_argument("--language", help="asr.language: auto or a code such as en")
    p.add_argument("--task", choices=["transcribe", "translate"], help="asr.task")
    p.add_argument("--asr-device", dest="asr_device", help="asr.device: auto, cpu or cuda")
    p.add_argument("--compute-type", help="asr.compute_type, e.g. int8, float16")
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override any config key, e.g. --set vad.aggressiveness=3 (repeatable)",
    )


def build_config(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    """Load the config file, then apply command-line overrides (which win).

    Pure validation only (no model files are read): the model checks run where the model is
    resolved (:func:`streamcap.asr.model.check_model`).
    """
    cfg = config_mod.load(getattr(args, "config", None))
    overrides: dict[str, Any] = {}
    for item in getattr(args, "set", []) or []:
        key, value = config_mod.parse_override(item)
        overrides[key] = value
    for attr, key in (
        ("model", "asr.model"),
        ("language", "asr.language"),
        ("task", "asr.task"),
        ("asr_device", "asr.device"),
        ("compute_type", "asr.compute_type"),
    ):
        v = getattr(args, attr, None)
        if v is not None:
            overrides[key] = v
    overrides.update(extra or {})
    return config_mod.with_overrides(cfg, overrides) if overrides else cfg
