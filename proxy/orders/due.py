"""The due index: which open orders' statuses to read next.

Per provider, a sorted set of "client:order" scored by when the order's
status was last read (`Keys.due`). Status reads claim the oldest from it in
bulk (`claim`), marking them read so that no other instance takes them in
the same round. Which events put an order in and take it out is the state
table's to say (`states.due_change`); the order book moves it with the
transition, in the same round trip where it can. The status refresher may
score an order later than its last read (a slow read), or keep a final one
in for its re-checks. The index is advice, not money: an order missing from
it is put back when a sweep of the open orders reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy import scripts
from proxy.keys import Keys
from proxy.orders.records import Order
from proxy.orders.states import due_change
from proxy.store import Store


@dataclass(frozen=True)
class DueMove:
    """How one order moves in its provider's due index: to `score`, or out (None)."""

    key: str
    member: str
    score: float | None

    @property
    def op(self) -> str:
        """As the order scripts take it: 'add' or 'rem'."""
        return "rem" if self.score is None else "add"

    def __call__(self, redis: Any) -> Any:
        """The move as one command on a Redis client (or queued on a pipeline)."""
        if self.score is None:
            return redis.zrem(self.key, self.member)
        return redis.zadd(self.key, {self.member: self.score})


class DueIndex:
    def __init__(self, redis: Store, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._claim = scripts.register(redis, "proxy.orders", "claim_due")

    def change(self, order: Order, event: str, fields: Mapping[str, object], at: float | None = None) -> DueMove | None:
        """How `event` moves the order in its provider's due index, if it does.

        `at` (a score) puts it there whatever the state table says: the status
        refresher's own schedule, for orders read at the slow rate.
        """
        provider = str(fields.get("provider") or order.provider)
        if not provider:
            return None
        key, member = self.keys.due(provider), f"{order.client}:{order.id}"
        if at is not None:
            return DueMove(key, member, at)
        change = due_change(order.state, event, fields.get("status"))
        if change:
            return DueMove(key, member, float(str(fields.get("status_at", order.status_at) or 0)))
        if change is False:
            return DueMove(key, member, None)
        return None

    async def reschedule(self, provider: str, scores: Mapping[tuple[str, int], float | None]) -> None:
        """Put orders of `provider` at these scores, or take them out (None)."""
        if not scores:
            return
        key = self.keys.due(provider)
        async with self.redis.pipeline(transaction=False) as pipe:
            for (client, order_id), score in scores.items():
                member = f"{client}:{order_id}"
                if score is None:
                    pipe.zrem(key, member)
                else:
                    pipe.zadd(key, {member: score})
            await pipe.execute()

    async def claim(self, provider: str, read_before: float, now: float, limit: int) -> list[tuple[str, int]]:
        """Up to `limit` open orders of `provider` whose status was read before
        `read_before`, claimed for this round: (client, order ID)."""
        members = await self._claim(keys=[self.keys.due(provider)], args=[repr(read_before), repr(now), limit])
        taken = []
        for member in members:
            client, _, order_id = member.rpartition(":")
            taken.append((client, int(order_id)))
        return taken
