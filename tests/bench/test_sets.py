"""Tests for choosing sets by name and the per-set config overrides (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamcap.bench.manifest import Clip
from streamcap.bench.sets import (
    SET_OVERRIDES,
    derived_twice,
    overrides_for,
    select_sets,
    set_config,
    with_joined,
)
from streamcap.config import Config
from streamcap.errors import ConfigError

CLIPS = [Clip("en_misc", Path("/a/x.wav"), "en", "x"),
         Clip("en_continuous", Path("/b/y.wav"), "en", "y"),
         Clip("en_misc", Path("/a/z.wav"), "en", "z")]


def test_select_sets_keeps_the_named_sets_in_order() -> None:
    """--sets keeps the clips of the named sets only; no names keeps every clip."""
    assert [c.name for c in select_sets(CLIPS, ["en_misc"])] == ["x.wav", "z.wav"]
    assert select_sets(CLIPS, []) == CLIPS
    assert select_sets([], []) == []


@pytest.mark.parametrize("names", [["nope"], ["en_misc", "EN_CONTINUOUS"], [""]])
def test_unknown_set_names_are_one_line_errors(names: list[str]) -> None:
    """A name that matches no set (case counts) raises a ConfigError naming it and the sets."""
    with pytest.raises(ConfigError) as exc:
        select_sets(CLIPS, names)
    msg = str(exc.value)
    assert "--sets" in msg and "en_continuous, en_misc" in msg and "\n" not in msg


def test_continuous_set_hides_its_pauses_from_the_vad() -> None:
    """en_continuous runs with vad.end_silence_s above its longest pause (2.2 s); others don't."""
    cfg = Config()
    assert set_config(cfg, "en_continuous").vad.end_silence_s == 4.0 > 2.2
    assert set_config(cfg, "en_continuous", enabled=False) == cfg
    assert set_config(cfg, "en_misc") == cfg
    assert overrides_for("en_misc") == {} and overrides_for("en_continuous", False) == {}
    for name in SET_OVERRIDES:  # every override is a valid config (checked by with_overrides)
        set_config(cfg, name)


def _ls(name: str, ref: str, set_name: str = "en_librispeech") -> Clip:
    return Clip(set_name, Path(f"/ls/{name}.flac"), "en", ref, duration=1.5)


def test_same_speaker_librispeech_files_are_joined_into_the_continuous_set() -> None:
    """Files of one speaker become one en_continuous clip, in name order, references joined."""
    clips = [_ls("1089-134691-0000", "C D"), _ls("61-70968-0000", "X"),
             _ls("1089-134686-0000", "A B"), _ls("1089-134686-0001", "B2"),
             _ls("1272-128104-0000_picovoice", "Y"), _ls("1272-128104-0001", "Z", "en_misc")]
    out = with_joined(clips)
    assert out[: len(clips)] == clips
    (joined,) = out[len(clips):]  # one speaker with 2+ files; other sets are not joined
    assert (joined.set, joined.name, joined.key) == (
        "en_continuous", "librispeech-1089-joined", "en_continuous/librispeech-1089-joined")
    assert [p.name for p in joined.parts] == [
        "1089-134686-0000.flac", "1089-134686-0001.flac", "1089-134691-0000.flac"]
    assert joined.reference == "A B B2 C D" and joined.duration == 4.5
    assert derived_twice(out) == {joined.key}  # its words are in the run already
    assert derived_twice([joined]) == set()
    assert with_joined([]) == [] and with_joined(clips[:2]) == clips[:2]


def test_joined_clip_audio_is_its_files_end_to_end() -> None:
    """The joined clip's samples are the two files' samples one after the other."""
    from streamcap.audio.decode import load_audio
    from streamcap.bench.run import clip_audio

    root = Path(__file__).resolve().parents[3] / "shared" / "audio" / "en_librispeech"
    a, b = root / "1089-134691-0000.flac", root / "1089-134686-0001.flac"
    clip = Clip("en_continuous", a, "en", "x", parts=(a, b), label="j")
    got = clip_audio(clip)
    assert len(got) == len(load_audio(a)) + len(load_audio(b)) and got.dtype.name == "float32"
