"""Refills: our own refill IDs, mapped to the upstream's, with cached statuses."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from proxy.errors import ProviderRefused, UpstreamError
from proxy.keys import Keys
from proxy.orders.records import ArchivedOrder, Order
from proxy.providers.health import READS, Health
from proxy.providers.replies import MISSING_FROM_REPLY, ItemError
from proxy.providers.upstream import ProviderClient
from proxy.store import Field, Store
from proxy.vocabulary import FINAL_REFILL_STATUSES, PENDING

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refill:
    id: int
    client: str
    order: int
    provider: str
    upstream_refill: str
    status: str
    status_at: float

    @classmethod
    def from_record(cls, record: Mapping[str, str]) -> Refill:
        return cls(
            id=int(record["id"]),
            client=record["client"],
            order=int(record["order"]),
            provider=record["provider"],
            upstream_refill=record["upstream_refill"],
            status=record.get("status", PENDING),
            status_at=float(record.get("status_at", "0")),
        )


class Refills:
    def __init__(
        self,
        redis: Store,
        keys: Keys,
        providers: Mapping[str, ProviderClient],
        health: Health,
        ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.providers = providers
        self.health = health
        self.ttl = ttl
        self.clock = clock

    async def create(self, orders: Sequence[Order | ArchivedOrder]) -> dict[int, int | UpstreamError]:
        """Ask upstream to refill placed orders; our refill ID per order ID.

        An order upstream said no to has a `ProviderRefused` with the
        provider's words in `message` (not yet cleaned for a client); any
        other `UpstreamError` means we could not ask.
        """
        by_provider: dict[str, list[Order | ArchivedOrder]] = defaultdict(list)
        for order in orders:
            by_provider[order.provider].append(order)
        results: dict[int, int | UpstreamError] = {}
        for provider, group in by_provider.items():
            client = self.providers.get(provider)
            if client is None:  # since removed from the config
                for order in group:
                    results[order.id] = UpstreamError(provider, "provider no longer configured")
                continue
            try:
                if len(group) == 1:
                    replies: Mapping[int, str | ItemError] = {
                        group[0].upstream_order: await client.refill(group[0].upstream_order)
                    }
                else:
                    replies = await client.refills([o.upstream_order for o in group])
            except UpstreamError as exc:
                if not (isinstance(exc, ProviderRefused) and exc.message):
                    log.warning("refills at %s failed: %s", provider, exc.reason)
                for order in group:
                    results[order.id] = exc
                continue
            for order in group:
                reply = replies.get(order.upstream_order, ItemError(MISSING_FROM_REPLY))
                if isinstance(reply, ItemError):
                    results[order.id] = ProviderRefused(
                        provider, f"refill: order {order.upstream_order}", reply.message
                    )
                else:
                    results[order.id] = await self._record(order, reply)
        return results

    async def _record(self, order: Order | ArchivedOrder, upstream_refill: str) -> int:
        refill_id = await self.redis.incr(self.keys.refill_seq)
        now = self.clock()
        await self.redis.hset(self.keys.refill_owner(refill_id), str(refill_id), order.client)
        await self.redis.hset(
            self.keys.refill(order.client, refill_id),
            mapping={
                "id": refill_id,
                "client": order.client,
                "order": order.id,
                "provider": order.provider,
                "upstream_refill": upstream_refill,
                "status": PENDING,
                "status_at": repr(now),
                "created": repr(now),
            },
        )
        return refill_id

    async def get_many(self, client: str, refill_ids: list[int]) -> dict[int, Refill]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for refill_id in refill_ids:
                pipe.hgetall(self.keys.refill(client, refill_id))
            records = await pipe.execute()
        return {i: Refill.from_record(r) for i, r in zip(refill_ids, records, strict=True) if r}

    async def statuses(self, client: str, refill_ids: list[int]) -> dict[int, Refill]:
        """The client's refills, stale statuses refreshed (one bulk call per provider)."""
        refills = await self.get_many(client, refill_ids)
        now = self.clock()
        by_provider: dict[str, list[Refill]] = defaultdict(list)
        for refill in refills.values():
            if refill.status not in FINAL_REFILL_STATUSES and now - refill.status_at >= self.ttl:
                by_provider[refill.provider].append(refill)
        for provider, group in by_provider.items():
            if provider not in self.providers or await self.health.cooling(provider, READS):
                continue
            try:
                replies = await self.providers[provider].refill_statuses([r.upstream_refill for r in group])
            except UpstreamError as exc:
                log.warning("refill statuses from %s not refreshed: %s", provider, exc.reason)
                await self.health.read_failed(provider, exc)
                continue
            for refill in group:
                status = replies.get(refill.upstream_refill)
                fields: dict[str, Field] = {"status_at": repr(now)}
                if isinstance(status, str):
                    fields["status"] = status
                await self.redis.hset(self.keys.refill(client, refill.id), mapping=fields)
        return await self.get_many(client, list(refills))
