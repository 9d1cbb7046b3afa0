"""Running under systemd: the notify protocol, the watchdog gate and ``streamcap install-service``.

* :class:`Notifier` wraps :mod:`sdnotify`: ``ready()`` (send it after the model is loaded and
  warmed up), ``status(text)``, ``watchdog()``, ``stopping()``, ``extend_timeout(s)``. Without
  ``NOTIFY_SOCKET`` every call is a no-op.
* :class:`WatchdogGate` (pure) decides when ``WATCHDOG=1`` may be sent: only while the pipeline
  is alive (the capture thread runs, the worker thread runs and, when audio is waiting for it,
  makes progress). A hung pipeline therefore stops the pings and systemd restarts the service.
  A lost audio device is *not* a hang: capture keeps running and reopening.
* :func:`render_unit` / :func:`install_service` write the user unit (``systemd/streamcap.service``
  in the repository is :func:`render_unit` with the default ``ExecStart``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, StreamcapError

UNIT_NAME = "streamcap.service"
DEFAULT_EXEC_START = "%h/.local/bin/streamcap run"
WATCHDOG_SEC = 30


class Notifier:
    """sd_notify messages to systemd (a no-op when not started by systemd with Type=notify)."""

    def __init__(self) -> None:
        self._n: Any = None
        import sdnotify

        self.socket_path = os.environ.get("NOTIFY_SOCKET") or None
        if self.socket_path and _reachable(self.socket_path):
            self._n = sdnotify.SystemdNotifier()
            sock = getattr(self._n, "socket", None)
            if sock is None:
                self._n = None
            else:
                # Never block the event loop: a notify socket nobody reads (its queue full)
                # loses the message (sdnotify swallows the error) instead of stalling captions.
                sock.setblocking(False)

    def close(self) -> None:
        """Close the notify socket (later calls are no-ops)."""
        n, self._n = self._n, None
        sock = getattr(n, "socket", None)
        if sock is not None:
            sock.close()

    def __del__(self) -> None:
        self.close()

    @property
    def enabled(self) -> bool:
        return self._n is not None

    def send(self, message: str) -> None:
        if self._n is not None:
            self._n.notify(message)

    def ready(self, status: str | None = None) -> None:
        """The service is up: the model is loaded and warm, capture is running."""
        self.send("READY=1" if status is None else f"READY=1\nSTATUS={_one_line(status)}")

    def status(self, text: str) -> None:
        """A one-line status shown by ``systemctl --user status streamcap``."""
        self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for more time to start or stop (e.g. while a large model loads)."""
        self.send(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}")

    def watchdog_interval(self) -> float | None:
        """How often to ping, in seconds (half of ``WATCHDOG_USEC``); None without a watchdog."""
        return watchdog_interval(os.environ)


def _reachable(addr: str) -> bool:
    """Whether a datagram socket can connect to ``addr`` (sdnotify leaks its socket if not)."""
    target = "\0" + addr[1:] if addr.startswith("@") else addr
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(target)
    except (OSError, ValueError):
        return False
    finally:
        probe.close()
    return True


def watchdog_interval(env: Any) -> float | None:
    """Half the watchdog timeout from ``WATCHDOG_USEC`` (if ``WATCHDOG_PID`` is ours or unset)."""
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


def _one_line(text: str) -> str:
    """sd_notify messages are newline-separated assignments: keep a status on one line."""
    return " ".join(str(text).split())[:500]


@dataclass(frozen=True)
class Liveness:
    """What the daemon reports about its pipeline each time round its loop."""

    capture_alive: bool
    worker_alive: bool
    progress: float
    """Any number that grows while the worker works (e.g. the engine's stream seconds)."""
    backlog_s: float = 0.0
    """Audio waiting for the worker; with none, an unchanged ``progress`` means idle, not hung."""


