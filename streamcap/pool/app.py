"""Build the Serve application of the ASR pool from a streamcap configuration.

``streamcap serve-asr --config FILE`` deploys it on a running Ray cluster (``ray start --head``)
and stays in the foreground; ``serve run deploy/serve.yaml`` does the same through
:func:`build` (``import_path: streamcap.pool.app:build``, ``args: {config: FILE}``).
The replica count, CPUs/GPUs per replica, batch size and wait come from ``asr.ray``; the model,
device and compute type from ``asr``.
"""

from __future__ import annotations

import os
from typing import Any

from ray import serve
from ray.serve import Application

from ..config import Config, load, to_dict, with_overrides
from ..errors import ConfigError
from .replica import WhisperPool


def omp_threads(cfg: Config) -> int:
    """The OpenMP threads of a replica: those a local daemon would use (``asr.cpu_threads``,
    else min(4, cores of the deploying host)).

    Ray sets ``OMP_NUM_THREADS`` to a replica's CPU reservation (1 by default), and
    CTranslate2's results change with it (measured on tiny.en int8: other log-probabilities,
    now and then other words); with the same thread count the pool's captions equal those of
    ``asr.backend: local``. Set ``asr.cpu_threads`` when pool hosts differ from this one.
    """
    return cfg.asr.cpu_threads or min(4, os.cpu_count() or 1)


def application(cfg: Config) -> Application:
    """The pool's Serve application for ``cfg`` (not yet running)."""
    r = cfg.asr.ray
    if r.max_batch_size > r.max_ongoing_requests:
        raise ConfigError("asr.ray.max_batch_size", "must not exceed asr.ray.max_ongoing_requests")
    dep: Any = serve.deployment(WhisperPool)
    dep = dep.options(
        name=r.deployment,
        num_replicas=r.replicas,
        max_ongoing_requests=r.max_ongoing_requests,
        ray_actor_options={"num_cpus": r.replica_cpus, "num_gpus": r.replica_gpus,
                           "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(omp_threads(cfg))}}},
    )
    app: Application = dep.bind(to_dict(cfg))
    return app


def config_from_args(args: dict[str, Any]) -> Config:
    """The pool's configuration from a Serve config's ``args``: ``config`` (a streamcap YAML
    file readable on the cluster; default: the embedded defaults) and ``set`` (dotted keys and
    values that win over it, e.g. ``{"asr.model": "base", "asr.ray.replicas": 2}``)."""
    if not isinstance(args, dict):
        raise ConfigError("args", f"expected a mapping, got {args!r}")
    unknown = set(args) - {"config", "set"}
    if unknown:
        raise ConfigError("args", f"unknown key(s) {sorted(map(str, unknown))} "
                          "(known: config, set)")
    path = args.get("config")
    if path is not None and not isinstance(path, str):
        raise ConfigError("args.config", f"expected a file path, got {path!r}")
    overrides = args.get("set") or {}
    if not isinstance(overrides, dict) or not all(isinstance(k, str) for k in overrides):
        raise ConfigError("args.set", f"expected a mapping of dotted keys, got {overrides!r}")
    cfg = load(path)
    return with_overrides(cfg, overrides) if overrides else cfg


def build(args: dict[str, Any]) -> Application:
    """Serve's application builder (``import_path: streamcap.pool.app:build``); ``args`` as
    in :func:`config_from_args`."""
    return application(config_from_args(args))
