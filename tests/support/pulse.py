"""A private PulseAudio server with a null sink, for tests that capture real audio.

``with private_pulse() as pa:`` starts ``pulseaudio`` (as whatever user runs the tests, root
included) in a fresh temporary directory with a null sink ``streamcap_test`` (16 kHz mono) whose
monitor source ``streamcap_test.monitor`` records whatever is played into the sink. The server
is always killed on exit, together with every ``paplay`` started through :meth:`PulseServer.play`.

``with meeting_pulse() as pa:`` starts the same server set up as a meeting without headphones
would be, with two outputs: ``speakers`` (the default sink; its monitor is what meeting mode
captures as "Others") and ``mic``, a null sink whose monitor is turned into an ordinary
(non-monitor) source ``mic_in`` by ``module-remap-source`` and made the default source (what
meeting mode captures as "You"). ``pa.play(path, MIC_SINK)`` speaks into the microphone;
``pa.unplug_mic()`` / ``pa.load_mic()`` unplug it and plug it in again.

Clients reach it through ``pa.overrides`` (environment variables: ``PULSE_SERVER``, an ALSA
configuration that routes the ALSA ``default``/``pulse`` devices to it, no autospawn). Use
``pa.env`` for a subprocess, or ``with pa.activate():`` to point this process (and PortAudio,
which is re-initialised) at it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .timing import unit as timeout_unit
from .timing import wait_until

__all__ = ["MIC_SINK", "MIC_SOURCE", "SINK", "SPEAKERS", "PulseServer", "meeting_pulse",
           "private_pulse", "timeout_unit", "wait_until"]

SINK = "streamcap_test"
SPEAKERS = "speakers"
MIC_SINK = "mic"
MIC_SOURCE = "mic_in"
LAPTOP = "laptop"


_ASOUNDRC = """\
pcm.!default { type pulse hint { show on description "private PulseAudio (tests)" } }
ctl.!default { type pulse }
"""

_CLIENT_CONF = "autospawn = no\n"


class PulseServer:
    """A running private PulseAudio; see the module docstring."""

    def __init__(self, root: Path, proc: subprocess.Popen[bytes], sink: str) -> None:
        self.root = root
        self.proc = proc
        self.sink = sink
        self.socket = root / "native"
        self._players: list[subprocess.Popen[bytes]] = []
        alsa_conf = "/usr/share/alsa/alsa.conf"
        self.overrides: dict[str, str] = {
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_CLIENTCONFIG": str(root / "client.conf"),
            "PULSE_RUNTIME_PATH": str(root / "run"),
            "ALSA_CONFIG_PATH": f"{alsa_conf}:{root / 'asoundrc'}",
        }

    @property
    def monitor(self) -> str:
        """The source that records what is played into the null sink."""
        return f"{self.sink}.monitor"

    @property
    def env(self) -> dict[str, str]:
        """A full environment for subprocesses that should use this server."""
        env = dict(os.environ)
        env.pop("PULSE_SOURCE", None)
        env.pop("PULSE_SINK", None)
        env.update(self.overrides)
        return env

    def pactl(self, *args: str) -> str:
        """Run ``pactl`` against this server and return its output (raises on failure)."""
        proc = subprocess.run(
            ["pactl", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10 * timeout_unit(),
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def module(self, kind: str, arg: str) -> int | None:
        """The index of the loaded ``kind`` module whose arguments hold ``arg``, or None."""
        for line in self.pactl("list", "short", "modules").splitlines():
            cols = line.split("\t")
            if len(cols) >= 3 and cols[1] == kind and arg in cols[2].split():
                return int(cols[0])
        return None

    def sink_module(self) -> int | None:
        """The module index of the null sink, or None while it is unloaded."""
        return self.module("module-null-sink", f"sink_name={self.sink}")

    def unplug_mic(self) -> None:
        """Unplug the meeting microphone: remove the ``mic_in`` source (its remap module)."""
        idx = self.module("module-remap-source", f"source_name={MIC_SOURCE}")
        if idx is None:
            raise RuntimeError(f"source {MIC_SOURCE} is not loaded")
        self.pactl("unload-module", str(idx))

    def recordings_of(self, source: str) -> list[int]:
        """Indices of the client recording streams (source outputs) of ``source``."""
        sources = {cols[0]: cols[1] for line in self.pactl("list", "short", "sources")
                   .splitlines() if len(cols := line.split("\t")) >= 2}
        return [int(cols[0]) for line in self.pactl("list", "short", "source-outputs")
                .splitlines() if len(cols := line.split("\t")) >= 4
                and sources.get(cols[1]) == source and cols[3] == "protocol-native.c"]

    def load_mic(self) -> None:
        """Plug the meeting microphone in again: ``mic_in`` (the ``mic`` sink's monitor
        remapped to an ordinary source)."""
        self.pactl("load-module", "module-remap-source", f"source_name={MIC_SOURCE}",
                   f"master={MIC_SINK}.monitor", "remix=no")

    def unload_sink(self) -> None:
        """Remove the null sink (and its monitor source): what an unplugged device looks like."""
        idx = self.sink_module()
        if idx is None:
            raise RuntimeError(f"sink {self.sink} is not loaded")
        self.pactl("unload-module", str(idx))

    def load_sink(self) -> None:
        """Create the null sink (16 kHz mono)."""
        self.pactl(
            "load-module", "module-null-sink", f"sink_name={self.sink}", "rate=16000", "channels=1"
        )

    def play(self, path: str | Path, sink: str | None = None) -> subprocess.Popen[bytes]:
        """Start ``paplay`` of ``path`` into ``sink`` (the null sink by default); killed at
        teardown if still running."""
        p = subprocess.Popen(
            ["paplay", "-d", sink or self.sink, str(path)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._players.append(p)
        return p

    def wait_played(self, p: subprocess.Popen[bytes], units: float) -> None:
        """Wait for a ``paplay`` to finish and check that it succeeded."""
        _, err = p.communicate(timeout=units * timeout_unit())
        if p.returncode != 0:
            raise RuntimeError(f"paplay failed ({p.returncode}): {err.decode(errors='replace')}")

    @contextlib.contextmanager
    def activate(self) -> Iterator[PulseServer]:
        """Point this process at the server (env vars + PortAudio re-initialised); undo after."""
        saved = {k: os.environ.get(k) for k in [*self.overrides, "PULSE_SOURCE", "PULSE_SINK"]}
        os.environ.pop("PULSE_SOURCE", None)
        os.environ.pop("PULSE_SINK", None)
        os.environ.update(self.overrides)
        _refresh_portaudio()
        try:
            yield self
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            _refresh_portaudio()

    def wait_up(self) -> None:
        """Wait until the server accepts clients (fails if it exits)."""

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pulseaudio exited ({self.proc.returncode}): {self.log()}")
            try:
                self.pactl("info")
            except RuntimeError:
                return False
            return True

        wait_until(up, 10, "the private PulseAudio to accept clients", poll=0.05)

    def stop_server(self) -> None:
        """Stop the server process (what a crashed or restarting sound server looks like)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5 * timeout_unit())
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def start_server(self) -> None:
        """Start the server again on the same socket, with a fresh null sink."""
        if self.proc.poll() is None:
            raise RuntimeError("the server is still running")
        self.proc = _spawn(self.root)
        self.wait_up()

    def close(self) -> None:
        """Kill the players and the server; remove the temporary directory."""
        for p in self._players:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(Exception):
                p.communicate(timeout=5)
        self.stop_server()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        """The server's log so far (for failure messages)."""
        try:
            return (self.root / "pulse.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def _refresh_portaudio() -> None:
    """Re-read devices in this process if sounddevice is in use (it caches them)."""
    if "sounddevice" in sys.modules:
        from streamcap.audio.devices import refresh_portaudio

        refresh_portaudio()


@contextlib.contextmanager
def meeting_pulse(*, headset: bool = False) -> Iterator[PulseServer]:
    """A private PulseAudio with speakers and a microphone (see the module docstring).

    With ``headset`` the microphone is a headset's: another microphone, ``laptop_in`` (a
    remapped ``laptop`` null sink's monitor), is the default source, and the sound server does
    not move recordings when their source goes away (``rescue-streams = no``): unplugging
    ``mic_in`` ends the recordings of the daemon that named it. (PulseAudio moves a recording
    whose source goes away to the default source, and treats a recording of the default source
    as following the default, so without both settings an unplugged microphone would never be
    lost, only replaced.)"""
    lines = [
        f"load-module module-null-sink sink_name={MIC_SINK} rate=16000 channels=1",
        f"load-module module-remap-source source_name={MIC_SOURCE} master={MIC_SINK}.monitor "
        "remix=no",
    ]
    default = MIC_SOURCE
    if headset:
        lines += [f"load-module module-null-sink sink_name={LAPTOP} rate=16000 channels=1",
                  f"load-module module-remap-source source_name={LAPTOP}_in "
                  f"master={LAPTOP}.monitor remix=no"]
        default = f"{LAPTOP}_in"
    with private_pulse(SPEAKERS, (*lines, f"set-default-source {default}"),
                       rescue_streams=not headset) as pa:
        yield pa


@contextlib.contextmanager
def private_pulse(
    sink: str = SINK, extra: tuple[str, ...] = (), *, rescue_streams: bool = True
) -> Iterator[PulseServer]:
    """Start a private PulseAudio with a null sink (the default sink) and the ``extra``
    configuration lines; always kill it afterwards."""
    for prog in ("pulseaudio", "pactl", "paplay"):
        if shutil.which(prog) is None:
            raise RuntimeError(
                f"{prog} not found: install pulseaudio pulseaudio-utils libasound2-plugins"
            )
    # A short path: the socket name must fit in sun_path (108 bytes).
    root = Path(tempfile.mkdtemp(prefix="scpa-"))
    (root / "run").mkdir(mode=0o700)
    (root / "home").mkdir(mode=0o700)
    (root / "asoundrc").write_text(_ASOUNDRC)
    (root / "client.conf").write_text(_CLIENT_CONF)
    (root / "daemon.conf").write_text(f"rescue-streams = {'yes' if rescue_streams else 'no'}\n")
    (root / "default.pa").write_text(
        f"load-module module-native-protocol-unix auth-anonymous=1 socket={root / 'native'}\n"
        f"load-module module-null-sink sink_name={sink} rate=16000 channels=1\n"
        f"set-default-sink {sink}\n"
        + "".join(f"{line}\n" for line in extra)
    )
    proc = _spawn(root)
    server = PulseServer(root, proc, sink)
    try:
        server.wait_up()
        yield server
    finally:
        server.close()


def _spawn(root: Path) -> subprocess.Popen[bytes]:
    """Start pulseaudio on the configuration in ``root`` (logging to ``root/pulse.log``)."""
    env = dict(os.environ)
    env.update(
        HOME=str(root / "home"),
        XDG_RUNTIME_DIR=str(root / "run"),
        PULSE_RUNTIME_PATH=str(root / "run" / "pulse"),
        XDG_CONFIG_HOME=str(root / "home" / ".config"),
        PULSE_CONFIG=str(root / "daemon.conf"),
    )
    for k in ("PULSE_SERVER", "PULSE_SOURCE", "PULSE_SINK", "DBUS_SESSION_BUS_ADDRESS"):
        env.pop(k, None)
    with open(root / "pulse.log", "ab") as log:
        return subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "--system=false",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "--disable-shm=yes",
                "--realtime=no",
                "--high-priority=no",
                "--log-target=stderr",
                "-n",
                "-F",
                str(root / "default.pa"),
            ],
            env=env,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
