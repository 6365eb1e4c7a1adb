"""Metrics in Prometheus' format, with prometheus-client.

Two kinds:

- counted in this process: downstream requests by action and outcome, with
  latency; upstream calls by provider, action and outcome (ok, refused,
  unreachable, not_sent, unknown), with latency; rate-budget waits; rounds
  of background work, each step's time and failures, the last round's time;
- read from Redis at scrape time (`SharedState`), so every replica reports
  the same: orders in each working set (alert on `smm_proxy_orders_unknown`
  and `smm_proxy_orders_attention`), order outcomes, money charged,
  refunded, topped up and paid upstream (deployment currency), and per
  provider its ejections (`smm_proxy_provider_ejected`, and the older name
  `smm_proxy_provider_cooling`), block, balance as last read (and its age),
  whether it is low on funds, catalog age, price changes held for an
  operator and the services it lists with a price we cannot use.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy.keys import Keys
from proxy.money import from_minor
from proxy.orders import states
from proxy.orders.book import OrderBook
from proxy.providers.health import Health
from proxy.providers.listings import Listings
from proxy.store import Store, text_map

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Outcomes tallied by name beside the counted transitions (`Tallies.tally`).
TALLIED = ("duplicate", "attention", "claimed_twice", "stuck", "id_in_use")
MONEY = {"charge": "charged", "refund": "refunded", "topup": "topups", "paid": "paid_upstream"}
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SYNC_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)


class Tallies:
    """The counts behind the shared metrics, kept in Redis.

    The transition script counts every transition that changes an order's
    state (or asks for an operator) in the client's totals, beside the money
    moved by kind; `counts` turns those into outcomes (`states.OUTCOMES`). A
    few rarer outcomes are tallied by name beside them (`tally`: a retried
    add, an order sent to the operator, an upstream ID answered twice), best
    effort: a count is not money.
    """

    def __init__(self, redis: Store, keys: Keys, clients: Callable[[], Awaitable[list[str]]]) -> None:
        self.redis = redis
        self.keys = keys
        self.clients = clients

    async def tally(self, name: str, amount: int = 1) -> None:
        try:
            await self.redis.hincrby(self.keys.metrics, name, amount)
        except Exception as exc:
            log.warning("counter %s not counted: %s", name, type(exc).__name__)

    async def counts(self) -> dict[str, int]:
        """Order outcomes ("orders_placed", ...) and the tallies beside them."""
        counted = {k: int(v) for k, v in text_map(await self.redis.hgetall(self.keys.metrics)).items()}
        transitions = await self.totals_raw()
        for outcome, reached_by in states.OUTCOMES.items():
            counted[f"orders_{outcome}"] = sum(transitions.get(states.counter(*t), 0) for t in reached_by)
        return counted

    async def totals_raw(self) -> dict[str, int]:
        """Every client's running totals, summed (minor units, and counts)."""
        clients = await self.clients()
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in clients:
                pipe.hgetall(self.keys.totals(name))
            replies = await pipe.execute()
        summed: dict[str, int] = {}
        for totals in replies:
            for kind, amount in totals.items():
                summed[kind] = summed.get(kind, 0) + int(amount)
        return summed

    async def totals(self) -> dict[str, Decimal]:
        """Every client's money by kind, summed: charge, refund, topup, paid (upstream)."""
        return {
            kind: from_minor(n) for kind, n in (await self.totals_raw()).items() if not kind.startswith(states.COUNTED)
        }


