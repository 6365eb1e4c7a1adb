"""Balances and their ledger: every change of money is one atomic script.

A client's balance is an integer of minor units in Redis, and every movement
of it is an entry in the client's ledger stream. Both change only through
`MOVE_MONEY`, one Lua fragment that every money-moving script includes (top-
ups here, order charges and refunds in `proxy.orders.book`): it moves the
balance and writes the entry together, and refuses a debit that would take
the balance below zero, however many requests race.

Top-ups carry a reference (`ref`) that makes them idempotent: applying the
same reference twice returns the first entry and moves nothing. Order money
needs no such table: the order record itself says what was charged and
refunded, and its scripts move only the difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import redis.asyncio as aioredis

from proxy.errors import InsufficientFunds, UnknownClient
from proxy.money import from_minor, to_minor
from proxy.store import Keys

# The one way money moves, included by every script that moves it.
# `delta` is a Lua number (whole minor units; exact below 2^53), credited if
# positive, debited if negative. Returns the ledger entry's ID, or false when
# a debit would overdraw (nothing changes then). The client's running totals
# by kind (charge, refund, topup), which metrics and reports read, move in
# the same step. Numbers are written with %d: Lua would otherwise print large
# ones as 1e+15.
MOVE_MONEY = """
local function minor(n)
  return string.format('%d', n)
end
local function move_money(balance_key, ledger_key, totals_key, delta, kind, ref, memo, order)
  local after = redis.call('INCRBY', balance_key, minor(delta))
  if after < 0 then
    redis.call('DECRBY', balance_key, minor(delta))
    return false
  end
  redis.call('HINCRBY', totals_key, kind, minor(math.abs(delta)))
  local entry = {'kind', kind, 'amount', minor(delta), 'balance', minor(after), 'ref', ref, 'memo', memo}
  if order ~= '' then
    entry[#entry + 1] = 'order'
    entry[#entry + 1] = order
  end
  return redis.call('XADD', ledger_key, '*', unpack(entry))
end
"""

# KEYS: client, balance, ledger, applied, totals
# ARGV: delta (minor units, signed), ref, kind, memo
APPLY_SCRIPT = MOVE_MONEY + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'no_client'}
end
local prior = redis.call('HGET', KEYS[4], ARGV[2])
if prior then
  return {'duplicate', prior}
end
local id = move_money(KEYS[2], KEYS[3], KEYS[5], tonumber(ARGV[1]), ARGV[3], ARGV[2], ARGV[4], '')
if not id then
  return {'insufficient'}
end
redis.call('HSET', KEYS[4], ARGV[2], id)
return {'ok', id}
"""


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
        )


class Ledger:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._apply = redis.register_script(APPLY_SCRIPT)

    def script_keys(self, client: str) -> list[str]:
        k = self.keys
        return [k.client(client), k.balance(client), k.ledger(client), k.applied(client), k.totals(client)]

    async def apply(self, client: str, amount: Decimal, *, kind: str, ref: str, memo: str = "") -> Entry:
        """Credit (positive) or debit (negative) `amount`, once per `ref`.

        Raises `InsufficientFunds` when a debit would take the balance below
        zero (nothing changes then) and `UnknownClient`.
        """
        reply = await self._apply(keys=self.script_keys(client), args=[to_minor(amount), ref, kind, memo])
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
