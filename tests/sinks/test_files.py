"""Tests for the live caption files (SRT, WebVTT, JSON Lines): crash-safe, rotated, per language."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest
import srt
import webvtt
from support.captions import final_of, jfk_words, shifted, timed

from streamcap.config import OutputConfig
from streamcap.errors import StreamcapError
from streamcap.events import (
    Event,
    FinalCaption,
    PartialCaption,
    Session,
    StatusEvent,
    VadEvent,
    Word,
    event_from_json,
)
from streamcap.sinks.captions import CaptionFormatter
from streamcap.sinks.files import CaptionFiles, SessionFiles, SubtitleFileWriter

REPO = Path(__file__).resolve().parents[2]


def timeout_unit() -> float:
    """Seconds in one timeout unit, scaled by STREAMCAP_TIMEOUT_SCALE for slow machines."""
    return max(0.1, float(os.environ.get("STREAMCAP_TIMEOUT_SCALE", "1")))


SESSION = Session(id="abc123def456", epoch=1_700_000_000.0)
STARTED = datetime(2024, 3, 5, 14, 7, 9)
STEM = "20240305-140709-abc123def456"


def srt_cues(path: Path) -> list[srt.Subtitle]:
    return list(srt.parse(path.read_text(encoding="utf-8")))


def vtt_cues(path: Path) -> list[webvtt.Caption]:
    return list(webvtt.read(str(path)).captions)


def seconds(ts: str) -> float:
    h, m, s = ts.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def session_events(words: tuple[Word, ...], repeats: int) -> list[Event]:
    """A realistic event stream: per utterance a VAD start, partials, a final, a VAD end."""
    events: list[Event] = []
    uid = 0
    for k in range(repeats):
        for part in (words[: len(words) // 2], words[len(words) // 2 :]):
            ws = shifted(part, 12.0 * k)
            uid += 1
            events.append(VadEvent("speech_start", ws[0].start, uid))
            for r in range(1, len(ws), 4):
                events.append(PartialCaption(uid, r, ws[:r], ws[0].start, ws[r - 1].end))
            events.append(final_of(ws, uid=uid))
            events.append(VadEvent("speech_end", ws[-1].end + 0.5, uid))
        events.append(StatusEvent(lag=0.2, rtf=0.1, device_state="ok", dropped_frames=0))
    return events


@pytest.mark.slow
def test_session_files_round_trip_through_srt_webvtt_and_json_readers(tmp_path: Path) -> None:
    """Real-word finals written by SessionFiles parse back with srt, webvtt-py and JSON, intact."""
    events = session_events(jfk_words(), repeats=3)
    out = OutputConfig(dir="captions", rotate_minutes=0)
    written = []
    with SessionFiles(out, SESSION, base_dir=tmp_path, started_at=STARTED) as files:
        for ev in events:
            written += files.write(ev)
        paths = files.paths
    d = tmp_path / "captions"
    assert sorted(p.name for p in paths) == sorted([f"{STEM}.srt", f"{STEM}.vtt", f"{STEM}.jsonl"])
    finals = [e for e in events if isinstance(e, FinalCaption)]
    assert len(written) >= len(finals)
    subs = srt_cues(d / f"{STEM}.srt")
    assert [s.index for s in subs] == list(range(1, len(written) + 1))
    assert [s.content for s in subs] == [c.text for c in written]
    assert " ".join(s.content.replace("\n", " ") for s in subs) == " ".join(f.text for f in finals)
    for a, b in itertools.pairwise(subs):
        assert a.end <= b.start
    caps = vtt_cues(d / f"{STEM}.vtt")
    assert [c.identifier for c in caps] == [str(s.index) for s in subs]
    assert [c.text for c in caps] == [s.content for s in subs]
    assert [seconds(c.start) for c in caps] == pytest.approx(
        [s.start.total_seconds() for s in subs]
    )
    lines = (d / f"{STEM}.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(events)
    for line, ev in zip(lines, events, strict=True):
        assert json.loads(line)["type"] == ev.type
        if not isinstance(ev, StatusEvent):
            assert event_from_json(line).to_json() == ev.to_json()


def test_default_name_uses_the_session_start_in_local_time(tmp_path: Path) -> None:
    """Without started_at the name comes from the session epoch; a missing directory is made."""
    out = OutputConfig(dir=str(tmp_path / "new" / "dir"), jsonl=False, vtt=False)
    with SessionFiles(out, SESSION) as files:
        (path,) = files.paths
    stamp = datetime.fromtimestamp(SESSION.epoch).strftime("%Y%m%d-%H%M%S")
    assert path == tmp_path / "new" / "dir" / f"{stamp}-{SESSION.id}.srt"
    assert srt_cues(path) == []


def test_empty_session_leaves_valid_empty_files(tmp_path: Path) -> None:
    """A session with no speech leaves an empty SRT, a header-only WebVTT and an empty JSONL."""
    with SessionFiles(OutputConfig(dir=str(tmp_path)), SESSION, started_at=STARTED) as files:
        files.write(FinalCaption(1, "", (), 0.0, 1.0))
    assert srt_cues(tmp_path / f"{STEM}.srt") == []
    assert vtt_cues(tmp_path / f"{STEM}.vtt") == []
    assert (tmp_path / f"{STEM}.vtt").read_text() == "WEBVTT\n\n"
    assert len((tmp_path / f"{STEM}.jsonl").read_text().splitlines()) == 1


CRASH_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from streamcap.events import FinalCaption, PartialCaption, Word
    from streamcap.sinks.files import CaptionFiles

    d = Path(sys.argv[1])
    files = CaptionFiles(d / "out.srt", d / "out.vtt", d / "out.jsonl")
    t = 0.0
    for uid in range(1, 13):
        words = []
        for k in range(uid % 5 + 3):
            words.append(Word(f" word{uid}x{k}", t, t + 0.35))
            t += 0.4
        fin = FinalCaption(uid, "".join(w.text for w in words).strip(), tuple(words),
                           words[0].start, words[-1].end)
        files.write(PartialCaption(uid, 0, tuple(words[:2]), fin.start, words[1].end))
        cues = files.write(fin)
        print(uid, len(cues), flush=True)
        t += 1.5
        if uid == 9:
            os.kill(os.getpid(), signal.SIGKILL)
    print("not killed", flush=True)
    """
)


