"""The exception tree of streamcap.

::

    StreamcapError
    ├── ConfigError        a bad configuration value (names the key path)
    ├── AudioError         audio that cannot be decoded or is empty
    │   └── AudioDeviceError   a capture device that cannot be opened or went away
    ├── ModelError         a model that cannot be found or loaded
    ├── ProtocolError      a bad frame or request from a client
    └── BackendUnavailable the ASR backend cannot decode now (retry later)

Library code raises these; only :mod:`streamcap.cli` turns them into a message and an exit code.
"""

from __future__ import annotations


class StreamcapError(Exception):
    """Root of every error streamcap raises on purpose."""

    exit_code = 1


class ConfigError(StreamcapError):
    """A configuration value is missing, unknown or out of range."""

    exit_code = 2

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class AudioError(StreamcapError):
    """Audio input that cannot be used (empty, corrupt, unsupported)."""

    exit_code = 3


class AudioDeviceError(AudioError):
    """A capture device that cannot be opened, or that went away."""

    exit_code = 4


class ModelError(StreamcapError):
    """A Whisper model that cannot be found or loaded."""

    exit_code = 5


class ProtocolError(StreamcapError):
    """A client sent something the protocol does not allow."""

    exit_code = 6


class BackendUnavailable(StreamcapError):
    """The ASR backend (e.g. a Ray Serve pool) cannot decode now; try again later.

    Raised by a hypothesis source; the request stays pending (the streaming policy only moves on
    when a hypothesis comes back), and the worker waits ``retry_after_s`` before trying again.
    """

    exit_code = 7

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)
