"""``streamcap serve-asr``: deploy the shared ASR pool on a running Ray cluster.

::

    ray start --head --num-cpus=2            # once per cluster (or KubeRay: deploy/)
    streamcap serve-asr --config pool.yaml   # deploys asr.ray.app, stays in the foreground
    streamcap serve-asr --detach             # deploys and returns (stop: serve delete APP)

The pool's settings are the config's ``asr`` (model, device, compute type, CPU threads) and
``asr.ray`` (address, application and deployment names, replicas, CPUs/GPUs per replica, batch
size and wait). In the foreground, SIGTERM or Ctrl-C deletes the application and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from ..cli_config import add_config_args, build_config
from ..errors import BackendUnavailable, ConfigError


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``serve-asr`` on the ``streamcap`` command."""
    p = subparsers.add_parser(
        "serve-asr", help="deploy the shared ASR pool (Ray Serve) for daemons with "
                          "asr.backend: ray",
        description="Deploy Whisper as a Ray Serve application on a running Ray cluster; "
                    "daemons with asr.backend: ray decode through it.")
    add_config_args(p)
    p.add_argument("--address", help="asr.ray.address: auto, HOST:PORT or ray://HOST:PORT")
    p.add_argument("--replicas", type=int, help="asr.ray.replicas")
    p.add_argument("--cpus", type=float, help="asr.ray.replica_cpus: CPUs per replica")
    p.add_argument("--gpus", type=float, help="asr.ray.replica_gpus: GPUs per replica")
    p.add_argument("--max-batch-size", type=int, help="asr.ray.max_batch_size")
    p.add_argument("--batch-wait-s", type=float, help="asr.ray.batch_wait_timeout_s")
    p.add_argument("--detach", action="store_true",
                   help="deploy and return (the application keeps running)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    extra: dict[str, Any] = {}
    for attr, key in (("address", "address"), ("replicas", "replicas"), ("cpus", "replica_cpus"),
                      ("gpus", "replica_gpus"), ("max_batch_size", "max_batch_size"),
                      ("batch_wait_s", "batch_wait_timeout_s")):
        v = getattr(args, attr, None)
        if v is not None:
            extra[f"asr.ray.{key}"] = v
    cfg = build_config(args, extra)
    try:
        import ray
        from ray import serve

        from .app import application
    except ImportError as exc:
        raise ConfigError("serve-asr", f"needs Ray Serve: pip install 'streamcap[ray]' ({exc})"
                          ) from None
    r = cfg.asr.ray
    app = application(cfg)  # a bad setting fails before the cluster is touched
    try:
        from .client import probe

        probe(r.address, r.connect_timeout_s)
        ray.init(address=r.address, log_to_driver=False, configure_logging=False)
    except Exception as exc:
        raise BackendUnavailable(f"asr.ray.address: no Ray cluster at {r.address!r} "
                                 f"({type(exc).__name__}: {str(exc)[:200]}); start one with "
                                 "`ray start --head`", r.retry_backoff_s) from None
    # The pool is reached through handles only: no HTTP proxy (and no port 8000 taken).
    serve.start(proxy_location="Disabled")
    serve.run(app, name=r.app, route_prefix=None, blocking=False)
    print(f"serving ASR pool {r.app}/{r.deployment}: {cfg.asr.model}, {r.replicas} replica(s) "
          f"x {r.replica_cpus:g} CPU / {r.replica_gpus:g} GPU, batches up to "
          f"{r.max_batch_size} (wait {r.batch_wait_timeout_s * 1000:g} ms)", flush=True)
    if args.detach:
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    serve.delete(r.app)
    print(f"deleted ASR pool {r.app}", flush=True)
    return 0
