"""Audio sources: microphone (PortAudio), a file paced at real time, raw PCM on stdin.

Every source hands 16 kHz mono float32 blocks to ``on_block`` from its own thread and reports
its state (:data:`SourceState`). ``open_source("mic" | "mic:DEVICE" | "file:PATH" | "-", cfg)``
builds one from the ``--input`` spec.

:class:`MicrophoneSource` keeps the PortAudio callback minimal (copy the block into a bounded
queue, count overflows and drops); a pump thread converts the blocks with
:class:`~streamcap.audio.reframe.Reframer` and calls ``on_block``. When the device goes away
(the stream finishes on its own, no callback arrives for ``stall_timeout_s``, or PortAudio
raises) the source goes ``lost``, then ``reopening`` with exponential backoff up to
``reopen_backoff_max_s`` (re-initialising PortAudio so a restarted sound server or a reloaded
sink is seen), and ``running`` again once a stream is open. Audio already captured is always
delivered, also on loss and on stop.

The timing and framing logic (:class:`Backoff`, :class:`Pacer`, :class:`PcmAssembler`) is pure.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol

import numpy as np

from ..config import AudioConfig
from ..errors import AudioDeviceError, AudioError, ConfigError
from ..events import SAMPLE_RATE
from .decode import load_audio
from .devices import (
    PULSE_PCM,
    DeviceInfo,
    _sd,
    list_input_devices,
    monitor_of,
    select_device,
)
from .reframe import Reframer, Samples

log = logging.getLogger("streamcap.audio")

SourceState = Literal["starting", "running", "lost", "reopening", "finished", "stopped"]
BlockCallback = Callable[[Samples], None]
StateCallback = Callable[[SourceState, str], None]


class AudioSource(Protocol):
    """What the daemon drives: blocks of 16 kHz mono float32 out, a state to report."""

    @property
    def description(self) -> str: ...

    @property
    def state(self) -> SourceState: ...

    @property
    def dropped_blocks(self) -> int: ...

    @property
    def finished(self) -> bool: ...

    @property
    def alive(self) -> bool: ...

    @property
    def last_error(self) -> str | None: ...

    def start(self, on_block: BlockCallback, on_state: StateCallback | None = None) -> None: ...

    def stop(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...


# --- pure helpers ----------------------------------------------------------------------------


class Backoff:
    """Exponential backoff delays: ``initial``, doubled each time, capped at ``maximum``."""

    def __init__(self, initial: float, maximum: float, factor: float = 2.0) -> None:
        if initial <= 0 or maximum <= 0 or factor < 1:
            raise ValueError("backoff needs initial > 0, maximum > 0 and factor >= 1")
        self.initial = min(initial, maximum)
        self.maximum = maximum
        self.factor = factor
        self._next = self.initial

    def next(self) -> float:
        """The delay before the next attempt."""
        d = self._next
        self._next = min(self._next * self.factor, self.maximum)
        return d

    def reset(self) -> None:
        self._next = self.initial


class Pacer:
    """Releases ``total`` samples in whole blocks no faster than ``rate`` samples per second."""

    def __init__(self, total: int, block: int, rate: int = SAMPLE_RATE) -> None:
        if block <= 0 or rate <= 0 or total < 0:
            raise ValueError("pacer needs block > 0, rate > 0 and total >= 0")
        self.total = total
        self.block = block
        self.rate = rate
        self.sent = 0

    @property
    def done(self) -> bool:
        return self.sent >= self.total

    def step(self, elapsed: float) -> tuple[int, int, float]:
        """At ``elapsed`` seconds since the start: (start, end) of the samples to release now,
        and how long to wait before asking again."""
        due = min(self.total, int(elapsed * self.rate))
        start = self.sent
        end = start
        if due >= self.total:
            end = self.total
        elif due - start >= self.block:
            end = start + (due - start) // self.block * self.block
        self.sent = end
        wait = max(0.0, min(self.total, self.sent + self.block) / self.rate - elapsed)
        return start, end, wait


class PcmAssembler:
    """Raw s16le bytes in any chunking → whole interleaved int16 frames (carries the rest)."""

    def __init__(self, channels: int) -> None:
        if channels <= 0:
            raise ValueError("channels must be positive")
        self.frame_bytes = 2 * channels
        self._rest = b""

    def feed(self, data: bytes) -> np.ndarray[Any, np.dtype[np.int16]]:
        buf = self._rest + data
        usable = len(buf) - len(buf) % self.frame_bytes
        self._rest = buf[usable:]
        return np.frombuffer(buf[:usable], dtype="<i2").astype(np.int16)

    @property
    def pending_bytes(self) -> int:
        return len(self._rest)


# --- shared shell --------------------------------------------------------------------------------


class _ThreadedSource:
    """State, callbacks, the stop flag and the worker thread shared by all sources."""

    def __init__(self, description: str) -> None:
        self._description = description
        self._state: SourceState = "stopped"
        self._cond = threading.Condition()
        self._stop_evt = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_block: BlockCallback | None = None
        self._on_state: StateCallback | None = None
        self._dropped = 0
        self._last_error: str | None = None
        self._started = False
        self._consumer_failed = False
        self.blocks_delivered = 0
        self.samples_delivered = 0

    @property
    def description(self) -> str:
        return self._description

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def dropped_blocks(self) -> int:
        return self._dropped

    @property
    def finished(self) -> bool:
        return self._state == "finished"

    @property
    def alive(self) -> bool:
        """True while the capture thread runs (also while the device is lost and reopening)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def _set_state(self, state: SourceState, detail: str = "") -> None:
        with self._cond:
            if self._state == state:
                return
            self._state = state
            self._cond.notify_all()
        log.info("%s: %s%s", self._description, state, f" ({detail})" if detail else "")
        cb = self._on_state
        if cb is not None:
            try:
                cb(state, detail)
            except Exception:
                log.exception("state callback failed")

    def _deliver(self, samples: Samples) -> bool:
        """Hand ``samples`` to the consumer; False (and the source stops) if the consumer fails."""
        if self._consumer_failed:
            return False
        if samples.size == 0:
            return True
        cb = self._on_block
        assert cb is not None
        try:
            cb(samples)
        except Exception as exc:
            log.exception("%s: the block consumer failed; stopping capture", self._description)
            self._last_error = f"block consumer failed: {type(exc).__name__}: {exc}"
            self._consumer_failed = True
            self._stop_evt.set()
            return False
        self.blocks_delivered += 1
        self.samples_delivered += int(samples.size)
        return True

    def _begin(self, on_block: BlockCallback, on_state: StateCallback | None) -> None:
        if self._started:
            raise AudioError(f"{self._description}: already started")
        self._started = True
        self._on_block = on_block
        self._on_state = on_state
        self._set_state("starting")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        self._thread = threading.Thread(target=self._run_guarded, args=(target,), name=name,
                                        daemon=True)
        self._thread.start()

    def _run_guarded(self, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception as exc:  # the thread must never die silently
            log.exception("%s: capture thread failed", self._description)
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._set_state("stopped", self._last_error)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the source finished or stopped; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._state in ("finished", "stopped"), timeout)

    def _join(self, timeout: float) -> None:
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)


