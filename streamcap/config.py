"""The configuration tree: typed, frozen dataclasses loaded from YAML and validated.

Unknown keys and bad values raise :class:`~streamcap.errors.ConfigError` naming the key path
(``asr.compute_type: expected one of ...``). Command-line overrides are applied with
:func:`with_overrides` using dotted key paths and win over the file. Loading and validation are
pure: no model file is read, and this module imports nothing from :mod:`streamcap.asr`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import ConfigError


@dataclass(frozen=True)
class AudioConfig:
    input: str = "mic"
    device: str | int | None = None
    frame_ms: Literal[10, 20, 30] = 30
    stdin_rate: int = 16000
    stdin_channels: int = 1
    queue_seconds: float = 10.0
    block_ms: int = 50


@dataclass(frozen=True)
class VadConfig:
    aggressiveness: Literal[0, 1, 2, 3] = 2
    start_frames: int = 3
    preroll_s: float = 0.3
    end_silence_s: float = 0.5
    max_utterance_s: float = 15.0
    buffer_s: float = 30.0
    min_speech_s: float = 0.25


@dataclass(frozen=True)
class VadOverride:
    """Per-input VAD settings; ``null`` keeps the top-level ``vad`` value."""

    aggressiveness: Literal[0, 1, 2, 3] | None = None
    start_frames: int | None = None
    preroll_s: float | None = None
    end_silence_s: float | None = None
    max_utterance_s: float | None = None
    min_speech_s: float | None = None


@dataclass(frozen=True)
class InputConfig:
    """One of several inputs: its label, what it captures, and its own VAD settings.

    ``input`` takes the ``--input`` forms (``mic``, ``mic:DEVICE``, ``monitor`` (what plays on
    the default output), ``monitor:SINK``, ``file:PATH``, ``-``); ``device`` picks the device
    for ``mic`` as ``audio.device`` does for the single input. ``echo_of`` names the input
    this one also hears (a microphone hearing the speakers: the monitor input's name): its
    captions that repeat that input at the same time are suppressed (``streamcap/echo.py``).
    """

    name: str = ""
    input: str = "mic"
    device: str | int | None = None
    vad: VadOverride = field(default_factory=VadOverride)
    echo_of: str | None = None


@dataclass(frozen=True)
class MeetingConfig:
    """Meeting mode: the default microphone as ``you`` and the default output's monitor as
    ``others``, captioned together on one model, echo of the speakers on the microphone
    suppressed."""

    enabled: bool = False
    you: str = "You"
    others: str = "Others"
    mic: str = "mic"  # an --input form for "you": mic, mic:DEVICE
    monitor: str = "monitor"  # an --input form for "others": monitor, monitor:SINK, mic:NAME
    echo_suppression: bool = True
    # Speaker turns inside one input: label finals "Others 1", "Others 2", ... from the voice
    # in each final (needs the optional extra streamcap[speakers]; see docs/speakers.md). In
    # meeting mode only the "others" input gets turns (the microphone is you).
    speaker_turns: bool = False
    speaker_threshold: float = 0.68  # cosine similarity to a known voice to count as the same
    max_speakers: int = 8            # voices per input; past this the nearest voice is used
    speaker_min_s: float = 1.0       # shorter finals keep the previous turn's label


@dataclass(frozen=True)
class RayConfig:
    """``asr.ray``: where the shared ASR pool is (client side) and how it is deployed
    (``streamcap serve-asr`` and ``deploy/serve.yaml`` read the same block)."""

    # --- the client: a daemon with ``asr.backend: ray`` ---------------------------------
    address: str = "auto"  # ray.init address: "auto" (a node of the cluster) or ray://host:port
    app: str = "streamcap-asr"  # Serve application name
    deployment: str = "WhisperPool"  # Serve deployment name inside the application
    connect_timeout_s: float = 30.0
    request_timeout_s: float = 5.0  # a decode slower than this counts as an outage
    retry_backoff_s: float = 0.5  # first wait after a failure, doubled up to the max
    retry_backoff_max_s: float = 8.0
    on_outage: Literal["buffer", "local"] = "buffer"
    # With on_outage: buffer, pending finals wait this long for the pool, then are given up
    # (their committed words still come out): the bound on the outage no final is lost in.
    buffer_s: float = 120.0
    # --- the pool: the Serve deployment ------------------------------------------------
    replicas: int = 1
    replica_cpus: float = 1.0
    replica_gpus: float = 0.0
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.01
    max_ongoing_requests: int = 64


@dataclass(frozen=True)
class AsrConfig:
    backend: Literal["local", "ray"] = "local"
    ray: RayConfig = field(default_factory=RayConfig)
    model: str = "tiny.en"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: Literal[
        "auto", "default", "int8", "int8_float32", "int8_float16", "int8_bfloat16",
        "int16", "float16", "bfloat16", "float32",
    ] = "auto"
    cpu_threads: int = 0
    model_dir: str | None = None
    language: str = "auto"
    languages: tuple[str, ...] = ()
    task: Literal["transcribe", "translate"] = "transcribe"
    translate_keep_original: bool = False
    initial_prompt: str | None = None
    hotwords: str | None = None
    beam_size: int = 5
    partial_beam_size: int = 1
    partial_interval_s: float = 0.4
    partial_context: Literal["short", "full"] = "short"
    final_context: Literal["short", "full"] = "full"
    agreement: int = 3
    commit_margin_s: float = 0.3
    sentence_finals: bool = True
    clause_after_s: float = 4.0
    overlap_s: float = 1.0
    final_mode: Literal["redecode", "keep_stable"] = "redecode"
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4


@dataclass(frozen=True)
class OutputConfig:
    dir: str = "captions"
    srt: bool = True
    vtt: bool = True
    jsonl: bool = True
    per_language: bool = False
    max_line_chars: int = 42
    max_lines: int = 2
    min_cue_s: float = 1.0
    max_cue_s: float = 7.0
    rotate_minutes: float = 60.0


@dataclass(frozen=True)
class ServerConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    client_queue: int = 256
    replay_finals: int = 1000
    transcript_finals: int = 5000
    max_message_bytes: int = 4096
    status_interval_s: float = 1.0
    api: bool = True  # the OpenAI-compatible transcription API on the same port (docs/api.md)
    max_upload_mb: float = 25.0
    api_jobs: int = 2  # transcriptions admitted at once (decoding or waiting); more get 429
    api_stall_s: float = 60.0  # a transcription with no decode for this long answers 503


@dataclass(frozen=True)
class ObsConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 4455
    password: str | None = None
    text_source: str = "streamcap captions"
    stream_captions: bool = True
    max_updates_per_s: float = 4.0
    lines: int = 2


@dataclass(frozen=True)
class DaemonConfig:
    shutdown_timeout_s: float = 10.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    reopen_backoff_max_s: float = 10.0


@dataclass(frozen=True)
class Config:
    audio: AudioConfig = field(default_factory=AudioConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    obs: ObsConfig = field(default_factory=ObsConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    inputs: tuple[InputConfig, ...] = ()
    meeting: MeetingConfig = field(default_factory=MeetingConfig)


# --- validation rules beyond the types: (path, predicate, message) -------------------------

_RULES: list[tuple[str, typing.Callable[[Any], bool], str]] = [
    ("audio.stdin_rate", lambda v: 8000 <= v <= 192000, "expected 8000..192000"),
    ("audio.stdin_channels", lambda v: 1 <= v <= 32, "expected 1..32"),
    ("audio.queue_seconds", lambda v: 0.5 <= v <= 600, "expected 0.5..600"),
    ("audio.block_ms", lambda v: 5 <= v <= 1000, "expected 5..1000"),
    ("vad.start_frames", lambda v: 1 <= v <= 100, "expected 1..100"),
    ("vad.preroll_s", lambda v: 0 <= v <= 2, "expected 0..2"),
    ("vad.end_silence_s", lambda v: 0.1 <= v <= 5, "expected 0.1..5"),
    ("vad.max_utterance_s", lambda v: 2 <= v <= 28, "expected 2..28 (Whisper sees 30 s at most)"),
    ("vad.buffer_s", lambda v: 5 <= v <= 600, "expected 5..600"),
    ("vad.min_speech_s", lambda v: 0 <= v <= 5, "expected 0..5"),
    ("asr.cpu_threads", lambda v: 0 <= v <= 256, "expected 0 (auto)..256"),
    ("asr.beam_size", lambda v: 1 <= v <= 20, "expected 1..20"),
    ("asr.partial_beam_size", lambda v: 1 <= v <= 20, "expected 1..20"),
    ("asr.partial_interval_s", lambda v: 0.1 <= v <= 5, "expected 0.1..5"),
    ("asr.agreement", lambda v: 1 <= v <= 5, "expected 1..5"),
    ("asr.commit_margin_s", lambda v: 0 <= v <= 5, "expected 0..5"),
    ("asr.clause_after_s", lambda v: 0 <= v <= 30, "expected 0 (never)..30"),
    ("asr.overlap_s", lambda v: 0.2 <= v <= 5, "expected 0.2..5"),
    ("asr.no_speech_threshold", lambda v: 0 <= v <= 1, "expected 0..1"),
    ("asr.log_prob_threshold", lambda v: -20 <= v <= 0, "expected -20..0"),
    ("asr.compression_ratio_threshold", lambda v: 1 <= v <= 10, "expected 1..10"),
    ("asr.model", lambda v: bool(v.strip()), "must not be empty"),
    ("asr.ray.address", lambda v: bool(v.strip()) and len(v) <= 500,
     "expected 'auto', HOST:PORT or ray://HOST:PORT"),
    ("asr.ray.app", lambda v: _serve_name(v), "expected a name of 1..100 letters, digits, -_."),
    ("asr.ray.deployment", lambda v: _serve_name(v),
     "expected a name of 1..100 letters, digits, -_."),
    ("asr.ray.connect_timeout_s", lambda v: 1 <= v <= 600, "expected 1..600"),
    ("asr.ray.request_timeout_s", lambda v: 0.1 <= v <= 600, "expected 0.1..600"),
    ("asr.ray.retry_backoff_s", lambda v: 0.01 <= v <= 60, "expected 0.01..60"),
    ("asr.ray.retry_backoff_max_s", lambda v: 0.01 <= v <= 600, "expected 0.01..600"),
    ("asr.ray.buffer_s", lambda v: 0 <= v <= 3600, "expected 0..3600"),
    ("asr.ray.replicas", lambda v: 1 <= v <= 1000, "expected 1..1000"),
    ("asr.ray.replica_cpus", lambda v: 0 <= v <= 256, "expected 0..256"),
    ("asr.ray.replica_gpus", lambda v: 0 <= v <= 16, "expected 0..16"),
    ("asr.ray.max_batch_size", lambda v: 1 <= v <= 256, "expected 1..256"),
    ("asr.ray.batch_wait_timeout_s", lambda v: 0 <= v <= 5, "expected 0..5"),
    ("asr.ray.max_ongoing_requests", lambda v: 1 <= v <= 10000, "expected 1..10000"),
    ("asr.language", lambda v: v == "auto" or (2 <= len(v) <= 5 and v.isalpha()),
     "expected 'auto' or a language code such as 'en'"),
    ("output.max_line_chars", lambda v: 10 <= v <= 200, "expected 10..200"),
    ("output.max_lines", lambda v: 1 <= v <= 4, "expected 1..4"),
    ("output.min_cue_s", lambda v: 0.1 <= v <= 10, "expected 0.1..10"),
    ("output.max_cue_s", lambda v: 1 <= v <= 30, "expected 1..30"),
    ("output.rotate_minutes", lambda v: 0 <= v <= 24 * 60, "expected 0 (never)..1440"),
    ("server.port", lambda v: 0 <= v <= 65535, "expected 0..65535"),
    ("server.client_queue", lambda v: 1 <= v <= 100000, "expected 1..100000"),
    ("server.replay_finals", lambda v: 0 <= v <= 1000000, "expected 0..1000000"),
    ("server.transcript_finals", lambda v: 0 <= v <= 1000000, "expected 0..1000000"),
    ("server.max_message_bytes", lambda v: 64 <= v <= 1 << 24, "expected 64..16777216"),
    ("server.status_interval_s", lambda v: 0.1 <= v <= 3600, "expected 0.1..3600"),
    ("server.max_upload_mb", lambda v: 0.001 <= v <= 2048, "expected 0.001..2048"),
    ("server.api_jobs", lambda v: 1 <= v <= 64, "expected 1..64"),
    ("server.api_stall_s", lambda v: 1 <= v <= 86400, "expected 1..86400"),
    ("obs.port", lambda v: 1 <= v <= 65535, "expected 1..65535"),
    ("obs.max_updates_per_s", lambda v: 0.1 <= v <= 30, "expected 0.1..30"),
    ("obs.lines", lambda v: 1 <= v <= 10, "expected 1..10"),
    ("daemon.shutdown_timeout_s", lambda v: 0.5 <= v <= 600, "expected 0.5..600"),
    ("daemon.reopen_backoff_max_s", lambda v: 0.1 <= v <= 600, "expected 0.1..600"),
    ("meeting.speaker_threshold", lambda v: 0 <= v <= 1, "expected 0..1"),
    ("meeting.max_speakers", lambda v: 1 <= v <= 32, "expected 1..32"),
    ("meeting.speaker_min_s", lambda v: 0 <= v <= 10, "expected 0..10"),
]


def _serve_name(v: str) -> bool:
    return 1 <= len(v) <= 100 and all(c.isascii() and (c.isalnum() or c in "-_.") for c in v)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list of " + _type_name(typing.get_args(tp)[0])
    if tp is type(None):
        return "null"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(path: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in canonical form."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(path, tp, value)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _convert(path, arg, value)
            except ConfigError:
                continue
        raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_convert(f"{path}[{i}]", item_tp, v) for i, v in enumerate(value))
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(path, f"expected null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):
                raise ConfigError(path, f"expected a finite number, got {value!r}")
            return float(value)
        raise ConfigError(path, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(path, f"expected a string, got {value!r}")
    raise ConfigError(path, f"unsupported type {tp!r}")  # pragma: no cover


def _build(prefix: str, cls: Any, data: Any) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(prefix or "<root>", f"expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(
                where, f"unknown key (known keys here: {', '.join(sorted(names))})"
            )
    kwargs: dict[str, Any] = {}
    for name in names:
        if name in data:
            where = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _convert(where, hints[name], data[name])
    return cls(**kwargs)


def _get(cfg: Any, path: str) -> Any:
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


# The language codes Whisper knows (faster_whisper.tokenizer._LANGUAGE_CODES, copied so that
# loading a config does not import faster-whisper; tests/test_config.py keeps them equal).
WHISPER_LANGUAGES = frozenset(
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw "
    "he hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my "
    "ne nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt "
    "uk ur uz vi yi yo zh yue".split()
)


def _unknown_language(code: str) -> str:
    return f"unknown language code {code!r} (Whisper knows: {', '.join(sorted(WHISPER_LANGUAGES))})"


def validate(cfg: Config) -> Config:
    """Apply the range rules and the rules that relate keys to each other.

    Pure: it looks at the values only (no files, no model), so it is safe on the event loop
    (a SIGHUP reload validates there). What needs the model itself (an English-only model asked
    for another language) is checked by :func:`streamcap.asr.model.check_model`, where the model
    is resolved.
    """
    for path, ok, message in _RULES:
        value = _get(cfg, path)
        if not ok(value):
            raise ConfigError(path, f"{message}, got {value!r}")
    if cfg.output.min_cue_s > cfg.output.max_cue_s:
        raise ConfigError("output.min_cue_s", "must not exceed output.max_cue_s")
    if cfg.vad.max_utterance_s > cfg.vad.buffer_s:
        raise ConfigError("vad.max_utterance_s", "must not exceed vad.buffer_s")
    if cfg.asr.backend == "ray" and cfg.asr.ray.request_timeout_s >= cfg.audio.queue_seconds:
        raise ConfigError("asr.ray.request_timeout_s",
                          "must be below audio.queue_seconds (audio captured while a decode "
                          "waits for the pool is queued there)")
    if cfg.asr.ray.retry_backoff_s > cfg.asr.ray.retry_backoff_max_s:
        raise ConfigError("asr.ray.retry_backoff_s", "must not exceed asr.ray.retry_backoff_max_s")
    if cfg.asr.language != "auto" and cfg.asr.language not in WHISPER_LANGUAGES:
        raise ConfigError("asr.language", _unknown_language(cfg.asr.language))
    for i, lang in enumerate(cfg.asr.languages):
        if lang not in WHISPER_LANGUAGES:
            raise ConfigError(f"asr.languages[{i}]", _unknown_language(lang))
    _validate_inputs(cfg)
    return cfg


MAX_INPUTS = 8
MAX_LABEL_CHARS = 40

_VAD_RULES = {name: (ok, message) for path, ok, message in _RULES
              if path.startswith("vad.") for name in [path[4:]]}


def _check_label(path: str, label: str) -> None:
    if not label.strip():
        raise ConfigError(path, "must not be empty (it labels every caption of the input)")
    if len(label) > MAX_LABEL_CHARS or not label.isprintable() or label != label.strip():
        raise ConfigError(path, f"expected a short printable label (at most {MAX_LABEL_CHARS} "
                          f"characters, no leading/trailing spaces), got {label!r}")


def _validate_inputs(cfg: Config) -> None:
    if cfg.meeting.enabled and cfg.inputs:
        raise ConfigError("meeting.enabled", "meeting mode picks its own two inputs; remove the "
                          "'inputs' list or turn meeting mode off")
    _check_label("meeting.you", cfg.meeting.you)
    _check_label("meeting.others", cfg.meeting.others)
    if cfg.meeting.you == cfg.meeting.others:
        raise ConfigError("meeting.others", "must differ from meeting.you")
    if len(cfg.inputs) > MAX_INPUTS:
        raise ConfigError("inputs", f"at most {MAX_INPUTS} inputs, got {len(cfg.inputs)}")
    seen: set[str] = set()
    stdin = 0
    for i, inp in enumerate(cfg.inputs):
        _check_label(f"inputs[{i}].name", inp.name)
        if inp.name in seen:
            raise ConfigError(f"inputs[{i}].name", f"{inp.name!r} is used by another input")
        seen.add(inp.name)
        stdin += inp.input.strip() == "-"
        if stdin > 1:
            raise ConfigError(f"inputs[{i}].input", "only one input can read stdin ('-')")
        for f in dataclasses.fields(inp.vad):
            value = getattr(inp.vad, f.name)
            if value is not None and f.name in _VAD_RULES:
                ok, message = _VAD_RULES[f.name]
                if not ok(value):
                    raise ConfigError(f"inputs[{i}].vad.{f.name}", f"{message}, got {value!r}")
        if (inp.vad.max_utterance_s or cfg.vad.max_utterance_s) > cfg.vad.buffer_s:
            raise ConfigError(f"inputs[{i}].vad.max_utterance_s", "must not exceed vad.buffer_s")
    names = {inp.name: inp for inp in cfg.inputs}
    for i, inp in enumerate(cfg.inputs):
        if inp.echo_of is None:
            continue
        if inp.echo_of == inp.name:
            raise ConfigError(f"inputs[{i}].echo_of", "must name another input, not this one")
        other = names.get(inp.echo_of)
        if other is None:
            raise ConfigError(f"inputs[{i}].echo_of", f"no input is named {inp.echo_of!r} "
                              f"(inputs: {', '.join(repr(n) for n in names)})")
        if other.echo_of is not None:
            raise ConfigError(f"inputs[{i}].echo_of", f"{inp.echo_of!r} is itself an echo "
                              "of another input; name the input that plays the sound")


def resolve_inputs(cfg: Config, input_spec: str | None = None) -> tuple[InputConfig, ...]:
    """The inputs to capture: meeting mode's pair, else the ``inputs`` list, else the single
    ``--input``/``audio.input`` (unlabelled: its captions carry no ``source``).

    The single input keeps the name ``""`` (no label)."""
    if cfg.meeting.enabled:
        m = cfg.meeting
        return (InputConfig(name=m.you, input=m.mic), InputConfig(name=m.others, input=m.monitor))
    if cfg.inputs:
        return cfg.inputs
    return (InputConfig(name="", input=input_spec if input_spec is not None else cfg.audio.input,
                        device=cfg.audio.device),)


def echo_pairs(cfg: Config, inputs: Sequence[InputConfig]) -> dict[int, int]:
    """Which input hears which (index to index) for echo suppression: in meeting mode "you"
    hears "others" (when ``meeting.echo_suppression``); with an ``inputs`` list, each
    ``echo_of``. ``inputs`` are those :func:`resolve_inputs` gave."""
    if cfg.meeting.enabled:
        return {0: 1} if cfg.meeting.echo_suppression and len(inputs) == 2 else {}
    index = {inp.name: i for i, inp in enumerate(inputs)}
    return {i: index[inp.echo_of] for i, inp in enumerate(inputs)
            if inp.echo_of is not None and inp.echo_of in index}


def input_config(cfg: Config, inp: InputConfig) -> Config:
    """The configuration one input's engine runs with: its VAD overrides applied."""
    over = {f.name: getattr(inp.vad, f.name) for f in dataclasses.fields(inp.vad)
            if getattr(inp.vad, f.name) is not None}
    if not over:
        return cfg
    return dataclasses.replace(cfg, vad=dataclasses.replace(cfg.vad, **over))


def from_dict(data: Any) -> Config:
    """Build and validate a :class:`Config` from a plain mapping (as loaded from YAML)."""
    cfg: Config = _build("", Config, data)
    return validate(cfg)


def load(path: str | Path | None) -> Config:
    """Load ``path`` (or the embedded defaults when ``None``)."""
    if path is None:
        return from_dict({})
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {str(p)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"config file {str(p)!r} is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("", f"config file {str(p)!r} is not valid YAML{where}") from None
    return from_dict(data)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain data (tuples become lists), e.g. to print or to diff."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = to_dict(v)
        elif isinstance(v, tuple):
            out[f.name] = [to_dict(x) if dataclasses.is_dataclass(x) else x for x in v]
        else:
            out[f.name] = v
    return out


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Return ``cfg`` with dotted-path overrides applied (``{"asr.model": "base"}``)."""
    data = to_dict(cfg)
    for path, value in overrides.items():
        parts = path.split(".")
        node = data
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], dict):
                raise ConfigError(path, "unknown key")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(path, "unknown key")
        node[parts[-1]] = value
    return from_dict(data)


def parse_override(item: str) -> tuple[str, Any]:
    """Parse ``key.path=value`` from the command line; the value is read as YAML."""
    if "=" not in item:
        raise ConfigError(item, "expected KEY=VALUE, e.g. vad.aggressiveness=3")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value
