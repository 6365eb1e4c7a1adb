"""The order actions of API v2 for one client: add, status, refill, cancel.

Each action takes typed input and returns typed results (rendered to the
panel's JSON at the HTTP edge). A refused `add` raises `OrderRefused`;
per-item refusals of bulk actions are `Failure`s. Upstream text reaches a
client only through an allow-list (`public_error`): a refusal that is one of
the panel messages we know, and that fits the action, is passed on in our
spelling; anything else becomes our own generic message. docs/api-v2.md
lists the actions and every error string a client can get.

`add` prices the order by the client's terms (`proxy.accounts.terms`: its
markup, custom rates, duplicate window and same-link rule), read with each
add. It has one choke point: once the client's money moved, the answer is the
order's ID, whatever fails afterwards. The only error after the debit is the
one that comes with a full refund in the same step (every route refused).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from proxy import logs
from proxy.accounts.fair_use import TOO_MANY_CANCELS, TOO_MANY_REFILLS, TOO_MANY_REQUESTS, FairUse, RateWindow
from proxy.accounts.terms import Terms
from proxy.catalog.catalog import Catalog, Service
from proxy.catalog.pricing import Pricing
from proxy.errors import (
    DuplicateMismatch,
    IdsInUse,
    InsufficientFunds,
    LinkInUse,
    OrderRefused,
    ProviderRefused,
    RateSpent,
    StateChanged,
    UpstreamError,
)
from proxy.logs import Emit, no_events
from proxy.orders.book import OrderBook
from proxy.orders.records import ArchivedOrder, Fingerprint, NewOrder, Order, OrderSummary
from proxy.orders.refills import Refills
from proxy.orders.routing import NO_ROUTE, Placement, Router
from proxy.orders.states import FAILED, PLACED, RESTATUS
from proxy.orders.statuses import StatusRefresher
from proxy.orders.validation import OrderSpec, validate_add
from proxy.policies import MAX_OLD_POSTS
from proxy.providers.replies import ItemError
from proxy.providers.upstream import ProviderClient
from proxy.vocabulary import COMPLETED, PARTIAL, Errors, known_error, parse_id

log = logging.getLogger(__name__)

REFILL_UNAVAILABLE = "Refill could not be requested now, please try again later"
# Upstream refusals of a refill a client may be told of (anything else: not eligible).
REFILL_REFUSALS = (Errors.REFILL_DISABLED, Errors.REFILL_NOT_COMPLETED, Errors.NOT_ELIGIBLE_FOR_REFILL)
IDEMPOTENCY_KEY_REUSED = "Idempotency-Key already used for a different request"
IDEMPOTENCY_WINDOW = 24 * 3600.0
# Seconds an add waits for a provider to take its order before it answers with the ID all the same.
ADD_WAIT = 30.0


@dataclass(frozen=True)
class Failure:
    """One item of a request that we answer with an error."""

    message: str


class OrderView(NamedTuple):
    """What a status read answers of one order (a tuple: one is made a read)."""

    charge: Decimal
    start_count: int
    status: str
    remains: int
    currency: str


class OrderActions:
    """The API v2 order actions for one client at a time: add, status,
    refill, refill_status, cancel. `currency` is the deployment's;
    `hold_posts` is how many posts an unlimited subscription is held for
    (`max_old_posts` the most old posts a subscription may ask for);
    `add_wait` how long an add waits for a provider to take its order (or
    every route to refuse it) before it answers with the order's ID all the
    same (placing goes on). An add is answered once a provider answered with
    its own order ID: the task placing it records that ID after (`recorded`)."""

    def __init__(
        self,
        currency: str,
        hold_posts: int,
        catalog: Callable[[], Awaitable[Catalog]],
        book: OrderBook,
        router: Router,
        refresher: StatusRefresher,
        refills: Refills,
        providers: dict[str, ProviderClient],
        duplicate_window: float,
        tally: Callable[[str], Awaitable[None]],
        fair_use: FairUse | None = None,
        *,
        add_wait: float = ADD_WAIT,
        max_old_posts: int = MAX_OLD_POSTS,
        terms: Callable[[str], Awaitable[Terms]] | None = None,
        emit: Emit = no_events,
    ) -> None:
        self.tally = tally
        self.emit = emit
        self.fair_use = fair_use
        self.terms = terms
        self.currency = currency
        self.hold_posts = hold_posts
        self.catalog = catalog
        self.book = book
        self.router = router
        self.refresher = refresher
        self.refills = refills
        self.providers = providers
        self.duplicate_window = duplicate_window
        self.add_wait = add_wait
        self.max_old_posts = max_old_posts
        # Orders being placed, by the task placing each.
        self._placing: dict[asyncio.Task[Placement], Order] = {}
        # The tasks still recording a provider's answer to an add already answered, by order ID.
        self._recording: dict[int, asyncio.Task[Placement]] = {}
        # Done once the router is shutting down (`stop_waiting`).
        self._stopping: asyncio.Future[None] | None = None

    # -- add -----------------------------------------------------------------

    async def add(
        self,
        client: str,
        service_id: int,
        fields: Mapping[str, str],
        idempotency_key: str | None = None,
        *,
        rate: Sequence[RateWindow] = (),
    ) -> int:
        """Charge and place an order of `service_id` with the client's `fields`
        (all but key/action/service); its ID. Raises `OrderRefused`.

        `rate`: the client's request-rate windows, for the reserve script to
        count this request in (on one server the edge leaves it to the
        script: no round trip of its own); an add refused before the script
        is counted here instead."""
        try:
            service, spec, new, fingerprint = await self._opening(client, service_id, fields, idempotency_key)
        except Exception:
            if rate and self.fair_use is not None and not await self.fair_use.request(client):
                raise OrderRefused(TOO_MANY_REQUESTS) from None
            raise
        try:
            reservation = await self.book.reserve(new, fingerprint, self.router.route_keys(service), rate)
        except RateSpent:
            raise OrderRefused(TOO_MANY_REQUESTS) from None
        except InsufficientFunds:
            raise OrderRefused(Errors.NOT_ENOUGH_FUNDS) from None
        except LinkInUse:
            raise OrderRefused(Errors.ACTIVE_ORDER) from None
        except DuplicateMismatch:
            raise OrderRefused(IDEMPOTENCY_KEY_REUSED) from None
        except IdsInUse as exc:  # nothing charged
            await self._ids_in_use(exc.skipped)
            raise OrderRefused(NO_ROUTE) from None
        if reservation.skipped:
            await self._ids_in_use(reservation.skipped)
        logs.bind(order=reservation.order_id)
        if reservation.duplicate:
            log.info("order %s: a retry of the same add, answered with it", reservation.order_id)
            await self.tally("orders_duplicate")
            return reservation.order_id
        # The money moved: from here on, the answer is this order's ID.
        if reservation.order is None:  # reserved, but its store failed: recovery settles it
            return reservation.order_id
        try:
            order = reservation.order
            loop = asyncio.get_running_loop()
            # Done at the first of: a provider answered with its order ID (the
            # router sets it, before recording that ID), the task ended,
            # `add_wait` passed, the router started shutting down (the others
            # say which in `why`). One future, so a provider's answer wakes this
            # task at once, and the router records it after the client has its
            # answer (`Router.place`).
            answered: asyncio.Future[None] = loop.create_future()
            why: list[str] = []

            def settle(reason: str) -> Callable[[object], None]:
                def done(_: object) -> None:
                    if not answered.done():
                        why.append(reason)
                        answered.set_result(None)

                return done

            task = asyncio.create_task(
                self.router.place(order, service, spec.quantity, reservation.routes, answered), name=f"place-{order.id}"
            )
            self._placing[task] = order
            task.add_done_callback(self._placed)
            task.add_done_callback(settle("ended"))
            stopping = self._stop_signal()
            on_stop = settle("stopping")
            stopping.add_done_callback(on_stop)
            timer = loop.call_later(self.add_wait, settle("waited"), None)
            try:
                # A cancel here (the client hung up) cancels `answered`, never the task placing the order.
                await answered
            except asyncio.CancelledError:
                task.add_done_callback(self._unwatched)  # nobody waits for it now: say if it fails
                raise
            finally:
                timer.cancel()
                stopping.remove_done_callback(on_stop)
            if not task.done():
                if not why:  # a provider took it
                    self._recording[order.id] = task
                    task.add_done_callback(lambda _: self._recording.pop(order.id, None))
                else:
                    log.warning(
                        "order %s: still being placed after %s s; answered with its ID", order.id, self.add_wait
                    )
                task.add_done_callback(self._unwatched)
                return reservation.order_id
            if task.cancelled():  # stopped by a shutdown: handed over, and answered all the same
                return reservation.order_id
            placement = task.result()
        except Exception:
            log.exception("order %s: placing failed after the charge; recovery settles it", reservation.order_id)
            return reservation.order_id
        settled = placement.order
        if placement.error is not None and settled.state == FAILED and settled.refunded == settled.charge:
            raise OrderRefused(placement.error)  # refunded in full in the same step that failed it
        return reservation.order_id

    async def _ids_in_use(self, skipped: tuple[int, ...]) -> None:
        """Tell the operator of order IDs skipped because they number other
        orders (the ID sequence fell behind: `OrderBook.reserve` logged each)."""
        for _ in skipped:
            await self.tally("orders_id_in_use")
        await self.emit(
            "order.id_in_use",
            str(skipped[0]),
            f"order IDs {', '.join(map(str, skipped))} numbered other orders already and were skipped: "
            "the ID sequence fell behind (a Redis failover that lost writes, or a restored dump?)",
            skipped=list(skipped),
        )

    async def _opening(
        self, client: str, service_id: int, fields: Mapping[str, str], idempotency_key: str | None
    ) -> tuple[Service, OrderSpec, NewOrder, Fingerprint | None]:
        """What an add would open: the service at the client's prices, the
        checked fields, the new order and its fingerprint. Raises `OrderRefused`."""
        if self._stopping is not None and self._stopping.done():  # shutting down: take no new money
            raise OrderRefused(NO_ROUTE)
        terms = await self.client_terms(client)
        catalog = (await self.catalog()).priced(Pricing.of(terms.markup, terms.rates))
        service = catalog.get(service_id)
        if service is None:
            raise OrderRefused(NO_ROUTE if service_id in catalog.unavailable else Errors.INCORRECT_SERVICE)
        spec = validate_add(service, fields, self.hold_posts, max_old_posts=self.max_old_posts)
        new = NewOrder(
            client=client,
            service=service.id,
            type=service.type,
            quantity=spec.quantity * spec.runs,
            fields=spec.upstream_fields,
            charge=spec.charge,
            refill=service.refill,
            cancel=service.cancel,
            billing=spec.billing,
        )
        fingerprint = self._fingerprint(service.id, spec, idempotency_key, terms.window(self.duplicate_window))
        return service, spec, new, fingerprint

    async def recorded(self, order_id: int) -> None:
        """Wait until the provider's answer to an add is recorded: an add is
        answered once a provider took its order, and the task placing it
        records the provider's order ID right after."""
        task = self._recording.get(order_id)
        if task is not None:
            await asyncio.wait({task})

    def _placed(self, task: asyncio.Task[Placement]) -> None:
        self._placing.pop(task, None)

    def _stop_signal(self) -> asyncio.Future[None]:
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_future()
        return self._stopping

    def stop_waiting(self) -> None:
        """The router is shutting down: adds waiting for their orders to be
        placed answer with the IDs now (placing goes on until `aclose`), and
        new adds are refused before any money moves."""
        stopping = self._stop_signal()
        if not stopping.done():
            stopping.set_result(None)

    @staticmethod
    def _unwatched(task: asyncio.Task[Placement]) -> None:
        """A placing task nobody waits for any more ended: say how, if it failed."""
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("placing an order failed after its client was answered", exc_info=error)

    def _fingerprint(
        self, service: int, spec: OrderSpec, idempotency_key: str | None, window: float
    ) -> Fingerprint | None:
        """What makes a repeated add the same order: its Idempotency-Key (always),
        else identical fields within the client's duplicate `window` (0: never)."""
        if not idempotency_key and window <= 0:  # the default: nothing to recognise a retry by
            return None
        payload = json.dumps([service, sorted(spec.upstream_fields.items())], ensure_ascii=False)
        digest = hashlib.sha256(payload.encode()).hexdigest()[:32]
        if idempotency_key:
            token = "key:" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
            return Fingerprint(token, IDEMPOTENCY_WINDOW, payload=digest)
        return Fingerprint("same:" + digest, window)

    async def client_terms(self, client: str) -> Terms:
        return await self.terms(client) if self.terms is not None else Terms()

    async def catalog_for(self, client: str) -> Catalog:
        """The catalog at the client's prices (its `services` reply)."""
        terms = await self.client_terms(client)
        return (await self.catalog()).priced(Pricing.of(terms.markup, terms.rates))

    async def aclose(self, timeout: float = 30.0) -> None:
        """Let orders being placed finish (each holds a client's money), for up
        to half of `timeout`; then stop the rest and hand them over
        (`Router.hand_over`) in what is left of it."""
        if not self._placing:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        _, pending = await asyncio.wait(list(self._placing), timeout=timeout / 2)
        if not pending:
            return
        orders = [self._placing[task] for task in pending if task in self._placing]
        log.warning("%d orders still being placed at shutdown: handing them over", len(orders))
        for task in pending:
            task.cancel()
        # A cancel that lands inside a Redis command may be swallowed: wait a
        # little for the tasks to stop, never longer.
        await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()) / 4)
        await self.router.hand_over(orders, timeout=max(0.0, deadline - loop.time()))

    # -- status --------------------------------------------------------------

    async def _orders(self, client: str, ids: Sequence[str]) -> dict[str, Order | ArchivedOrder | Failure]:
        """Orders by the IDs as given (archived ones as Redis keeps them);
        foreign and unknown IDs are failures."""
        parsed = {given: parse_id(given) for given in ids}
        wanted = {i for i in parsed.values() if i is not None}
        found: dict[int, Order | ArchivedOrder] = {}
        found.update(await self.refresher.refresh((await self.book.get_many(client, wanted)).values()))
        found.update(await self.book.archived(client, wanted - found.keys()))
        return {
            given: found[order_id] if order_id in found else Failure(Errors.INCORRECT_ORDER)
            for given, order_id in parsed.items()
        }

    async def status(self, client: str, ids: Sequence[str]) -> dict[str, OrderView | Failure]:
        """What upstream said of the orders, read in one command; whole records
        only for those whose status is stale and must be read from upstream."""
        if len(ids) == 1:
            return {ids[0]: await self.status_of(client, ids[0])}
        parsed = {given: parse_id(given) for given in ids}
        wanted = {i for i in parsed.values() if i}
        summaries = await self.book.summaries(client, wanted)
        stale = [order_id for order_id, summary in summaries.items() if self.refresher.stale(summary)]
        seen: dict[int, OrderSummary | ArchivedOrder] = dict(summaries)
        if stale:
            seen.update(await self.refresher.refresh((await self.book.get_many(client, stale)).values()))
        if len(seen) < len(wanted):  # archived, or not the client's
            seen.update(await self.book.archived(client, wanted - seen.keys()))
        return {given: self._view(seen.get(order_id) if order_id else None) for given, order_id in parsed.items()}

    async def status_of(self, client: str, given: str) -> OrderView | Failure:
        """`status` of one order (most reads): the same answer, without the bulk's sets and maps."""
        order_id = parse_id(given)
        if not order_id:
            return Failure(Errors.INCORRECT_ORDER)
        summary = (await self.book.summaries(client, [order_id])).get(order_id)
        if summary is None:
            return self._view((await self.book.archived(client, {order_id})).get(order_id))
        if self.refresher.stale(summary):
            refreshed = await self.refresher.refresh((await self.book.get_many(client, [order_id])).values())
            return self._view(refreshed.get(order_id, summary))
        return self._view(summary)

    def _view(self, order: OrderSummary | ArchivedOrder | None) -> OrderView | Failure:
        if order is None:
            return Failure(Errors.INCORRECT_ORDER)
        return OrderView(order.net_charge, order.start_count, order.public_status, order.public_remains, self.currency)

    # -- refill --------------------------------------------------------------

    async def refill(self, client: str, ids: Sequence[str]) -> dict[str, int | Failure]:
        results: dict[str, int | Failure] = {}
        eligible: dict[str, Order | ArchivedOrder] = {}
        for given, order in (await self._orders(client, ids)).items():
            if isinstance(order, Failure):
                results[given] = order
            elif not order.refill:
                results[given] = Failure(Errors.REFILL_DISABLED)
            elif order.state != PLACED or order.status not in (COMPLETED, PARTIAL):
                results[given] = Failure(Errors.NOT_ELIGIBLE_FOR_REFILL)
            elif not await self._may("refill", order):
                results[given] = Failure(TOO_MANY_REFILLS)
            else:
                eligible[given] = order
        created = await self.refills.create(list({o.id: o for o in eligible.values()}.values()))
        for given, order in eligible.items():
            outcome = created[order.id]
            if isinstance(outcome, ProviderRefused) and outcome.message:
                results[given] = Failure(public_error(outcome.message, REFILL_REFUSALS, Errors.NOT_ELIGIBLE_FOR_REFILL))
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

    async def _may(self, action: str, order: Order | ArchivedOrder) -> bool:
        """Whether this order may be asked upstream for a refill or cancel again (fair use)."""
        return self.fair_use is None or await self.fair_use.order_action(action, order.client, order.id)

    # -- cancel --------------------------------------------------------------

    async def cancel(self, client: str, ids: Sequence[str]) -> dict[str, bool | Failure]:
        results: dict[str, bool | Failure] = {}
        by_provider: dict[str, dict[str, Order]] = defaultdict(dict)
        for given, order in (await self._orders(client, ids)).items():
            if isinstance(order, Failure):
                results[given] = order
            elif isinstance(order, ArchivedOrder) or not order.cancel or order.state != PLACED or order.final:
                results[given] = Failure(Errors.CANNOT_CANCEL)
            elif not await self._may("cancel", order):
                results[given] = Failure(TOO_MANY_CANCELS)
            else:
                by_provider[order.provider][given] = order
        accepted: list[Order] = []
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
                    try:  # the status is stale now: read the outcome (and refund) soon
                        accepted.append(await self.book.apply(order, RESTATUS, {"status_at": 0}))
                    except StateChanged:
                        pass
                else:
                    message = reply.message if isinstance(reply, ItemError) else Errors.CANNOT_CANCEL
                    results[given] = Failure(public_error(message, (), Errors.CANNOT_CANCEL))
        if accepted:  # a provider that cancels at once has refunded already: so do we, in this request
            try:
                await self.refresher.refresh(accepted)
            except Exception as exc:  # the next read (or the poller) settles it
                log.warning("canceled orders not refreshed: %s", type(exc).__name__)
        return {given: results[given] for given in ids}


def public_error(upstream: str, allowed: Collection[str], fallback: str) -> str:
    """What a client may be told of an upstream refusal: a known panel message
    that fits the action, or `fallback`. Never the upstream's own words."""
    known = known_error(upstream)
    return known if known is not None and known in allowed else fallback
