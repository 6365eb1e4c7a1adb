"""Everything a running router holds, built once from settings and config.

The HTTP app and the CLI both work through a `Runtime`: it owns the Redis
connection, one upstream client per provider, and the domain objects
(accounts, ledger, listings, catalog). Tests build one with injected
transports and clocks instead of patching anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import httpx
import redis.asyncio as aioredis

from proxy.accounts.clients import Accounts
from proxy.accounts.ledger import Ledger
from proxy.catalog.catalog import Catalog, build_catalog
from proxy.config import Config
from proxy.ops.metrics import Metrics, Tallies
from proxy.orders.archive import Archive
from proxy.orders.book import OrderBook
from proxy.orders.claims import Claims
from proxy.orders.desk import Desk
from proxy.orders.due import DueIndex
from proxy.orders.leases import Leases
from proxy.orders.refills import Refills
from proxy.orders.routing import Router
from proxy.orders.statuses import StatusRefresher
from proxy.orders.verdicts import Verdicts
from proxy.providers.budget import RequestBudget
from proxy.providers.health import Health
from proxy.providers.listings import Listings
from proxy.providers.upstream import ProviderClient
from proxy.settings import Settings
from proxy.store import Keys, connect

log = logging.getLogger(__name__)


class Runtime:
    def __init__(
        self,
        settings: Settings,
        config: Config,
        redis: aioredis.Redis,
        *,
        transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.config = config
        self.redis = redis
        self.clock = clock
        self.keys = Keys(settings.key_prefix)
        self.ledger = Ledger(redis, self.keys)
        self.accounts = Accounts(redis, self.keys, self.ledger, config.currency)
        transports = transports or {}
        self.metrics = Metrics()
        self.providers = {
            name: ProviderClient(
                name,
                provider.url,
                provider.key,
                timeout=provider.timeout.to_httpx(),
                request_format=provider.format,
                method=provider.method,
                transport=transports.get(name),
                max_connections=provider.max_connections,
                order_wait=provider.order_wait,
                observer=self.metrics.upstream_call,
                budget=(
                    RequestBudget(
                        redis, self.keys, name, provider.requests_per_minute, clock, on_wait=self.metrics.budget_wait
                    )
                    if provider.requests_per_minute
                    else None
                ),
            )
            for name, provider in config.providers.items()
        }
        self.currencies = {name: provider.currency for name, provider in config.providers.items()}
        self.listings = Listings(
            redis, self.keys, self.providers, settings.catalog_ttl, clock, max_age=settings.catalog_max_age
        )
        self._catalog: tuple[object, Catalog] | None = None
        self._catalog_checked = 0.0
        self._withheld: dict[str, str] = {}
        self.health = Health(redis, self.keys, settings.upstream_cooldown, clock)
        self.leases = Leases(redis, self.keys, settings.order_lease)
        self.due = DueIndex(redis, self.keys)
        self.book = OrderBook(redis, self.keys, self.leases, self.due, clock)
        self.claims = Claims(self.book)
        self.verdicts = Verdicts(self.book, self.claims)
        self.tallies = Tallies(redis, self.keys, self.book.clients)
        self.router = Router(
            self.book, self.leases, self.claims, self.providers, self.health, self.currencies, self.tallies.tally
        )
        self.archive = Archive(self.book, settings.archive_dir)
        self.refresher = StatusRefresher(
            self.book, self.due, self.providers, self.health, settings.status_ttl, clock,
            currencies=self.currencies, tally=self.tallies.tally,
            tolerance_percent=config.settlement.charge_tolerance_percent,
        )
        self.refills = Refills(redis, self.keys, self.providers, self.health, settings.status_ttl, clock)
        self.desk = Desk(
            config,
            self.catalog,
            self.book,
            self.router,
            self.refresher,
            self.refills,
            self.providers,
            settings.duplicate_window,
            self.tallies.tally,
        )

    @classmethod
    def from_settings(cls, settings: Settings, config: Config, **kwargs: object) -> Runtime:
        if not settings.redis_url:
            raise RuntimeError("SMM_PROXY_REDIS_URL is not set")
        return cls(settings, config, connect(settings.redis_url), **kwargs)  # type: ignore[arg-type]

    async def catalog(self) -> Catalog:
        """The merged catalog, rebuilt only when a provider's listing, or whether
        we may sell from it, changed. Reused without asking Redis for
        `catalog_recheck` seconds (a cache of a cache: prices and lists)."""
        now = time.monotonic()
        if self._catalog is not None and now - self._catalog_checked < self.settings.catalog_recheck:
            return self._catalog[1]
        self._catalog_checked = now
        listings = await self.listings.all()
        blocked = await self.health.blocked(listings)
        now = self.clock()
        withheld = {}
        for name, listing in listings.items():
            if name in blocked:
                withheld[name] = f"blocked: {blocked[name]}"
            elif listing is not None and listing.age(now) > self.settings.catalog_max_age:
                withheld[name] = f"its service list is {listing.age(now):.0f} s old, older than the {self.settings.catalog_max_age:.0f} s allowed"
        self._say_withheld(withheld)
        version = (tuple((name, listing and listing.fetch) for name, listing in listings.items()), tuple(withheld))
        if self._catalog is None or self._catalog[0] != version:
            usable = [name for name in listings if name not in withheld]
            self._catalog = (version, build_catalog(self.config, listings, usable))
        return self._catalog[1]

    def _say_withheld(self, withheld: dict[str, str]) -> None:
        """Log once when a provider's services stop or start being sold."""
        for name in withheld.keys() - self._withheld.keys():
            log.warning("services of provider %s are not sold: %s", name, withheld[name])
        for name in self._withheld.keys() - withheld.keys():
            log.warning("services of provider %s are sold again", name)
        self._withheld = withheld

    async def aclose(self) -> None:
        await self.desk.aclose()
        await self.refresher.aclose()
        await self.listings.aclose()
        for client in self.providers.values():
            await client.aclose()
        await self.redis.aclose()
