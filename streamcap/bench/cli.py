"""``streamcap bench``: accuracy, latency and cost on real speech, streaming next to offline.

Registered on the ``streamcap`` command by :func:`add_parser`. Errors are raised as
:mod:`streamcap.errors` exceptions; :mod:`streamcap.cli` turns them into messages and exit codes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..cli_config import add_config_args, build_config
from ..errors import AudioError, ConfigError
from .manifest import Clip, load_clips
from .run import BenchRun, FileResult, Progress, run_bench
from .sets import select_sets, with_joined

DEFAULT_OUT = "bench-out"


class TqdmProgress(Progress):
    """An overall bar (files) and a per-file bar (audio seconds) on stderr."""

    def __init__(self, files: int, enabled: bool) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.enabled = enabled
        self.overall = tqdm(total=files, unit="file", desc="bench", position=0,
                            disable=not enabled, dynamic_ncols=True)
        self.file: Any = None
        self._done = 0.0

    def start_file(self, clip: Clip, duration: float) -> None:
        self.end_file()
        self._done = 0.0
        self.file = self._tqdm(total=round(duration, 1), unit="s", desc=clip.name[:32],
                               position=1, leave=False, disable=not self.enabled,
                               dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.1f}/{total} s "
                               "[{elapsed}<{remaining}{postfix}]")

    def stream_time(self, seconds: float) -> None:
        bar = self.file
        if bar is None:
            return
        target = min(float(bar.total), round(seconds, 1))
        if target > self._done:
            bar.update(target - self._done)
            self._done = target

    def stage(self, text: str) -> None:
        if self.file is not None:
            self.file.set_postfix_str(text, refresh=True)
        else:
            self.overall.set_postfix_str(text, refresh=True)

    def end_file(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
            self.overall.update(1)

    def skip_file(self, clip: Clip) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.overall.update(1)

    def close(self) -> None:
        self.end_file()
        self.overall.close()


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bench`` on the ``streamcap`` command."""
    p = subparsers.add_parser(
        "bench",
        help="measure accuracy, latency and cost on real speech (streaming vs offline)",
        description="Run the streaming engine (paced at real time by default) and an offline "
        "beam-5 decode of the same model over every file of the manifests; write results.json, "
        "report.md and plots. Fields are documented in docs/bench.md.",
    )
    p.add_argument("inputs", nargs="*", metavar="MANIFEST_OR_DIR",
                   help="manifest.tsv files or folders holding them (default: every set under "
                   "$STREAMCAP_AUDIO or ../shared/audio)")
    p.add_argument("--sets", nargs="+", default=[], metavar="NAME",
                   help="only these sets (a set is named after its manifest's folder), e.g. "
                   "--sets en_continuous")
    p.add_argument("--no-set-overrides", dest="set_overrides", action="store_false",
                   help="run every set with the configuration as given (by default some sets, "
                   "e.g. en_continuous with vad.end_silence_s=4, get their own overrides)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"output folder (default: {DEFAULT_OUT}/)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_true", default=True,
                      help="feed audio at wall-clock speed (the default; latency is valid)")
    pace.add_argument("--fast", dest="realtime", action="store_false",
                      help="feed audio as fast as possible (throughput only; latency invalid)")
    p.add_argument("--idle-seconds", type=float, default=60.0, metavar="S",
                   help="seconds of silence after the files to measure idle CPU (default 60; "
                   "0 to skip)")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                   help="print two runs' results side by side (with B/A ratios) and exit")
    p.add_argument("--events", action="store_true",
                   help="also write every streaming event with its wall time to "
                   "DIR/events/<set>/<file>.jsonl")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_args(p)
    p.set_defaults(func=run_command)


