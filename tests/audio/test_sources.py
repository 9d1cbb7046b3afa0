"""Audio sources: pure pacing/framing/backoff, the file and stdin sources, and real capture from a
private PulseAudio (speech played into a null sink, recorded from its monitor, device loss)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.clips import AUDIO
from support.pulse import PulseServer, private_pulse
from support.timing import unit as timeout_unit
from support.timing import wait_until

from streamcap.audio.decode import load_audio
from streamcap.audio.sources import (
    Backoff,
    FilePacedSource,
    MicrophoneSource,
    Pacer,
    PcmAssembler,
    SourceState,
    StdinSource,
    open_source,
)
from streamcap.config import AudioConfig
from streamcap.errors import AudioDeviceError, AudioError, ConfigError

CLIP = AUDIO / "en_misc" / "sense_and_sensibility_01_austen_64kb-0880.wav"  # 2.99 s
SHORT_CLIP = AUDIO / "en_librispeech" / "1089-134691-0000.flac"  # 2.09 s
SR = 16000


class Collector:
    """Records blocks with their arrival time, and state changes."""

    def __init__(self) -> None:
        self.blocks: list[np.ndarray[Any, Any]] = []
        self.times: list[float] = []
        self.states: list[SourceState] = []
        self.lock = threading.Lock()

    def on_block(self, block: np.ndarray[Any, Any]) -> None:
        import time

        assert block.dtype == np.float32 and block.ndim == 1
        with self.lock:
            self.blocks.append(block)
            self.times.append(time.monotonic())

    def on_state(self, state: SourceState, detail: str) -> None:
        self.states.append(state)

    @property
    def samples(self) -> int:
        return sum(len(b) for b in self.blocks)

    def audio(self, start_block: int = 0) -> np.ndarray[Any, Any]:
        with self.lock:
            blocks = self.blocks[start_block:]
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


# --- pure helpers ------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    """Backoff delays double from the initial value, stay at the cap, and start over on reset."""
    b = Backoff(0.25, 2.0)
    assert [b.next() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    b.reset()
    assert b.next() == 0.25
    assert Backoff(5.0, 1.0).next() == 1.0  # an initial delay above the cap is capped
    for bad in ((0.0, 1.0), (1.0, 0.0), (1.0, 1.0, 0.5)):
        with pytest.raises(ValueError):
            Backoff(*bad)


def test_pacer_releases_whole_blocks_never_ahead_of_time() -> None:
    """The pacer releases contiguous whole blocks, never more than is due, then the tail."""
    rng = np.random.default_rng(1)
    total, block = 10_007, 800
    pacer = Pacer(total, block, rate=SR)
    elapsed, released = 0.0, []
    while not pacer.done:
        elapsed += float(rng.uniform(0.0, 0.2))
        start, end, wait = pacer.step(elapsed)
        assert start == (released[-1][1] if released else 0)
        assert end <= int(elapsed * SR) or (end == total and elapsed * SR >= total)
        if end < total:
            assert (end - start) % block == 0
            assert wait > 0
        released.append((start, end))
    assert released[-1][1] == total
    assert elapsed * SR >= total


def test_pacer_empty_and_bad_arguments() -> None:
    """An empty input is done at once; zero blocks or rates are refused."""
    p = Pacer(0, 800)
    assert p.done and p.step(0.0)[:2] == (0, 0)
    with pytest.raises(ValueError):
        Pacer(10, 0)
    with pytest.raises(ValueError):
        Pacer(10, 10, rate=0)


def test_pcm_assembler_rebuilds_frames_from_any_chunking() -> None:
    """Bytes split anywhere (even mid-sample) come out as the same whole interleaved frames."""
    rng = np.random.default_rng(2)
    frames = rng.integers(-32768, 32767, size=(1001, 2), dtype=np.int16)
    data = frames.astype("<i2").tobytes() + b"\x01"  # plus one stray byte
    asm = PcmAssembler(2)
    out, pos = [], 0
    while pos < len(data):
        n = int(rng.integers(1, 17))
        out.append(asm.feed(data[pos : pos + n]))
        pos += n
    got = np.concatenate(out)
    assert np.array_equal(got, frames.reshape(-1))
    assert asm.pending_bytes == 1
    assert len(asm.feed(b"")) == 0
    with pytest.raises(ValueError):
        PcmAssembler(0)


class _Status:
    def __init__(self, overflow: bool) -> None:
        self.input_overflow = overflow


def test_capture_callback_copies_and_counts_drops() -> None:
    """The PortAudio callback queues a copy of each block and counts overflows and queue drops."""
    src = MicrophoneSource(block_ms=50, queue_seconds=0.5)  # room for 10 blocks
    block = np.ones((800, 2), dtype=np.float32)
    for i in range(15):
        src._callback(block, 800, None, _Status(overflow=i == 3))
    block[:] = 0.0  # PortAudio reuses its buffer: the queued blocks must not change
    assert src.queue_drops == 5 and src.overflows == 1 and src.dropped_blocks == 6
    assert src._queue.qsize() == 10
    assert float(src._queue.get_nowait().min()) == 1.0


# --- the --input spec ----------------------------------------------------------------------------


def test_open_source_specs() -> None:
    """mic, mic:DEVICE, - and file:PATH build the matching source with the config's settings."""
    cfg = AudioConfig(device="USB", stdin_rate=48000, stdin_channels=2, block_ms=20)
    mic = open_source("mic", cfg)
    assert isinstance(mic, MicrophoneSource) and mic.device == "USB" and mic.block_ms == 20
    by_index = open_source("mic:3", cfg)
    assert isinstance(by_index, MicrophoneSource) and by_index.device == 3
    by_name = open_source(" mic:Built-in ", cfg)
    assert isinstance(by_name, MicrophoneSource) and by_name.device == "Built-in"
    stdin = open_source("-", cfg)
    assert isinstance(stdin, StdinSource) and (stdin.rate, stdin.channels) == (48000, 2)
    f = open_source(f"file:{CLIP}", cfg)
    assert isinstance(f, FilePacedSource) and f.path == CLIP
    for s in (mic, by_index, stdin, f):
        assert s.state == "stopped" and not s.finished and s.dropped_blocks == 0


