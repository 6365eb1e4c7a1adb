"""Logs: one JSON object a line in production, readable lines in a terminal.

It sits at the bottom, beside `store` and `money`, so the domain can bind
context and log without importing `proxy.ops`. Every module logs through the
standard `logging` module, to `logging.getLogger(__name__)`; `configure` routes
all of it (ours, uvicorn's, httpx's) through one handler, which adds the
time, the level, the logger's name and whatever the request or task has bound
with `bind` (request ID, client, action, order, provider), and writes JSON
(orjson) or, on a terminal, structlog's console lines.

Nothing logged may hold a key: query strings are never logged (the access
line has the path only), httpx's own request lines are silenced (they carry
a GET provider's key in the URL), and every line is scrubbed of every
configured provider key, every `key=` parameter and anything shaped like one
of our API keys (a run of 32 or more hex digits) or admin tokens (a run of 43
or more URL-safe characters), however deep it sits in a field (dicts, lists and tuples of
an `extra` included).

A line in microseconds
----------------------
A request writes at least one line (the access line), so the JSON path is
one pass: the record's fields, the bound context (one dict in one context
variable), a timestamp rebuilt once a second, orjson. Scrubbing decides by
field once, not by scanning every value: numbers, booleans and None cannot
hold a key, nor can the fields in `SAFE_FIELDS` when they hold text (names
we made or checked: a client's, an action, a request ID the edge checked,
...); every other text is scanned (the same short texts, such as the access
line's path and message, from a bounded memo), and nested values are
scrubbed all the way down. Where a record was logged from is not looked up
(`logging._srcfile`, as the logging docs' "Optimization" section shows), nor
its thread or process names: no line shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Protocol

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from proxy.redaction import SAFE_FIELDS, Scrubber

__all__ = [
    "SAFE_FIELDS",
    "Emit",
    "add_secrets",
    "bind",
    "bound",
    "clean",
    "clear",
    "configure",
    "current",
    "info",
    "no_events",
    "redactor",
    "unconfigure",
]

# -- the context bound to a request or task ------------------------------------

# One immutable dict per context: binding copies it (a task started later keeps
# what was bound when it started, as with contextvars anywhere).
_CONTEXT: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "smm_proxy_log_context", default=MappingProxyType({})
)


def bind(**values: object) -> None:
    """Bind fields to every line the current request or task writes from now on."""
    _CONTEXT.set({**_CONTEXT.get(), **values})


def clear(**values: object) -> None:
    """Forget what was bound (a new request); bind `values` alone."""
    _CONTEXT.set(values)


@contextlib.contextmanager
def bound(**values: object) -> Iterator[None]:
    """Bind fields for the block only."""
    token = _CONTEXT.set({**_CONTEXT.get(), **values})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current(name: str) -> str:
    """A value bound to the current request or task ("" if none): its request ID, say."""
    value = _CONTEXT.get().get(name)
    return "" if value is None else str(value)


_scrubber = Scrubber()


def clean(text: str) -> bool:
    """Whether `text` holds nothing a line would scrub (a request ID a client sent, say)."""
    return _scrubber.text(text) == text


def redactor(secrets: Iterable[str] = ()) -> Processor:
    """A structlog processor that scrubs keys from every field of an event."""
    scrubber = Scrubber(secrets)

    def redact(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        return scrubber.fields(event)

    return redact


# -- lines -------------------------------------------------------------------------


# The most lines a turn of the loop holds before they are written anyway.
QUEUED_LINES = 256
# A line as `info` queues it, rendered when written: the message, its fields
# (a dict of its own, of values that do not change), the logger's name, the
# level, the time, and the context bound then (`bind` replaces, never changes, it).
Pending = tuple[str, Mapping[str, Any], str, str, float, Mapping[str, Any]]


class _Handler(logging.StreamHandler[Any]):
    """Ours: configuring again replaces it, and leaves others' handlers alone.

    Lines written through `info` (the access line, an order's transitions:
    several a request) are queued and written together once the event loop's
    current turn of callbacks has run: one write a turn instead of a write
    (a system call) a line. They are queued as what makes them (`Pending`)
    and rendered then, one after another, where they cost less than each
    between two requests' work (docs/benchmarks.md, issue 17). Every other
    line, a flush and closing write what is queued first, so lines stay in
    order; outside an event loop a line is written at once."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._queued: list[Pending] = []
        # The loop whose turn writes what is queued: another loop (this one closed
        # with the flush still due, or a thread's own) asks its own turn too.
        self._flushing: asyncio.AbstractEventLoop | None = None

    def queue(self, line: Pending) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self.acquire()
        try:
            if loop is None:
                self._queued.append(line)
                self.flush()
                return
            if not self._queued or self._flushing is not loop:
                loop.call_soon(self.flush)
                self._flushing = loop
            self._queued.append(line)
            if len(self._queued) >= QUEUED_LINES:  # a turn that logs on and on: written as it goes
                self.flush()
        finally:
            self.release()

    def _write_queued(self) -> None:
        if self._queued:
            queued, self._queued = self._queued, []
            self._flushing = None  # nothing queued: no loop kept
            formatter = self.formatter
            assert isinstance(formatter, JsonFormatter)
            lines = [formatter.render(pending) for pending in queued]
            lines.append("")
            self.stream.write("\n".join(lines))

    def emit(self, record: logging.LogRecord) -> None:
        self.flush()  # the lines queued before this one
        super().emit(record)

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_queued()
            super().flush()
        except (OSError, ValueError):  # a closed or broken stream: as logging itself, never raise from a log line
            self._queued.clear()
        finally:
            self.release()


