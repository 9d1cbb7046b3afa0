"""The caption files as a :class:`~streamcap.sinks.base.Sink`: a writer thread around
:class:`~streamcap.sinks.files.SessionFiles`.

``publish()`` (on the event loop) only queues the event; the writes and the fsync per cue happen
on the writer thread. What it records: captions and VAD events, and a status event when the
device state changes (periodic status and error events are for live clients, not for files).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from ..bridge import in_thread
from ..errors import StreamcapError
from ..events import ErrorEvent, Event, StatusEvent
from .files import SessionFiles

log = logging.getLogger("streamcap.sinks.writer")


class _Swap:
    def __init__(self, make: Callable[[], SessionFiles | None]) -> None:
        self.make = make


class FileSink:
    """Writes events into :class:`SessionFiles` on its own thread.

    ``publish()`` never blocks; when the disk hangs and the queue is full, events are dropped and
    counted (``dropped``). A write error is reported through ``on_error`` (called on the writer
    thread; a repeated message once per 100) and writing goes on: the files keep every cue
    written before. ``swap()`` closes the current files and opens the ones ``make()`` returns,
    in order with the events around it. ``files=None``: no files (every output format off).
    """

    name = "files"

    def __init__(
        self,
        files: SessionFiles | None,
        on_error: Callable[[str], None],
        capacity: int = 10000,
    ) -> None:
        self.files = files
        self._on_error = on_error
        self._q: queue.Queue[Event | _Swap | None] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="streamcap-writer", daemon=True)
        self.dropped = 0
        self.written = 0
        self._last_error: str | None = None
        self._repeats = 0
        self._device_state: str | None = None

    # --- the Sink protocol ----------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer thread."""
        if not self._thread.is_alive():
            self._thread.start()

    def publish(self, event: Event) -> None:
        """Queue ``event`` for the files if they record it (any thread; never blocks)."""
        if isinstance(event, ErrorEvent):
            return
        if isinstance(event, StatusEvent):
            if event.device_state == self._device_state:
                return
            self._device_state = event.device_state
        self.put(event)

    async def stop(self, timeout: float) -> None:
        """Write what is queued and close the files; :class:`TimeoutError` past ``timeout``."""
        if not await in_thread(lambda: self.close(timeout), "streamcap-close"):
            raise TimeoutError(f"the caption files were not closed within {timeout:g} s")

    # --- the rest -------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def put(self, event: Event) -> None:
        """Queue ``event`` as it is (no filtering); drops and counts when the queue is full."""
        try:
            self._q.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def swap(self, make: Callable[[], SessionFiles | None]) -> bool:
        """Close the current files and continue in the ones ``make()`` opens (on the thread).

        Never blocks; False (and nothing changes) when the writer is hopelessly behind.
        """
        try:
            self._q.put_nowait(_Swap(make))
        except queue.Full:
            self._error("cannot switch caption files: the file writer is behind (disk stalled?)")
            return False
        return True

    def close(self, timeout: float) -> bool:
        """Write what is queued, close the files; False if that took longer than ``timeout``.

        Blocks (call it off the event loop, or use :meth:`stop`)."""
        if not self._thread.is_alive():
            self._close_files()
            return True
        t0 = time.monotonic()
        try:
            self._q.put(None, timeout=timeout)
        except queue.Full:
            return False
        self._thread.join(max(0.0, timeout - (time.monotonic() - t0)))
        return not self._thread.is_alive()

    def _error(self, message: str) -> None:
        if message == self._last_error:
            self._repeats += 1
            if self._repeats % 100:
                return
            message = f"{message} (repeated {self._repeats} times)"
        else:
            self._last_error = message
            self._repeats = 0
        log.error("%s", message)
        try:
            self._on_error(message)
        except Exception:
            log.exception("output error handler failed")

    def _close_files(self) -> None:
        files, self.files = self.files, None
        if files is not None:
            try:
                files.close()
            except StreamcapError as exc:
                self._error(str(exc))

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                self._close_files()
                return
            if isinstance(item, _Swap):
                self._close_files()
                try:
                    self.files = item.make()
                except StreamcapError as exc:
                    self._error(f"cannot open the new caption files: {exc}")
                    self.files = None
                continue
            files = self.files
            if files is None:
                continue
            try:
                files.write(item)
                self.written += 1
            except StreamcapError as exc:
                self._error(str(exc))
            except Exception as exc:  # never let the writer die: later cues must still be written
                self._error(f"caption files: {type(exc).__name__}: {exc}")
