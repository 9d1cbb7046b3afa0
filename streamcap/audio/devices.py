"""Audio input devices: listing them, choosing one from ``audio.device``, and ``streamcap devices``.

Two kinds of input are listed:

* **PortAudio inputs** (what :mod:`sounddevice` sees: ALSA ``hw:`` cards, the ALSA ``pulse`` and
  ``default`` devices, ...), chosen by index or name substring;
* **PulseAudio/PipeWire sources** (listed with ``pactl``, which works against PipeWire's pulse
  server too), including the *monitor* sources (``<sink>.monitor``) that carry what is playing on
  the speakers, i.e. the other side of a meeting. They are reached through the ALSA ``pulse``
  device with ``PULSE_SOURCE`` set to the source name while the stream is opened.

The selection logic (:func:`select_device`) and the parsing of ``pactl`` output are pure; only
:func:`list_input_devices` talks to PortAudio and ``pactl``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import AudioDeviceError

#: The ALSA device through which PulseAudio/PipeWire sources are opened.
PULSE_PCM = "pulse"

NO_INPUT_HINT = (
    "caption a file with --input file:PATH, read raw PCM from stdin with --input -, or start "
    "PulseAudio/PipeWire and pick a monitor source (NAME.monitor, see `streamcap devices`) "
    "to caption what plays on the speakers"
)
NO_INPUT_HELP = f"no audio input device found; {NO_INPUT_HINT}"


@dataclass(frozen=True)
class DeviceInfo:
    """One capture input.

    ``index`` is the PortAudio device index; for a PulseAudio/PipeWire source it is the index of
    the ALSA ``pulse`` device that opens it and ``pulse_source`` holds the source name.
    """

    index: int
    name: str
    hostapi: str
    channels: int
    default_rate: float
    is_monitor: bool
    is_default: bool
    pulse_source: str | None = None
    description: str = ""

    @property
    def label(self) -> str:
        """The name shown to users and matched against ``audio.device``."""
        return self.pulse_source if self.pulse_source is not None else self.name


@dataclass(frozen=True)
class PulseSource:
    """A PulseAudio/PipeWire source as ``pactl`` reports it."""

    name: str
    description: str
    channels: int
    rate: int
    is_monitor: bool


def _sd() -> Any:
    """Import :mod:`sounddevice`, turning a missing PortAudio library into a clear error."""
    try:
        import sounddevice
    except OSError as exc:  # raised when libportaudio cannot be loaded
        raise AudioDeviceError(
            f"PortAudio is not available ({exc}); install the libportaudio2 package"
        ) from None
    return sounddevice


def refresh_portaudio() -> None:
    """Re-initialise PortAudio so devices that appeared or restarted since start-up are seen.

    Every open stream is closed by this; call it only when none is open.
    """
    sd = _sd()
    with contextlib.suppress(Exception):  # not initialised (a previous refresh failed half-way)
        sd._terminate()
    try:
        sd._initialize()
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"cannot initialise PortAudio: {exc}") from None


def _looks_like_monitor(name: str) -> bool:
    n = name.lower()
    return n.endswith(".monitor") or "monitor of" in n or n.startswith("monitor")


def parse_spec(spec: str) -> tuple[int, int]:
    """Parse a pactl sample spec such as ``s16le 2ch 44100Hz`` into (channels, rate)."""
    channels, rate = 0, 0
    for part in spec.split():
        if part.endswith("ch") and part[:-2].isdigit():
            channels = int(part[:-2])
        elif part.endswith("Hz") and part[:-2].isdigit():
            rate = int(part[:-2])
    return channels, rate


def parse_pactl_json(text: str) -> list[PulseSource]:
    """Parse ``pactl --format=json list sources``; malformed entries are skipped."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return []
    if not isinstance(data, list):
        return []
    out: list[PulseSource] = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        name: str = item["name"]
        props = item.get("properties") if isinstance(item.get("properties"), dict) else {}
        assert isinstance(props, dict)
        channels, rate = parse_spec(str(item.get("sample_specification", "")))
        monitor = props.get("device.class") == "monitor" or name.endswith(".monitor")
        out.append(
            PulseSource(
                name=name,
                description=str(item.get("description", "")),
                channels=channels,
                rate=rate,
                is_monitor=bool(monitor),
            )
        )
    return out


def parse_pactl_short(text: str) -> list[PulseSource]:
    """Parse ``pactl list short sources`` (older pactl without JSON output)."""
    out: list[PulseSource] = []
    for line in text.splitlines():
        cols = line.split("\t")
        if len(cols) < 4 or not cols[1]:
            continue
        channels, rate = parse_spec(cols[3])
        out.append(PulseSource(cols[1], "", channels, rate, cols[1].endswith(".monitor")))
    return out


