"""The real daemon driving real OBS Studio (under Xvfb) through ``obs.enabled``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.daemon_proc import (
    CLIP,
    PATIENT,
    STATUS_EVERY,
    Client,
    DaemonProc,
    mostly_from,
    need,
    pcm_s16le,
    reference,
    start_daemon,
    words,
)
from support.pulse import timeout_unit, wait_until

pytestmark = [pytest.mark.system, pytest.mark.slow]


# --- real OBS --------------------------------------------------------------------------


def test_daemon_drives_real_obs_text_source(tmp_path: Path) -> None:
    """With obs.enabled the daemon connects to OBS Studio (under Xvfb) and the text source
    shows the final caption of a spoken clip, then is cleared when the daemon stops."""
    import asyncio

    from support.obs_studio import ObsStudio, Xvfb, missing_programs, request

    need(CLIP)
    missing = missing_programs()
    if missing:
        msg = f"not installed: {', '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    unit = timeout_unit()
    source = "streamcap e2e captions"
    xvfb = Xvfb(10 * unit)
    obs = ObsStudio(tmp_path / "obs", xvfb.display)
    d: DaemonProc | None = None

    def obs_text() -> str:
        async def get() -> str:
            client = await obs.client()
            try:
                data = await request(client, "GetInputSettings", {"inputName": source})
                return str(data["inputSettings"].get("text", ""))
            finally:
                await client.disconnect()

        try:
            return asyncio.run(get())
        except RuntimeError:  # the source does not exist yet
            return ""

    try:
        obs.start(30 * unit)
        d = start_daemon(tmp_path, ["--input", "-", *STATUS_EVERY, *PATIENT,
                                    "--set", "obs.enabled=true",
                                    "--set", f"obs.port={obs.port}",
                                    "--set", f"obs.text_source={source}"], stdin=True)
        d.wait_listening(90)
        c = Client(d.port)
        d.feed(pcm_s16le(CLIP, pad_s=1.5), realtime=True)
        wait_until(c.settled, 30, "the final of the clip")
        said = words(c.text())
        shown: list[str] = []

        def shows_the_final() -> bool:
            got = words(obs_text())
            shown[:] = got
            return bool(got) and said[-len(got):] == got and got[-3:] == said[-3:]

        wait_until(shows_the_final, 15, "the final in the OBS text source", poll=0.3)
        assert len(shown) >= 3, shown
        assert mostly_from(reference(CLIP), c.text()), c.text()
        d.close_stdin()
        assert d.wait_exit(30) == 0, d.stderr()
        assert obs_text() == "", "the caption was left on screen after the daemon stopped"
    finally:
        if d is not None:
            d.stop()
        obs.kill()
        xvfb.close()
