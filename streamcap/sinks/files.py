"""Caption files written live and crash-safe: SRT, WebVTT and JSON Lines.

Layers, from the bottom up:

* :class:`SubtitleFileWriter` appends cues to one SRT or WebVTT file, and :class:`JsonlWriter`
  appends one ``event.to_json()`` line per event to one JSON Lines file.  Both write straight
  to the file descriptor (no user-space buffer), so every line reaches the kernel at once and
  survives a crash of the process.  A subtitle file is ``fsync``-ed after its header and after
  every cue, a JSON Lines file after every final (and on close).  A killed process therefore
  loses at most the cue in flight, and the file is a valid SRT/WebVTT file at every moment.  If
  a write fails half-way (disk full), the file is cut back to its last complete cue before the
  error is raised, so what was written before is never lost or spoiled.
* :class:`CaptionFiles` ties explicit paths (any of them ``None``) to one
  :class:`~streamcap.sinks.captions.CaptionFormatter`.  This is what ``streamcap transcribe -o
  out.srt --vtt out.vtt --jsonl out.jsonl`` needs.
* :class:`SessionFiles` names the files of a live session after its start time and id, rotates
  them, and keeps one file per language on request.

Every error is a :class:`~streamcap.errors.StreamcapError` whose message names the file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Literal

from ..config import OutputConfig
from ..errors import StreamcapError
from ..events import Event, FinalCaption, PartialCaption, Session, VadEvent
from .captions import VTT_HEADER, CaptionFormatter, Cue, original_final, translation_final

__all__ = ["CaptionFiles", "JsonlWriter", "SessionFiles", "SubtitleFileWriter"]


def _describe(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def _fsync_dir(directory: Path) -> None:
    """Make a newly created directory entry durable (best effort: not every filesystem can)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _AppendFile:
    """A file opened for writing, appended to by whole records, cut back if a record fails."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self._what = what
        if self.path.is_dir():
            raise StreamcapError(f"cannot write {what} to {str(self.path)!r}: it is a directory")
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StreamcapError(
                f"cannot write {what} to {str(self.path)!r}: cannot create directory "
                f"{str(parent)!r}: {_describe(exc)}"
            ) from None
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd: int | None = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise StreamcapError(
                f"cannot write {what} to {str(self.path)!r}: {_describe(exc)}"
            ) from None
        self._good = 0  # bytes known to be complete records
        _fsync_dir(parent)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def append(self, text: str, sync: bool) -> None:
        """Write one whole record; on failure cut the file back to the last whole record."""
        if self._fd is None:
            raise StreamcapError(f"cannot write to {str(self.path)!r}: the file is closed")
        data = text.encode("utf-8", "replace")
        fd = self._fd
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if sync:
                os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, self._good)
                os.lseek(fd, self._good, os.SEEK_SET)
                os.fsync(fd)
            except OSError:
                pass
            raise StreamcapError(
                f"cannot write {self._what} to {str(self.path)!r}: {_describe(exc)}"
            ) from None
        self._good += len(data)

    def close(self) -> None:
        """Flush to disk and close (again is a no-op)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            raise StreamcapError(
                f"cannot finish {self._what} file {str(self.path)!r}: {_describe(exc)}"
            ) from None
        finally:
            os.close(fd)


class SubtitleFileWriter:
    """Appends cues to one SRT or WebVTT file, each written and fsync-ed as it comes.

    Cues are numbered 1, 2, 3, … in this file whatever number the formatter gave them, so a
    rotated or per-language file starts at 1. The WebVTT header is written and fsync-ed at open.
    """

    def __init__(self, path: Path, kind: Literal["srt", "vtt"]) -> None:
        if kind not in ("srt", "vtt"):
            raise StreamcapError(f"unknown subtitle format {kind!r} for {str(path)!r}")
        self.kind = kind
        self._file = _AppendFile(path, "SRT captions" if kind == "srt" else "WebVTT captions")
        self.path = self._file.path
        self.cues_written = 0
        if kind == "vtt":
            self._file.append(VTT_HEADER, sync=True)

    def write_cue(self, cue: Cue) -> Cue:
        """Append ``cue`` under this file's next number and fsync; return the cue as written."""
        numbered = dataclasses.replace(cue, index=self.cues_written + 1)
        block = numbered.to_srt() if self.kind == "srt" else numbered.to_vtt()
        self._file.append(block, sync=True)
        self.cues_written += 1
        return numbered

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()


