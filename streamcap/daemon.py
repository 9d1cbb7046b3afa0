"""``streamcap run``: the live daemon that wires capture → engine worker → sinks.

Lifecycle (in the manner of uvicorn's ``Server``): :meth:`Daemon.startup` → :meth:`Daemon.run`
→ :meth:`Daemon.shutdown`, driven by :meth:`Daemon.serve` on one asyncio loop.

Startup, in order: the ``--input`` spec is checked and, for a microphone, the device is looked
up *before* the model is loaded (no device at all is one line that points at ``--input
file:PATH`` and monitor sources); the model is loaded and warmed up with one decode of a second
of silence; the caption files, the engine worker, the WebSocket server and the OBS sink start;
capture starts; systemd gets ``READY=1``.

Threads and hand-offs::

    capture thread ──submit()──▶ worker queue (bounded; overflow counted)
    worker thread ──on_event──▶ writer queue ──▶ writer thread: SessionFiles (fsync per cue)
                   └─ loop.call_soon_threadsafe ──▶ event loop: CaptionServer, ObsSink
    event loop: status every ``server.status_interval_s``, watchdog, signals, reload

Signals: SIGTERM/SIGINT stop capture, let the worker finalise the utterance in flight, flush and
close the files, close WebSocket clients with 1001, and exit 0 within
``daemon.shutdown_timeout_s``; a second signal (or the timeout) forces the exit (code 1). Files
are valid at every moment (every cue is fsync-ed as written), so a forced exit, or SIGKILL,
loses at most the utterance in flight. SIGHUP re-reads the configuration: output settings (a
new set of files), OBS settings (the sink is restarted) and recognition thresholds apply at
once; settings that need a restart are logged and left as they were.

``status`` messages carry ``device_state`` (``running``, ``lost``, ``reopening``, ...), the
worker's lag and real-time factor, and ``dropped_frames``: audio lost before recognition (capture
overflows and worker-queue overflow), counted in frames of ``audio.frame_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from . import config as config_mod
from .asr.decoder import DecodeRequest, HypothesisSource
from .asr.worker import EngineWorker
from .audio.sources import (
    AudioSource,
    MicrophoneSource,
    SourceState,
    StdinSource,
    open_source,
)
from .config import Config
from .engine import CaptionEngine
from .errors import StreamcapError
from .events import SAMPLE_RATE, ErrorEvent, Event, Session, StatusEvent
from .service import Liveness, Notifier, WatchdogGate
from .sinks.files import SessionFiles
from .sinks.obs import ObsSink
from .sinks.websocket import CLOSE_GOING_AWAY, CaptionServer, HelloInfo

log = logging.getLogger("streamcap.daemon")

T = TypeVar("T")

#: Keys a SIGHUP applies at once (besides every ``output.*`` and ``obs.*`` key).
LIVE_KEYS: frozenset[str] = frozenset({
    "vad.aggressiveness",
    "vad.start_frames",
    "vad.end_silence_s",
    "vad.max_utterance_s",
    "vad.min_speech_s",
    "asr.no_speech_threshold",
    "asr.log_prob_threshold",
    "asr.compression_ratio_threshold",
    "asr.agreement",
    "asr.partial_interval_s",
    "asr.commit_margin_s",
    "asr.beam_size",
    "asr.hotwords",
    "asr.initial_prompt",
    "server.status_interval_s",
    "daemon.shutdown_timeout_s",
    "daemon.log_level",
})
LIVE_SECTIONS: tuple[str, ...] = ("output", "obs")

_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
               "error": logging.ERROR}


# --- reload planning (pure) ------------------------------------------------------------------


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def is_live_key(key: str) -> bool:
    """Whether a SIGHUP can apply the dotted config ``key`` without a restart."""
    return key in LIVE_KEYS or key.split(".", 1)[0] in LIVE_SECTIONS


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload changes: the config to run with now, and what it leaves for a restart."""

    effective: Config
    applied: tuple[str, ...]
    """Dotted keys whose new values take effect now."""
    restart_needed: tuple[str, ...]
    """Dotted keys that changed but need a restart; they keep their running values."""

    @property
    def output_changed(self) -> bool:
        return any(k.startswith("output.") for k in self.applied)

    @property
    def obs_changed(self) -> bool:
        return any(k.startswith("obs.") for k in self.applied)

    @property
    def thresholds_changed(self) -> bool:
        return any(k.startswith(("vad.", "asr.")) for k in self.applied)