class SharedState(Collector):
    """What lives in Redis, as read by `refresh` just before a scrape.

    `currencies` names the providers and the currency each bills in;
    `currency` is the deployment's.
    """

    def __init__(
        self,
        book: OrderBook,
        tallies: Tallies,
        health: Health,
        listings: Listings,
        currencies: Mapping[str, str],
        currency: str,
    ) -> None:
        self.book = book
        self.tallies = tallies
        self.health = health
        self.listings = listings
        self.currencies = currencies
        self.currency = currency
        self.families: list[Metric] = []

    async def refresh(self) -> None:
        book, health = self.book, self.health
        families: list[Metric] = []
        for name, working_set in states.WORKING_SETS.items():
            gauge = GaugeMetricFamily(f"smm_proxy_orders_{name}", working_set.meaning)
            gauge.add_metric([], await book.count(name))
            families.append(gauge)
        counters = await self.tallies.counts()
        outcomes = CounterMetricFamily("smm_proxy_orders", "Orders by outcome of their placement.", labels=["outcome"])
        for outcome in (*states.OUTCOMES, *TALLIED):
            outcomes.add_metric([outcome], counters.get(f"orders_{outcome}", 0))
        families.append(outcomes)
        totals = await self.tallies.totals()
        money = CounterMetricFamily(
            "smm_proxy_money", "Money moved, in the deployment currency.", labels=["kind", "currency"]
        )
        for kind, name in MONEY.items():
            money.add_metric([name, self.currency], float(totals.get(kind, 0)))
        families.append(money)
        names = list(self.currencies)
        cooling = GaugeMetricFamily(
            "smm_proxy_provider_cooling",
            "1 while a provider is ejected (the older name of smm_proxy_provider_ejected).",
            labels=["provider", "scope"],
        )
        ejected = GaugeMetricFamily(
            "smm_proxy_provider_ejected",
            "1 while a provider is ejected for failures in a row, for orders or reads.",
            labels=["provider", "scope"],
        )
        low = GaugeMetricFamily(
            "smm_proxy_provider_low_balance",
            "1 while a provider's balance is below its low_balance: it gets no new orders.",
            labels=["provider"],
        )
        balance_age = GaugeMetricFamily(
            "smm_proxy_provider_balance_age_seconds", "Age of a provider's last balance reading.", labels=["provider"]
        )
        held = GaugeMetricFamily(
            "smm_proxy_price_changes_held",
            "Upstream services whose price change waits for an operator's approval.",
            labels=["provider"],
        )
        blocked = GaugeMetricFamily(
            "smm_proxy_provider_blocked",
            "1 while a provider is out of routing (it bills in another currency).",
            labels=["provider"],
        )
        balance = GaugeMetricFamily(
            "smm_proxy_provider_balance", "A provider's balance as last read.", labels=["provider", "currency"]
        )
        age = GaugeMetricFamily(
            "smm_proxy_catalog_age_seconds", "Age of a provider's service list.", labels=["provider"]
        )
        disabled = GaugeMetricFamily(
            "smm_proxy_upstream_services_disabled",
            "Services a provider lists with a price we cannot use (not a number, negative, too large): not sold.",
            labels=["provider"],
        )
        cooldowns = await health.cooldowns(names)
        listings = await self.listings.ages(names)
        now = health.clock()
        for name in names:
            state = await health.state(name)
            for scope, cooled in cooldowns[name].items():
                cooling.add_metric([name, scope], int(cooled))
                ejected.add_metric([name, scope], int(cooled))
            blocked.add_metric([name], int(bool(state.blocked)))
            low.add_metric([name], int(state.low))
            if state.funds_at:
                balance_age.add_metric([name], max(0.0, now - state.funds_at))
            held.add_metric([name], len(await self.listings.held(name)))
            if state.balance:
                balance.add_metric([name, state.currency or self.currencies[name]], float(state.balance))
            if (listed := listings.get(name)) is not None:
                age.add_metric([name], listed)
            listing = await self.listings.cached(name)
            disabled.add_metric([name], len(listing.disabled) if listing else 0)
        families += [cooling, ejected, blocked, low, balance, balance_age, age, held, disabled]
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


