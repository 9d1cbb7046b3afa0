"""The benchmark shell: load the model once, then per file run the streaming engine and the
offline reference decode, and measure what each costs.

- Streaming: :func:`streamcap.runner.run_audio`, the same engine and worker the daemon uses.
  ``realtime=True`` releases audio at wall-clock speed (computation-aware); ``False`` feeds it as
  fast as the engine goes (throughput only: latency and CPU-share figures are then invalid).
- Offline: ``WhisperModel.transcribe(audio, beam_size=5, word_timestamps=True)`` over the whole
  file on the same loaded model object, with the manifest's language (``en`` for ``.en`` models).
- Per-set config overrides (:mod:`.sets`) apply to the streaming run of that set's files.
- Cost: process CPU time (``psutil``) over each streaming run and over a run of silence
  (``idle_seconds``) after the files; peak RSS from ``getrusage``; the model load time.

Files in a language an English-only model cannot transcribe are skipped (and listed). A file that
fails to decode is listed under ``failed`` and the run goes on.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil

from ..audio.decode import load_audio
from ..config import Config, with_overrides
from ..errors import AudioError
from ..events import SAMPLE_RATE, FinalCaption, Word
from .continuity import Continuity, compute_continuity
from .latency import FileLatency, compute, reference_ends
from .manifest import Clip
from .scoring import ErrorCounts, Metric, TextScorer, count_errors
from .sets import overrides_for, set_config

OFFLINE_BEAM = 5


@dataclass
class ModelInfo:
    """Which model ran and how it was loaded."""

    name: str
    path: str
    device: str
    compute_type: str
    compute_type_effective: str
    cpu_threads: int
    multilingual: bool
    load_seconds: float


@dataclass
class FileResult:
    """Everything measured for one file."""

    clip: Clip
    metric: Metric
    duration: float
    streaming_text: str
    offline_text: str
    streaming: ErrorCounts
    offline: ErrorCounts
    latency: FileLatency
    decode_seconds: float
    wall_seconds: float
    cpu_seconds: float
    offline_seconds: float
    dropped_samples: int
    events: int
    continuity: Continuity = field(default_factory=Continuity)
    config_overrides: dict[str, Any] = field(default_factory=dict)
    timeline: list[Any] = field(default_factory=list, repr=False)  # the TimedEvents


@dataclass
class IdleResult:
    """CPU spent by the engine on silence (no speech, so no decoding)."""

    audio_seconds: float
    wall_seconds: float
    cpu_seconds: float
    valid: bool

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


@dataclass
class BenchRun:
    """One benchmark run."""

    realtime: bool
    cfg: Config
    model: ModelInfo
    files: list[FileResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    idle: IdleResult | None = None
    peak_rss_bytes: int = 0
    wall_seconds: float = 0.0
    complete: bool = False
    set_overrides: bool = True  # whether per-set config overrides (sets.SET_OVERRIDES) applied


class Progress:
    """What the shell reports while it runs (the CLI plugs tqdm in; tests use nothing)."""

    def start_file(self, clip: Clip, duration: float) -> None:  # pragma: no cover - no-op
        pass

    def stream_time(self, seconds: float) -> None:  # pragma: no cover - no-op
        pass

    def stage(self, text: str) -> None:  # pragma: no cover - no-op
        pass

    def end_file(self) -> None:  # pragma: no cover - no-op
        pass

    def skip_file(self, clip: Clip) -> None:  # pragma: no cover - no-op
        pass


def _cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _words_of(segments: list[Any]) -> list[Word]:
    out: list[Word] = []
    for seg in segments:
        for w in seg.words or ():
            out.append(Word(str(w.word), float(w.start), float(w.end), float(w.probability)))
    return out


def offline_decode(model: Any, audio: np.ndarray[Any, Any], language: str | None,
                   cfg: Config) -> tuple[str, list[Word], float]:
    """Whole-file faster-whisper decode, beam 5, word timestamps: text, words, seconds taken."""
    t0 = time.monotonic()
    segments, _info = model.transcribe(
        audio,
        beam_size=OFFLINE_BEAM,
        word_timestamps=True,
        language=language,
        task="transcribe",
        initial_prompt=cfg.asr.initial_prompt,
        hotwords=cfg.asr.hotwords,
    )
    segs = list(segments)  # a generator: decoding happens here
    took = time.monotonic() - t0
    text = "".join(str(s.text) for s in segs).strip()
    return text, _words_of(segs), took


def clip_audio(clip: Clip) -> np.ndarray[Any, Any]:
    """The clip's samples (16 kHz mono); a joined clip's files end to end."""
    if not clip.parts:
        return load_audio(clip.path)
    return np.concatenate([load_audio(p) for p in clip.parts]).astype(np.float32, copy=False)


def _file_cfg(cfg: Config, clip: Clip, multilingual: bool, set_overrides: bool = True) -> Config:
    cfg = set_config(cfg, clip.set, set_overrides)
    if multilingual and cfg.asr.language == "auto":
        return with_overrides(cfg, {"asr.language": clip.language.split("-")[0]})
    return cfg


def skip_reason(
    clip: Clip, multilingual: bool, model_name: str, supported: Sequence[str] = ()
) -> str | None:
    """Why ``clip`` cannot be run with this model, or ``None``."""
    lang = clip.language.split("-")[0]
    if not multilingual and lang != "en":
        return f"model {model_name!r} is English-only; file language is {clip.language!r}"
    if multilingual and supported and lang not in supported:
        return f"model {model_name!r} does not know language {clip.language!r}"
    return None


def bench_file(
    clip: Clip,
    cfg: Config,
    loaded: Any,
    decoder: Any,
    *,
    realtime: bool,
    progress: Progress,
    set_overrides: bool = True,
) -> FileResult:
    """Stream and offline-decode one file; score and time both."""
    from ..runner import TimedEvent, run_audio

    audio = clip_audio(clip)
    duration = len(audio) / SAMPLE_RATE
    progress.start_file(clip, duration)
    fcfg = _file_cfg(cfg, clip, bool(loaded.multilingual), set_overrides)
    scorer = TextScorer(clip.language, remove_fillers=clip.spontaneous)

    def on_event(te: TimedEvent) -> None:
        end = getattr(te.event, "end", None)
        if end is None:
            end = getattr(te.event, "time", None)
        if isinstance(end, float):
            progress.stream_time(end)

    proc = psutil.Process()
    cpu0 = _cpu_seconds(proc)
    t0 = time.monotonic()
    progress.stage("streaming")
    res = run_audio(audio, fcfg, decoder, realtime=realtime, on_event=on_event)
    wall = time.monotonic() - t0
    cpu = _cpu_seconds(proc) - cpu0
    decode_s = res.decode_seconds  # this run's decoding (the decoder is shared across files)
    progress.stream_time(duration)

    progress.stage("offline")
    lang = fcfg.asr.language if loaded.multilingual and fcfg.asr.language != "auto" else None
    if not loaded.multilingual:
        lang = "en"
    off_text, off_words, off_s = offline_decode(loaded.model, audio, lang, fcfg)

    finals = [te.event for te in res.events if isinstance(te.event, FinalCaption)]
    stream_text = " ".join(f.text for f in finals).strip()
    ref = scorer.reference_tokens(clip.reference)
    latency = compute(res.events, ref, scorer, fallback_ends=reference_ends(scorer, ref, off_words))
    progress.end_file()
    return FileResult(
        clip=clip,
        metric=scorer.metric,
        duration=duration,
        streaming_text=stream_text,
        offline_text=off_text,
        streaming=count_errors(ref, scorer.tokens(stream_text)),
        offline=count_errors(ref, scorer.tokens(off_text)),
        latency=latency,
        decode_seconds=max(0.0, decode_s),
        wall_seconds=wall,
        cpu_seconds=max(0.0, cpu),
        offline_seconds=off_s,
        dropped_samples=int(res.dropped_samples),
        events=len(res.events),
        continuity=compute_continuity(res.events, ref, scorer, off_words,
                                      scorer.reference_words(clip.reference)),
        config_overrides=overrides_for(clip.set, set_overrides),
        timeline=list(res.events),
    )


def measure_idle(cfg: Config, decoder: Any, seconds: float, *, realtime: bool) -> IdleResult:
    """Run the engine over ``seconds`` of near-silence (-80 dBFS noise) and time its CPU."""
    from ..runner import run_audio

    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 1e-4).astype(np.float32)
    proc = psutil.Process()
    cpu0 = _cpu_seconds(proc)
    t0 = time.monotonic()
    run_audio(audio, cfg, decoder, realtime=realtime)
    wall = time.monotonic() - t0
    return IdleResult(seconds, wall, max(0.0, _cpu_seconds(proc) - cpu0), valid=realtime)


def load(cfg: Config) -> tuple[Any, Any, ModelInfo]:
    """Load the model once (``streamcap.asr.model.load_model``) and build the decoder on it."""
    import os

    from ..asr.decoder import WhisperDecoder
    from ..asr.model import load_model

    loaded = load_model(cfg.asr)
    decoder = WhisperDecoder(loaded, cfg.asr)
    effective = str(getattr(loaded.model.model, "compute_type", loaded.compute_type))
    info = ModelInfo(
        name=str(loaded.name),
        path=str(loaded.path),
        device=str(loaded.device),
        compute_type=str(loaded.compute_type),
        compute_type_effective=effective,
        cpu_threads=cfg.asr.cpu_threads or min(4, os.cpu_count() or 1),
        multilingual=bool(loaded.multilingual),
        load_seconds=float(loaded.load_seconds),
    )
    return loaded, decoder, info


def run_bench(
    clips: list[Clip],
    cfg: Config,
    *,
    realtime: bool,
    idle_seconds: float,
    progress: Progress | None = None,
    on_file: Callable[[BenchRun], None] | None = None,
    set_overrides: bool = True,
) -> BenchRun:
    """Benchmark every clip with one loaded model, then measure idle CPU.

    ``on_file`` is called with the run so far after every file (to save partial results).
    """
    progress = progress or Progress()
    t0 = time.monotonic()
    loaded, decoder, info = load(cfg)
    run = BenchRun(realtime=realtime, cfg=cfg, model=info, set_overrides=set_overrides)
    supported = [str(x) for x in getattr(loaded.model, "supported_languages", ())]
    for clip in clips:
        reason = skip_reason(clip, info.multilingual, info.name, supported)
        if reason is not None:
            run.skipped.append((clip.key, reason))
            progress.skip_file(clip)
            continue
        try:
            fr = bench_file(clip, cfg, loaded, decoder, realtime=realtime, progress=progress,
                            set_overrides=set_overrides)
        except AudioError as exc:
            run.failed.append((clip.key, str(exc)))
            progress.skip_file(clip)
            continue
        run.files.append(fr)
        if on_file is not None:
            run.wall_seconds = time.monotonic() - t0
            run.peak_rss_bytes = peak_rss_bytes()
            on_file(run)
    if idle_seconds > 0:
        progress.stage(f"idle ({idle_seconds:g} s of silence)")
        run.idle = measure_idle(cfg, decoder, idle_seconds, realtime=realtime)
    run.peak_rss_bytes = peak_rss_bytes()
    run.wall_seconds = time.monotonic() - t0
    run.complete = True
    return run
