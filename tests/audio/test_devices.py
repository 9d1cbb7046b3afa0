"""Input device listing and selection, against scripted lists and a real private PulseAudio."""

from __future__ import annotations

import argparse
import json

import pytest
from support.pulse import PulseServer

from streamcap.audio.devices import (
    NO_INPUT_HELP,
    DeviceInfo,
    PulseSource,
    add_devices_parser,
    combine,
    format_device_list,
    list_input_devices,
    parse_pactl_json,
    parse_pactl_short,
    pulse_sources,
    select_device,
)
from streamcap.errors import AudioDeviceError


def _dev(index: int, name: str, *, default: bool = False, pulse: str | None = None,
         monitor: bool = False, desc: str = "") -> DeviceInfo:
    return DeviceInfo(index, name, "ALSA", 2, 48000.0, monitor, default, pulse, desc)


DEVICES = [
    _dev(0, "HDA Intel PCH: ALC892 Analog (hw:0,0)"),
    _dev(1, "USB Audio Device: Mic (hw:1,0)"),
    _dev(2, "pulse"),
    _dev(3, "default", default=True),
    _dev(2, "pulse", pulse="alsa_output.pci.analog-stereo.monitor", monitor=True,
         desc="Monitor of Built-in Audio"),
    _dev(2, "pulse", pulse="alsa_input.usb-mic", desc="USB Mic"),
]


def test_select_default_index_exact_and_substring() -> None:
    """None picks the default; digits pick an index; a unique substring or exact name picks one."""
    assert select_device(None, DEVICES).name == "default"
    assert select_device("", DEVICES).name == "default"
    assert select_device(1, DEVICES).name.startswith("USB Audio")
    assert select_device(" 0 ", DEVICES).index == 0
    assert select_device("pulse", DEVICES).pulse_source is None  # exact name beats substrings
    assert select_device("alc892", DEVICES).index == 0  # case-insensitive
    mon = select_device(".monitor", DEVICES)
    assert mon.pulse_source == "alsa_output.pci.analog-stereo.monitor" and mon.is_monitor
    assert select_device("Built-in", DEVICES).is_monitor  # descriptions match too


def test_select_without_default_takes_the_first_input() -> None:
    """When no input is marked default, the first one is used."""
    devs = [_dev(4, "a"), _dev(5, "b")]
    assert select_device(None, devs).index == 4


def test_select_errors_list_what_is_available() -> None:
    """No match, an ambiguous name or an unknown index is one line listing the inputs."""
    with pytest.raises(AudioDeviceError, match=r"no input device matches 'zzz'.*USB Audio"):
        select_device("zzz", DEVICES)
    with pytest.raises(AudioDeviceError, match=r"matches several inputs") as exc:
        select_device("usb", DEVICES)
    assert "\n" not in str(exc.value)
    with pytest.raises(AudioDeviceError, match=r"no input device with index 42"):
        select_device(42, DEVICES)
    with pytest.raises(AudioDeviceError, match=r"audio\.device"):
        select_device(True, DEVICES)  # type: ignore[arg-type]


def test_no_devices_at_all_explains_the_alternatives() -> None:
    """With no input at all the error names --input file:PATH and monitor sources, on one line."""
    with pytest.raises(AudioDeviceError) as exc:
        select_device(None, [])
    msg = str(exc.value)
    assert msg == NO_INPUT_HELP and "\n" not in msg
    assert "--input file:PATH" in msg and "monitor" in msg
    text = format_device_list([])
    assert text.startswith("No audio input devices found.")
    assert "--input file:PATH" in text


def test_parse_pactl_output_and_garbage() -> None:
    """pactl JSON and short listings parse; garbage, bad shapes and nameless entries are skipped."""
    good = json.dumps([
        {"name": "s.monitor", "description": "Monitor of S", "sample_specification":
         "s16le 2ch 44100Hz", "properties": {"device.class": "monitor"}},
        {"name": "mic", "description": "Mic", "sample_specification": "float32le 1ch 48000Hz"},
        {"description": "no name"},
        "not a dict",
    ])
    assert parse_pactl_json(good) == [
        PulseSource("s.monitor", "Monitor of S", 2, 44100, True),
        PulseSource("mic", "Mic", 1, 48000, False),
    ]
    for bad in ("", "{", "null", '{"name": "x"}', "[1, 2]"):
        assert parse_pactl_json(bad) == []
    short = "0\tsink.monitor\tmodule-null-sink.c\ts16le 1ch 16000Hz\tIDLE\nbroken line\n"
    assert parse_pactl_short(short) == [PulseSource("sink.monitor", "", 1, 16000, True)]
    assert parse_pactl_short("") == []


def test_combine_needs_the_pulse_device_for_pulse_sources() -> None:
    """Pulse sources are offered only through PortAudio's 'pulse' device; outputs are left out."""
    pa = [
        {"index": 0, "name": "speakers", "hostapi": 0, "max_input_channels": 0,
         "default_samplerate": 48000.0},
        {"index": 1, "name": "mic", "hostapi": 0, "max_input_channels": 1,
         "default_samplerate": 48000.0},
    ]
    src = [PulseSource("x.monitor", "Monitor of X", 2, 48000, True)]
    out = combine(pa, ["ALSA"], -1, src)
    assert [d.name for d in out] == ["mic"] and out[0].is_default
    pa.append({"index": 2, "name": "pulse", "hostapi": 0, "max_input_channels": 32,
               "default_samplerate": 44100.0})
    out = combine(pa, ["ALSA"], 2, src)
    assert [d.label for d in out] == ["mic", "pulse", "x.monitor"]
    assert out[2].index == 2 and out[2].is_monitor and out[2].hostapi == "PulseAudio"


def test_device_list_text_marks_monitors_and_explains_the_choice() -> None:
    """The `streamcap devices` text marks the default and monitors and says how to choose."""
    text = format_device_list(DEVICES)
    assert "Audio inputs (PortAudio):" in text
    assert " *  3  default" in text
    mon_line = next(x for x in text.splitlines() if "analog-stereo.monitor" in x)
    assert "[monitor" in mon_line
    assert "audio.device" in text and ".monitor" in text and "--input mic:" in text


@pytest.mark.system
def test_real_pulse_monitor_is_listed(pulse: PulseServer) -> None:
    """With a real PulseAudio, the null sink's monitor is listed as a 16 kHz mono monitor input."""
    sources = pulse_sources()
    mon = next(s for s in sources if s.name == pulse.monitor)
    assert mon.is_monitor and mon.channels == 1 and mon.rate == 16000
    devices = list_input_devices(refresh=True)
    assert any(d.name == "pulse" and d.pulse_source is None for d in devices)
    chosen = select_device("streamcap_test", devices)
    assert chosen.pulse_source == pulse.monitor and chosen.name == "pulse"


@pytest.mark.system
def test_devices_command_prints_json_and_text(
    pulse: PulseServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`streamcap devices --json` lists the monitor; the text form explains how to pick it."""
    parser = argparse.ArgumentParser()
    add_devices_parser(parser.add_subparsers())
    args = parser.parse_args(["devices", "--json"])
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    listed = doc["inputs"]
    assert any(d["pulse_source"] == pulse.monitor and d["is_monitor"] for d in listed)
    assert doc["meeting"]["others"] == pulse.monitor
    args = parser.parse_args(["devices"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert pulse.monitor in out and "[monitor" in out
