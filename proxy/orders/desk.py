"""The order actions of API v2 for one client: add, status, refill, cancel.

Each action takes typed input and returns typed results (rendered to the
panel's JSON at the HTTP edge). A refused `add` raises `ProtocolError`;
per-item refusals of bulk actions are `Failure`s. Whatever
upstream says reaches a client only after `Desk.clean`, which drops
anything naming a provider, its address or its key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import httpx

from proxy.catalog import Catalog
from proxy.config import Config
from proxy.orders.book import (
    PLACED,
    InsufficientFunds,
    NewOrder,
    Order,
    OrderBook,
    StateChanged,
)
from proxy.orders.refills import Refills, UpstreamRefusal
from proxy.orders.routing import Router
from proxy.orders.statuses import StatusRefresher
from proxy.orders.validation import validate_add
from proxy.protocol import AddRequest, ProtocolError, parse_id
from proxy.providers.upstream import ItemError, ProviderClient, UpstreamError
from proxy.vocabulary import COMPLETED, PARTIAL, Errors

REFILL_UNAVAILABLE = "Refill could not be requested now, please try again later"


@dataclass(frozen=True)
class Failure:
    """One item of a request that we answer with an error."""

    message: str


@dataclass(frozen=True)
class OrderView:
    charge: Decimal
    start_count: int
    status: str
    remains: int
    currency: str


class Desk:
    def __init__(
        self,
        config: Config,
        catalog: Callable[[], Awaitable[Catalog]],
        book: OrderBook,
        router: Router,
        refresher: StatusRefresher,
        refills: Refills,
        providers: dict[str, ProviderClient],
        duplicate_window: float,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.book = book
        self.router = router
        self.refresher = refresher
        self.refills = refills
        self.providers = providers
        self.duplicate_window = duplicate_window
        self._secrets = _provider_secrets(config)

    # -- add -----------------------------------------------------------------

    async def add(self, client: str, request: AddRequest, idempotency_key: str | None = None) -> int:
        service = (await self.catalog()).get(request.service)
        if service is None:
            raise ProtocolError(Errors.INCORRECT_SERVICE)
        spec = validate_add(service, request.fields)
        token = self._duplicate_token(request.service, spec.upstream_fields, idempotency_key)
        window = 24 * 3600.0 if idempotency_key else self.duplicate_window
        new = NewOrder(
            client=client,
            service=service.id,
            type=service.type,
            quantity=spec.quantity * spec.runs,
            link=spec.link or "",
            fields=spec.upstream_fields,
            charge=spec.charge,
            refill=service.refill,
            cancel=service.cancel,
        )
        try:
            order_id, duplicate = await self.book.reserve(new, token, window)
        except InsufficientFunds:
            raise ProtocolError(Errors.NOT_ENOUGH_FUNDS) from None
        if duplicate:
            await self.book.count_metric("orders_duplicate")
            return order_id
        order = await self.book.get(client, order_id)
        assert order is not None
        # Shielded: a client that hangs up must not stop an order mid-flight.
        placement = await asyncio.shield(self.router.place(order, service, spec.quantity, spec.runs))
        if placement.error is not None:  # refunded; its fingerprint is gone with it
            raise ProtocolError(placement.error)
        return order_id

    def _duplicate_token(self, service: int, fields: dict[str, str], idempotency_key: str | None) -> str | None:
        if idempotency_key:
            return "key:" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
        if self.duplicate_window <= 0:
            return None
        fingerprint = json.dumps([service, sorted(fields.items())], ensure_ascii=False)
        return "same:" + hashlib.sha256(fingerprint.encode()).hexdigest()[:32]

    # -- status --------------------------------------------------------------

    async def _orders(self, client: str, ids: Sequence[str]) -> dict[str, Order | Failure]:
        """Orders by the IDs as given; foreign and unknown IDs are failures."""
        parsed = {given: parse_id(given) for given in ids}
        found = await self.book.get_many(client, {i for i in parsed.values() if i is not None})
        found = await self.refresher.refresh(found.values())
        return {
            given: found[order_id] if order_id in found else Failure(Errors.INCORRECT_ORDER)
            for given, order_id in parsed.items()
        }

    async def status(self, client: str, ids: Sequence[str]) -> dict[str, OrderView | Failure]:
        results: dict[str, OrderView | Failure] = {}
        for given, order in (await self._orders(client, ids)).items():
            if isinstance(order, Failure):
                results[given] = order
            else:
                results[given] = OrderView(
                    charge=order.net_charge,
                    start_count=order.start_count,
                    status=order.public_status,
                    remains=order.remains,
                    currency=self.config.currency,
                )
        return results

    # -- refill --------------------------------------------------------------

    async def refill(self, client: str, ids: Sequence[str]) -> dict[str, int | Failure]:
        results: dict[str, int | Failure] = {}
        eligible: dict[str, Order] = {}
        for given, order in (await self._orders(client, ids)).items():
            if isinstance(order, Failure):
                results[given] = order
            elif not order.refill:
                results[given] = Failure(Errors.REFILL_DISABLED)
            elif order.state != PLACED or order.status not in (COMPLETED, PARTIAL):
                results[given] = Failure(Errors.NOT_ELIGIBLE_FOR_REFILL)
            else:
                eligible[given] = order
        created = await self.refills.create(list({o.id: o for o in eligible.values()}.values()))
        for given, order in eligible.items():
            outcome = created[order.id]
            if isinstance(outcome, UpstreamRefusal):
                results[given] = Failure(self.clean(outcome.message, Errors.NOT_ELIGIBLE_FOR_REFILL))
            elif isinstance(outcome, UpstreamError):
                results[given] = Failure(REFILL_UNAVAILABLE)
            else:
                results[given] = outcome
        return {given: results[given] for given in ids}

    async def refill_status(self, client: str, ids: Sequence[str]) -> dict[str, str | Failure]:
        parsed = {given: parse_id(given) for given in ids}
        found = await self.refills.statuses(client, [i for i in set(parsed.values()) if i is not None])
        return {
            given: found[refill_id].status if refill_id in found else Failure(Errors.REFILL_NOT_FOUND)
            for given, refill_id in parsed.items()
        }

    # -- cancel --------------------------------------------------------------

    async def cancel(self, client: str, ids: Sequence[str]) -> dict[str, bool | Failure]:
        results: dict[str, bool | Failure] = {}
        by_provider: dict[str, dict[str, Order]] = defaultdict(dict)
        for given, order in (await self._orders(client, ids)).items():
            if isinstance(order, Failure):
                results[given] = order
            elif not order.cancel or order.state != PLACED or order.final:
                results[given] = Failure(Errors.CANNOT_CANCEL)
            else:
                by_provider[order.provider][given] = order
        for provider, group in by_provider.items():
            upstream = self.providers.get(provider)  # None: since removed from the config
            try:
                replies: dict[int, bool | ItemError] = (
                    await upstream.cancel(sorted({o.upstream_order for o in group.values()})) if upstream else {}
                )
            except UpstreamError:
                replies = {}
            for given, order in group.items():
                reply = replies.get(order.upstream_order, ItemError(Errors.CANNOT_CANCEL))
                if reply is True:
                    results[given] = True
                    try:  # read the outcome (and refund) at the next status request
                        await self.book.transition(order, [PLACED], {"status_at": 0})
                    except StateChanged:
                        pass
                else:
                    message = reply.message if isinstance(reply, ItemError) else Errors.CANNOT_CANCEL
                    results[given] = Failure(self.clean(message, Errors.CANNOT_CANCEL))
        return {given: results[given] for given in ids}

    # -- upstream words, cleaned ---------------------------------------------

    def clean(self, message: str, fallback: str) -> str:
        """An upstream's message, if it says nothing of the upstream."""
        folded = message.casefold()
        if not message.strip() or len(message) > 200 or "http" in folded or "www." in folded:
            return fallback
        if any(secret in folded for secret in self._secrets):
            return fallback
        return message


def _provider_secrets(config: Config) -> tuple[str, ...]:
    secrets: set[str] = set()
    for provider in config.providers.values():
        secrets.add(provider.name.casefold())
        secrets.add(provider.key.casefold())
        url = httpx.URL(provider.url)
        secrets.add(url.host.casefold())
        secrets.add(url.raw_host.decode("ascii").casefold())
    return tuple(s for s in secrets if len(s) >= 3)
