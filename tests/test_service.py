"""systemd integration: sd_notify messages, the watchdog gate and the user unit file."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support.notify import NotifyListener
from support.timing import unit as timeout_unit

from streamcap.errors import ConfigError, StreamcapError
from streamcap.service import (
    DEFAULT_EXEC_START,
    Liveness,
    Notifier,
    WatchdogGate,
    add_install_service_parser,
    install_service,
    quote_arg,
    render_unit,
    watchdog_interval,
)

REPO = Path(__file__).resolve().parents[1]
UNIT_FILE = REPO / "systemd" / "streamcap.service"


def test_notifier_sends_the_protocol_messages(
    notify_socket: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """READY=1, STATUS=..., WATCHDOG=1 and STOPPING=1 arrive as datagrams on NOTIFY_SOCKET."""
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.env_value)
    n = Notifier()
    assert n.enabled
    n.ready()
    n.status("captioning\nREADY=1 sneaky")
    n.watchdog()
    n.extend_timeout(2.5)
    n.stopping()
    n.close()
    n.watchdog()  # closed: a no-op, not an error
    got = [notify_socket.recv() for _ in range(5)]
    assert got[0] == "READY=1"
    assert got[1] == "STATUS=captioning READY=1 sneaky"  # a status can never inject a line
    assert got[2:] == ["WATCHDOG=1", "EXTEND_TIMEOUT_USEC=2500000", "STOPPING=1"]


def test_notifier_in_a_real_child_process(notify_socket: NotifyListener) -> None:
    """A separate process started with NOTIFY_SOCKET in its environment reaches the socket."""
    code = (
        "from streamcap.service import Notifier\n"
        "n = Notifier()\n"
        "n.ready('model loaded')\n"
        "n.watchdog()\n"
    )
    env = dict(os.environ, NOTIFY_SOCKET=notify_socket.env_value)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60 * timeout_unit())
    assert notify_socket.recv() == "READY=1\nSTATUS=model loaded"
    assert notify_socket.recv() == "WATCHDOG=1"


def test_notifier_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """An abstract-namespace NOTIFY_SOCKET (leading @), as systemd may use, works too."""
    name = f"streamcap-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5 * timeout_unit())
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    try:
        n = Notifier()
        n.ready()
        n.close()
        assert sock.recv(4096).decode() == "READY=1"
    finally:
        sock.close()


def test_notifier_without_systemd_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NOTIFY_SOCKET, or with one nobody listens on, every call silently does nothing."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    n.ready()
    n.watchdog()
    n.stopping()
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
    gone = Notifier()
    assert not gone.enabled
    gone.ready()
    gone.status("x")


def test_watchdog_interval_from_the_environment() -> None:
    """The ping interval is half WATCHDOG_USEC, and absent for another PID or a bad value."""
    pid = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": pid}) == 2.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None
    for bad in ("", "0", "-5", "abc", "1e6"):
        assert watchdog_interval({"WATCHDOG_USEC": bad}) is None


def test_notifier_reads_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Notifier.watchdog_interval() reads WATCHDOG_USEC from the process environment."""
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert Notifier().watchdog_interval() == 5.0


def _live(progress: float, backlog: float = 1.0, cap: bool = True, work: bool = True) -> Liveness:
    return Liveness(capture_alive=cap, worker_alive=work, progress=progress, backlog_s=backlog)


def test_watchdog_gate_pings_at_the_interval_while_healthy() -> None:
    """A healthy pipeline gets a ping at once and then one per interval, not one per check."""
    gate = WatchdogGate(interval_s=5.0, stall_s=20.0)
    pings = [t for t in range(0, 31) if gate.check(float(t), _live(progress=float(t)))]
    assert pings == [0, 5, 10, 15, 20, 25, 30]
    assert gate.healthy


def test_watchdog_gate_stops_when_the_worker_hangs_with_audio_waiting() -> None:
    """No progress while audio waits longer than stall_s stops the pings until progress resumes."""
    gate = WatchdogGate(interval_s=1.0, stall_s=3.0)
    assert gate.check(0.0, _live(progress=1.0))
    results = {t: gate.check(float(t), _live(progress=1.0, backlog=2.0)) for t in range(1, 8)}
    assert results[1] and results[2] and results[3]
    assert not any(results[t] for t in range(4, 8))
    assert not gate.healthy and gate.reason is not None and "no progress" in gate.reason
    assert gate.check(8.0, _live(progress=2.0))
    assert gate.healthy


def test_watchdog_gate_idle_is_not_a_hang() -> None:
    """Without a backlog (e.g. the device is lost, reopening) an unchanged progress still pings."""
    gate = WatchdogGate(interval_s=1.0, stall_s=2.0)
    pings = [t for t in range(0, 10) if gate.check(float(t), _live(progress=5.0, backlog=0.0))]
    assert pings == list(range(10))


@pytest.mark.parametrize(
    ("live", "word"),
    [(_live(1.0, cap=False), "capture"), (_live(1.0, work=False), "worker")],
)
def test_watchdog_gate_dead_threads_stop_pings(live: Liveness, word: str) -> None:
    """A dead capture or worker thread means no ping and a reason naming the culprit."""
    gate = WatchdogGate(interval_s=1.0, stall_s=10.0)
    assert not gate.check(0.0, live)
    assert gate.reason is not None and word in gate.reason