class CacheState(Collector):
    """The tracked cache of hot reads (`proxy.tracking`): whether Redis tracks it
    now, and its counters, read at each scrape."""

    def __init__(self, state: Callable[[], tuple[bool, Mapping[str, int]]]) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        tracking, stats = self.state()
        gauge = GaugeMetricFamily(
            "smm_proxy_cache_tracking", "1 while Redis tracks the cache of hot reads; 0: every read goes to Redis."
        )
        gauge.add_metric([], 1 if tracking else 0)
        yield gauge
        events = CounterMetricFamily(
            "smm_proxy_cache_events",
            "The cache of hot reads: hits, loads, values kept or discarded, keys invalidated, flushes, lost tracking.",
            labels=["event"],
        )
        for event, count in stats.items():
            events.add_metric([event], count)
        yield events


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "smm_proxy_requests",
            "Downstream API requests by action and outcome.",
            ["action", "outcome"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "smm_proxy_request_seconds",
            "Downstream API request latency.",
            ["action"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self.upstream_calls = Counter(
            "smm_proxy_upstream_calls",
            "Calls to upstream panels by provider, action and outcome.",
            ["provider", "action", "outcome"],
            registry=self.registry,
        )
        self.upstream_seconds = Histogram(
            "smm_proxy_upstream_seconds",
            "Upstream call latency.",
            ["provider", "action"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.budget_waits = Counter(
            "smm_proxy_budget_waits",
            "Calls that waited for a provider's next minute of budget.",
            ["provider"],
            registry=self.registry,
        )
        self.sync_rounds = Counter("smm_proxy_sync_rounds", "Rounds of background work done.", registry=self.registry)
        self.sync_seconds = Histogram(
            "smm_proxy_sync_step_seconds",
            "Time each step of the background work took.",
            ["step"],
            buckets=SYNC_BUCKETS,
            registry=self.registry,
        )
        self.sync_failures = Counter(
            "smm_proxy_sync_step_failures",
            "Steps of the background work that failed (tried again next round).",
            ["step"],
            registry=self.registry,
        )
        self.sync_last_round = Gauge(
            "smm_proxy_sync_last_round_timestamp_seconds",
            "When this process last finished a round of background work (alert when it stops moving).",
            registry=self.registry,
        )
        self.price_changes = Counter(
            "smm_proxy_price_changes",
            "Upstream price changes by provider and outcome: followed (within the gate) or held.",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.shared: SharedState | None = None

    def share(self, shared: SharedState) -> None:
        """Report what lives in Redis too, read at each scrape."""
        self.shared = shared
        self.registry.register(shared)

    def watch_cache(self, state: Callable[[], tuple[bool, Mapping[str, int]]]) -> None:
        """Report the tracked cache of hot reads too (`CacheState`)."""
        self.registry.register(CacheState(state))

    def request(self, action: str, outcome: str, seconds: float) -> None:
        # On every request: each label set's children looked up once (the client
        # library validates and locks on every `labels` call).
        children = self._request_children.get((action, outcome))
        if children is None:
            children = self._request_children[(action, outcome)] = (
                self.requests.labels(action, outcome),
                self.request_seconds.labels(action),
            )
        children[0].inc()
        children[1].observe(seconds)

    def upstream_call(self, provider: str, action: str, outcome: str, seconds: float) -> None:
        self.upstream_calls.labels(provider, action, outcome).inc()
        self.upstream_seconds.labels(provider, action).observe(seconds)

    def price_change(self, provider: str, outcome: str) -> None:
        self.price_changes.labels(provider, outcome).inc()

    def budget_wait(self, provider: str) -> None:
        self.budget_waits.labels(provider).inc()

    def sync_step(self, step: str, seconds: float, ok: bool) -> None:
        self.sync_seconds.labels(step).observe(seconds)
        if not ok:
            self.sync_failures.labels(step).inc()

    def sync_round(self, seconds: float) -> None:
        self.sync_rounds.inc()
        self.sync_last_round.set_to_current_time()

    async def render(self) -> bytes:
        if self.shared is not None:
            await self.shared.refresh()
        return generate_latest(self.registry)
