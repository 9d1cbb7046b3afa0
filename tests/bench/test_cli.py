"""End-to-end tests of ``streamcap bench``: the real model on real speech, in --fast mode."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from streamcap.bench.report import REQUIRED_FIELDS, get
from streamcap.cli import main

AUDIO = Path(
    os.environ.get("STREAMCAP_AUDIO", Path(__file__).resolve().parents[3] / "shared" / "audio")
)
# Two short clips (2 s and 3 s) from two sets, listed by absolute path: no audio is copied.
CLIPS = (
    ("en_librispeech", "1089-134691-0000.flac"),
    ("en_misc", "sense_and_sensibility_01_austen_64kb-0880.wav"),
)
HEADER = "file\tduration_seconds\tlanguage\treference_transcript\tnotes\n"


def _bench(*argv: str) -> int:
    """``streamcap bench ARGV``, through the real command (errors become exit codes)."""
    return main(["bench", *argv])


def _row(set_name: str, name: str) -> str:
    for line in (AUDIO / set_name / "manifest.tsv").read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if cols[0] == name:
            return "\t".join([str(AUDIO / set_name / name), cols[1], cols[2], cols[6], cols[8]])
    raise AssertionError(f"{name} is not in the {set_name} manifest")


def _numbers(x: Any) -> list[float]:
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return []
    if isinstance(x, (int, float)):
        return [float(x)]
    if isinstance(x, dict):
        return [n for v in x.values() for n in _numbers(v)]
    return [n for v in x for n in _numbers(v)]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    d = tmp_path_factory.mktemp("bench")
    (d / "manifest.tsv").write_text(HEADER + "".join(_row(*c) + "\n" for c in CLIPS),
                                    encoding="utf-8")
    out = d / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = _bench(str(d / "manifest.tsv"), "--fast", "--idle-seconds", "3",
                      "--events", "--no-progress", "--out", str(out))
    return out, code, buf.getvalue()


@pytest.mark.slow
def test_fast_bench_writes_every_field_finite(smoke: tuple[Path, int, str]) -> None:
    """A --fast run on two short clips writes results.json with every field present and finite."""
    out, code, stdout = smoke
    assert code == 0
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    for field in REQUIRED_FIELDS:
        value = get(doc, field)
        assert value is not None, field
        if isinstance(value, float):
            assert math.isfinite(value), field
    assert all(math.isfinite(n) for n in _numbers(doc))
    assert doc["complete"] is True and doc["mode"] == "fast"
    assert doc["latency"]["valid"] is False and doc["cost"]["idle_valid"] is False
    assert doc["totals"]["files"] == 2 and doc["failed"] == [] and doc["skipped"] == []
    assert set(doc["sets"]) == {out.parent.name}  # a set is named after its manifest's folder
    for f in doc["files"]:
        assert f["streaming"]["text"] and f["offline"]["text"]
        assert f["latency"]["partial"]["count"] > 0
    # Scored against the 13 reference words. Measured (tiny.en int8, --fast): streaming 0
    # errors (0 %), offline beam 5 2 errors (15.4 %, "ill-disposed" -> "old-sposed"). Bounds:
    # one more error each.
    wer = doc["wer"]
    assert wer["ref_tokens"] == 13
    s_err = sum(wer["streaming_counts"][k] for k in ("substitutions", "deletions", "insertions"))
    o_err = sum(wer["offline_counts"][k] for k in ("substitutions", "deletions", "insertions"))
    assert s_err <= 1 and wer["streaming"] <= 100 * 1 / 13 + 1e-6, wer
    assert o_err <= 3 and wer["offline"] <= 100 * 3 / 13 + 1e-6, wer
    assert doc["model"]["compute_type_effective"].startswith("int8")
    assert "WER streaming" in stdout and "not valid: --fast" in stdout


@pytest.mark.slow
def test_report_and_plots_are_written(smoke: tuple[Path, int, str]) -> None:
    """report.md and three PNG plots are written next to results.json."""
    out, _, _ = smoke
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Targets" in md and "sense_and_sensibility_01_austen_64kb-0880.wav" in md
    for name in ("latency_cdf.png", "wer_per_set.png", "latency_over_time.png",
                 "final_delays.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


@pytest.mark.slow
def test_events_are_saved_per_file(smoke: tuple[Path, int, str]) -> None:
    """--events writes each file's events as JSON lines with their wall times, finals included."""
    out, _, _ = smoke
    files = sorted((out / "events").glob("*/*.jsonl"))
    assert [f.stem for f in files] == sorted(Path(c[1]).name for c in CLIPS)
    for f in files:
        events = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()]
        assert {"partial", "final"} <= {e["type"] for e in events}
        walls = [e["wall"] for e in events]
        assert walls == sorted(walls) and all(math.isfinite(w) for w in walls)


@pytest.mark.slow
def test_compare_prints_two_runs_side_by_side(
    smoke: tuple[Path, int, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--compare of a run with itself prints every headline figure with a 1.00x ratio."""
    out, _, _ = smoke
    res = str(out / "results.json")
    assert _bench("--compare", res, res) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("wer.streaming "))
    assert row.rstrip().endswith(("1.00x", "–"))
    assert "latency.stable.p50" in text and "cost.rtf" in text


@pytest.mark.slow
def test_undecodable_file_is_listed_and_results_are_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is not audio fails alone: results.json lists it and the command exits 3."""
    bad = tmp_path / "noise.wav"
    bad.write_bytes(b"this is not a wav file at all" * 10)
    (tmp_path / "manifest.tsv").write_text(HEADER + f"{bad}\t1\ten\thello world\t\n",
                                           encoding="utf-8")
    out = tmp_path / "out"
    code = _bench(str(tmp_path / "manifest.tsv"), "--fast", "--idle-seconds", "0",
                  "--no-progress", "--out", str(out))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert "1 file(s) could not be benchmarked" in err[-1] and "noise.wav" in err[-1]
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["totals"]["failed"] == 1 and "noise.wav" in doc["failed"][0]["file"]
    assert doc["totals"]["files"] == 0


def test_bad_arguments_fail_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing manifest, unwritable --out or bad --compare file each get one line and code 2."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        ((str(tmp_path / "missing.tsv"),), "missing.tsv: no such manifest"),
        ((str(AUDIO / "en_librispeech"), "--out", str(blocker / "sub")), "--out: cannot write"),
        (("--compare", str(blocker), str(blocker)), "not a results.json"),
        (("--idle-seconds", "-1"), "--idle-seconds: expected 0..3600"),
        ((str(AUDIO), "--sets", "en_continuous", "no_such_set"),
         "--sets: no set named 'no_such_set'"),
    ]
    for argv, culprit in cases:
        assert _bench(*argv, "--no-progress") == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and culprit in err[0], (argv, err)
