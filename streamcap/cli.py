"""The ``streamcap`` command. The only place errors become messages and exit codes.

Subcommands: ``transcribe``, ``run`` and ``config`` here; ``devices``, ``models``, ``bench`` and
``install-service`` registered by the modules that implement them. The options shared by every
configuration-loading subcommand live in :mod:`streamcap.cli_config`, which imports no
subcommand: nothing imports this module back.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from . import config as config_mod
from .cli_config import add_config_args, build_config
from .errors import ConfigError, StreamcapError
from .events import Event, FinalCaption, PartialCaption

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but bad arguments are one line naming the culprit and exit code 2."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message}\n")


# --- transcribe ------------------------------------------------------------------------------


class TerminalPrinter:
    """Prints partials on one rewritten line (on a terminal) and finals as they come."""

    def __init__(self, out: TextIO, show_partials: bool = True) -> None:
        self.out = out
        self.tty = out.isatty()
        self.show_partials = show_partials
        self._partial_len = 0

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, PartialCaption) and self.show_partials:
            if self.tty:
                text = ev.text[-150:]
                self.out.write("\r\x1b[2K\x1b[2m" + text + "\x1b[0m")
                self._partial_len = len(text)
            else:
                self.out.write(f"~ [{ev.start:7.2f}] {ev.stable_text} | {ev.unstable_text}\n")
            self.out.flush()
        elif isinstance(ev, FinalCaption):
            if self.tty:
                self.out.write("\r\x1b[2K")
            self.out.write(f"[{ev.start:7.2f} -> {ev.end:7.2f}] {ev.text}\n")
            self.out.flush()


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from .audio.decode import load_audio
    from .runner import TimedEvent, make_decoder, run_audio
    from .sinks.captions import CaptionFormatter
    from .sinks.files import CaptionFiles

    cfg = build_config(args)
    multi = len(args.files) > 1

    def out_path(p: str | None, i: int) -> Path | None:
        if p is None:
            return None
        path = Path(p)
        return path.with_name(f"{path.stem}.{i + 1}{path.suffix}") if multi else path

    # Decode every input first: a bad file fails before the model is loaded.
    audios = [load_audio(f) for f in args.files]
    decoder, _ = make_decoder(cfg)
    printer = TerminalPrinter(sys.stdout, show_partials=not args.quiet)
    for i, (name, audio) in enumerate(zip(args.files, audios)):
        if multi:
            print(f"== {name}", flush=True)
        files = CaptionFiles(
            srt=out_path(args.output, i),
            vtt=out_path(args.vtt, i),
            jsonl=out_path(args.jsonl, i),
            formatter=CaptionFormatter.from_config(cfg.output),
        )
        try:

            def on_event(te: TimedEvent, files: CaptionFiles = files) -> None:
                files.write(te.event)
                printer(te.event)

            run_audio(audio, cfg, decoder, realtime=args.realtime, on_event=on_event)
        finally:
            files.close()
    return 0


def _add_transcribe(sub: Any) -> None:
    p = sub.add_parser(
        "transcribe",
        help="caption audio files with the streaming engine",
        description="Run the live streaming engine over files and print captions as they come.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="audio or video files (any format)")
    p.add_argument("-o", "--output", metavar="OUT.srt", help="write SRT captions here")
    p.add_argument("--vtt", metavar="OUT.vtt", help="write WebVTT captions here")
    p.add_argument("--jsonl", metavar="OUT.jsonl", help="write every event as JSON Lines here")
    p.add_argument("--realtime", action="store_true", help="feed the audio at real-time speed")
    p.add_argument("-q", "--quiet", action="store_true", help="print finals only")
    add_config_args(p)
    p.set_defaults(func=_cmd_transcribe)


# --- run -------------------------------------------------------------------------------------


def _run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, key in (
        ("input", "audio.input"),
        ("audio_device", "audio.device"),
        ("host", "server.host"),
        ("port", "server.port"),
        ("output_dir", "output.dir"),
        ("you", "meeting.you"),
        ("others", "meeting.others"),
    ):
        v = getattr(args, attr, None)
        if v is not None:
            out[key] = v
    if getattr(args, "meeting", False):
        out["meeting.enabled"] = True
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    """``streamcap run``: caption live until SIGTERM/SIGINT (or the end of a file input)."""
    import asyncio
    import contextlib
    import os

    from .daemon import Daemon, apply_log_level

    _quiet_libraries()  # again: simpleobsws (imported by the daemon) sets websockets to INFO
    extra = _run_overrides(args)
    cfg = build_config(args, extra)
    if getattr(args, "input", None) is not None and (cfg.meeting.enabled or cfg.inputs):
        why = "meeting mode picks its own inputs" if cfg.meeting.enabled else (
            "the configuration lists its inputs ('inputs:')")
        raise ConfigError("--input", f"{why}; drop --input or change them there")
    apply_log_level(cfg, keep_debug=bool(getattr(args, "verbose", False)))
    daemon = Daemon(cfg, reload=lambda: build_config(args, extra))
    code = asyncio.run(daemon.serve())
    if daemon.forced or daemon.timed_out:
        # Threads may still be inside a decode or a device call: leave without waiting for them.
        logging.shutdown()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    if daemon.failure is not None:
        raise StreamcapError(daemon.failure)
    return code


def _add_run(sub: Any) -> None:
    """Register ``streamcap run`` (``--device``: the audio input; ``--asr-device``: the ASR)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run the live captioning daemon (capture, WebSocket server, caption files)",
        description="Caption live audio: capture from a microphone, a monitor source, a file "
        "paced at real time or stdin; serve captions over WebSocket and write SRT/WebVTT/JSONL. "
        "Flags override the configuration file. SIGTERM/SIGINT stop gracefully, SIGHUP reloads.",
    )
    add_config_args(p)
    p.add_argument("--input", metavar="SPEC",
                   help="audio.input: mic, mic:DEVICE, monitor (what plays on the default "
                   "output), monitor:SINK, file:PATH (paced at real time) or - "
                   "(raw s16le PCM on stdin)")
    p.add_argument("--device", dest="audio_device", metavar="NAME",
                   help="audio.device: capture device, a name substring or an index (see "
                   "`streamcap devices`), e.g. a monitor source NAME.monitor")
    p.add_argument("--meeting", action="store_true",
                   help="meeting.enabled: caption both sides of a call, the default microphone "
                   "as 'You' and what plays on the default output as 'Others' (see `streamcap "
                   "devices` for the pair)")
    p.add_argument("--you", metavar="NAME", help="meeting.you: the label of your microphone")
    p.add_argument("--others", metavar="NAME",
                   help="meeting.others: the label of what the speakers play")
    p.add_argument("--host", help="server.host: address to listen on")
    p.add_argument("--port", type=int, help="server.port: port to listen on (0: any free port)")
    p.add_argument("--output-dir", metavar="DIR", help="output.dir: where caption files go")
    p.set_defaults(func=_cmd_run)


def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from .asr.model import check_model

    cfg = build_config(args)
    check_model(cfg.asr)  # what only the model can tell (English-only and a language)
    sys.stdout.write(yaml.safe_dump(config_mod.to_dict(cfg), sort_keys=False))
    return 0


def _add_config(sub: Any) -> None:
    p = sub.add_parser("config", help="validate a configuration and print the effective values")
    add_config_args(p)
    p.set_defaults(func=_cmd_config)


def _registrations() -> list[Callable[[Any], None]]:
    """Every subcommand, each registered by the module that implements it."""
    from . import models_cli, service
    from .audio import devices
    from .bench import cli as bench_cli

    return [
        _add_transcribe,
        _add_run,
        devices.add_devices_parser,
        models_cli.add_parser,
        bench_cli.add_parser,
        service.add_install_service_parser,
        _add_config,
    ]


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="streamcap", description="Real-time streaming captions with Whisper.")
    parser.add_argument("--version", action="version", version=f"streamcap {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for register in _registrations():
        register(sub)
    return parser


def _quiet_libraries() -> None:
    for noisy in ("faster_whisper", "websockets", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _quiet_libraries()
    try:
        code: int = args.func(args)
        return code
    except StreamcapError as exc:
        print(f"streamcap: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
