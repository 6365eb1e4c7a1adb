"""Reading orders: the one primitive (`records`) and the readers on it, by
(client, ID), by our ID alone (the owner index), by what a status read
shows, and the listings of a client's orders or of every client's (the
buckets of every order, the working sets, the owner index). Mixed into
`proxy.orders.book.OrderBook`, which also opens and changes them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from proxy.keys import OWNER_BUCKET, Keys
from proxy.orders.records import ArchivedOrder, Order, OrderSummary
from proxy.store import Store, ints, maybe_text, text_map, texts

# An owner entry that starts so: the order is archived (`proxy.orders.archive`).
ARCHIVED = "~"


class OrderReading:
    redis: Store
    keys: Keys
    _summaries: Any  # the summaries script (`OrderBook` registers it)

    async def records(self, pairs: Iterable[tuple[str, int]]) -> list[dict[str, str]]:
        """Raw records by (client, ID), in one round trip (an empty dict: no such order).

        The one way orders are read by their key; the readers below build on it.
        """
        pairs = list(pairs)
        if not pairs:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for client, order_id in pairs:
                pipe.hgetall(self.keys.order(client, order_id))
            return await pipe.execute()

    async def load(self, pairs: Iterable[tuple[str, int]]) -> list[Order]:
        """The orders that exist among (client, ID) pairs, in the order given."""
        return [Order.from_record(record) for record in await self.records(pairs) if record]

    async def get(self, client: str, order_id: int) -> Order | None:
        """One order of one client, or None."""
        found = await self.load([(client, order_id)])
        return found[0] if found else None

    async def get_many(self, client: str, order_ids: Iterable[int]) -> dict[int, Order]:
        """Orders of one client by ID (those that exist)."""
        return {order.id: order for order in await self.load((client, i) for i in order_ids)}

    async def summaries(self, client: str, order_ids: Iterable[int]) -> dict[int, OrderSummary]:
        """What a status read shows of many orders of one client, in one command."""
        ids = list(order_ids)
        if not ids:
            return {}
        rows = await self._summaries(keys=[self.keys.order(client, i) for i in ids])
        found = {}
        for order_id, row in zip(ids, rows, strict=True):
            summary = OrderSummary.from_row(order_id, row)
            if summary is not None:
                found[order_id] = summary
        return found

    async def owner(self, order_id: int) -> str | None:
        """The client an order ID belongs to (through the owner index)."""
        return maybe_text(await self.redis.hget(self.keys.order_owner(order_id), str(order_id)))

    async def find(self, order_id: int) -> Order | None:
        """An order by our ID alone (operators); None if unknown or archived."""
        client = await self.owner(order_id)
        return await self.get(client, order_id) if client and not client.startswith(ARCHIVED) else None

    async def is_archived(self, order_id: int) -> bool:
        return (await self.owner(order_id) or "").startswith(ARCHIVED)

    async def archived(self, client: str, order_ids: Iterable[int]) -> dict[int, ArchivedOrder]:
        """What Redis keeps of the client's archived orders among `order_ids` (`ArchivedOrder`)."""
        ids = sorted(set(order_ids))
        if not ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for order_id in ids:
                pipe.hget(self.keys.archived(client, order_id), str(order_id))
            views = await pipe.execute()
        return {i: ArchivedOrder.decode(client, i, v) for i, v in zip(ids, views, strict=True) if v is not None}

    async def newest_archived(self) -> AsyncIterator[ArchivedOrder]:
        """Archived orders of every client, newest first (through the owner index)."""
        newest = int(await self.redis.get(self.keys.order_seq) or 0)
        for bucket in range(newest // OWNER_BUCKET, -1, -1):
            owners = text_map(await self.redis.hgetall(self.keys.order_owner(bucket * OWNER_BUCKET)))
            by_client: dict[str, list[int]] = {}
            for order_id, owner in owners.items():
                if owner.startswith(ARCHIVED):
                    by_client.setdefault(owner[len(ARCHIVED) :], []).append(int(order_id))
            found: dict[int, ArchivedOrder] = {}
            for client, ids in by_client.items():
                found.update(await self.archived(client, ids))
            for number in sorted(found, reverse=True):
                yield found[number]

    async def clients(self) -> list[str]:
        return sorted(texts(await self.redis.smembers(self.keys.clients)))

    async def ids_in(self, group: str, client: str | None = None) -> list[int]:
        """Order IDs in a working set (or 'all'), of one client or every client, oldest first."""
        clients = [client] if client else await self.clients()
        if group == "all":
            return sorted({i for name in clients for i in await self._all_ids(name)})
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in clients:
                pipe.zrange(self.keys.orders_of(name, group), 0, -1)
            replies = await pipe.execute()
        return sorted(int(i) for ids in replies for i in ids)

    async def _all_ids(self, client: str, buckets: Iterable[int] | None = None) -> set[int]:
        """The client's order IDs listed in `buckets` (default: every bucket up to
        the newest ID), with those opened before the buckets (a sorted set)."""
        if buckets is None:
            newest = int(await self.redis.get(self.keys.order_seq) or 0)
            buckets = range(newest // OWNER_BUCKET, -1, -1)
            found = set(ints(await self.redis.zrange(self.keys.orders_of(client, "all"), 0, -1)))
        else:
            found = set()
        numbers = list(buckets)
        for start in range(0, len(numbers), 1000):
            async with self.redis.pipeline(transaction=False) as pipe:
                for bucket in numbers[start : start + 1000]:
                    pipe.smembers(self.keys.all_orders(client, bucket * OWNER_BUCKET))
                for members in await pipe.execute():
                    found.update(ints(members))
        return found

    async def count(self, group: str) -> int:
        """How many orders a working set (or 'all') holds, over every client."""
        clients = await self.clients()
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in clients:
                pipe.zcard(self.keys.orders_of(name, group))
            return sum(await pipe.execute())

    async def newest(self, client: str | None = None) -> AsyncIterator[Order]:
        """Orders newest first, of one client or of all (through the owner index)."""
        if client:
            newest = int(await self.redis.get(self.keys.order_seq) or 0)
            bucket = newest // OWNER_BUCKET
            while bucket >= 0:  # the buckets, newest first, OWNER_BUCKET of them a round trip
                ids = sorted(
                    await self._all_ids(client, range(bucket, max(-1, bucket - OWNER_BUCKET), -1)), reverse=True
                )
                bucket -= OWNER_BUCKET
                for start in range(0, len(ids), OWNER_BUCKET):
                    chunk = ids[start : start + OWNER_BUCKET]
                    found = await self.get_many(client, chunk)
                    for order_id in chunk:
                        if order_id in found:
                            yield found[order_id]
            key, start = self.keys.orders_of(client, "all"), 0  # orders opened before the buckets
            while ids := ints(await self.redis.zrevrange(key, start, start + OWNER_BUCKET - 1)):
                found = await self.get_many(client, ids)
                for order_id in ids:
                    if order_id in found:
                        yield found[order_id]
                start += OWNER_BUCKET
            return
        newest = int(await self.redis.get(self.keys.order_seq) or 0)
        for bucket in range(newest // OWNER_BUCKET, -1, -1):
            owners = text_map(await self.redis.hgetall(self.keys.order_owner(bucket * OWNER_BUCKET)))
            by_client: dict[str, list[int]] = {}
            for member, owner in owners.items():
                if not owner.startswith(ARCHIVED):
                    by_client.setdefault(owner, []).append(int(member))
            found = {}
            for owner, ids in by_client.items():
                found.update(await self.get_many(owner, ids))
            for order_id in sorted(found, reverse=True):
                yield found[order_id]