def test_watchdog_gate_rejects_bad_settings() -> None:
    """Zero or negative intervals are refused."""
    with pytest.raises(ValueError):
        WatchdogGate(0.0, 1.0)
    with pytest.raises(ValueError):
        WatchdogGate(1.0, -1.0)


# --- the unit file -------------------------------------------------------------------------------


def _verify(unit: Path, home: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `systemd-analyze --user verify` with a private HOME and runtime dir."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze not found: install the systemd package")
    run = tmp_path / "xdg-run"
    run.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(run))
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.run(
        ["systemd-analyze", "--user", "verify", str(unit)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60 * timeout_unit(),
        check=False,
    )


def _fake_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    bin_dir = home / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    exe = bin_dir / "streamcap"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return home


def test_repository_unit_is_the_rendered_default() -> None:
    """systemd/streamcap.service is exactly what install-service renders for the default path."""
    assert UNIT_FILE.read_text(encoding="utf-8") == render_unit(DEFAULT_EXEC_START)


def test_unit_declares_notify_watchdog_and_restart() -> None:
    """The unit is Type=notify with a watchdog, restarts on failure and logs to the journal."""
    lines = set(UNIT_FILE.read_text(encoding="utf-8").splitlines())
    for needed in (
        "Type=notify",
        "WatchdogSec=30",
        "Restart=on-failure",
        "StandardOutput=journal",
        "WantedBy=default.target",
        "NoNewPrivileges=yes",
    ):
        assert needed in lines
    assert not any(x.startswith(("PrivateDevices=", "ProtectHome=")) for x in lines)


@pytest.mark.system
def test_repository_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze --user verify` accepts the shipped unit without a single warning."""
    proc = _verify(UNIT_FILE, _fake_home(tmp_path), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""


@pytest.mark.system
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The verify check is not blind: a misspelt option and a missing program are reported."""
    home = _fake_home(tmp_path)
    broken = tmp_path / "streamcap.service"
    broken.write_text(
        render_unit("/nonexistent/streamcap run").replace("Type=notify", "Type=notifyy")
    )
    proc = _verify(broken, home, tmp_path)
    assert "notifyy" in proc.stderr
    assert "/nonexistent/streamcap" in proc.stderr


@pytest.mark.system
def test_install_service_writes_a_valid_unit(tmp_path: Path) -> None:
    """install-service writes a unit whose ExecStart runs an existing streamcap with the config."""
    cfg = tmp_path / "my config.yaml"
    cfg.write_text("asr:\n  model: tiny.en\n")
    unit_dir = tmp_path / "units"
    target = install_service(config=cfg, unit_dir=unit_dir)
    assert target == unit_dir / "streamcap.service"
    text = target.read_text(encoding="utf-8")
    exec_line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    first = exec_line.removeprefix("ExecStart=").split()[0]
    assert Path(first).is_absolute() and os.access(first, os.X_OK)
    assert f'--config "{cfg}"' in exec_line
    proc = _verify(target, _fake_home(tmp_path), tmp_path)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    # Installing the same unit again is fine; a different one needs --force.
    assert install_service(config=cfg, unit_dir=unit_dir) == target
    with pytest.raises(StreamcapError, match="--force"):
        install_service(unit_dir=unit_dir)
    install_service(unit_dir=unit_dir, force=True)
    assert "--config" not in target.read_text(encoding="utf-8")


def test_install_service_bad_arguments(tmp_path: Path) -> None:
    """A missing config or a non-executable --exec is a one-line error naming the option."""
    with pytest.raises(ConfigError, match=r"^--config: .*nope\.yaml: no such file$"):
        install_service(config=tmp_path / "nope.yaml", unit_dir=tmp_path)
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(ConfigError, match=r"^--exec: "):
        install_service(executable=plain, unit_dir=tmp_path)
    assert not (tmp_path / "streamcap.service").exists()


def test_install_service_unwritable_directory(tmp_path: Path) -> None:
    """A unit directory that cannot be created gives one line naming the path."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StreamcapError, match="cannot write"):
        install_service(unit_dir=blocker / "sub")


def test_quote_arg_escapes_specifiers_and_spaces() -> None:
    """Paths with spaces, % and $ survive systemd's command-line parsing; newlines are refused."""
    assert quote_arg("/usr/bin/streamcap") == "/usr/bin/streamcap"
    assert quote_arg("/home/a b/x") == '"/home/a b/x"'
    assert quote_arg("/x/100%/$HOME") == "/x/100%%/$$HOME"
    assert quote_arg('a"b c') == '"a\\"b c"'
    for bad in ("", "a\nb", "a\0b"):
        with pytest.raises(StreamcapError):
            quote_arg(bad)


def test_install_service_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`streamcap install-service --print` prints the unit; with --unit-dir it writes it."""
    parser = argparse.ArgumentParser()
    add_install_service_parser(parser.add_subparsers())
    args = parser.parse_args(["install-service", "--print"])
    assert args.func(args) == 0
    assert "Type=notify" in capsys.readouterr().out
    args = parser.parse_args(["install-service", "--unit-dir", str(tmp_path)])
    assert args.func(args) == 0
    assert "systemctl --user" in capsys.readouterr().out
    assert (tmp_path / "streamcap.service").is_file()
