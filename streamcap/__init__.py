"""streamcap: real-time streaming captions with Whisper."""

__version__ = "0.1.0"
