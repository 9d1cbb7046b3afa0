"""Configuration loading: defaults, YAML, overrides and every error path."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streamcap import config
from streamcap.cli import main
from streamcap.config import _RULES, Config, from_dict, load, parse_override, with_overrides
from streamcap.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_yaml_equals_embedded_defaults() -> None:
    """config.yaml documents exactly the embedded defaults."""
    assert load(REPO / "config.yaml") == Config()


def test_every_key_in_config_yaml_is_commented() -> None:
    """Each key of config.yaml has a comment on its line (sections excepted)."""
    keys = 0
    for line in (REPO / "config.yaml").read_text().splitlines():
        if line.startswith("  ") and not line.strip().startswith("#"):
            keys += 1
            assert "#" in line, line
    sections = [getattr(Config(), f.name) for f in dataclasses.fields(Config)]
    assert keys == sum(len(dataclasses.fields(s)) for s in sections
                       if dataclasses.is_dataclass(s))


def test_empty_file_and_none_give_defaults(tmp_path: Path) -> None:
    """An empty YAML file and no file both give the default configuration."""
    p = tmp_path / "c.yaml"
    p.write_text("")
    assert load(p) == load(None) == Config()


def test_values_are_loaded_and_typed(tmp_path: Path) -> None:
    """YAML values land in the typed tree, ints widen to floats, lists become tuples."""
    p = tmp_path / "c.yaml"
    p.write_text("vad:\n  end_silence_s: 1\nasr:\n  languages: [en, de]\n  model: base\n")
    cfg = load(p)
    assert cfg.vad.end_silence_s == 1.0 and isinstance(cfg.vad.end_silence_s, float)
    assert cfg.asr.languages == ("en", "de")


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        ({"bogus": 1}, "bogus", "unknown key"),
        ({"asr": {"modle": "x"}}, "asr.modle", "unknown key"),
        ({"asr": "tiny"}, "asr", "expected a mapping"),
        ({"asr": {"compute_type": "int4"}}, "asr.compute_type", "expected one of"),
        ({"asr": {"device": 1}}, "asr.device", "expected one of"),
        ({"vad": {"aggressiveness": 5}}, "vad.aggressiveness", "expected one of"),
        ({"vad": {"aggressiveness": "2"}}, "vad.aggressiveness", "expected one of"),
        ({"vad": {"start_frames": 2.5}}, "vad.start_frames", "expected an integer"),
        ({"vad": {"start_frames": True}}, "vad.start_frames", "expected an integer"),
        ({"vad": {"end_silence_s": "half"}}, "vad.end_silence_s", "expected a number"),
        ({"vad": {"end_silence_s": float("nan")}}, "vad.end_silence_s", "finite"),
        ({"output": {"srt": "yes"}}, "output.srt", "true or false"),
        ({"asr": {"model": 3}}, "asr.model", "expected a string"),
        ({"asr": {"languages": "en"}}, "asr.languages", "a list of"),
        ({"asr": {"languages": ["en", 3]}}, "asr.languages[1]", "expected a string"),
        ({"asr": {"languages": ["english!"]}}, "asr.languages[0]", "language code"),
        ({"asr": {"model": "base", "language": "xx"}}, "asr.language", "unknown language"),
        ({"asr": {"model": "base", "languages": ["en", "zz"]}}, "asr.languages[1]", "unknown"),
        ({"audio": {"device": 1.5}}, "audio.device", "expected"),
        ({"output": {"min_cue_s": 8.0}}, "output.min_cue_s", "must not exceed"),
        ({"vad": {"max_utterance_s": 20.0, "buffer_s": 10.0}}, "vad.max_utterance_s", "exceed"),
        ({"asr": {"model": "  "}}, "asr.model", "must not be empty"),
        ({"asr": {"language": "\x00\x1b[2J"}}, "asr.language", "language code"),
    ],
)
def test_bad_values_name_the_key(data: dict[str, Any], path: str, fragment: str) -> None:
    """Each kind of bad value raises ConfigError naming the key path and the problem."""
    with pytest.raises(ConfigError) as info:
        from_dict(data)
    assert info.value.path == path
    assert fragment in str(info.value)
    assert str(info.value).startswith(path)


@pytest.mark.parametrize(
    ("asr", "path"),
    [
        ({"language": "de"}, "asr.language"),
        ({"task": "translate"}, "asr.task"),
        ({"language": "auto", "languages": ["de"]}, "asr.languages"),
    ],
)
def test_model_checks_run_where_the_model_is_resolved(asr: dict[str, Any], path: str) -> None:
    """An English-only model asked for another language loads as a config (validation is pure)
    and is refused by the model check, which names the key."""
    from streamcap.asr.model import check_model

    cfg = from_dict({"asr": asr})  # tiny.en, the default model, is English-only
    with pytest.raises(ConfigError) as info:
        check_model(cfg.asr)
    assert info.value.path == path and "English-only" in str(info.value)
    check_model(from_dict({"asr": {**asr, "model": "base"}}).asr)  # multilingual: fine


def test_a_model_path_is_checked_when_resolved_not_when_loaded() -> None:
    """A model directory that does not exist loads as a config; resolving it fails naming
    asr.model."""
    from streamcap.asr.model import check_model, resolve_model
    from streamcap.errors import ModelError

    cfg = from_dict({"asr": {"model": "./no/such/dir"}})
    assert cfg.asr.model == "./no/such/dir"
    check_model(cfg.asr)  # nothing it can tell about a missing directory
    with pytest.raises(ModelError, match=r"asr\.model: './no/such/dir' is not a CTranslate2"):
        resolve_model(cfg.asr.model)


def test_config_validation_is_pure() -> None:
    """Importing and validating a config imports nothing from streamcap.asr (no model code)."""
    code = (
        "import sys; from streamcap import config; "
        "config.from_dict({'asr': {'model': 'base', 'language': 'de'}}); "
        "print(sorted(m for m in sys.modules if m.startswith(('streamcap.asr', 'faster_whisper',"
        " 'ctranslate2'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_cli_config_command_still_runs_the_model_check(
    capsys: pytest.CaptureFixture[str]
) -> None:
    """`streamcap config --language de` with the English-only default model is one line
    naming asr.language, exit 2 (the check moved out of validation, not out of the command)."""
    assert main(["config", "--language", "de"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("streamcap: error: asr.language:")
    assert "English-only" in err[0]


@pytest.mark.parametrize(("path", "ok", "message"), _RULES, ids=[r[0] for r in _RULES])
def test_every_range_rule_rejects_out_of_range(path: str, ok: Any, message: str) -> None:
    """Every range rule has a value it refuses, and the error names that rule's key."""
    section, key = path.split(".")
    default = getattr(getattr(Config(), section), key)
    candidates: list[Any]
    if isinstance(default, str) or default is None:
        candidates = ["", " ", "toolonglanguage", "12"]
    elif isinstance(default, float):
        candidates = [-1e9, 1e9, -1.0]
    else:
        candidates = [-(10**9), 10**9, -1]
    bad = next(c for c in candidates if not ok(c))
    with pytest.raises(ConfigError) as info:
        from_dict({section: {key: bad}})
    assert info.value.path == path


