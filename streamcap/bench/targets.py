"""The engine's targets (issue 8) checked against a results document, and the boundary figures
(words lost and doubled at cuts, stable words changed, final delays) per group (pure).

Each target has a scope: ``english`` (every file whose language is ``en`` or ``en-*``, pooled),
``en_continuous`` (that set alone) or ``all`` (run-wide figures such as idle CPU). A target whose
scope has no files is listed under ``missing``; one whose figure needs a real-time run is
``valid: false`` in a ``--fast`` run. ``met`` is ``value <= limit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .run import FileResult
from .sets import CONTINUOUS_SET
from .stats import summary

# (scope, field, limit, description), in the order of the issue.
TARGETS: tuple[tuple[str, str, float, str], ...] = (
    ("english", "wer.difference", 0.0,
     "finals' WER <= offline beam-5 WER, pooled over every English set"),
    (CONTINUOUS_SET, "wer.difference", 0.0, "finals' WER <= offline beam-5 WER, continuous set"),
    (CONTINUOUS_SET, "continuity.lost_at_cuts", 0, "0 words lost at cuts, continuous set"),
    (CONTINUOUS_SET, "continuity.doubled_words", 0, "no word doubled, continuous set"),
    ("english", "latency.stable.p50", 0.8, "word committed (stable) p50 <= 0.8 s"),
    ("english", "latency.stable.p90", 1.6, "word committed (stable) p90 <= 1.6 s"),
    ("english", "latency.partial.p50", 0.3, "word first shown p50 <= 0.3 s"),
    ("english", "final_delay.all.p50", 1.5,
     "final p50 <= 1.5 s after its last word (continuous speech included)"),
    ("english", "final_delay.all.p90", 3.0,
     "final p90 <= 3 s after its last word (continuous speech included)"),
    (CONTINUOUS_SET, "final_delay.all.p50", 1.5, "final p50 <= 1.5 s after its last word, "
     "continuous set"),
    (CONTINUOUS_SET, "final_delay.all.p90", 3.0, "final p90 <= 3 s after its last word, "
     "continuous set"),
    ("english", "final_delay.at_pause.p50", 0.7, "end of speech -> final p50 <= 0.7 s at a pause"),
    ("english", "cost.cpu_speech_percent", 50.0, "CPU while speaking <= 50 % of one core"),
    (CONTINUOUS_SET, "cost.cpu_speech_percent", 50.0,
     "CPU while speaking <= 50 % of one core, continuous set"),
    ("all", "cost.cpu_idle_percent", 1.0, "CPU idle <= 1 % of one core"),
)
_REALTIME_ONLY = ("latency.", "final_delay.", "cost.cpu_")


def is_english(language: str) -> bool:
    lang = language.lower()
    return lang == "en" or lang.startswith("en-")


def _r(x: float, nd: int = 4) -> float:
    return round(float(x), nd)


def continuity_block(files: Sequence[FileResult]) -> dict[str, Any]:
    """Boundaries, lost and doubled words, stable words changed (see :mod:`.continuity`)."""
    cs = [f.continuity for f in files]
    bounds = [b for c in cs for b in c.boundaries]
    lost = [w for c in cs for w in c.lost]
    doubled = [d for c in cs for d in c.doubled]
    shown = sum(c.stable_shown for c in cs)
    changed = sum(c.stable_changed for c in cs)
    return {
        "boundaries": len(bounds),
        "cuts_inside_speech": sum(1 for b in bounds if not b.at_pause),
        "boundaries_at_pause": sum(1 for b in bounds if b.at_pause),
        "ref_words": sum(len(f.latency.words) for f in files),
        "deleted_words": sum(c.deleted_words for c in cs),
        "lost_at_cuts": len(lost),
        "lost_inside_speech": sum(1 for w in lost if not w.boundary.at_pause),
        "lost_at_pause": sum(1 for w in lost if w.boundary.at_pause),
        "lost_at_edges": sum(len(c.lost_at_edges) for c in cs),
        "doubled_words": len(doubled),
        "doubled_inside_speech": sum(1 for d in doubled if not d.boundary.at_pause),
        "doubled_at_pause": sum(1 for d in doubled if d.boundary.at_pause),
        "stable_words_shown": shown,
        "stable_words_changed": changed,
        "stable_changed_percent": _r(100.0 * changed / shown if shown else 0.0, 3),
    }


def final_delay_block(files: Sequence[FileResult]) -> dict[str, Any]:
    """Per final: wall time minus its last word's end, all / at a pause / inside speech."""
    ds = [d for f in files for d in f.continuity.final_delays]
    return {
        "all": summary([d.delay for d in ds]),
        "at_pause": summary([d.delay for d in ds if d.at_pause]),
        "inside_speech": summary([d.delay for d in ds if not d.at_pause]),
    }