@pytest.mark.parametrize(
    ("spec", "error", "needle"),
    [
        ("", ConfigError, "unknown input ''"),
        ("bogus", ConfigError, "unknown input 'bogus'"),
        ("microphone", ConfigError, "expected mic, mic:DEVICE"),
        ("mic:", ConfigError, "'mic:' needs a device"),
        ("file:", ConfigError, "'file:' needs a path"),
        ("file:/nonexistent/talk.wav", AudioError, "/nonexistent/talk.wav: no such file"),
        ("file:/", AudioError, "/: not a regular file"),
        ("file:bad\0name", AudioError, "contains a NUL byte"),
        ("file:" + "x" * 5000, AudioError, "unusable path"),
    ],
)
def test_open_source_bad_specs(spec: str, error: type[Exception], needle: str) -> None:
    """A bad --input is a single line that starts with --input and names the culprit."""
    with pytest.raises(error) as exc:
        open_source(spec, AudioConfig())
    msg = str(exc.value)
    assert msg.startswith("--input: ") and needle in msg and "\n" not in msg


def test_open_source_empty_file_and_non_string(tmp_path: Path) -> None:
    """An empty file and a spec that is not a string are refused with one line."""
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: file is empty"):
        open_source(f"file:{empty}", AudioConfig())
    with pytest.raises(ConfigError, match=r"^--input: "):
        open_source(42, AudioConfig())  # type: ignore[arg-type]


# --- file paced at real time ----------------------------------------------------------------


def test_file_source_paces_at_real_time_and_delivers_everything() -> None:
    """A file is released in order, never ahead of the wall clock, and completely."""
    import time

    src = FilePacedSource(CLIP, block_ms=50)
    c = Collector()
    t0 = time.monotonic()
    src.start(c.on_block, c.on_state)
    assert src.wait(30 * timeout_unit())
    wall = time.monotonic() - t0
    assert src.finished and src.state == "finished" and not src.alive
    expected = load_audio(CLIP)
    assert np.array_equal(c.audio(), expected)
    assert src.duration == pytest.approx(len(expected) / SR)
    cum = np.cumsum([len(b) for b in c.blocks]) / SR
    ahead = cum - (np.array(c.times) - t0)
    assert float(ahead.max()) <= 1e-3  # never more audio than wall-clock time has passed
    assert wall >= src.duration - 1e-3
    assert all(len(b) == 800 for b in c.blocks[:-1])
    assert c.states == ["starting", "running", "finished"]


def test_file_source_stop_keeps_a_prefix() -> None:
    """Stopping a file source mid-way leaves state 'stopped' and a clean prefix of the audio."""
    src = FilePacedSource(CLIP, block_ms=20)
    c = Collector()
    src.start(c.on_block, c.on_state)
    wait_until(lambda: len(c.blocks) >= 5, 10, "five blocks")
    src.stop()
    assert src.state == "stopped" and not src.finished and not src.alive
    got = c.audio()
    expected = load_audio(CLIP)
    assert 0 < len(got) < len(expected)
    assert np.array_equal(got, expected[: len(got)])
    src.stop()  # idempotent


