"""Everything a running router holds, built once from settings and config.

The HTTP app and the CLI both work through a `Runtime`: it owns the Redis
connection and one upstream client per provider, and wires the domain
objects together, each given the collaborators it uses. It only wires:
what each object does lives in its own module. Tests build one with
injected transports and clocks instead of patching anything.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal

import httpx

from proxy.accounts.clients import Accounts
from proxy.accounts.fair_use import FairUse, storage_for
from proxy.accounts.ledger import Ledger
from proxy.catalog.catalog import LiveCatalog
from proxy.config import Config, Provider
from proxy.keys import Keys
from proxy.ops.admins import Admins
from proxy.ops.answers import ConfigReload
from proxy.ops.audit import AuditLog
from proxy.ops.events import EventLog, Webhook
from proxy.ops.metrics import Metrics, SharedState, Tallies
from proxy.ops.operators import Operators
from proxy.ops.reports import order_cost
from proxy.ops.sync import Sync
from proxy.orders.actions import OrderActions
from proxy.orders.archive import Archive
from proxy.orders.claims import Claims
from proxy.orders.due import DueIndex
from proxy.orders.leases import Leases
from proxy.orders.observe import OrderWatch
from proxy.orders.refills import Refills
from proxy.orders.routing import Router, RoutingRules
from proxy.orders.statuses import StatusRefresher
from proxy.orders.tracked import TrackedBook
from proxy.orders.verdicts import Verdicts
from proxy.providers.budget import RequestBudget
from proxy.providers.calls import CallStats
from proxy.providers.funds import Funds
from proxy.providers.health import Health, thresholds_from
from proxy.providers.listings import Listings
from proxy.providers.outcomes import Outcomes
from proxy.providers.refusals import Refusals
from proxy.providers.upstream import ProviderClient
from proxy.settings import Settings
from proxy.store import Store, connect
from proxy.tracking import TrackedCache

log = logging.getLogger(__name__)


class Runtime:
    def __init__(
        self,
        settings: Settings,
        config: Config,
        redis: Store,
        *,
        transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.redis = redis
        self.clock = clock
        self.keys = Keys(settings.key_prefix)
        # What every read request reads, held in memory while Redis tracks it
        # (read through until `start`, and whenever tracking is lost; never on a cluster).
        self.reads = TrackedCache(redis, self.keys.hot, name=f"smm-proxy:{settings.key_prefix}")
        self.ledger = Ledger(redis, self.keys, self.reads)
        self.accounts = Accounts(redis, self.keys, self.ledger, config.currency, self.reads)
        transports = transports or {}
        # `limits`' storage on our Redis: fair use counts there, and so do the dashboard's logins.
        self.limits_storage = storage_for(redis, self.keys)
        self.fair_use = FairUse(self.limits_storage, config.fair_use, self.keys.limits, redis=redis)
        self.metrics = Metrics()
        self.metrics.watch_cache(lambda: (self.reads.healthy, self.reads.stats.as_dict()))
        self.calls = CallStats(redis, self.keys, clock)
        self.events = EventLog(redis, self.keys, settings.events_length)
        emit = self.events.emit
        self.currencies = {name: provider.currency for name, provider in config.providers.items()}
        self.funds = Funds(
            redis, self.keys, {n: p.low_balance for n, p in config.providers.items()}, self.currencies, clock, emit
        )
        self.health = Health(
            redis, self.keys, thresholds_from(config, settings.upstream_cooldown), self.funds, clock, emit
        )
        self.outcomes = Outcomes(redis, self.keys, config.routing.outcome_window)
        self.transports = dict(transports)
        self.background_tasks: set[asyncio.Task[object]] = set()
        self.providers = {name: provider_client(self, name, provider) for name, provider in config.providers.items()}
        self.listings = Listings(
            redis,
            self.keys,
            self.providers,
            settings.catalog_ttl,
            clock,
            max_age=settings.catalog_max_age,
            change_percent=price_limits(config),
            emit=emit,
            on_price_change=self.metrics.price_change,
        )
        self.catalog = LiveCatalog(
            config,
            self.listings,
            self.health,
            recheck=settings.catalog_recheck,
            max_age=settings.catalog_max_age,
            clock=clock,
        )
        self.leases = Leases(redis, self.keys, settings.order_lease)
        self.due = DueIndex(redis, self.keys)
        self.book = TrackedBook(redis, self.keys, self.leases, self.due, clock, cache=self.reads)
        self.claims = Claims(self.book)
        self.verdicts = Verdicts(self.book, self.claims, clock)
        self.tallies = Tallies(redis, self.keys, self.book.clients)
        self.router = Router(
            self.book,
            self.leases,
            self.claims,
            self.providers,
            self.health,
            self.currencies,
            self.tallies.tally,
            outcomes=self.outcomes,
            rules=routing_rules(config),
            rng=rng,
            emit=emit,
        )
        self.archive = Archive(self.book, settings.archive_dir, cost=lambda order: order_cost(self.config, order))
        self.watch = OrderWatch(
            self.outcomes,
            self.book,
            stuck_after=config.routing.stuck_after,
            stuck_after_by_service={s.id: s.stuck_after for s in config.services if s.stuck_after},
            tally=self.tallies.tally,
            emit=emit,
            clock=clock,
        )
        self.refresher = StatusRefresher(
            self.book,
            self.due,
            self.providers,
            self.health,
            settings.status_ttl,
            clock,
            currencies=self.currencies,
            tally=self.tallies.tally,
            tolerance_percent=config.settlement.charge_tolerance_percent,
            unsettled_reads=config.settlement.unsettled_reads,
            slow_read=config.settlement.slow_read_minutes * 60,
            recheck_final=config.settlement.recheck_final_hours * 3600,
            on_status=self.watch,
        )
        self.refills = Refills(redis, self.keys, self.providers, self.health, settings.status_ttl, clock)
        self.actions = OrderActions(
            config.currency,
            config.settlement.subscription_hold_posts,
            self.catalog.current,
            self.book,
            self.router,
            self.refresher,
            self.refills,
            self.providers,
            settings.duplicate_window,
            self.tallies.tally,
            add_wait=settings.add_wait,
            max_old_posts=config.settlement.max_old_posts,
            fair_use=self.fair_use,
            terms=self.accounts.terms,
            emit=emit,
        )
        self.metrics.share(
            SharedState(self.book, self.tallies, self.health, self.listings, self.currencies, config.currency)
        )
        self.audit = AuditLog(
            redis, self.keys, settings.audit_secret.get_secret_value() if settings.audit_secret else None, clock
        )
        self.admins = Admins(redis, self.keys, clock)
        self.operators = Operators(
            config=config,
            accounts=self.accounts,
            ledger=self.ledger,
            book=self.book,
            claims=self.claims,
            verdicts=self.verdicts,
            archive=self.archive,
            health=self.health,
            listings=self.listings,
            providers=self.providers,
            events=self.events,
            outcomes=self.outcomes,
            calls=self.calls,
            reload=self.reload,
            audit=self.audit,
            admins=self.admins,
            missing_keys=config.missing_keys,
            config_path=str(settings.config),
        )
        self.webhook = (
            Webhook(redis, self.keys, settings.webhook_url, settings.webhook_secret or "", transport=webhook_transport)
            if settings.webhook_url
            else None
        )
        self.sync = Sync(
            self.book,
            self.refresher,
            self.archive,
            self.health,
            self.providers,
            self.currencies,
            archive_after_days=settings.archive_after_days,
            check_interval=settings.provider_check_interval,
            webhook=self.webhook,
            observer=self.metrics,
        )

    async def start(self) -> None:
        """What a serving process starts before it takes requests: tracking the hot
        reads (it returns once the first attempt is made; until tracking is on,
        reads go to Redis)."""
        await self.reads.start()

    def observe_call(self, provider: str, action: str, outcome: str, seconds: float) -> None:
        """An upstream call ended: to the metrics, and to the last hour's counts in Redis."""
        self.metrics.upstream_call(provider, action, outcome, seconds)
        self.calls.record(provider, action, outcome, seconds)

    async def reload(self) -> ConfigReload:
        """Read the config file again (SIGHUP, the admin API); see `proxy.reload`."""
        from proxy.reload import reload_runtime

        return await reload_runtime(self)

    @classmethod
    def from_settings(cls, settings: Settings, config: Config) -> Runtime:
        if not settings.redis_url:
            raise RuntimeError("SMM_PROXY_REDIS_URL is not set")
        return cls(settings, config, connect(settings.redis_url, timeout=settings.redis_timeout))

    async def aclose(self, grace: float | None = None) -> None:
        """Close everything, within `grace` seconds (default: half the shutdown
        grace, the half a served router has left once its requests had theirs):
        orders being placed finish, or are handed over."""
        grace = self.settings.shutdown_grace / 2 if grace is None else grace
        for task in list(self.background_tasks):
            task.cancel()
        await self.actions.aclose(timeout=grace)
        for closing in (self.refresher.aclose(), self.listings.aclose(), self.calls.aclose()):
            await bounded(closing, CLOSE_SECONDS, "closing")
        if self.webhook is not None:
            await bounded(self.webhook.aclose(), CLOSE_SECONDS, "closing the webhook")
        for client in self.providers.values():
            await bounded(client.aclose(), CLOSE_SECONDS, f"closing {client.name}")
        await bounded(self.reads.aclose(), CLOSE_SECONDS, "closing the tracked cache")
        await bounded(self.redis.aclose(), CLOSE_SECONDS, "closing Redis")