# --- microphone ----------------------------------------------------------------------------------

_env_lock = threading.Lock()
# PortAudio is one per process: re-initialising it (to see devices that appeared since) closes
# every open stream, those of the other inputs too. Opening, listing and re-initialising are
# serialised here, and a re-initialisation is skipped while another input's stream is open (the
# PulseAudio/PipeWire sources are listed with pactl and need none).
_pa_lock = threading.RLock()
_open_streams = 0


@contextlib.contextmanager
def _pulse_source_env(source: str | None) -> Iterator[None]:
    """Set ``PULSE_SOURCE`` while a stream on the ALSA ``pulse`` device is opened."""
    if source is None:
        yield
        return
    with _env_lock:
        old = os.environ.get("PULSE_SOURCE")
        os.environ["PULSE_SOURCE"] = source
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("PULSE_SOURCE", None)
            else:
                os.environ["PULSE_SOURCE"] = old


@dataclass(frozen=True)
class _Format:
    rate: int
    channels: int


class MicrophoneSource(_ThreadedSource):
    """Capture from a PortAudio input (or a PulseAudio/PipeWire source), surviving device loss."""

    def __init__(
        self,
        device: str | int | None = None,
        block_ms: int = 50,
        queue_seconds: float = 10.0,
        reopen_backoff_max_s: float = 10.0,
        stall_timeout_s: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(f"microphone {device if device is not None else '(default)'}")
        self.device = device
        self.block_ms = block_ms
        self.queue_seconds = queue_seconds
        self.reopen_backoff_max_s = reopen_backoff_max_s
        self.stall_timeout_s = stall_timeout_s
        self._clock = clock
        self._queue: queue.Queue[np.ndarray[Any, Any]] = queue.Queue(
            maxsize=max(2, int(queue_seconds * 1000 / block_ms))
        )
        self._stream: Any = None
        self._stream_dead = threading.Event()
        self._closing = False
        self._last_cb = 0.0
        self._reframer: Reframer | None = None
        self.overflows = 0
        self.queue_drops = 0
        self.reopen_count = 0
        self.reopen_attempts = 0
        self.choice: DeviceInfo | None = None
        self.format: _Format | None = None

    @property
    def dropped_blocks(self) -> int:
        """Blocks lost before ``on_block``: PortAudio input overflows plus queue-full drops."""
        return self.overflows + self.queue_drops

    # The PortAudio callback: copy, hand over, count. Nothing else.
    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        self._last_cb = self._clock()
        if status.input_overflow:
            self.overflows += 1
        try:
            self._queue.put_nowait(indata.copy())
        except queue.Full:
            self.queue_drops += 1

    def _finished_callback(self) -> None:
        if not self._closing:
            self._stream_dead.set()

    def find_device(self) -> DeviceInfo:
        """The input ``device`` names now (raises :class:`AudioDeviceError`); opens nothing."""
        return self._resolve(refresh=False)

    def _resolve(self, refresh: bool) -> DeviceInfo:
        want_pulse = not (isinstance(self.device, int) or (
            isinstance(self.device, str) and self.device.strip().isdigit()))
        with _pa_lock:
            if refresh and _open_streams > 0:
                log.debug("%s: not re-initialising PortAudio: %d other stream(s) open",
                          self._description, _open_streams)
                refresh = False
            devices = list_input_devices(refresh=refresh, include_pulse=want_pulse)
        return select_device(self.device, devices)

    def _pick_format(self, sd: Any, d: DeviceInfo) -> _Format:
        native = int(d.default_rate) or 48000
        chans = max(1, d.channels)
        candidates = [(SAMPLE_RATE, 1), (native, 1), (native, min(2, chans)), (native, chans)]
        last = ""
        for rate, ch in dict.fromkeys(candidates):
            try:
                sd.check_input_settings(device=d.index, samplerate=rate, channels=ch,
                                        dtype="float32")
                return _Format(rate, ch)
            except Exception as exc:  # sounddevice raises PortAudioError or ValueError
                last = str(exc)
        raise AudioDeviceError(f"input {d.label!r}: no usable sample format ({last})")

    def _open(self, d: DeviceInfo) -> None:
        """Open and start a stream on ``d`` (raises :class:`AudioDeviceError`)."""
        global _open_streams
        sd = _sd()
        with _pa_lock, _pulse_source_env(d.pulse_source):
            fmt = self._pick_format(sd, d)
            self._stream_dead.clear()
            self._closing = False
            try:
                stream = sd.InputStream(
                    device=d.index,
                    samplerate=fmt.rate,
                    channels=fmt.channels,
                    dtype="float32",
                    blocksize=max(1, fmt.rate * self.block_ms // 1000),
                    callback=self._callback,
                    finished_callback=self._finished_callback,
                )
                self._last_cb = self._clock()
                stream.start()
            except (sd.PortAudioError, ValueError) as exc:
                raise AudioDeviceError(f"cannot open input {d.label!r}: {exc}") from None
            _open_streams += 1
        self._stream = stream
        self.choice = d
        self.format = fmt
        self._reframer = Reframer(fmt.rate, fmt.channels)
        where = f"PulseAudio source {d.pulse_source}" if d.pulse_source else f"[{d.index}] {d.name}"
        self._description = f"microphone {where} ({fmt.rate} Hz, {fmt.channels} ch)"

    def _close_stream(self) -> None:
        global _open_streams
        stream, self._stream = self._stream, None
        if stream is None:
            return
        self._closing = True
        with _pa_lock:
            _open_streams -= 1
            with contextlib.suppress(Exception):
                stream.abort(ignore_errors=True)
            with contextlib.suppress(Exception):
                stream.close(ignore_errors=True)

    def _drain(self) -> bool:
        """Deliver every queued block and the reframer's tail; False if the consumer failed."""
        rf = self._reframer
        while True:
            try:
                block = self._queue.get_nowait()
            except queue.Empty:
                break
            if rf is not None and not self._deliver(rf.feed(block)):
                return False
        if rf is not None:
            self._reframer = None
            return self._deliver(rf.flush())
        return True

    def start(self, on_block: BlockCallback, on_state: StateCallback | None = None) -> None:
        """Open the device (raises :class:`AudioDeviceError`), then capture on a thread."""
        self._begin(on_block, on_state)
        try:
            self._open(self._resolve(refresh=False))
        except AudioDeviceError as exc:
            self._last_error = str(exc)
            self._set_state("stopped", str(exc))
            raise
        self._set_state("running", self._description)
        self._spawn(self._pump, "streamcap-capture")

    def _pump(self) -> None:
        while not self._stop_evt.is_set():
            reason = ""
            if self._stream_dead.is_set():
                reason = "the stream ended (device unplugged or sound server gone)"
            elif self._clock() - self._last_cb > self.stall_timeout_s:
                reason = f"no audio from the device for {self.stall_timeout_s:g} s"
            if reason:
                self._lose(reason)
                self._reopen()
                continue
            try:
                block = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            rf = self._reframer
            if rf is not None and not self._deliver(rf.feed(block)):
                break
        self._close_stream()
        self._drain()
        self._set_state("stopped")

    def _lose(self, reason: str) -> None:
        self._last_error = reason
        log.warning("%s: device lost: %s", self._description, reason)
        self._close_stream()
        self._drain()
        self._set_state("lost", reason)

    def _reopen(self) -> None:
        backoff = Backoff(min(0.25, self.reopen_backoff_max_s), self.reopen_backoff_max_s)
        while True:
            delay = backoff.next()
            if self._stop_evt.wait(delay):
                return
            self._set_state("reopening", f"trying again every {backoff.maximum:g} s at most")
            self.reopen_attempts += 1
            try:
                # This stream is closed: PortAudio is re-initialised unless another is open.
                self._open(self._resolve(refresh=True))
            except AudioDeviceError as exc:
                self._last_error = str(exc)
                log.info("%s: reopen failed (%s)", self._description, exc)
                continue
            except Exception as exc:  # PortAudioError from re-initialisation, and the like
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.info("%s: reopen failed (%s)", self._description, self._last_error)
                continue
            self.reopen_count += 1
            self._set_state("running", f"reopened {self._description}")
            return

    def stop(self) -> None:
        """Stop capturing; blocks already captured are still delivered. Idempotent."""
        self._stop_evt.set()
        if self._thread is None:
            self._close_stream()
            if self._started:
                self._set_state("stopped")
            return
        self._join(5.0)


# --- file paced at real time -------------------------------------------------------------------


class FilePacedSource(_ThreadedSource):
    """Decode a file and release it in blocks at wall-clock real time, like a live input."""

    def __init__(
        self,
        path: str | Path,
        block_ms: int = 50,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(f"file {path}")
        self.path = Path(path)
        self.block_ms = block_ms
        self._clock = clock
        self.duration = 0.0

    def start(self, on_block: BlockCallback, on_state: StateCallback | None = None) -> None:
        """Decode the file (raises :class:`AudioError`), then release it on a thread."""
        self._begin(on_block, on_state)
        try:
            samples = load_audio(self.path)
        except AudioError as exc:
            self._last_error = str(exc)
            self._set_state("stopped", str(exc))
            raise
        self.duration = len(samples) / SAMPLE_RATE
        self._description = f"file {self.path} ({self.duration:.1f} s, paced at real time)"
        self._set_state("running")
        self._spawn(lambda: self._run(samples), "streamcap-file")

    def _run(self, samples: Samples) -> None:
        pacer = Pacer(len(samples), max(1, SAMPLE_RATE * self.block_ms // 1000))
        t0 = self._clock()
        while not pacer.done:
            start, end, wait = pacer.step(self._clock() - t0)
            for a in range(start, end, pacer.block):
                if not self._deliver(samples[a : min(end, a + pacer.block)]):
                    self._set_state("stopped", self._last_error or "")
                    return
            if pacer.done:
                break
            if self._stop_evt.wait(wait):
                self._set_state("stopped")
                return
        self._set_state("finished")

    def stop(self) -> None:
        """Stop releasing audio. Idempotent."""
        self._stop_evt.set()
        self._join(5.0)
        if self._started and self._state not in ("finished", "stopped"):
            self._set_state("stopped")


# --- raw PCM on stdin ----------------------------------------------------------------------------


class StdinSource(_ThreadedSource):
    """Raw signed 16-bit little-endian PCM at ``rate`` Hz with ``channels`` interleaved."""

    def __init__(
        self,
        rate: int = SAMPLE_RATE,
        channels: int = 1,
        stream: BinaryIO | None = None,
        block_ms: int = 50,
    ) -> None:
        super().__init__(f"stdin (s16le, {rate} Hz, {channels} ch)")
        self.rate = rate
        self.channels = channels
        self.block_ms = block_ms
        self._stream = stream
        self.trailing_bytes = 0

    def _input(self) -> BinaryIO:
        return self._stream if self._stream is not None else sys.stdin.buffer

    def start(self, on_block: BlockCallback, on_state: StateCallback | None = None) -> None:
        """Start reading; raises :class:`AudioError` when stdin is a terminal."""
        self._begin(on_block, on_state)
        stream = self._input()
        with contextlib.suppress(AttributeError, ValueError, OSError):
            if stream.isatty():
                msg = (
                    "--input -: stdin is a terminal; pipe raw s16le PCM into it, e.g. "
                    "ffmpeg -i talk.mp3 -f s16le -ac 1 -ar 16000 - | streamcap run --input -"
                )
                self._last_error = msg
                self._set_state("stopped", msg)
                raise AudioError(msg)
        self._set_state("running")
        self._spawn(lambda: self._run(stream), "streamcap-stdin")

    def _reader(self, stream: BinaryIO, nbytes: int) -> Callable[[], bytes | None]:
        """A read function returning b"" at EOF and None when nothing arrived (to poll stop)."""
        fd: int | None
        try:
            fd = stream.fileno()
            os.fstat(fd)
        except (AttributeError, ValueError, OSError):
            fd = None
        if fd is not None:
            # Read the descriptor directly (nothing has read from the stream's buffer before us)
            # so that a stop request is seen while no data arrives.
            rfd: int = fd

            def read_fd() -> bytes | None:
                ready, _, _ = select.select([rfd], [], [], 0.1)
                if not ready:
                    return None
                return os.read(rfd, nbytes)

            return read_fd
        read1 = getattr(stream, "read1", None)

        def read_stream() -> bytes | None:
            data = read1(nbytes) if read1 is not None else stream.read(nbytes)
            return bytes(data) if data is not None else None

        return read_stream

    def _run(self, stream: BinaryIO) -> None:
        nbytes = max(2 * self.channels, self.rate * self.block_ms // 1000 * 2 * self.channels)
        read = self._reader(stream, nbytes)
        asm = PcmAssembler(self.channels)
        rf = Reframer(self.rate, self.channels)
        while not self._stop_evt.is_set():
            try:
                data = read()
            except OSError as exc:
                self._last_error = f"cannot read stdin: {exc.strerror or exc}"
                log.error("%s: %s", self._description, self._last_error)
                break
            if data is None:
                continue
            if data == b"":
                self.trailing_bytes = asm.pending_bytes
                if self.trailing_bytes:
                    log.warning("%s: ignored %d trailing bytes (not a whole frame)",
                                self._description, self.trailing_bytes)
                self._deliver(rf.flush())
                self._set_state("finished")
                return
            if not self._deliver(rf.feed(asm.feed(data))):
                break
        self._deliver(rf.flush())
        self._set_state("stopped", self._last_error or "")

    def stop(self) -> None:
        """Stop reading (a blocked read of a non-descriptor stream is abandoned). Idempotent."""
        self._stop_evt.set()
        self._join(2.0)
        if self._started and self._state not in ("finished", "stopped"):
            self._set_state("stopped")


# --- the --input spec --------------------------------------------------------------------------


class MonitorSource(MicrophoneSource):
    """Capture what plays on an output: the monitor source of ``sink`` (the default output
    when None, looked up again at every (re)open, so a changed default output is followed)."""

    def __init__(self, sink: str | None, block_ms: int = 50, queue_seconds: float = 10.0,
                 reopen_backoff_max_s: float = 10.0) -> None:
        super().__init__(None, block_ms, queue_seconds, reopen_backoff_max_s)
        self.sink = sink
        self._description = f"monitor of {sink or 'the default output'}"

    def _resolve(self, refresh: bool) -> DeviceInfo:
        self.device = monitor_of(self.sink)
        return super()._resolve(refresh)


def open_source(
    spec: str,
    cfg: AudioConfig,
    *,
    reopen_backoff_max_s: float = 10.0,
    stdin: BinaryIO | None = None,
    culprit: str = "--input",
) -> AudioSource:
    """Build the source ``spec`` names: ``mic``, ``mic:DEVICE``, ``monitor`` (what plays on
    the default output), ``monitor:SINK``, ``file:PATH`` or ``-``.

    Raises :class:`ConfigError` for a malformed spec and :class:`AudioError` for a file that
    cannot be used, each a single line naming ``culprit``.
    """
    if not isinstance(spec, str):
        raise ConfigError(culprit, f"expected mic, mic:DEVICE, monitor, monitor:SINK, file:PATH "
                          f"or -, got {spec!r}")
    s = spec.strip()
    if s == "-":
        return StdinSource(cfg.stdin_rate, cfg.stdin_channels, stdin, cfg.block_ms)
    if s == "mic" or s.startswith("mic:"):
        device: str | int | None = cfg.device
        if s.startswith("mic:"):
            name = s[4:].strip()
            if not name:
                raise ConfigError(culprit, "'mic:' needs a device name or index, e.g. mic:USB")
            device = int(name) if name.isdigit() else name
        return MicrophoneSource(device, cfg.block_ms, cfg.queue_seconds, reopen_backoff_max_s)
    if s == "monitor" or s.startswith("monitor:"):
        sink = s[8:].strip() or None
        return MonitorSource(sink, cfg.block_ms, cfg.queue_seconds, reopen_backoff_max_s)
    if s.startswith("file:"):
        raw = s[5:]
        if not raw:
            raise ConfigError(culprit, "'file:' needs a path, e.g. file:talk.wav")
        show = raw if raw.isprintable() else repr(raw)
        if "\0" in raw:
            raise AudioError(f"{culprit}: {show}: unusable path (contains a NUL byte)")
        p = Path(raw).expanduser()
        try:
            p.stat()
        except FileNotFoundError:
            raise AudioError(f"{culprit}: {show}: no such file") from None
        except (ValueError, OSError) as exc:  # too-long names, permissions on a parent, ...
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise AudioError(f"{culprit}: {show[:200]}: unusable path ({reason})") from None
        if not p.is_file():
            raise AudioError(f"{culprit}: {show}: not a regular file")
        if not os.access(p, os.R_OK):
            raise AudioError(f"{culprit}: {show}: permission denied")
        if p.stat().st_size == 0:
            raise AudioError(f"{culprit}: {show}: file is empty")
        return FilePacedSource(p, cfg.block_ms)
    raise ConfigError(
        culprit,
        f"unknown input {spec!r}; expected mic, mic:DEVICE, file:PATH or - (raw s16le on stdin)",
    )


__all__ = [
    "PULSE_PCM",
    "AudioSource",
    "Backoff",
    "FilePacedSource",
    "MicrophoneSource",
    "Pacer",
    "PcmAssembler",
    "SourceState",
    "StdinSource",
    "open_source",
]
