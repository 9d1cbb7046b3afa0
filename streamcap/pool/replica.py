"""The Ray Serve deployment that holds the model: :class:`WhisperPool`.

Every replica loads the model once (:func:`streamcap.asr.model.load_model`) and answers
``decode(DecodeRequest) -> PoolReply``. Requests from all daemons that reach a replica meet in a
``@serve.batch`` queue (``asr.ray.max_batch_size``, ``asr.ray.batch_wait_timeout_s``) and are
decoded together by :class:`~streamcap.asr.batch.BatchDecoder` on a thread of their own, so the
replica's event loop keeps accepting requests meanwhile. One batch decodes at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve

from ..asr.batch import BatchDecoder
from ..asr.decoder import DecodeRequest, Hypothesis, WhisperDecoder
from ..asr.model import load_model
from ..config import AsrConfig, from_dict
from ..events import SAMPLE_RATE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolRequest:
    """What a daemon sends: the decode and its own decoding settings (beam sizes, prompts,
    hotwords, contexts: per room, so a pool serves daemons configured differently)."""

    request: DecodeRequest
    options: AsrConfig


@dataclass(frozen=True)
class PoolInfo:
    """What a replica says about itself (the daemon checks it when it connects)."""

    model: str
    multilingual: bool
    device: str
    compute_type: str
    max_batch_size: int
    replica: str
    omp_threads: str = ""


@dataclass(frozen=True)
class PoolReply:
    """A hypothesis and how it was made.

    ``decode_s``: wall time of the batch decode the request was part of; ``replica_s``: time
    from the request's arrival in the replica to its answer (batch wait + decode), so the round
    trip minus ``replica_s`` is the transport's share. ``batch_size``: requests in that batch.
    """

    hypothesis: Hypothesis
    decode_s: float
    replica_s: float
    batch_size: int
    encoder_batches: tuple[int, ...]
    replica: str


class WhisperPool:
    """One replica: the model, a batch queue, and the decode entry point."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        cfg = from_dict(dict(config))
        self.cfg = cfg
        loaded = load_model(cfg.asr)
        self.decoder = WhisperDecoder(loaded, cfg.asr)
        self.batch = BatchDecoder(self.decoder, cfg.asr.ray.max_batch_size)
        batcher: Any = self._decode_batch  # serve.batch's wrapper takes its settings at run time
        batcher.set_max_batch_size(cfg.asr.ray.max_batch_size)
        batcher.set_batch_wait_timeout_s(cfg.asr.ray.batch_wait_timeout_s)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        # First-call allocations happen now, not in the first stream's decode.
        self.batch.decode_batch([DecodeRequest(np.zeros(SAMPLE_RATE, np.float32), 0.0,
                                               final=True, language="en")])
        log.info("replica %s ready: %s on %s/%s", self.name, cfg.asr.model, loaded.device,
                 loaded.compute_type)

    def info(self) -> PoolInfo:
        """The model this replica serves."""
        loaded = self.decoder.loaded
        return PoolInfo(self.cfg.asr.model, loaded.multilingual, loaded.device,
                        loaded.compute_type, self.batch.max_batch_size, self.name,
                        os.environ.get("OMP_NUM_THREADS", ""))

    async def decode(self, preq: PoolRequest) -> PoolReply:
        """Decode one request (batched with whatever else is waiting)."""
        t0 = time.monotonic()
        hyp, decode_s, size, enc = await self._decode_batch(preq)
        return PoolReply(hyp, decode_s, time.monotonic() - t0, size, enc, self.name)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _decode_batch(
        self, preqs: list[PoolRequest]
    ) -> list[tuple[Hypothesis, float, int, tuple[int, ...]]]:
        reqs = [p.request for p in preqs]
        opts = [p.options for p in preqs]
        hyps = await asyncio.to_thread(self.batch.decode_batch, reqs, opts)
        stats = self.batch.last
        took = stats.seconds if stats is not None else 0.0
        enc = stats.encoder_batches if stats is not None else ()
        return [(h, took, len(reqs), enc) for h in hyps]

    def stats(self) -> dict[str, float]:
        """Passes and decode seconds of this replica so far."""
        return {"passes": float(self.decoder.passes),
                "decode_seconds": self.decoder.decode_seconds}
