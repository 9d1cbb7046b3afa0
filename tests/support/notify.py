"""A real AF_UNIX datagram socket in the role of systemd's ``NOTIFY_SOCKET``."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .timing import unit


class NotifyListener:
    """The listening end: ``path`` goes into ``NOTIFY_SOCKET``; read with :meth:`recv`."""

    def __init__(self, sock: socket.socket, path: Path) -> None:
        self.sock = sock
        self.path = path

    @property
    def env_value(self) -> str:
        """The value for ``NOTIFY_SOCKET``."""
        return str(self.path)

    def recv(self, units: float = 5) -> str:
        """The next datagram as text; fails after ``units`` timeout units without one."""
        self.sock.settimeout(units * unit())
        try:
            return self.sock.recv(4096).decode()
        except TimeoutError:
            raise AssertionError(f"no notification within {units * unit():g} s") from None

    def drain(self, wait: float = 0.1) -> list[str]:
        """Every datagram that arrives until none has come for ``wait`` seconds."""
        self.sock.settimeout(wait)
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return out


@contextlib.contextmanager
def notify_listener() -> Iterator[NotifyListener]:
    """Bind a notify socket in a fresh short directory (``sun_path`` holds 108 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="scn-"))
    path = root / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        yield NotifyListener(sock, path)
    finally:
        sock.close()
        shutil.rmtree(root, ignore_errors=True)
