"""Shared real-model helpers for tests: the tiny.en decoder is loaded once per test process."""

from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

from streamcap.asr.decoder import WhisperDecoder
from streamcap.asr.model import LoadedModel, load_model
from streamcap.config import Config, from_dict

REPO = Path(__file__).resolve().parents[2]
AUDIO = Path(os.environ.get("STREAMCAP_AUDIO", REPO.parent / "shared" / "audio"))


def timeout(seconds: float) -> float:
    """A timeout scaled by STREAMCAP_TIMEOUT_SCALE for slow machines."""
    return seconds * float(os.environ.get("STREAMCAP_TIMEOUT_SCALE", "1"))


@functools.lru_cache(maxsize=1)
def tiny() -> LoadedModel:
    return load_model(from_dict({}).asr)


def decoder(cfg: Config | None = None) -> WhisperDecoder:
    """A decoder over the shared tiny.en model with ``cfg.asr`` settings."""
    cfg = cfg or from_dict({})
    return WhisperDecoder(tiny(), cfg.asr)


def manifest(set_name: str) -> list[dict[str, str]]:
    with open(AUDIO / set_name / "manifest.tsv", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))
