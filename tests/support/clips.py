"""Where the real speech for tests lives: ``../shared/audio`` from the repository root, or
``STREAMCAP_AUDIO``."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AUDIO = Path(os.environ.get("STREAMCAP_AUDIO", REPO.parent / "shared" / "audio"))


def need(path: Path) -> Path:
    """``path`` if the clip is there; otherwise skip (a failure under ``CI=true``)."""
    if not path.is_file():
        pytest.skip(f"speech clip missing: {path} (set STREAMCAP_AUDIO)")
    return path


def manifest(set_name: str) -> list[dict[str, str]]:
    """The rows of ``AUDIO/set_name/manifest.tsv`` (file, language, reference_transcript, ...)."""
    with open(AUDIO / set_name / "manifest.tsv", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))