def plan_reload(running: Config, new: Config) -> ReloadPlan:
    """Split the differences between ``running`` and ``new`` into live and restart-needing ones.

    The effective config takes the live keys from ``new`` and every other key from ``running``;
    it is validated again (raises :class:`~streamcap.errors.ConfigError`), since a live key may
    relate to one that stays, e.g. ``vad.max_utterance_s`` to ``vad.buffer_s``.
    """
    old_flat = _flatten(config_mod.to_dict(running))
    new_flat = _flatten(config_mod.to_dict(new))
    changed = sorted(k for k in new_flat if new_flat[k] != old_flat.get(k))
    applied = tuple(k for k in changed if is_live_key(k))
    restart = tuple(k for k in changed if not is_live_key(k))
    effective = (
        config_mod.with_overrides(running, {k: new_flat[k] for k in applied}) if applied
        else running
    )
    return ReloadPlan(effective, applied, restart)


VAD_LIVE: tuple[str, ...] = tuple(k.split(".", 1)[1] for k in sorted(LIVE_KEYS)
                                  if k.startswith("vad."))
ASR_LIVE: tuple[str, ...] = tuple(k.split(".", 1)[1] for k in sorted(LIVE_KEYS)
                                  if k.startswith("asr."))


def retune_engine(engine: CaptionEngine, cfg: Config) -> None:
    """Apply the live recognition thresholds of ``cfg`` to a running engine.

    Each change is one attribute assignment (atomic under the GIL), so the worker thread sees
    either the old or the new value; a decode already running finishes with the old ones.
    """
    vad_live = {k: getattr(cfg.vad, k) for k in VAD_LIVE}
    asr_live = {k: getattr(cfg.asr, k) for k in ASR_LIVE}
    engine.retune(
        dataclasses.replace(
            engine.cfg,
            vad=dataclasses.replace(engine.cfg.vad, **vad_live),
            asr=dataclasses.replace(engine.cfg.asr, **asr_live),
        )
    )


def dropped_frames(cfg: Config, dropped_blocks: int, dropped_samples: int) -> int:
    """Audio lost before recognition, in frames of ``audio.frame_ms``."""
    frame = SAMPLE_RATE * cfg.audio.frame_ms // 1000
    block_samples = SAMPLE_RATE * cfg.audio.block_ms // 1000
    return (dropped_blocks * block_samples + dropped_samples) // frame


# --- the file writer thread -------------------------------------------------------------------


class _Swap:
    def __init__(self, make: Callable[[], SessionFiles | None]) -> None:
        self.make = make


