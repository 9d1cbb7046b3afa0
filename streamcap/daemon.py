"""The live daemon's lifecycle: capture → engine worker → sinks, on one asyncio loop.

Lifecycle (in the manner of uvicorn's ``Server``): :meth:`Daemon.startup` → :meth:`Daemon.run`
→ :meth:`Daemon.shutdown`, driven by :meth:`Daemon.serve`. The ``streamcap run`` subcommand that
builds a :class:`Daemon` lives in :mod:`streamcap.cli`; what the daemon decides is pure and lives
elsewhere: reload planning in :mod:`streamcap.reload`, status figures and when to stop by itself
in :mod:`streamcap.health`.

Startup, in order: the ``--input`` spec is checked; off the loop, the model configuration is
checked (:func:`~streamcap.asr.model.check_model`) and, for a microphone, the device is looked up
*before* the model is loaded (no device at all is one line that points at ``--input file:PATH``
and monitor sources); the model is loaded and warmed up with one decode of a second of silence;
the sinks start (files, WebSocket server, OBS), then the engine worker, then capture; systemd
gets ``READY=1``.

Threads and hand-offs (every hop from a thread to the loop goes through one
:class:`~streamcap.bridge.LoopBridge`)::

    capture thread ──submit()──▶ worker queue (bounded; overflow counted)
    capture thread ──bridge──▶ loop: device state changes, the session epoch
    worker thread ──bridge──▶ loop: Daemon._publish(event) ──▶ sink.publish(event) for each sink
        FileSink: queue ──▶ writer thread: SessionFiles (fsync per cue)
        CaptionServer: per-client queues and relay tasks
        ObsSink: throttled text and caption requests on its task
    writer thread ──bridge──▶ loop: an ``error`` event when a caption file cannot be written
    event loop: status every ``server.status_interval_s``, watchdog, signals, reload

Signals: SIGTERM/SIGINT stop capture, let the worker finalise the utterance in flight, flush and
close the files, close WebSocket clients with 1001, and exit 0 within
``daemon.shutdown_timeout_s``; a second signal (or the timeout) forces the exit (code 1). A
shutdown the daemon started by itself (the end of a file input) does not count as a first
signal: a SIGTERM arriving then is the user's first and only signal. Files are valid at every
moment (every cue is fsync-ed as written), so a forced exit, or SIGKILL, loses at most the
utterance in flight. SIGHUP re-reads the configuration: output settings (a new set of files),
OBS settings (the sink is restarted) and recognition thresholds apply at once; settings that need
a restart are logged and left as they were.

``status`` messages carry ``device_state`` (``running``, ``lost``, ``reopening``, ...), the
worker's lag and real-time factor, and ``dropped_frames``: audio lost before recognition (capture
overflows and worker-queue overflow), counted in frames of ``audio.frame_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .asr.decoder import DecodeRequest, HypothesisSource
from .asr.model import check_model
from .asr.worker import EngineWorker
from .audio.sources import AudioSource, SourceState, StdinSource
from .bridge import LoopBridge, in_thread
from .capture import CaptureSet, InputState, open_sources
from .config import Config, echo_pairs, input_config, resolve_inputs
from .echo import EchoFilter
from .engine import CaptionEngine
from .errors import StreamcapError
from .events import SAMPLE_RATE, ErrorEvent, Event, Session, StatusEvent
from .health import PipelineView, dropped_frames, verdict
from .multi import Lane, MultiEngine
from .reload import ReloadPlan, plan_reload, retuned
from .service import Notifier
from .sinks.base import Sink
from .sinks.files import SessionFiles
from .sinks.obs import ObsSink
from .sinks.websocket import CaptionServer, HelloInfo
from .sinks.writer import FileSink
from .speakers import from_config as speaker_turns
from .watchdog import WatchdogFeeder

log = logging.getLogger("streamcap.daemon")

T = TypeVar("T")

_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
               "error": logging.ERROR}

#: What a sink's stop is called in the shutdown log, by ``Sink.name``.
_STOPPING = {"files": "writing the caption files", "websocket": "closing WebSocket clients",
             "obs": "closing the OBS connection"}


def apply_log_level(cfg: Config, keep_debug: bool = False) -> None:
    """Set the ``streamcap`` loggers to ``daemon.log_level`` (unless debug was asked for)."""
    if not keep_debug:
        logging.getLogger("streamcap").setLevel(_LOG_LEVELS[cfg.daemon.log_level])


def files_wanted(cfg: Config) -> bool:
    """Whether any caption file format is switched on."""
    return cfg.output.srt or cfg.output.vtt or cfg.output.jsonl


def reload_files(cfg: Config, session: Session, n: int,
                 base_dir: Path | None) -> Callable[[], SessionFiles | None]:
    """What ``FileSink.swap`` calls (on the writer thread) to open the files of reload ``n``:
    the same epoch (cue times stay in session time) under a new name (nothing is overwritten);
    none when every format is off."""
    renamed = Session(id=f"{session.id}-r{n}", epoch=session.epoch)

    def make() -> SessionFiles | None:
        if not files_wanted(cfg):
            return None
        new = SessionFiles(cfg.output, renamed, base_dir, started_at=datetime.now())
        log.info("SIGHUP: captions now go to %s", ", ".join(str(p) for p in new.paths))
        return new

    return make


def paced_submit(worker: EngineWorker, stopping: Callable[[], bool],
                 lane: int = 0) -> Callable[[Any], None]:
    """For stdin: a pipe may deliver faster than real time, so the capture thread waits for the
    worker instead of letting its bounded queue drop audio (a live device is never made to
    wait)."""
    limit = 0.5 * worker.max_queued / SAMPLE_RATE

    def submit(samples: Any) -> None:
        while worker.queued_seconds_of(lane) > limit and worker.alive and not stopping():
            time.sleep(0.01)
        worker.submit(samples, lane)

    return submit


# --- the daemon ---------------------------------------------------------------------------------


class Daemon:
    """The live captioning daemon; see the module docstring.

    ``decoder`` and ``source`` (or ``sources``, one per input) replace the Whisper model and
    the capture sources (tests); the inputs come from :func:`~streamcap.config.resolve_inputs`
    (meeting mode's pair, the ``inputs`` list, or the single ``--input``);
    ``reload`` returns the configuration to apply on SIGHUP (the CLI re-reads the file and
    re-applies its flags); ``base_dir`` is where a relative ``output.dir`` is resolved.

    Outputs are the :class:`~streamcap.sinks.base.Sink` list ``sinks`` (files, WebSocket server,
    OBS, in that order): every event goes to each, and each keeps what it wants. ``files``,
    ``server`` and ``obs`` name the same sinks for status, reload and tests.
    """

    def __init__(
        self,
        cfg: Config,
        input_spec: str | None = None,
        *,
        decoder: HypothesisSource | None = None,
        source: AudioSource | None = None,
        sources: list[AudioSource] | None = None,
        reload: Callable[[], Config] | None = None,
        notifier: Notifier | None = None,
        base_dir: Path | None = None,
        stdout: Any = None,
    ) -> None:
        self.cfg = cfg
        self.input_spec = input_spec if input_spec is not None else cfg.audio.input
        self.inputs = resolve_inputs(cfg, input_spec)
        self.decoder = decoder
        self._given_sources = sources if sources is not None else (
            [source] if source is not None else None)
        self.capture: CaptureSet | None = None
        self._reload_fn = reload
        self.notifier = notifier if notifier is not None else Notifier()
        self.base_dir = base_dir
        self._stdout = stdout
        self.session: Session | None = None
        self.engine: CaptionEngine | None = None  # the first input's engine
        self.multi: MultiEngine | None = None
        self.worker: EngineWorker | None = None
        self.sinks: list[Sink] = []
        self.files: FileSink | None = None
        self.server: CaptionServer | None = None
        self.obs: ObsSink | None = None
        self._bridge: LoopBridge | None = None
        self._should_exit: asyncio.Event | None = None
        self._force: asyncio.Event | None = None
        self._signalled = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._reloads = 0
        self._reload_lock: asyncio.Lock | None = None
        self.started = False
        self.forced = False
        self.timed_out = False
        self.failure: str | None = None
        self.device_states: deque[str] = deque(maxlen=64)  # the latest capture states
        self.model_load_seconds = 0.0
        self._watchdog = WatchdogFeeder(self.notifier)

    # --- state ----------------------------------------------------------------------------

    @property
    def source(self) -> AudioSource | None:
        """The first input's capture source."""
        return self.capture.sources[0] if self.capture is not None else None

    @property
    def device_state(self) -> str:
        cap = self.capture
        return cap.device_state if cap is not None and cap.started else "starting"

    def healthy(self) -> bool:
        """For ``/healthz``: every input captures (device open), the worker thread is alive
        and it makes progress (a decoder hung for ``WatchdogFeeder.STALL_S`` is not healthy)."""
        w, cap = self.worker, self.capture
        return (w is not None and w.alive and cap is not None and cap.running()
                and self._watchdog.problem is None)

    def input_states(self) -> tuple[InputState, ...]:
        """Per input, with several inputs (empty for the single unlabelled one)."""
        w, cap = self.worker, self.capture
        if cap is None or len(cap) < 2:
            return ()
        echo = self.multi.echo if self.multi is not None else None
        states = cap.states
        return tuple(
            InputState(name=cap.labels[i], device_state=states[i],
                       lag=round(w.lag_of(i), 3) if w is not None else 0.0,
                       dropped_frames=dropped_frames(self.cfg, cap.sources[i].dropped_blocks, 0),
                       echo_suppressed=echo.suppressed[i] if echo is not None
                       and i < echo.lanes else 0)
            for i in range(len(cap)))

    @property
    def asr_degraded(self) -> str | None:
        """Why the ASR backend cannot decode now (the Ray pool is away), or None."""
        w = self.worker
        reason = w.degraded if w is not None else None
        return reason or getattr(self.decoder, "degraded", None)

    def health_check(self) -> bool | str:
        """``/healthz``: False (unhealthy), ``"degraded: ..."`` (alive, ASR pool away) or True."""
        if not self.healthy():
            return False
        reason = self.asr_degraded
        return f"degraded: {reason}" if reason else True

    def status_event(self) -> StatusEvent:
        w, cap = self.worker, self.capture
        blocks = cap.dropped_blocks if cap is not None else 0
        samples = w.dropped_samples if w is not None else 0
        degraded = self.asr_degraded
        return StatusEvent(
            lag=round(w.lag_s, 3) if w is not None else 0.0,
            rtf=round(w.rtf, 3) if w is not None else 0.0,
            device_state=self.device_state,
            dropped_frames=dropped_frames(self.cfg, blocks, samples),
            clients=self.server.clients if self.server is not None else 0,
            inputs=tuple(dataclasses.asdict(x) for x in self.input_states()),
            asr_state="degraded" if degraded else "running",
            asr_detail=degraded,
        )

    def status_text(self) -> str:
        st = self.status_event()
        problem = self._watchdog.problem
        state = self.device_state
        if st.inputs:
            state = ", ".join(f"{x['name']} {x['device_state']}" for x in st.inputs)
        problem = problem or (f"degraded: {st.asr_detail}" if st.asr_detail else None)
        return (f"{state}; " + (f"{problem}; " if problem else "")
                + f"lag {st.lag:.1f} s, rtf {st.rtf:.2f}, "
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
        bridge = self._bridge
        if bridge is None or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                bridge.loop.remove_signal_handler(sig)

    def handle_signal(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM/SIGINT: the first asks for a graceful shutdown, the second forces the exit.

        Only signals count: when the daemon is already shutting down by itself (the input
        ended), the first signal lets that shutdown finish; a second one forces the exit.
        """
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        assert self._should_exit is not None and self._force is not None
        if not self._signalled:
            self._signalled = True
            if self._should_exit.is_set():
                log.info("%s: already shutting down (finalising the utterance in flight); send "
                         "it again to force", name)
            else:
                log.info("%s: shutting down (finalising the utterance in flight); send it again "
                         "to force", name)
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

    def _begin(self) -> None:
        """Bind to the running loop (once)."""
        if self._bridge is None:
            self._bridge = LoopBridge(asyncio.get_running_loop())
        if self._should_exit is None:
            self._should_exit = asyncio.Event()
        if self._force is None:
            self._force = asyncio.Event()

    async def serve(self) -> int:
        """Run the daemon until a signal (or the end of a file input); return the exit code."""
        self._begin()
        assert self._should_exit is not None
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

    def _preflight(self, capture: CaptureSet) -> None:
        """Off the loop: check the model configuration (when we load the model) and find every
        capture device, both before the model is loaded (raises ConfigError/AudioDeviceError)."""
        if self.decoder is None:
            check_model(self.cfg.asr)
        capture.preflight()

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
        """Check the input, load and warm the model, start the sinks, worker and capture."""
        cfg = self.cfg
        self._begin()
        assert self._should_exit is not None
        sources = self._given_sources
        if sources is None:
            sources = open_sources(cfg, self.inputs)
        labels = [inp.name for inp in self.inputs] if len(sources) == len(self.inputs) else [
            ""] * len(sources)
        self.capture = capture = CaptureSet(sources, labels)
        await in_thread(lambda: self._preflight(capture), "streamcap-preflight")
        if self.decoder is None:
            self.decoder = await in_thread(self._load_decoder, "streamcap-model")
        decoder = self.decoder
        # Speaker turns (off by default) load their embedding model with the ASR model.
        speakers = await in_thread(lambda: speaker_turns(cfg.meeting, labels),
                                   "streamcap-speakers")
        t0 = time.monotonic()
        await in_thread(lambda: self.warm_up(decoder), "streamcap-warmup")
        log.info("model warmed up in %.2f s", time.monotonic() - t0)
        if self._should_exit.is_set():
            return

        self.session = session = Session.new(time.time())
        await self._start_sinks(cfg, session, capture.description)
        lane_inputs = self._lane_inputs(len(sources))
        lanes = [Lane(label or None, CaptionEngine(input_config(cfg, inp), decoder,
                                                   speakers[i] if speakers else None))
                 for i, (label, inp) in enumerate(zip(labels, lane_inputs, strict=True))]
        self.multi = MultiEngine(lanes, echo=self._echo_filter(len(lanes)))
        self.engine = lanes[0].engine
        self.worker = worker = EngineWorker(self.multi, self._on_worker_event,
                                            queue_seconds=cfg.audio.queue_seconds)
        worker.start()

        submits: list[Callable[[Any], None]] = []
        for i, src in enumerate(sources):
            if isinstance(src, StdinSource):
                submits.append(paced_submit(worker, lambda: self._stopping, i))
            else:
                submits.append(functools.partial(worker.submit, lane=i))

        def submit(lane: int, block: Any) -> None:
            submits[lane](block)

        def anchor(epoch: float) -> None:
            # Stream time zero is the first captured sample: anchor the session's wall-clock
            # epoch there (opening the device takes a while after the session was created).
            self._post(self._anchor_epoch, epoch)

        await in_thread(lambda: capture.start(submit, self._on_state_threadsafe, anchor,
                                              worker.skip), "streamcap-capture-start")
        if self.server is not None:
            self.server.hello = dataclasses.replace(self.server.hello,
                                                    audio_device=capture.description)
        log.info("capturing from %s", capture.description)
        self.started = True
        self.notifier.ready(f"captioning {capture.description}")

    def _echo_filter(self, n: int) -> EchoFilter | None:
        """Echo suppression between the inputs that hear each other (meeting mode: "you"
        hears "others"; ``inputs[].echo_of``), when the sources are the configured inputs."""
        pairs = echo_pairs(self.cfg, self.inputs) if n == len(self.inputs) else {}
        if not pairs:
            return None
        for mic, ref in pairs.items():
            log.info("echo suppression: captions of %r that repeat %r are dropped",
                     self.inputs[mic].name, self.inputs[ref].name)
        return EchoFilter(pairs, n)

    def _echo_summary(self) -> None:
        """The session's echo figures, once at the end (a suppressed final is never lost
        silently: each is logged at debug level, and counted in ``status`` while running)."""
        echo = self.multi.echo if self.multi is not None else None
        if echo is None:
            return
        for mic in echo.refs:
            log.info("echo suppression: %d final(s) of %r suppressed, %d trimmed (%d words "
                     "removed; longest hold %.1f s)", echo.suppressed[mic],
                     self.inputs[mic].name, echo.trimmed[mic], echo.words_removed[mic],
                     echo.held_max_s)

    def _lane_inputs(self, n: int) -> list[Any]:
        """The input settings of each source (given sources beyond the config: defaults)."""
        if n == len(self.inputs):
            return list(self.inputs)
        return [self.inputs[0]] * n

    async def _start_sinks(self, cfg: Config, session: Session, device: str) -> None:
        """Start the files, the WebSocket server (when enabled) and OBS, in that order."""
        files = SessionFiles(cfg.output, session, self.base_dir) if files_wanted(cfg) else None
        if files is not None:
            log.info("captions go to %s", ", ".join(str(p) for p in files.paths))
        self.files = FileSink(files, self._on_output_error)
        await self._start_sink(self.files)
        if cfg.server.enabled:
            hello = HelloInfo(model=cfg.asr.model, language=cfg.asr.language,
                              audio_device=device)
            api = None
            if cfg.server.api:
                from .api.service import ApiService

                api = ApiService(cfg.server, cfg.vad, cfg.asr.model, lambda: self.worker)
            self.server = CaptionServer(cfg.server, session, hello, health=self.health_check,
                                        api=api)
            await self._start_sink(self.server)
            host = cfg.server.host
            host = f"[{host}]" if ":" in host else host
            self._say(f"streamcap: listening on ws://{host}:{self.server.port} "
                      f"(overlay: http://{host}:{self.server.port}/overlay)")
        self.obs = ObsSink(cfg.obs, max_line_chars=cfg.output.max_line_chars)
        await self._start_sink(self.obs)

    async def _start_sink(self, sink: Sink) -> None:
        self.sinks.append(sink)  # listed first: a sink that fails to start is still stopped
        await sink.start()

    def _anchor_epoch(self, epoch: float) -> None:
        """Move the session epoch to the wall time of the first captured sample."""
        if self.session is None:
            return
        self.session = dataclasses.replace(self.session, epoch=epoch)
        if self.server is not None:
            self.server.session = self.session
        log.debug("session epoch anchored at the first sample: %.3f", epoch)

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
        ticker = asyncio.get_running_loop().create_task(self._tick(), name="status")
        try:
            await self._should_exit.wait()
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

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
            if self._watchdog.interval_s is not None:
                period = min(period, self._watchdog.interval_s / 2)
            await asyncio.sleep(max(0.05, min(period, next_status - loop.time())))

    def _watch(self) -> None:
        """Feed the watchdog while the pipeline lives; stop when the inputs ended or broke.

        With several inputs, one that ends (its file ran out) or dies is finalised on its own
        and the others carry on; the daemon stops when none is left."""
        assert self._should_exit is not None
        w, cap = self.worker, self.capture
        if w is None or cap is None:
            return
        self._watchdog.check(w, cap.alive)
        if len(cap) > 1:
            for i in range(len(cap)):
                if not cap.ended[i] and cap.done(i):
                    cap.ended[i] = True
                    src = cap.sources[i]
                    how = "finished" if src.finished else f"stopped: {src.last_error}"
                    rest = "" if all(cap.ended) else "; the other inputs carry on"
                    log.info("input %s %s%s", cap.labels[i], how, rest)
                    w.end_input(i)
            if not all(cap.ended):
                return
        first = cap.sources[0]
        finished = all(s.finished for s in cap.sources) if len(cap) > 1 else first.finished
        dead = [s for s in cap.sources if not s.finished]
        culprit = dead[0] if dead else first
        stop = verdict(PipelineView(
            worker_alive=w.alive, worker_error=w.error, source_finished=finished,
            source_state=culprit.state, source_alive=culprit.alive,
            source_error=culprit.last_error, source_description=cap.description))
        if stop is None:
            return
        if stop.failure:
            self.failure = stop.reason
            log.error("%s", stop.reason)
        else:
            log.info("%s", stop.reason)
        self._should_exit.set()

    async def shutdown(self, timeout: float | None = None) -> int:
        """Stop capture, finalise, stop every sink (files flushed, clients closed with 1001);
        return the exit code.

        0 when everything finished within ``timeout`` (default ``daemon.shutdown_timeout_s``);
        1 when a second signal or the timeout cut it short (files stay valid either way).
        """
        if self._stopping:
            return 1 if (self.forced or self.timed_out) else 0
        self._stopping = True
        self._begin()
        loop = asyncio.get_running_loop()
        timeout = self.cfg.daemon.shutdown_timeout_s if timeout is None else timeout
        deadline = loop.time() + timeout
        if self.started:
            self.notifier.stopping()
            self.notifier.status("stopping")
        for task in list(self._tasks):
            task.cancel()

        capture, worker = self.capture, self.worker
        if capture is not None and capture.started:
            await self._step(in_thread(capture.stop, "streamcap-capture-stop"), deadline,
                             "stopping capture")
        if worker is not None:
            remaining = max(0.0, deadline - loop.time())
            done = await self._step(in_thread(lambda: worker.stop(remaining), "streamcap-finish"),
                                    deadline, "finalising the utterance in flight")
            if done is False and not self.timed_out:  # the worker gave up at the deadline
                self._timed_out("finalising the utterance in flight")
            if done is not True:
                worker.abort()
            await asyncio.sleep(0)  # run the publishes the worker posted before it stopped
            self._echo_summary()
        for sink in list(self.sinks):
            if self.forced:
                break
            remaining = max(0.1, deadline - loop.time())
            await self._step(sink.stop(remaining), deadline + 0.1,
                             _STOPPING.get(sink.name, f"stopping the {sink.name} sink"))
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
            if isinstance(exc, TimeoutError):
                self._timed_out(what)
                return None
            if exc is not None:
                log.error("shutdown: %s failed: %s", what, exc)
                return None
            return task.result()
        task.cancel()
        if not self.forced:
            self._timed_out(what)
        return None

    def _timed_out(self, what: str) -> None:
        self.timed_out = True
        log.error("shutdown: %s took longer than daemon.shutdown_timeout_s=%g s; forcing exit",
                  what, self.cfg.daemon.shutdown_timeout_s)

    # --- hand-offs ------------------------------------------------------------------------

    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        """From any thread: run ``fn(*args)`` on the loop (the one bridge)."""
        bridge = self._bridge
        if bridge is not None:
            bridge.post(fn, *args)

    def _on_worker_event(self, event: Event) -> None:
        """Called on the worker thread for every caption/VAD event."""
        self._post(self._publish, event)

    def _publish(self, event: Event) -> None:
        """On the loop: hand ``event`` to every sink (a failing sink does not stop the others)."""
        for sink in list(self.sinks):
            try:
                sink.publish(event)
            except Exception:
                log.exception("%s sink: publishing a %s event failed", sink.name, event.type)

    def _publish_status(self) -> None:
        self._publish(self.status_event())
        self.notifier.status(self.status_text())

    def _on_state_threadsafe(self, lane: int, state: SourceState, detail: str) -> None:
        self._post(self._on_state, lane, state, detail)

    def _on_state(self, lane: int, state: str, detail: str) -> None:
        """On the loop: a capture state change goes to the sinks, systemd and the log."""
        self.device_states.append(state)
        # streamcap.audio logs the change itself (a warning when the device is lost).
        log.debug("audio device %s%s", state, f": {detail}" if detail else "")
        if self._stopping:
            return
        st = self.status_event()
        if not st.inputs:  # one input: its state is the news (the source may have moved on)
            st = dataclasses.replace(st, device_state=state)
        self._publish(st)
        self.notifier.status(self.status_text())

    def _on_output_error(self, message: str) -> None:
        """On the writer thread: tell the clients that a caption file could not be written."""
        self._post(self._publish, ErrorEvent("output", message))

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
            new = await in_thread(fn, "streamcap-reload")
            plan = plan_reload(self.cfg, new)  # pure: no disk, no model on the loop
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
        cfg = plan.effective
        self.cfg = cfg
        apply_log_level(cfg, keep_debug=logging.getLogger().level <= logging.DEBUG)
        if plan.thresholds_changed and self.engine is not None:
            # Each change is one attribute assignment (atomic under the GIL): the worker sees
            # the old or the new values; a decode already running finishes with the old ones.
            for lane, inp in zip(self.multi.lanes if self.multi else (), self.inputs,
                                 strict=False):
                lane.engine.retune(input_config(retuned(lane.engine.cfg, cfg), inp))
        if plan.output_changed and self.files is not None and self.session is not None:
            self._reloads += 1
            self.files.swap(reload_files(cfg, self.session, self._reloads, self.base_dir))
        if plan.obs_changed and self.obs is not None:
            old = self.obs
            await old.stop(cfg.daemon.shutdown_timeout_s)
            self.obs = ObsSink(cfg.obs, max_line_chars=cfg.output.max_line_chars)
            self.sinks = [self.obs if s is old else s for s in self.sinks]
            await self.obs.start()
        log.info("SIGHUP: applied %s", ", ".join(plan.applied))
        return plan
