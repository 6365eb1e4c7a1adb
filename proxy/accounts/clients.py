"""Downstream client accounts: names, hashed API keys, balances.

An API key is shown once, when it is made, and stored only as its SHA-256.
Keys are 128 random bits, so a fast hash is as safe as a slow one here and
lets a request find its client with one lookup: the key's hash maps to the
client's name only while the client is enabled (disabling removes the
mapping), so authenticating is a single read.

Writes that span hash slots are ordered so that a crash between them leaves
nothing usable half made: the key mapping, which makes an account usable, is
written last.
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
from proxy.errors import AccountError, UnknownClient
from proxy.store import Keys, Store, maybe_text, texts

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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


class Accounts:
    def __init__(self, redis: Store, keys: Keys, ledger: Ledger, currency: str) -> None:
        self.redis = redis
        self.keys = keys
        self.ledger = ledger
        self.currency = currency

    async def create(self, name: str, balance: Decimal = Decimal(0)) -> tuple[Client, str]:
        """Open an account; returns it and its API key, which is not stored."""
        if not _NAME.match(name):
            raise AccountError(
                "a client name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
            )
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
        record = await self.redis.hgetall(self.keys.client(name))
        if not record.get("key_hash"):
            raise UnknownClient(name)
        return Client(
            name=name,
            balance=await self.ledger.balance(name),
            currency=self.currency,
            disabled=record.get("disabled") == "1",
            created=float(record.get("created", 0)),
        )

    async def authenticate(self, api_key: str) -> str | None:
        """The name of the enabled client owning `api_key`, or None."""
        if not api_key:
            return None
        return maybe_text(await self.redis.get(self.keys.api_key(hash_key(api_key))))

    async def topup(self, name: str, amount: Decimal, ref: str | None = None, memo: str = "") -> Entry:
        """Credit `amount`. A retried call with the same `ref` credits once."""
        if amount <= 0:
            raise AccountError("a top-up must be a positive amount")
        await self.get(name)
        return await self.ledger.apply(name, amount, kind="topup", ref=f"topup:{ref or uuid.uuid4().hex}", memo=memo)

    async def rotate_key(self, name: str) -> str:
        """Give the client a new API key; the old one stops working at once."""
        client = await self.get(name)
        api_key = generate_key()
        old_hash = maybe_text(await self.redis.hget(self.keys.client(name), "key_hash"))
        if old_hash:
            await self.redis.delete(self.keys.api_key(old_hash))
        await self.redis.hset(self.keys.client(name), "key_hash", hash_key(api_key))
        if not client.disabled:
            await self.redis.set(self.keys.api_key(hash_key(api_key)), name)
        return api_key

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