def test_file_source_undecodable_file(tmp_path: Path) -> None:
    """A file that is not audio fails at start with one line naming it."""
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio\n" * 20)
    src = FilePacedSource(bad)
    with pytest.raises(AudioError, match=r"notes\.wav"):
        src.start(Collector().on_block)
    assert src.state == "stopped" and src.last_error is not None


def test_failing_consumer_stops_the_source() -> None:
    """If the block consumer raises, the source stops and reports why instead of dying silently."""
    src = FilePacedSource(CLIP, block_ms=20)

    def boom(block: np.ndarray[Any, Any]) -> None:
        raise RuntimeError("consumer broke")

    src.start(boom)
    assert src.wait(10 * timeout_unit())
    assert src.state == "stopped" and not src.alive
    assert src.last_error is not None and "consumer broke" in src.last_error


# --- raw PCM on stdin -------------------------------------------------------------------------


def _writer(fd: int, data: bytes, chunk_sizes: list[int]) -> threading.Thread:
    def run() -> None:
        with os.fdopen(fd, "wb", buffering=0) as w:
            pos, i = 0, 0
            while pos < len(data):
                n = chunk_sizes[i % len(chunk_sizes)]
                w.write(data[pos : pos + n])
                pos += n
                i += 1

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_stdin_source_reads_a_real_pipe_in_odd_chunks() -> None:
    """16 kHz mono s16le written to a pipe in odd-sized chunks comes out sample-exact."""
    pcm = (load_audio(SHORT_CLIP) * 20000).astype(np.int16)
    r, w = os.pipe()
    writer = _writer(w, pcm.astype("<i2").tobytes() + b"\x7f", [1, 333, 4097, 2, 65536])
    with os.fdopen(r, "rb") as stream:
        src = StdinSource(SR, 1, stream, block_ms=50)
        c = Collector()
        src.start(c.on_block, c.on_state)
        assert src.wait(30 * timeout_unit())
    writer.join(5)
    assert src.finished and c.states[-1] == "finished"
    assert np.array_equal(c.audio(), pcm.astype(np.float32) / 32768.0)
    assert src.trailing_bytes == 1


