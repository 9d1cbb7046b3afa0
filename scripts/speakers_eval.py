"""Measure speaker turns on real shared speech: label accuracy and CPU cost.

    PYTHONPATH=. .venv/bin/python scripts/speakers_eval.py [--threshold 0.68] [--out FILE]

Runs the real engine (tiny.en) with :class:`streamcap.speakers.SpeakerTurns` over streams of
shared clips joined with 1 s of silence (tests/support/turns.py):

* ``two``: LibriSpeech speaker 1089 (4 utterances) alternating with the LibriVox reader of the
  Sense and Sensibility clips (5 utterances), the two closest voices in the shared audio;
* ``four``: speaker 1089 returning between three other LibriSpeech speakers.

For each: finals, labels used, the share of final words under their speaker's label
(``label_accuracy``), and the CPU time of the speaker embeddings against the CPU time of all
ASR decodes in the same run, both per second of audio (the process's ``time.process_time``
around each call: CTranslate2 decodes on threads of its own).
Prints a JSON summary. Not a test: CPU figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.model import decoder
from support.turns import (
    OTHERS,
    SPEAKER_A,
    SPEAKER_B,
    alternate,
    label_accuracy,
    stream,
)

from streamcap.config import from_dict
from streamcap.engine import CaptionEngine
from streamcap.events import SAMPLE_RATE, FinalCaption
from streamcap.speakers import DVectorEmbedder, SpeakerTurns


class CpuTimed:
    """Wraps a callable-bearing object and adds up this thread's CPU time spent in ``method``."""

    def __init__(self, inner: Any, method: str) -> None:
        self.inner, self.method, self.cpu, self.calls = inner, method, 0.0, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.process_time()
            try:
                return attr(*args, **kwargs)
            finally:
                self.cpu += time.process_time() - t
                self.calls += 1

        return timed


def run(order: list[tuple[str, str]], embedder: DVectorEmbedder, threshold: float) -> dict[
        str, Any]:
    audio, spans = stream(order)
    cfg = from_dict({})
    dec = CpuTimed(decoder(cfg), "decode")
    emb = CpuTimed(embedder, "embed")

    engine = CaptionEngine(cfg, dec, SpeakerTurns(emb, label="Others", threshold=threshold))
    events = list(engine.feed(audio)) + list(engine.finish())
    finals = [e for e in events if isinstance(e, FinalCaption)]
    acc, mapping = label_accuracy(finals, spans)
    seconds = len(audio) / SAMPLE_RATE
    return {
        "audio_s": round(seconds, 1),
        "turns": len(order),
        "finals": len(finals),
        "labels": sorted({str(f.speaker) for f in finals}),
        "speaker_to_label": mapping,
        "word_label_accuracy": round(acc, 4),
        "embeddings": emb.calls,
        "embed_cpu_s": round(emb.cpu, 3),
        "asr_decodes": dec.calls,
        "asr_cpu_s": round(dec.cpu, 3),
        "embed_cpu_per_audio_s": round(emb.cpu / seconds, 4),
        "asr_cpu_per_audio_s": round(dec.cpu / seconds, 4),
        "embed_share_of_asr_cpu": round(emb.cpu / dec.cpu, 3) if dec.cpu else None,
        "per_final": [[f.speaker, round(f.start, 2), round(f.end, 2), f.text[:40]] for f in finals],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threshold", type=float, default=0.68)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    embedder = DVectorEmbedder()
    embedder.embed(np.zeros(SAMPLE_RATE, np.float32))  # warm up (first librosa call)
    four = [("A", SPEAKER_A[0])]
    for i, clip in enumerate(OTHERS):
        four += [(f"O{i}", clip), ("A", SPEAKER_A[i + 1])]
    summary = {
        "threshold": args.threshold,
        "two": run(alternate(SPEAKER_A, SPEAKER_B), embedder, args.threshold),
        "four": run(four, embedder, args.threshold),
    }
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
