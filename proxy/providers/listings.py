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

Price changes pass a gate. Each new list is compared with the last: a rate
that moved within `change_percent` of its last approved rate is followed
(our price follows with the markup; logged and counted); one that moved
further is held: the catalog keeps pricing it at the last approved rate
(routing never sells it below its current cost all the same), an event
tells operators, and it waits for `approve` (`smm-proxy providers approve`).
Services that vanish from a list, and that come back, are reported too. A
price we cannot use is not a price change: that service is disabled (above,
and an event says so), never held for approval, and when it is listed at a
usable rate again that rate passes the gate against its last usable one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import TypedDict

from proxy.errors import UpstreamError
from proxy.keys import Keys
from proxy.logs import Emit, no_events
from proxy.providers.replies import DisabledService, UpstreamService
from proxy.providers.upstream import ProviderClient
from proxy.store import Field, Store, text, text_map

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
    held: Mapping[int, Decimal] = field(default_factory=dict)  # the approved rate of services whose change is held

    def age(self, now: float) -> float:
        return now - self.fetched_at


# One change of a service's rate, as operators see it ("from" is a Python
# keyword: the class is spelled the functional way).
PriceChange = TypedDict("PriceChange", {"at": float, "service": int, "from": str, "to": str})
# A held change approved: the rate our price was made from, and the one it follows now.
ApprovedPrice = TypedDict("ApprovedPrice", {"service": int, "from": str, "to": str})