class WatchdogGate:
    """Pure: says when to send ``WATCHDOG=1`` (every ``interval_s`` while the pipeline lives)."""

    def __init__(self, interval_s: float, stall_s: float) -> None:
        if interval_s <= 0 or stall_s <= 0:
            raise ValueError("interval_s and stall_s must be positive")
        self.interval_s = interval_s
        self.stall_s = stall_s
        self._last_ping: float | None = None
        self._progress: float | None = None
        self._progress_t = 0.0
        self.reason: str | None = None

    def check(self, now: float, live: Liveness) -> bool:
        """True when a ping is due now and the pipeline is healthy."""
        if self._progress is None or live.progress != self._progress or live.backlog_s <= 0:
            self._progress = live.progress
            self._progress_t = now
        if not live.capture_alive:
            self.reason = "the capture thread is not running"
        elif not live.worker_alive:
            self.reason = "the recognition worker is not running"
        elif now - self._progress_t > self.stall_s:
            self.reason = (
                f"the recognition worker made no progress for {now - self._progress_t:.0f} s "
                f"with {live.backlog_s:.1f} s of audio waiting"
            )
        else:
            self.reason = None
        if self.reason is not None:
            return False
        if self._last_ping is None or now - self._last_ping >= self.interval_s:
            self._last_ping = now
            return True
        return False

    @property
    def healthy(self) -> bool:
        return self.reason is None


# --- the unit file ------------------------------------------------------------------------------

_UNIT = """\
# streamcap: real-time captions as a systemd *user* service. PipeWire/PulseAudio run in the
# user session, so a system service could not reach them.
#   streamcap install-service          writes this file to ~/.config/systemd/user/ with ExecStart
#                                      pointing at the installed streamcap
#   systemctl --user daemon-reload && systemctl --user enable --now streamcap
#   journalctl --user -u streamcap -f  the logs
[Unit]
Description=streamcap real-time captioning daemon
After=pipewire.service pipewire-pulse.service pulseaudio.service
StartLimitIntervalSec=300
StartLimitBurst=5

[Service]
# READY=1 is sent once the model is loaded and warmed up; WATCHDOG=1 only while capture and
# recognition are alive. A lost audio device does not stop the pings: the daemon reopens it.
Type=notify
NotifyAccess=main
ExecStart={exec_start}
WorkingDirectory=%h
Environment=PYTHONUNBUFFERED=1
TimeoutStartSec=300
TimeoutStopSec=30
WatchdogSec={watchdog_sec}
Restart=on-failure
RestartSec=5
StandardOutput=journal
StandardError=journal
SyslogIdentifier=streamcap
# Sandboxing that keeps audio working. Left out on purpose: PrivateDevices= (ALSA needs
# /dev/snd), ProtectHome=/PrivateTmp=/ProtectSystem= (the sound server socket lives in
# $XDG_RUNTIME_DIR, captions go to the home directory, and in a user manager these need user
# namespaces), MemoryDenyWriteExecute= (the cffi callbacks of sounddevice need executable
# trampolines) and RestrictRealtime= (audio threads may ask for realtime scheduling).
NoNewPrivileges=yes
LockPersonality=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
UMask=0077

[Install]
WantedBy=default.target
"""


def quote_arg(arg: str) -> str:
    """Quote one ExecStart argument for systemd (``%`` and ``$`` escaped, spaces quoted)."""
    if not arg or "\n" in arg or "\0" in arg:
        raise StreamcapError(f"cannot put {arg!r} into a systemd command line")
    s = arg.replace("%", "%%").replace("$", "$$")
    if any(c in s for c in " \t\"'\\;"):
        s = '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


def render_unit(exec_start: str = DEFAULT_EXEC_START, watchdog_sec: int = WATCHDOG_SEC) -> str:
    """The unit file text; ``exec_start`` is inserted as is (quote with :func:`quote_arg`)."""
    if "\n" in exec_start or not exec_start.strip():
        raise StreamcapError(f"bad ExecStart {exec_start!r}")
    return _UNIT.format(exec_start=exec_start, watchdog_sec=int(watchdog_sec))


