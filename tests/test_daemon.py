"""The daemon's lifecycle in-process: reload planning, SIGHUP, SIGTERM, a forced exit, status.

A scripted decoder and a scripted audio source stand in for Whisper and the sound card (real
speech audio still drives the real VAD, engine, worker, files and WebSocket server); the real
model, real capture and real signals are proved in ``test_daemon_e2e.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import srt
import websockets

from streamcap import config as config_mod
from streamcap.asr.decoder import DecodeRequest, Hypothesis
from streamcap.audio.decode import load_audio
from streamcap.audio.sources import BlockCallback, SourceState, StateCallback
from streamcap.config import AsrConfig, Config
from streamcap.daemon import Daemon
from streamcap.errors import ConfigError, StreamcapError
from streamcap.events import (
    SAMPLE_RATE,
    ErrorEvent,
    Event,
    FinalCaption,
    PartialCaption,
    StatusEvent,
    VadEvent,
    Word,
)
from streamcap.health import PipelineView, dropped_frames, verdict
from streamcap.reload import is_live_key, plan_reload, retuned
from streamcap.service import Notifier
from streamcap.sinks.writer import FileSink

sys.path.insert(0, str(Path(__file__).parent))
from support.pulse import timeout_unit

REPO = Path(__file__).resolve().parents[1]
AUDIO = Path(os.environ.get("STREAMCAP_AUDIO", str(REPO.parent / "shared" / "audio")))
JFK = AUDIO / "en_misc" / "jfk.flac"


# --- stand-ins ------------------------------------------------------------------------------


class ScriptedDecoder:
    """Words every 0.4 s of the audio it is given (" w0", " w1", ...); can block on finals."""

    multilingual = False

    def __init__(self, block_finals: bool = False, fail: bool = False) -> None:
        self.cfg = AsrConfig()
        self.requests: list[DecodeRequest] = []
        self.release = threading.Event()
        self.in_final = threading.Event()
        self.block_finals = block_finals
        self.fail = fail
        self.decode_seconds = 0.0

    def retune(self, cfg: AsrConfig) -> None:
        self.cfg = cfg

    def decode(self, req: DecodeRequest) -> Hypothesis:
        self.requests.append(req)
        if self.fail and len(self.requests) > 1:  # the warm-up succeeds, live decodes fail
            raise RuntimeError("scripted decoder failure")
        if req.final and self.block_finals and len(self.requests) > 1:
            self.in_final.set()
            self.release.wait(60)
        end = req.offset + len(req.audio) / SAMPLE_RATE
        after = req.prefix[-1].end if req.prefix else req.offset
        words = []
        t, i = req.offset, 0
        while t + 0.3 <= end:
            if t >= after:
                words.append(Word(f" w{i}", t, t + 0.3, 0.9, stable=False))
            t += 0.4
            i += 1
        return Hypothesis(words=tuple(words), audio_end=end)

    def detect_language(self, audio: Any) -> tuple[str, float]:
        return "en", 1.0


class ScriptedSource:
    """An audio source whose blocks and device states the test pushes."""

    def __init__(self) -> None:
        self._state: SourceState = "stopped"
        self._on_block: BlockCallback | None = None
        self._on_state: StateCallback | None = None
        self._alive = False
        self.stopped = threading.Event()

    description = "scripted source"
    dropped_blocks = 0
    last_error: str | None = None

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def finished(self) -> bool:
        return self._state == "finished"

    @property
    def alive(self) -> bool:
        return self._alive

    def set_state(self, state: SourceState) -> None:
        self._state = state
        if self._on_state is not None:
            self._on_state(state, "scripted")

    def start(self, on_block: BlockCallback, on_state: StateCallback | None = None) -> None:
        self._on_block, self._on_state = on_block, on_state
        self._alive = True
        self.set_state("running")

    def push(self, samples: np.ndarray[Any, Any]) -> None:
        assert self._on_block is not None
        for i in range(0, len(samples), 800):
            self._on_block(samples[i : i + 800])

    def stop(self) -> None:
        self._alive = False
        if self._state not in ("finished", "stopped"):
            self.set_state("stopped")
        self.stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.stopped.wait(timeout)


class RecordingNotifier(Notifier):
    """The real Notifier with the datagram replaced by a list (and a fast watchdog)."""

    def __init__(self, watchdog_s: float | None = None) -> None:
        super().__init__()
        self.sent: list[str] = []
        self._watchdog_s = watchdog_s

    def send(self, message: str) -> None:
        self.sent.append(message)

    def watchdog_interval(self) -> float | None:
        return self._watchdog_s


# --- helpers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech() -> np.ndarray[Any, Any]:
    """The JFK clip at 16 kHz: speech from ~0.3 s, a pause after "Americans" at ~2.3 s."""
    if not JFK.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"speech clip missing: {JFK} (set STREAMCAP_AUDIO)")
        pytest.skip(f"speech clip missing: {JFK} (set STREAMCAP_AUDIO)")
    return load_audio(JFK)


def make_cfg(tmp_path: Path, **overrides: Any) -> Config:
    base = {
        "output.dir": str(tmp_path / "captions"),
        "server.port": 0,
        "server.status_interval_s": 0.1,
        "daemon.shutdown_timeout_s": 10.0,
    }
    base.update(overrides)
    return config_mod.with_overrides(Config(), base)


async def until(pred: Callable[[], bool], units: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + units * timeout_unit()
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def started(daemon: Daemon, serve: asyncio.Task[int]) -> None:
    await until(lambda: daemon.started or serve.done(), 20, "the daemon to start")
    if serve.done():
        serve.result()  # raises what startup raised
        raise AssertionError("the daemon stopped during startup")


def srt_cues(directory: Path) -> list[srt.Subtitle]:
    files = sorted(directory.glob("*.srt"))
    assert files, f"no SRT file in {directory}"
    return [c for f in files for c in srt.parse(f.read_text(encoding="utf-8"))]


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60 * timeout_unit()))  # type: ignore[arg-type]


async def cleanup(daemon: Daemon) -> None:
    """After a forced exit (which leaves sockets and threads to the process exit): close them."""
    for sink in daemon.sinks:
        if sink is not daemon.files:  # the files were left open: that is what is checked
            await sink.stop(5.0)
    if daemon.files is not None:
        daemon.files.close(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- reload planning (pure) -----------------------------------------------------------------


def test_plan_reload_splits_live_and_restart_keys() -> None:
    """Output, OBS and threshold changes are applied; model, input and port changes wait."""
    running = Config()
    new = config_mod.with_overrides(running, {
        "output.dir": "elsewhere", "obs.lines": 3, "vad.end_silence_s": 0.8,
        "asr.no_speech_threshold": 0.5, "asr.model": "base", "audio.input": "file:x.wav",
        "server.port": 9999,
    })
    plan = plan_reload(running, new)
    assert set(plan.applied) == {"output.dir", "obs.lines", "vad.end_silence_s",
                                 "asr.no_speech_threshold"}
    assert set(plan.restart_needed) == {"asr.model", "audio.input", "server.port"}
    assert plan.output_changed and plan.obs_changed and plan.thresholds_changed
    eff = plan.effective
    assert eff.output.dir == "elsewhere" and eff.obs.lines == 3
    assert eff.vad.end_silence_s == 0.8 and eff.asr.no_speech_threshold == 0.5
    assert eff.asr.model == running.asr.model and eff.server.port == running.server.port
    assert eff.audio.input == running.audio.input


def test_plan_reload_of_an_unchanged_config_is_empty() -> None:
    """Reloading the same configuration changes nothing and keeps the running config."""
    plan = plan_reload(Config(), Config())
    assert plan.applied == () and plan.restart_needed == ()
    assert plan.effective == Config()
    assert not (plan.output_changed or plan.obs_changed or plan.thresholds_changed)


def test_plan_reload_rejects_a_live_value_the_running_config_cannot_take() -> None:
    """A live key that conflicts with a key that needs a restart is refused, naming the key."""
    running = config_mod.with_overrides(Config(), {"vad.buffer_s": 10.0,
                                                   "vad.max_utterance_s": 8.0})
    new = config_mod.with_overrides(Config(), {"vad.buffer_s": 30.0, "vad.max_utterance_s": 20.0})
    with pytest.raises(ConfigError, match=r"vad\.max_utterance_s"):
        plan_reload(running, new)


def test_live_keys_cover_sections_and_thresholds_only() -> None:
    """Whole output/obs sections are live; model, device and server address keys are not."""
    assert is_live_key("output.rotate_minutes") and is_live_key("obs.password")
    assert is_live_key("vad.aggressiveness") and is_live_key("asr.log_prob_threshold")
    for key in ("asr.model", "asr.device", "audio.device", "server.host", "vad.frame_ms", ""):
        assert not is_live_key(key)


def test_dropped_frames_counts_capture_and_worker_losses_in_vad_frames() -> None:
    """50 ms capture blocks and dropped samples are both expressed in 30 ms VAD frames."""
    cfg = Config()
    assert dropped_frames(cfg, 0, 0) == 0
    assert dropped_frames(cfg, 3, 0) == 5  # 150 ms
    assert dropped_frames(cfg, 0, 480) == 1
    assert dropped_frames(cfg, 1, 159) == 1  # 959 samples: one whole frame, the rest not


# --- the writer thread ----------------------------------------------------------------------


def test_file_sink_reports_errors_and_keeps_writing(tmp_path: Path) -> None:
    """A failing file is reported (once per distinct message) and later events still go on."""
    errors: list[str] = []

    class Flaky:
        def __init__(self) -> None:
            self.written: list[Any] = []
            self.closed = False

        def write(self, ev: Any) -> None:
            if len(self.written) == 0 and not errors:
                raise StreamcapError("disk full")
            self.written.append(ev)

        def close(self) -> None:
            self.closed = True

    files = Flaky()
    sink = FileSink(files, errors.append)  # type: ignore[arg-type]

    async def main() -> None:
        await sink.start()
        final = FinalCaption(0, "hi", (), 0.0, 1.0)
        for _ in range(3):
            sink.publish(final)
        await sink.stop(10 * timeout_unit())

    run(main())
    assert errors == ["disk full"]
    assert len(files.written) == 2 and files.closed and not sink.alive


def test_file_sink_records_captions_vad_and_device_state_changes_only(tmp_path: Path) -> None:
    """Into real session files go partials, finals, VAD events and one status per device-state
    change; repeated status and error events (for live clients) do not."""
    from streamcap.events import Session
    from streamcap.sinks.files import SessionFiles

    cfg = make_cfg(tmp_path)
    files = SessionFiles(cfg.output, Session("s1", 0.0), started_at=None)
    sink = FileSink(files, lambda message: None)
    events: list[Event] = [
        StatusEvent(0.0, 0.0, "running", 0, 0),
        StatusEvent(0.1, 1.0, "running", 0, 1),  # periodic, same state: not recorded
        VadEvent("speech_start", 0.5, 0),
        PartialCaption(0, 0, (Word(" hello", 0.5, 1.0, 0.9, stable=False),), 0.5, 1.0),
        ErrorEvent("output", "a hostile \x00 message"),
        FinalCaption(0, "hello there", (), 0.5, 1.5),
        StatusEvent(0.0, 0.0, "lost", 0, 0),
        StatusEvent(0.0, 0.0, "lost", 0, 0),
        StatusEvent(0.0, 0.0, "running", 0, 0),
    ]

    async def main() -> None:
        await sink.start()
        for ev in events:
            sink.publish(ev)
        await sink.stop(10 * timeout_unit())

    run(main())
    (jsonl,) = (tmp_path / "captions").glob("*.jsonl")
    got = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert [(e["type"], e.get("device_state")) for e in got] == [
        ("status", "running"), ("vad", None), ("partial", None), ("final", None),
        ("status", "lost"), ("status", "running")]
    assert [c.content for c in srt_cues(tmp_path / "captions")] == ["hello there"]


def test_file_sink_with_no_files_takes_events_and_stops() -> None:
    """With every output format off (no files) the sink accepts events and stops cleanly."""
    sink = FileSink(None, lambda message: None)

    async def main() -> None:
        await sink.start()
        sink.publish(FinalCaption(0, "", (), 0.0, 0.0))  # empty text, too
        await sink.stop(10 * timeout_unit())

    run(main())
    assert sink.written == 0 and not sink.alive


# --- health and reload (pure) ---------------------------------------------------------------


def _view(**kw: Any) -> PipelineView:
    base: dict[str, Any] = {
        "worker_alive": True, "worker_error": None, "source_finished": False,
        "source_state": "running", "source_alive": True, "source_error": None,
        "source_description": "file x.wav",
    }
    base.update(kw)
    return PipelineView(**base)


def test_verdict_stops_on_a_dead_worker_or_capture_and_at_the_end_of_input() -> None:
    """A dead worker or a stopped capture is a failure; the end of the input is not; a lost
    device that is being reopened keeps the daemon running."""
    assert verdict(_view()) is None
    assert verdict(_view(source_state="lost", source_alive=False)) is None
    dead = verdict(_view(worker_alive=False, worker_error=RuntimeError("boom")))
    assert dead is not None and dead.failure and "boom" in dead.reason
    end = verdict(_view(source_finished=True, source_state="finished", source_alive=False))
    assert end is not None and not end.failure and "file x.wav" in end.reason
    stopped = verdict(_view(source_state="stopped", source_alive=False, source_error=None))
    assert stopped is not None and stopped.failure and "unknown reason" in stopped.reason


def test_retuned_takes_live_thresholds_only() -> None:
    """retuned() copies the live VAD/ASR thresholds and leaves the model and device alone."""
    engine_cfg = Config()
    new = config_mod.with_overrides(Config(), {"vad.end_silence_s": 1.2, "asr.beam_size": 2,
                                               "asr.model": "base", "vad.preroll_s": 0.5})
    out = retuned(engine_cfg, new)
    assert out.vad.end_silence_s == 1.2 and out.asr.beam_size == 2
    assert out.asr.model == "tiny.en" and out.vad.preroll_s == engine_cfg.vad.preroll_s
    assert retuned(engine_cfg, engine_cfg) == engine_cfg


def test_a_line_width_change_restarts_obs() -> None:
    """output.max_line_chars is applied to the files and to OBS (which wraps at that width)."""
    plan = plan_reload(Config(), config_mod.with_overrides(Config(),
                                                           {"output.max_line_chars": 30}))
    assert plan.output_changed and plan.obs_changed and not plan.thresholds_changed


# --- the daemon in-process ------------------------------------------------------------------


def test_sigterm_finalises_the_utterance_in_flight_and_closes_clients_with_1001(
    tmp_path: Path, speech: np.ndarray[Any, Any]
) -> None:
    """SIGTERM mid-utterance: the final is written to SRT and sent, then clients get 1001."""
    cfg = make_cfg(tmp_path)
    source, decoder, notifier = ScriptedSource(), ScriptedDecoder(), RecordingNotifier()
    daemon = Daemon(cfg, source=source, decoder=decoder, notifier=notifier)

    async def main() -> None:
        serve = asyncio.create_task(daemon.serve())
        await started(daemon, serve)
        assert daemon.server is not None
        messages: list[dict[str, Any]] = []
        async with websockets.connect(f"ws://127.0.0.1:{daemon.server.port}/") as ws:

            async def reader() -> None:
                async for raw in ws:
                    messages.append(json.loads(raw))

            rd = asyncio.create_task(reader())
            source.push(speech[: int(1.8 * SAMPLE_RATE)])  # still speaking at 1.8 s
            await until(lambda: any(m["type"] == "partial" for m in messages), 20, "a partial")
            assert not any(m["type"] == "final" for m in messages)
            daemon.handle_signal(signal.SIGTERM)
            assert await serve == 0
            await asyncio.wait_for(rd, 10 * timeout_unit())
            assert ws.close_code == 1001
        finals = [m for m in messages if m["type"] == "final"]
        assert len(finals) == 1 and finals[0]["utterance_id"] == 0
        assert 1.0 < finals[0]["end"] <= 2.2
        cues = srt_cues(tmp_path / "captions")
        assert len(cues) >= 1
        assert " ".join(c.content.replace("\n", " ") for c in cues) == finals[0]["text"]

    run(main())
    ready = [i for i, m in enumerate(notifier.sent) if m.startswith("READY=1")]
    assert len(ready) == 1 and notifier.sent.index("STOPPING=1") > ready[0]
    # READY came after the warm-up: one second of silence, decoded as a final.
    warm = decoder.requests[0]
    assert warm.final and len(warm.audio) == SAMPLE_RATE and not warm.audio.any()
    assert source.stopped.is_set() and daemon.files is not None and not daemon.files.alive


def test_second_signal_forces_exit_while_the_final_decode_hangs(
    tmp_path: Path, speech: np.ndarray[Any, Any]
) -> None:
    """With the final decode stuck, a second SIGINT ends serve() with code 1, and the cue
    written before stays in a valid SRT file."""
    cfg = make_cfg(tmp_path, **{"daemon.shutdown_timeout_s": 600.0})
    source, decoder = ScriptedSource(), ScriptedDecoder()
    daemon = Daemon(cfg, source=source, decoder=decoder, notifier=RecordingNotifier())
    written: list[str] = []

    async def main() -> None:
        serve = asyncio.create_task(daemon.serve())
        await started(daemon, serve)
        # One whole utterance is captioned and written before the hang.
        source.push(speech[: int(3.3 * SAMPLE_RATE)])
        source.push(np.zeros(SAMPLE_RATE, dtype=np.float32))
        await until(lambda: bool(list((tmp_path / "captions").glob("*.srt")))
                    and bool(srt_cues(tmp_path / "captions")), 20, "the first cue")
        written.extend(c.content for c in srt_cues(tmp_path / "captions"))
        decoder.block_finals = True
        source.push(speech[int(3.3 * SAMPLE_RATE) : int(5.3 * SAMPLE_RATE)])  # mid-utterance
        await until(lambda: daemon.worker is not None and daemon.worker.engine.audio_time > 6.2,
                    20, "the audio to reach the engine")
        daemon.handle_signal(signal.SIGINT)
        await until(decoder.in_final.is_set, 20, "the final decode to start")
        assert not serve.done()
        daemon.handle_signal(signal.SIGINT)
        assert await asyncio.wait_for(serve, 20 * timeout_unit()) == 1
        assert daemon.forced and not decoder.release.is_set()
        await cleanup(daemon)

    try:
        run(main())
    finally:
        decoder.release.set()
    assert daemon.worker is not None
    daemon.worker.stop(10 * timeout_unit())
    # The files opened at start are still there, valid, and hold the cues written before.
    assert written and all(text.strip() for text in written)
    assert len(list((tmp_path / "captions").glob("*.srt"))) == 1
    assert [c.content for c in srt_cues(tmp_path / "captions")][: len(written)] == written


def test_sigterm_during_a_shutdown_at_the_end_of_input_is_not_a_second_signal(
    tmp_path: Path, speech: np.ndarray[Any, Any]
) -> None:
    """When the input ends the daemon shuts down by itself; one SIGTERM arriving while it
    finalises is the user's first signal: no forced exit, code 0, the final is kept."""
    cfg = make_cfg(tmp_path)
    source, decoder = ScriptedSource(), ScriptedDecoder(block_finals=True)
    daemon = Daemon(cfg, source=source, decoder=decoder, notifier=RecordingNotifier())

    async def main() -> None:
        serve = asyncio.create_task(daemon.serve())
        await started(daemon, serve)
        source.push(speech[: int(1.8 * SAMPLE_RATE)])  # still speaking when the input ends
        await until(lambda: daemon.worker is not None and daemon.worker.engine.audio_time > 1.7,
                    20, "the audio to reach the engine")
        source.set_state("finished")
        await until(decoder.in_final.is_set, 20, "the shutdown's final decode")
        daemon.handle_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        assert not serve.done() and not daemon.forced
        decoder.release.set()
        assert await asyncio.wait_for(serve, 20 * timeout_unit()) == 0
        assert not daemon.forced and not daemon.timed_out and daemon.failure is None

    try:
        run(main())
    finally:
        decoder.release.set()
    cues = srt_cues(tmp_path / "captions")
    assert cues and cues[0].start.total_seconds() < 1.0


