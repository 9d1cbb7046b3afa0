"""PNG plots drawn from a results document (matplotlib, Agg, no pyplot global state).

Every plot is made from ``results.json`` alone, so a saved run can be re-plotted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("partial", "stable", "final")
_COL = {2: "partial", 3: "stable", 4: "final"}


def _figure(w: float, h: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _word_delays(files: list[dict[str, Any]], kind: str) -> list[float]:
    col = {v: k for k, v in _COL.items()}[kind]
    out = []
    for f in files:
        for w in f["words"]:
            if w[1] is not None and w[col] is not None:
                out.append(float(w[col]) - float(w[1]))
    return out


def latency_cdf(doc: dict[str, Any], path: Path) -> Path:
    """One panel per delay kind; one cumulative curve per set and one for all files."""
    fig = _figure(12, 4)
    axes = fig.subplots(1, 3, sharey=True)
    groups: dict[str, list[dict[str, Any]]] = {"all": doc["files"]}
    for f in doc["files"]:
        groups.setdefault(f["set"], []).append(f)
    for ax, kind in zip(axes, KINDS, strict=True):
        for name, files in groups.items():
            d = np.sort(np.asarray(_word_delays(files, kind)))
            if d.size == 0:
                continue
            y = np.arange(1, d.size + 1) / d.size
            ax.step(d, y, where="post", label=f"{name} (n={d.size})",
                    linewidth=2.2 if name == "all" else 1.2)
        ax.set_title(f"{kind} delay per word")
        ax.set_xlabel("seconds after the word's audio end")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of words")
    if axes[-1].get_legend_handles_labels()[0]:
        axes[-1].legend(fontsize=7, loc="lower right")
    if doc["mode"] != "realtime":
        fig.suptitle("--fast run: latency figures are not valid")
    fig.savefig(path)
    return path


def wer_per_set(doc: dict[str, Any], path: Path) -> Path:
    """Grouped bars: streaming vs offline error rate per set (WER, or CER for zh/ja files)."""
    labels: list[str] = []
    stream: list[float] = []
    offline: list[float] = []
    for name, g in doc["sets"].items():
        for metric in ("wer", "cer"):
            if metric in g:
                labels.append(f"{name}\n{metric.upper()}")
                stream.append(float(g[metric]["streaming"]))
                offline.append(float(g[metric]["offline"]))
    fig = _figure(max(5.0, 1.6 * len(labels) + 2), 4)
    ax = fig.subplots()
    x = np.arange(len(labels))
    ax.bar(x - 0.2, stream, 0.4, label="streaming")
    ax.bar(x + 0.2, offline, 0.4, label="offline (beam 5)")
    for i, (s, o) in enumerate(zip(stream, offline, strict=True)):
        ax.text(i - 0.2, s, f"{s:.1f}", ha="center", va="bottom", fontsize=7)
        ax.text(i + 0.2, o, f"{o:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, labels)
    ax.set_ylabel("error rate, %")
    ax.set_title("error rate per set: streaming vs offline")
    if labels:
        ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path)
    return path


def latency_over_time(doc: dict[str, Any], path: Path) -> Path:
    """Per-word delays along the longest file, and each utterance's final-after-speech-end."""
    fig = _figure(12, 4)
    ax = fig.subplots()
    if doc["files"]:
        f = max(doc["files"], key=lambda e: e["duration"])
        for col, kind in _COL.items():
            pts = [(w[1], w[col] - w[1]) for w in f["words"]
                   if w[1] is not None and w[col] is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker=".", linewidth=0.8, label=f"{kind} delay")
        u = [(x["last_word_end"], x["final_after_speech_end"]) for x in f["utterances"]]
        if u:
            ux, uy = zip(*u, strict=True)
            ax.scatter(ux, uy, marker="x", color="black", label="final after speech end")
        ax.set_title(f"latency over time: {f['set']}/{f['file']} ({f['duration']:.0f} s)")
    ax.set_xlabel("audio time of the word's end, s")
    ax.set_ylabel("delay, s")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.savefig(path)
    return path


def final_delays(doc: dict[str, Any], path: Path) -> Path:
    """Per final: delay after its last word, at a pause vs inside speech; lost/doubled at cuts."""
    fig = _figure(12, 4)
    ax = fig.subplots()
    offset = 0.0
    marks: dict[str, list[tuple[float, float]]] = {"at a pause": [], "inside speech": []}
    lost: list[float] = []
    doubled: list[float] = []
    for f in doc["files"]:
        cuts = f.get("cuts", {})
        for x in cuts.get("finals", []):
            key = "at a pause" if x["at_pause"] else "inside speech"
            marks[key].append((offset + x["last_word_end"], x["delay"]))
        lost += [offset + w["cut_time"] for w in cuts.get("lost", [])]
        doubled += [offset + d["cut_time"] for d in cuts.get("doubled", [])]
        offset += float(f["duration"])
    for (label, pts), marker in zip(marks.items(), ("o", "s"), strict=True):
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.scatter(xs, ys, marker=marker, s=18, label=f"final {label} (n={len(pts)})")
    for i, x in enumerate(lost):
        ax.axvline(x, color="red", alpha=0.5, linewidth=1,
                   label="word lost at a cut" if i == 0 else None)
    for i, x in enumerate(doubled):
        ax.axvline(x, color="orange", alpha=0.5, linewidth=1, linestyle="--",
                   label="word doubled at a cut" if i == 0 else None)
    ax.set_title("final delay after its last word (files one after another)")
    ax.set_xlabel("audio time of the final's last word, s (files concatenated)")
    ax.set_ylabel("delay, s")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    if doc["mode"] != "realtime":
        fig.suptitle("--fast run: delays are not valid")
    fig.savefig(path)
    return path


def draw_all(doc: dict[str, Any], out: Path) -> list[Path]:
    """All plots into ``out``; returns their paths."""
    return [
        latency_cdf(doc, out / "latency_cdf.png"),
        wer_per_set(doc, out / "wer_per_set.png"),
        latency_over_time(doc, out / "latency_over_time.png"),
        final_delays(doc, out / "final_delays.png"),
    ]
