"""Admin tokens for the admin HTTP API: a registry with roles, expiry and last use.

A token is shown once, when it is made, and stored only as its SHA-256. The
registry (`Keys.admins`: name -> record) is the only thing that makes a
token valid: the index (`Keys.admin_tokens`: token hash -> name) only finds
the record in one read, and a token counts only if its admin's record names
that very hash and has not expired. A hash written straight into the index,
without a record, opens nothing, and `all` lists it (as unregistered) so an
operator sees it and `remove` deletes it.

Last use is written at most once a minute per admin and process
(`Keys.admins_used`), so a busy back office costs one write a minute, not
one a request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from proxy.errors import Invalid, NotFound, OperatorError
from proxy.keys import Keys
from proxy.ops.roles import ROLES
from proxy.store import Store, maybe_text, text_map

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # whole: "$" would let a final line break in
_SPAN = re.compile(r"^(\d{1,6})([dhm])$")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60}
MAX_EXPIRY_SECONDS = 10 * 365 * 86400
TOUCH_EVERY_SECONDS = 60.0
MAX_TOKEN_CHARS = 200


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def expiry_seconds(text: str) -> float:
    """A token's life: 90d, 12h or 30m (at least a minute, at most ten years)."""
    span = _SPAN.match(text.strip()) if isinstance(text, str) else None
    if span is None:
        raise Invalid(f"expires {text!r}: give a span like 90d, 12h or 30m")
    seconds = int(span.group(1)) * _UNIT_SECONDS[span.group(2)]
    if not 60 <= seconds <= MAX_EXPIRY_SECONDS:
        raise Invalid(f"expires {text!r}: from 1 minute to 10 years")
    return float(seconds)


@dataclass(frozen=True)
class Admin:
    name: str
    role: str  # "" for an unregistered index entry
    created: float | None
    expires: float | None  # None: never
    last_used: float | None
    registered: bool = True

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires


class Admins:
    def __init__(self, redis: Store, keys: Keys, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self._touched: dict[str, float] = {}

    @staticmethod
    def check(name: str, role: str) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise Invalid("an admin name is 1-64 letters, digits, '_', '.' or '-', starting with one of the first two")
        if role not in ROLES:
            raise Invalid(f"a role is one of {', '.join(ROLES)}")

    async def add(self, name: str, role: str, expires_in: float | None = None) -> tuple[Admin, str]:
        """Register an admin; it and its token (not stored)."""
        self.check(name, role)
        token = secrets.token_urlsafe(32)
        digest = hash_token(token)
        now = self.clock()
        expires = None if expires_in is None else now + expires_in
        record = json.dumps({"hash": digest, "role": role, "created": round(now, 3), "expires": expires})
        if not await self.redis.hsetnx(self.keys.admins, name, record):
            raise OperatorError(f"admin {name!r} exists already")
        await self.redis.hset(self.keys.admin_tokens, digest, name)  # last: the token works once all is in place
        return Admin(name, role, now, expires, None), token

    async def remove(self, name: str) -> None:
        """Delete an admin's record and every index entry naming it (unregistered ones too)."""
        index = text_map(await self.redis.hgetall(self.keys.admin_tokens))
        hashes = [digest for digest, owner in index.items() if owner == name]
        known = await self.redis.hexists(self.keys.admins, name)
        if not known and not hashes:
            raise NotFound(f"no admin {name!r}")
        if hashes:  # first: the token stops working at once
            await self.redis.hdel(self.keys.admin_tokens, *hashes)
        await self.redis.hdel(self.keys.admins, name)
        await self.redis.hdel(self.keys.admins_used, name)

    async def all(self) -> list[Admin]:
        """Every registered admin, and every index entry without a record (unregistered: opens nothing)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.admins)
            pipe.hgetall(self.keys.admin_tokens)
            pipe.hgetall(self.keys.admins_used)
            registry, index, used = (text_map(reply) for reply in await pipe.execute())
        found = []
        for name, raw in registry.items():
            record = _record(raw)
            found.append(
                Admin(
                    name,
                    str(record.get("role", "")),
                    _number(record.get("created")),
                    _number(record.get("expires")),
                    _number(used.get(name)),
                    registered=bool(record),
                )
            )
        registered = {name: _record(raw).get("hash") for name, raw in registry.items()}
        for digest, name in index.items():
            if registered.get(name) != digest:
                found.append(Admin(name, "", None, None, _number(used.get(name)), registered=False))
        return sorted(found, key=lambda admin: (admin.name, not admin.registered))

    async def authenticate(self, token: str) -> Admin | None:
        """The registered admin a token belongs to (expired or not: the caller says which), or None."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        digest = hash_token(token)
        name = maybe_text(await self.redis.hget(self.keys.admin_tokens, digest))
        if name is None:
            return None
        record = _record(maybe_text(await self.redis.hget(self.keys.admins, name)) or "")
        if not hmac.compare_digest(str(record.get("hash", "")), digest) or record.get("role") not in ROLES:
            return None
        return Admin(name, str(record["role"]), _number(record.get("created")), _number(record.get("expires")), None)

    async def current(self, name: str, digest: str) -> Admin | None:
        """The registered admin `name` if its token is still the one hashed
        `digest` (a login made with a removed or replaced token counts no more)."""
        record = _record(maybe_text(await self.redis.hget(self.keys.admins, name)) or "")
        if not hmac.compare_digest(str(record.get("hash", "")), digest) or record.get("role") not in ROLES:
            return None
        return Admin(name, str(record["role"]), _number(record.get("created")), _number(record.get("expires")), None)

    async def touch(self, admin: Admin) -> None:
        """Note a use of the admin's token (at most once a minute per process)."""
        now = time.monotonic()
        if now - self._touched.get(admin.name, -TOUCH_EVERY_SECONDS) < TOUCH_EVERY_SECONDS:
            return
        self._touched[admin.name] = now
        await self.redis.hset(self.keys.admins_used, admin.name, f"{self.clock():.0f}")


def _record(raw: str) -> dict[str, object]:
    try:
        record = json.loads(raw)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