# What a LogRecord holds of its own; everything else on it came from `extra`.
_RECORD_FIELDS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "color_message", "taskName", "stack_info"}
)


class _Clock:
    """ISO-8601 UTC timestamps, the date and time part rebuilt once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((created - second) * 1_000_000):06d}Z"


def _default(value: object) -> str:
    return str(value)


def _plain_value(value: object) -> object:
    """A scrubbed value as JSON surely writes it: text, unless it is a short number or None."""
    if value is None or isinstance(value, bool | float) or (isinstance(value, int) and abs(value) < 2**63):
        return value
    return _default(value)


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: event, logger, level, timestamp, the bound
    context, the record's extra fields (and `exception`), scrubbed."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.scrubber = Scrubber(secrets)
        self.clock = _Clock()

    def format(self, record: logging.LogRecord) -> str:
        fields = {name: value for name, value in record.__dict__.items() if name not in _RECORD_FIELDS}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return self.line(record.getMessage(), fields, record.name, record.levelname.lower(), record.created)

    def line(self, message: str, fields: Mapping[str, Any], logger: str, level: str, created: float) -> str:
        return self.render((message, fields, logger, level, created, _CONTEXT.get()))

    def render(self, pending: Pending) -> str:
        message, fields, logger, level, created, context = pending
        event: dict[str, Any] = {"event": message}
        event.update(context)
        event.update(fields)
        event["logger"] = logger
        event["level"] = level
        event["timestamp"] = self.clock(created)
        try:
            return orjson.dumps(self.scrubber.fields(event), default=_default).decode()
        except TypeError:  # what orjson cannot write (an integer past 64 bits): as text
            return orjson.dumps({name: _plain_value(value) for name, value in event.items()}).decode()


# Our handler while it writes JSON (`configure`): `info` writes to it directly.
_json_handler: _Handler | None = None
# What `configure` was last given (format, level, secrets, stream): `add_secrets` makes it again.
_configured: tuple[str, str, list[str], Any] | None = None


def info(logger: logging.Logger, message: str, fields: Mapping[str, Any]) -> None:
    """An INFO line (the access line: one a request). Written straight to our
    JSON handler when it is the only one listening, as in a served router: the
    same line, without a LogRecord and the handler chain. Otherwise (a
    terminal, a test capturing records) through `logging`, as any line.

    The JSON line is rendered when the turn's write comes (`Pending`), from
    `fields` itself: they are the caller's own, and do not change after the
    call (a dict made for it, as every caller makes one), or the line shows
    what they became."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _json_handler
    handlers = logging.root.handlers
    if handler is None or len(handlers) != 1 or handlers[0] is not handler or logger.handlers or not logger.propagate:
        logger.info(message, extra=dict(fields))
        return
    handler.queue((message, fields, logger.name, "info", time.time(), _CONTEXT.get()))


