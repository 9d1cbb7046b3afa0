"""Metrics: collectors on a private registry and their Prometheus text."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streamcap.metrics import CONTENT_TYPE, Metrics


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(m.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_render_is_parseable_prometheus_text_with_every_collector() -> None:
    """A fresh Metrics renders valid exposition text that names every collector."""
    text = Metrics().render().decode()
    for name in ["streamcap_caption_latency_seconds", "streamcap_delivery_seconds",
                 "streamcap_rtf", "streamcap_lag_seconds", "streamcap_dropped_frames_total",
                 "streamcap_clients", "streamcap_client_queue_depth_max",
                 "streamcap_client_queue_depth_total", "streamcap_messages_sent_total",
                 "streamcap_messages_dropped_total", "streamcap_client_disconnects_total",
                 "streamcap_events_published_total"]:
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    assert list(text_string_to_metric_families(text))
    assert CONTENT_TYPE.startswith("text/plain")


def test_each_instance_has_its_own_registry() -> None:
    """Two Metrics objects do not share counts, and a passed registry is used."""
    a, b = Metrics(), Metrics()
    a.clients.set(5)
    assert samples(a)[("streamcap_clients", ())] == 5
    assert samples(b)[("streamcap_clients", ())] == 0
    reg = CollectorRegistry()
    c = Metrics(reg)
    assert c.registry is reg and reg.get_sample_value("streamcap_clients") == 0


def test_status_figures_and_dropped_frames_running_total() -> None:
    """Status sets the gauges; the dropped-frames counter follows the running total and
    never goes backwards when the total restarts."""
    m = Metrics()
    m.observe_status(lag=0.4, rtf=0.2, dropped_frames=3)
    m.observe_status(lag=0.1, rtf=0.3, dropped_frames=10)
    s = samples(m)
    assert s[("streamcap_lag_seconds", ())] == 0.1 and s[("streamcap_rtf", ())] == 0.3
    assert s[("streamcap_dropped_frames_total", ())] == 10
    m.observe_status(lag=0, rtf=0, dropped_frames=2)  # capture restarted its count
    m.observe_status(lag=0, rtf=0, dropped_frames=5)
    assert samples(m)[("streamcap_dropped_frames_total", ())] == 13
    m.observe_status(lag=0, rtf=0, dropped_frames=0)
    m.observe_status(lag=0, rtf=0, dropped_frames=-4)  # hostile: a negative total
    assert samples(m)[("streamcap_dropped_frames_total", ())] == 13


def test_latency_histograms_skip_negative_values() -> None:
    """Caption latencies are binned per kind; a negative latency (clock skew) is not recorded."""
    m = Metrics()
    m.observe_caption_latency("final", 0.8)
    m.observe_caption_latency("final", 2.5)
    m.observe_caption_latency("partial", 0.3)
    m.observe_caption_latency("partial", -1.0)
    s = samples(m)
    assert s[("streamcap_caption_latency_seconds_count", (("kind", "final"),))] == 2
    assert s[("streamcap_caption_latency_seconds_count", (("kind", "partial"),))] == 1
    assert s[("streamcap_caption_latency_seconds_bucket", (("kind", "final"), ("le", "1.0")))] == 1
    m.delivery.observe(0.004)
    assert samples(m)[("streamcap_delivery_seconds_bucket", (("le", "0.005"),))] == 1


def test_queue_depth_gauges_including_no_clients() -> None:
    """Queue gauges report the fullest queue and the sum, and zero with no clients."""
    m = Metrics()
    m.set_queue_depths([3, 0, 7])
    s = samples(m)
    assert s[("streamcap_client_queue_depth_max", ())] == 7
    assert s[("streamcap_client_queue_depth_total", ())] == 10
    m.set_queue_depths([])
    s = samples(m)
    assert s[("streamcap_client_queue_depth_max", ())] == 0
    assert s[("streamcap_client_queue_depth_total", ())] == 0


def test_per_input_lag_and_up_gauges_from_status() -> None:
    """Each input of a status event gets its lag and an up gauge (1 only while running);
    hostile entries (no name, a non-number lag) do not break rendering."""
    m = Metrics()
    m.observe_inputs(({"name": "You", "device_state": "running", "lag": 0.4},
                      {"name": "Others", "device_state": "lost", "lag": 2.5}))
    m.observe_inputs(({"lag": "fast"},))
    s = samples(m)
    assert s[("streamcap_input_lag_seconds", (("input", "You"),))] == 0.4
    assert s[("streamcap_input_up", (("input", "You"),))] == 1
    assert s[("streamcap_input_up", (("input", "Others"),))] == 0
    assert s[("streamcap_input_lag_seconds", (("input", ""),))] == 0
