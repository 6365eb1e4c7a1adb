"""Balances and their ledger: every change of money is one atomic script.

A client's balance is an integer of minor units in Redis, and every movement
of it is an entry in the client's ledger stream. Both change only through
`scripts/move_money.lua`, one Lua fragment that every money-moving script
includes (top-ups here, `scripts/apply.lua`; order charges and refunds in
`proxy/orders/scripts`): it moves the balance and writes the entry together,
and refuses a debit that would take the balance below zero, however many
requests race.

Top-ups carry a reference (`ref`) that makes them idempotent: applying the
same reference twice returns the first entry and moves nothing. Order money
needs no such table: the order record itself says what was charged and
refunded, and its scripts move only the difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from proxy import scripts
from proxy.errors import InsufficientFunds, UnknownClient
from proxy.money import from_minor, to_minor
from proxy.store import Keys, Store, stream_entries


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
    def __init__(self, redis: Store, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._apply = scripts.register(redis, "proxy.accounts", "apply")

    async def apply(self, client: str, amount: Decimal, *, kind: str, ref: str, memo: str = "") -> Entry:
        """Credit (positive) or debit (negative) `amount`, once per `ref`.

        Raises `InsufficientFunds` when a debit would take the balance below
        zero (nothing changes then) and `UnknownClient`.
        """
        k = self.keys
        keys = [k.client(client), k.balance(client), k.ledger(client), k.applied(client), k.totals(client)]
        reply = await self._apply(keys=keys, args=[to_minor(amount), ref, kind, memo])
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
        [(found_id, fields)] = stream_entries(await self.redis.xrange(self.keys.ledger(client), entry_id, entry_id))
        return Entry.from_stream(found_id, fields)

    async def balance(self, client: str) -> Decimal:
        return from_minor(await self.redis.get(self.keys.balance(client)) or 0)

    async def entries(self, client: str, limit: int | None = None) -> list[Entry]:
        """The client's ledger, oldest first (the newest `limit` entries if given)."""
        key = self.keys.ledger(client)
        if limit is None:
            rows = stream_entries(await self.redis.xrange(key))
        else:
            rows = stream_entries(await self.redis.xrevrange(key, count=limit))[::-1]
        return [Entry.from_stream(entry_id, fields) for entry_id, fields in rows]