class HeldPrice(TypedDict):
    """A change beyond the gate, waiting for an operator (stored as JSON per service)."""

    approved: str  # the last approved rate: our price is still made from it
    proposed: str  # the provider's new rate
    at: float  # since when it has waited


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
        redis: Store,
        keys: Keys,
        providers: Mapping[str, ProviderClient],
        ttl: float,
        clock: Callable[[], float] = time.time,
        max_age: float = float("inf"),
        *,
        change_percent: Mapping[str, Decimal] | None = None,
        emit: Emit = no_events,
        on_price_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self.redis = redis
        self.change_percent = dict(change_percent or {})
        self.emit = emit
        self.on_price_change = on_price_change
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
        held = {service: Decimal(h["approved"]) for service, h in (await self.held(provider)).items()}
        listing = Listing(
            provider,
            float(fetched_at),
            _decode(text(services)),
            text(fetch),
            disabled=tuple(DisabledService(**item) for item in json.loads(text(disabled or "[]"))),
            held=held,
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
        if before is not None:  # the gate first: a new list is never sold from before its changes are judged
            await self._gate(provider, before, services, disabled)
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

    # -- the price gate ----------------------------------------------------------

    async def held(self, provider: str) -> dict[int, HeldPrice]:
        """Services whose price change waits for an operator: approved and proposed rate, since when."""
        raw = text_map(await self.redis.hgetall(self.keys.held_prices(provider)))
        held: dict[int, HeldPrice] = {int(service): json.loads(value) for service, value in raw.items()}
        return held

    async def _gate(
        self, provider: str, before: Listing, services: list[UpstreamService], disabled: Sequence[DisabledService]
    ) -> None:
        """Judge a new list's rates against the last approved ones (see the
        module's docstring). A service now listed with a price we cannot use
        is disabled, not a price change: it is not held for approval, and its
        last usable rate stays the base its next usable rate is judged against."""
        limit = self.change_percent.get(provider, Decimal(20))
        held = await self.held(provider)
        removed = {
            int(k): Decimal(v)
            for k, v in text_map(await self.redis.hgetall(self.keys.removed_services(provider))).items()
        }
        now = self.clock()
        hold: dict[str, Field] = {}  # service -> its HeldPrice as JSON
        release: list[int] = []
        back: list[int] = []
        unusable = {item.service: item for item in disabled}
        was_unusable = {item.service for item in before.disabled}
        for service in services:
            old = before.services.get(service.service)
            base: Decimal | None = old.rate if old is not None else removed.get(service.service)
            if old is None and service.service in removed:
                back.append(service.service)
            if old is None and service.service in removed and service.service not in was_unusable:
                await self.emit(
                    "service.readded",
                    provider,
                    f"{provider} lists service {service.service} again, at {service.rate} (was {base})",
                    service=service.service,
                    rate=str(service.rate),
                    was=str(base),
                )
            if base is None:  # a new service: nothing to compare with
                continue
            approved = Decimal(held[service.service]["approved"]) if service.service in held else base
            if service.rate == approved:
                if service.service in held:
                    release.append(service.service)
                continue
            change = abs(service.rate - approved) * 100 / approved if approved > 0 else Decimal("Infinity")
            if change <= limit:
                if service.service in held:
                    release.append(service.service)
                if service.rate != base:
                    log.info(
                        "provider %s: service %s %s -> %s (%+.1f%%), followed",
                        provider,
                        service.service,
                        base,
                        service.rate,
                        (service.rate - base) * 100 / base if base else 0,
                    )
                    self._count(provider, "followed")
                continue
            previous = held.get(service.service)
            waiting: HeldPrice = {
                "approved": str(approved),
                "proposed": str(service.rate),
                "at": previous["at"] if previous and previous["proposed"] == str(service.rate) else now,
            }
            hold[str(service.service)] = json.dumps(waiting)
            if previous is None or previous["proposed"] != str(service.rate):
                self._count(provider, "held")
                log.warning(
                    "PRICE CHANGE HELD: provider %s service %s %s -> %s (beyond %s%%); sold at the approved "
                    "rate, never below cost, until an operator approves",
                    provider,
                    service.service,
                    approved,
                    service.rate,
                    limit,
                )
                await self.emit(
                    "price.held",
                    provider,
                    f"{provider} service {service.service}: {approved} -> {service.rate} is beyond "
                    f"{limit}%: held until approved",
                    service=service.service,
                    approved=str(approved),
                    proposed=str(service.rate),
                )
        listed = {service.service for service in services}
        gone = {
            number: old.rate
            for number, old in before.services.items()
            if number not in listed and number not in unusable
        }
        # Turned unusable: its last usable rate is kept (with the removed ones') as the gate's base.
        spoilt = {number: old.rate for number, old in before.services.items() if number in unusable}
        for number in spoilt:
            item = unusable[number]
            await self.emit(
                "service.disabled",
                provider,
                f"{provider} service {number} not sold: {item.reason} (rate {item.rate}, was {spoilt[number]})",
                service=number,
                reason=item.reason,
                rate=item.rate,
                was=str(spoilt[number]),
            )
        for number, rate in gone.items():
            await self.emit(
                "service.removed",
                provider,
                f"{provider} no longer lists service {number} (last at {rate})",
                service=number,
                rate=str(rate),
            )
        async with self.redis.pipeline(transaction=False) as pipe:
            if hold:
                pipe.hset(self.keys.held_prices(provider), mapping=hold)
            stale = [s for s in release if str(s) not in hold] + [s for s in held if s in gone]
            if stale:
                pipe.hdel(self.keys.held_prices(provider), *map(str, stale))
            if gone or spoilt:
                pipe.hset(
                    self.keys.removed_services(provider),
                    mapping={str(k): str(v) for k, v in (gone | spoilt).items()},
                )
            if back:
                pipe.hdel(self.keys.removed_services(provider), *map(str, back))
            await pipe.execute()

    def _count(self, provider: str, outcome: str) -> None:
        if self.on_price_change is not None:
            self.on_price_change(provider, outcome)

    async def approve(self, provider: str, services: Sequence[int] = ()) -> list[ApprovedPrice]:
        """Approve held price changes (all of the provider's, or those of
        `services`); what was approved. The catalog follows at once."""
        held = await self.held(provider)
        chosen = [s for s in (services or list(held)) if s in held]
        if not chosen:
            return []
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.held_prices(provider), *map(str, chosen))
            pipe.hset(self.keys.catalog(provider), "fetch", uuid.uuid4().hex)  # every catalog rebuilds
            await pipe.execute()
        return [{"service": s, "from": held[s]["approved"], "to": held[s]["proposed"]} for s in chosen]

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

    async def price_changes(self, provider: str, limit: int = PRICE_CHANGES_KEPT) -> list[PriceChange]:
        """The provider's latest rate changes, newest first."""
        items = await self.redis.lrange(self.keys.price_changes(provider), 0, limit - 1)
        changes: list[PriceChange] = [json.loads(item) for item in items]
        return changes

    async def wait_for_refreshes(self) -> None:
        """Wait for the background refreshes under way."""
        await asyncio.gather(*self._refreshing.values(), return_exceptions=True)

    async def aclose(self) -> None:
        tasks = [t for t in self._refreshing.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
