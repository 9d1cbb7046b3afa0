"""The `streamcap transcribe` command on real files with the real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import srt
import webvtt
from support.model import AUDIO, timeout

pytestmark = pytest.mark.slow


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamcap.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout(300),
        check=False,
    )


def test_transcribe_writes_srt_vtt_jsonl_and_prints_captions(tmp_path: Path) -> None:
    """transcribe prints partials then finals and writes matching SRT, WebVTT and JSON Lines."""
    out = tmp_path / "jfk.srt"
    vtt = tmp_path / "jfk.vtt"
    jsonl = tmp_path / "jfk.jsonl"
    p = run("transcribe", str(AUDIO / "en_misc" / "jfk.flac"), "-o", str(out),
            "--vtt", str(vtt), "--jsonl", str(jsonl))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert any(line.startswith("~ ") for line in lines)  # partials (not a terminal)
    finals = [line for line in lines if line.startswith("[")]
    assert finals and "country" in " ".join(finals).lower()
    subs = list(srt.parse(out.read_text(encoding="utf-8")))
    assert [s.index for s in subs] == list(range(1, len(subs) + 1))
    srt_text = " ".join(s.content.replace("\n", " ") for s in subs).lower()
    assert "what your country can do for you" in "".join(c for c in srt_text if c not in ",.")
    cues = webvtt.read(str(vtt))
    assert len(cues) == len(subs)
    events = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    kinds = {e["type"] for e in events}
    assert {"vad", "partial", "final"} <= kinds


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"RIFF\x00\x00junk" * 20, "cannot decode")],
)
def test_bad_audio_is_a_one_line_error(tmp_path: Path, content: bytes, message: str) -> None:
    """Empty and corrupt files fail with one stderr line naming the file, before any output."""
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    out = tmp_path / "out.srt"
    p = run("transcribe", str(bad), "-o", str(out))
    assert p.returncode == 3
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and message in err[0]
    assert not out.exists()


def test_unknown_model_offline_lists_local_models(tmp_path: Path) -> None:
    """A model that is neither local nor reachable fails with the list of local models."""
    p = run("transcribe", str(AUDIO / "en_misc" / "jfk.flac"), "--model", "./no-such-model")
    assert p.returncode == 5
    assert "asr.model" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_hub_name_without_network_fails_clearly() -> None:
    """A hub model name that is not cached fails offline with one line listing local models."""
    p = subprocess.run(
        [sys.executable, "-m", "streamcap.cli", "transcribe", "--model",
         "Systran/faster-whisper-large-v3", str(AUDIO / "en_misc" / "jfk.flac")],
        capture_output=True, text=True, timeout=timeout(300), check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert p.returncode == 5
    assert "available locally: tiny.en" in p.stderr


# --- structure ----------------------------------------------------------------------------------


PACKAGE = Path(__file__).resolve().parents[1] / "streamcap"


def _import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """streamcap's modules and the streamcap modules each imports (function-level included)."""
    import ast

    mods: dict[str, Path] = {}
    for p in root.rglob("*.py"):
        parts = p.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # `from . import config` imports the module streamcap.config
                names = [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target
                         for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[m] |= {n for n in names if n in mods and n != m}
    return graph


def test_no_module_imports_the_cli_and_there_are_no_import_cycles() -> None:
    """Nothing imports streamcap.cli back, the shared config options import no subcommand, and
    the package's import graph (imports inside functions included) has no cycle."""
    graph = _import_graph()
    assert "streamcap.cli" in graph and "streamcap.cli_config" in graph
    assert [m for m, deps in graph.items() if "streamcap.cli" in deps] == []
    assert graph["streamcap.cli_config"] <= {"streamcap.config"}

    def cycle_from(start: str) -> list[str] | None:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for dep in graph[node]:
                if dep == start:
                    return [*path, dep]
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*path, dep]))
        return None

    cycles = [c for m in sorted(graph) if (c := cycle_from(m)) is not None]
    assert cycles == [], " -> ".join(cycles[0])


def test_run_is_a_subcommand_with_its_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """`streamcap run --help` lists the run flags and the shared config flags; a bad flag is one
    line and exit 2."""
    from streamcap.cli import main

    with pytest.raises(SystemExit) as info:
        main(["run", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--input", "--device", "--host", "--port", "--output-dir", "--config",
                 "--model", "--asr-device", "--set"):
        assert flag in out
    with pytest.raises(SystemExit) as info:
        main(["run", "--port", "\x1b[2Jeighty"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--port: invalid int value" in err[0]


def test_meeting_mode_flags_and_a_conflicting_input(capsys: pytest.CaptureFixture[str]) -> None:
    """`run --meeting` is listed with its label flags; --meeting with --input (or a bad label)
    is a one-line error naming the culprit, exit 2, before any model or device is touched."""
    from streamcap.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for flag in ("--meeting", "--you", "--others"):
        assert flag in out
    assert main(["run", "--meeting", "--input", "mic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--input: meeting mode picks its own inputs" in err[0], err
    assert main(["run", "--meeting", "--you", "Others"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "meeting.others: must differ from meeting.you" in err[0], err
