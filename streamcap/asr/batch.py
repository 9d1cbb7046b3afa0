"""Decoding several streams' requests together, where CTranslate2 allows it (the ASR pool).

A Ray Serve replica (:mod:`streamcap.pool.replica`) collects requests from different daemons
with ``@serve.batch`` and hands the batch to :meth:`BatchDecoder.decode_batch`. What is shared:

- *the encoder pass*: requests whose encoder input has the same shape (the decoder pads it to
  whole seconds: :meth:`~streamcap.asr.decoder.WhisperDecoder.mel`) are encoded as one batch;
- *the generation pass*: greedy passes (partials, beam 1) of one encoder batch whose prompts
  have the same length and start the transcript at the same position generate as one batch
  with the largest length limit. CTranslate2 requires the ``<|startoftranscript|>`` position
  to be equal; prompts of other lengths would be padded, and padding changed results
  (measured: another hypothesis on a near-silent window), so they are not mixed. Prompts are
  earlier text (capped at ``MAX_PROMPT_TOKENS``, so long-running streams reach one length) plus
  the forced prefix (the utterance's committed words), so in practice generation batches are
  rarer than encoder batches; a result longer than its own pass allows is generated
  again alone, so every result equals what the pass would give alone. Beam passes (finals)
  share a generation only with passes of the same beam and the same length limit (a beam
  search stopped at another length may pick another hypothesis); otherwise one by one.
- not shared: the word alignment (one call per request: CTranslate2's ``align`` takes one
  frame count per batch) and language detection (a multilingual model with no language fixed
  decodes alone).

:func:`plan_groups` is the pure grouping; :class:`BatchDecoder` is the shell that runs it.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import AsrConfig
from .decoder import DecodePlan, DecodeRequest, Hypothesis, WhisperDecoder


def plan_groups(keys: Sequence[Hashable | None], max_size: int) -> list[list[int]]:
    """Indices of ``keys`` grouped by equal key, in order of first appearance, each group at
    most ``max_size`` long; a ``None`` key stands alone."""
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, got {max_size}")
    groups: list[list[int]] = []
    open_group: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        if key is None:
            groups.append([i])
            continue
        g = open_group.get(key)
        if g is None or len(g) >= max_size:
            g = []
            open_group[key] = g
            groups.append(g)
        g.append(i)
    return groups


@dataclass(frozen=True)
class BatchStats:
    """What one call of :meth:`BatchDecoder.decode_batch` did (for logs and the bench)."""

    requests: int
    encoder_batches: tuple[int, ...]  # size of every encoder pass
    generate_batches: tuple[int, ...]  # size of every generation pass
    regenerated: int  # greedy results generated again alone (longer than their limit)
    seconds: float


class BatchDecoder:
    """Decode lists of requests with one loaded model; see the module docstring."""

    def __init__(self, decoder: WhisperDecoder, max_batch_size: int = 8) -> None:
        self.decoder = decoder
        self.max_batch_size = max_batch_size
        self.last: BatchStats | None = None

    def decode_batch(
        self, reqs: Sequence[DecodeRequest], cfgs: Sequence[AsrConfig | None] | None = None
    ) -> list[Hypothesis]:
        """One hypothesis per request, in order (each as the request would get alone);
        ``cfgs[i]``: the decoding settings of request ``i`` (beam, prompts, contexts) instead
        of the decoder's own (a multilingual request without a language uses the decoder's)."""
        import ctranslate2

        opts = list(cfgs) if cfgs is not None else [None] * len(reqs)
        if len(opts) != len(reqs):
            raise ValueError(f"{len(reqs)} requests but {len(opts)} settings")
        t0 = time.monotonic()
        dec = self.decoder
        out: list[Hypothesis | None] = [None] * len(reqs)
        mels: list[tuple[np.ndarray, int] | None] = [None] * len(reqs)
        keys: list[Hashable | None] = []
        for i, req in enumerate(reqs):
            if dec.multilingual and req.language is None:
                keys.append(None)  # language detection: decoded alone below
                continue
            mels[i] = dec.mel(req.audio, dec.full_context(req, opts[i]))
            keys.append(mels[i][0].shape)  # type: ignore[index]
        enc_sizes: list[int] = []
        gen_sizes: list[int] = []
        regenerated = 0
        for group in plan_groups(keys, self.max_batch_size):
            if keys[group[0]] is None:
                out[group[0]] = dec._decode(reqs[group[0]])
                enc_sizes.append(1)
                gen_sizes.append(1)
                continue
            batch = np.concatenate([mels[i][0] for i in group])  # type: ignore[index]
            enc_all = np.asarray(dec.encode(batch, to_cpu=True))
            enc_sizes.append(len(group))
            encs = {i: ctranslate2.StorageView.from_array(np.ascontiguousarray(enc_all[k:k + 1]))
                    for k, i in enumerate(group)}
            plans: dict[int, DecodePlan] = {}
            for i in group:
                plan = dec.plan(reqs[i], encs[i], opts[i])
                if isinstance(plan, Hypothesis):
                    out[i] = plan
                else:
                    plans[i] = plan
            members = list(plans)
            gkeys: list[Hashable | None] = [
                ("greedy", plans[i].sot_position, len(plans[i].prompt)) if plans[i].beam == 1
                else ("beam", plans[i].sot_position, len(plans[i].prompt), plans[i].beam,
                      plans[i].result_cap)
                for i in members
            ]
            for sub in plan_groups(gkeys, self.max_batch_size):
                idx = [members[k] for k in sub]
                results = self._generate(dec, idx, plans, encs, enc_all, group)
                gen_sizes.append(len(idx))
                for i, result in zip(idx, results):
                    plan = plans[i]
                    if len(idx) > 1 and len(result.sequences_ids[0]) > plan.result_cap:
                        regenerated += 1
                        result = self._generate(dec, [i], plans, encs, enc_all, group)[0]
                    out[i] = dec.finish(reqs[i], plan, result, encs[i], mels[i][1])  # type: ignore[index]
        dec.passes += len(reqs)
        took = time.monotonic() - t0
        dec.decode_seconds += took
        self.last = BatchStats(len(reqs), tuple(enc_sizes), tuple(gen_sizes), regenerated, took)
        assert all(h is not None for h in out)
        return [h for h in out if h is not None]

    @staticmethod
    def _generate(
        dec: WhisperDecoder, idx: list[int], plans: dict[int, DecodePlan],
        encs: dict[int, Any], enc_all: np.ndarray, group: list[int],
    ) -> list[Any]:
        import ctranslate2

        if len(idx) == 1:
            enc = encs[idx[0]]
        else:
            rows = [group.index(i) for i in idx]
            enc = ctranslate2.StorageView.from_array(np.ascontiguousarray(enc_all[rows]))
        first = plans[idx[0]]
        max_length = max(plans[i].max_length for i in idx)
        results: list[Any] = dec._ct2.generate(enc, [plans[i].prompt for i in idx],
                                               **first.generate_options(max_length))
        return results
