"""``streamcap bench --compare``: two results documents side by side, with B/A ratios (pure)."""

from __future__ import annotations

from typing import Any

from .report import KINDS, fmt, get

COMPARE_FIELDS: tuple[str, ...] = (
    "wer.streaming", "wer.offline", "wer.difference", "cer.streaming", "cer.offline",
    *(f"latency.{k}.{s}" for k in (*KINDS, "final_after_speech_end")
      for s in ("p50", "p90", "p99", "max")),
    "stability.changes_per_minute", "stability.changed_fraction",
    "cost.rtf", "cost.offline_rtf", "cost.throughput_x_realtime", "cost.cpu_speech_percent",
    "cost.cpu_idle_percent", "cost.peak_rss_mb", "cost.model_load_seconds",
    "continuity.lost_at_cuts", "continuity.doubled_words", "continuity.stable_changed_percent",
    *(f"final_delay.{k}.{s}" for k in ("all", "at_pause", "inside_speech") for s in ("p50", "p90")),
)


def _num(doc: dict[str, Any], field: str) -> float | None:
    try:
        v = get(doc, field)
    except (KeyError, TypeError):
        return None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def compare_table(a: dict[str, Any], b: dict[str, Any], name_a: str = "A",
                  name_b: str = "B") -> str:
    """Side-by-side headline figures of two results documents, with B/A ratios."""
    rows: list[list[Any]] = [
        ["mode", a.get("mode"), b.get("mode"), ""],
        ["machine.cpu_model", get_or(a, "machine.cpu_model"), get_or(b, "machine.cpu_model"), ""],
        ["model.name", get_or(a, "model.name"), get_or(b, "model.name"), ""],
        ["machine.git_commit", str(get_or(a, "machine.git_commit"))[:10],
         str(get_or(b, "machine.git_commit"))[:10], ""],
    ]
    sets = sorted(set(a.get("sets", {})) | set(b.get("sets", {})))
    fields = list(COMPARE_FIELDS) + [
        f"sets.{s}.{f}" for s in sets
        for f in ("wer.streaming", "wer.offline", "cer.streaming", "latency.stable.p50",
                  "latency.partial.p50", "latency.final_after_speech_end.p50",
                  "continuity.lost_at_cuts", "continuity.doubled_words",
                  "final_delay.all.p50", "final_delay.all.p90")
    ]
    for field in fields:
        va, vb = _num(a, field), _num(b, field)
        if va is None and vb is None:
            continue
        ratio = f"{vb / va:.2f}x" if va not in (None, 0.0) and vb is not None else "–"
        rows.append([field, va, vb, ratio])
    widths = [max(len(fmt(r[i], 3)) for r in [["field", name_a, name_b, "B/A"], *rows])
              for i in range(4)]
    out = []
    for r in [["field", name_a, name_b, "B/A"], *rows]:
        cells = [fmt(c, 3) for c in r]
        out.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                             for i, c in enumerate(cells)))
    return "\n".join(out)


def get_or(d: dict[str, Any], dotted: str, default: Any = None) -> Any:
    try:
        return get(d, dotted)
    except (KeyError, TypeError):
        return default

