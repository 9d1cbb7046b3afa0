"""A real local Ray cluster with the streamcap ASR pool deployed, for tests.

:func:`ray_cluster` starts ``ray start --head --block --num-cpus=2`` in a session of its own
(free ports, a short temporary directory, no dashboard; the workers import this worktree's
``streamcap`` through ``PYTHONPATH``), waits for it, and on exit kills that process group only
(never ``ray stop``, which would stop every Ray cluster of the user). :meth:`RayCluster.deploy`
runs the real ``streamcap serve-asr --detach``; :meth:`RayCluster.delete` and
:meth:`RayCluster.kill_replica` stop the application or kill its replica through a short-lived
driver subprocess, so the test process itself never joins the cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .clips import REPO
from .net import free_port
from .timing import timeout, wait_until

APP = "streamcap-asr"


def need_ray() -> None:
    """Skip (a failure under ``CI=true``) when Ray Serve is not installed."""
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        pytest.skip("Ray Serve is not installed (pip install '.[ray]')")


def env() -> dict[str, str]:
    """This environment, with this worktree first on ``PYTHONPATH`` (for Ray's workers and
    every ``streamcap`` subprocess)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


@dataclass
class RayCluster:
    """A running head node (see the module docstring)."""

    proc: subprocess.Popen[bytes]
    address: str
    tmp: Path
    log: Path

    def config_args(self, *extra: str) -> list[str]:
        """``--set`` flags that point a daemon (or ``serve-asr``) at this cluster."""
        args = ["--set", f"asr.ray.address={self.address}"]
        for item in extra:
            args += ["--set", item]
        return args

    def deploy(self, *extra: str) -> subprocess.CompletedProcess[str]:
        """``streamcap serve-asr --detach`` against this cluster (fails the test if it fails)."""
        r = subprocess.run(
            [sys.executable, "-m", "streamcap.cli", "serve-asr", "--detach",
             *self.config_args(*extra)],
            env=env(), capture_output=True, text=True, timeout=timeout(180), cwd=self.tmp)
        assert r.returncode == 0, f"serve-asr failed ({r.returncode}):\n{r.stderr[-3000:]}"
        return r

    def driver(self, code: str) -> str:
        """Run ``code`` in a fresh Python process connected to this cluster (``ray``,
        ``serve`` imported); return its stdout."""
        script = ("import ray\nfrom ray import serve\n"
                  f"ray.init(address={self.address!r}, log_to_driver=False)\n" + code)
        r = subprocess.run([sys.executable, "-c", script], env=env(), capture_output=True,
                           text=True, timeout=timeout(120), cwd=self.tmp)
        assert r.returncode == 0, f"driver failed ({r.returncode}):\n{r.stderr[-3000:]}"
        return r.stdout

    def delete(self) -> None:
        """Stop the pool's Serve application (the daemon's decodes fail until redeployed)."""
        self.driver(f"serve.delete({APP!r})\n")

    def kill_replica(self) -> str:
        """Kill the pool's replica actor (Serve starts a new one); return its name."""
        return self.driver(
            "names = [a for a in ray.util.list_named_actors(all_namespaces=True)\n"
            "         if 'SERVE_REPLICA' in a['name'] and 'WhisperPool' in a['name']]\n"
            "assert names, 'no replica'\n"
            "ray.kill(ray.get_actor(names[0]['name'], namespace=names[0]['namespace']),"
            " no_restart=True)\n"
            "print(names[0]['name'])\n").strip()


@contextlib.contextmanager
def ray_cluster() -> Iterator[RayCluster]:
    """A head node with 2 CPUs for the duration of the block (module docstring)."""
    need_ray()
    tmp = Path(tempfile.mkdtemp(prefix="scray-"))  # short: Ray puts AF_UNIX sockets here
    port = free_port()
    log = tmp / "head.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [_ray_bin(), "start", "--head", "--block", "--num-cpus=2",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={tmp}",
             f"--port={port}", f"--ray-client-server-port={free_port()}",
             f"--dashboard-agent-listen-port={free_port()}",
             f"--metrics-export-port={free_port()}"],
            env=env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp)
    cluster = RayCluster(proc, f"127.0.0.1:{port}", tmp, log)
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"ray start exited:\n{log.read_text()[-3000:]}")
            return b"Ray runtime started" in log.read_bytes()

        wait_until(up, 120, "the Ray head node", poll=0.2)
        yield cluster
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # ray start --block stops its node on SIGTERM
        try:
            proc.wait(timeout(30))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        _kill_leftovers(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _kill_leftovers(tmp: Path) -> None:
    """Kill, by id, processes of this cluster still running (their command line names its
    temporary directory); Ray's workers may leave their process group."""
    import psutil

    deadline = time.monotonic() + 10
    for p in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(tmp) in part for part in (p.info["cmdline"] or [])):
                p.kill()
    while time.monotonic() < deadline:
        alive = [p for p in psutil.process_iter(["cmdline"])
                 if any(str(tmp) in part for part in (p.info["cmdline"] or []))]
        if not alive:
            return
        time.sleep(0.2)
