"""Downstream client accounts: names, hashed API keys, balances.

An API key is shown once, when it is made, and stored only as its SHA-256.
Keys are 128 random bits, so a fast hash is as safe as a slow one here and
lets a request find its client with one lookup: the key's hash maps to the
client's name only while the client is enabled (disabling removes the
mapping), so authenticating is a single read.

Writes that span hash slots are ordered so that a crash between them leaves
nothing usable half made: the key mapping, which makes an account usable, is
written last (and removed first, when a key is replaced or an account is
disabled).

A client's terms (markup, custom rates, duplicate window, same-link rule:
`proxy.accounts.terms`) live in its record and rates hash, under its hash
tag, so the reserve script reads them in the step that decides an order.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

from proxy.accounts.ledger import Entry, Ledger
from proxy.accounts.terms import FIELDS, Terms
from proxy.errors import AccountError, UnknownClient
from proxy.keys import Keys
from proxy.money import from_minor
from proxy.store import Field, Store, maybe_text, text_map, texts
from proxy.tracking import TrackedCache

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # whole: "$" would let a final line break in


def check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise AccountError("a client name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")


def generate_key() -> str:
    return secrets.token_hex(16)


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True)
class Client:
    name: str
    balance: Decimal
    currency: str
    disabled: bool
    created: float
    terms: Terms = Terms()


class Accounts:
    """Accounts in Redis. With a tracked cache (`proxy.tracking`), the reads on
    every request (an API key's client, the client's terms) come from memory
    while Redis tracks them; any change, on any instance, invalidates them
    before its writer has its reply."""

    def __init__(
        self, redis: Store, keys: Keys, ledger: Ledger, currency: str, cache: TrackedCache | None = None
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.ledger = ledger
        self.currency = currency
        self.cache = cache

    async def create(self, name: str, balance: Decimal = Decimal(0)) -> tuple[Client, str]:
        """Open an account; returns it and its API key, which is not stored."""
        check_name(name)
        if balance < 0:
            raise AccountError("the opening balance cannot be negative")
        api_key = generate_key()
        key_hash = hash_key(api_key)
        created = await self.redis.hsetnx(self.keys.client(name), "name", name)
        if not created:
            raise AccountError(f"client {name!r} exists already")
        async with self.redis.pipeline(transaction=True) as pipe:  # one slot: the client's
            pipe.hset(
                self.keys.client(name),
                mapping={"key_hash": key_hash, "disabled": "0", "created": f"{time.time():.3f}"},
            )
            pipe.set(self.keys.balance(name), 0, nx=True)
            await pipe.execute()
        await self.redis.sadd(self.keys.clients, name)
        await self.redis.set(self.keys.api_key(key_hash), name)
        if balance > 0:
            await self.ledger.apply(name, balance, kind="topup", ref=f"opening:{name}", memo="opening balance")
        return await self.get(name), api_key

    async def get(self, name: str) -> Client:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.client(name))
            pipe.hgetall(self.keys.rates(name))
            pipe.get(self.keys.balance(name))
            raw_record, raw_rates, balance = await pipe.execute()
        record = text_map(raw_record)
        if not record.get("key_hash"):
            raise UnknownClient(name)
        return Client(
            name=name,
            balance=from_minor(balance or 0),
            currency=self.currency,
            disabled=record.get("disabled") == "1",
            created=float(record.get("created", 0)),
            terms=Terms.read(record, text_map(raw_rates)),
        )

    async def terms(self, name: str) -> Terms:
        """The client's terms as they are now (another instance may have just
        changed them: the cache holds them only while Redis tracks them)."""
        record_key, rates_key = self.keys.client(name), self.keys.rates(name)

        async def load(missing: list[str]) -> list[tuple[tuple[str, str], ...]]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in missing:
                    if key == record_key:
                        pipe.hmget(key, list(FIELDS))
                    else:
                        pipe.hgetall(key)
                replies = await pipe.execute()
            return [
                tuple((k, v) for k, v in zip(FIELDS, reply, strict=True) if v is not None)
                if key == record_key
                else tuple(sorted(text_map(reply).items()))
                for key, reply in zip(missing, replies, strict=True)
            ]

        if self.cache is None:
            record, rates = await load([record_key, rates_key])
        else:
            record, rates = await self.cache.get_many([record_key, rates_key], load)
        return Terms.read(dict(record), dict(rates))

    async def set_terms(self, name: str, changes: dict[str, str | None]) -> Client:
        """Write some of the terms' fields (`terms.FIELDS`); None unsets one (the default again)."""
        await self.get(name)
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise AccountError(f"no such terms: {', '.join(sorted(unknown))}")
        written: dict[str, Field] = {field: value for field, value in changes.items() if value is not None}
        cleared = [field for field, value in changes.items() if value is None]
        async with self.redis.pipeline(transaction=True) as pipe:  # one slot: the client's
            if written:
                pipe.hset(self.keys.client(name), mapping=written)
            if cleared:
                pipe.hdel(self.keys.client(name), *cleared)
            await pipe.execute()
        return await self.get(name)

    async def set_rate(self, name: str, service: int, rate: Decimal | None) -> Client:
        """A custom rate for one service (None: back to the client's markup)."""
        await self.get(name)
        if rate is None:
            await self.redis.hdel(self.keys.rates(name), str(service))
        else:
            await self.redis.hset(self.keys.rates(name), str(service), str(rate))
        return await self.get(name)

    async def authenticate(self, api_key: str) -> str | None:
        """The name of the enabled client owning `api_key`, or None. A disabled
        or replaced key's mapping is deleted first thing, so from the writer's
        reply on, no instance's next request finds it (`proxy.tracking`)."""
        if not api_key:
            return None
        key = self.keys.api_key(hash_key(api_key))
        if self.cache is None:
            return maybe_text(await self.redis.get(key))
        return maybe_text(await self.cache.get(key, lambda: self.redis.get(key)))

    async def topup(self, name: str, amount: Decimal, ref: str | None = None, memo: str = "") -> Entry:
        """Credit `amount`. A retried call with the same `ref` credits once."""
        if amount <= 0:
            raise AccountError("a top-up must be a positive amount")
        await self.get(name)
        return await self.ledger.apply(name, amount, kind="topup", ref=f"topup:{ref or uuid.uuid4().hex}", memo=memo)

    async def adjust(self, name: str, amount: Decimal, *, ref: str, reason: str, actor: str) -> Entry:
        """Credit or debit `amount` (an operator's correction), once per `ref`;
        never below zero (`InsufficientFunds`, nothing moves)."""
        if amount == 0:
            raise AccountError("an adjustment moves money: give a non-zero amount")
        await self.get(name)
        return await self.ledger.apply(name, amount, kind="adjust", ref=f"adjust:{ref}", memo=reason, actor=actor)

    async def rotate_key(self, name: str) -> str:
        """Give the client a new API key; the old one stops working at once."""
        client = await self.get(name)
        api_key = generate_key()
        old_hash = maybe_text(await self.redis.hget(self.keys.client(name), "key_hash"))
        if old_hash:  # first: the old key stops working whatever happens next
            await self.redis.delete(self.keys.api_key(old_hash))
        await self.redis.hset(self.keys.client(name), "key_hash", hash_key(api_key))
        if not client.disabled:
            await self.redis.set(self.keys.api_key(hash_key(api_key)), name)
            await self._unless_disabled(name, hash_key(api_key))
        return api_key

    async def enable(self, name: str) -> Client:
        """Take the client's key again (its mapping is restored; its key is unchanged)."""
        await self.get(name)
        key_hash = maybe_text(await self.redis.hget(self.keys.client(name), "key_hash"))
        await self.redis.hset(self.keys.client(name), "disabled", "0")
        if key_hash:
            await self.redis.set(self.keys.api_key(key_hash), name)
            await self._unless_disabled(name, key_hash)
        return await self.get(name)

    async def _unless_disabled(self, name: str, key_hash: str) -> None:
        """A mapping just written stays only if nobody disabled the client meanwhile."""
        if maybe_text(await self.redis.hget(self.keys.client(name), "disabled")) == "1":
            await self.redis.delete(self.keys.api_key(key_hash))

    async def disable(self, name: str) -> Client:
        """Refuse the client's key from now on (its mapping is removed)."""
        await self.get(name)
        key_hash = maybe_text(await self.redis.hget(self.keys.client(name), "key_hash"))
        await self.redis.hset(self.keys.client(name), "disabled", "1")
        if key_hash:
            await self.redis.delete(self.keys.api_key(key_hash))
        return await self.get(name)

    async def names(self) -> list[str]:
        return sorted(texts(await self.redis.smembers(self.keys.clients)))

    async def all(self) -> list[Client]:
        return [await self.get(name) for name in await self.names()]
