"""Provider service lists, cached in Redis, with the last good list kept.

A list is fresh for `ttl` seconds. A stale list is served at once while one
refresh runs in the background; past `max_age` it is refreshed before it is
served. A provider that is down keeps its last good list (the catalog stops
selling from one older than `max_age`: its prices are no longer known). Only
a provider never fetched has no list at all. A service listed with a price
we cannot use (not a number, negative, too large for any charge) is kept
apart (`Listing.disabled`): not sold, logged, counted, shown to operators;
the rest of the list sells as usual. One
refresh per provider runs at a time in this process, and a short Redis
lease keeps other instances from fetching the same list at the same moment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal

import redis.asyncio as aioredis

from proxy.errors import UpstreamError
from proxy.providers.replies import DisabledService, UpstreamService
from proxy.providers.upstream import ProviderClient
from proxy.store import Keys

log = logging.getLogger(__name__)

LEASE_SECONDS = 30
PRICE_CHANGES_KEPT = 50
RETRY_AFTER_FAILURE = 30.0


@dataclass(frozen=True)
class Listing:
    """One provider's service list as last fetched."""

    provider: str
    fetched_at: float
    services: Mapping[int, UpstreamService]
    fetch: str = ""  # names one fetch: two fetches can share a clock reading
    disabled: tuple[DisabledService, ...] = ()  # listed with a price we cannot use: not sold

    def age(self, now: float) -> float:
        return now - self.fetched_at


def _encode(services: list[UpstreamService]) -> str:
    return json.dumps([{**asdict(s), "rate": str(s.rate)} for s in services])


def _decode(text: str) -> dict[int, UpstreamService]:
    services = {}
    for item in json.loads(text):
        service = UpstreamService(**{**item, "rate": Decimal(item["rate"])})
        services[service.service] = service
    return services