@pytest.mark.slow
def test_files_stay_valid_after_the_writer_is_killed(tmp_path: Path) -> None:
    """A writer SIGKILLed mid-session leaves SRT/VTT/JSONL that parse and hold every cue written."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120 * timeout_unit(),
        env=env,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    reported = [line.split() for line in proc.stdout.splitlines()]
    assert [int(u) for u, _ in reported] == list(range(1, 10))
    n_cues = sum(int(n) for _, n in reported)
    subs = srt_cues(tmp_path / "out.srt")
    assert len(subs) == n_cues and [s.index for s in subs] == list(range(1, n_cues + 1))
    assert subs[-1].content.split()[-1].startswith("word9x")
    caps = vtt_cues(tmp_path / "out.vtt")
    assert [c.text for c in caps] == [s.content for s in subs]
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 18
    assert [json.loads(x)["type"] for x in lines] == ["partial", "final"] * 9


FULL_DISK_CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    from streamcap.errors import StreamcapError
    from streamcap.events import FinalCaption, Word
    from streamcap.sinks.files import CaptionFiles

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    d = Path(sys.argv[1])
    files = CaptionFiles(d / "out.srt", d / "out.vtt", d / "out.jsonl")
    resource.setrlimit(resource.RLIMIT_FSIZE, (700, resource.RLIM_INFINITY))
    for uid in range(1, 40):
        w = (Word(f" sentence{uid} with several words in it.", 2.0 * uid, 2.0 * uid + 1.2),)
        try:
            files.write(FinalCaption(uid, w[0].text.strip(), w, w[0].start, w[0].end))
            print("ok", uid, flush=True)
        except StreamcapError as exc:
            print("error", uid, exc, flush=True)
    """
)