def test_root_must_be_a_mapping(tmp_path: Path) -> None:
    """A YAML file whose top level is a list is refused."""
    p = tmp_path / "c.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load(p)


def test_invalid_yaml_reports_the_line(tmp_path: Path) -> None:
    """Broken YAML is refused with the file name and the line of the problem."""
    p = tmp_path / "c.yaml"
    p.write_text("asr:\n  model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load(p)


def test_missing_and_binary_files_are_refused(tmp_path: Path) -> None:
    """A missing file and a non-UTF-8 file each give a one-line error naming the file."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "nope.yaml")
    b = tmp_path / "b.yaml"
    b.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(b)


def test_overrides_win_and_are_validated() -> None:
    """Dotted overrides replace file values, and bad or unknown overrides are refused."""
    cfg = with_overrides(Config(), {"vad.aggressiveness": 3, "asr.beam_size": 2})
    assert cfg.vad.aggressiveness == 3 and cfg.asr.beam_size == 2
    with pytest.raises(ConfigError, match=r"vad\.nope"):
        with_overrides(Config(), {"vad.nope": 1})
    with pytest.raises(ConfigError, match=r"nope\.x"):
        with_overrides(Config(), {"nope.x": 1})
    with pytest.raises(ConfigError, match=r"asr\.beam_size"):
        with_overrides(Config(), {"asr.beam_size": 0})


def test_parse_override_reads_yaml_values() -> None:
    """KEY=VALUE parses the value as YAML; a missing '=' is refused."""
    assert parse_override("vad.aggressiveness=3") == ("vad.aggressiveness", 3)
    assert parse_override("asr.languages=[en, de]") == ("asr.languages", ["en", "de"])
    assert parse_override("asr.initial_prompt=") == ("asr.initial_prompt", "")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("vad.aggressiveness")


def test_to_dict_round_trips() -> None:
    """to_dict then from_dict gives back the same configuration."""
    cfg = with_overrides(Config(), {"asr.languages": ["en"]})
    assert from_dict(config.to_dict(cfg)) == cfg


def test_cli_reports_config_errors_in_one_line_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI turns a bad config into one stderr line naming the key, exit code 2."""
    p = tmp_path / "c.yaml"
    p.write_text("asr:\n  compute_type: int4\n")
    assert main(["config", "--config", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "asr.compute_type" in err[0]
    assert main(["config", "--set", "vad.aggressiveness=9"]) == 2
    assert "vad.aggressiveness" in capsys.readouterr().err


def test_cli_flags_override_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--set and named flags win over values from the config file."""
    p = tmp_path / "c.yaml"
    p.write_text("vad:\n  aggressiveness: 1\n")
    assert main(["config", "--config", str(p), "--set", "vad.aggressiveness=3"]) == 0
    assert "aggressiveness: 3" in capsys.readouterr().out


def test_bad_cli_arguments_are_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown option gives one error line and exit code 2."""
    with pytest.raises(SystemExit) as info:
        main(["transcribe", "--no-such-flag", "x.wav"])
    assert info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_known_language_codes_match_faster_whisper() -> None:
    """The copied list of Whisper language codes equals faster-whisper's own."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    assert set(_LANGUAGE_CODES) == config.WHISPER_LANGUAGES


def test_inputs_list_and_meeting_mode_resolve_to_labelled_inputs() -> None:
    """The single input stays unlabelled; an inputs list keeps its labels and per-input VAD;
    meeting mode is the microphone as 'You' and the default output's monitor as 'Others'."""
    from streamcap.config import input_config, resolve_inputs

    assert [(i.name, i.input) for i in resolve_inputs(Config(), "file:a.wav")] == [
        ("", "file:a.wav")]
    cfg = from_dict({"inputs": [{"name": "Desk", "input": "mic:USB",
                                 "vad": {"end_silence_s": 0.8}},
                                {"name": "Room", "input": "monitor"}]})
    desk, room = resolve_inputs(cfg)
    assert (desk.name, room.name, room.input) == ("Desk", "Room", "monitor")
    assert input_config(cfg, desk).vad.end_silence_s == 0.8
    assert input_config(cfg, room) is cfg
    meet = from_dict({"meeting": {"enabled": True, "you": "Ana"}})
    assert [(i.name, i.input) for i in resolve_inputs(meet)] == [("Ana", "mic"),
                                                                 ("Others", "monitor")]


@pytest.mark.parametrize(
    ("data", "culprit"),
    [
        ({"inputs": [{"name": ""}]}, "inputs[0].name"),
        ({"inputs": [{"name": " You"}]}, "inputs[0].name"),
        ({"inputs": [{"name": "A"}, {"name": "A"}]}, "inputs[1].name"),
        ({"inputs": [{"name": "A", "input": "-"}, {"name": "B", "input": "-"}]},
         "inputs[1].input"),
        ({"inputs": [{"name": "A", "vad": {"end_silence_s": 99}}]}, "inputs[0].vad.end_silence_s"),
        ({"inputs": [{"name": "A", "vad": {"bogus": 1}}]}, "inputs[0].vad.bogus"),
        ({"inputs": [{"name": "A", "colour": "red"}]}, "inputs[0].colour"),
        ({"inputs": [{"name": f"in{i}"} for i in range(9)]}, "inputs"),
        ({"inputs": "mic"}, "inputs"),
        ({"meeting": {"enabled": True}, "inputs": [{"name": "A"}]}, "meeting.enabled"),
        ({"meeting": {"you": "Same", "others": "Same"}}, "meeting.others"),
        ({"meeting": {"you": "x" * 41}}, "meeting.you"),
    ],
)
def test_bad_inputs_and_meeting_settings_name_the_culprit(data: dict[str, object],
                                                          culprit: str) -> None:
    """Hostile input lists and meeting settings fail with the key path of the culprit."""
    with pytest.raises(ConfigError) as err:
        from_dict(data)
    assert str(err.value).startswith(culprit + ":"), str(err.value)
