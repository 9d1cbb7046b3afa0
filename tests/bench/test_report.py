"""Tests for results.json assembly, report.md and the --compare table (no model involved)."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streamcap.bench.compare import compare_table
from streamcap.bench.continuity import compute_continuity
from streamcap.bench.latency import compute
from streamcap.bench.manifest import Clip
from streamcap.bench.report import REQUIRED_FIELDS, get, report_markdown, results
from streamcap.bench.run import BenchRun, FileResult, IdleResult, ModelInfo
from streamcap.bench.scoring import TextScorer, count_errors
from streamcap.bench.sets import overrides_for
from streamcap.config import Config
from streamcap.events import Event, FinalCaption, PartialCaption, Word

DOCS = Path(__file__).resolve().parents[2] / "docs" / "bench.md"


@dataclass(frozen=True)
class Timed:
    wall: float
    event: Event


def _file(set_name: str, lang: str, ref: str, hyp: str, shift: float) -> FileResult:
    scorer = TextScorer(lang)
    words = tuple(
        Word(" " + t, 0.5 * i, 0.5 * i + 0.4) for i, t in enumerate(hyp.split())
    )
    events = [
        Timed(words[0].end + shift, PartialCaption(0, 1, words[:1], 0.0, words[0].end)),
        Timed(words[-1].end + 2 * shift, FinalCaption(0, hyp, words, 0.0, words[-1].end)),
    ]
    ref_t = scorer.tokens(ref)
    clip = Clip(set_name, Path(f"/nowhere/{set_name}-{lang}.wav"), lang, ref)
    return FileResult(
        clip=clip, metric=scorer.metric, duration=words[-1].end + 1.0,
        streaming_text=hyp, offline_text=ref,
        streaming=count_errors(ref_t, scorer.tokens(hyp)),
        offline=count_errors(ref_t, scorer.tokens(ref)),
        latency=compute(events, ref_t, scorer), decode_seconds=0.5, wall_seconds=3.0,
        cpu_seconds=1.2, offline_seconds=0.4, dropped_samples=0, events=len(events),
        continuity=compute_continuity(events, ref_t, scorer),
        config_overrides=overrides_for(set_name),
    )


def _continuous_file() -> FileResult:
    """Two finals cut inside speech (no speech_end between them) that lose the word "we"."""
    scorer = TextScorer("en")
    ref = "from fairest creatures we desire increase"
    texts = ("from fairest creatures", "desire increase")
    finals = []
    for uid, (text, t0) in enumerate(zip(texts, (0.0, 2.0), strict=True)):
        words = tuple(Word(" " + t, t0 + 0.5 * i, t0 + 0.5 * i + 0.4)
                      for i, t in enumerate(text.split()))
        finals.append(Timed(words[-1].end + 1.0, FinalCaption(uid, text, words, t0,
                                                              words[-1].end)))
    ref_t, hyp = scorer.tokens(ref), scorer.tokens(" ".join(texts))
    clip = Clip("en_continuous", Path("/nowhere/sonnet.wav"), "en", ref)
    return FileResult(
        clip=clip, metric="wer", duration=4.0, streaming_text=" ".join(texts),
        offline_text=ref, streaming=count_errors(ref_t, hyp), offline=count_errors(ref_t, ref_t),
        latency=compute(finals, ref_t, scorer), decode_seconds=0.5, wall_seconds=4.0,
        cpu_seconds=1.0, offline_seconds=0.4, dropped_samples=0, events=len(finals),
        continuity=compute_continuity(finals, ref_t, scorer),
        config_overrides=overrides_for("en_continuous"),
    )


def _run(files: list[FileResult], realtime: bool = True) -> BenchRun:
    model = ModelInfo("tiny.en", "/m", "cpu", "int8", "int8_float32", 2, False, 1.5)
    run = BenchRun(realtime=realtime, cfg=Config(), model=model, files=files,
                   skipped=[("multilingual/x.wav", "English-only model")])
    run.idle = IdleResult(10.0, 10.0, 0.05, valid=realtime)
    run.peak_rss_bytes = 300 * 2**20
    run.wall_seconds = 20.0
    run.complete = True
    return run


def _numbers(x: Any) -> list[float]:
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return []
    if isinstance(x, (int, float)):
        return [float(x)]
    if isinstance(x, dict):
        return [n for v in x.values() for n in _numbers(v)]
    return [n for v in x for n in _numbers(v)]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return results(_run([
        _file("en_librispeech", "en", "he could wait no longer", "he could wait no longer", 0.3),
        _file("en_misc", "en", "red green blue", "red green glue", 0.6),
        _file("multilingual", "ja", "客観的実在", "客 観 的 実 存", 0.2),
    ]))


def test_required_fields_are_present_and_finite(doc: dict[str, Any]) -> None:
    """Every documented headline field exists, is not null and every number is finite."""
    for field in REQUIRED_FIELDS:
        assert get(doc, field) is not None, field
    assert all(math.isfinite(n) for n in _numbers(doc))
    json.dumps(doc, allow_nan=False)


def test_groups_split_wer_and_cer_by_language(doc: dict[str, Any]) -> None:
    """English files pool into WER, Japanese into CER; per-language groups exist for both."""
    assert doc["wer"]["ref_tokens"] == 8 and doc["cer"]["ref_tokens"] == 5
    assert doc["wer"]["streaming"] == pytest.approx(100 / 8)
    assert doc["cer"]["streaming"] == pytest.approx(20.0)
    assert set(doc["languages"]) == {"en", "ja"}
    assert "cer" in doc["languages"]["ja"] and "wer" not in doc["languages"]["ja"]
    assert doc["sets"]["en_misc"]["wer"]["difference"] == pytest.approx(100 / 3, abs=1e-3)


def test_targets_pool_english_sets_and_list_what_is_missing(doc: dict[str, Any]) -> None:
    """English targets pool every English set; continuous-set targets are missing without it."""
    t = doc["targets"]
    assert t["sets"] == ["english"]
    by = {(c["scope"], c["field"]): c for c in t["checks"]}
    wer = by[("english", "wer.difference")]  # one error in 8 English reference words
    assert wer["value"] == pytest.approx(12.5) and wer["pass"] is False
    # Shown delays: 0.3 and 0.6 (the partials' words), then 2.1, 1.6, 1.1, 0.6 and 1.7 (first
    # shown in the final).
    assert by[("english", "latency.partial.p50")]["value"] == pytest.approx(1.1)
    # Final delays: 0.6 and 1.2 s after the last word; neither final follows a speech_end.
    assert by[("english", "final_delay.all.p50")]["value"] == pytest.approx(0.9)
    assert "english: final_delay.at_pause.p50" in t["missing"]
    assert by[("all", "cost.cpu_idle_percent")]["value"] == pytest.approx(0.5)
    assert "en_continuous: continuity.lost_at_cuts" in t["missing"]
    assert doc["set_overrides"] == {}


def test_continuous_set_reports_its_cut_loss_and_override() -> None:
    """A word lost at a cut in the continuous set misses its target and shows in the report."""
    d = results(_run([_continuous_file()]))
    c = d["sets"]["en_continuous"]["continuity"]
    assert (c["boundaries"], c["cuts_inside_speech"], c["lost_at_cuts"],
            c["lost_inside_speech"], c["doubled_words"]) == (1, 1, 1, 1, 0)
    by = {(x["scope"], x["field"]): x for x in d["targets"]["checks"]}
    assert by[("en_continuous", "continuity.lost_at_cuts")]["pass"] is False
    assert by[("en_continuous", "continuity.doubled_words")]["pass"] is True
    assert d["final_delay"]["inside_speech"]["count"] == 2
    assert d["final_delay"]["at_pause"]["count"] == 0  # no speech_end at all in this stream
    assert d["set_overrides"] == {"en_continuous": {"vad.end_silence_s": 4.0}}
    assert d["files"][0]["config_overrides"] == {"vad.end_silence_s": 4.0}
    assert d["files"][0]["cuts"]["lost"][0]["word"] == "we"
    md = report_markdown(d)
    assert "`vad.end_silence_s=4.0`" in md and "MISSED" in md
    assert "lost `we` in sonnet.wav near the inside speech cut" in md


def test_report_markdown_has_every_section(doc: dict[str, Any]) -> None:
    """The report names the machine, the targets, sets, languages, files, skips and plots."""
    md = report_markdown(doc, ["out/latency_cdf.png"])
    for heading in ("## Targets", "## Per set", "## Per language", "## Latency", "## Cost",
                    "## Per file", "## Not measured", "## Plots"):
        assert heading in md
    assert "multilingual/x.wav" in md and "![latency_cdf](latency_cdf.png)" in md


def test_compare_prints_ratios(doc: dict[str, Any]) -> None:
    """Doubling a figure in run B shows a 2.00x ratio on its row."""
    other = copy.deepcopy(doc)
    other["latency"]["stable"]["p50"] = 2 * doc["latency"]["stable"]["p50"]
    table = compare_table(doc, other)
    row = next(line for line in table.splitlines() if line.startswith("latency.stable.p50 "))
    assert row.rstrip().endswith("2.00x")
    assert "sets.en_librispeech.wer.streaming" in table


def test_empty_run_still_gives_a_valid_document() -> None:
    """A run where nothing could be measured serialises and reports without errors."""
    d = results(_run([], realtime=False))
    json.dumps(d, allow_nan=False)
    assert d["latency"]["partial"] == {"count": 0} and "wer" not in d
    assert d["mode"] == "fast" and d["cost"]["idle_valid"] is False
    assert "## Targets" in report_markdown(d)


def test_every_required_field_is_documented() -> None:
    """docs/bench.md names every field the smoke test requires."""
    text = DOCS.read_text(encoding="utf-8")
    groups = {f.rsplit(".", 1)[0] for f in REQUIRED_FIELDS
              if f.startswith(("latency.", "final_delay."))}
    missing = [f for f in REQUIRED_FIELDS
               if f"`{f}`" not in text and f.rsplit(".", 1)[0] not in groups]
    assert missing == []
    for g in groups:
        assert f"`{g}." in text or f"`{g}`" in text, g