@pytest.mark.system
def test_stdin_source_resamples_stereo_48k_from_sox() -> None:
    """48 kHz stereo PCM piped from sox becomes 16 kHz mono that matches the original speech."""
    if shutil.which("sox") is None:
        pytest.fail("sox not found: install the sox package")
    proc = subprocess.Popen(
        ["sox", str(SHORT_CLIP), "-t", "raw", "-e", "signed-integer", "-b", "16", "-r", "48000",
         "-c", "2", "-"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    src = StdinSource(48000, 2, proc.stdout, block_ms=50)
    c = Collector()
    src.start(c.on_block)
    assert src.wait(30 * timeout_unit())
    proc.stdout.close()
    assert proc.wait(10) == 0
    ref = load_audio(SHORT_CLIP)
    got = c.audio()
    assert abs(len(got) - len(ref)) <= 16
    n = min(len(got), len(ref))
    corr = float(np.corrcoef(got[:n], ref[:n])[0, 1])
    assert corr > 0.95


def test_stdin_source_empty_input_finishes() -> None:
    """A stdin that closes at once finishes cleanly with no audio."""
    r, w = os.pipe()
    os.close(w)
    with os.fdopen(r, "rb") as stream:
        src = StdinSource(SR, 1, stream)
        c = Collector()
        src.start(c.on_block)
        assert src.wait(10 * timeout_unit())
    assert src.finished and c.samples == 0


def test_stdin_source_stops_while_waiting_for_data() -> None:
    """Stopping while the writer is silent returns promptly and leaves the source 'stopped'."""
    r, w = os.pipe()
    try:
        with os.fdopen(r, "rb") as stream:
            src = StdinSource(SR, 1, stream)
            src.start(Collector().on_block)
            assert src.state == "running" and src.alive
            src.stop()
            assert src.state == "stopped" and not src.alive
    finally:
        os.close(w)


def test_stdin_source_file_object_without_descriptor() -> None:
    """A file-like object without a descriptor (BytesIO) works too, here with 8 kHz input."""
    pcm = (np.sin(np.arange(8000) / 5) * 10000).astype("<i2")
    src = StdinSource(8000, 1, io.BytesIO(pcm.tobytes()))
    c = Collector()
    src.start(c.on_block)
    assert src.wait(10 * timeout_unit())
    assert src.finished and abs(c.samples - 16000) <= 16


def test_stdin_source_refuses_a_terminal() -> None:
    """Reading PCM from a terminal is refused with a hint showing an ffmpeg pipe."""
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "rb", buffering=0) as tty:
            src = StdinSource(SR, 1, tty)  # type: ignore[arg-type]
            with pytest.raises(AudioError, match=r"^--input -: stdin is a terminal.*ffmpeg"):
                src.start(Collector().on_block)
            assert src.state == "stopped"
    finally:
        os.close(master)


# --- the microphone, through a real private PulseAudio ------------------------------------------


def _match(got: np.ndarray[Any, Any], ref: np.ndarray[Any, Any]) -> float:
    """Correlation of the middle half of ``ref`` with its best-aligned stretch in ``got``.

    (The middle, because a monitor source may miss the first few ms of a stream that starts
    while the sink idles: the sink rewinds, its monitor cannot.)"""
    seg = ref[len(ref) // 4 : 3 * len(ref) // 4].astype(np.float64)
    if len(got) < len(seg):
        return 0.0
    size = 1 << (len(got) + len(seg)).bit_length()
    xc = np.fft.irfft(np.fft.rfft(got, size) * np.conj(np.fft.rfft(seg, size)), size)
    lag = int(np.argmax(xc[: len(got) - len(seg) + 1]))
    return float(np.corrcoef(got[lag : lag + len(seg)], seg)[0, 1])


def _voiced_seconds(x: np.ndarray[Any, Any], threshold: float = 0.01) -> float:
    frames = x[: len(x) // 480 * 480].reshape(-1, 480)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    return float((rms > threshold).sum() * 0.03)


@pytest.mark.system
def test_microphone_captures_speech_played_into_a_monitor(pulse: PulseServer) -> None:
    """Speech played into the null sink is captured from its monitor: that audio, not silence."""
    src = MicrophoneSource(pulse.monitor, block_ms=50)
    c = Collector()
    src.start(c.on_block, c.on_state)
    try:
        assert src.state == "running" and "streamcap_test.monitor" in src.description
        ref = load_audio(CLIP)
        pulse.wait_played(pulse.play(CLIP), 30)
        n0 = c.samples  # then half a second more, so the tail has certainly arrived
        wait_until(lambda: c.samples >= max(n0, len(ref)) + SR // 2, 15, "the clip's tail")
    finally:
        src.stop()
    assert src.state == "stopped" and not src.alive
    got = c.audio()
    assert _match(got, ref) > 0.95
    ratio = _voiced_seconds(got) / _voiced_seconds(ref)
    assert 0.8 < ratio < 1.25
    assert c.states == ["starting", "running", "stopped"]


@pytest.mark.system
def test_microphone_survives_device_loss_and_server_restart(pulse: PulseServer) -> None:
    """An unloaded sink and then a restarted sound server each make the source 'lost'; each time
    it reopens by itself and capture resumes without a restart."""
    src = MicrophoneSource(pulse.monitor, block_ms=50, reopen_backoff_max_s=0.4)
    c = Collector()
    src.start(c.on_block, c.on_state)
    try:
        wait_until(lambda: len(c.blocks) > 0, 10, "the first block")
        # 1. The device goes away (like an unplugged USB microphone) and comes back.
        pulse.unload_sink()
        wait_until(lambda: src.state == "reopening", 10, "the source to notice the loss")
        wait_until(lambda: src.reopen_attempts >= 2, 10, "two failed reopen attempts")
        assert src.alive and src.state == "reopening" and src.last_error
        pulse.load_sink()
        wait_until(lambda: src.state == "running", 15, "the source to reopen")
        mark = len(c.blocks)
        wait_until(lambda: len(c.blocks) > mark, 10, "blocks after the first reopen")
        # 2. The sound server itself dies and is started again.
        pulse.stop_server()
        wait_until(lambda: src.state == "reopening", 10, "the source to notice the server")
        pulse.start_server()
        wait_until(lambda: src.state == "running", 15, "the source to reopen again")
        mark = len(c.blocks)
        pulse.wait_played(pulse.play(SHORT_CLIP), 30)
        ref = load_audio(SHORT_CLIP)
        n0 = c.samples
        wait_until(lambda: c.samples >= n0 + SR // 2, 15, "capture after the reopen")
    finally:
        src.stop()
        if pulse.proc.poll() is not None:
            pulse.start_server()
        if pulse.sink_module() is None:
            pulse.load_sink()
    assert c.states == ["starting", "running", "lost", "reopening", "running", "lost",
                        "reopening", "running", "stopped"]
    assert src.reopen_count == 2
    after = c.audio(mark)
    assert float(np.abs(after).max()) > 0.05  # the speech played after the reopen arrived
    assert _match(after, ref) > 0.95


@pytest.mark.system
def test_one_inputs_loss_leaves_another_inputs_stream_alone(pulse: PulseServer) -> None:
    """Two sources in one process (several inputs): while one device is lost and its source
    keeps trying to reopen it, the other source's stream stays open and delivers audio."""
    # A server of its own that ends (rather than moves) a recording whose source goes away;
    # a third source is the default, so that neither recording follows the default.
    with private_pulse(extra=("load-module module-null-sink sink_name=other rate=16000 "
                              "channels=1",
                              "load-module module-null-sink sink_name=idle rate=16000 channels=1",
                              "set-default-source idle.monitor"),
                       rescue_streams=False) as pa, pa.activate():
        lost = MicrophoneSource(pa.monitor, block_ms=50, reopen_backoff_max_s=0.2)
        kept = MicrophoneSource("other.monitor", block_ms=50)
        a, b = Collector(), Collector()
        lost.start(a.on_block, a.on_state)
        kept.start(b.on_block, b.on_state)
        try:
            wait_until(lambda: bool(a.blocks and b.blocks), 10, "blocks from both")
            pa.unload_sink()
            wait_until(lambda: lost.reopen_attempts >= 3, 15, "three failed reopen attempts")
            mark = b.samples
            wait_until(lambda: b.samples > mark + SR // 2, 10, "the other input capturing")
            assert kept.state == "running" and b.states == ["starting", "running"]
            pa.load_sink()
            wait_until(lambda: lost.state == "running", 15, "the lost source to reopen")
        finally:
            lost.stop()
            kept.stop()
    assert b.states == ["starting", "running", "stopped"]
    assert a.states[-2:] == ["running", "stopped"] and "lost" in a.states


@pytest.mark.system
def test_microphone_detects_a_silent_stall(pulse: PulseServer) -> None:
    """A stream that stays open but delivers nothing (suspended sink) is treated as lost and
    reopened, and capture resumes once audio flows again."""
    src = MicrophoneSource(pulse.monitor, block_ms=50, reopen_backoff_max_s=0.4,
                           stall_timeout_s=4.0)
    c = Collector()
    src.start(c.on_block, c.on_state)
    try:
        wait_until(lambda: len(c.blocks) > 0, 10, "the first block")
        pulse.pactl("suspend-sink", pulse.sink, "1")
        wait_until(lambda: "lost" in c.states, 15, "the stall to be noticed")
        assert "no audio from the device" in (src.last_error or "")
        pulse.pactl("suspend-sink", pulse.sink, "0")
        wait_until(lambda: src.state == "running", 15, "the source to reopen")
        mark = len(c.blocks)
        wait_until(lambda: len(c.blocks) > mark + 5, 15, "blocks after the stall")
    finally:
        src.stop()
        pulse.pactl("suspend-sink", pulse.sink, "0")
    assert c.states[:4] == ["starting", "running", "lost", "reopening"]
    assert c.states[-2:] == ["running", "stopped"] and src.reopen_count >= 1


@pytest.mark.system
def test_microphone_unknown_device_lists_the_inputs(pulse: PulseServer) -> None:
    """A device name that matches nothing fails at start with the available inputs listed."""
    found = MicrophoneSource("streamcap_test").find_device()  # a name part is enough
    assert found.pulse_source == pulse.monitor
    src = MicrophoneSource("no-such-device-xyz")
    with pytest.raises(AudioDeviceError, match=r"no input device matches.*streamcap_test\.monitor"):
        src.start(Collector().on_block)
    assert src.state == "stopped" and not src.alive


def test_microphone_without_any_input_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no input device at all, start fails with one line pointing at files and monitors."""
    import streamcap.audio.sources as sources

    monkeypatch.setattr(sources, "list_input_devices", lambda **kw: [])
    src = MicrophoneSource()
    with pytest.raises(AudioDeviceError) as exc:
        src.start(Collector().on_block)
    msg = str(exc.value)
    assert "no audio input device" in msg and "--input file:PATH" in msg and ".monitor" in msg
    assert "\n" not in msg and src.state == "stopped"
