"""The real ``streamcap run`` under signals: SIGHUP reload, SIGINT, SIGINT twice, the shutdown
timeout (with a decoder slowed through :mod:`streamcap.faults`), and a bad fault variable.

SIGHUP: an edited ``--config`` file takes effect (new caption files) while ``--set`` overrides
keep winning; a broken file is refused; restart-only keys are kept and logged. Speech is fed on
stdin at real time so the test decides when each clip comes.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.daemon_proc import (
    CLIP,
    CLIP2,
    PATIENT,
    SONNET,
    STATUS_EVERY,
    Client,
    DaemonProc,
    mostly_from,
    need,
    pcm_s16le,
    reference,
    srt_text,
    start_daemon,
    valid_files,
    words,
)
from support.pulse import timeout_unit, wait_until

from streamcap.faults import DELAY_VAR

pytestmark = [pytest.mark.system, pytest.mark.slow]


# --- SIGHUP reload, then one SIGINT --------------------------------------------------------


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


# --- SIGINT twice, and the shutdown timeout, with a slowed decoder ---------------------

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
