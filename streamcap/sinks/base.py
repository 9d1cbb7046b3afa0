"""The one interface every output implements: files, the WebSocket server and OBS."""

from __future__ import annotations

from typing import Protocol

from ..events import Event


class Sink(Protocol):
    """An output the daemon starts, publishes every event to, and stops.

    ``publish`` is called on the daemon's event loop thread and must not block: a sink that does
    I/O hands the event to its own task or thread. ``stop`` flushes what was published and
    releases everything within ``timeout`` seconds.
    """

    name: str

    async def start(self) -> None: ...

    def publish(self, event: Event) -> None: ...

    async def stop(self, timeout: float) -> None: ...
