"""The merged catalog: provider listings become our services, priced.

A pure function of the config and the providers' listings. Names and
categories pass through `proxy.catalog.labels`: nothing in them points at a provider.
A route whose upstream price change is held for an operator
(`proxy.providers.listings`) is priced at its last approved cost; routing
still never sends an order where the current cost exceeds the charge. A local
service's routes are those whose upstream service exists in its provider's
latest listing, among the providers we may sell from (a listing too old to
price from, or a provider blocked for billing in another currency, is not);
a service left with no route is not offered, and one that lost its routes
only to those reasons is `unavailable` for now rather than unknown. Its name,
type, limits and price come from the primary route (the first available,
or the cheapest where the strategy says so) unless the config overrides
them.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

import orjson

from proxy.catalog.labels import Labels, provider_secrets
from proxy.catalog.pricing import Pricing, charge, client_rate, cost_in_currency, sell_rate
from proxy.config import Config, Markup
from proxy.errors import MoneyError
from proxy.money import format_amount, to_minor
from proxy.providers.health import Health
from proxy.providers.listings import Listing, Listings
from proxy.providers.replies import UpstreamService
from proxy.vocabulary import SERVICE_TYPES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouteOption:
    """One way to buy a local service: a provider's service and its cost."""

    provider: str
    upstream: UpstreamService
    cost: Decimal  # per 1000 (or flat), in the deployment currency, unrounded
    # What our price is made from: the cost, or the last approved one while a change is held.
    price_cost: Decimal | None = None

    @property
    def priced_at(self) -> Decimal:
        return self.cost if self.price_cost is None else self.price_cost


@dataclass(frozen=True)
class Service:
    id: int
    name: str
    type: str
    category: str
    rate: Decimal  # what we charge per 1000 (or flat), deployment currency
    min: int
    max: int
    refill: bool
    cancel: bool
    dripfeed: bool
    routes: tuple[RouteOption, ...]
    strategy: str = "ordered"

    @property
    def flat(self) -> bool:
        spec = SERVICE_TYPES.get(self.type)
        return spec is not None and spec.flat

    def public(self) -> dict[str, object]:
        """The `services` item, in the seeds' exact shape (with `dripfeed`
        where the service takes runs and interval, as panels that offer it do)."""
        item: dict[str, object] = {
            "service": self.id,
            "name": self.name,
            "type": self.type,
            "category": self.category,
            "rate": format_amount(self.rate),
            "min": str(self.min),
            "max": str(self.max),
            "refill": self.refill,
            "cancel": self.cancel,
        }
        spec = SERVICE_TYPES.get(self.type)
        if self.dripfeed and spec is not None and spec.dripfeed:
            item["dripfeed"] = True
        return item


@dataclass(frozen=True)
class Listed:
    """The `services` reply, encoded once per catalog: JSON, gzipped, and its ETag."""

    body: bytes
    gzipped: bytes
    etag: str


# Catalogs priced for clients' own terms kept per catalog (each is rebuilt when a listing changes).
PRICED_KEPT = 512


