"""The Ray Serve deployment that holds the model: :class:`WhisperPool`.

Every replica loads the model once (:func:`streamcap.asr.model.load_model`) and answers
``decode(DecodeRequest) -> PoolReply``. Requests from all daemons that reach a replica meet in a
``@serve.batch`` queue (``asr.ray.max_batch_size``, ``asr.ray.batch_wait_timeout_s``); the
:class:`Coalescer` then runs one decode at a time and merges every batch that waits for it, so
a saturated replica decodes bigger batches. :class:`~streamcap.asr.batch.BatchDecoder` decodes
them on a thread of its own, so the replica's event loop keeps accepting requests meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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


Result = tuple[Hypothesis, float, int, tuple[int, ...]]
T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """One ``run`` at a time (on a thread); when it is free, the next run takes every group
    that waits, oldest first, up to ``max_size`` items (at least one group).

    ``submit(group)`` returns the group's results in order; an exception of ``run`` goes to
    every group of that run.
    """

    def __init__(self, run: Callable[[list[T]], list[R]], max_size: int) -> None:
        self._run = run
        self._max = max_size
        self._waiting: deque[tuple[list[T], asyncio.Future[list[R]]]] = deque()
        self._lock = asyncio.Lock()
        self.runs: list[int] = []  # items per run (for tests and stats)

    async def submit(self, group: list[T]) -> list[R]:
        fut: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._waiting.append((group, fut))
        while not fut.done():
            async with self._lock:
                if not fut.done():
                    await self._run_waiting()
        return fut.result()

    async def _run_waiting(self) -> None:
        take: list[tuple[list[T], asyncio.Future[list[R]]]] = []
        n = 0
        while self._waiting and (not take or n + len(self._waiting[0][0]) <= self._max):
            waiting = self._waiting.popleft()
            take.append(waiting)
            n += len(waiting[0])
        flat = [item for items, _ in take for item in items]
        self.runs.append(len(flat))
        try:
            results = await asyncio.to_thread(self._run, flat)
            if len(results) != len(flat):
                raise RuntimeError(f"{len(flat)} items gave {len(results)} results")
        except BaseException as exc:
            for _, f in take:
                f.set_exception(exc)
            return
        i = 0
        for items, f in take:
            f.set_result(results[i : i + len(items)])
            i += len(items)


class WhisperPool:
    """One replica: the model, a batch queue, and the decode entry point."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        cfg = from_dict(dict(config))
        self.cfg = cfg
        loaded = load_model(cfg.asr)
        self.decoder = WhisperDecoder(loaded, cfg.asr)
        self.batch = BatchDecoder(self.decoder, cfg.asr.ray.max_batch_size)
        self._coalescer: Coalescer[PoolRequest, Result] = Coalescer(
            self._run, cfg.asr.ray.max_batch_size)
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

    # Serve seals a batch before it waits for the one running (max_concurrent_batches=1 would
    # leave every request that came during a decode in a batch of its own: measured mean batch
    # 1.02 with 4 streams and a saturated replica). So batches are let through at once and
    # the coalescer merges all that wait when the decoder is free.
    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01, max_concurrent_batches=8)
    async def _decode_batch(self, preqs: list[PoolRequest]) -> list[Result]:
        return await self._coalescer.submit(preqs)

    def _run(self, preqs: list[PoolRequest]) -> list[Result]:
        reqs = [p.request for p in preqs]
        opts = [p.options for p in preqs]
        hyps = self.batch.decode_batch(reqs, opts)
        stats = self.batch.last
        took = stats.seconds if stats is not None else 0.0
        enc = stats.encoder_batches if stats is not None else ()
        return [(h, took, len(reqs), enc) for h in hyps]

    def stats(self) -> dict[str, float]:
        """Passes and decode seconds of this replica so far."""
        return {"passes": float(self.decoder.passes),
                "decode_seconds": self.decoder.decode_seconds}
