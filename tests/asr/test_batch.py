"""Decoding several streams' requests together: the grouping (pure) and the real model giving
every request of a batch exactly what it gives the request alone."""

from __future__ import annotations

import pytest
from support.clips import AUDIO, need
from support.model import decoder

from streamcap.asr.batch import BatchDecoder, plan_groups
from streamcap.asr.decoder import DecodeRequest
from streamcap.audio.decode import load_audio
from streamcap.config import from_dict
from streamcap.events import Word


@pytest.mark.parametrize(
    ("keys", "size", "want"),
    [
        ([], 4, []),
        (["a", "a", "b", "a"], 4, [[0, 1, 3], [2]]),
        (["a", "a", "a"], 2, [[0, 1], [2]]),
        ([None, "a", None, "a"], 8, [[0], [1, 3], [2]]),
        ([1, 2, 1, 2, 1], 1, [[0], [1], [2], [3], [4]]),
    ],
)
def test_plan_groups(keys: list[object], size: int, want: list[list[int]]) -> None:
    """Equal keys share a group (at most ``size``), in order; ``None`` stands alone."""
    assert plan_groups(keys, size) == want  # type: ignore[arg-type]


def test_plan_groups_refuses_a_batch_size_below_one() -> None:
    """A batch size of 0 is a clear error, not an endless loop."""
    with pytest.raises(ValueError, match="at least 1"):
        plan_groups(["a"], 0)


def test_a_batch_decodes_each_request_as_it_would_alone() -> None:
    """Partials and finals of four streams, with earlier-text prompts and forced prefixes of
    different lengths and per-request settings, decoded as one batch equal the single decodes
    (words, timings, scores); shared encoder passes really happen."""
    names = ["1089-134686-0000.flac", "1089-134691-0001.flac", "2412-153948-0000.flac",
             "61-70968-0000.flac"]
    clips = [load_audio(need(AUDIO / "en_librispeech" / n)) for n in names]
    dec = decoder()
    beam2 = from_dict({"asr": {"beam_size": 2, "hotwords": "wizard"}}).asr
    reqs: list[DecodeRequest] = []
    opts = []
    for k, a in enumerate(clips):
        for cut in (1.0, 2.5):
            reqs.append(DecodeRequest(a[: int(cut * 16000)], 0.0, language="en",
                                      context="earlier text" * k))
            opts.append(None)
        first = dec.decode(DecodeRequest(a[:16000], 0.0, language="en"))
        reqs.append(DecodeRequest(a[: 4 * 16000], 0.0, final=True, language="en",
                                  prefix=first.words[:1]))
        opts.append(beam2 if k % 2 else None)
    reqs.append(DecodeRequest(clips[0][:8000], 3.0, language="en",
                              prefix=(Word(" He", 3.0, 3.2),)))
    opts.append(None)
    bd = BatchDecoder(dec, max_batch_size=8)
    batch = bd.decode_batch(reqs, opts)
    alone = []
    for req, opt in zip(reqs, opts):
        if opt is not None:
            dec.retune(opt)
        alone.append(dec.decode(req))
        dec.retune(from_dict({}).asr)
    assert batch == alone
    assert bd.last is not None and max(bd.last.encoder_batches) >= 4
    assert bd.last.requests == len(reqs) and sum(bd.last.encoder_batches) == len(reqs)
    assert bd.decode_batch([]) == []
    with pytest.raises(ValueError, match="settings"):
        bd.decode_batch(reqs[:2], opts[:1])
