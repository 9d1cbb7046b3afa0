"""The pool's Serve application is built from a streamcap config: Serve config ``args``
(``config`` file and ``set`` overrides) are validated with one clear error each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from support.ray_pool import need_ray

from streamcap.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _ray() -> None:
    need_ray()


def test_shipped_serve_configs_give_valid_pool_settings() -> None:
    """deploy/serve.yaml and the RayService's serveConfigV2 name the daemons' default app and
    deployment and build valid configurations (a CUDA pool of two GPU replicas)."""
    from streamcap.config import Config
    from streamcap.pool.app import config_from_args

    local = yaml.safe_load((REPO / "deploy" / "serve.yaml").read_text())
    svc = yaml.safe_load((REPO / "deploy" / "rayservice.yaml").read_text())
    gpu = yaml.safe_load(svc["spec"]["serveConfigV2"])
    for conf in (local, gpu):
        (app,) = conf["applications"]
        assert app["name"] == Config().asr.ray.app
        assert app["import_path"] == "streamcap.pool.app:build"
    cpu_cfg = config_from_args(local["applications"][0]["args"])
    assert cpu_cfg.asr.device == "cpu" and cpu_cfg.asr.ray.replicas == 1
    gpu_cfg = config_from_args(gpu["applications"][0]["args"])
    assert gpu_cfg.asr.device == "cuda" and gpu_cfg.asr.ray.replica_gpus == 1.0
    assert gpu_cfg.asr.compute_type == "float16" and gpu_cfg.asr.ray.replicas == 2


@pytest.mark.parametrize(
    ("args", "path"),
    [
        ({"confg": "x.yaml"}, "args"),
        ({"config": 3}, "args.config"),
        ({"config": "/nonexistent/pool.yaml"}, ""),
        ({"set": ["asr.model"]}, "args.set"),
        ({"set": {"asr.modle": "base"}}, "asr.modle"),
        ({"set": {"asr.ray.max_batch_size": 0}}, "asr.ray.max_batch_size"),
        ([], "args"),
    ],
)
def test_bad_serve_args_are_one_clear_error(args: Any, path: str) -> None:
    """Unknown keys, wrong types, a missing file and bad settings name the culprit."""
    from streamcap.pool.app import build

    with pytest.raises(ConfigError) as info:
        build(args)
    assert info.value.path == path


def test_max_batch_size_must_fit_the_ongoing_requests() -> None:
    """A batch larger than the requests a replica accepts could never fill: refused."""
    from streamcap.pool.app import build

    with pytest.raises(ConfigError, match="max_ongoing_requests"):
        build({"set": {"asr.ray.max_batch_size": 32, "asr.ray.max_ongoing_requests": 16}})
