"""The replica's coalescer: one decode at a time, and every batch that waited for the decoder
goes into the next decode together (bounded), results back to each in order."""

from __future__ import annotations

import asyncio
import threading

import pytest
from support.ray_pool import need_ray


@pytest.fixture(autouse=True)
def _ray() -> None:
    need_ray()


def test_batches_that_wait_are_decoded_together_in_order() -> None:
    """While a run is busy, later groups pile up and the next run takes them all (up to the
    size bound); each caller gets its own results; runs never overlap."""
    from streamcap.pool.replica import Coalescer

    gate = threading.Event()
    busy = threading.Lock()
    overlaps: list[bool] = []

    def run(items: list[int]) -> list[int]:
        got = busy.acquire(blocking=False)
        overlaps.append(not got)
        try:
            if items == [0]:
                gate.wait(5)  # the first run blocks until the others are waiting
            return [i * 10 for i in items]
        finally:
            if got:
                busy.release()

    async def main() -> list[list[int]]:
        co: Coalescer[int, int] = Coalescer(run, max_size=4)
        first = asyncio.ensure_future(co.submit([0]))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(co.submit(g)) for g in ([1, 2], [3], [4, 5], [6])]
        await asyncio.sleep(0.05)
        gate.set()
        out = await asyncio.gather(first, *rest)
        assert co.runs == [1, 3, 3], co.runs  # [1,2]+[3] fill 3 of 4; [4,5]+[6] next
        return out

    out = asyncio.run(main())
    assert out == [[0], [10, 20], [30], [40, 50], [60]]
    assert not any(overlaps)


def test_a_failed_run_fails_every_group_in_it_and_the_next_runs() -> None:
    """An exception of the decode goes to each caller of that run; later groups still run."""
    from streamcap.pool.replica import Coalescer

    def run(items: list[str]) -> list[str]:
        if "bad" in items:
            raise ValueError("cannot decode")
        return [s.upper() for s in items]

    async def main() -> None:
        co: Coalescer[str, str] = Coalescer(run, max_size=8)
        with pytest.raises(ValueError, match="cannot decode"):
            await co.submit(["bad", "x"])
        assert await co.submit(["ok"]) == ["OK"]
        assert await co.submit([]) == []

    asyncio.run(main())