class JsonlWriter:
    """Appends one ``event.to_json()`` line per event; fsync-ed after every final and at close."""

    def __init__(self, path: Path) -> None:
        self._file = _AppendFile(path, "JSON Lines events")
        self.path = self._file.path
        self.lines_written = 0

    def write(self, event: Event) -> None:
        """Append the event as one line (the kernel has it at once; disk after a final)."""
        self._file.append(event.to_json() + "\n", sync=isinstance(event, FinalCaption))
        self.lines_written += 1

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()


def _first_error(errors: list[StreamcapError]) -> None:
    if errors:
        raise errors[0]


class CaptionFiles:
    """Captions to explicit paths: SRT and/or WebVTT cues from finals, and every event as JSONL.

    ``write(event)`` formats a final into cues with ``formatter`` and appends them to each
    subtitle file. Every event, finals included, goes to the JSON Lines file. When a final
    carries an English ``translation``, the subtitle files get the translation (the text the
    ``translate`` task asked for) unless ``prefer_translation`` is false. A failure in one
    file does not stop the others: all are tried, then the first error is raised.
    """

    def __init__(
        self,
        srt: Path | None = None,
        vtt: Path | None = None,
        jsonl: Path | None = None,
        formatter: CaptionFormatter | None = None,
        *,
        prefer_translation: bool = True,
    ) -> None:
        given = [Path(p) for p in (srt, vtt, jsonl) if p is not None]
        seen: set[Path] = set()
        for p in given:
            key = Path(os.path.abspath(p))
            if key in seen:
                raise StreamcapError(f"the same file is given for two outputs: {str(p)!r}")
            seen.add(key)
        self.formatter = formatter if formatter is not None else CaptionFormatter()
        self.prefer_translation = prefer_translation
        self._subs: list[SubtitleFileWriter] = []
        self._jsonl: JsonlWriter | None = None
        self._closed = False
        try:
            if srt is not None:
                self._subs.append(SubtitleFileWriter(Path(srt), "srt"))
            if vtt is not None:
                self._subs.append(SubtitleFileWriter(Path(vtt), "vtt"))
            if jsonl is not None:
                self._jsonl = JsonlWriter(Path(jsonl))
        except StreamcapError:
            self._close_all()
            raise

    @property
    def paths(self) -> list[Path]:
        """The files this object writes, SRT first, then WebVTT, then JSON Lines."""
        out = [s.path for s in self._subs]
        if self._jsonl is not None:
            out.append(self._jsonl.path)
        return out

    def write(self, event: Event) -> list[Cue]:
        """Record ``event``; return the cues a final produced (numbered as the formatter did)."""
        if self._closed:
            raise StreamcapError("cannot write captions: the caption files are closed")
        errors: list[StreamcapError] = []
        if self._jsonl is not None:
            try:
                self._jsonl.write(event)
            except StreamcapError as exc:
                errors.append(exc)
        cues: list[Cue] = []
        if isinstance(event, FinalCaption):
            view = event
            if self.prefer_translation:
                view = translation_final(event) or event
            try:
                cues = self.formatter.feed(view)
            except StreamcapError as exc:
                errors.append(exc)
            self._write_cues(cues, errors)
        _first_error(errors)
        return cues

    def _write_cues(self, cues: list[Cue], errors: list[StreamcapError]) -> None:
        for sub in self._subs:
            for cue in cues:
                try:
                    sub.write_cue(cue)
                except StreamcapError as exc:
                    errors.append(exc)

    def _close_all(self) -> list[StreamcapError]:
        errors: list[StreamcapError] = []
        files: list[SubtitleFileWriter | JsonlWriter] = list(self._subs)
        if self._jsonl is not None:
            files.append(self._jsonl)
        for f in files:
            try:
                f.close()
            except StreamcapError as exc:
                errors.append(exc)
        return errors

    def close(self) -> None:
        """Flush and close every file (again is a no-op)."""
        if self._closed:
            return
        self._closed = True
        _first_error(self._close_all())

    def __enter__(self) -> CaptionFiles:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _safe_name(text: str, fallback: str, limit: int) -> str:
    cleaned = _SAFE.sub("", text)[:limit]
    return cleaned or fallback