class EventWriter:
    """Writes events into :class:`SessionFiles` on its own thread.

    ``put()`` never blocks (the worker thread calls it); an fsync per cue happens here, not on
    the worker or the event loop. A write error is reported through ``on_error`` and writing
    goes on (the files keep every cue written before). ``swap()`` closes the current files and
    opens new ones in order with the events around it.
    """

    def __init__(
        self,
        files: SessionFiles | None,
        on_error: Callable[[str], None],
        capacity: int = 10000,
    ) -> None:
        self.files = files
        self._on_error = on_error
        self._q: queue.Queue[Event | _Swap | None] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="streamcap-writer", daemon=True)
        self.dropped = 0
        self.written = 0
        self._last_error: str | None = None
        self._repeats = 0

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def put(self, event: Event) -> None:
        """Queue ``event`` for the files (any thread; drops and counts when the disk hangs)."""
        try:
            self._q.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def swap(self, make: Callable[[], SessionFiles | None]) -> bool:
        """Close the current files and continue in the ones ``make()`` opens (on the thread).

        Never blocks; False (and nothing changes) when the writer is hopelessly behind.
        """
        try:
            self._q.put_nowait(_Swap(make))
        except queue.Full:
            self._error("cannot switch caption files: the file writer is behind (disk stalled?)")
            return False
        return True

    def close(self, timeout: float) -> bool:
        """Write what is queued, close the files; False if that took longer than ``timeout``."""
        if not self._thread.is_alive():
            self._close_files()
            return True
        t0 = time.monotonic()
        try:
            self._q.put(None, timeout=timeout)
        except queue.Full:
            return False
        self._thread.join(max(0.0, timeout - (time.monotonic() - t0)))
        return not self._thread.is_alive()

    def _error(self, message: str) -> None:
        if message == self._last_error:
            self._repeats += 1
            if self._repeats % 100:
                return
            message = f"{message} (repeated {self._repeats} times)"
        else:
            self._last_error = message
            self._repeats = 0
        log.error("%s", message)
        try:
            self._on_error(message)
        except Exception:
            log.exception("output error handler failed")

    def _close_files(self) -> None:
        files, self.files = self.files, None
        if files is not None:
            try:
                files.close()
            except StreamcapError as exc:
                self._error(str(exc))

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                self._close_files()
                return
            if isinstance(item, _Swap):
                self._close_files()
                try:
                    self.files = item.make()
                except StreamcapError as exc:
                    self._error(f"cannot open the new caption files: {exc}")
                    self.files = None
                continue
            files = self.files
            if files is None:
                continue
            try:
                files.write(item)
                self.written += 1
            except StreamcapError as exc:
                self._error(str(exc))
            except Exception as exc:  # never let the writer die: later cues must still be written
                self._error(f"caption files: {type(exc).__name__}: {exc}")


# --- the daemon ---------------------------------------------------------------------------------


def _set_future(fut: asyncio.Future[T], result: T) -> None:
    if not fut.done():
        fut.set_result(result)


