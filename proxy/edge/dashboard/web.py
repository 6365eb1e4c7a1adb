"""What every dashboard page and form goes through: the login check, the
acting operator, the guard on forms, the templates, and answers that never
are a traceback.

A page (`Dashboard.page`) needs a live session, else it sends the browser
to the login page; it only reads. A form (`Dashboard.form`) is a POST: it is
refused before anything reads it if it comes from another site or lacks the
session's CSRF token (`sessions.forged`), and read only as a small urlencoded
form of clean text (`proxy.edge.inputs.clean`). What an operator function
refuses (a bad amount, a role that may not, an order in another state)
becomes a message on the page the form came from; nothing has changed then.
A store that is down is a 503 page. Every answer carries headers that keep
it out of caches, out of frames and away from any script but our own.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from redis.exceptions import RedisError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from proxy import logs
from proxy.edge.admin import source_of
from proxy.edge.dashboard.sessions import (
    PATH,
    Session,
    Sessions,
    clear_cookie,
    flash_name,
    forged,
    read_flash,
    set_flash,
)
from proxy.edge.inputs import clean
from proxy.errors import BadInput, Forbidden, Invalid, NotFound, OperatorError
from proxy.ops.operators import Operators
from proxy.ops.roles import Actor, may

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MAX_FORM_BYTES = 16 * 1024
OUTAGE_LOG_SECONDS = 10.0
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@dataclass
class View:
    """One request to a page or a form: the operator, acting through `ops`."""

    request: Request
    session: Session
    actor: Actor
    ops: Operators
    form: dict[str, str] = field(default_factory=dict)
    flash: tuple[str, str] = ("", "")  # what the last form did: its message and kind

    def can(self, action: str) -> bool:
        return may(self.session.role, action)


Handler = Callable[[View], Awaitable[Response]]


class Refused(Exception):
    """A page that cannot be shown as asked: a message, with its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def status_of(exc: Exception) -> int:
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, BadInput | Invalid):
        return 400
    return 409


class Dashboard:
    def __init__(self, ops: Operators, sessions: Sessions, currency: Callable[[], str]) -> None:
        self.ops = ops
        self.sessions = sessions
        self.currency = currency
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
        )
        self.templates = Jinja2Templates(env=env)
        self._outage_logged = -OUTAGE_LOG_SECONDS

    # -- answers ---------------------------------------------------------------

    def render(self, view: View | None, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        session = view.session if view else None
        base = {
            "session": session,
            "can": view.can if view else (lambda action: False),
            "currency": self.currency(),
            "root": PATH,
            "flash": view.flash[0] if view else "",
            "flash_kind": view.flash[1] if view else "",
            "refresh": 0,
            "nav": "",
            "once": lambda: secrets.token_urlsafe(16),  # a money form's one-time key (`forms._reference`)
        }
        response = self.templates.TemplateResponse(request, name, {**base, **context}, status_code=status)
        response.headers.update(HEADERS)
        return response

    def message(self, view: View | None, request: Request, text: str, status: int, back: str = PATH) -> Response:
        return self.render(view, request, "message.html", status, text=text, back=back, title="Refused")

    def outage(self, request: Request, exc: BaseException) -> Response:
        now = time.monotonic()
        if now - self._outage_logged >= OUTAGE_LOG_SECONDS:
            self._outage_logged = now
            log.warning("dashboard: store unavailable, answering 503: %s: %s", type(exc).__name__, exc)
        return self.message(None, request, "The store is unavailable: try again in a moment.", 503)

    def failure(self, request: Request) -> Response:
        """Something we did not expect: logged with its traceback, answered without one."""
        log.exception("dashboard: unexpected error answering %s %s", request.method, request.url.path)
        response = Response("Internal error: the operators' log has the details.", 500, media_type="text/plain")
        response.headers.update(HEADERS)
        return response

    def done(self, view: View, message: str, url: str, kind: str = "ok") -> Response:
        """A form's answer: to `url`, which says `message` once."""
        response = self.redirect(url)
        set_flash(response, view.request, view.session, message, kind)
        return response

    @staticmethod
    def redirect(url: str) -> Response:
        response = RedirectResponse(url, status_code=303)
        response.headers.update(HEADERS)
        return response

    # -- the two kinds of endpoint ---------------------------------------------------

    def _actor(self, request: Request, session: Session) -> Actor:
        source = f"{source_of(request)} (dashboard)"
        return Actor(f"admin:{session.admin}", session.role, source, logs.current("request_id"))

    def page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A page that reads (GET, HEAD) for a logged-in operator."""

        async def endpoint(request: Request) -> Response:
            try:
                session = await self.sessions.find(request)
                if session is None:
                    return self.redirect(f"{PATH}/login")
                logs.bind(actor=f"admin:{session.admin}")
                view = View(request, session, self._actor(request, session), self.ops)
                view.flash = read_flash(request, session)
                try:
                    response = await handler(view)
                except Refused as exc:
                    response = self.message(view, request, exc.message, exc.status)
                except (BadInput, OperatorError) as exc:
                    response = self.message(view, request, str(exc), status_of(exc))
                if flash_name(request) in request.cookies:  # shown: the browser forgets it
                    clear_cookie(response, request, flash_name(request))
                return response
            except (RedisError, OSError) as exc:
                return self.outage(request, exc)
            except Exception:
                return self.failure(request)

        return endpoint

    def form(self, handler: Handler, back: Callable[[Request], str]) -> Callable[[Request], Awaitable[Response]]:
        """A form (POST) that acts: guarded, read, then handed to `handler`;
        a refusal is a message on the `back` page."""

        async def endpoint(request: Request) -> Response:
            try:
                session = await self.sessions.find(request)
                if session is None:
                    why = forged(request, None, None)
                    if why:
                        return self.message(None, request, f"Refused: {why}. Nothing was changed.", 403)
                    return self.redirect(f"{PATH}/login")
                view = View(request, session, self._actor(request, session), self.ops)
                try:
                    view.form = await read_form(request)
                except BadInput as exc:
                    return self.message(view, request, f"{exc.message}. Nothing was changed.", 400, back(request))
                why = forged(request, view.form.get("csrf"), session)
                if why:
                    log.warning("dashboard: %s refused for %s: %s", request.url.path, session.admin, why)
                    return self.message(view, request, f"Refused: {why}. Nothing was changed.", 403, back(request))
                logs.bind(actor=view.actor.name)
                try:
                    return await handler(view)
                except Refused as exc:
                    return self.done(view, exc.message, back(request), "error")
                except (BadInput, OperatorError) as exc:
                    return self.done(view, f"{exc}. Nothing was changed.", back(request), "error")
            except (RedisError, OSError) as exc:
                return self.outage(request, exc)
            except Exception:
                return self.failure(request)

        return endpoint


async def read_form(request: Request) -> dict[str, str]:
    """A small urlencoded form of clean text (no files, nothing else)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadInput("a form is sent urlencoded")
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
        raise BadInput("the form is too large")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadInput("the form is too large")
    form: FormData = await request.form(max_fields=32)
    values: dict[str, str] = {}
    for name, value in form.multi_items():
        if not isinstance(value, str):
            raise BadInput("a form holds text only")
        values[name] = clean(value).strip()
    return values
