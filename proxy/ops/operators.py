"""What operators do, written once: the CLI and the admin API both call here.

Each change takes the acting operator (`proxy.ops.roles.Actor`: `cli:alice`,
or `admin:NAME` with its role, source address and request ID; a bare name is
a local owner), checks the role matrix, and is audited before it happens:

1. the input is checked, and what a read can already refuse is refused
   (nothing is written then);
2. the audit entry is chained to the log (`proxy.ops.audit`); if it cannot
   be written, the action does not happen;
3. the action runs, keyed so a retry cannot apply it twice (a top-up or an
   adjustment by its reference; one without a reference by its audit
   entry's number); if it is refused after all, an entry `<action>.failed`
   follows, naming the first;
4. one log line says what was done, with the audit entry's number and hash
   (a copy of the chain kept outside Redis), and the order where there is one.

Reads take no actor: the admin API checks the role of each route against the
same matrix (`proxy.ops.roles.NEEDS`). Every action answers a typed value
(`proxy.ops.answers`); a refusal raises `OperatorError` with a message fit to
show.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import TypeVar

from proxy.accounts.clients import Accounts, Client, check_name
from proxy.accounts.ledger import Ledger
from proxy.accounts.terms import SAME_LINK
from proxy.catalog.catalog import build_catalog
from proxy.config import Config
from proxy.errors import (
    AccountError,
    ClaimConflict,
    InsufficientFunds,
    Invalid,
    MoneyError,
    NotFound,
    OperatorError,
    ProxyError,
    StateChanged,
    UnknownClient,
    UpstreamError,
)
from proxy.money import format_amount, parse_amount, to_minor
from proxy.ops import reports
from proxy.ops.admins import Admins, expiry_seconds
from proxy.ops.answers import (
    AdminView,
    Archived,
    AuditCheck,
    AuditEntry,
    ClientView,
    ConfigReload,
    EjectionView,
    EntryView,
    EventView,
    HeldPriceView,
    NewAdmin,
    NewClient,
    NewKey,
    OrderDetail,
    OrderView,
    PriceApproval,
    ProviderView,
    RemovedAdmin,
    ReportView,
    RouteOutcomes,
    TopUp,
    iso,
)
from proxy.ops.audit import AuditLog, Record
from proxy.ops.events import READ_LIMIT, EventLog
from proxy.ops.roles import READ, Actor, as_actor
from proxy.ops.search import Search, rows, search
from proxy.orders.archive import Archive
from proxy.orders.book import OrderBook
from proxy.orders.claims import Claims
from proxy.orders.records import Order
from proxy.orders.states import ACK, REFUND, UNKNOWN, rule
from proxy.orders.verdicts import Verdicts
from proxy.providers.health import Health
from proxy.providers.listings import ApprovedPrice, Listings
from proxy.providers.outcomes import Outcomes
from proxy.providers.upstream import ProviderClient

log = logging.getLogger(__name__)

MAX_REASON = 1000
MAX_MARKUP_PERCENT = Decimal(1000)
MAX_WINDOW_SECONDS = 7 * 86400
DEFAULT = "default"  # a term set to this is the deployment's again
_T = TypeVar("_T")


class NotReloaded(OperatorError):
    """A config reload refused: the running config stays (`result` says why)."""

    def __init__(self, result: ConfigReload) -> None:
        super().__init__("config not reloaded, the running one stays: " + "; ".join(result.problems))
        self.result = result


def _refused(exc: Exception) -> OperatorError:
    return NotFound(str(exc)) if isinstance(exc, UnknownClient) else OperatorError(str(exc))


def amount(text: object) -> Decimal:
    """An amount an operator typed: a decimal that fits the ledger (7 places, below 2^53 units)."""
    try:
        value = parse_amount(text)
        to_minor(value)
    except MoneyError as exc:
        raise Invalid(str(exc)) from None
    return value


def reason_text(value: object, required: bool = False) -> str:
    """A reason an operator gave: one line of printable text, at most MAX_REASON characters."""
    text = value.strip() if isinstance(value, str) else None
    if text is None or len(text) > MAX_REASON or not text.isprintable():
        raise Invalid(f"a reason is one line of text, at most {MAX_REASON} characters")
    if required and not text:
        raise Invalid("give a reason: the ledger and the audit log keep it")
    return text


def whole(value: object, name: str) -> int:
    """A positive whole number an operator typed (an ID): ASCII digits, at most 18 of them."""
    text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 18 and int(text) > 0):
        raise Invalid(f"{name} must be a positive whole number, not {value!r}")
    return int(text)


def reference(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 200 or not value.isprintable() or value != value.strip():
        raise Invalid("a reference is printable text of at most 200 characters")
    return value


class Operators:
    """Every operator action, on the collaborators it works through."""

    def __init__(
        self,
        *,
        config: Config,
        accounts: Accounts,
        ledger: Ledger,
        book: OrderBook,
        claims: Claims,
        verdicts: Verdicts,
        archive: Archive,
        health: Health,
        listings: Listings,
        providers: Mapping[str, ProviderClient],
        audit: AuditLog,
        admins: Admins,
        events: EventLog | None = None,
        outcomes: Outcomes | None = None,
        reload: Callable[[], Awaitable[ConfigReload]] | None = None,
        missing_keys: tuple[str, ...] = (),
        config_path: str = "config",
    ) -> None:
        self._config = config
        self._accounts = accounts
        self._ledger = ledger
        self._book = book
        self._claims = claims
        self._verdicts = verdicts
        self._archive = archive
        self._health = health
        self._listings = listings
        self._providers = providers
        self._audit = audit
        self.admins_registry = admins
        self._missing_keys = missing_keys
        self._config_path = config_path
        self._events = events
        self._outcomes = outcomes
        self._reload = reload

    def replace_config(self, config: Config) -> None:
        """A reloaded config."""
        self._config = config

    # -- the audit log ---------------------------------------------------------

    async def _audited(
        self,
        actor: Actor | str,
        action: str,
        target: str,
        act: Callable[[Record], Awaitable[_T]],
        *,
        reason: str = "",
        order: int | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> _T:
        """Check the role, write the audit entry, then act (see the module's docstring)."""
        who = as_actor(actor)
        who.check(action)
        entry = await self._audit.append(who, action, target, reason, detail)
        try:
            result = await act(entry)
        except Exception as exc:
            error = str(exc) if isinstance(exc, ProxyError) else type(exc).__name__
            with contextlib.suppress(Exception):  # best effort: the first entry stands either way
                await self._audit.append(who, f"{action}.failed", target, "", {"entry": entry.seq, "error": error})
            raise
        extra: dict[str, object] = {
            "actor": who.name,
            "role": who.role,
            "action": action,
            "target": target,
            "audit_seq": entry.seq,
            "audit_hash": entry.hash,
            "detail": dict(detail or {}),
        }
        if order is not None:
            extra["order"] = order
        log.info("operator %s: %s %s", who.name, action, target, extra=extra)
        return result

    async def audit_log(self, limit: object = 100) -> list[AuditEntry]:
        return [AuditEntry.of(record) for record in await self._audit.newest(rows(limit))]

    async def verify_audit(self) -> AuditCheck:
        return AuditCheck.of(await self._audit.verify())

    # -- clients ---------------------------------------------------------------

    async def create_client(self, actor: Actor | str, name: str, balance: object = "0", reason: str = "") -> NewClient:
        opening = amount(balance)
        why = reason_text(reason)
        try:
            check_name(name)
        except AccountError as exc:
            raise Invalid(str(exc)) from None
        if opening < 0:
            raise Invalid("the opening balance cannot be negative")

        async def act(entry: Record) -> NewClient:
            try:
                client, api_key = await self._accounts.create(name, opening)
            except AccountError as exc:
                raise _refused(exc) from None
            return NewClient.of_new(client, api_key)

        if await self._exists(name):
            raise OperatorError(f"client {name!r} exists already")
        return await self._audited(
            actor, "client.create", name, act, reason=why, detail={"balance": format_amount(opening)}
        )

    async def topup(
        self, actor: Actor | str, name: str, value: object, ref: str | None = None, memo: str = "", reason: str = ""
    ) -> TopUp:
        credit, ref, why = amount(value), reference(ref), reason_text(reason)
        if credit <= 0:
            raise Invalid("a top-up must be a positive amount")
        note = reason_text(memo)
        await self._client(name)
        if ref is not None and (done := await self._ledger.applied(name, f"topup:{ref}")) is not None:
            return TopUp.of_topup(dataclasses.replace(done, duplicate=True))

        async def act(entry: Record) -> TopUp:
            try:
                made = await self._accounts.topup(name, credit, ref=ref or f"audit-{entry.seq}", memo=note)
            except AccountError as exc:
                raise _refused(exc) from None
            return TopUp.of_topup(made)

        detail = {"amount": format_amount(credit), "ref": ref, "memo": note}
        return await self._audited(actor, "client.topup", name, act, reason=why, detail=detail)

    async def adjust(
        self, actor: Actor | str, name: str, value: object, reason: object, ref: str | None = None
    ) -> TopUp:
        """Correct a client's balance by a signed amount (undo a wrong top-up), never below zero."""
        delta, ref, why = amount(value), reference(ref), reason_text(reason, required=True)
        if delta == 0:
            raise Invalid("an adjustment moves money: give a non-zero amount")
        await self._client(name)
        if ref is not None and (done := await self._ledger.applied(name, f"adjust:{ref}")) is not None:
            return TopUp.of_topup(dataclasses.replace(done, duplicate=True))
        if (balance := await self._ledger.balance(name)) + delta < 0:
            raise OperatorError(self._overdraw(name, balance, delta))
        who = as_actor(actor)

        async def act(entry: Record) -> TopUp:
            try:
                made = await self._accounts.adjust(
                    name, delta, ref=ref or f"audit-{entry.seq}", reason=why, actor=who.name
                )
            except InsufficientFunds:
                raise OperatorError(self._overdraw(name, await self._ledger.balance(name), delta)) from None
            except AccountError as exc:
                raise _refused(exc) from None
            return TopUp.of_topup(made)

        detail = {"amount": format_amount(delta), "ref": ref}
        return await self._audited(who, "client.adjust", name, act, reason=why, detail=detail)

    @staticmethod
    def _overdraw(name: str, balance: Decimal, delta: Decimal) -> str:
        return (
            f"the balance of {name!r} is {format_amount(balance)}: an adjustment of "
            f"{format_amount(delta)} would take it below zero"
        )

    async def clients(self) -> list[ClientView]:
        return [ClientView.of(c) for c in await self._accounts.all()]

    async def disable_client(self, actor: Actor | str, name: str, reason: str = "") -> ClientView:
        await self._client(name)
        return await self._audited(
            actor,
            "client.disable",
            name,
            lambda _: self._view(self._accounts.disable(name)),
            reason=reason_text(reason),
        )

    async def enable_client(self, actor: Actor | str, name: str, reason: str = "") -> ClientView:
        await self._client(name)
        return await self._audited(
            actor, "client.enable", name, lambda _: self._view(self._accounts.enable(name)), reason=reason_text(reason)
        )

    async def rotate_key(self, actor: Actor | str, name: str, reason: str = "") -> NewKey:
        """A new API key for the client, shown once; the old one stops working at once."""
        await self._client(name)

        async def act(entry: Record) -> NewKey:
            return NewKey(await self._accounts.rotate_key(name))

        return await self._audited(actor, "client.rotate_key", name, act, reason=reason_text(reason))

    async def set_terms(
        self,
        actor: Actor | str,
        name: str,
        *,
        markup: object = None,
        duplicate_window: object = None,
        same_link: object = None,
        reason: str = "",
    ) -> ClientView:
        """Change some of a client's terms; "default" gives one back to the deployment's."""
        changes: dict[str, str | None] = {}
        if markup is not None:
            changes["markup"] = self._markup(markup)
        if duplicate_window is not None:
            changes["duplicate_window"] = self._window(duplicate_window)
        if same_link is not None:
            if same_link not in (*SAME_LINK, DEFAULT):
                raise Invalid(f"same_link is one of {', '.join(SAME_LINK)}, not {same_link!r}")
            changes["same_link"] = None if same_link == DEFAULT else str(same_link)
        if not changes:
            raise Invalid("give at least one term to set: markup, duplicate_window, same_link")
        await self._client(name)
        shown = {field: DEFAULT if value is None else value for field, value in changes.items()}
        return await self._audited(
            actor,
            "client.terms",
            name,
            lambda _: self._view(self._accounts.set_terms(name, changes)),
            reason=reason_text(reason),
            detail=shown,
        )

    @staticmethod
    def _markup(value: object) -> str | None:
        if value == DEFAULT:
            return None
        try:
            percent = parse_amount(value)
        except MoneyError:
            raise Invalid(f"markup {value!r}: a percentage like 15 or 7.5, or 'default'") from None
        if not 0 <= percent <= MAX_MARKUP_PERCENT or percent != percent.quantize(Decimal("0.0001")):
            raise Invalid(f"markup {value!r}: from 0 to {MAX_MARKUP_PERCENT} percent, at most 4 decimals")
        return f"{percent.normalize():f}"

    @staticmethod
    def _window(value: object) -> str | None:
        if value == DEFAULT:
            return None
        text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else ""
        if not (text.isascii() and text.isdigit() and len(text) <= 7 and int(text) <= MAX_WINDOW_SECONDS):
            raise Invalid(
                f"duplicate window {value!r}: whole seconds from 0 (never) to {MAX_WINDOW_SECONDS}, or 'default'"
            )
        return str(int(text))

    async def set_rate(
        self, actor: Actor | str, name: str, service: object, rate: object = None, *, reason: str = ""
    ) -> ClientView:
        """A custom rate for one service (None: back to the client's markup); refused below its cost now."""
        service_id = whole(service, "service")
        await self._client(name)
        value = None if rate is None else amount(rate)
        if value is not None:
            if value <= 0:
                raise Invalid("a rate is a positive amount per 1000")
            cost = await self._cost(service_id)
            if value < cost:
                raise OperatorError(
                    f"{format_amount(value)} is below the cost of service {service_id} now "
                    f"({format_amount(cost)} per 1000): never sold below cost"
                )
        return await self._audited(
            actor,
            "client.rate",
            name,
            lambda _: self._view(self._accounts.set_rate(name, service_id, value)),
            reason=reason_text(reason),
            detail={"service": service_id, "rate": DEFAULT if value is None else format_amount(value)},
        )

    async def _cost(self, service_id: int) -> Decimal:
        """What a service costs us now (its primary route), from the service lists Redis holds."""
        listings = {name: await self._listings.cached(name) for name in self._config.providers}
        service = build_catalog(self._config, listings).get(service_id)
        if service is None:
            raise OperatorError(f"no service {service_id} is sold now (or its cost is unknown): no rate for it")
        return service.routes[0].cost

    async def ledger(self, name: str, limit: object = None) -> list[EntryView]:
        count = None if limit is None else rows(limit)
        await self._client(name)
        return [EntryView.of(e) for e in await self._ledger.entries(name, count)]

    async def _client(self, name: str) -> ClientView:
        if not isinstance(name, str) or not name:
            raise NotFound("no client ''")
        try:
            return ClientView.of(await self._accounts.get(name))
        except AccountError as exc:
            raise _refused(exc) from None

    async def _exists(self, name: str) -> bool:
        try:
            await self._accounts.get(name)
        except UnknownClient:
            return False
        return True

    @staticmethod
    async def _view(changed: Awaitable[Client]) -> ClientView:
        try:
            return ClientView.of(await changed)
        except AccountError as exc:
            raise _refused(exc) from None

    # -- orders ----------------------------------------------------------------

    async def order(self, order_id: int) -> OrderDetail:
        """One order, from Redis or from the archive, with its ledger entries."""
        order = await self._book.find(order_id)
        archived = order is None and (order := self._archive.find(order_id)) is not None
        if order is None:
            raise NotFound(f"no order {order_id}")
        entries = [e for e in await self._ledger.entries(order.client) if e.order == order.id]
        return OrderDetail.of_found(order, archived, entries)

    async def archive(self, actor: Actor | str, before: float, reason: str = "") -> Archived:
        async def act(entry: Record) -> Archived:
            moved = await self._archive.archive(before)
            return Archived(moved, iso(before), str(self._archive.directory))

        target = str(self._archive.directory)
        return await self._audited(
            actor, "orders.archive", target, act, reason=reason_text(reason), detail={"before": iso(before)}
        )

    async def orders(
        self,
        state: str | None = None,
        client: str | None = None,
        limit: object = 50,
        *,
        link: str | None = None,
        upstream_order: int | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[OrderView]:
        query = Search(state or "", client or None, link or "", upstream_order, since, until, rows(limit))
        return [OrderView.of(o) for o in await search(self._book, self._claims, self._providers, query)]

    async def resolve(
        self,
        actor: Actor | str,
        order_id: int,
        *,
        upstream_order: int | None = None,
        failed: bool = False,
        reason: str = "",
    ) -> OrderView:
        if (upstream_order is None) == (not failed):
            raise Invalid("give the upstream order ID, or declare the order failed")
        if upstream_order is not None and upstream_order <= 0:
            raise Invalid("an upstream order ID is a positive number")
        found = await self._order(order_id)
        if found.state != UNKNOWN:
            raise OperatorError(f"order {order_id} is {found.state}, not unknown: nothing to resolve")

        async def act(entry: Record) -> OrderView:
            try:
                return OrderView.of(
                    await self._verdicts.resolve(order_id, upstream_order=upstream_order, failed=failed)
                )
            except (ValueError, ClaimConflict) as exc:
                raise _refused(exc) from None
            except StateChanged as exc:
                raise OperatorError(f"order {order_id} is {exc.state}, not unknown: nothing to resolve") from None

        verdict = "failed" if failed else f"placed as upstream order {upstream_order}"
        return await self._audited(
            actor,
            "order.resolve",
            str(order_id),
            act,
            reason=reason_text(reason),
            order=order_id,
            detail={"verdict": verdict},
        )

    async def refund(self, actor: Actor | str, order_id: int, total: object, reason: str = "") -> OrderView:
        value = amount(total)
        found = await self._order(order_id)
        if rule(found.state, REFUND) is None:
            raise OperatorError(f"order {order_id} is {found.state}: it cannot be refunded now")
        if not found.refunded <= value <= found.charge:
            raise OperatorError(
                f"the total refund must be between {found.refunded} (already refunded) and {found.charge} (charged)"
            )

        async def act(entry: Record) -> OrderView:
            try:
                return OrderView.of(await self._verdicts.refund(order_id, value))
            except ValueError as exc:
                raise _refused(exc) from None
            except StateChanged as exc:
                raise OperatorError(f"order {order_id} is {exc.state}: it cannot be refunded now") from None

        return await self._audited(
            actor,
            "order.refund",
            str(order_id),
            act,
            reason=reason_text(reason),
            order=order_id,
            detail={"total": format_amount(value)},
        )

    async def acknowledge(self, actor: Actor | str, order_id: int, reason: str = "") -> OrderView:
        found = await self._order(order_id)
        if rule(found.state, ACK) is None:
            raise OperatorError(f"order {order_id} is {found.state}: nothing to acknowledge")

        async def act(entry: Record) -> OrderView:
            try:
                return OrderView.of(await self._verdicts.acknowledge(order_id))
            except StateChanged as exc:
                raise OperatorError(f"order {order_id} is {exc.state}: nothing to acknowledge") from None

        return await self._audited(actor, "order.ack", str(order_id), act, reason=reason_text(reason), order=order_id)

    async def _order(self, order_id: int) -> Order:
        whole(order_id, "an order ID")
        found = await self._book.find(order_id)
        if found is None:
            raise NotFound(f"no order {order_id}")
        return found

    # -- providers -------------------------------------------------------------

    async def providers(self, check: bool = False) -> list[ProviderView]:
        """Each provider: health (ejections for orders and reads), balance and
        currency as last read and the age of that reading, whether it is low on
        funds, service count, catalog age, recent and held price changes, and
        the outcomes of its routes. `check` reads the balances now."""
        currencies = {name: provider.currency for name, provider in self._config.providers.items()}
        if check:
            if self._missing_keys:
                raise OperatorError(
                    "--check calls the providers: set " + ", ".join(self._missing_keys) + " in the environment"
                )
            for name, client in self._providers.items():
                try:
                    await self._health.verify(client, currencies[name])
                except UpstreamError:
                    pass
        names = list(self._providers)
        cooldowns = await self._health.cooldowns(names)
        ages = await self._listings.ages(names)
        found = []
        now = self._health.clock()
        for name in names:
            state = await self._health.state(name)
            listing = await self._listings.cached(name)
            ejected = [scope for scope, on in cooldowns[name].items() if on]
            health = "ejected: " + ", ".join(ejected) if ejected else ("low balance" if state.low else "ok")
            outcomes = await self._outcomes.of_provider(name) if self._outcomes else {}
            found.append(
                ProviderView(
                    name=name,
                    health="blocked" if state.blocked else health,
                    blocked=state.blocked,
                    ejections={scope: EjectionView.of(e) for scope, e in (await self._health.ejections(name)).items()},
                    currency=currencies[name],
                    currency_read=state.currency,
                    balance=state.balance,
                    funds="" if state.funds is None else format_amount(state.funds),
                    low_balance=format_amount(self._config.providers[name].low_balance),
                    low=state.low,
                    balance_age=round(now - state.funds_at) if state.funds_at else None,
                    checked=iso(state.checked_at) if state.checked_at else "",
                    check_error=state.error,
                    services=len(listing.services) if listing else 0,
                    catalog_age=None if (age := ages[name]) is None else round(age),
                    price_changes=tuple(await self._listings.price_changes(name, 10)),
                    held_prices=tuple(
                        HeldPriceView.of(service, held) for service, held in (await self._listings.held(name)).items()
                    ),
                    outcomes={str(service): RouteOutcomes.of(rates) for service, rates in outcomes.items()},
                )
            )
        return found

    async def approve_prices(
        self, actor: Actor | str, provider: str, services: Sequence[int] = (), reason: str = ""
    ) -> PriceApproval:
        """Approve held price changes of a provider (all, or those of `services`)."""
        if provider not in self._providers:
            raise NotFound(f"no provider {provider!r}")
        held = await self._listings.held(provider)
        unknown = [s for s in services if s not in held]
        if unknown:
            raise OperatorError(f"no held price change of {provider} service {', '.join(map(str, unknown))}")
        who, why = as_actor(actor), reason_text(reason)
        approved: list[ApprovedPrice] = []
        for service in services or sorted(held):  # one audited step each: its entry names its change
            change = {"service": service, "from": held[service]["approved"], "to": held[service]["proposed"]}
            approved += await self._audited(
                who,
                "price.approve",
                f"{provider}:{service}",
                self._approval(who, provider, service),
                reason=why,
                detail=change,
            )
        return PriceApproval(provider, tuple(approved))

    def _approval(self, who: Actor, provider: str, service: int) -> Callable[[Record], Awaitable[list[ApprovedPrice]]]:
        async def act(entry: Record) -> list[ApprovedPrice]:
            approved = await self._listings.approve(provider, [service])
            if self._events is not None:
                for change in approved:
                    await self._events.emit(
                        "price.approved",
                        provider,
                        f"{provider} service {change['service']}: {change['from']} -> {change['to']} "
                        f"approved by {who.name}",
                        actor=who.name,
                        **change,
                    )
            return approved

        return act

    # -- events and the config -------------------------------------------------

    async def events(self, since: float | None = None, limit: int = 100, kind: str | None = None) -> list[EventView]:
        if self._events is None:
            return []
        if not 1 <= limit <= READ_LIMIT:
            raise Invalid(f"limit must be between 1 and {READ_LIMIT}")
        return await self._events.read(since, limit, kind)

    async def reload_config(self, actor: Actor | str, reason: str = "") -> ConfigReload:
        """Read the config file again; a bad one is refused and the running one kept
        (its audit entry is then followed by a `config.reload.failed` one)."""
        if self._reload is None:
            raise OperatorError("this process cannot reload its config")
        reload = self._reload

        async def act(entry: Record) -> ConfigReload:
            result = await reload()
            if not result.ok:
                raise NotReloaded(result)
            return result

        try:
            return await self._audited(actor, "config.reload", self._config_path, act, reason=reason_text(reason))
        except NotReloaded as refused:
            return refused.result

    # -- reports ---------------------------------------------------------------

    async def report(self, since: float, by: str = "provider") -> ReportView:
        try:
            return ReportView.of(await reports.report(self._book, self._config, since, by))
        except ValueError as exc:
            raise OperatorError(str(exc)) from None

    # -- admin tokens ----------------------------------------------------------

    async def add_admin(
        self, actor: Actor | str, name: str, role: str = READ, expires: str | None = None, reason: str = ""
    ) -> NewAdmin:
        """A token for the admin API with a role (and a life, if given); shown once, stored hashed."""
        self.admins_registry.check(name, role)
        life = None if expires is None else expiry_seconds(expires)

        async def act(entry: Record) -> NewAdmin:
            admin, token = await self.admins_registry.add(name, role, life)
            return NewAdmin(admin.name, admin.role, iso(admin.expires) if admin.expires else "", token)

        detail = {"role": role, "expires": expires or ""}
        if any(a.name == name and a.registered for a in await self.admins_registry.all()):
            raise OperatorError(f"admin {name!r} exists already")
        return await self._audited(actor, "admin.add", name, act, reason=reason_text(reason), detail=detail)

    async def remove_admin(self, actor: Actor | str, name: str, reason: str = "") -> RemovedAdmin:
        if not any(a.name == name for a in await self.admins_registry.all()):
            raise NotFound(f"no admin {name!r}")

        async def act(entry: Record) -> RemovedAdmin:
            await self.admins_registry.remove(name)
            return RemovedAdmin(name)

        return await self._audited(actor, "admin.remove", name, act, reason=reason_text(reason))

    async def admins(self) -> list[AdminView]:
        now = self.admins_registry.clock()
        return [AdminView.of(admin, now) for admin in await self.admins_registry.all()]