class Listings:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        providers: Mapping[str, ProviderClient],
        ttl: float,
        clock: Callable[[], float] = time.time,
        max_age: float = float("inf"),
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.providers = providers
        self.ttl = ttl
        self.max_age = max_age
        self.clock = clock
        self._parsed: dict[str, Listing] = {}
        self._refreshing: dict[str, asyncio.Task[Listing | None]] = {}
        self._failed_at: dict[str, float] = {}
        # After a failed fetch, wait this long before asking that provider again.
        self.retry_after = min(ttl, RETRY_AFTER_FAILURE)

    async def get(self, provider: str) -> Listing | None:
        """The provider's list: fresh, else stale (refreshing behind), else fetched now."""
        listing = await self.cached(provider)
        if listing is None:
            return await self.refresh(provider) if self._may_fetch(provider) else None
        age = listing.age(self.clock())
        if age >= self.ttl and self._may_fetch(provider):
            if age >= self.max_age:
                return await self.refresh(provider)
            self._start_refresh(provider)
        return listing

    def _may_fetch(self, provider: str) -> bool:
        """False for a while after a failed fetch, so a dead provider is not hammered."""
        failed_at = self._failed_at.get(provider)
        return failed_at is None or self.clock() - failed_at >= self.retry_after

    async def all(self) -> dict[str, Listing | None]:
        names = list(self.providers)
        found = await asyncio.gather(*(self.get(name) for name in names))
        return dict(zip(names, found, strict=True))

    async def ages(self, providers: Iterable[str]) -> dict[str, float | None]:
        """Seconds since each provider's list was fetched (None: never)."""
        names = list(providers)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(self.keys.catalog(name), "fetched_at")
            replies = await pipe.execute()
        now = self.clock()
        return {name: None if at is None else now - float(at) for name, at in zip(names, replies, strict=True)}

    async def cached(self, provider: str) -> Listing | None:
        """The list in Redis, parsed once per fetch in this process."""
        key = self.keys.catalog(provider)
        fetch = await self.redis.hget(key, "fetch")
        if fetch is None:
            return None
        known = self._parsed.get(provider)
        if known is not None and known.fetch == fetch:
            return known
        fetch, fetched_at, services, disabled = await self.redis.hmget(
            key, ["fetch", "fetched_at", "services", "disabled"]
        )
        if fetch is None or fetched_at is None or services is None:
            return None
        listing = Listing(
            provider,
            float(fetched_at),
            _decode(str(services)),
            str(fetch),
            tuple(DisabledService(**item) for item in json.loads(disabled or "[]")),
        )
        self._parsed[provider] = listing
        return listing

    def _start_refresh(self, provider: str) -> asyncio.Task[Listing | None]:
        task = self._refreshing.get(provider)
        if task is None or task.done():
            task = asyncio.create_task(self._refresh(provider), name=f"refresh-listing-{provider}")
            self._refreshing[provider] = task
        return task

    async def refresh(self, provider: str) -> Listing | None:
        """Fetch now (joining a refresh under way); the cached list if that fails."""
        return await asyncio.shield(self._start_refresh(provider))

    async def _refresh(self, provider: str) -> Listing | None:
        lease = self.keys.catalog_lock(provider)
        if not await self.redis.set(lease, "1", nx=True, ex=LEASE_SECONDS):
            # Another instance is fetching it; wait a little for its result.
            for _ in range(LEASE_SECONDS * 10):
                await asyncio.sleep(0.1)
                if not await self.redis.exists(lease):
                    break
            return await self.cached(provider)
        try:
            services, disabled = await self.providers[provider].listing()
            if not services and await self.cached(provider) is not None:
                # A panel that lists nothing is more likely broken than empty.
                log.warning("service list of %s came back empty; keeping the last good one", provider)
                self._failed_at[provider] = self.clock()
            else:
                await self.store(provider, services, disabled)
                self._failed_at.pop(provider, None)
        except UpstreamError as exc:
            log.warning("service list of %s not refreshed: %s", provider, exc.reason)
            self._failed_at[provider] = self.clock()
        finally:
            await self.redis.delete(lease)
        return await self.cached(provider)

    async def store(
        self, provider: str, services: list[UpstreamService], disabled: Sequence[DisabledService] = ()
    ) -> None:
        """Keep a fetched list; the services listed with a price we cannot use
        are kept apart (not sold; each logged when it first appears)."""
        before = await self.cached(provider)
        await self.redis.hset(
            self.keys.catalog(provider),
            mapping={
                "fetched_at": repr(self.clock()),
                "services": _encode(services),
                "disabled": json.dumps([asdict(d) for d in disabled], ensure_ascii=False),
                "fetch": uuid.uuid4().hex,
            },
        )
        known = {d.service for d in before.disabled} if before is not None else set()
        for item in disabled:
            if item.service not in known:
                log.warning(
                    "provider %s: service %s not sold, %s (rate %s); its other services sell as usual",
                    provider,
                    item.service,
                    item.reason,
                    item.rate,
                )
        if before is not None:
            await self._note_price_changes(provider, before, services)

    async def _note_price_changes(self, provider: str, before: Listing, services: list[UpstreamService]) -> None:
        """Keep the last PRICE_CHANGES_KEPT rate changes of a provider, for operators."""
        changes = [
            json.dumps({"at": self.clock(), "service": s.service, "from": str(old.rate), "to": str(s.rate)})
            for s in services
            if (old := before.services.get(s.service)) is not None and old.rate != s.rate
        ]
        if changes:
            key = self.keys.price_changes(provider)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.lpush(key, *changes)
                pipe.ltrim(key, 0, PRICE_CHANGES_KEPT - 1)
                await pipe.execute()
            log.info("provider %s changed %d prices", provider, len(changes))

    async def price_changes(self, provider: str, limit: int = PRICE_CHANGES_KEPT) -> list[dict[str, object]]:
        """The provider's latest rate changes, newest first."""
        return [json.loads(item) for item in await self.redis.lrange(self.keys.price_changes(provider), 0, limit - 1)]

    async def wait_for_refreshes(self) -> None:
        """Wait for the background refreshes under way."""
        await asyncio.gather(*self._refreshing.values(), return_exceptions=True)

    async def aclose(self) -> None:
        tasks = [t for t in self._refreshing.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
