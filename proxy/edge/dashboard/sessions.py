"""Dashboard logins: sessions kept in Redis, their cookie, and the guard on every form.

A login trades an admin token (`proxy.ops.admins`) for a session: a random
ID in an HTTP-only, SameSite=Strict cookie (`Secure` when the request came
over TLS, as the proxies in `SMM_PROXY_FORWARDED_ALLOW_IPS` tell it), stored
in Redis only as its SHA-256 with the admin's name, the hash of the token it
was made with, a CSRF token and an expiry (`SMM_PROXY_DASHBOARD_SESSION_HOURS`).
The token is never stored, never put in a URL. A session counts only while
its admin's registry record still names that token (a removed or replaced
token ends its logins) and has not expired.

Every POST is checked before anything else reads it (`forged`): the
`Origin` (or `Referer`) must be this very site and `Sec-Fetch-Site`, when the
browser sends it, same-origin; and the form's CSRF token must be the
session's. Logins are counted per source address with the `limits` library
in Redis, so every instance counts the same attempts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request
from starlette.responses import Response

from proxy.keys import Keys
from proxy.ops.admins import Admin, Admins, hash_token
from proxy.store import Store, maybe_text

log = logging.getLogger(__name__)

COOKIE = "smm_dashboard"
# Cookies named __Host- are refused by browsers unless Secure, path / and no domain: used over TLS.
SECURE_COOKIE = "__Host-smm_dashboard"
PATH = "/dashboard"


@dataclass(frozen=True)
class Session:
    """A logged-in operator: the admin acting, its role, the form token."""

    digest: str  # SHA-256 of the session ID (the Redis key's)
    admin: str
    role: str
    csrf: str
    expires: float


def secure(request: Request) -> bool:
    """Whether the request came over TLS (uvicorn believes X-Forwarded-Proto
    only from SMM_PROXY_FORWARDED_ALLOW_IPS)."""
    return request.url.scheme == "https"


def cookie_name(request: Request) -> str:
    return SECURE_COOKIE if secure(request) else COOKIE


class Sessions:
    def __init__(
        self,
        redis: Store,
        keys: Keys,
        admins: Admins,
        storage: Storage,
        *,
        hours: float,
        logins: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.admins = admins
        self.seconds = int(hours * 3600)
        self.clock = clock
        self.limiter = MovingWindowRateLimiter(storage)
        self.logins: list[RateLimitItem] = parse_many(logins)

    async def may_try(self, source: str) -> bool:
        """Count one login attempt from `source`; False when it is over the limit."""
        try:
            for item in self.logins:
                if not await self.limiter.hit(item, "dashboard-login", source):
                    return False
        except Exception as exc:  # a limit is protection; a login still needs a valid token
            log.warning("dashboard logins not counted (%s)", type(exc).__name__)
        return True

    async def login(self, token: str) -> tuple[str, Session] | None:
        """A new session for a valid, unexpired admin token: its cookie value and the session."""
        admin = await self.admins.authenticate(token.strip())
        if admin is None or admin.expired(self.admins.clock()):
            return None
        session_id = secrets.token_urlsafe(32)
        digest = hash_token(session_id)
        expires = self.clock() + self.seconds
        if admin.expires is not None:
            expires = min(expires, admin.expires)
        session = Session(digest, admin.name, admin.role, secrets.token_urlsafe(32), expires)
        await self.admins.touch(admin)
        record = {"admin": admin.name, "token": hash_token(token.strip()), "csrf": session.csrf, "expires": expires}
        ttl = max(1, int(expires - self.clock()))
        await self.redis.set(self.keys.dashboard_session(digest), json.dumps(record), ex=ttl)
        return session_id, session

    async def find(self, request: Request) -> Session | None:
        """The session a request's cookie names, if it is alive and its admin's token still counts."""
        session_id = request.cookies.get(cookie_name(request), "")
        if not session_id or len(session_id) > 100:
            return None
        digest = hash_token(session_id)
        raw = maybe_text(await self.redis.get(self.keys.dashboard_session(digest)))
        record = _record(raw)
        expires = record.get("expires")
        if not isinstance(expires, int | float) or expires <= self.clock():
            return None
        admin: Admin | None = await self.admins.current(str(record.get("admin", "")), str(record.get("token", "")))
        if admin is None or admin.expired(self.admins.clock()):
            return None
        return Session(digest, admin.name, admin.role, str(record.get("csrf", "")), float(expires))

    async def logout(self, session: Session) -> None:
        await self.redis.delete(self.keys.dashboard_session(session.digest))


def set_cookie(response: Response, request: Request, value: str, max_age: int, name: str = "") -> None:
    tls = secure(request)
    response.set_cookie(
        name or cookie_name(request),
        value,
        max_age=max_age,
        path="/" if tls else PATH,  # __Host- cookies must have path /
        httponly=True,
        samesite="strict",
        secure=tls,
    )


def clear_cookie(response: Response, request: Request, name: str = "") -> None:
    tls = secure(request)
    response.delete_cookie(
        name or cookie_name(request), path="/" if tls else PATH, httponly=True, samesite="strict", secure=tls
    )


# -- what a form did, told on the next page -------------------------------------------
# A form answers with a redirect and a short-lived cookie holding its message
# (signed with the session's CSRF token), so the page that shows it changes
# nothing on the server: GET never writes.

FLASH_SECONDS = 60
# A browser keeps no cookie over 4096 bytes (name, value and attributes): the
# message is shortened until its value fits in this many, never dropped.
FLASH_BYTES = 3000


def flash_name(request: Request) -> str:
    return f"{cookie_name(request)}_flash"


def set_flash(response: Response, request: Request, session: Session, message: str, kind: str) -> None:
    payload = _flash_payload(kind, message)
    set_cookie(response, request, f"{payload}.{_mac(session, payload)}", FLASH_SECONDS, flash_name(request))


def _flash_payload(kind: str, message: str) -> str:
    """The message as a cookie value of at most FLASH_BYTES, cut short (…) if it must be."""
    cut = min(len(message), 1500)
    while True:
        text = message if cut >= len(message) else message[:cut] + "…"
        raw = json.dumps([kind, text], ensure_ascii=False).encode("utf-8", "surrogatepass")
        payload = base64.urlsafe_b64encode(raw).decode()
        if len(payload) <= FLASH_BYTES or cut == 0:
            return payload
        cut = cut * 3 // 4


def read_flash(request: Request, session: Session) -> tuple[str, str]:
    """The message a form left for this session's next page, and its kind ("ok", "error")."""
    payload, _, mac = request.cookies.get(flash_name(request), "").partition(".")
    if not payload or not hmac.compare_digest(mac.encode(), _mac(session, payload).encode()):
        return "", ""
    try:
        kind, message = json.loads(base64.urlsafe_b64decode(payload.encode()).decode("utf-8", "replace"))
    except ValueError:
        return "", ""
    return (str(message), "error" if kind == "error" else "ok")


def _mac(session: Session, payload: str) -> str:
    return hmac.new(session.csrf.encode(), payload.encode(), hashlib.sha256).hexdigest()[:32]


def forged(request: Request, form_csrf: str | None, session: Session | None) -> str:
    """Why a POST is refused as coming from elsewhere ("" when it is not): its
    Origin (or Referer) must be this site, Sec-Fetch-Site same-origin when
    sent, and the form's CSRF token the session's (when there is a session)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"a form sent from another site ({site})"
    origin = request.headers.get("origin") or _origin_of(request.headers.get("referer", ""))
    if not origin or origin == "null":
        return "a form without its origin"
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin != own:
        return "a form sent from another origin"
    if session is not None and not hmac.compare_digest((form_csrf or "").encode(), session.csrf.encode()):
        return "a form without this session's token (reload the page)"
    return ""


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _record(raw: str | None) -> dict[str, object]:
    try:
        record = json.loads(raw or "")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}
