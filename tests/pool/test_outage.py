"""What a daemon does while the ASR pool is away: the backoff schedule (pure), and the
resilient decoder's choices (retry later, fall back to a local model, give up a final after
the buffer) with a scripted pool and a clock the test moves."""

from __future__ import annotations

import numpy as np
import pytest
from support.model import decoder as local_decoder

from streamcap.asr.decoder import DecodeRequest, Hypothesis
from streamcap.config import AsrConfig, RayConfig
from streamcap.errors import BackendUnavailable, StreamcapError
from streamcap.events import Word
from streamcap.pool.client import split_address
from streamcap.pool.outage import OutageState, ResilientDecoder


def test_backoff_doubles_up_to_the_cap_and_resets_on_success() -> None:
    """Each failure doubles the wait up to the maximum; a success ends the outage."""
    st = OutageState(backoff_s=0.5, backoff_max_s=3.0, buffer_s=10.0)
    assert st.may_try(0.0) and st.describe(0.0) is None
    waits = [st.failed(float(t), "down") for t in range(5)]
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert not st.may_try(4.0) and st.may_try(7.0)
    assert st.retry_after(5.0) == 2.0 and st.down_for(5.0) == 5.0
    assert "unavailable for 5 s (down)" in (st.describe(5.0) or "")
    assert st.succeeded(8.0) == 8.0
    assert st.may_try(8.0) and st.describe(8.0) is None and st.succeeded(9.0) == 0.0


def test_many_failures_do_not_overflow_the_backoff() -> None:
    """A very long outage keeps the capped wait (hostile: thousands of failures)."""
    st = OutageState(backoff_s=0.01, backoff_max_s=8.0, buffer_s=0.0)
    for t in range(5000):
        wait = st.failed(float(t), "x")
    assert wait == 8.0 and st.gave_up(5000.0) and not st.gave_up(0.0)


class ScriptedPool:
    """A pool stand-in that is up or down as the test says (pure decision logic under test)."""

    multilingual = False

    def __init__(self) -> None:
        self.up = True
        self.calls = 0
        self.decode_seconds = 0.0

    def decode(self, req: DecodeRequest) -> Hypothesis:
        self.calls += 1
        if not self.up:
            raise BackendUnavailable("pool down", 0.5)
        return Hypothesis(words=(Word(" pool", req.offset, req.offset + 0.2),))

    def retune(self, cfg: AsrConfig) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _req(final: bool = False, speculative: bool = False) -> DecodeRequest:
    return DecodeRequest(np.zeros(16000, np.float32), 1.0, final=final, language="en",
                         speculative=speculative)


def test_buffer_mode_raises_until_the_pool_returns_and_asks_it_once_per_backoff() -> None:
    """With on_outage: buffer a failed decode raises BackendUnavailable (retry_after from the
    backoff), the pool is not asked again before the wait is over, and its return ends the
    degraded state."""
    pool, clock = ScriptedPool(), Clock()
    rd = ResilientDecoder(pool, RayConfig(retry_backoff_s=1.0, retry_backoff_max_s=4.0),
                          clock=clock)
    assert rd.decode(_req()).words[0].text == " pool" and rd.degraded is None
    pool.up = False
    with pytest.raises(BackendUnavailable) as info:
        rd.decode(_req(final=True))
    assert info.value.retry_after_s == 1.0 and isinstance(info.value, StreamcapError)
    assert rd.degraded is not None and "pool down" in rd.degraded
    clock.now += 0.5
    with pytest.raises(BackendUnavailable) as info:
        rd.decode(_req(final=True))
    assert pool.calls == 2 and info.value.retry_after_s == pytest.approx(0.5)
    clock.now += 0.6
    with pytest.raises(BackendUnavailable):
        rd.decode(_req(final=True))
    assert pool.calls == 3  # the wait was over: asked again, failed, now waits 2 s
    pool.up = True
    clock.now += 2.1
    assert rd.decode(_req(final=True)).words and rd.degraded is None and rd.outages == 1


def test_a_final_pending_longer_than_the_buffer_is_given_up() -> None:
    """After asr.ray.buffer_s of outage a pending final gets an empty hypothesis (the policy
    keeps its committed words); partials and speculative passes keep waiting."""
    pool, clock = ScriptedPool(), Clock()
    rd = ResilientDecoder(pool, RayConfig(buffer_s=5.0, retry_backoff_s=1.0,
                                          retry_backoff_max_s=1.0), clock=clock)
    pool.up = False
    with pytest.raises(BackendUnavailable):
        rd.decode(_req(final=True))
    clock.now += 6.0
    for req in (_req(), _req(final=True, speculative=True)):
        with pytest.raises(BackendUnavailable):
            rd.decode(req)
    hyp = rd.decode(_req(final=True))
    assert hyp.words == () and hyp.audio_end == 2.0 and rd.finals_given_up == 1


def test_local_mode_decodes_with_the_real_local_model_during_the_outage() -> None:
    """With on_outage: local the real local model decodes while the pool is down (still
    reported degraded), and the pool takes over again once it answers."""
    from support.clips import AUDIO, need

    from streamcap.audio.decode import load_audio

    clip = need(AUDIO / "en_librispeech" / "1089-134691-0001.flac")
    pool, clock = ScriptedPool(), Clock()
    local = local_decoder()
    rd = ResilientDecoder(pool, RayConfig(on_outage="local"), fallback=local, clock=clock)
    pool.up = False
    req = DecodeRequest(load_audio(clip)[: 3 * 16000], 0.0, final=True, language="en")
    hyp = rd.decode(req)
    assert "full hour" in "".join(w.text for w in hyp.words).lower()
    assert rd.fallback_decodes == 1 and rd.degraded is not None
    assert rd.decode_seconds == local.decode_seconds > 0
    pool.up = True
    clock.now += 10
    assert rd.decode(req).words[0].text == " pool" and rd.degraded is None


@pytest.mark.parametrize(
    ("address", "want"),
    [
        ("127.0.0.1:6379", ("127.0.0.1", 6379)),
        ("ray://head.example:10001", ("head.example", 10001)),
        ("[::1]:6379", ("::1", 6379)),
        ("auto", None),
        ("", None),
        ("host:", None),
        (":6379", None),
        ("host:99999", None),
        ("host:0", None),
        ("host:12ab", None),
    ],
)
def test_split_address(address: str, want: tuple[str, int] | None) -> None:
    """HOST:PORT and ray://HOST:PORT are probed; auto and malformed ports are not."""
    assert split_address(address) == want
