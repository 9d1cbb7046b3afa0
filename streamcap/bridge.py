"""The one way threads hand work to the event loop, and the one way the loop runs blocking work
on a thread.

* :class:`LoopBridge` ``post(fn, *args)``: from any thread (the capture callback, the engine
  worker, the file writer), run ``fn(*args)`` on the loop. After the loop has closed (a forced
  exit) a post is dropped: nobody is left to receive it.
* :func:`in_thread`: from the loop, run a blocking call on a fresh daemon thread and await it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class LoopBridge:
    """Posts calls from other threads onto one event loop (thread-safe, never blocks)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon; dropped when the loop is closed."""
        with contextlib.suppress(RuntimeError):  # the loop is closed (forced exit)
            self.loop.call_soon_threadsafe(fn, *args)


def _set_future(fut: asyncio.Future[T], result: T) -> None:
    if not fut.done():
        fut.set_result(result)


def _fail_future(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def in_thread(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Run ``fn`` on a fresh daemon thread; the future resolves on the running loop.

    Unlike ``asyncio.to_thread`` nothing waits for the thread at exit, so a forced exit is
    never held up by a call that hangs (a stuck device, a decode that does not return).
    """
    bridge = LoopBridge(asyncio.get_running_loop())
    fut: asyncio.Future[T] = bridge.loop.create_future()

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:
            bridge.post(_fail_future, fut, exc)
        else:
            bridge.post(_set_future, fut, result)

    threading.Thread(target=target, name=name, daemon=True).start()
    return fut