def _fail_future(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def _in_thread(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Run ``fn`` on a fresh daemon thread; the future resolves on the running loop.

    Unlike ``asyncio.to_thread`` nothing waits for the thread at exit, so a forced exit is
    never held up by a call that hangs (a stuck device, a decode that does not return).
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(_fail_future, fut, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_set_future, fut, result)

    threading.Thread(target=target, name=name, daemon=True).start()
    return fut


class Daemon:
    """The live captioning daemon; see the module docstring.

    ``decoder`` and ``source`` replace the Whisper model and the ``--input`` source (tests);
    ``reload`` returns the configuration to apply on SIGHUP (the CLI re-reads the file and
    re-applies its flags); ``base_dir`` is where a relative ``output.dir`` is resolved.
    """

    def __init__(
        self,
        cfg: Config,
        input_spec: str | None = None,
        *,
        decoder: HypothesisSource | None = None,
        source: AudioSource | None = None,
        reload: Callable[[], Config] | None = None,
        notifier: Notifier | None = None,
        base_dir: Path | None = None,
        stdout: Any = None,
    ) -> None:
        self.cfg = cfg
        self.input_spec = input_spec if input_spec is not None else cfg.audio.input
        self.decoder = decoder
        self.source = source
        self._reload_fn = reload
        self.notifier = notifier if notifier is not None else Notifier()
        self.base_dir = base_dir
        self._stdout = stdout
        self.session: Session | None = None
        self.engine: CaptionEngine | None = None
        self.worker: EngineWorker | None = None
        self.writer: EventWriter | None = None
        self.server: CaptionServer | None = None
        self.obs: ObsSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._should_exit: asyncio.Event | None = None
        self._force: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._source_started = False
        self._stopping = False
        self._reloads = 0
        self._reload_lock: asyncio.Lock | None = None
        self.started = False
        self.forced = False
        self.timed_out = False
        self.failure: str | None = None
        self.device_states: deque[str] = deque(maxlen=64)  # the latest capture states
        self.model_load_seconds = 0.0
        self._gate: WatchdogGate | None = None
        self._gate_reason: str | None = None
        interval = self.notifier.watchdog_interval()
        if interval is not None:
            # A worker with audio waiting and no progress for this long counts as hung (the pings
            # stop, systemd restarts us); 10 s at least, as a long final decode is not a hang.
            self._gate = WatchdogGate(interval, stall_s=max(interval, 10.0))

    # --- state ----------------------------------------------------------------------------

    @property
    def device_state(self) -> str:
        src = self.source
        return src.state if src is not None and self._source_started else "starting"

    def healthy(self) -> bool:
        """For ``/healthz``: capture is running (device open) and the worker thread is alive."""
        w = self.worker
        return (
            w is not None and w.alive and self.source is not None and self._source_started
            and self.source.state == "running" and self.source.alive
        )

    def status_event(self) -> StatusEvent:
        w = self.worker
        src = self.source
        blocks = src.dropped_blocks if src is not None else 0
        samples = w.dropped_samples if w is not None else 0
        return StatusEvent(
            lag=round(w.lag_s, 3) if w is not None else 0.0,
            rtf=round(w.rtf, 3) if w is not None else 0.0,
            device_state=self.device_state,
            dropped_frames=dropped_frames(self.cfg, blocks, samples),
            clients=self.server.clients if self.server is not None else 0,
        )

    def status_text(self) -> str:
        st = self.status_event()
        return (f"{self.device_state}; lag {st.lag:.1f} s, rtf {st.rtf:.2f}, "
                f"{st.clients} client(s), {st.dropped_frames} frame(s) dropped")

    # --- signals --------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may install handlers (e.g. a test runs us elsewhere)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.handle_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    def remove_signal_handlers(self) -> None:
        loop = self._loop
        if loop is None or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    def handle_signal(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM/SIGINT: the first asks for a graceful shutdown, the second forces the exit."""
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        assert self._should_exit is not None and self._force is not None
        if not self._should_exit.is_set():
            log.info("%s: shutting down (finalising the utterance in flight); send it again to "
                     "force", name)
            self._should_exit.set()
        else:
            log.warning("%s again: forcing exit; captions written so far are kept", name)
            self.forced = True
            self._force.set()

    def request_reload(self) -> None:
        """SIGHUP: re-read the configuration on a thread, then apply it on the loop."""
        if self._reload_fn is None:
            log.info("SIGHUP: no configuration source to reload from")
            return
        if self._stopping:
            return
        task = asyncio.get_running_loop().create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- lifecycle ------------------------------------------------------------------------

    async def serve(self) -> int:
        """Run the daemon until a signal (or the end of a file input); return the exit code."""
        self._loop = asyncio.get_running_loop()
        self._should_exit = asyncio.Event()
        self._force = asyncio.Event()
        self.install_signal_handlers()
        try:
            try:
                await self._until_forced(self.startup())
            except BaseException:
                await self.shutdown()
                raise
            if not self.forced and not self._should_exit.is_set():
                await self.run()
            return await self.shutdown()
        finally:
            self.remove_signal_handlers()

    async def _until_forced(self, aw: Awaitable[T]) -> T | None:
        """Await ``aw`` unless a forced exit comes first (then it is left running)."""
        assert self._force is not None
        task = asyncio.ensure_future(aw)
        if self._force.is_set():
            task.cancel()
            return None
        force = asyncio.ensure_future(self._force.wait())
        try:
            await asyncio.wait({task, force}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            force.cancel()
        if task.done():
            return task.result()
        task.cancel()
        return None

    def _preflight(self, source: AudioSource) -> None:
        """Find the capture device before the model is loaded (raises AudioDeviceError)."""
        if isinstance(source, MicrophoneSource):
            from .audio.devices import list_input_devices, select_device

            dev = source.device
            want_pulse = not (isinstance(dev, int) or (isinstance(dev, str) and dev.isdigit()))
            select_device(dev, list_input_devices(include_pulse=want_pulse))

    def _load_decoder(self) -> HypothesisSource:
        from .runner import make_decoder

        log.info("loading model %s", self.cfg.asr.model)
        decoder, load_s = make_decoder(self.cfg)
        self.model_load_seconds = load_s
        return decoder

    @staticmethod
    def warm_up(decoder: HypothesisSource) -> None:
        """One final-style decode of a second of silence: first-call allocations happen now."""
        decoder.decode(DecodeRequest(audio=np.zeros(SAMPLE_RATE, dtype=np.float32), offset=0.0,
                                     final=True, language=None if decoder.multilingual else "en"))

    async def startup(self) -> None:
        """Check the input, load and warm the model, start files, worker, sinks and capture."""
        cfg = self.cfg
        self._loop = asyncio.get_running_loop()
        if self._should_exit is None:
            self._should_exit = asyncio.Event()
            self._force = asyncio.Event()
        if self.source is None:
            self.source = open_source(self.input_spec, cfg.audio,
                                      reopen_backoff_max_s=cfg.daemon.reopen_backoff_max_s)
        source = self.source
        await _in_thread(lambda: self._preflight(source), "streamcap-preflight")
        if self.decoder is None:
            self.decoder = await _in_thread(self._load_decoder, "streamcap-model")
        decoder = self.decoder
        t0 = time.monotonic()
        await _in_thread(lambda: self.warm_up(decoder), "streamcap-warmup")
        log.info("model warmed up in %.2f s", time.monotonic() - t0)
        if self._should_exit.is_set():
            return

        self.session = session = Session.new(time.time())
        files = SessionFiles(cfg.output, session, self.base_dir) if self._files_wanted(cfg) \
            else None
        if files is not None:
            log.info("captions go to %s", ", ".join(str(p) for p in files.paths))
        self.writer = EventWriter(files, self._on_output_error)
        self.writer.start()
        self.engine = CaptionEngine(cfg, decoder)
        self.worker = EngineWorker(self.engine, self._on_worker_event,
                                   queue_seconds=cfg.audio.queue_seconds)
        self.worker.start()
        if cfg.server.enabled:
            hello = HelloInfo(model=cfg.asr.model, language=cfg.asr.language,
                              audio_device=source.description)
            self.server = CaptionServer(cfg.server, session, hello, health=self.healthy)
            await self.server.start()
            host = cfg.server.host
            host = f"[{host}]" if ":" in host else host
            self._say(f"streamcap: listening on ws://{host}:{self.server.port} "
                      f"(overlay: http://{host}:{self.server.port}/overlay)")
        self.obs = ObsSink(cfg.obs, max_line_chars=cfg.output.max_line_chars)
        await self.obs.start()

        worker = self.worker
        submit: Callable[[Any], None] = worker.submit
        if isinstance(source, StdinSource):
            submit = self._submit_with_backpressure
        anchored = threading.Event()

        def on_block(block: Any) -> None:
            # Stream time zero is the first captured sample: anchor the session's wall-clock
            # epoch there (opening the device takes a while after the session was created).
            if not anchored.is_set():
                anchored.set()
                first = time.time() - len(block) / SAMPLE_RATE
                loop = self._loop
                if loop is not None:
                    loop.call_soon_threadsafe(self._anchor_epoch, first)
            submit(block)

        self._source_started = True  # from here on, the source's own state is reported
        await _in_thread(lambda: source.start(on_block, self._on_state_threadsafe),
                         "streamcap-capture-start")
        if self.server is not None:
            self.server.hello = dataclasses.replace(self.server.hello,
                                                    audio_device=source.description)
        log.info("capturing from %s", source.description)
        self.started = True
        self.notifier.ready(f"captioning {source.description}")

    def _anchor_epoch(self, epoch: float) -> None:
        """Move the session epoch to the wall time of the first captured sample."""
        if self.session is None:
            return
        self.session = dataclasses.replace(self.session, epoch=epoch)
        if self.server is not None:
            self.server.session = self.session
        log.debug("session epoch anchored at the first sample: %.3f", epoch)

    def _files_wanted(self, cfg: Config) -> bool:
        return cfg.output.srt or cfg.output.vtt or cfg.output.jsonl

    def _say(self, line: str) -> None:
        out = self._stdout if self._stdout is not None else sys.stdout
        try:
            out.write(line + "\n")
            out.flush()
        except (OSError, ValueError):  # stdout closed: the log line below still says it
            pass
        log.debug("%s", line)

    async def run(self) -> None:
        """Publish status, feed the watchdog and watch the pipeline until asked to stop."""
        assert self._should_exit is not None
        self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="status")
        try:
            await self._should_exit.wait()
        finally:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._should_exit is not None
        next_status = loop.time()
        while not self._should_exit.is_set():
            now = loop.time()
            if now >= next_status:
                self._publish_status()
                next_status = now + self.cfg.server.status_interval_s
            self._watch()
            period = min(0.5, self.cfg.server.status_interval_s)
            if self._gate is not None:
                period = min(period, self._gate.interval_s / 2)
            await asyncio.sleep(max(0.05, min(period, next_status - loop.time())))

    def _watch(self) -> None:
        """Feed the watchdog while the pipeline lives; stop when the input ended or broke."""
        assert self._should_exit is not None
        w, src = self.worker, self.source
        if w is None or src is None:
            return
        if self._gate is not None:
            live = Liveness(capture_alive=src.alive or src.finished, worker_alive=w.alive,
                            progress=w.engine.audio_time, backlog_s=w.queued_seconds)
            if self._gate.check(time.monotonic(), live):
                self.notifier.watchdog()
            if self._gate.reason != self._gate_reason:
                self._gate_reason = self._gate.reason
                if self._gate_reason is not None:
                    log.warning("not feeding the watchdog: %s", self._gate_reason)
                else:
                    log.info("feeding the watchdog again")
        if not w.alive:
            self.failure = f"the recognition worker stopped: {w.error!r}"
            log.error("%s", self.failure)
            self._should_exit.set()
        elif src.finished:
            log.info("input finished (%s); shutting down", src.description)
            self._should_exit.set()
        elif src.state == "stopped" and not src.alive:
            self.failure = f"capture stopped: {src.last_error or 'unknown reason'}"
            log.error("%s", self.failure)
            self._should_exit.set()

    async def shutdown(self, timeout: float | None = None) -> int:
        """Stop capture, finalise, flush files, close clients with 1001; return the exit code.

        0 when everything finished within ``timeout`` (default ``daemon.shutdown_timeout_s``);
        1 when a second signal or the timeout cut it short (files stay valid either way).
        """
        if self._stopping:
            return 1 if (self.forced or self.timed_out) else 0
        self._stopping = True
        loop = asyncio.get_running_loop()
        if self._force is None:
            self._force = asyncio.Event()
        timeout = self.cfg.daemon.shutdown_timeout_s if timeout is None else timeout
        deadline = loop.time() + timeout
        if self.started:
            self.notifier.stopping()
            self.notifier.status("stopping")
        for task in list(self._tasks):
            task.cancel()

        source, worker, writer = self.source, self.worker, self.writer
        if source is not None and self._source_started:
            await self._step(_in_thread(source.stop, "streamcap-capture-stop"), deadline,
                             "stopping capture")
        if worker is not None:
            remaining = max(0.0, deadline - loop.time())
            done = await self._step(_in_thread(lambda: worker.stop(remaining), "streamcap-finish"),
                                    deadline, "finalising the utterance in flight")
            if done is not True:
                worker.abort()
            await asyncio.sleep(0)  # run the publishes the worker queued before it stopped
        if writer is not None and not self.forced:
            remaining = max(0.1, deadline - loop.time())
            await self._step(_in_thread(lambda: writer.close(remaining), "streamcap-close"),
                             deadline + 0.1, "writing the caption files")
        if self.obs is not None and not self.forced:
            await self._step(self.obs.stop(), deadline, "closing the OBS connection")
        if self.server is not None and not self.forced:
            await self._step(self.server.stop(CLOSE_GOING_AWAY, "server shutting down"),
                             deadline, "closing WebSocket clients")
        if self.forced or self.timed_out:
            return 1
        if self.started:
            log.info("stopped cleanly")
        return 0

    async def _step(self, aw: Awaitable[T], deadline: float, what: str) -> T | None:
        """Await one shutdown step unless the deadline passes or a forced exit comes."""
        assert self._force is not None
        task = asyncio.ensure_future(aw)
        if self.forced or self.timed_out:
            if not task.done():
                task.cancel()
            return None
        loop = asyncio.get_running_loop()
        force = asyncio.ensure_future(self._force.wait())
        try:
            await asyncio.wait({task, force}, timeout=max(0.0, deadline - loop.time()),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            force.cancel()
        if task.done():
            if task.cancelled():
                return None
            exc = task.exception()
            if exc is not None:
                log.error("shutdown: %s failed: %s", what, exc)
                return None
            return task.result()
        task.cancel()
        if not self.forced:
            self.timed_out = True
            log.error("shutdown: %s took longer than daemon.shutdown_timeout_s=%g s; forcing exit",
                      what, self.cfg.daemon.shutdown_timeout_s)
        return None

    # --- hand-offs ------------------------------------------------------------------------

    def _on_worker_event(self, event: Event) -> None:
        """Called on the worker thread for every caption/VAD event."""
        writer = self.writer
        if writer is not None:
            writer.put(event)
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed (forced exit)
                loop.call_soon_threadsafe(self._publish, event)

    def _submit_with_backpressure(self, samples: Any) -> None:
        """For stdin: a pipe may deliver faster than real time, so wait for the worker instead
        of letting its bounded queue drop audio (a live device is never made to wait)."""
        w = self.worker
        assert w is not None
        limit = 0.5 * w.max_queued / SAMPLE_RATE
        while w.queued_seconds > limit and w.alive and not self._stopping:
            time.sleep(0.01)
        w.submit(samples)

    def _publish(self, event: Event) -> None:
        """On the loop: hand an event to the WebSocket clients and OBS."""
        if self.server is not None:
            try:
                self.server.publish(event)
            except Exception:
                log.exception("caption server: publishing a %s event failed", event.type)
        if self.obs is not None:
            try:
                self.obs.publish(event)
            except Exception:
                log.exception("OBS sink: publishing a %s event failed", event.type)

    def _publish_status(self) -> None:
        st = self.status_event()
        if self.server is not None:
            self.server.publish(st)
        self.notifier.status(self.status_text())

    def _on_state_threadsafe(self, state: SourceState, detail: str) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_state, state, detail)

    def _on_state(self, state: str, detail: str) -> None:
        """On the loop: a capture state change goes to clients, files, systemd and the log."""
        self.device_states.append(state)
        # streamcap.audio logs the change itself (a warning when the device is lost).
        log.debug("audio device %s%s", state, f": {detail}" if detail else "")
        if self._stopping:
            return
        st = self.status_event()
        st = dataclasses.replace(st, device_state=state)
        if self.server is not None:
            self.server.publish(st)
        if self.writer is not None:
            self.writer.put(st)
        self.notifier.status(self.status_text())

    def _on_output_error(self, message: str) -> None:
        """On the writer thread: tell the clients that a caption file could not be written."""
        loop = self._loop
        if loop is not None and self.server is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.server.publish, ErrorEvent("output", message))

    # --- reload ---------------------------------------------------------------------------

    async def reload(self) -> ReloadPlan | None:
        """Re-read the configuration and apply what can change without a restart."""
        fn = self._reload_fn
        if fn is None:
            return None
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:  # two quick SIGHUPs apply one after the other
            return await self._reload(fn)

    async def _reload(self, fn: Callable[[], Config]) -> ReloadPlan | None:
        try:
            new = await _in_thread(fn, "streamcap-reload")
            plan = plan_reload(self.cfg, new)
        except StreamcapError as exc:
            log.error("SIGHUP: configuration not reloaded: %s", exc)
            return None
        return await self.apply(plan)

    async def apply(self, plan: ReloadPlan) -> ReloadPlan:
        """Switch to ``plan.effective``: new files, a restarted OBS sink, retuned thresholds."""
        for key in plan.restart_needed:
            log.warning("SIGHUP: %s changed but needs a restart to take effect; keeping the "
                        "running value", key)
        if not plan.applied:
            log.info("SIGHUP: nothing to apply")
            return plan
        old, cfg = self.cfg, plan.effective
        self.cfg = cfg
        _apply_log_level(cfg, keep_debug=logging.getLogger().level <= logging.DEBUG)
        if plan.thresholds_changed and self.engine is not None:
            retune_engine(self.engine, cfg)
        if plan.output_changed and self.writer is not None and self.session is not None:
            self._reloads += 1
            session = self.session
            # Same epoch (cue times stay in session time), a new name: nothing is overwritten.
            renamed = Session(id=f"{session.id}-r{self._reloads}", epoch=session.epoch)
            base = self.base_dir
            wanted = self._files_wanted(cfg)

            def make() -> SessionFiles | None:
                if not wanted:
                    return None
                files = SessionFiles(cfg.output, renamed, base, started_at=datetime.now())
                log.info("SIGHUP: captions now go to %s",
                         ", ".join(str(p) for p in files.paths))
                return files

            self.writer.swap(make)
        width_changed = old.output.max_line_chars != cfg.output.max_line_chars
        if (plan.obs_changed or width_changed) and self.obs is not None:
            await self.obs.stop()
            self.obs = ObsSink(cfg.obs, max_line_chars=cfg.output.max_line_chars)
            await self.obs.start()
        log.info("SIGHUP: applied %s", ", ".join(plan.applied))
        return plan


def _apply_log_level(cfg: Config, keep_debug: bool = False) -> None:
    if not keep_debug:
        logging.getLogger("streamcap").setLevel(_LOG_LEVELS[cfg.daemon.log_level])


# --- the command --------------------------------------------------------------------------------


def _run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, key in (
        ("input", "audio.input"),
        ("audio_device", "audio.device"),
        ("host", "server.host"),
        ("port", "server.port"),
        ("output_dir", "output.dir"),
    ):
        v = getattr(args, attr, None)
        if v is not None:
            out[key] = v
    return out


def run_command(args: argparse.Namespace) -> int:
    """``streamcap run``: caption live until SIGTERM/SIGINT (or the end of a file input)."""
    from .cli import build_config

    extra = _run_overrides(args)
    cfg = build_config(args, extra)
    _apply_log_level(cfg, keep_debug=bool(getattr(args, "verbose", False)))
    daemon = Daemon(cfg, reload=lambda: build_config(args, extra))
    code = asyncio.run(daemon.serve())
    if daemon.forced or daemon.timed_out:
        # Threads may still be inside a decode or a device call: leave without waiting for them.
        logging.shutdown()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    if daemon.failure is not None:
        raise StreamcapError(daemon.failure)
    return code


def add_parser(subparsers: Any) -> None:
    """Register ``streamcap run`` (``--device``: the audio input; ``--asr-device``: the ASR)."""
    from .cli import add_config_args

    p: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run the live captioning daemon (capture, WebSocket server, caption files)",
        description="Caption live audio: capture from a microphone, a monitor source, a file "
        "paced at real time or stdin; serve captions over WebSocket and write SRT/WebVTT/JSONL. "
        "Flags override the configuration file. SIGTERM/SIGINT stop gracefully, SIGHUP reloads.",
    )
    add_config_args(p)
    p.add_argument("--input", metavar="SPEC",
                   help="audio.input: mic, mic:DEVICE, file:PATH (paced at real time) or - "
                   "(raw s16le PCM on stdin)")
    p.add_argument("--device", dest="audio_device", metavar="NAME",
                   help="audio.device: capture device, a name substring or an index (see "
                   "`streamcap devices`), e.g. a monitor source NAME.monitor")
    p.add_argument("--host", help="server.host: address to listen on")
    p.add_argument("--port", type=int, help="server.port: port to listen on (0: any free port)")
    p.add_argument("--output-dir", metavar="DIR", help="output.dir: where caption files go")
    p.set_defaults(func=run_command)
