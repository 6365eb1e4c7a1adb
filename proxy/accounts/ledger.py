"""Balances and their ledger: every change of money is one atomic script.

A client's balance is an integer of minor units in Redis. `Ledger.apply`
checks, moves and records in one Lua script, so a balance never goes below
zero however many requests race, and every movement carries a reference
(`ref`) that makes it idempotent: applying the same reference twice returns
the first entry and moves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import redis.asyncio as aioredis

from proxy.money import from_minor, to_minor
from proxy.store import Keys

# KEYS: client, balance, ledger, applied
# ARGV: delta (minor units, signed), ref, kind, memo
APPLY_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'no_client'}
end
local prior = redis.call('HGET', KEYS[4], ARGV[2])
if prior then
  return {'duplicate', prior}
end
local after = redis.call('INCRBY', KEYS[2], ARGV[1])
if after < 0 then
  redis.call('DECRBY', KEYS[2], ARGV[1])
  return {'insufficient'}
end
local balance = redis.call('GET', KEYS[2])
local id = redis.call('XADD', KEYS[3], '*', 'kind', ARGV[3], 'amount', ARGV[1],
                      'balance', balance, 'ref', ARGV[2], 'memo', ARGV[4])
redis.call('HSET', KEYS[4], ARGV[2], id)
return {'ok', id}
"""


class LedgerError(Exception):
    pass


class UnknownClient(LedgerError):
    pass


class InsufficientFunds(LedgerError):
    pass


@dataclass(frozen=True)
class Entry:
    """One movement of a client's money, as the ledger stream holds it."""

    id: str
    kind: str
    amount: Decimal
    balance: Decimal
    ref: str
    memo: str
    duplicate: bool = False

    @property
    def time(self) -> datetime:
        milliseconds = int(self.id.split("-", 1)[0])
        return datetime.fromtimestamp(milliseconds / 1000, tz=UTC)

    @classmethod
    def from_stream(cls, entry_id: str, fields: dict[str, str], duplicate: bool = False) -> Entry:
        return cls(
            id=entry_id,
            kind=fields["kind"],
            amount=from_minor(fields["amount"]),
            balance=from_minor(fields["balance"]),
            ref=fields["ref"],
            memo=fields.get("memo", ""),
            duplicate=duplicate,
        )


class Ledger:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._apply = redis.register_script(APPLY_SCRIPT)

    def script_keys(self, client: str) -> list[str]:
        k = self.keys
        return [k.client(client), k.balance(client), k.ledger(client), k.applied(client)]

    async def apply(self, client: str, amount: Decimal, *, kind: str, ref: str, memo: str = "") -> Entry:
        """Credit (positive) or debit (negative) `amount`, once per `ref`.

        Raises `InsufficientFunds` when a debit would take the balance below
        zero (nothing changes then) and `UnknownClient`.
        """
        reply = await self._apply(
            keys=self.script_keys(client), args=[to_minor(amount), ref, kind, memo]
        )
        outcome = reply[0]
        if outcome == "no_client":
            raise UnknownClient(client)
        if outcome == "insufficient":
            raise InsufficientFunds(client)
        entry = await self.entry(client, reply[1])
        if outcome == "duplicate":
            return Entry(**{**entry.__dict__, "duplicate": True})
        return entry

    async def entry(self, client: str, entry_id: str) -> Entry:
        [(found_id, fields)] = await self.redis.xrange(self.keys.ledger(client), entry_id, entry_id)
        return Entry.from_stream(found_id, fields)

    async def balance(self, client: str) -> Decimal:
        return from_minor(await self.redis.get(self.keys.balance(client)) or 0)

    async def entries(self, client: str, limit: int | None = None) -> list[Entry]:
        """The client's ledger, oldest first (the newest `limit` entries if given)."""
        key = self.keys.ledger(client)
        if limit is None:
            rows = await self.redis.xrange(key)
        else:
            rows = list(reversed(await self.redis.xrevrange(key, count=limit)))
        return [Entry.from_stream(entry_id, fields) for entry_id, fields in rows]