@pytest.mark.slow
def test_a_failed_write_keeps_everything_written_before(tmp_path: Path) -> None:
    """When the disk refuses bytes, files are cut back to whole cues and the error names a file."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120 * timeout_unit(),
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    first_error = next(r for r in rows if r.startswith("error"))
    assert "out." in first_error and "File too large" in first_error
    for name in ("out.srt", "out.vtt"):
        size = (tmp_path / name).stat().st_size
        assert 0 < size <= 700
    subs = srt_cues(tmp_path / "out.srt")
    caps = vtt_cues(tmp_path / "out.vtt")
    assert len(subs) >= 3 and len(caps) >= 3
    assert [s.index for s in subs] == list(range(1, len(subs) + 1))
    for k, s in enumerate(subs, start=1):
        assert s.content == f"sentence{k} with several words in it."
    assert (tmp_path / "out.srt").read_text().endswith("\n\n")
    assert (tmp_path / "out.vtt").read_text().endswith("\n\n")
    jl = (tmp_path / "out.jsonl").read_text().splitlines()
    assert all(json.loads(x)["type"] == "final" for x in jl)


def test_rotation_starts_new_numbered_parts_in_stream_time(tmp_path: Path) -> None:
    """Past each rotation period -partN files open; cues renumber from 1 and keep stream time."""
    out = OutputConfig(dir=str(tmp_path), rotate_minutes=0.05)  # 3 s periods
    files = SessionFiles(out, SESSION, started_at=STARTED)
    for uid, t0 in enumerate([0.2, 1.4, 3.5, 4.8, 13.0], start=1):
        files.write(VadEvent("speech_start", t0, uid))
        files.write(final_of(timed([f" utterance{uid}"], t0=t0, step=0.6), uid=uid))
    files.write(StatusEvent(lag=0.0, rtf=0.1, device_state="ok", dropped_frames=0))
    files.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        f"{STEM}{part}.{ext}"
        for part in ("", "-part2", "-part3")
        for ext in ("srt", "vtt", "jsonl")
    )
    expect = {"": [1, 2], "-part2": [3, 4], "-part3": [5]}
    for part, uids in expect.items():
        subs = srt_cues(tmp_path / f"{STEM}{part}.srt")
        assert [s.index for s in subs] == list(range(1, len(uids) + 1))
        assert [s.content for s in subs] == [f"utterance{u}" for u in uids]
        caps = vtt_cues(tmp_path / f"{STEM}{part}.vtt")
        assert [c.identifier for c in caps] == [str(i) for i in range(1, len(uids) + 1)]
        jl = (tmp_path / f"{STEM}{part}.jsonl").read_text().splitlines()
        assert len(jl) == 2 * len(uids) + (1 if part == "-part3" else 0)
    (last,) = srt_cues(tmp_path / f"{STEM}-part3.srt")
    assert last.start.total_seconds() == pytest.approx(13.0), "stream time, not part time"


def test_per_language_files_and_translations(tmp_path: Path) -> None:
    """Each language gets its own files; a translation goes to .en and its original to its own."""
    out = OutputConfig(dir=str(tmp_path), per_language=True, rotate_minutes=0)
    de = FinalCaption(
        2,
        "Guten Morgen zusammen",
        tuple(timed([" Guten", " Morgen", " zusammen"], t0=3.0)),
        3.0,
        4.0,
        language="de",
        translation="Good morning everyone",
    )
    zh = final_of(timed(["广州市", "房地产"], t0=6.0, step=0.5), uid=3, lang="zh")
    evil = final_of(timed([" x"], t0=9.0), uid=4, lang="../../etc")
    with SessionFiles(out, SESSION, started_at=STARTED) as files:
        assert [p.name for p in files.paths] == [f"{STEM}.jsonl"]
        files.write(final_of(timed([" Hello", " there."], t0=0.5, step=0.5), uid=1))
        files.write(de)
        files.write(zh)
        files.write(evil)
    names = sorted(p.name for p in tmp_path.iterdir())
    langs = ["en", "de", "zh", "etc"]
    assert names == sorted(
        [f"{STEM}.jsonl"] + [f"{STEM}.{lang}.{ext}" for lang in langs for ext in ("srt", "vtt")]
    )
    en = srt_cues(tmp_path / f"{STEM}.en.srt")
    assert [(s.index, s.content) for s in en] == [(1, "Hello there."), (2, "Good morning everyone")]
    assert en[1].start.total_seconds() == pytest.approx(3.0)
    (g,) = srt_cues(tmp_path / f"{STEM}.de.srt")
    assert (g.index, g.content) == (1, "Guten Morgen zusammen")
    (z,) = vtt_cues(tmp_path / f"{STEM}.zh.vtt")
    assert z.text == "广州市房地产"
    assert len((tmp_path / f"{STEM}.jsonl").read_text().splitlines()) == 4


def test_combined_files_carry_the_translation(tmp_path: Path) -> None:
    """Without per-language files the subtitle files get a final's English translation."""
    fin = FinalCaption(1, "Hola", (Word(" Hola", 1.0, 1.5),), 1.0, 2.0, "es", translation="Hello")
    with CaptionFiles(srt=tmp_path / "a.srt") as files:
        files.write(fin)
    (s,) = srt_cues(tmp_path / "a.srt")
    assert s.content == "Hello"
    with CaptionFiles(srt=tmp_path / "b.srt", prefer_translation=False) as files:
        files.write(fin)
    assert srt_cues(tmp_path / "b.srt")[0].content == "Hola"