@dataclass(frozen=True)
class Catalog:
    services: Mapping[int, Service]
    unavailable: frozenset[int] = frozenset()  # ours, but not sellable now
    rate_decimals: int = 4

    def get(self, service_id: int) -> Service | None:
        return self.services.get(service_id)

    def priced(self, pricing: Pricing) -> Catalog:
        """This catalog at a client's prices (its markup, its custom rates),
        built once per catalog and pricing: its `listed` bytes are reused too."""
        if pricing.standard:
            return self
        kept = self._priced
        found = kept.get(pricing)
        if found is None:
            if len(kept) >= PRICED_KEPT:
                kept.clear()
            found = kept[pricing] = Catalog(
                {service_id: self._priced_service(service, pricing) for service_id, service in self.services.items()},
                self.unavailable,
                self.rate_decimals,
            )
        return found

    def _priced_service(self, service: Service, pricing: Pricing) -> Service:
        cost = service.routes[0].cost
        rate = client_rate(service.rate, cost, service.id, pricing, self.rate_decimals)
        custom = dict(pricing.rates).get(service.id)
        if custom is not None and rate != custom:
            log.warning(
                "a client's custom rate for service %s (%s) is below its cost now: sold at %s",
                service.id,
                format_amount(custom),
                format_amount(rate),
            )
        return dataclasses.replace(service, rate=rate)

    @functools.cached_property
    def _priced(self) -> dict[Pricing, Catalog]:
        return {}

    def public(self) -> list[dict[str, object]]:
        return [service.public() for service in self.services.values()]

    @functools.cached_property
    def listed(self) -> Listed:
        body = orjson.dumps(self.public())
        return Listed(body, gzip.compress(body, 6, mtime=0), '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


def _options(
    config: Config, listings: Mapping[str, Listing | None], routes: Iterable[tuple[str, int]]
) -> list[RouteOption]:
    options = []
    for provider, upstream_id in routes:
        listing = listings.get(provider)
        upstream = listing.services.get(upstream_id) if listing else None
        if upstream is None:
            continue
        currency = config.providers[provider].currency
        cost = cost_in_currency(config, upstream.rate, currency)
        approved = listing.held.get(upstream_id) if listing else None
        held = cost_in_currency(config, approved, currency) if approved is not None else None
        options.append(RouteOption(provider, upstream, cost, held))
    return options


@dataclass(frozen=True)
class Overrides:
    """What the config says of a service in place of what its upstream says
    (None: the upstream's). `name` and `category` may be templates (`labels`)."""

    name: str | None = None
    category: str | None = None
    type: str | None = None
    min: int | None = None
    max: int | None = None
    refill: bool | None = None
    cancel: bool | None = None


_T = TypeVar("_T")


def _or(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _service(
    config: Config,
    service_id: int,
    options: list[RouteOption],
    strategy: str,
    markup: Markup | None,
    overrides: Overrides,
    labels: Labels,
) -> Service:
    if strategy == "cheapest":
        options = sorted(options, key=lambda option: option.cost)
    primary = options[0]
    upstream = primary.upstream
    kind = _or(overrides.type, upstream.type)
    values = {
        "name": labels.clean(upstream.name, f"Service {service_id}"),
        "category": labels.clean(upstream.category, "Other"),
        "type": kind,
        "id": str(service_id),
    }
    return Service(
        id=service_id,
        name=labels.render(overrides.name, values, values["name"]),
        type=kind,
        category=labels.render(overrides.category, values, values["category"]),
        rate=sell_rate(config, primary.priced_at, markup),
        min=_or(overrides.min, upstream.min),
        max=_or(overrides.max, upstream.max),
        refill=_or(overrides.refill, upstream.refill),
        cancel=_or(overrides.cancel, upstream.cancel),
        dripfeed=upstream.dripfeed,
        routes=tuple(options),
        strategy=strategy,
    )


def _priced(config: Config, options: list[RouteOption], markup: Markup | None) -> list[RouteOption]:
    """The options whose price we can quote and charge: one that overflows
    (an absurd upstream rate, an absurd markup on it) is left out, logged.
    Both its current cost and the one our price is made from (a held price
    change's approved cost) must be chargeable."""
    priced = []
    for option in options:
        try:
            for cost in {option.cost, option.priced_at}:
                to_minor(charge(sell_rate(config, cost, markup), max(option.upstream.max, 1)))
        except (ArithmeticError, MoneyError):
            log.warning(
                "provider %s: service %s not sold: its price cannot be charged",
                option.provider,
                option.upstream.service,
            )
            continue
        priced.append(option)
    return priced


def build_catalog(
    config: Config, listings: Mapping[str, Listing | None], usable: Iterable[str] | None = None
) -> Catalog:
    """Our services from the providers' listings; only `usable` providers' routes
    (default: all) are sold from. A route to an upstream service whose price we
    cannot use is left out, and a service left without routes for that reason
    is `unavailable`: one absurd price never takes down anything else."""
    sellable = set(listings) if usable is None else set(usable)
    labels = Labels(provider_secrets(config.providers.values()))
    services: dict[int, Service] = {}
    unavailable: set[int] = set()
    disabled = {(name, d.service): d for name, listing in listings.items() if listing for d in listing.disabled}
    for local in config.services:
        routes = [(r.provider, r.service) for r in local.routes]
        options = _priced(config, _options(config, listings, (r for r in routes if r[0] in sellable)), local.markup)
        if options:
            overrides = Overrides(
                name=local.name,
                category=local.category,
                type=local.type,
                min=local.min,
                max=local.max,
                refill=local.refill,
                cancel=local.cancel,
            )
            services[local.id] = _service(
                config, local.id, options, local.strategy or config.strategy, local.markup, overrides, labels
            )
        elif _options(config, listings, routes) or any(route in disabled for route in routes):
            unavailable.add(local.id)
    explicit = {local.id for local in config.services}
    for rule in config.imports:
        listing = listings.get(rule.provider)
        if listing is None:
            continue
        for upstream in listing.services.values():
            service_id = rule.id_offset + upstream.service
            if (
                service_id in explicit
                or service_id in services
                or not rule.selects(upstream.service, upstream.category)
            ):
                continue
            if rule.provider not in sellable:
                unavailable.add(service_id)
                continue
            options = _priced(config, _options(config, listings, [(rule.provider, upstream.service)]), rule.markup)
            if not options:
                unavailable.add(service_id)
                continue
            overrides = Overrides(name=rule.name, category=rule.category)
            services[service_id] = _service(config, service_id, options, "ordered", rule.markup, overrides, labels)
        for item in listing.disabled:
            if rule.selects(item.service, item.category) and rule.id_offset + item.service not in explicit:
                unavailable.add(rule.id_offset + item.service)
    return Catalog(
        {service_id: services[service_id] for service_id in sorted(services)},
        frozenset(unavailable - set(services)),
        config.rate_decimals,
    )


class LiveCatalog:
    """The catalog as it is now, built from the providers' current listings.

    Rebuilt only when a provider's listing, or whether we may sell from it,
    changed: a provider blocked for billing in another currency, or whose
    listing is older than `max_age` seconds, is withheld (its services are
    not sold, and it is logged once when that starts and stops). Reused
    without asking Redis for `recheck` seconds (a cache of a cache: prices
    and lists).
    """

    def __init__(
        self,
        config: Config,
        listings: Listings,
        health: Health,
        *,
        recheck: float,
        max_age: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.listings = listings
        self.health = health
        self.recheck = recheck
        self.max_age = max_age
        self.clock = clock
        self._built: tuple[object, Catalog] | None = None
        self._checked = 0.0
        self._withheld: dict[str, str] = {}

    async def current(self) -> Catalog:
        now = time.monotonic()
        if self._built is not None and now - self._checked < self.recheck:
            return self._built[1]
        self._checked = now
        listings = await self.listings.all()
        blocked = await self.health.blocked(listings)
        now = self.clock()
        withheld = {}
        for name, listing in listings.items():
            if name in blocked:
                withheld[name] = f"blocked: {blocked[name]}"
            elif listing is not None and listing.age(now) > self.max_age:
                withheld[name] = (
                    f"its service list is {listing.age(now):.0f} s old, older than the {self.max_age:.0f} s allowed"
                )
        self._say_withheld(withheld)
        version = (tuple((name, listing and listing.fetch) for name, listing in listings.items()), tuple(withheld))
        if self._built is None or self._built[0] != version:
            usable = [name for name in listings if name not in withheld]
            self._built = (version, build_catalog(self.config, listings, usable))
        return self._built[1]

    def replace(self, config: Config) -> None:
        """A reloaded config: the next read rebuilds the catalog from it."""
        self.config = config
        self._built = None

    def _say_withheld(self, withheld: dict[str, str]) -> None:
        """Log once when a provider's services stop or start being sold."""
        for name in withheld.keys() - self._withheld.keys():
            log.warning("services of provider %s are not sold: %s", name, withheld[name])
        for name in self._withheld.keys() - withheld.keys():
            log.warning("services of provider %s are sold again", name)
        self._withheld = withheld
