"""Fixtures every test module may use, and the CI rule for skips.

Helpers live in ``tests/support/`` (imported as ``support.*``: ``tests/`` is on ``sys.path``);
no test module imports another. Under ``CI=true`` any skip fails the run (see
:mod:`support.ci_skips` for the rule).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.notify import NotifyListener, notify_listener
from support.pulse import PulseServer, private_pulse

pytest_plugins = ("pytester", "support.ci_skips")


@pytest.fixture(scope="module")
def pulse_server() -> Iterator[PulseServer]:
    """One private PulseAudio with a null sink per module; for subprocesses (``pa.env``)."""
    with private_pulse() as pa:
        yield pa


@pytest.fixture(scope="module")
def pulse(pulse_server: PulseServer) -> Iterator[PulseServer]:
    """The module's private PulseAudio, active in this process (PortAudio sees it)."""
    with pulse_server.activate() as pa:
        yield pa


@pytest.fixture
def notify_socket() -> Iterator[NotifyListener]:
    """A real AF_UNIX datagram socket in the role of systemd's ``NOTIFY_SOCKET``."""
    with notify_listener() as listener:
        yield listener