def _load_results(path: str) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(path, f"cannot read results: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(path, f"not a results.json file ({exc})") from None
    if not isinstance(doc, dict) or "schema" not in doc or "mode" not in doc:
        raise ConfigError(path, "not a results.json file (no 'schema'/'mode' fields)")
    return doc


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save(run: BenchRun, out: Path, *, plots: bool) -> dict[str, Any]:
    """Write results.json (and, with ``plots``, the PNGs and report.md) into ``out``."""
    from .report import report_markdown, results

    doc = results(run)
    _write_atomic(out / "results.json",
                  json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    if plots:
        from .plots import draw_all

        pngs = [str(p) for p in draw_all(doc, out)]
        _write_atomic(out / "report.md", report_markdown(doc, pngs))
    return doc


def write_events(fr: FileResult, out: Path) -> Path:
    """One JSON object per line: ``wall`` plus the event's own JSON form."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in fr.clip.name)
    path = out / "events" / fr.clip.set / f"{safe}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"wall": round(te.wall, 4), **te.event.to_dict()}, ensure_ascii=False)
             for te in fr.timeline]
    _write_atomic(path, "".join(line + "\n" for line in lines))
    return path


def _save_partial(run: BenchRun, out: Path, events: bool) -> None:
    if events and run.files:
        write_events(run.files[-1], out)
    save(run, out, plots=False)


def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError("--out", f"cannot write to {str(out)!r}: {exc.strerror}") from None


def run_command(args: argparse.Namespace) -> int:
    """The ``bench`` handler."""
    if args.compare:
        from .compare import compare_table

        a, b = (_load_results(x) for x in args.compare)
        print(compare_table(a, b, "A", "B"))
        print(f"A = {args.compare[0]}\nB = {args.compare[1]}")
        return 0
    if not (0 <= args.idle_seconds <= 3600):
        raise ConfigError("--idle-seconds", f"expected 0..3600, got {args.idle_seconds}")
    cfg = build_config(args)
    # Every manifest is checked before the model loads.
    clips = select_sets(with_joined(load_clips(args.inputs)), args.sets)
    out = Path(args.out)
    _prepare_out(out)
    progress = TqdmProgress(len(clips), enabled=not args.no_progress and sys.stderr.isatty())
    try:
        run = run_bench(
            clips, cfg, realtime=args.realtime, idle_seconds=args.idle_seconds,
            progress=progress, on_file=lambda r: _save_partial(r, out, args.events),
            set_overrides=args.set_overrides,
        )
    finally:
        progress.close()
    doc = save(run, out, plots=True)
    _print_summary(doc, out)
    if run.failed:
        first = run.failed[0]
        raise AudioError(
            f"{len(run.failed)} file(s) could not be benchmarked (first: {first[0]}: {first[1]}); "
            f"the other results are in {out}/results.json"
        )
    return 0


def _print_summary(doc: dict[str, Any], out: Path) -> None:
    lat = doc["latency"]

    def p(kind: str, stat: str) -> str:
        v = lat[kind].get(stat)
        return "–" if v is None else f"{v:.2f}"

    lines = [f"streamcap bench ({doc['mode']}): {doc['totals']['files']} files, "
             f"{doc['totals']['audio_seconds'] / 60:.1f} min of audio"]
    for metric in ("wer", "cer"):
        if metric in doc:
            e = doc[metric]
            lines.append(f"  {metric.upper()} streaming {e['streaming']:.2f} %  offline "
                         f"{e['offline']:.2f} %  difference {e['difference']:+.2f} points")
    lines.append(f"  latency s (p50/p90): partial {p('partial', 'p50')}/{p('partial', 'p90')}  "
                 f"stable {p('stable', 'p50')}/{p('stable', 'p90')}  final "
                 f"{p('final', 'p50')}/{p('final', 'p90')}  final after speech end "
                 f"{p('final_after_speech_end', 'p50')}"
                 + ("" if lat["valid"] else "  (not valid: --fast)"))
    cont, fd = doc["continuity"], doc["final_delay"]

    def d(kind: str, stat: str) -> str:
        v = fd[kind].get(stat)
        return "–" if v is None else f"{v:.2f}"

    lines.append(f"  cuts: {cont['boundaries']} final boundaries ({cont['cuts_inside_speech']} "
                 f"inside speech); words lost at cuts {cont['lost_at_cuts']}, doubled "
                 f"{cont['doubled_words']}; stable words changed {cont['stable_words_changed']} "
                 f"of {cont['stable_words_shown']}")
    lines.append(f"  final delay s (p50/p90): all {d('all', 'p50')}/{d('all', 'p90')}  at a pause "
                 f"{d('at_pause', 'p50')}/{d('at_pause', 'p90')}  inside speech "
                 f"{d('inside_speech', 'p50')}/{d('inside_speech', 'p90')}")
    for s, ov in doc.get("set_overrides", {}).items():
        lines.append(f"  set {s} ran with " + ", ".join(f"{k}={v}" for k, v in ov.items()))
    checks = [c for c in doc["targets"]["checks"] if c["valid"]]
    if checks:
        missed = [f"{c['scope']}: {c['field']} {c['value']:g} > {c['limit']:g}"
                  for c in checks if not c["pass"]]
        lines.append(f"  targets: {len(checks) - len(missed)} of {len(checks)} met"
                     + (f"; missed: {'; '.join(missed)}" if missed else ""))
    c = doc["cost"]
    idle = f"{c['cpu_idle_percent']:.2f} %" if c["idle_valid"] else "not measured in real time"
    lines.append(f"  cost: RTF {c['rtf']:.3f}  CPU streaming {c['cpu_speech_percent']:.1f} %  "
                 f"idle {idle}  peak RSS {c['peak_rss_mb']:.0f} MiB  "
                 f"model load {c['model_load_seconds']:.2f} s")
    for s in doc["skipped"][:3]:
        lines.append(f"  skipped {s['file']}: {s['reason']}")
    if len(doc["skipped"]) > 3:
        lines.append(f"  ... and {len(doc['skipped']) - 3} more skipped (see results.json)")
    lines.append(f"  written: {out}/results.json, {out}/report.md, {out}/*.png")
    print("\n".join(lines))