def pulse_sources(timeout: float = 5.0) -> list[PulseSource]:
    """The PulseAudio/PipeWire sources, or ``[]`` when there is no ``pactl`` or no server."""
    pactl = shutil.which("pactl")
    if pactl is None:
        return []
    for args, parse in (
        ([pactl, "--format=json", "list", "sources"], parse_pactl_json),
        ([pactl, "list", "short", "sources"], parse_pactl_short),
    ):
        try:
            proc = subprocess.run(
                args, capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return []
        if proc.returncode == 0:
            return parse(proc.stdout)
    return []


def combine(
    portaudio: list[dict[str, Any]],
    hostapis: list[str],
    default_input: int,
    pulse: list[PulseSource],
) -> list[DeviceInfo]:
    """Merge PortAudio's device list and the pulse sources into the list of inputs (pure)."""
    inputs = [d for d in portaudio if int(d.get("max_input_channels", 0)) > 0]
    if default_input < 0 and inputs:
        default_input = int(inputs[0]["index"])
    out: list[DeviceInfo] = []
    pulse_index: int | None = None
    for d in inputs:
        idx = int(d["index"])
        name = str(d["name"])
        api = int(d.get("hostapi", 0))
        if name == PULSE_PCM:
            pulse_index = idx
        out.append(
            DeviceInfo(
                index=idx,
                name=name,
                hostapi=hostapis[api] if 0 <= api < len(hostapis) else "?",
                channels=int(d["max_input_channels"]),
                default_rate=float(d.get("default_samplerate", 0.0)),
                is_monitor=_looks_like_monitor(name),
                is_default=idx == default_input,
            )
        )
    if pulse_index is not None:
        for s in pulse:
            out.append(
                DeviceInfo(
                    index=pulse_index,
                    name=PULSE_PCM,
                    hostapi="PulseAudio",
                    channels=s.channels,
                    default_rate=float(s.rate),
                    is_monitor=s.is_monitor,
                    is_default=False,
                    pulse_source=s.name,
                    description=s.description,
                )
            )
    return out


def list_input_devices(*, refresh: bool = False, include_pulse: bool = True) -> list[DeviceInfo]:
    """All capture inputs: PortAudio inputs, then PulseAudio/PipeWire sources (monitors too).

    ``refresh`` re-initialises PortAudio first (see :func:`refresh_portaudio`).
    """
    sd = _sd()
    if refresh:
        refresh_portaudio()
    try:
        devices = [dict(d) for d in sd.query_devices()]
        hostapis = [str(h["name"]) for h in sd.query_hostapis()]
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"cannot list audio devices: {exc}") from None
    default_input = -1
    try:
        default_input = int(sd.default.device[0])
    except (TypeError, ValueError, IndexError):
        default_input = -1
    if default_input < 0:
        for h in sd.query_hostapis():
            if int(h.get("default_input_device", -1)) >= 0:
                default_input = int(h["default_input_device"])
                break
    pulse = pulse_sources() if include_pulse else []
    return combine(devices, hostapis, default_input, pulse)


def default_sink(timeout: float = 5.0) -> str | None:
    """The name of the default PulseAudio/PipeWire output (sink), or None without a server."""
    return _pactl_default("sink", timeout)


def default_source(timeout: float = 5.0) -> str | None:
    """The name of the default PulseAudio/PipeWire input (source), or None without a server."""
    return _pactl_default("source", timeout)


