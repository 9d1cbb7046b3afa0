"""The test timeout unit: bounded waits that a slow machine scales, instead of bare sleeps."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def unit() -> float:
    """Seconds in one timeout unit: 1 scaled by ``STREAMCAP_TIMEOUT_SCALE`` (slow machines).

    A value that is not a number counts as 1; the unit is never below 0.1 s.
    """
    try:
        return max(0.1, float(os.environ.get("STREAMCAP_TIMEOUT_SCALE", "1")))
    except ValueError:
        return 1.0


def timeout(seconds: float) -> float:
    """``seconds`` in scaled time (a timeout, never a speed requirement)."""
    return seconds * unit()


def wait_until(pred: Callable[[], bool], units: float, what: str, poll: float = 0.02) -> None:
    """Poll ``pred`` until it holds; fail naming ``what`` after ``units`` timeout units."""
    deadline = time.monotonic() + units * unit()
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {units * unit():g} s waiting for {what}")
        time.sleep(poll)


def run(coro: Awaitable[T], units: float = 20) -> T:
    """Run ``coro`` on a fresh event loop, failing if it takes more than ``units`` units."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, units * unit())

    return asyncio.run(bounded())