def _context(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    for name, value in _CONTEXT.get().items():
        event.setdefault(name, value)
    return event


def _drop_noise(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)  # uvicorn's duplicate of the message, with ANSI codes
    return event


def _console(secrets: Iterable[str]) -> logging.Formatter:
    """structlog's readable lines, for a terminal."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            _context,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.stdlib.ExtraAdder(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_noise,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redactor(secrets),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
    )


def configure(fmt: str = "auto", level: str = "info", secrets: Iterable[str] = (), stream: Any = None) -> None:
    """Route every logger through one handler; `fmt` is "json", "console" or
    "auto" (console on a terminal, JSON otherwise)."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    secrets = list(secrets)
    global _configured
    _configured = (fmt, level, secrets, stream)
    global _scrubber
    _scrubber = Scrubber(secrets)  # `clean` checks against the same words
    # Nothing shows where a line was logged from, or its thread or process: not looked up.
    setattr(logging, "_srcfile", None)  # noqa: B010
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    global _json_handler
    handler = _Handler(stream)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else _console(secrets))
    _json_handler = handler if fmt == "json" else None
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _Handler):
            old.flush()  # what it still queues goes out first
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our access line has no query string
    for name in ("httpx", "httpcore", "hpack"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("multipart", "python_multipart"):  # a client's broken form is its business, not a warning
        logging.getLogger(name).setLevel(logging.ERROR)


class _Captured(io.StringIO):
    """A buffer of captured lines: what our handler writing to it still queues
    is in it when read (whichever handler that is by then: `add_secrets`
    makes a new one)."""

    def getvalue(self) -> str:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, _Handler) and handler.stream is self:
                handler.flush()
        return super().getvalue()


@contextlib.contextmanager
def captured(level: str = "debug", secrets: Iterable[str] = ()) -> Iterator[Any]:
    """Configure JSON logs into a buffer (tests grep what would be written)."""
    buffer = _Captured()
    configure("json", level, secrets, stream=buffer)
    try:
        yield buffer
    finally:
        unconfigure()


def add_secrets(secrets: Iterable[str]) -> None:
    """More values no line may hold from now on (a provider key a config reload
    brought): our handler is made again, knowing them too. Nothing if logs
    are not configured (by `configure`)."""
    if _configured is None:
        return
    fmt, level, known, stream = _configured
    new = [s for s in dict.fromkeys(secrets) if s and s not in known]
    if new:
        configure(fmt, level, [*known, *new], stream)


def unconfigure() -> None:
    """Remove our handler (a command that configured logs for its own run, done)."""
    global _json_handler, _configured
    _json_handler = None
    _configured = None
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Handler):
            handler.flush()
            root.removeHandler(handler)


class Emit(Protocol):
    """Tells operators of something that happened (`proxy.ops.events` writes
    it to the event stream): a kind such as "provider.ejected", what it is
    about (a provider, an order), one line, and details. Best effort: it
    never raises, so the domain calls it without a second thought."""

    async def __call__(self, kind: str, subject: str, message: str, **detail: object) -> None: ...


async def no_events(kind: str, subject: str, message: str, **detail: object) -> None:
    """An `Emit` that tells nobody (components built without an event stream)."""