def test_unusable_paths_are_refused_naming_the_path(tmp_path: Path) -> None:
    """A directory, a path under a file, or one path twice raises StreamcapError naming it."""
    with pytest.raises(StreamcapError, match="it is a directory") as e:
        CaptionFiles(srt=tmp_path)
    assert str(tmp_path) in str(e.value)
    blocker = tmp_path / "plain.txt"
    blocker.write_text("x")
    with pytest.raises(StreamcapError, match=r"plain\.txt"):
        CaptionFiles(vtt=blocker / "out.vtt")
    with pytest.raises(StreamcapError, match="same file"):
        CaptionFiles(srt=tmp_path / "x.srt", vtt=tmp_path / "x.srt")
    with pytest.raises(StreamcapError, match="not a directory"):
        SessionFiles(OutputConfig(dir=str(blocker)), SESSION)
    with pytest.raises(StreamcapError, match="dev/full"):
        full = CaptionFiles(jsonl=Path("/dev/full"))
        full.write(VadEvent("speech_start", 0.0, 1))
    with pytest.raises(StreamcapError, match="unknown subtitle format"):
        SubtitleFileWriter(tmp_path / "x.ass", "ass")  # type: ignore[arg-type]
    # A refused second file does not leave the first one half-made or open.
    with pytest.raises(StreamcapError, match=r"plain\.txt"):
        CaptionFiles(srt=tmp_path / "ok.srt", vtt=blocker / "out.vtt")
    assert (tmp_path / "ok.srt").read_text() == ""


def test_writing_after_close_is_an_error_and_close_is_idempotent(tmp_path: Path) -> None:
    """Closed files refuse new events with a clear error; closing twice is harmless."""
    files = CaptionFiles(srt=tmp_path / "c.srt", formatter=CaptionFormatter(max_line_chars=20))
    files.write(final_of(timed([" one", " two"])))
    files.close()
    files.close()
    with pytest.raises(StreamcapError, match="closed"):
        files.write(final_of(timed([" three"], t0=5.0)))
    assert [s.content for s in srt_cues(tmp_path / "c.srt")] == ["one two"]
    sf = SessionFiles(OutputConfig(dir=str(tmp_path / "s")), SESSION)
    sf.close()
    sf.close()
    with pytest.raises(StreamcapError, match="closed"):
        sf.write(VadEvent("speech_start", 0.0, 1))


def test_labelled_finals_in_srt_webvtt_and_jsonl(tmp_path: Path) -> None:
    """With two labelled inputs the SRT cues start with the label, the WebVTT cues carry it as
    the voice, and the JSON Lines keep source and speaker (absent when unlabelled)."""
    you = timed([" good", " morning", " all"], 0.0)
    them = timed([" hello", " there"], 0.5)
    plain = timed([" no", " label"], 5.0)
    events: list[Event] = [
        PartialCaption(1, 1, tuple(you[:2]), 0.0, 0.6, source="You", speaker="You"),
        PartialCaption(2, 1, tuple(them[:1]), 0.5, 0.8, source="Others", speaker="Others"),
        VadEvent("speech_end", 1.0, 1, source="You"),
        dataclasses.replace(final_of(you, uid=1), source="You", speaker="You"),
        dataclasses.replace(final_of(them, uid=2), source="Others", speaker="Others 2"),
        final_of(plain, uid=3),
    ]
    with CaptionFiles(tmp_path / "a.srt", tmp_path / "a.vtt", tmp_path / "a.jsonl") as files:
        for ev in events:
            files.write(ev)
    assert [s.content for s in srt_cues(tmp_path / "a.srt")] == [
        "You: good morning all", "Others 2: hello there", "no label"]
    assert [(c.voice, c.text) for c in vtt_cues(tmp_path / "a.vtt")] == [
        ("You", "good morning all"), ("Others 2", "hello there"), (None, "no label")]
    lines = (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()
    assert [event_from_json(line).to_dict() for line in lines] == [e.to_dict() for e in events]
    dicts = [json.loads(line) for line in lines]
    assert [(d.get("source"), d.get("speaker")) for d in dicts] == [
        ("You", "You"), ("Others", "Others"), ("You", None), ("You", "You"),
        ("Others", "Others 2"), (None, None)]
    assert "source" not in dicts[-1] and "speaker" not in dicts[-1]
