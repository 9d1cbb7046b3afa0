"""Tests for reading benchmark manifests, including broken and hostile ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamcap.bench.manifest import find_manifests, load_clips, read_manifest
from streamcap.errors import ConfigError

AUDIO = Path(
    os.environ.get("STREAMCAP_AUDIO", Path(__file__).resolve().parents[3] / "shared" / "audio")
)
HEADER = "file\tduration_seconds\tlanguage\treference_transcript\tnotes\n"


def _write(tmp_path: Path, body: str, name: str = "manifest.tsv") -> Path:
    p = tmp_path / name
    p.write_text(body, encoding="utf-8")
    return p


def _audio(tmp_path: Path, name: str = "a.wav", data: bytes = b"RIFF....") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_shared_sets_parse_with_languages_and_fillers() -> None:
    """The real shared manifests load; spontaneous clips are flagged for filler removal."""
    clips = load_clips([AUDIO])
    sets = {c.set for c in clips}
    assert {"en_librispeech", "en_continuous", "en_misc", "multilingual"} <= sets
    assert all(c.path.is_file() and c.reference for c in clips)
    spont = {c.name for c in clips if c.spontaneous}
    assert spont == {"mfa_acoustic_corpus.wav", "mfa_cold_corpus.wav"}
    assert {c.language for c in clips} >= {"en", "zh", "ja", "de"}


def test_folder_with_its_own_manifest_and_file_paths(tmp_path: Path) -> None:
    """A folder holding manifest.tsv is that set; relative and absolute file paths both work."""
    a = _audio(tmp_path)
    b = _audio(tmp_path, "b.wav")  # listed by its absolute path below
    _write(tmp_path, HEADER + f"a.wav\t1.5\ten\thello\t\n{b}\t\tEN\tworld\tspontaneous talk\n")
    clips = load_clips([tmp_path])
    assert [c.path for c in clips] == [a, b]
    assert clips[0].duration == 1.5 and clips[1].duration is None
    assert clips[1].language == "en" and clips[1].spontaneous and clips[0].set == tmp_path.name


@pytest.mark.parametrize(
    ("body", "culprit"),
    [
        ("", "manifest is empty"),
        ("file\tlanguage\n", "missing column(s) reference_transcript"),
        (HEADER, "lists no files"),
        (HEADER + "missing.wav\t1\ten\thello\t\n", "missing.wav' not found"),
        (HEADER + "a.wav\t1\ten\n", "expected 5 tab-separated columns"),
        (HEADER + "a.wav\tlong\ten\thello\t\n", "'duration_seconds' is not a number"),
        (HEADER + "a.wav\t-3\ten\thello\t\n", "out of range"),
        (HEADER + "a.wav\t1\ten\t \t\n", "empty 'reference_transcript'"),
        (HEADER + "a.wav\t1\t../etc\thello\t\n", "'language' must be a code"),
        (HEADER + "\t1\ten\thello\t\n", "empty 'file' column"),
        (HEADER + "empty.wav\t1\ten\thello\t\n", "is empty"),
    ],
)
def test_bad_manifests_name_the_line_and_the_culprit(
    tmp_path: Path, body: str, culprit: str
) -> None:
    """Each kind of broken manifest raises one ConfigError naming the manifest and the problem."""
    _audio(tmp_path)
    _audio(tmp_path, "empty.wav", b"")
    m = _write(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        read_manifest(m)
    assert culprit in str(err.value)
    assert str(m) in str(err.value)
    assert "\n" not in str(err.value)


def test_binary_manifest_is_rejected(tmp_path: Path) -> None:
    """A manifest that is not UTF-8 text is refused with a clear message."""
    m = tmp_path / "manifest.tsv"
    m.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_manifest(m)


def test_missing_inputs_are_named(tmp_path: Path) -> None:
    """A path that does not exist, or a folder without manifests, is named in the error."""
    with pytest.raises(ConfigError, match="no such manifest"):
        find_manifests([tmp_path / "nope"])
    with pytest.raises(ConfigError, match=r"no manifest\.tsv"):
        find_manifests([tmp_path])


def test_same_manifest_given_twice_is_read_once(tmp_path: Path) -> None:
    """Naming a manifest and its folder does not benchmark its files twice."""
    _audio(tmp_path)
    m = _write(tmp_path, HEADER + "a.wav\t1\ten\thello\t\n")
    assert find_manifests([m, tmp_path]) == [m]

