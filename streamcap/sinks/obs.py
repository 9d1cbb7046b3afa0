"""The OBS sink: the rolling caption in an OBS text source, finals as CEA-608 stream captions.

It speaks obs-websocket v5 (OBS 28 and later) through :mod:`simpleobsws`.

Pure cores (no clocks, no I/O; a test drives them in a ``for`` loop):

* :class:`RollingCaption`: caption events in, the text to show out (the last ``lines`` wrapped
  lines of finals, rolled up, with the current partial continuing after them).
* :class:`Throttle`: items with explicit timestamps in, send decisions out; at most
  ``max_per_s`` sends a second, coalescing to the newest item, and the newest item is always
  sent eventually (a trailing send at :attr:`Throttle.due`).
* :func:`caption_chunks`: a final in, CEA-608 caption lines out (OBS keeps only 32 bytes of
  each ``SendStreamCaption`` and shows the next one at once, so a final is cut into pieces of at
  most 32 bytes at word boundaries, each with a hold time taken from the final's duration).

The shell, :class:`ObsSink`, owns the connection: it creates the text source in the current
program scene when it is missing, writes the throttled text with ``SetInputSettings``, sends
caption pieces with ``SendStreamCaption`` only while ``GetStreamStatus.outputActive`` is true
(pieces that arrive while OBS is not streaming are counted and dropped), and reconnects with
exponential backoff when OBS goes away. :meth:`ObsSink.publish` never blocks: it only updates the
wanted state, which the connection task sends when it can; after a reconnect the newest text is
written again, so no caption is lost by a restart of OBS. A wrong password puts the sink in the
``auth_failed`` state with one log line naming ``obs.password``.

Labelled captions (several inputs) show as ``LABEL: text`` in both the text source and the
CEA-608 captions. The text shown is :attr:`FinalCaption.text` (the transcript, or the original
language when ``asr.translate_keep_original`` is set), so that finals and partials agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import unicodedata
from collections import deque
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import simpleobsws
import websockets.exceptions

from ..config import ObsConfig
from ..events import Event, FinalCaption, PartialCaption

log = logging.getLogger(__name__)

T = TypeVar("T")

ObsState = Literal["disabled", "connecting", "connected", "auth_failed"]

#: OBS keeps at most this many bytes of one stream caption (``CAPTION_LINE_BYTES`` in libobs).
CAPTION_LINE_BYTES = 32

#: Text source kinds in order of preference (Linux/macOS FreeType 2, then Windows GDI+).
TEXT_INPUT_KINDS = (
    "text_ft2_source_v2",
    "text_gdiplus_v3",
    "text_gdiplus_v2",
    "text_gdiplus",
    "text_ft2_source",
)

# obs-websocket v5 codes used here (see its protocol.md).
_CLOSE_AUTHENTICATION_FAILED = 4009
_STATUS_RESOURCE_NOT_FOUND = 600
_STATUS_RESOURCE_ALREADY_EXISTS = 601
_ALIGN_BOTTOM = 8  # OBS_ALIGN_BOTTOM; horizontally centred


# --- pure cores ------------------------------------------------------------------------------


def caption_words(text: str) -> list[str]:
    """Split caption text into words, turning control and separator characters into spaces."""
    clean = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text
    )
    return clean.split()


def _split_long(word: str, width: int) -> list[str]:
    return [word[i : i + width] for i in range(0, len(word), width)]


def flow_words(lines: Iterable[str], words: Iterable[str], width: int) -> list[str]:
    """Continue ``lines`` with ``words``, wrapping at ``width`` characters (long words are cut)."""
    out = list(lines)
    for word in words:
        for piece in _split_long(word, width):
            if out and out[-1] and len(out[-1]) + 1 + len(piece) <= width:
                out[-1] = f"{out[-1]} {piece}"
            else:
                out.append(piece)
    return out


@dataclass(frozen=True)
class _Shown:
    """The current partial of one source: its (utterance, revision), label and words."""

    key: tuple[int, int]
    label: str | None
    words: list[str]


class RollingCaption:
    """Caption events in, the text to show out: roll-up of the finals plus the partial tails.

    Finals are wrapped into lines of at most ``max_line_chars`` characters and only the last
    ``lines`` lines are kept; the current partial continues on after them and the last ``lines``
    lines of the whole are shown. A partial of an utterance that already has its final, an older
    revision of the current partial and a repeated final are ignored.

    Labelled captions (several inputs: ``speaker`` or else ``source`` set) start a new line
    ``LABEL: text`` whenever the label differs from the line before (the same speaker goes on
    on the same line). Each source keeps its own current partial, so partials of two inputs
    show at once, one after the other in the order they began. Unlabelled captions are shown as
    they always were.
    """

    def __init__(self, lines: int = 2, max_line_chars: int = 42) -> None:
        if not 1 <= lines <= 100:
            raise ValueError(f"RollingCaption: lines must be 1..100, got {lines!r}")
        if not 1 <= max_line_chars <= 10000:
            raise ValueError(
                f"RollingCaption: max_line_chars must be 1..10000, got {max_line_chars!r}"
            )
        self.lines = lines
        self.max_line_chars = max_line_chars
        self._done: list[str] = []
        self._done_label: str | None = None  # the label the last line of _done speaks under
        self._partials: dict[str | None, _Shown] = {}  # by source (None: unlabelled)
        self._last_final_id: dict[str | None, int] = {}  # by source
        self._text = ""

    @property
    def text(self) -> str:
        """The text to show now (lines joined with ``\\n``; empty before any caption)."""
        return self._text

    def _flow(self, lines: list[str], last_label: str | None, label: str | None,
              words: list[str]) -> list[str]:
        if label is None or (lines and label == last_label):
            return flow_words(lines, words, self.max_line_chars)
        return lines + flow_words([], [f"{label}:", *words], self.max_line_chars)

    def feed(self, event: Event) -> str | None:
        """Take one event; return the new text when it changed, else ``None``."""
        if not isinstance(event, (FinalCaption, PartialCaption)):
            return None
        src = event.source
        if event.utterance_id == self._last_final_id.get(src):
            return None
        label = _event_label(event)
        if isinstance(event, FinalCaption):
            self._last_final_id[src] = event.utterance_id
            words = caption_words(event.text)
            if words:
                done = self._flow(self._done, self._done_label, label, words)
                self._done = done[-self.lines :]
                self._done_label = label
            shown = self._partials.get(src)
            if shown is not None and shown.key[0] == event.utterance_id:
                del self._partials[src]
        else:
            key = (event.utterance_id, event.revision)
            old = self._partials.get(src)
            if old is not None and key[0] == old.key[0] and key[1] < old.key[1]:
                return None
            self._partials[src] = _Shown(key, label, caption_words(event.text))
        return self._render()

    def clear(self) -> str | None:
        """Forget everything shown; return ``""`` when the text changed, else ``None``."""
        self._done, self._done_label, self._partials = [], None, {}
        return self._render()

    def _render(self) -> str | None:
        shown, last = list(self._done), self._done_label
        for p in self._partials.values():
            if p.words:
                shown, last = self._flow(shown, last, p.label, p.words), p.label
        text = "\n".join(shown[-self.lines :])
        if text == self._text:
            return None
        self._text = text
        return text


def _event_label(event: FinalCaption | PartialCaption) -> str | None:
    """Who spoke (``speaker``, else ``source``) as one clean line, ``None`` when unlabelled."""
    raw = event.speaker if event.speaker is not None else event.source
    return None if raw is None else (" ".join(caption_words(raw)) or None)


class Throttle(Generic[T]):
    """At most ``max_per_s`` sends a second, coalescing to the newest item; no clock inside.

    :meth:`offer` returns the item when it may be sent now, else keeps it as pending (replacing
    any older pending item) and returns ``None``; :attr:`due` says when :meth:`poll` will hand
    the pending item out. A timestamp earlier than the last send (a clock that went back)
    counts as a fresh start.
    """

    def __init__(self, max_per_s: float) -> None:
        if not (math.isfinite(max_per_s) and max_per_s > 0):
            raise ValueError(f"Throttle: max_per_s must be a positive number, got {max_per_s!r}")
        self.interval = 1.0 / max_per_s
        self._last: float | None = None
        self._pending: list[T] = []  # zero or one item (an item may itself be None-like)

    @staticmethod
    def _check(now: float) -> float:
        if not math.isfinite(now):
            raise ValueError(f"Throttle: timestamp must be a finite number, got {now!r}")
        return now

    def _may_send(self, now: float) -> bool:
        return self._last is None or now < self._last or now - self._last >= self.interval

    def offer(self, now: float, item: T) -> T | None:
        """Return ``item`` if it may go now; otherwise keep it as the pending item."""
        if self._may_send(self._check(now)):
            self._last = now
            self._pending.clear()
            return item
        self._pending[:] = [item]
        return None

    @property
    def pending(self) -> bool:
        """Whether an item waits for :attr:`due`."""
        return bool(self._pending)

    @property
    def due(self) -> float | None:
        """When the pending item may go (``None`` when nothing is pending)."""
        if not self._pending or self._last is None:
            return None
        return self._last + self.interval

    def poll(self, now: float) -> T | None:
        """Return the pending item if it is due at ``now`` (and count it as sent), else ``None``."""
        if self._pending and self._may_send(self._check(now)):
            self._last = now
            return self._pending.pop()
        return None


@dataclass(frozen=True)
class StreamCaption:
    """One CEA-608 caption line for ``SendStreamCaption`` and how long to keep it on screen."""

    text: str
    hold_s: float


def caption_chunks(
    final: FinalCaption,
    max_bytes: int = CAPTION_LINE_BYTES,
    min_hold_s: float = 1.0,
    max_hold_s: float = 4.0,
) -> list[StreamCaption]:
    """Cut a final into caption lines of at most ``max_bytes`` UTF-8 bytes at word boundaries.

    A labelled final (several inputs) starts with ``LABEL:`` (``speaker``, else ``source``).

    Each line is held for its share (by characters) of the final's duration, clamped to
    ``min_hold_s..max_hold_s``; a final with no usable duration reads at 15 characters a second.
    """
    pieces: list[str] = []
    words = caption_words(final.text)
    label = _event_label(final)
    if words and label is not None:
        words = [*caption_words(label + ":"), *words]
    for word in words:
        for part in _split_bytes(word, max_bytes):
            joined = f"{pieces[-1]} {part}" if pieces else part
            if pieces and len(joined.encode("utf-8")) <= max_bytes:
                pieces[-1] = joined
            else:
                pieces.append(part)
    if not pieces:
        return []
    total_chars = sum(len(p) for p in pieces)
    duration = final.end - final.start
    if not (math.isfinite(duration) and duration > 0):
        duration = total_chars / 15.0
    return [
        StreamCaption(p, min(max_hold_s, max(min_hold_s, duration * len(p) / total_chars)))
        for p in pieces
    ]


def _split_bytes(word: str, max_bytes: int) -> list[str]:
    """Cut ``word`` into parts of at most ``max_bytes`` UTF-8 bytes, never inside a character."""
    parts: list[str] = []
    cur = ""
    for ch in word:
        if cur and len((cur + ch).encode("utf-8")) > max_bytes:
            parts.append(cur)
            cur = ""
        cur += ch
    if cur:
        parts.append(cur)
    return parts


# --- the asyncio shell -------------------------------------------------------------------------


class _Dropped(Exception):
    """The connection to OBS closed (or stopped answering)."""


class _AuthFailed(Exception):
    """OBS rejected the password."""


@dataclass(frozen=True)
class ObsStats:
    """Counters of one :class:`ObsSink` (a snapshot)."""

    state: ObsState
    connects: int
    text_updates: int
    captions_sent: int
    captions_not_streaming: int
    captions_dropped: int
    last_error: str | None


class ObsSink:
    """Rolling caption text and CEA-608 stream captions into OBS over obs-websocket v5.

    A :class:`~streamcap.sinks.base.Sink`: ``start()`` returns at once (the connection is made,
    and remade, in the background); ``publish(event)`` is called from the event loop and never
    blocks (captions are used, other events ignored); ``stop(timeout)`` clears the text source
    (``clear_on_stop``) and closes the connection.
    """

    name = "obs"

    def __init__(
        self,
        cfg: ObsConfig,
        *,
        max_line_chars: int = 42,
        backoff_min_s: float = 0.25,
        backoff_max_s: float = 10.0,
        request_timeout_s: float = 5.0,
        caption_backlog: int = 32,
        clear_on_stop: bool = True,
    ) -> None:
        self._cfg = cfg
        host = f"[{cfg.host}]" if ":" in cfg.host and not cfg.host.startswith("[") else cfg.host
        self.url = f"ws://{host}:{cfg.port}"
        self._rolling = RollingCaption(lines=cfg.lines, max_line_chars=max_line_chars)
        self._throttle: Throttle[str] = Throttle(cfg.max_updates_per_s)
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._timeout = request_timeout_s
        self._clear_on_stop = clear_on_stop
        self._captions: deque[StreamCaption] = deque()
        self._caption_backlog = caption_backlog
        self._caption_ready_at = 0.0
        self._state: ObsState = "connecting" if cfg.enabled else "disabled"
        self._wanted = ""
        self._shown: str | None = None
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        self._stopping = False
        self._connects = 0
        self._text_updates = 0
        self._captions_sent = 0
        self._captions_not_streaming = 0
        self._captions_dropped = 0
        self._last_error: str | None = None
        self._text_ok = True

    # --- public surface ---

    @property
    def state(self) -> ObsState:
        """``connected``, ``connecting``, ``auth_failed``, or ``disabled`` (off or stopped)."""
        return self._state

    @property
    def text(self) -> str:
        """The caption text OBS should show now (after throttling)."""
        return self._wanted

    @property
    def stats(self) -> ObsStats:
        """A snapshot of the counters, for the daemon's status and metrics."""
        return ObsStats(
            state=self._state,
            connects=self._connects,
            text_updates=self._text_updates,
            captions_sent=self._captions_sent,
            captions_not_streaming=self._captions_not_streaming,
            captions_dropped=self._captions_dropped,
            last_error=self._last_error,
        )

    async def start(self) -> None:
        """Start connecting in the background (no-op when ``obs.enabled`` is false)."""
        if not self._cfg.enabled or self._task is not None:
            return
        self._stopping = False
        self._state = "connecting"
        self._task = asyncio.get_running_loop().create_task(self._run(), name="obs-sink")

    async def wait_connected(self, timeout: float) -> bool:
        """Wait until the sink is connected; ``False`` when ``timeout`` seconds pass first."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def publish(self, event: Event) -> None:
        """Take a pipeline event (captions are used, the rest ignored); never blocks."""
        if not self._cfg.enabled or self._stopping:
            return
        if not isinstance(event, (PartialCaption, FinalCaption)):
            return
        text = self._rolling.feed(event)
        if text is not None:
            loop = asyncio.get_running_loop()
            out = self._throttle.offer(loop.time(), text)
            if out is not None:
                self._want(out)
            self._arm_timer()
        if isinstance(event, FinalCaption) and self._cfg.stream_captions:
            for piece in caption_chunks(event):
                if len(self._captions) >= self._caption_backlog:
                    self._captions.popleft()
                    self._captions_dropped += 1
                self._captions.append(piece)
            self._wake.set()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop: clear the caption in OBS (when connected) and close the connection, within
        ``timeout`` seconds (past it the connection is dropped without clearing the text)."""
        self._stopping = True
        try:
            await asyncio.wait_for(self._shut(), timeout)
        except asyncio.TimeoutError:
            log.warning("OBS: not closed within %g s; dropping the connection", timeout)
            self._client = None
        self._connected.clear()
        self._state = "disabled"

    async def _shut(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            if self._clear_on_stop and client.identified:
                with contextlib.suppress(Exception):
                    await self._call(client, "SetInputSettings", self._text_request(""))
            await self._close(client)

    # --- throttled text ---

    def _want(self, text: str) -> None:
        self._wanted = text
        self._wake.set()

    def _arm_timer(self) -> None:
        due = self._throttle.due
        if due is None or self._timer is not None:
            return
        self._timer = asyncio.get_running_loop().call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        out = self._throttle.poll(asyncio.get_running_loop().time())
        if out is not None:
            self._want(out)
        self._arm_timer()  # the loop may wake a hair early: then the item is still pending

    # --- connection task ---

    async def _run(self) -> None:
        delay = self._backoff_min_s
        failures = 0
        while True:
            client = None
            try:
                client = await self._open()
                self._client = client
                self._shown = None  # write the newest text again after every (re)connect
                await self._prepare(client)
                delay, failures = self._backoff_min_s, 0
                self._state = "connected"
                self._connects += 1
                self._last_error = None
                self._connected.set()
                log.info("obs: connected to %s", self.url)
                await self._serve(client)
            except _AuthFailed as exc:
                self._fail("auth_failed", str(exc), failures, logging.ERROR)
                delay = self._backoff_max_s
                failures += 1
            except _Dropped as exc:
                self._fail("connecting", f"obs: lost the connection to OBS ({exc}); reconnecting",
                           failures, logging.WARNING)
                failures += 1
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as exc:
                self._fail(
                    "connecting",
                    f"obs: cannot reach OBS at {self.url} ({_describe(exc)}); retrying",
                    failures, logging.WARNING,
                )
                failures += 1
            except Exception as exc:  # keep the pipeline alive whatever simpleobsws raises
                self._fail("connecting", f"obs: unexpected error ({_describe(exc)}); reconnecting",
                           failures, logging.ERROR)
                failures += 1
            self._connected.clear()
            if client is not None:
                await self._close(client)
            self._client = None
            await asyncio.sleep(delay)
            delay = min(self._backoff_max_s, delay * 2)

    def _fail(self, state: ObsState, message: str, failures: int, level: int) -> None:
        """Record a failure; log it once per streak of equal failures (later ones at debug)."""
        repeat = failures > 0 and message == self._last_error
        self._state = state
        self._last_error = message
        log.log(logging.DEBUG if repeat else level, "%s", message)

    async def _open(self) -> Any:
        client = simpleobsws.WebSocketClient(
            url=self.url,
            password=self._cfg.password or "",
            identification_parameters=simpleobsws.IdentificationParameters(eventSubscriptions=0),
        )
        try:
            await asyncio.wait_for(client.connect(), self._timeout)
            ident = asyncio.ensure_future(client.wait_until_identified(self._timeout))
            await asyncio.wait({ident, client.recv_task}, return_when=asyncio.FIRST_COMPLETED)
            ident.cancel()
            if client.identified:
                return client
            ws = client.ws
            code = getattr(ws, "close_code", None) if ws is not None else None
            if code == _CLOSE_AUTHENTICATION_FAILED:
                if not self._cfg.password:
                    raise _AuthFailed(
                        "obs.password: OBS requires a password but obs.password is not set "
                        "(see OBS: Tools > WebSocket Server Settings)"
                    )
                raise _AuthFailed(
                    "obs.password: OBS rejected the password (obs-websocket authentication "
                    "failed); check obs.password against OBS: Tools > WebSocket Server Settings"
                )
            reason = getattr(ws, "close_reason", None) if ws is not None else None
            if code is None:
                raise _Dropped("no Identified reply from obs-websocket")
            raise _Dropped(f"closed during identification, code {code} {reason or ''}".strip())
        except BaseException:
            await self._close(client)
            raise

    async def _close(self, client: Any) -> None:
        task = client.recv_task
        if task is not None and task.done() and not task.cancelled():
            task.exception()  # retrieved, so asyncio does not complain later
        if client.ws is not None and client.recv_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 2.0)

    async def _guard(self, client: Any, aw: Awaitable[T]) -> T:
        """Await ``aw`` unless the connection drops first (then :class:`_Dropped`)."""
        recv = client.recv_task
        work = asyncio.ensure_future(aw)
        if recv is None or recv.done():
            work.cancel()
            raise _Dropped("connection closed")
        try:
            await asyncio.wait({work, recv}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            work.cancel()
            raise
        if not work.done():
            work.cancel()
            raise _Dropped("connection closed")
        try:
            return work.result()
        except (websockets.exceptions.ConnectionClosed, simpleobsws.NotIdentifiedError) as exc:
            raise _Dropped("connection closed") from exc
        except simpleobsws.MessageTimeout as exc:
            raise _Dropped(f"no answer within {self._timeout:g} s") from exc

    async def _call(self, client: Any, request: str, data: dict[str, Any] | None = None) -> Any:
        return await self._guard(
            client, client.call(simpleobsws.Request(request, data), timeout=self._timeout)
        )

    def _text_request(self, text: str) -> dict[str, Any]:
        return {"inputName": self._cfg.text_source, "inputSettings": {"text": text},
                "overlay": True}

    async def _prepare(self, client: Any) -> None:
        """Find the text source, or create it in the current program scene."""
        name = self._cfg.text_source
        res = await self._call(client, "GetInputSettings", {"inputName": name})
        if res.ok():
            kind = (res.responseData or {}).get("inputKind", "")
            if kind not in TEXT_INPUT_KINDS:
                log.warning("obs.text_source: input %r is a %r, not a text source; its 'text' "
                            "setting is written anyway", name, kind)
            self._text_ok = True
            return
        if res.requestStatus.code != _STATUS_RESOURCE_NOT_FOUND:
            raise _Dropped(f"GetInputSettings failed: {_status(res)}")
        kinds = (await self._call(client, "GetInputKindList")).responseData or {}
        available = kinds.get("inputKinds", [])
        kind = next((k for k in TEXT_INPUT_KINDS if k in available), None)
        if kind is None:
            self._text_ok = False
            log.error("obs.text_source: this OBS offers no text source kind (%s); only stream "
                      "captions are sent", ", ".join(available) or "none")
            return
        scene_res = await self._call(client, "GetCurrentProgramScene")
        scene = (scene_res.responseData or {}).get("currentProgramSceneName")
        video = (await self._call(client, "GetVideoSettings")).responseData or {}
        width = int(video.get("baseWidth", 1920))
        height = int(video.get("baseHeight", 1080))
        size = max(12, height // 16)
        settings = {"text": self._wanted, "outline": True,
                    "font": {"face": "Sans Serif", "size": size, "style": "Regular", "flags": 0}}
        res = await self._call(client, "CreateInput", {
            "sceneName": scene, "inputName": name, "inputKind": kind,
            "inputSettings": settings, "sceneItemEnabled": True,
        })
        if not res.ok():
            if res.requestStatus.code == _STATUS_RESOURCE_ALREADY_EXISTS:
                return
            raise _Dropped(f"CreateInput failed: {_status(res)}")
        self._text_ok = True
        self._shown = self._wanted
        log.info("obs: created text source %r (%s) in scene %r", name, kind, scene)
        item = (res.responseData or {}).get("sceneItemId")
        if item is not None:
            res = await self._call(client, "SetSceneItemTransform", {
                "sceneName": scene, "sceneItemId": item,
                "sceneItemTransform": {"alignment": _ALIGN_BOTTOM, "positionX": width / 2,
                                       "positionY": height - size},
            })
            if not res.ok():
                log.warning("obs: could not place the text source: %s", _status(res))

    async def _serve(self, client: Any) -> None:
        """Send the wanted text and the caption lines until the connection drops."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if self._text_ok and self._wanted != self._shown:
                await self._send_text(client, self._wanted)
            now = loop.time()
            if self._captions and now >= self._caption_ready_at:
                await self._send_caption(client, self._captions.popleft(), now)
                continue
            timeout = self._caption_ready_at - now if self._captions else None
            with contextlib.suppress(asyncio.TimeoutError):
                await self._guard(client, asyncio.wait_for(self._wake.wait(), timeout))

    async def _send_text(self, client: Any, text: str) -> None:
        res = await self._call(client, "SetInputSettings", self._text_request(text))
        if not res.ok() and res.requestStatus.code == _STATUS_RESOURCE_NOT_FOUND:
            log.warning("obs: text source %r went away; creating it again", self._cfg.text_source)
            await self._prepare(client)
            res = await self._call(client, "SetInputSettings", self._text_request(text))
        if res.ok():
            self._shown = text
            self._text_updates += 1
        else:
            self._shown = text  # do not retry in a loop; the next caption tries again
            log.warning("obs: SetInputSettings failed: %s", _status(res))

    async def _send_caption(self, client: Any, piece: StreamCaption, now: float) -> None:
        status = await self._call(client, "GetStreamStatus")
        if not (status.ok() and (status.responseData or {}).get("outputActive")):
            # Captions are live or useless: drop this piece and the ones queued behind it.
            self._captions_not_streaming += 1 + len(self._captions)
            self._captions.clear()
            return
        res = await self._call(client, "SendStreamCaption", {"captionText": piece.text})
        if res.ok():
            self._captions_sent += 1
            self._caption_ready_at = now + piece.hold_s
        else:
            self._captions_not_streaming += 1
            log.debug("obs: SendStreamCaption failed: %s", _status(res))


def _status(res: Any) -> str:
    st = res.requestStatus
    return f"code {st.code}" + (f" ({st.comment})" if st.comment else "")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
