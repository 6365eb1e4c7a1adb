"""Per request: an ID, the log context, and one access line without the query.

The request ID is the client's `X-Request-ID` when it is a sane token that
holds nothing a log line would scrub (it is logged as it is), else a new one:
this process's random prefix and a counter, 16 hex digits, unique across
instances as far as 32 random bits go and within a process always; it is bound to every log line the request causes (its order's
placement task included) and returned in the reply's `X-Request-ID` header.
The access line names the method, the path (never the query string: GET
clients put their API key there), the status, the time taken and, once the
endpoint knows them, the client and the action.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy import logs
from proxy.edge.inputs import Headers

# The access log keeps a name of its own, as uvicorn.access does: operators filter on it.
log = logging.getLogger("proxy.access")

_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class _Ids:
    """Request IDs: 8 random hex digits for this process (a new prefix when the
    counter wraps), then the counter, 8 hex digits."""

    def __init__(self) -> None:
        self._renew()

    def _renew(self) -> None:
        self.prefix = secrets.token_hex(4)
        self.counter = itertools.count(1)

    def __call__(self) -> str:
        n = next(self.counter)
        if n > 0xFFFFFFFF:
            self._renew()
            n = next(self.counter)
        return f"{self.prefix}{n:08x}"


new_id = _Ids()


def request_id(given: bytes | None) -> str:
    if given:
        text = given.decode("latin-1")
        if _SANE_ID.fullmatch(text) and logs.clean(text):
            return text
    return new_id()


class Context:
    """One request's context: its ID, bound to every line it causes (its
    `X-Request-ID` reply header ready to send), and its access line, written
    by `close` with the status set meanwhile (500 unless one was)."""

    __slots__ = ("method", "path", "started", "status", "id_header")

    def __init__(self, scope: Scope, given_id: bytes | None) -> None:
        rid = request_id(given_id)
        logs.clear(request_id=rid)
        self.id_header = (b"x-request-id", rid.encode())
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.status = 500
        self.started = time.perf_counter()

    def close(self) -> None:
        logs.info(
            log,
            f"{self.method} {self.path} {self.status}",
            {
                "status": self.status,
                "ms": round((time.perf_counter() - self.started) * 1000, 2),
                "method": self.method,
                "path": self.path,
            },
        )


class RequestContext:
    """ASGI middleware: every HTTP request in its `Context`, every reply with its ID."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context = Context(scope, Headers(scope).last(b"x-request-id"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                context.status = message["status"]
                message["headers"] = [*message.get("headers", []), context.id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            context.close()
