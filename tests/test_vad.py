"""The VAD segmenter and the fixed-capacity ring buffer."""

from __future__ import annotations

import numpy as np
from support.model import AUDIO

from streamcap.audio.decode import load_audio
from streamcap.config import VadConfig
from streamcap.events import SAMPLE_RATE
from streamcap.vad import RingBuffer, SpeechAudio, SpeechEnd, SpeechStart, VadSegmenter


def segment(audio: np.ndarray, cfg: VadConfig | None = None, block: int = 1234) -> list[object]:
    vad = VadSegmenter(cfg or VadConfig(), 30)
    out: list[object] = []
    for i in range(0, len(audio), block):
        out += vad.feed(audio[i : i + block])
    return out + vad.finish()


def test_silence_yields_nothing() -> None:
    """A minute of silence produces no segment at all (so no decoding)."""
    assert segment(np.zeros(60 * SAMPLE_RATE, np.float32)) == []


def test_speech_is_bracketed_with_preroll() -> None:
    """Speech after silence opens with pre-roll before the onset and closes after it ends."""
    speech = load_audio(AUDIO / "en_librispeech" / "1089-134691-0000.flac")
    pad = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([pad, speech, pad])
    segs = segment(audio)
    starts = [s for s in segs if isinstance(s, SpeechStart)]
    ends = [s for s in segs if isinstance(s, SpeechEnd)]
    assert starts and len(starts) == len(ends)
    # The clip itself opens with ~0.5 s of room tone; pre-roll reaches back up to 0.3 s.
    assert 0.7 * SAMPLE_RATE <= starts[0].sample <= 1.8 * SAMPLE_RATE
    assert ends[-1].sample <= len(audio)
    assert ends[-1].sample >= (1.0 + 1.5) * SAMPLE_RATE


def test_audio_pieces_are_contiguous_and_only_inside_speech() -> None:
    """Speech audio comes out gap-free from each start, and nothing between end and start."""
    audio = load_audio(AUDIO / "en_misc" / "jfk.flac")
    segs = segment(audio)
    expect: int | None = None
    for s in segs:
        if isinstance(s, SpeechStart):
            expect = s.sample
        elif isinstance(s, SpeechAudio):
            assert expect is not None and s.sample == expect
            expect = s.sample + len(s.samples)
        elif isinstance(s, SpeechEnd):
            expect = None


def test_end_of_input_closes_open_speech() -> None:
    """Input that stops mid-speech is closed by finish() at the end of the audio."""
    audio = load_audio(AUDIO / "en_misc" / "jfk.flac")[: 3 * SAMPLE_RATE]
    segs = segment(audio)
    assert isinstance(segs[-1], SpeechEnd)
    assert segs[-1].sample == len(audio)


def test_longer_end_silence_merges_utterances() -> None:
    """A longer end-silence setting gives no more utterances than a short one."""
    audio = load_audio(AUDIO / "en_misc" / "mfa_acoustic_corpus.wav")

    def count(s: float) -> int:
        return sum(isinstance(x, SpeechStart) for x in segment(audio, VadConfig(end_silence_s=s)))

    assert count(1.5) <= count(0.3)
    assert count(0.3) >= 2


def test_ring_buffer_keeps_the_newest_audio_at_fixed_memory() -> None:
    """Appending far more than capacity keeps only the newest samples, in one fixed array."""
    rb = RingBuffer(1.0)
    buf_id = id(rb._buf)
    for i in range(100):
        rb.append(i * 4000, np.full(4000, i, np.float32))
    assert len(rb) == SAMPLE_RATE and rb.end == 400000 and id(rb._buf) == buf_id
    got = rb.get(rb.end - 8000)
    assert np.all(got[:4000] == 98) and np.all(got[4000:] == 99)


def test_ring_buffer_release_and_range_queries() -> None:
    """Released audio is gone; ranges clip to what is retained; gaps are zero-filled."""
    rb = RingBuffer(2.0)
    rb.append(0, np.ones(1000, np.float32))
    rb.append(2000, np.full(1000, 2.0, np.float32))  # gap 1000..2000 becomes zeros
    assert np.all(rb.get(1000, 2000) == 0) and np.all(rb.get(2000) == 2)
    rb.release(1500)
    assert rb.start == 1500 and len(rb.get(0, 1500)) == 0
    assert len(rb.get(0)) == 1500
    rb.reset(10**6)
    assert len(rb) == 0 and rb.end == 10**6
