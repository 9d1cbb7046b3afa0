"""Real OBS Studio for tests: its own Xvfb display, its own HOME, obs-websocket on a free port.

Also an RTMP receiver (PyAV in listen mode) that pulls the CEA-608 caption bytes out of the
H.264 SEI messages of the stream OBS sends, and a tiny CEA-608 text decoder.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import simpleobsws

from .net import free_port
from .timing import unit as timeout_unit  # noqa: F401 (re-exported for test_obs)


def missing_programs() -> list[str]:
    """The programs these helpers need that are not installed."""
    return [p for p in ("obs", "Xvfb") if shutil.which(p) is None]


class Xvfb:
    """A virtual X display on a free display number (``-displayfd``)."""

    def __init__(self, timeout: float) -> None:
        r, w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                ["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
                pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(w)
        try:
            self.display = ":" + _read_line(r, timeout, "Xvfb did not report its display")
        except BaseException:
            self.close()
            raise
        finally:
            os.close(r)

    def close(self) -> None:
        _kill_group(self.proc)


def _read_line(fd: int, timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    buf = b""
    os.set_blocking(fd, False)
    while b"\n" not in buf:
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        try:
            chunk = os.read(fd, 64)
        except BlockingIOError:
            time.sleep(0.05)
            continue
        if not chunk:
            raise RuntimeError(what)
        buf += chunk
    return buf.decode().strip()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group this helper started (its own session) and reap the leader."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


class ObsStudio:
    """OBS Studio from the system, headless, with obs-websocket enabled through ``global.ini``."""

    def __init__(self, root: Path, display: str, *, password: str | None = None) -> None:
        self.home = root / "home"
        self.port = free_port()
        self.password = password
        self.display = display
        self.log_path = root / "obs.log"
        self.proc: subprocess.Popen[bytes] | None = None
        conf = self.home / ".config" / "obs-studio"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "global.ini").write_text(
            "[General]\nFirstRun=true\nEnableAutoUpdates=false\n\n"
            "[OBSWebSocket]\nFirstLoad=false\nServerEnabled=true\n"
            f"ServerPort={self.port}\nAlertsEnabled=false\n"
            f"AuthRequired={'true' if password else 'false'}\n"
            f"ServerPassword={password or ''}\n",
            encoding="utf-8",
        )

    def start(self, timeout: float) -> None:
        """Start OBS and wait until obs-websocket accepts connections."""
        assert self.proc is None or self.proc.poll() is not None
        env = dict(
            os.environ, HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / ".config"),
            DISPLAY=self.display, LIBGL_ALWAYS_SOFTWARE="1",
        )
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["obs", "--minimize-to-tray", "--multi", "--disable-updater",
                 "--disable-missing-files-check"],
                env=env, cwd=str(self.home), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"OBS exited with {self.proc.returncode}; see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise TimeoutError(
                        f"OBS did not open port {self.port}; see {self.log_path}"
                    ) from None
                time.sleep(0.1)

    def kill(self) -> None:
        """Kill OBS at once (like a crash) and wait for it to be gone."""
        if self.proc is not None:
            _kill_group(self.proc)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the OBS log, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def client(self, password: str | None = None) -> Any:
        """A connected and identified simpleobsws client (raises when that fails)."""
        c = simpleobsws.WebSocketClient(
            url=f"ws://127.0.0.1:{self.port}",
            password=self.password if password is None else password,
        )
        await c.connect()
        if not await c.wait_until_identified(10):
            await c.disconnect()
            raise RuntimeError("obs-websocket did not identify the test client")
        return c


async def request(client: Any, kind: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Make one obs-websocket request and return its data (raises when OBS says it failed)."""
    res = await client.call(simpleobsws.Request(kind, data))
    if not res.ok():
        raise RuntimeError(f"{kind} failed: code {res.requestStatus.code} "
                           f"{res.requestStatus.comment or ''}")
    return dict(res.responseData or {})


async def program_screenshot(client: Any) -> Any:
    """``GetSourceScreenshot`` of the current program scene as a PIL image."""
    from PIL import Image

    scene = (await request(client, "GetCurrentProgramScene"))["currentProgramSceneName"]
    data = await request(client, "GetSourceScreenshot", {"sourceName": scene, "imageFormat": "png"})
    b64 = data["imageData"].split(",", 1)[1]
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")


async def wait_for(pred: Any, timeout: float, what: str, step: float = 0.1) -> Any:
    """Await ``pred()`` (a coroutine function) until it returns a truthy value; fail after
    ``timeout`` seconds with ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(step)


# --- the stream side -----------------------------------------------------------------------


def cea608_from_h264(packet: bytes) -> bytes:
    """The CEA-608 field-1 byte pairs in the ATSC A/53 (``GA94``) SEI messages of a packet."""
    data = packet.replace(b"\x00\x00\x03", b"\x00\x00")  # emulation prevention bytes
    out = bytearray()
    i = data.find(b"GA94")
    while i >= 0:
        j = i + 4
        if j + 2 < len(data) and data[j] == 0x03:  # user_data_type_code: cc_data
            count = data[j + 1] & 0x1F
            triplets = data[j + 3 : j + 3 + 3 * count]
            for k in range(0, len(triplets) - 2, 3):
                head = triplets[k]
                if head & 0x04 and head & 0x03 == 0:  # cc_valid, NTSC field 1
                    out += bytes(triplets[k + 1 : k + 3])
        i = data.find(b"GA94", i + 4)
    return bytes(out)


def cea608_text(pairs: bytes) -> str:
    """Printable text of CEA-608 byte pairs (control codes become spaces; parity is dropped)."""
    chars: list[str] = []
    for k in range(0, len(pairs) - 1, 2):
        a, b = pairs[k] & 0x7F, pairs[k + 1] & 0x7F
        if a >= 0x20:
            chars.append(chr(a))
            if b >= 0x20:
                chars.append(chr(b))
        elif a:
            chars.append(" ")
    return " ".join("".join(chars).split())


class RtmpCaptionReceiver:
    """An RTMP server (FFmpeg's listen mode through PyAV) that collects the stream's captions."""

    def __init__(self, timeout: float) -> None:
        self.port = free_port()
        self.url = f"rtmp://127.0.0.1:{self.port}/live"
        self.key = "streamcap"
        self.packets = 0
        self.error: str | None = None
        self._pairs = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timeout = timeout
        self._thread = threading.Thread(target=self._run, name="rtmp-receiver", daemon=True)
        self._thread.start()

    @property
    def text(self) -> str:
        with self._lock:
            return cea608_text(bytes(self._pairs))

    def _run(self) -> None:
        import av

        try:
            with av.open(f"{self.url}/{self.key}", options={"listen": "1"},
                         timeout=self._timeout) as container:
                video = container.streams.video[0]
                for packet in container.demux(video):
                    if self._stop.is_set():
                        break
                    self.packets += 1
                    pairs = cea608_from_h264(bytes(packet))
                    if pairs:
                        with self._lock:
                            self._pairs += pairs
        except Exception as exc:  # the publisher hanging up ends the stream with an I/O error
            self.error = f"{type(exc).__name__}: {exc}"

    def close(self, timeout: float) -> None:
        self._stop.set()
        self._thread.join(timeout)
