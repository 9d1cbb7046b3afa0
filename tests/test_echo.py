"""The echo filter (pure): a microphone's captions that repeat the monitor are removed, the user's
own words never are; finals wait, bounded, for the monitor to cover their time."""

from __future__ import annotations

import math

import pytest
from support.events import words

from streamcap.asr.policy import PolicyEvent
from streamcap.echo import EchoFilter, EchoOptions, LaneProgress, echo_mask
from streamcap.events import FinalCaption, PartialCaption, VadEvent, join_words

MIC, MON = 0, 1
INF = math.inf
ECHO_TEXT = "he hoped there would be stew for dinner turnips and carrots"
OWN_TEXT = "i will send you the report by tomorrow morning"


def fin(uid: int, text: str, start: float, source: str = "You") -> FinalCaption:
    ws = words(text, start)
    return FinalCaption(utterance_id=uid, text=join_words(ws), words=ws, start=ws[0].start,
                        end=ws[-1].end, source=source, speaker=source)


def part(uid: int, rev: int, text: str, start: float, source: str = "You") -> PartialCaption:
    ws = words(text, start, stable=False)
    return PartialCaption(utterance_id=uid, revision=rev, words=ws, start=ws[0].start,
                          end=ws[-1].end, source=source, speaker=source)


def prog(mic_heard: float, mon_known: float, mon_heard: float | None = None,
         mic_known: float = 0.0) -> list[LaneProgress]:
    return [LaneProgress(heard=mic_heard, known=mic_known),
            LaneProgress(heard=mon_heard if mon_heard is not None else mon_known,
                         known=mon_known)]


def finals(events: list[PolicyEvent], source: str = "You") -> list[FinalCaption]:
    return [e for e in events if isinstance(e, FinalCaption) and e.source == source]


def test_echo_final_is_suppressed() -> None:
    """A microphone final repeating the monitor's final of the same time, 50 ms later, is
    suppressed and counted; the monitor's final passes."""
    f = EchoFilter({MIC: MON}, 2)
    out = f.feed(MON, [fin(1, ECHO_TEXT, 1.0, "Others")], prog(4.5, 5.0))
    out += f.feed(MIC, [fin(0, ECHO_TEXT, 1.05)], prog(5.0, 5.0))
    assert [e.source for e in finals(out, "Others")] == ["Others"]
    assert finals(out) == []
    assert f.suppressed == [1, 0]


def test_echo_with_recognition_slips_is_suppressed() -> None:
    """Echo heard a little differently (a substituted word, a compound split in two, a
    dropped word) is still echo."""
    f = EchoFilter({MIC: MON}, 2)
    ref = "out in thick peppered flower-fattened sauce and fat mutton pieces"
    mic = "out and thick peppered flower fat sauce and fat mutton"
    out = f.feed(MON, [fin(1, ref, 2.0, "Others")], prog(6, 6))
    out += f.feed(MIC, [fin(0, mic, 2.03)], prog(6, 6))
    assert finals(out) == []


def test_mic_final_is_held_until_the_monitor_covers_its_time() -> None:
    """A microphone final that comes out before the monitor's final of that time waits for it,
    and is then suppressed as echo."""
    f = EchoFilter({MIC: MON}, 2)
    out = f.feed(MIC, [fin(0, ECHO_TEXT, 1.05)], prog(5.0, 1.0))
    assert out == [] and f.holding == 1
    out = f.feed(MON, [fin(1, ECHO_TEXT, 1.0, "Others")], prog(5.1, 5.2))
    assert f.holding == 0
    assert finals(out) == [] and len(finals(out, "Others")) == 1
    assert f.suppressed[MIC] == 1


def test_own_speech_over_silent_monitor_is_kept() -> None:
    """With no words on the monitor the user's final passes unchanged once the monitor's
    progress covers its time (the hold is released by progress alone)."""
    f = EchoFilter({MIC: MON}, 2)
    own = fin(0, OWN_TEXT, 1.0)
    assert f.feed(MIC, [own], prog(4.0, 2.0)) == []
    out = f.feed(MON, [], prog(4.1, own.end + 1.0))
    assert finals(out) == [own]
    assert f.suppressed == [0, 0] and f.trimmed == [0, 0]


def test_own_speech_over_other_talk_is_kept() -> None:
    """Both talking at once: the user's different words are kept whole, even when one common
    word ("the") coincides with the monitor's."""
    f = EchoFilter({MIC: MON}, 2)
    f.feed(MON, [fin(1, "so the weather is nice today in the city", 1.0, "Others")],
           prog(5, 5))
    own = fin(0, OWN_TEXT, 1.0)
    out = f.feed(MIC, [own], prog(6, 6))
    assert finals(out) == [own]


