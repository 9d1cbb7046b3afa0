"""Measure echo suppression on shared speech with the real model (tiny.en, MultiEngine.feed).

    nice -n 10 .venv/bin/python scripts/echo_bench.py [--sets en_librispeech,en_misc,en_continuous]
        [--max-clips N] [--max-seconds 60] [--out FILE] [-v]

Three scenarios (see streamcap/bench/echo.py), each decoded once and replayed with the echo
filter off and on:

1. echo: every clip is the monitor ("Others"); the microphone ("You") hears it 30-80 ms later,
   6-12 dB quieter, with room noise at -60 dBFS (delay and gain vary per clip). Figure: the
   share of published finals labelled "Others" (target >= 0.95), and the microphone words
   published per monitor word.
2. own: every clip on the microphone, the monitor silent. Figure: finals suppressed (must be 0)
   and microphone words removed.
3. both: the monitor plays clip A while the user says clip B (another clip, half the list
   away: another speaker and text), the microphone hears B plus the echo of A. Figure: the
   share of B's reference words found in the microphone's published finals, per variant.

Prints a JSON summary. Decoding is deterministic; the figures do not depend on machine load
(only the run time does).
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamcap.asr.decoder import WhisperDecoder  # noqa: E402
from streamcap.asr.model import load_model  # noqa: E402
from streamcap.audio.decode import load_audio  # noqa: E402
from streamcap.bench.echo import (  # noqa: E402
    MIC,
    MONITOR,
    Call,
    Replay,
    echo_of,
    mix,
    replay,
    run_pair,
)
from streamcap.bench.scoring import TextScorer, count_errors  # noqa: E402
from streamcap.config import from_dict  # noqa: E402
from streamcap.echo import EchoOptions  # noqa: E402
from streamcap.events import SAMPLE_RATE, FinalCaption  # noqa: E402

AUDIO = REPO.parent / "shared" / "audio"
DELAYS_MS = (30, 45, 60, 80)
GAINS_DB = (-6, -9, -12)


def clips(sets: Sequence[str], max_seconds: float) -> list[tuple[str, str, float]]:
    """(path, reference, seconds) of the English clips of ``sets`` up to ``max_seconds``."""
    import csv

    out = []
    for name in sets:
        with open(AUDIO / name / "manifest.tsv", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                secs = float(row["duration_seconds"])
                if row["language"] == "en" and secs <= max_seconds:
                    out.append((str(AUDIO / name / row["file"]), row["reference_transcript"],
                                secs))
    return out


def words(finals: Sequence[FinalCaption]) -> int:
    return sum(len(f.words) for f in finals)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="en_librispeech,en_misc,en_continuous")
    ap.add_argument("--max-clips", type=int, default=0, help="0: all")
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--out")
    ap.add_argument("--cache", help="keep each decode's record here (pickle) and reuse it: "
                    "tune the filter without decoding again")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(message)s")
        for noisy in ("faster_whisper", "streamcap.asr"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg = from_dict({})
    decoder = WhisperDecoder(load_model(cfg.asr), cfg.asr)
    cache = Path(args.cache) if args.cache else None

    def decode(key: str, mic: np.ndarray, monitor: np.ndarray) -> list[Call]:
        if cache is None:
            return run_pair(cfg, decoder, mic, monitor)
        f = cache / f"{key}.pickle"
        if f.is_file():
            calls: list[Call] = pickle.loads(f.read_bytes())
            return calls
        calls = run_pair(cfg, decoder, mic, monitor)
        cache.mkdir(parents=True, exist_ok=True)
        f.write_bytes(pickle.dumps(calls))
        return calls

    items = clips(args.sets.split(","), args.max_seconds)
    if args.max_clips:
        items = items[: args.max_clips]
    audio = [load_audio(p) for p, _, _ in items]
    scorer = TextScorer("en")
    variants = {"off": None, "on": EchoOptions()}
    echo: dict[str, Any] = {"clips": 0, "monitor_finals": 0, "monitor_words": 0}
    own: dict[str, Any] = {"clips": 0, "finals": 0, "words": 0}
    both: dict[str, Any] = {"pairs": 0, "ref_words": 0}
    for v in variants:
        echo |= {f"mic_finals_{v}": 0, f"mic_words_{v}": 0, f"suppressed_{v}": 0,
                 f"trimmed_{v}": 0}
        own |= {f"suppressed_{v}": 0, f"trimmed_{v}": 0, f"words_{v}": 0}
        both |= {f"hits_{v}": 0, f"mic_finals_{v}": 0, f"suppressed_{v}": 0, f"trimmed_{v}": 0}
    leaks: list[str] = []

    def replays(calls: list[Call]) -> dict[str, Replay]:
        return {v: replay(calls, opts, on=opts is not None) for v, opts in variants.items()}

    n = len(items)
    for k, ((path, ref, _), sig) in enumerate(zip(items, audio, strict=True)):
        delay, gain = DELAYS_MS[k % len(DELAYS_MS)], GAINS_DB[k % len(GAINS_DB)]
        name = Path(path).stem
        # 1. echo only
        mic = echo_of(sig, delay, gain, seed=k)
        rs = replays(decode(f"echo-{name}-{delay}-{gain}", mic, sig))
        echo["clips"] += 1
        echo["monitor_finals"] += len(rs["on"].finals(MONITOR))
        echo["monitor_words"] += words(rs["on"].finals(MONITOR))
        for v, r in rs.items():
            echo[f"mic_finals_{v}"] += len(r.finals(MIC))
            echo[f"mic_words_{v}"] += words(r.finals(MIC))
            echo[f"suppressed_{v}"] += r.suppressed
            echo[f"trimmed_{v}"] += r.trimmed
        leaks += [f"{Path(path).name} ({delay} ms, {gain} dB): {f.text!r}"
                  for f in rs["on"].finals(MIC)]
        # 2. own speech over a silent monitor
        silence = np.zeros(len(sig) + SAMPLE_RATE, np.float32)
        rs = replays(decode(f"own-{name}", sig, silence))
        own["clips"] += 1
        own["finals"] += len(rs["off"].finals(MIC))
        own["words"] += words(rs["off"].finals(MIC))
        for v, r in rs.items():
            own[f"suppressed_{v}"] += r.suppressed
            own[f"trimmed_{v}"] += r.trimmed
            own[f"words_{v}"] += words(r.finals(MIC))
        # 3. both talking: the user says this clip (B) while the monitor plays another (A),
        # half the list away (another speaker and text); the microphone hears B + A's echo.
        j = (k + n // 2) % n
        if j == k:
            continue
        a = audio[j]
        mic = mix(sig, echo_of(a, delay, gain, seed=100 + k))
        calls = decode(f"both2-{name}-{Path(items[j][0]).stem}-{delay}-{gain}", mic, a)
        rs = replays(calls)
        ref_tokens = scorer.reference_tokens(ref)
        both["pairs"] += 1
        both["ref_words"] += len(ref_tokens)
        for v, r in rs.items():
            c = count_errors(ref_tokens, scorer.tokens(" ".join(f.text for f in r.finals(MIC))))
            both[f"hits_{v}"] += c.ref_tokens - c.substitutions - c.deletions
            both[f"mic_finals_{v}"] += len(r.finals(MIC))
            both[f"suppressed_{v}"] += r.suppressed
            both[f"trimmed_{v}"] += r.trimmed
        print(f"[{k + 1}/{n}] {Path(path).name}", file=sys.stderr, flush=True)
    for v in variants:
        total = echo["monitor_finals"] + echo[f"mic_finals_{v}"]
        echo[f"share_labelled_monitor_{v}"] = (round(echo["monitor_finals"] / total, 4)
                                               if total else None)
        both[f"own_words_kept_{v}"] = (round(both[f"hits_{v}"] / both["ref_words"], 4)
                                       if both["ref_words"] else None)
    echo["leaked_finals"] = leaks
    own["never_suppressed"] = all(own[f"suppressed_{v}"] == 0 for v in variants)
    summary = {"echo": echo, "own": own, "both": both,
               "setup": {"sets": args.sets, "clips": len(items), "delays_ms": DELAYS_MS,
                         "gains_db": GAINS_DB, "noise_dbfs": -60, "model": cfg.asr.model}}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