# Seconds each of the last steps of a shutdown may take.
CLOSE_SECONDS = 1.0


async def bounded(work: Awaitable[object], seconds: float, what: str) -> None:
    """Await `work` for at most `seconds` (shutdown never hangs on a step)."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        log.warning("%s took longer than %s s; left behind", what, seconds)
    elif not task.cancelled() and (error := task.exception()) is not None:
        log.warning("%s failed: %s", what, type(error).__name__)


def routing_rules(config: Config) -> RoutingRules:
    return RoutingRules(
        max_ejected_percent=config.health.max_ejected_percent,
        explore_percent=float(config.routing.explore_percent),
        refusals=Refusals.from_config(config),
    )


def price_limits(config: Config) -> dict[str, Decimal]:
    """Each provider's price gate: its own percentage, else the config's."""
    return {
        name: p.price_change_percent if p.price_change_percent is not None else config.prices.change_percent
        for name, p in config.providers.items()
    }


def provider_client(runtime: Runtime, name: str, provider: Provider) -> ProviderClient:
    """The client for one provider of the config, wired to the runtime's health, budget and metrics."""
    return ProviderClient(
        name,
        provider.url,
        provider.key,
        timeout=provider.timeout.to_httpx(),
        request_format=provider.format,
        method=provider.method,
        transport=runtime.transports.get(name),
        max_connections=provider.max_connections,
        order_wait=provider.order_wait,
        observer=runtime.observe_call,
        on_read_ok=runtime.health.read_ok,
        reply_bytes=provider.reply_bytes.others,
        services_bytes=provider.reply_bytes.services,
        budget=(
            RequestBudget(
                runtime.redis,
                runtime.keys,
                name,
                provider.requests_per_minute,
                runtime.clock,
                on_wait=runtime.metrics.budget_wait,
                read_share_percent=provider.read_share_percent,
            )
            if provider.requests_per_minute
            else None
        ),
    )