def test_partly_echo_final_keeps_the_users_words() -> None:
    """A microphone final with echo first and then the user's own words is trimmed to the
    user's words (text and times from the words kept)."""
    f = EchoFilter({MIC: MON}, 2)
    f.feed(MON, [fin(1, ECHO_TEXT, 1.0, "Others")], prog(6, 6))
    mixed = fin(0, ECHO_TEXT + " " + OWN_TEXT, 1.05)
    out = finals(f.feed(MIC, [mixed], prog(9, 9)))
    assert len(out) == 1
    assert out[0].text == join_words(words(OWN_TEXT, 0))
    assert out[0].start > mixed.start and out[0].end == mixed.end
    assert f.trimmed[MIC] == 1 and f.words_removed[MIC] == len(ECHO_TEXT.split())


def test_hold_is_bounded_by_the_mics_own_time() -> None:
    """A monitor that never reports holds a microphone final only until the microphone's own
    stream time is ``max_hold_s`` past its end."""
    f = EchoFilter({MIC: MON}, 2, EchoOptions(max_hold_s=2.0))
    own = fin(0, OWN_TEXT, 1.0)
    assert f.feed(MIC, [own], prog(own.end + 1.9, 0.0)) == []
    out = f.feed(MIC, [], prog(own.end + 2.0, 0.0))
    assert finals(out) == [own]
    assert f.held_max_s == pytest.approx(2.0)


def test_hold_waits_for_a_monitor_whose_decoding_is_behind() -> None:
    """A monitor that has the audio but has not decoded it yet (a busy worker) is waited for
    past ``max_hold_s``, up to ``max_wait_s``; its final then decides."""
    f = EchoFilter({MIC: MON}, 2, EchoOptions(max_hold_s=2.0, max_wait_s=10.0))
    echo = fin(0, ECHO_TEXT, 1.05)
    assert f.feed(MIC, [echo], prog(echo.end + 5.0, 1.0, mon_heard=echo.end + 5.0)) == []
    out = f.feed(MON, [fin(1, ECHO_TEXT, 1.0, "Others")],
                 prog(echo.end + 6.0, echo.end + 1.0, mon_heard=echo.end + 6.0))
    assert finals(out) == [] and f.suppressed[MIC] == 1
    own = fin(2, OWN_TEXT, 20.0)
    assert f.feed(MIC, [own], prog(own.end + 9.9, 15.0, mon_heard=own.end + 9.9)) == []
    assert finals(f.feed(MIC, [], prog(own.end + 10.0, 15.0, mon_heard=own.end + 10))) == [own]


def test_ended_monitor_releases_held_finals() -> None:
    """Once the monitor ended (known: infinity) nothing waits for it."""
    f = EchoFilter({MIC: MON}, 2)
    own = fin(0, OWN_TEXT, 1.0)
    assert f.feed(MIC, [own], prog(own.end, 0.5)) == []
    assert finals(f.feed(MON, [], prog(own.end, INF))) == [own]


def test_finals_keep_their_order_while_held() -> None:
    """A later microphone final never overtakes an earlier held one; VAD events pass at once."""
    f = EchoFilter({MIC: MON}, 2)
    a, b = fin(0, OWN_TEXT, 1.0), fin(2, "and another thing entirely", 6.0)
    vad = VadEvent("speech_start", 5.9, 2, source="You")
    out = f.feed(MIC, [a, vad, b], prog(7.0, 0.5))
    assert out == [vad]
    assert finals(f.feed(MON, [], prog(7.1, 20.0))) == [a, b]


def test_flush_releases_everything() -> None:
    """At the end of the session every held final is judged with what is known."""
    f = EchoFilter({MIC: MON}, 2)
    f.feed(MON, [fin(1, ECHO_TEXT, 1.0, "Others")], prog(0.0, 0.0))
    own = fin(2, OWN_TEXT, 10.0)
    f.feed(MIC, [fin(0, ECHO_TEXT, 1.05), own], prog(0.0, 0.0))
    assert finals(f.flush()) == [own]
    assert f.suppressed[MIC] == 1 and f.holding == 0