def file_details(f: FileResult) -> dict[str, Any]:
    """The per-file lists behind the counts (to look into a figure)."""
    c = f.continuity
    return {
        "cuts": [{"time": _r(b.time, 3), "kind": b.kind} for b in c.boundaries],
        "lost": [{"word": w.text, "time": w.time, "cut_time": _r(w.boundary.time, 3),
                  "kind": w.boundary.kind} for w in c.lost],
        "lost_at_edges": [{"word": w.text, "time": w.time, "edge": w.edge}
                          for w in c.lost_at_edges],
        "doubled": [{"word": d.text, "final": d.final_index, "cut_time": _r(d.boundary.time, 3),
                     "kind": d.boundary.kind} for d in c.doubled],
        "stable_changed": list(c.stable_changed_examples),
        "finals": [{"utterance_id": d.utterance_id, "wall": _r(d.wall, 3),
                    "last_word_end": _r(d.last_word_end, 3), "delay": _r(d.delay, 3),
                    "at_pause": d.at_pause} for d in c.final_delays],
    }


def _get(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        d = d[part]
    return d


def check_targets(doc: dict[str, Any], groups: dict[str, dict[str, Any] | None],
                  realtime: bool) -> dict[str, Any]:
    """``checks`` (field, scope, value, limit, met, valid) and ``missing`` for the targets.

    ``groups`` maps a scope to its group figures (``None`` when the scope has no files); the
    ``all`` scope reads ``doc`` itself.
    """
    checks: list[dict[str, Any]] = []
    missing: list[str] = []
    for scope, field, limit, text in TARGETS:
        g = doc if scope == "all" else groups.get(scope)
        try:
            if g is None:
                raise KeyError(scope)
            raw = _get(g, field)
            value = float(raw)
        except (KeyError, TypeError):
            missing.append(f"{scope}: {field}")
            continue
        valid = realtime if field.startswith(_REALTIME_ONLY) else True
        if field == "cost.cpu_idle_percent":
            valid = bool(doc["cost"]["idle_valid"])
        shown = raw if isinstance(raw, int) and not isinstance(raw, bool) else _r(value, 3)
        checks.append({"scope": scope, "field": field, "value": shown, "limit": limit,
                       "target": text, "pass": value <= limit, "valid": valid})
    return {"sets": sorted(s for s, g in groups.items() if g is not None), "checks": checks,
            "missing": missing}


def markdown(doc: dict[str, Any]) -> list[str]:
    """The report.md section on cuts and final delays, per set and pooled."""
    lines = ["## Cuts, doubled words, stable words changed, final delays", ""]
    ov = doc.get("set_overrides") or {}
    if ov:
        lines.append("Per-set config overrides: " + "; ".join(
            f"`{s}`: " + ", ".join(f"`{k}={v}`" for k, v in o.items()) for s, o in ov.items())
            + " (see docs/bench.md: hides the sets' pauses from the VAD).")
        lines.append("")
    header = ("group", "boundaries", "cuts in speech", "lost at cuts (in speech / at pause)",
              "lost at start/end", "doubled", "deleted (all)", "stable changed",
              "final delay p50/p90 s", "at pause p50 s", "in speech p50/p90 s")
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]

    def p(b: dict[str, Any], k: str) -> str:
        v = b.get(k)
        return "–" if v is None else f"{v:.2f}"

    groups = {**{k: v for k, v in doc.get("sets", {}).items()}, "all files": doc}
    for name, g in groups.items():
        c, fd = g.get("continuity"), g.get("final_delay")
        if c is None or fd is None:
            continue
        lines.append(
            f"| {name} | {c['boundaries']} | {c['cuts_inside_speech']} | {c['lost_at_cuts']} "
            f"({c['lost_inside_speech']} / {c['lost_at_pause']}) | {c['lost_at_edges']} | "
            f"{c['doubled_words']} | "
            f"{c['deleted_words']} of {c['ref_words']} | {c['stable_words_changed']} of "
            f"{c['stable_words_shown']} ({c['stable_changed_percent']:.2f} %) | "
            f"{p(fd['all'], 'p50')}/{p(fd['all'], 'p90')} | {p(fd['at_pause'], 'p50')} | "
            f"{p(fd['inside_speech'], 'p50')}/{p(fd['inside_speech'], 'p90')} |")
    lost = [(f["file"], w) for f in doc.get("files", []) for w in f["cuts"]["lost"]]
    dbl = [(f["file"], d) for f in doc.get("files", []) for d in f["cuts"]["doubled"]]
    edges = [(f["file"], w) for f in doc.get("files", []) for w in f["cuts"]["lost_at_edges"]]
    if lost or dbl or edges:
        lines += ["", "Lost and doubled words (first 30 of each):", ""]
        for name, w in lost[:30]:
            lines.append(f"- lost `{w['word']}` in {name} near the {w['kind'].replace('_', ' ')} "
                         f"cut at {w['cut_time']:.2f} s")
        for name, d in dbl[:30]:
            lines.append(f"- doubled `{d['word']}` in {name} at the "
                         f"{d['kind'].replace('_', ' ')} cut at {d['cut_time']:.2f} s")
        for name, w in edges[:30]:
            lines.append(f"- lost `{w['word']}` in {name} at the {w['edge']} of the finals")
    return lines
