"""Prometheus metrics of one streamcap server, on a registry of its own.

:class:`Metrics` owns the collectors; the WebSocket server updates them as events pass and
serves :meth:`Metrics.render` at ``/metrics``. A private :class:`CollectorRegistry` per instance
keeps tests (and two servers in one process) from sharing counters.

Latency histograms (``streamcap_caption_latency_seconds``): wall time of emission minus the
wall time of the end of the audio the caption covers (``session.epoch + event.end``).
Delivery histogram (``streamcap_delivery_seconds``): wall time a message was written to a
client's socket minus the wall time the engine emitted it.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

CONTENT_TYPE: Final[str] = CONTENT_TYPE_LATEST

LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0,
)
DELIVERY_BUCKETS: Final[tuple[float, ...]] = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)


class Metrics:
    """The collectors of one server and their text rendering."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.caption_latency = Histogram(
            "streamcap_caption_latency_seconds",
            "Emission wall time minus the wall time of the end of the captioned audio.",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.delivery = Histogram(
            "streamcap_delivery_seconds",
            "Time from engine emission to the write of a message to a client socket.",
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.rtf = Gauge(
            "streamcap_rtf", "Real-time factor of decoding (decode time / audio time).",
            registry=r,
        )
        self.lag = Gauge(
            "streamcap_lag_seconds", "How far the engine is behind real time.", registry=r
        )
        self.dropped_frames = Counter(
            "streamcap_dropped_frames", "Audio frames dropped before decoding.", registry=r
        )
        self.asr_degraded = Gauge(
            "streamcap_asr_degraded",
            "1 while the ASR backend (the Ray pool) cannot decode, else 0.", registry=r
        )
        self.clients = Gauge(
            "streamcap_clients", "WebSocket clients connected now.", registry=r
        )
        self.client_queue_max = Gauge(
            "streamcap_client_queue_depth_max",
            "Messages waiting in the fullest client queue.",
            registry=r,
        )
        self.client_queue_total = Gauge(
            "streamcap_client_queue_depth_total",
            "Messages waiting in all client queues together.",
            registry=r,
        )
        self.messages_sent = Counter(
            "streamcap_messages_sent", "Messages written to client sockets.", ["type"],
            registry=r,
        )
        self.messages_dropped = Counter(
            "streamcap_messages_dropped",
            "Messages a slow client lost (superseded partials and status, or queue full).",
            ["type"],
            registry=r,
        )
        self.disconnects = Counter(
            "streamcap_client_disconnects",
            "Clients the server disconnected, by reason.",
            ["reason"],
            registry=r,
        )
        self.events = Counter(
            "streamcap_events_published", "Events published to the server.", ["type"],
            registry=r,
        )
        self.input_lag = Gauge(
            "streamcap_input_lag_seconds",
            "How far each input's engine is behind its audio (several inputs only).",
            ["input"], registry=r,
        )
        self.input_up = Gauge(
            "streamcap_input_up",
            "1 while the input captures, 0 while it is lost, reopening or ended.",
            ["input"], registry=r,
        )
        self.finals = Counter(
            "streamcap_finals", "Finals published, by source label ('' when unlabelled).",
            ["source"], registry=r,
        )
        self.echo_suppressed = Gauge(
            "streamcap_echo_suppressed",
            "Finals of an input suppressed as echo of another input so far, from the last status.",
            ["input"], registry=r,
        )
        self.api_requests = Counter(
            "streamcap_api_requests",
            "Transcription API requests answered, by HTTP status.",
            ["status"],
            registry=r,
        )
        self.api_audio = Counter(
            "streamcap_api_audio_seconds",
            "Seconds of audio the transcription API transcribed.",
            registry=r,
        )
        self.api_decode = Counter(
            "streamcap_api_decode_seconds",
            "Decoding time the transcription API's jobs took on the live worker.",
            registry=r,
        )
        self._dropped_seen = 0

    def observe_caption_latency(self, kind: str, seconds: float) -> None:
        """Record the latency of a ``partial`` or ``final`` caption (negative values skipped)."""
        if seconds >= 0.0:
            self.caption_latency.labels(kind=kind).observe(seconds)

    def observe_status(
        self, lag: float, rtf: float, dropped_frames: int, degraded: bool = False
    ) -> None:
        """Take over the figures of a status event; ``dropped_frames`` is a running total."""
        self.asr_degraded.set(1 if degraded else 0)
        self.lag.set(lag)
        self.rtf.set(rtf)
        if dropped_frames > self._dropped_seen:
            self.dropped_frames.inc(dropped_frames - self._dropped_seen)
        self._dropped_seen = max(0, dropped_frames)

    def observe_inputs(self, inputs: tuple[dict[str, object], ...]) -> None:
        """Take over the per-input figures of a status event (several inputs only)."""
        for x in inputs:
            name = str(x.get("name", ""))
            lag = x.get("lag", 0.0)
            self.input_lag.labels(input=name).set(float(lag) if isinstance(lag, (int, float))
                                                  else 0.0)
            self.input_up.labels(input=name).set(1.0 if x.get("device_state") == "running"
                                                 else 0.0)
            n = x.get("echo_suppressed")
            if isinstance(n, int) and n >= 0:  # inputs with echo suppression
                self.echo_suppressed.labels(input=name).set(n)

    def set_queue_depths(self, depths: list[int]) -> None:
        """Set the queue gauges from the current depth of every client queue."""
        self.client_queue_max.set(max(depths, default=0))
        self.client_queue_total.set(sum(depths))

    def render(self) -> bytes:
        """The Prometheus text exposition of every collector."""
        data: bytes = generate_latest(self.registry)
        return data
