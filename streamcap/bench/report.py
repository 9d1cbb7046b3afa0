"""results.json, report.md and ``--compare``: turning a :class:`BenchRun` into figures (pure
apart from the machine-info probes).

The field names are documented in ``docs/bench.md``. Rates are percent; times are seconds.
No value is NaN or infinite; a summary with no data has only ``count: 0``.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

from ..config import to_dict
from . import targets as tg
from .latency import Stability
from .run import BenchRun, FileResult
from .scoring import total
from .sets import CONTINUOUS_SET, derived_twice, overrides_for
from .stats import summary

SCHEMA = 1
KINDS = ("partial", "stable", "final")
# Fields every run with at least one English file must have (the smoke test checks them).
REQUIRED_FIELDS: tuple[str, ...] = (
    "schema", "complete", "mode", "created",
    "machine.cpu_model", "machine.logical_cores", "machine.physical_cores",
    "machine.memory_gb", "machine.platform", "machine.python", "machine.git_commit",
    "machine.libraries.faster-whisper", "machine.libraries.ctranslate2",
    "model.name", "model.device", "model.compute_type", "model.compute_type_effective",
    "model.cpu_threads", "model.load_seconds",
    "totals.files", "totals.audio_seconds", "totals.wall_seconds",
    "wer.streaming", "wer.offline", "wer.difference", "wer.ref_tokens",
    *(f"latency.{k}.{s}" for k in (*KINDS, "final_after_speech_end")
      for s in ("count", "mean", "p50", "p90", "p99", "max")),
    "latency.valid", "latency.words_timed", "latency.words_first_shown_in_final",
    "stability.shown_words", "stability.changed_words", "stability.stable_words_changed",
    "stability.changed_fraction", "stability.changes_per_minute", "stability.speech_seconds",
    "cost.rtf", "cost.wall_rtf", "cost.throughput_x_realtime", "cost.offline_rtf",
    "cost.cpu_speech_percent", "cost.cpu_valid", "cost.cpu_idle_percent", "cost.idle_valid",
    "cost.idle_seconds", "cost.peak_rss_mb", "cost.model_load_seconds", "cost.dropped_samples",
    "continuity.boundaries", "continuity.cuts_inside_speech", "continuity.boundaries_at_pause",
    "continuity.deleted_words", "continuity.lost_at_cuts", "continuity.lost_inside_speech",
    "continuity.lost_at_pause", "continuity.lost_at_edges", "continuity.doubled_words",
    "continuity.doubled_inside_speech",
    "continuity.doubled_at_pause", "continuity.stable_words_shown",
    "continuity.stable_words_changed", "continuity.stable_changed_percent",
    *(f"final_delay.{k}.count" for k in ("all", "at_pause", "inside_speech")),
)


def _r(x: float, nd: int = 4) -> float:
    return round(float(x), nd)


# --- machine -------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, platform, library versions and the git commit of this checkout."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    libs = ("faster-whisper", "ctranslate2", "numpy", "jiwer", "whisper-normalizer",
            "webrtcvad-wheels", "psutil", "streamcap")
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count() or 0,
        "physical_cores": psutil.cpu_count(logical=False) or 0,
        "memory_gb": _r(psutil.virtual_memory().total / 2**30, 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
        # Other programs' load skews real-time figures: keep it next to them.
        "load_average": [_r(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else [],
        "git_commit": _git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(status) if status is not None else False,
        "libraries": {name: _version(name) for name in libs},
    }


# --- figures -------------------------------------------------------------------------------


def _errors_block(files: Sequence[FileResult]) -> dict[str, Any]:
    s, o = total(f.streaming for f in files), total(f.offline for f in files)
    return {
        "streaming": _r(s.rate, 3),
        "offline": _r(o.rate, 3),
        "difference": _r(s.rate - o.rate, 3),
        "ref_tokens": s.ref_tokens,
        "streaming_counts": s.to_dict(),
        "offline_counts": o.to_dict(),
    }


def _latency_block(files: Sequence[FileResult], valid: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"valid": valid}
    for kind in KINDS:
        out[kind] = summary([d for f in files for d in f.latency.delays(kind)])
    out["final_after_speech_end"] = summary(
        [d for f in files for d in f.latency.final_after_speech_end()]
    )
    out["words_timed"] = sum(
        1 for f in files for w in f.latency.words if w.delay("final") is not None
    )
    out["ref_words"] = sum(len(f.latency.words) for f in files)
    out["words_first_shown_in_final"] = sum(f.latency.words_first_shown_in_final for f in files)
    return out


def _stability_block(files: Sequence[FileResult]) -> dict[str, Any]:
    st = Stability()
    for f in files:
        st = st + f.latency.stability
    return {
        "shown_words": st.shown_words,
        "changed_words": st.changed_words,
        "stable_words_changed": st.stable_words_changed,
        "changed_fraction": _r(st.changed_fraction),
        "changes_per_minute": _r(st.changes_per_minute, 3),
        "speech_seconds": _r(st.speech_seconds, 3),
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def _cost_block(files: Sequence[FileResult], realtime: bool) -> dict[str, Any]:
    audio = sum(f.duration for f in files)
    wall = sum(f.wall_seconds for f in files)
    return {
        "rtf": _r(_ratio(sum(f.decode_seconds for f in files), audio)),
        "wall_rtf": _r(_ratio(wall, audio)),
        "throughput_x_realtime": _r(_ratio(audio, wall), 3),
        "offline_rtf": _r(_ratio(sum(f.offline_seconds for f in files), audio)),
        "cpu_speech_percent": _r(100.0 * _ratio(sum(f.cpu_seconds for f in files), wall), 2),
        "cpu_valid": realtime,
        "dropped_samples": sum(f.dropped_samples for f in files),
    }


def _group(files: Sequence[FileResult], realtime: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "files": len(files),
        "audio_seconds": _r(sum(f.duration for f in files), 3),
    }
    for metric in ("wer", "cer"):
        scored = [f for f in files if f.metric == metric]
        if scored:
            out[metric] = _errors_block(scored)
    out["latency"] = _latency_block(files, realtime)
    out["stability"] = _stability_block(files)
    out["continuity"] = tg.continuity_block(files)
    out["final_delay"] = tg.final_delay_block(files)
    out["cost"] = _cost_block(files, realtime)
    return out


def _file_entry(f: FileResult, realtime: bool) -> dict[str, Any]:
    lat = _latency_block([f], realtime)
    return {
        "set": f.clip.set,
        "file": f.clip.name,
        "path": str(f.clip.path),
        "parts": [str(p) for p in f.clip.parts],
        "language": f.clip.language,
        "metric": f.metric,
        "fillers_removed": f.clip.spontaneous,
        "duration": _r(f.duration, 3),
        "streaming": {"text": f.streaming_text, **f.streaming.to_dict()},
        "offline": {"text": f.offline_text, **f.offline.to_dict()},
        "difference": _r(f.streaming.rate - f.offline.rate, 3),
        "latency": lat,
        "stability": _stability_block([f]),
        "continuity": tg.continuity_block([f]),
        "final_delay": tg.final_delay_block([f]),
        "cuts": tg.file_details(f),
        "config_overrides": dict(f.config_overrides),
        "cost": {
            "rtf": _r(_ratio(f.decode_seconds, f.duration)),
            "wall_seconds": _r(f.wall_seconds, 3),
            "cpu_percent": _r(100.0 * _ratio(f.cpu_seconds, f.wall_seconds), 2),
            "offline_seconds": _r(f.offline_seconds, 3),
            "dropped_samples": f.dropped_samples,
        },
        "events": f.events,
        "utterances": [
            {"id": u.utterance_id, "final_wall": _r(u.final_wall, 3),
             "last_word_end": _r(u.last_word_end, 3),
             "final_after_speech_end": _r(u.final_after_speech_end, 3)}
            for u in f.latency.utterances
        ],
        # Per reference word: [text, audio_end, shown, stable, final] (wall times; null = never).
        "words": [
            [w.text, _opt(w.audio_end), _opt(w.shown), _opt(w.stable), _opt(w.final)]
            for w in f.latency.words
        ],
    }


def _opt(x: float | None) -> float | None:
    return None if x is None else _r(x, 3)


def get(d: Any, dotted: str) -> Any:
    """``d["a"]["b"]`` for ``"a.b"`` (``KeyError`` if absent). Keys may contain dashes."""
    for part in dotted.split("."):
        d = d[part]
    return d


def _targets(doc: dict[str, Any], files: Sequence[FileResult], realtime: bool) -> dict[str, Any]:
    twice = derived_twice([f.clip for f in files])
    english = [f for f in files if tg.is_english(f.clip.language) and f.clip.key not in twice]
    cont = [f for f in files if f.clip.set == CONTINUOUS_SET]
    groups = {"english": _group(english, realtime) if english else None,
              CONTINUOUS_SET: _group(cont, realtime) if cont else None}
    return tg.check_targets(doc, groups, realtime)


def results(run: BenchRun) -> dict[str, Any]:
    """The whole results document (see docs/bench.md)."""
    files = run.files
    rt = run.realtime
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "complete": run.complete,
        "mode": "realtime" if rt else "fast",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "model": {
            "name": run.model.name,
            "path": run.model.path,
            "device": run.model.device,
            "compute_type": run.model.compute_type,
            "compute_type_effective": run.model.compute_type_effective,
            "cpu_threads": run.model.cpu_threads,
            "multilingual": run.model.multilingual,
            "load_seconds": _r(run.model.load_seconds, 3),
            "offline_beam_size": 5,
        },
        "config": {"asr": to_dict(run.cfg.asr), "vad": to_dict(run.cfg.vad)},
        # Config overrides that some sets run with (sets.SET_OVERRIDES), for the sets present.
        "set_overrides": {s: overrides_for(s, run.set_overrides)
                          for s in sorted({f.clip.set for f in files})
                          if overrides_for(s, run.set_overrides)},
        "totals": {
            "files": len(files),
            "audio_seconds": _r(sum(f.duration for f in files), 3),
            "wall_seconds": _r(run.wall_seconds, 3),
            "skipped": len(run.skipped),
            "failed": len(run.failed),
        },
    }
    group = _group(files, rt)
    for metric in ("wer", "cer"):
        if metric in group:
            doc[metric] = group[metric]
    doc["latency"] = group["latency"]
    doc["stability"] = group["stability"]
    doc["continuity"] = group["continuity"]
    doc["final_delay"] = group["final_delay"]
    cost = group["cost"]
    idle = run.idle
    cost["cpu_idle_percent"] = _r(idle.cpu_percent, 3) if idle else 0.0
    cost["idle_valid"] = bool(idle and idle.valid)
    cost["idle_seconds"] = _r(idle.audio_seconds, 3) if idle else 0.0
    cost["peak_rss_mb"] = _r(run.peak_rss_bytes / 2**20, 1)
    cost["model_load_seconds"] = _r(run.model.load_seconds, 3)
    doc["cost"] = cost
    doc["targets"] = _targets(doc, files, rt)
    doc["sets"] = {s: _group([f for f in files if f.clip.set == s], rt)
                   for s in sorted({f.clip.set for f in files})}
    doc["languages"] = {lang: _group([f for f in files if f.clip.language == lang], rt)
                        for lang in sorted({f.clip.language for f in files})}
    doc["files"] = [_file_entry(f, rt) for f in files]
    doc["skipped"] = [{"file": k, "reason": r} for k, r in run.skipped]
    doc["failed"] = [{"file": k, "error": e} for k, e in run.failed]
    return doc


# --- report.md -----------------------------------------------------------------------------


def fmt(x: Any, nd: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(c) for c in row) + " |")
    return lines


def _p(block: dict[str, Any], kind: str, stat: str) -> Any:
    return block["latency"][kind].get(stat)


def _group_rows(groups: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, g in groups.items():
        for metric in ("wer", "cer"):
            if metric not in g:
                continue
            e = g[metric]
            rows.append([
                name, g["files"], g["audio_seconds"] / 60, metric.upper(), e["streaming"],
                e["offline"], e["difference"], _p(g, "partial", "p50"), _p(g, "stable", "p50"),
                _p(g, "stable", "p90"), _p(g, "final", "p50"),
                _p(g, "final_after_speech_end", "p50"), g["stability"]["changes_per_minute"],
                g["cost"]["rtf"],
            ])
    return rows


GROUP_HEADER = (
    "group", "files", "audio min", "metric", "streaming %", "offline %", "diff (points)",
    "partial p50 s", "stable p50 s", "stable p90 s", "final p50 s", "final after end p50 s",
    "changes/min", "RTF",
)


def report_markdown(doc: dict[str, Any], plots: Sequence[str] = ()) -> str:
    """The human-readable report: run facts, targets, per set/language/file tables, plots."""
    m, mod, cost = doc["machine"], doc["model"], doc["cost"]
    lines = [
        "# streamcap bench",
        "",
        f"- mode: **{doc['mode']}**" + ("" if doc["mode"] == "realtime" else
                                          " (latency and CPU-share figures are not valid)"),
        f"- machine: {m['cpu_model']}, {m['logical_cores']} logical / {m['physical_cores']} "
        f"physical cores, {m['memory_gb']} GiB; {m['platform']}; Python {m['python']}; "
        f"load average at the end (1/5/15 min): "
        f"{'/'.join(str(x) for x in m.get('load_average', [])) or 'n/a'}",
        f"- model: {mod['name']} on {mod['device']}, compute type {mod['compute_type']} "
        f"(effective {mod['compute_type_effective']}), {mod['cpu_threads']} threads, "
        f"loaded in {mod['load_seconds']:.2f} s; "
        f"offline reference: beam {mod['offline_beam_size']}",
        f"- commit: {m['git_commit']}" + (" (with local changes)" if m.get("git_dirty") else ""),
        "- libraries: " + ", ".join(f"{k} {v}" for k, v in m["libraries"].items()),
        f"- {doc['totals']['files']} files, {doc['totals']['audio_seconds'] / 60:.1f} min of "
        f"audio, run took {doc['totals']['wall_seconds'] / 60:.1f} min",
        "",
        "## Targets",
        "",
        "Scopes: `english` = every English file pooled, `en_continuous` = that set alone, "
        "`all` = the whole run.",
        "",
    ]
    lines += _table(
        ("target", "scope", "field", "value", "limit", "met", "valid"),
        ([c["target"], c["scope"], f"`{c['field']}`", c["value"], c["limit"],
          ("met" if c["pass"] else "MISSED") if c["valid"] else "n/a (not measured in real time)",
          c["valid"]]
         for c in doc["targets"]["checks"]),
    )
    if doc["targets"]["missing"]:
        lines += ["", "No data for: " + ", ".join(doc["targets"]["missing"])]
    lines += ["", "## Per set", ""]
    lines += _table(GROUP_HEADER, _group_rows(doc["sets"]))
    lines += ["", *tg.markdown(doc)]
    lines += ["", "## Per language", ""]
    lines += _table(GROUP_HEADER, _group_rows(doc["languages"]))
    lines += ["", "## Latency (all files, seconds)", ""]
    lat = doc["latency"]
    lines += _table(
        ("delay", "count", "mean", "p50", "p90", "p99", "max"),
        ([k, *(lat[k].get(s) for s in ("count", "mean", "p50", "p90", "p99", "max"))]
         for k in (*KINDS, "final_after_speech_end")),
    )
    st = doc["stability"]
    lines += [
        "",
        f"Stability: {st['changed_words']} of {st['shown_words']} shown words were later changed "
        f"({st['changes_per_minute']:.1f} per minute of speech); {st['stable_words_changed']} "
        "words flagged stable were changed.",
        "",
        "## Cost",
        "",
    ]
    lines += _table(
        ("figure", "value"),
        [
            ("worker real-time factor (decode s / audio s)", cost["rtf"]),
            ("offline real-time factor", cost["offline_rtf"]),
            ("throughput (x real time)", cost["throughput_x_realtime"]),
            ("process CPU while streaming, % of one core", cost["cpu_speech_percent"]),
            (f"process CPU on {cost['idle_seconds']:g} s of silence, % of one core",
             cost["cpu_idle_percent"]),
            ("idle figure valid (real time)", cost["idle_valid"]),
            ("peak RSS, MiB", cost["peak_rss_mb"]),
            ("model load, s", cost["model_load_seconds"]),
            ("dropped samples", cost["dropped_samples"]),
        ],
    )
    lines += ["", "## Per file", ""]
    lines += _table(
        ("set", "file", "lang", "s", "metric", "streaming %", "offline %", "diff",
         "partial p50", "stable p50", "final after end p50", "RTF", "CPU %"),
        ([f["set"], f["file"], f["language"], f["duration"], f["metric"].upper(),
          f["streaming"]["rate"], f["offline"]["rate"], f["difference"],
          f["latency"]["partial"].get("p50"), f["latency"]["stable"].get("p50"),
          f["latency"]["final_after_speech_end"].get("p50"), f["cost"]["rtf"],
          f["cost"]["cpu_percent"]] for f in doc["files"]),
    )
    if doc["skipped"] or doc["failed"]:
        lines += ["", "## Not measured", ""]
        lines += [f"- skipped {s['file']}: {s['reason']}" for s in doc["skipped"]]
        lines += [f"- failed {s['file']}: {s['error']}" for s in doc["failed"]]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    lines.append("")
    return "\n".join(lines)