def test_echo_partial_is_hidden_and_cleared() -> None:
    """A microphone partial matching the monitor's partial is not shown; one shown before the
    echo was known is cleared by an empty partial when its final is suppressed."""
    f = EchoFilter({MIC: MON}, 2)
    early = part(0, 1, "he hoped there", 1.05)
    assert f.feed(MIC, [early], prog(2.0, 0.0)) == [early]  # nothing known on the monitor yet
    f.feed(MON, [part(1, 1, ECHO_TEXT, 1.0, "Others")], prog(4.0, 4.0))
    # Already on screen: the next (echo) revision replaces it with nothing.
    out = f.feed(MIC, [part(0, 2, "he hoped there would be", 1.05)], prog(4.0, 4.0))
    assert len(out) == 1 and isinstance(out[0], PartialCaption) and out[0].words == ()
    f2 = EchoFilter({MIC: MON}, 2)
    f2.feed(MON, [part(1, 1, ECHO_TEXT, 1.0, "Others")], prog(4.0, 4.0))
    assert f2.feed(MIC, [part(0, 1, "he hoped there would", 1.05)], prog(4.0, 4.0)) == []
    # A shown partial whose final is suppressed: an empty partial clears it.
    f3 = EchoFilter({MIC: MON}, 2)
    f3.feed(MIC, [early], prog(2.0, 0.0))
    f3.feed(MON, [fin(1, ECHO_TEXT, 1.0, "Others")], prog(5.0, 5.0))
    out = f3.feed(MIC, [fin(0, ECHO_TEXT, 1.05)], prog(6.0, 6.0))
    assert len(out) == 1 and isinstance(out[0], PartialCaption)
    assert out[0].utterance_id == 0 and out[0].words == () and out[0].revision == 2


def test_other_inputs_pass_untouched() -> None:
    """Inputs that are no echo lane (the monitor, a third input) are never changed or held."""
    f = EchoFilter({MIC: MON}, 3)
    third = fin(5, ECHO_TEXT, 1.0, "Guest")
    p3 = [*prog(0, 0), LaneProgress(0, 0)]
    assert f.feed(2, [third], p3) == [third]
    mon = fin(1, ECHO_TEXT, 1.0, "Others")
    assert f.feed(MON, [mon], p3) == [mon]


def test_hostile_input() -> None:
    """Empty input, an empty final, out-of-order and stale events are handled; bad lanes,
    progress and pairs are errors naming the culprit."""
    f = EchoFilter({MIC: MON}, 2)
    assert f.feed(MIC, [], prog(0, 0)) == []
    empty = FinalCaption(utterance_id=0, text="", words=(), start=1.0, end=1.0, source="You")
    assert f.feed(MIC, [empty], prog(3, 3)) == [empty]
    # A monitor final older than the kept window, then a microphone final out of order.
    f.feed(MON, [fin(9, ECHO_TEXT, 100.0, "Others")], prog(0, 200, 200))
    late = fin(4, OWN_TEXT, 1.0)
    assert finals(f.feed(MIC, [late], prog(3, 200))) == [late]
    nan = FinalCaption(utterance_id=6, text="x y", words=words("x y", math.nan), start=math.nan,
                       end=math.nan, source="You")
    assert finals(f.feed(MIC, [nan], prog(3, 0))) == [nan]  # no time to wait for
    with pytest.raises(ValueError, match="no input 2"):
        f.feed(2, [], prog(0, 0))
    with pytest.raises(ValueError, match="progress of 1 inputs"):
        f.feed(MIC, [], [LaneProgress(0, 0)])
    with pytest.raises(ValueError, match="cannot echo itself"):
        EchoFilter({0: 0}, 2)
    with pytest.raises(ValueError, match="no such input"):
        EchoFilter({0: 3}, 2)
    with pytest.raises(ValueError, match="itself an echo"):
        EchoFilter({0: 1, 1: 2}, 3)
    with pytest.raises(ValueError, match="margin_s"):
        EchoOptions(margin_s=-1)


def test_echo_mask_rules() -> None:
    """Runs of matching words are echo, one coincidental word is not, short own slips between
    echo go with it, and a one-word caption echoes if its word does."""
    opts = EchoOptions()
    ref = words("the weather is nice today in the city", 0.0)
    mine = words("i think the report is late", 0.0)
    assert not any(echo_mask(mine, ref, opts))
    slip = words("the weather bees nice today", 0.0)
    assert all(echo_mask(slip, ref, opts))
    assert echo_mask(words("weather", 0.3), ref, opts) == [True]
    far = words("the weather is nice", 30.0)  # the same words, but not at the same time
    assert not any(echo_mask(far, ref, opts))
    heard_wrong = words("flour fed and sauce", 2.0)
    said = words("out in thick peppered flower-fattened sauce", 0.6)
    assert all(echo_mask(heard_wrong, said, opts))
    assert not any(echo_mask(heard_wrong, said, EchoOptions(text_ratio=101)))
    assert echo_mask(words("Three.", 0.6), words("3.", 0.6), opts) == [True]  # normalised
    assert echo_mask(words("2 2", 0.0), words("2", 0.0), opts) == [True, True]  # any order
    assert echo_mask([], ref, opts) == [] and echo_mask(mine, [], opts) == [False] * 6
