"""Shared real-model helpers for tests: the tiny.en decoder is loaded once per test process;
whether the multilingual base model's part packages are installed."""

from __future__ import annotations

import functools
import importlib.util

from streamcap.asr import store
from streamcap.asr.decoder import WhisperDecoder
from streamcap.asr.model import LoadedModel, load_model
from streamcap.config import Config, from_dict

from .clips import AUDIO, REPO, manifest
from .timing import timeout

__all__ = ["AUDIO", "REPO", "decoder", "manifest", "missing_parts", "timeout", "tiny"]


@functools.lru_cache(maxsize=1)
def tiny() -> LoadedModel:
    return load_model(from_dict({}).asr)


def decoder(cfg: Config | None = None) -> WhisperDecoder:
    """A decoder over the shared tiny.en model with ``cfg.asr`` settings."""
    cfg = cfg or from_dict({})
    return WhisperDecoder(tiny(), cfg.asr)


def missing_parts(name: str = "base") -> list[str]:
    """The PyPI distributions of model ``name``'s parts that are not installed (empty: all are).

    Only absence counts: parts that are installed but damaged (wrong size or checksum) are not
    missing, so the install that uses them fails loudly instead of being skipped.
    """
    spec = store.SPECS[name]
    modules = {p.module: p.dist for p in spec.parts}
    modules.setdefault(spec.files_module, spec.files_module)
    return sorted(dist for module, dist in modules.items()
                  if importlib.util.find_spec(module) is None)
