"""Reading the ``manifest.tsv`` files that describe a benchmark set (pure apart from file reads).

A manifest is UTF-8, tab-separated, with a header row. Required columns: ``file`` (relative to
the manifest's folder, or absolute), ``language`` and ``reference_transcript``; optional:
``duration_seconds`` and ``notes``. Rows whose notes mention spontaneous speech, disfluencies or
fillers are scored with fillers removed. The set is named after the manifest's folder.

Every problem raises :class:`~streamcap.errors.ConfigError` naming ``<manifest>:<line>`` and the
culprit, before any audio is decoded.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

MANIFEST = "manifest.tsv"
REQUIRED = ("file", "language", "reference_transcript")
_SPONTANEOUS = ("spontaneous", "disfluenc", "filler")


@dataclass(frozen=True)
class Clip:
    """One benchmark file and what it should say."""

    set: str
    path: Path
    language: str
    reference: str
    duration: float | None = None
    spontaneous: bool = False
    line: int = 0
    # A clip made in memory by joining files end to end (``path`` is then the first of them).
    parts: tuple[Path, ...] = ()
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.path.name

    @property
    def key(self) -> str:
        return f"{self.set}/{self.name}"


def read_manifest(path: str | Path) -> list[Clip]:
    """Parse one manifest; check that every listed file exists and is not empty."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(p), "manifest is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(str(p), f"cannot read manifest: {exc.strerror}") from None
    rows = list(csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise ConfigError(str(p), "manifest is empty (expected a header row)")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ConfigError(f"{p}:1", f"missing column(s) {', '.join(missing)} in the header")
    col = {name: i for i, name in enumerate(header)}
    set_name = p.parent.name or "default"
    clips: list[Clip] = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{p}:{lineno}"
        if len(row) < len(header):
            raise ConfigError(
                where, f"expected {len(header)} tab-separated columns, got {len(row)}"
            )

        def get(name: str, row: Sequence[str] = row) -> str:
            return row[col[name]].strip() if name in col else ""

        fname, language, reference = get("file"), get("language"), get("reference_transcript")
        if not fname:
            raise ConfigError(where, "empty 'file' column")
        audio = Path(fname) if os.path.isabs(fname) else p.parent / fname
        if not audio.is_file():
            raise ConfigError(where, f"audio file {str(audio)!r} not found")
        if audio.stat().st_size == 0:
            raise ConfigError(where, f"audio file {str(audio)!r} is empty")
        if not (2 <= len(language) <= 5 and language.replace("-", "").isalpha()):
            raise ConfigError(where, f"'language' must be a code such as 'en', got {language!r}")
        if not reference:
            raise ConfigError(where, f"empty 'reference_transcript' for {fname!r}")
        duration: float | None = None
        raw = get("duration_seconds")
        if raw:
            try:
                duration = float(raw)
            except ValueError:
                raise ConfigError(where, f"'duration_seconds' is not a number: {raw!r}") from None
            if not (0 < duration < 24 * 3600):
                raise ConfigError(where, f"'duration_seconds' out of range: {raw!r}")
        notes = get("notes").lower()
        clips.append(
            Clip(
                set=set_name,
                path=audio,
                language=language.lower(),
                reference=reference,
                duration=duration,
                spontaneous=any(k in notes for k in _SPONTANEOUS),
                line=lineno,
            )
        )
    if not clips:
        raise ConfigError(str(p), "manifest lists no files")
    return clips


def find_manifests(inputs: Sequence[str | Path]) -> list[Path]:
    """Manifest paths from files and folders (a folder: its own manifest or its sets')."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            if (p / MANIFEST).is_file():
                found.append(p / MANIFEST)
            else:
                subs = sorted(p.glob(f"*/{MANIFEST}"))
                if not subs:
                    raise ConfigError(str(p), f"no {MANIFEST} in this folder or its sub-folders")
                found.extend(subs)
        else:
            raise ConfigError(str(p), "no such manifest file or folder")
    unique: list[Path] = []
    for m in found:
        if m.resolve() not in {u.resolve() for u in unique}:
            unique.append(m)
    return unique


def default_audio_root() -> Path:
    """``$STREAMCAP_AUDIO``, else ``../shared/audio`` from the working directory."""
    env = os.environ.get("STREAMCAP_AUDIO")
    return Path(env) if env else Path.cwd().parent / "shared" / "audio"


def load_clips(inputs: Sequence[str | Path]) -> list[Clip]:
    """Every clip of every manifest named (or found under the default root when none are)."""
    if not inputs:
        root = default_audio_root()
        if not root.is_dir():
            raise ConfigError(
                "MANIFEST_OR_DIR",
                f"none given and the default {str(root)!r} does not exist "
                "(set STREAMCAP_AUDIO or name a manifest.tsv)",
            )
        inputs = [root]
    clips: list[Clip] = []
    for m in find_manifests(inputs):
        clips.extend(read_manifest(m))
    return clips
