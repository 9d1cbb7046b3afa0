"""Caption events for tests of the outputs: the same shapes the engine emits, built by hand.

Utterance ``uid`` starts at ``uid * 5`` s; each word lasts 0.25 s and the next starts 0.3 s
after it, so events of different utterances never overlap.
"""

from __future__ import annotations

from streamcap.events import FinalCaption, PartialCaption, Word

UTTERANCE_S = 5.0
WORD_S = 0.3


def words(
    text: str, start: float, probability: float = 0.9, stable: bool = True
) -> tuple[Word, ...]:
    """One :class:`Word` per whitespace-separated piece of ``text`` from ``start`` on."""
    return tuple(
        Word(" " + w, round(start + i * WORD_S, 3), round(start + i * WORD_S + 0.25, 3),
             probability, stable=stable)
        for i, w in enumerate(text.split())
    )


def final(
    uid: int,
    text: str | None = None,
    source: str | None = None,
    speaker: str | None = None,
    translation: str | None = None,
) -> FinalCaption:
    """The final of utterance ``uid`` (default text: ``final number UID of the test session``),
    labelled with ``source``/``speaker`` when given (``speaker`` defaults to ``source``)."""
    text = text if text is not None else f"final number {uid} of the test session"
    ws = words(text, uid * UTTERANCE_S)
    if not ws:
        raise ValueError("a final needs at least one word")
    return FinalCaption(utterance_id=uid, text=text, words=ws, start=ws[0].start, end=ws[-1].end,
                        translation=translation, source=source,
                        speaker=speaker if speaker is not None else source)


def partial(
    uid: int,
    rev: int = 1,
    text: str = "partial words here",
    tail: str | None = None,
    source: str | None = None,
) -> PartialCaption:
    """Revision ``rev`` of utterance ``uid``'s partial.

    Without ``tail`` the last word of ``text`` is the unstable one; with it, ``text`` is the
    stable part and ``tail`` the unstable words after it.
    """
    if tail is None:
        ws = words(text, uid * UTTERANCE_S)
        ws = (*ws[:-1], *words(ws[-1].text, ws[-1].start, 0.5, stable=False))
    else:
        stable = words(text, uid * UTTERANCE_S)
        after = stable[-1].end + WORD_S - 0.25 if stable else uid * UTTERANCE_S
        ws = stable + words(tail, after, 0.5, stable=False)
    if not ws:
        raise ValueError("a partial needs at least one word")
    return PartialCaption(utterance_id=uid, revision=rev, words=ws, start=ws[0].start,
                          end=ws[-1].end, source=source, speaker=source)