def find_executable() -> list[str]:
    """The command that starts the installed streamcap: its script, or ``python -m``."""
    candidates = []
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "streamcap":
        candidates.append(argv0.absolute())
    candidates.append(Path(sys.executable).parent / "streamcap")
    found = shutil.which("streamcap")
    if found:
        candidates.append(Path(found).absolute())
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return [str(c)]
    return [str(Path(sys.executable).absolute()), "-m", "streamcap.cli"]


def default_unit_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def build_exec_start(command: list[str], config: Path | None) -> str:
    args = [*command, "run"]
    if config is not None:
        args += ["--config", str(config)]
    return " ".join(quote_arg(a) for a in args)


def install_service(
    *,
    config: str | Path | None = None,
    unit_dir: str | Path | None = None,
    executable: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Write the user unit; return its path. Raises :class:`StreamcapError` with one line."""
    cfg: Path | None = None
    if config is not None:
        cfg = Path(config).expanduser().absolute()
        if not cfg.is_file():
            raise ConfigError("--config", f"{config}: no such file")
    if executable is not None:
        exe = Path(executable).expanduser().absolute()
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            raise ConfigError("--exec", f"{executable}: not an executable file")
        command = [str(exe)]
    else:
        command = find_executable()
    text = render_unit(build_exec_start(command, cfg))
    directory = Path(unit_dir).expanduser() if unit_dir is not None else default_unit_dir()
    target = directory / UNIT_NAME
    try:
        if target.exists() and not force:
            if target.read_text(encoding="utf-8") == text:
                return target
            raise StreamcapError(f"{target} already exists and differs; use --force to replace it")
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".streamcap.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StreamcapError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


def _systemctl(*args: str) -> None:
    cmd = ["systemctl", "--user", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StreamcapError(f"{' '.join(cmd)} failed: {exc}") from None
    if proc.returncode != 0:
        msg = " ".join((proc.stderr or proc.stdout).split()) or f"exit status {proc.returncode}"
        raise StreamcapError(f"{' '.join(cmd)} failed: {msg}")


def run_install_service(args: argparse.Namespace) -> int:
    """``streamcap install-service``."""
    if args.print:
        cfg = Path(args.config).expanduser().absolute() if args.config else None
        command = [args.exec] if args.exec else find_executable()
        print(render_unit(build_exec_start(command, cfg)), end="")
        return 0
    target = install_service(
        config=args.config, unit_dir=args.unit_dir, executable=args.exec, force=args.force
    )
    print(f"wrote {target}")
    if args.enable:
        _systemctl("daemon-reload")
        _systemctl("enable", "--now", UNIT_NAME)
        print("enabled and started; logs: journalctl --user -u streamcap -f")
    else:
        print("next: systemctl --user daemon-reload && systemctl --user enable --now streamcap")
        print("logs: journalctl --user -u streamcap -f")
    return 0


def add_install_service_parser(subparsers: Any) -> None:
    """Register ``streamcap install-service`` on an argparse subparsers object."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "install-service",
        help="install streamcap as a systemd user service",
        description="Write ~/.config/systemd/user/streamcap.service (Type=notify, watchdog, "
        "restart on failure) with ExecStart pointing at this streamcap.",
    )
    p.add_argument("--config", metavar="FILE", help="configuration file the service runs with")
    p.add_argument("--unit-dir", metavar="DIR", help="where to write the unit "
                   "(default: ~/.config/systemd/user)")
    p.add_argument("--exec", metavar="PATH", help="the streamcap executable (default: this one)")
    p.add_argument("--force", action="store_true", help="replace an existing, different unit")
    p.add_argument("--enable", action="store_true",
                   help="also run systemctl --user daemon-reload and enable --now")
    p.add_argument("--print", action="store_true", help="print the unit instead of writing it")
    p.set_defaults(func=run_install_service)
