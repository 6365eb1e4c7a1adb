"""Logs: one JSON object a line in production, readable lines in a terminal.

It sits at the bottom, beside `store` and `money`, so the domain can bind
context and log without importing `proxy.ops`. Every module logs through the
standard `logging` module, to `logging.getLogger(__name__)`; `configure` routes
all of it (ours, uvicorn's, httpx's) through structlog's formatter, which
adds the time, the level and whatever the request or task has bound with
`bind` (request ID, client, action, order, provider), and renders JSON or
console lines.

Nothing logged may hold a key: query strings are never logged (the access
line has the path only), httpx's own request lines are silenced (they carry
a GET provider's key in the URL), and a last processor scrubs every
configured provider key, every `key=` parameter and anything shaped like one
of our API keys from every line, however deep it sits in a field (dicts,
lists and tuples of an `extra` included).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import orjson
import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, clear_contextvars, get_contextvars
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["Emit", "bind", "bound", "clear", "configure", "current", "no_events", "redactor", "unconfigure"]

bind = bind_contextvars
bound = bound_contextvars
clear = clear_contextvars


def current(name: str) -> str:
    """A value bound to the current request or task ("" if none): its request ID, say."""
    value = get_contextvars().get(name)
    return "" if value is None else str(value)


_KEY_PARAMETER = re.compile(r"(?i)\b(key|api_key|apikey|token)=([^&\s'\"]+)")
_API_KEY_SHAPED = re.compile(r"\b[0-9a-f]{32}\b")
REDACTED = "***"


def redactor(secrets: Iterable[str] = ()) -> Processor:
    """A processor that scrubs keys from every string value of an event."""
    words = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
    # One pass: a known secret, a key= parameter's value, or an API-key-shaped token.
    pattern = re.compile(
        "|".join([*(re.escape(w) for w in words), _KEY_PARAMETER.pattern.replace("(?i)", ""), _API_KEY_SHAPED.pattern]),
        re.IGNORECASE,
    )

    def replace(match: re.Match[str]) -> str:
        return f"{match.group(1)}={REDACTED}" if match.group(1) else REDACTED

    def scrub(text: str) -> str:
        return pattern.sub(replace, text)

    def deep(value: Any, depth: int = 0) -> Any:
        """Strings scrubbed however deep they sit in dicts, lists, tuples and sets."""
        if isinstance(value, str):
            return scrub(value)
        if depth > 20:  # a structure this deep is not worth logging as it is
            return REDACTED
        if isinstance(value, dict):
            return {scrub(str(k)): deep(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [deep(v, depth + 1) for v in value]
        if isinstance(value, bytes | bytearray):
            return scrub(bytes(value).decode("utf-8", "replace"))
        if value is None or isinstance(value, int | float | bool):
            return value
        return scrub(str(value))  # what the renderer would print of it (an exception, a URL ...)

    def redact(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        for name, value in event.items():
            if not isinstance(value, int | float | bool | type(None)):
                event[name] = deep(value)
        return event

    return redact


def _json(event: EventDict, **options: Any) -> str:
    """orjson: a log line is written for every request."""
    return orjson.dumps(event, default=str).decode()


def _drop_noise(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)  # uvicorn's duplicate of the message, with ANSI codes
    return event


class _Handler(logging.StreamHandler[Any]):
    """Ours: configuring again replaces it, and leaves others' handlers alone."""


def configure(fmt: str = "auto", level: str = "info", secrets: Iterable[str] = (), stream: Any = None) -> None:
    """Route every logger through one handler; `fmt` is "json", "console" or
    "auto" (console on a terminal, JSON otherwise)."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_noise,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_json)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redactor(secrets),
            renderer,
        ],
    )
    handler = _Handler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _Handler):
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
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


@contextlib.contextmanager
def captured(level: str = "debug", secrets: Iterable[str] = ()) -> Iterator[Any]:
    """Configure JSON logs into a buffer (tests grep what would be written)."""
    import io

    buffer = io.StringIO()
    configure("json", level, secrets, stream=buffer)
    try:
        yield buffer
    finally:
        unconfigure()


def unconfigure() -> None:
    """Remove our handler (a command that configured logs for its own run, done)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Handler):
            root.removeHandler(handler)


class Emit(Protocol):
    """Tells operators of something that happened (`proxy.ops.events` writes
    it to the event stream): a kind such as "provider.ejected", what it is
    about (a provider, an order), one line, and details. Best effort: it
    never raises, so the domain calls it without a second thought."""

    async def __call__(self, kind: str, subject: str, message: str, **detail: object) -> None: ...


async def no_events(kind: str, subject: str, message: str, **detail: object) -> None:
    """An `Emit` that tells nobody (components built without an event stream)."""
