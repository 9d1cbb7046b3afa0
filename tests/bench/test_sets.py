"""Tests for choosing sets by name and the per-set config overrides (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamcap.bench.manifest import Clip
from streamcap.bench.sets import SET_OVERRIDES, overrides_for, select_sets, set_config
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