def _pactl_default(kind: str, timeout: float) -> str | None:
    """``pactl get-default-KIND`` (or the ``Default KIND:`` line of ``pactl info``)."""
    pactl = shutil.which("pactl")
    if pactl is None:
        return None
    try:
        proc = subprocess.run([pactl, f"get-default-{kind}"], capture_output=True, text=True,
                              timeout=timeout, check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
        proc = subprocess.run([pactl, "info"], capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in proc.stdout.splitlines():
        if line.startswith(f"Default {kind.capitalize()}:"):
            name = line.split(":", 1)[1].strip()
            return name or None
    return None


def monitor_of(sink: str | None) -> str:
    """The monitor source of ``sink`` (the default output when None): what plays on it."""
    name = sink if sink else default_sink()
    if not name:
        raise AudioDeviceError(
            "monitor: no default output found to capture (PulseAudio/PipeWire with pactl is "
            "needed); name a source instead, e.g. mic:NAME.monitor (see `streamcap devices`)")
    return name if name.endswith(".monitor") else f"{name}.monitor"


def meeting_pair(devices: list[DeviceInfo]) -> tuple[str, str]:
    """What meeting mode captures by default: (the default input, the default output's
    monitor), described for ``streamcap devices``; a missing side says why."""
    try:
        choice = select_device(None, [d for d in devices if not d.is_monitor] or devices)
        mic = choice.label
        if choice.pulse_source is None and choice.name in (PULSE_PCM, "default"):
            # The ALSA device of the sound server records its default source: name that.
            source = default_source()
            if source:
                mic = f"{source} (the default source, through the ALSA '{choice.name}' device)"
    except AudioDeviceError as exc:
        mic = f"none ({exc})"
    try:
        mon = monitor_of(None)
        if not any(d.label == mon for d in devices):
            mon = f"{mon} (not listed as a source now)"
    except AudioDeviceError as exc:
        mon = f"none ({exc})"
    return mic, mon


def _describe(devices: list[DeviceInfo]) -> str:
    return ", ".join(
        f"[{d.index}] {d.name}" if d.pulse_source is None else d.pulse_source for d in devices
    )


def select_device(spec: str | int | None, devices: list[DeviceInfo]) -> DeviceInfo:
    """Choose the input that ``audio.device`` names (pure).

    ``None`` (or ``""``) means the default input; an integer or a string of digits is a
    PortAudio index; any other string is an exact name, else a case-insensitive substring of
    exactly one input's name (PortAudio name, pulse source name or description).
    """
    if not devices:
        raise AudioDeviceError(NO_INPUT_HELP)
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        for d in devices:
            if d.is_default:
                return d
        return devices[0]
    if isinstance(spec, bool):
        raise AudioDeviceError(f"audio.device: expected a name or an index, got {spec!r}")
    if isinstance(spec, int) or spec.strip().isdigit():
        idx = int(spec)
        for d in devices:
            if d.index == idx and d.pulse_source is None:
                return d
        raise AudioDeviceError(
            f"audio.device: no input device with index {idx}; available inputs: "
            f"{_describe(devices)}"
        )
    want = spec.strip()
    for d in devices:
        if d.label == want:
            return d
    low = want.lower()
    matches = [
        d
        for d in devices
        if low in d.label.lower() or (d.description and low in d.description.lower())
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AudioDeviceError(
            f"audio.device: no input device matches {want!r}; available inputs: "
            f"{_describe(devices)}"
        )
    raise AudioDeviceError(
        f"audio.device: {want!r} matches several inputs ({_describe(matches)}); "
        "use a longer part of the name or the index"
    )


def format_device_list(devices: list[DeviceInfo]) -> str:
    """The text ``streamcap devices`` prints (pure)."""
    if not devices:
        hint = NO_INPUT_HINT[:1].upper() + NO_INPUT_HINT[1:]
        return f"No audio input devices found.\n{hint}.\n"
    lines = ["Audio inputs (PortAudio):"]
    for d in devices:
        if d.pulse_source is not None:
            continue
        mark = "*" if d.is_default else " "
        flags = "  [monitor]" if d.is_monitor else ""
        lines.append(
            f" {mark}{d.index:>3}  {d.name}  ({d.hostapi}, {d.channels} ch, "
            f"{d.default_rate:.0f} Hz){flags}"
        )
    pulse = [d for d in devices if d.pulse_source is not None]
    if pulse:
        lines.append("")
        lines.append(f"PulseAudio/PipeWire sources (opened through the '{PULSE_PCM}' device):")
        for d in pulse:
            flags = "  [monitor: what plays on the speakers]" if d.is_monitor else ""
            desc = f"  {d.description}" if d.description else ""
            lines.append(
                f"        {d.pulse_source}{desc} ({d.channels} ch, {d.default_rate:.0f} Hz){flags}"
            )
    lines += [
        "",
        "* marks the default input.",
        "Choose one with `audio.device` in the config file or with --input mic:DEVICE: an",
        "index, or any part of a name (e.g. `device: USB`, `--input mic:3`).",
        "To caption what a meeting plays on your speakers, choose a monitor source: on",
        "PulseAudio/PipeWire its name ends in `.monitor` (e.g. `device: .monitor` when there",
        "is only one). Without a device, use --input file:PATH or --input - (raw PCM on stdin).",
    ]
    if not any(d.is_monitor for d in devices):
        lines.append(
            "No monitor source is listed: start PulseAudio/PipeWire (with pactl installed) "
            "to capture speaker output."
        )
    return "\n".join(lines) + "\n"


def run_devices(args: argparse.Namespace) -> int:
    """``streamcap devices``: print the inputs (``--json`` for a machine-readable list)."""
    devices = list_input_devices()
    mic, mon = meeting_pair(devices)
    if getattr(args, "json", False):
        print(json.dumps({"inputs": [asdict(d) for d in devices],
                          "meeting": {"you": mic, "others": mon}}, indent=2))
    else:
        print(format_device_list(devices), end="")
        print(f"\nMeeting mode (streamcap run --meeting) would capture:\n"
              f"  You    <- {mic}\n  Others <- {mon}")
    return 0


def add_devices_parser(subparsers: Any) -> None:
    """Register ``streamcap devices`` on an argparse subparsers object."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "devices",
        help="list audio inputs, including monitor sources that capture speaker output",
        description="List audio capture inputs and explain how to pick one.",
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=run_devices)
