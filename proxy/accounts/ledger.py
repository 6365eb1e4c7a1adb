"""Balances and their ledger: every change of money is one atomic script.

A client's balance is an integer of minor units in Redis, and every movement
of it is an entry in the client's ledger stream. Both change only through
`scripts/move_money.lua`, one Lua fragment that every money-moving script
includes (top-ups here, `scripts/apply.lua`; order charges and refunds in
`proxy/orders/scripts`): it moves the balance and writes the entry together,
and refuses a debit that would take the balance below zero, however many
requests race.

Top-ups and operators' adjustments (kind `adjust`, signed, never below
zero, with the operator's reason as the memo and the operator as `actor`)
carry a reference (`ref`) that makes them idempotent: applying the same
reference twice returns the first entry and moves nothing. Order money
needs no such table: the order record itself says what was charged and
refunded, and its scripts move only the difference.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy import scripts
from proxy.errors import InsufficientFunds, UnknownClient
from proxy.keys import Keys
from proxy.money import from_minor, to_minor
from proxy.store import Store, maybe_text, stream_entries
from proxy.tracking import TrackedCache

# An application whose reply was lost is asked again this many times in all.
APPLY_TRIES = 3


@dataclass(frozen=True)
class Entry:
    """One movement of a client's money, as the ledger stream holds it."""

    id: str
    kind: str
    amount: Decimal
    balance: Decimal
    ref: str
    memo: str
    order: int | None = None
    duplicate: bool = False
    actor: str = ""  # the operator who moved it, for top-ups and adjustments

    @property
    def time(self) -> datetime:
        milliseconds = int(self.id.split("-", 1)[0])
        return datetime.fromtimestamp(milliseconds / 1000, tz=UTC)

    @classmethod
    def from_stream(cls, entry_id: str, fields: dict[str, str], duplicate: bool = False) -> Entry:
        order = fields.get("order")
        return cls(
            id=entry_id,
            kind=fields["kind"],
            amount=from_minor(fields["amount"]),
            balance=from_minor(fields["balance"]),
            ref=fields["ref"],
            memo=fields.get("memo", ""),
            order=int(order) if order else None,
            duplicate=duplicate,
            actor=fields.get("actor", ""),
        )


class Ledger:
    def __init__(self, redis: Store, keys: Keys, cache: TrackedCache | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.cache = cache
        self._apply = scripts.register(redis, "proxy.accounts", "apply")

    async def apply(
        self, client: str, amount: Decimal, *, kind: str, ref: str, memo: str = "", actor: str = ""
    ) -> Entry:
        """Credit (positive) or debit (negative) `amount`, once per `ref`.

        Raises `InsufficientFunds` when a debit would take the balance below
        zero (nothing changes then) and `UnknownClient`.
        """
        k = self.keys
        keys = [k.client(client), k.balance(client), k.ledger(client), k.applied(client), k.totals(client)]
        args: list[str | int] = [to_minor(amount), ref, kind, memo, actor]
        lost = False
        for attempt in range(APPLY_TRIES):  # safe to repeat: the reference applies once
            try:
                reply = await self._apply(keys=keys, args=args)
                break
            except (ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError):
                if attempt == APPLY_TRIES - 1:
                    raise
                lost = True
                await asyncio.sleep(0.05 * 4**attempt)
        outcome = reply[0]
        if outcome == "no_client":
            raise UnknownClient(client)
        if outcome == "insufficient":
            raise InsufficientFunds(client)
        entry = await self.entry(client, reply[1])
        if outcome == "duplicate" and not lost:  # after a lost reply, it may be this very call's
            return Entry(**{**entry.__dict__, "duplicate": True})
        return entry

    async def applied(self, client: str, ref: str) -> Entry | None:
        """The entry a reference was applied as, if it was."""
        entry_id = maybe_text(await self.redis.hget(self.keys.applied(client), ref))
        return None if entry_id is None else await self.entry(client, entry_id)

    async def entry(self, client: str, entry_id: str) -> Entry:
        [(found_id, fields)] = stream_entries(await self.redis.xrange(self.keys.ledger(client), entry_id, entry_id))
        return Entry.from_stream(found_id, fields)

    async def balance(self, client: str) -> Decimal:
        """The balance now: from the tracked cache while Redis tracks it (every
        script that moves it invalidates it before its reply), else read."""
        key = self.keys.balance(client)
        if self.cache is None:
            return from_minor(await self.redis.get(key) or 0)
        value: bytes | str | None = await self.cache.get(key, lambda: self.redis.get(key))
        return from_minor(value or 0)

    async def entries(self, client: str, limit: int | None = None) -> list[Entry]:
        """The client's ledger, oldest first (the newest `limit` entries if given)."""
        key = self.keys.ledger(client)
        if limit is None:
            rows = stream_entries(await self.redis.xrange(key))
        else:
            rows = stream_entries(await self.redis.xrevrange(key, count=limit))[::-1]
        return [Entry.from_stream(entry_id, fields) for entry_id, fields in rows]