def _event_time(event: Event) -> float | None:
    if isinstance(event, (FinalCaption, PartialCaption)):
        return event.start
    if isinstance(event, VadEvent):
        return event.time
    return None


class SessionFiles:
    """The caption files of one live session, named ``<YYYYmmdd-HHMMSS>-<session id>``.

    Files go to ``out.dir``, resolved against ``base_dir`` when it is relative (default: the
    current directory). The time in the name is ``started_at``, by default the session epoch in
    local time. Which files are written follows ``out.srt``, ``out.vtt`` and ``out.jsonl``.

    Rotation: when ``out.rotate_minutes > 0`` and an event's stream time (a caption's start, a
    VAD event's time) passes the end of the current rotation period, every file is closed and a
    new set is opened with the suffix ``-part2``, ``-part3``, … (numbered in the order opened,
    so a silent period with no events skips no number). Cue numbering restarts at 1 in each new
    SRT/WebVTT file, but cue times stay in session stream time (seconds since the session
    started, not since the part started). A cue then keeps the time at which it was spoken,
    and the parts can be joined or searched without arithmetic. A player that opens a part on
    its own sees the first cue late.

    Per language (``out.per_language``): the subtitle files become
    ``<name>.<lang>.srt`` / ``.vtt``, one pair per ``FinalCaption.language``, opened at that
    language's first final. A final with a ``translation`` also sends the English text to the
    ``.en`` files, and its original text to its own language's files. There is no combined
    subtitle file in this mode; the single JSON Lines file holds every event. Without
    ``per_language``, a final's English translation (when set) is what the subtitle files get.

    Each track (language) keeps one formatter for the whole session, so cue times never
    overlap across rotations. Call from one thread.
    """

    def __init__(
        self,
        out: OutputConfig,
        session: Session,
        base_dir: Path | None = None,
        started_at: datetime | None = None,
    ) -> None:
        self.out = out
        self.session = session
        base = Path(base_dir) if base_dir is not None else Path()
        self.directory = base / out.dir
        if self.directory.exists() and not self.directory.is_dir():
            raise StreamcapError(
                f"cannot write captions into {str(self.directory)!r}: it is not a directory"
            )
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StreamcapError(
                f"cannot create caption directory {str(self.directory)!r}: {_describe(exc)}"
            ) from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise StreamcapError(
                f"cannot write captions into {str(self.directory)!r}: permission denied"
            )
        if started_at is None:
            started_at = datetime.fromtimestamp(session.epoch)
        self.stem = f"{started_at:%Y%m%d-%H%M%S}-{_safe_name(session.id, 'session', 64)}"
        self._period_s = out.rotate_minutes * 60.0 if out.rotate_minutes > 0 else math.inf
        self._period = 0
        self.part = 1
        self._formatters: dict[str, CaptionFormatter] = {}
        self._tracks: dict[str, CaptionFiles] = {}
        self._jsonl: JsonlWriter | None = None
        self._paths: list[Path] = []
        self._closed = False
        errors = self._ensure_open()
        if errors:
            self._close_part()
            raise errors[0]

    # -- naming --

    def _name(self, suffix: str, lang: str | None = None) -> Path:
        part = f"-part{self.part}" if self.part > 1 else ""
        lang_part = f".{lang}" if lang else ""
        return self.directory / f"{self.stem}{part}{lang_part}{suffix}"

    @property
    def paths(self) -> list[Path]:
        """Every file opened so far in this session, in the order opened."""
        return list(self._paths)

    # -- opening and rotating --

    def _remember(self, paths: list[Path]) -> None:
        self._paths.extend(p for p in paths if p not in self._paths)

    def _ensure_open(self) -> list[StreamcapError]:
        """Open the current part's files that are due and not open yet (after a failure too)."""
        errors: list[StreamcapError] = []
        if self.out.jsonl and self._jsonl is None:
            try:
                self._jsonl = JsonlWriter(self._name(".jsonl"))
                self._remember([self._jsonl.path])
            except StreamcapError as exc:
                errors.append(exc)
        if not self.out.per_language:
            try:
                self._track("")
            except StreamcapError as exc:
                errors.append(exc)
        return errors

    def _track(self, lang: str) -> CaptionFiles | None:
        """The subtitle files of a language ("" for the combined ones), opened when first needed."""
        if not (self.out.srt or self.out.vtt):
            return None
        track = self._tracks.get(lang)
        if track is None:
            formatter = self._formatters.get(lang)
            if formatter is None:
                formatter = CaptionFormatter.from_config(self.out)
                self._formatters[lang] = formatter
            track = CaptionFiles(
                srt=self._name(".srt", lang or None) if self.out.srt else None,
                vtt=self._name(".vtt", lang or None) if self.out.vtt else None,
                formatter=formatter,
                prefer_translation=False,
            )
            self._tracks[lang] = track
            self._remember(track.paths)
        return track

    def _close_part(self) -> list[StreamcapError]:
        errors: list[StreamcapError] = []
        for track in self._tracks.values():
            try:
                track.close()
            except StreamcapError as exc:
                errors.append(exc)
        self._tracks = {}
        if self._jsonl is not None:
            try:
                self._jsonl.close()
            except StreamcapError as exc:
                errors.append(exc)
            self._jsonl = None
        return errors

    def _maybe_rotate(self, event: Event) -> None:
        t = _event_time(event)
        if t is None or not math.isfinite(t) or math.isinf(self._period_s):
            return
        period = int(max(t, 0.0) // self._period_s)
        if period <= self._period:
            return
        errors = self._close_part()
        self._period = period
        self.part += 1
        _first_error(errors)  # the next part's files are opened by the caller, write()

    # -- writing --

    def _routes(self, final: FinalCaption) -> list[tuple[str, FinalCaption]]:
        if not self.out.per_language:
            return [("", translation_final(final) or final)]
        lang = _safe_name(final.language.lower(), "und", 16)
        routes = [(lang, original_final(final))]
        english = translation_final(final)
        if english is not None and lang != "en":
            routes.append(("en", english))
        return routes

    def write(self, event: Event) -> list[Cue]:
        """Record ``event`` in every file it belongs to; return the cues written for a final.

        All files are tried even when one fails; then the first error is raised.
        """
        if self._closed:
            raise StreamcapError(f"cannot write captions for session {self.session.id}: closed")
        errors: list[StreamcapError] = []
        try:
            self._maybe_rotate(event)
        except StreamcapError as exc:
            errors.append(exc)
        errors.extend(self._ensure_open())
        if self._jsonl is not None:
            try:
                self._jsonl.write(event)
            except StreamcapError as exc:
                errors.append(exc)
        cues: list[Cue] = []
        if isinstance(event, FinalCaption):
            for lang, view in self._routes(event):
                try:
                    track = self._track(lang)
                    if track is not None:
                        cues.extend(track.write(view))
                except StreamcapError as exc:
                    errors.append(exc)
        _first_error(errors)
        return cues

    def close(self) -> None:
        """Flush and close every file (again is a no-op)."""
        if self._closed:
            return
        self._closed = True
        _first_error(self._close_part())

    def __enter__(self) -> SessionFiles:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