def test_shutdown_timeout_forces_exit(tmp_path: Path, speech: np.ndarray[Any, Any]) -> None:
    """When finalising takes longer than daemon.shutdown_timeout_s, shutdown gives up with 1."""
    cfg = make_cfg(tmp_path, **{"daemon.shutdown_timeout_s": 0.5})
    source, decoder = ScriptedSource(), ScriptedDecoder(block_finals=True)
    daemon = Daemon(cfg, source=source, decoder=decoder, notifier=RecordingNotifier())

    async def main() -> None:
        serve = asyncio.create_task(daemon.serve())
        await started(daemon, serve)
        source.push(speech[: int(1.8 * SAMPLE_RATE)])
        await until(lambda: daemon.worker is not None and daemon.worker.engine.audio_time > 1.7,
                    20, "the audio to reach the engine")
        daemon.handle_signal(signal.SIGTERM)
        assert await asyncio.wait_for(serve, 30 * timeout_unit()) == 1
        assert daemon.timed_out and not daemon.forced
        await cleanup(daemon)

    try:
        run(main())
    finally:
        decoder.release.set()


def test_sighup_applies_output_obs_and_thresholds_and_logs_restart_keys(
    tmp_path: Path, speech: np.ndarray[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """SIGHUP: new files in the new directory, OBS restarted, thresholds retuned; the model
    and port changes are logged as needing a restart and keep their running values."""
    cfg = make_cfg(tmp_path)
    new_cfg = config_mod.with_overrides(cfg, {
        "output.dir": str(tmp_path / "after"),
        "output.vtt": False,
        "obs.enabled": True,
        "obs.port": free_port(),  # nothing listens: the sink keeps reconnecting
        "vad.end_silence_s": 1.0,
        "asr.no_speech_threshold": 0.35,
        "asr.beam_size": 2,
        "asr.model": "base",
        "server.port": 1,
    })
    box = {"cfg": new_cfg}
    source, decoder = ScriptedSource(), ScriptedDecoder()
    daemon = Daemon(cfg, source=source, decoder=decoder, notifier=RecordingNotifier(),
                    reload=lambda: box["cfg"])
    caplog.set_level(logging.INFO, logger="streamcap")

    async def main() -> None:
        serve = asyncio.create_task(daemon.serve())
        await started(daemon, serve)
        assert daemon.engine is not None and daemon.obs is not None
        old_obs = daemon.obs
        assert old_obs.state == "disabled"
        # One whole utterance before the reload goes to the first set of files.
        source.push(speech[: int(3.3 * SAMPLE_RATE)])
        source.push(np.zeros(SAMPLE_RATE, dtype=np.float32))
        await until(lambda: bool(list((tmp_path / "captions").glob("*.srt")))
                    and bool(srt_cues(tmp_path / "captions")), 20, "the first cue")

        daemon.request_reload()  # what SIGHUP calls
        await until(lambda: daemon.cfg.output.dir.endswith("after"), 20, "the reload")
        await until(lambda: bool(list((tmp_path / "after").glob("*.srt"))), 20, "new files")
        engine = daemon.engine
        assert engine.policy.asr.no_speech_threshold == 0.35
        assert engine.vad.cfg.end_silence_s == 1.0
        assert engine.vad._end_frames == round(1.0 * SAMPLE_RATE / engine.vad.frame)
        assert decoder.cfg.beam_size == 2
        assert daemon.obs is not old_obs and daemon.obs.state in ("connecting", "connected")
        assert daemon.cfg.asr.model == "tiny.en" and daemon.cfg.server.port == 0

        # Captions after the reload go to the new files only (and no VTT any more).
        n_before = len(srt_cues(tmp_path / "captions"))
        source.push(speech[int(3.3 * SAMPLE_RATE) :])
        source.push(np.zeros(int(1.5 * SAMPLE_RATE), dtype=np.float32))
        await until(lambda: bool(srt_cues(tmp_path / "after")), 20, "a cue in the new files")
        assert len(srt_cues(tmp_path / "captions")) == n_before
        assert not list((tmp_path / "after").glob("*.vtt"))
        daemon.handle_signal(signal.SIGTERM)
        assert await serve == 0

    run(main())
    text = caplog.text
    assert "asr.model changed but needs a restart" in text
    assert "server.port changed but needs a restart" in text
    assert "output.dir" in text and "applied" in text
    # The old files were closed and stay valid; the new ones are named apart from them.
    old = sorted((tmp_path / "captions").glob("*.srt"))
    new = sorted((tmp_path / "after").glob("*.srt"))
    assert len(old) == 1 and len(new) == 1 and old[0].name != new[0].name
    assert srt_cues(tmp_path / "captions") and srt_cues(tmp_path / "after")


def test_sighup_with_a_broken_config_keeps_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A configuration file that fails to load on SIGHUP is logged and changes nothing."""
    cfg = make_cfg(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("vad: {aggressiveness: 7}\n")
    daemon = Daemon(cfg, source=ScriptedSource(), decoder=ScriptedDecoder(),
                    notifier=RecordingNotifier(), reload=lambda: config_mod.load(bad))
    caplog.set_level(logging.INFO, logger="streamcap")

    async def main() -> None:
        serve = asyncio.create_task(daemon.serve())
        await started(daemon, serve)
        assert await daemon.reload() is None
        assert daemon.cfg == cfg and not serve.done()
        daemon.handle_signal(signal.SIGTERM)
        assert await serve == 0

    run(main())
    assert "configuration not reloaded: vad.aggressiveness" in caplog.text


def test_status_reports_device_state_and_healthz_follows_capture(
    tmp_path: Path,
) -> None:
    """Clients see status with device_state lost then running; /healthz is 503 while lost and
    the watchdog is fed throughout (a lost device is not a hang)."""
    cfg = make_cfg(tmp_path)
    source, notifier = ScriptedSource(), RecordingNotifier(watchdog_s=0.1)
    daemon = Daemon(cfg, source=source, decoder=ScriptedDecoder(), notifier=notifier)

    def healthz(port: int) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    async def main() -> None:
        serve = asyncio.create_task(daemon.serve())
        await started(daemon, serve)
        assert daemon.server is not None
        port = daemon.server.port
        states: list[str] = []
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:

            async def reader() -> None:
                async for raw in ws:
                    m = json.loads(raw)
                    if m["type"] == "status":
                        states.append(m["device_state"])
                        assert m["clients"] == 1 and m["dropped_frames"] == 0
                        assert m["lag"] >= 0 and m["rtf"] >= 0

            rd = asyncio.create_task(reader())
            await until(lambda: "running" in states, 10, "a running status")
            assert await asyncio.to_thread(healthz, port) == 200
            pings = notifier.sent.count("WATCHDOG=1")
            source.set_state("lost")
            await until(lambda: "lost" in states, 10, "a lost status")
            assert await asyncio.to_thread(healthz, port) == 503
            await until(lambda: notifier.sent.count("WATCHDOG=1") > pings, 10, "a ping while lost")
            source.set_state("running")
            await until(lambda: states[-1] == "running", 10, "running again")
            assert await asyncio.to_thread(healthz, port) == 200
            daemon.handle_signal(signal.SIGTERM)
            assert await serve == 0
            await rd
        lost_at = states.index("lost")
        assert "running" in states[lost_at:]
        assert any(m.startswith("STATUS=lost") for m in notifier.sent)

    run(main())


def test_a_crashed_worker_stops_the_daemon_with_a_failure(tmp_path: Path,
                                                          speech: np.ndarray[Any, Any]) -> None:
    """When decoding raises, the daemon shuts down by itself and names the failure."""
    cfg = make_cfg(tmp_path, **{"server.enabled": False})
    source, notifier = ScriptedSource(), RecordingNotifier(watchdog_s=0.05)
    daemon = Daemon(cfg, source=source, decoder=ScriptedDecoder(fail=True), notifier=notifier)

    async def main() -> None:
        serve = asyncio.create_task(daemon.serve())
        await started(daemon, serve)
        source.push(speech[: 2 * SAMPLE_RATE])
        assert await asyncio.wait_for(serve, 20 * timeout_unit()) == 0
        assert daemon.failure is not None and "recognition worker" in daemon.failure
        assert "scripted decoder failure" in daemon.failure

    run(main())
    assert source.stopped.is_set()


def test_an_unknown_input_spec_fails_before_anything_starts(tmp_path: Path) -> None:
    """A bad --input spec raises a ConfigError naming it; no model is loaded, no file written."""
    decoder = ScriptedDecoder()
    daemon = Daemon(make_cfg(tmp_path), "speaker:7", decoder=decoder,
                    notifier=RecordingNotifier())

    async def main() -> None:
        with pytest.raises(ConfigError, match="--input"):
            await daemon.serve()

    run(main())
    assert decoder.requests == [] and not (tmp_path / "captions").exists()


def test_status_event_before_start_is_well_formed(tmp_path: Path) -> None:
    """Before startup the status says 'starting' with zero lag, rtf and drops (empty input)."""
    daemon = Daemon(make_cfg(tmp_path), source=ScriptedSource(), decoder=ScriptedDecoder(),
                    notifier=RecordingNotifier())
    st = daemon.status_event()
    assert dataclasses.astuple(st)[:4] == (0.0, 0.0, "starting", 0)
    assert not daemon.healthy()
