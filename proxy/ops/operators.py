"""What operators do, written once: the CLI and the admin API both call here.

Each action takes the acting operator's name (`cli`, or `admin:NAME` for an
admin token), goes through the same domain functions the router uses
(accounts, order book, health, reports), writes what changed to the audit
log (who, what, when), and answers a typed value (`proxy.ops.answers`,
which also makes the JSON of it). A refusal raises `OperatorError` with a
message fit to show.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal

from redis.typing import EncodableT

from proxy.accounts.clients import Accounts
from proxy.accounts.ledger import Ledger
from proxy.config import Config
from proxy.errors import (
    AccountError,
    ArchiveUnwritable,
    ClaimConflict,
    MoneyError,
    NotFound,
    OperatorError,
    StateChanged,
    UnknownClient,
    UpstreamError,
)
from proxy.money import format_amount, parse_amount, to_minor
from proxy.ops import reports
from proxy.ops.answers import (
    Archived,
    AuditEntry,
    ClientView,
    ConfigReload,
    EjectionView,
    EntryView,
    EventView,
    HeldPriceView,
    NewAdmin,
    NewClient,
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
from proxy.ops.events import READ_LIMIT, EventLog
from proxy.orders.archive import Archive
from proxy.orders.book import OrderBook
from proxy.orders.records import Order
from proxy.orders.states import WORKING_SETS
from proxy.orders.verdicts import Verdicts
from proxy.providers.health import Health
from proxy.providers.listings import Listings
from proxy.providers.outcomes import Outcomes
from proxy.providers.upstream import ProviderClient
from proxy.store import Keys, Store, maybe_text, stream_entries, texts

log = logging.getLogger(__name__)

_ADMIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _refused(exc: Exception) -> OperatorError:
    return NotFound(str(exc)) if isinstance(exc, UnknownClient) else OperatorError(str(exc))


def amount(text: object) -> Decimal:
    """An amount an operator typed: a decimal that fits the ledger (7 places, below 2^53 units)."""
    try:
        value = parse_amount(text)
        to_minor(value)
    except MoneyError as exc:
        raise OperatorError(str(exc)) from None
    return value


class Operators:
    """Every operator action, on the collaborators it works through."""

    def __init__(
        self,
        *,
        redis: Store,
        keys: Keys,
        config: Config,
        accounts: Accounts,
        ledger: Ledger,
        book: OrderBook,
        verdicts: Verdicts,
        archive: Archive,
        health: Health,
        listings: Listings,
        providers: Mapping[str, ProviderClient],
        events: EventLog | None = None,
        outcomes: Outcomes | None = None,
        reload: Callable[[], Awaitable[ConfigReload]] | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._config = config
        self._accounts = accounts
        self._ledger = ledger
        self._book = book
        self._verdicts = verdicts
        self._archive = archive
        self._health = health
        self._listings = listings
        self._providers = providers
        self._events = events
        self._outcomes = outcomes
        self._reload = reload

    def replace_config(self, config: Config) -> None:
        """A reloaded config."""
        self._config = config

    # -- the audit log ---------------------------------------------------------

    async def audit(self, actor: str, action: str, target: str, **detail: object) -> None:
        """Record an operator's action (best effort after it: the action itself stands)."""
        fields: dict[EncodableT, EncodableT] = {
            "actor": actor,
            "action": action,
            "target": target,
            "detail": json.dumps(detail, default=str),
        }
        try:
            await self._redis.xadd(self._keys.audit, fields)
        except Exception as exc:  # never undo what was done because the log failed
            log.error("audit log not written for %s %s by %s: %s", action, target, actor, type(exc).__name__)
        log.info("operator %s: %s %s", actor, action, target, extra={"actor": actor, "detail": detail})

    async def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        rows = stream_entries(await self._redis.xrevrange(self._keys.audit, count=limit))
        return [
            AuditEntry(
                time=iso(int(entry_id.split("-")[0]) / 1000),
                actor=fields.get("actor", ""),
                action=fields.get("action", ""),
                target=fields.get("target", ""),
                detail=json.loads(fields.get("detail", "{}")),
            )
            for entry_id, fields in rows
        ]

    # -- clients ---------------------------------------------------------------

    async def create_client(self, actor: str, name: str, balance: object = "0") -> NewClient:
        try:
            client, api_key = await self._accounts.create(name, amount(balance))
        except AccountError as exc:
            raise _refused(exc) from None
        await self.audit(actor, "client.create", name, balance=format_amount(client.balance))
        return NewClient.of_new(client, api_key)

    async def topup(self, actor: str, name: str, value: object, ref: str | None = None, memo: str = "") -> TopUp:
        try:
            entry = await self._accounts.topup(name, amount(value), ref=ref, memo=memo)
        except AccountError as exc:
            raise _refused(exc) from None
        if not entry.duplicate:
            await self.audit(actor, "client.topup", name, amount=format_amount(entry.amount), ref=ref, memo=memo)
        return TopUp.of_topup(entry)

    async def clients(self) -> list[ClientView]:
        return [ClientView.of(c) for c in await self._accounts.all()]

    async def disable_client(self, actor: str, name: str) -> ClientView:
        try:
            client = await self._accounts.disable(name)
        except AccountError as exc:
            raise _refused(exc) from None
        await self.audit(actor, "client.disable", name)
        return ClientView.of(client)

    async def ledger(self, name: str, limit: int | None = None) -> list[EntryView]:
        try:
            await self._accounts.get(name)
        except AccountError as exc:
            raise _refused(exc) from None
        return [EntryView.of(e) for e in await self._ledger.entries(name, limit)]

    # -- orders ----------------------------------------------------------------

    async def order(self, order_id: int) -> OrderDetail:
        """One order, from Redis or from the archive, with its ledger entries."""
        order = await self._book.find(order_id)
        archived = order is None and (order := await self._archive.find(order_id)) is not None
        if order is None:
            raise NotFound(f"no order {order_id}")
        entries = [e for e in await self._ledger.entries(order.client) if e.order == order.id]
        return OrderDetail.of_found(order, archived, entries)

    async def archive(self, actor: str, before: float) -> Archived:
        try:
            moved = await self._archive.archive(before)
        except ArchiveUnwritable as exc:
            raise OperatorError(str(exc)) from None
        await self.audit(actor, "orders.archive", str(self._archive.directory), before=iso(before), moved=moved)
        return Archived(moved, iso(before), str(self._archive.directory))

    async def orders(self, state: str | None = None, client: str | None = None, limit: int = 50) -> list[OrderView]:
        wanted = (state or "").casefold()
        book = self._book
        found: list[Order] = []
        if wanted in WORKING_SETS:  # a working set: read it, newest first
            for order_id in reversed(await book.ids_in(wanted, client)):
                if (order := await book.find(order_id)) is not None:
                    found.append(order)
                if len(found) >= limit:
                    break
        else:
            async for order in book.newest(client):
                if wanted and wanted not in (order.state, order.public_status.casefold()):
                    continue
                found.append(order)
                if len(found) >= limit:
                    break
        return [OrderView.of(o) for o in found]

    async def resolve(
        self, actor: str, order_id: int, *, upstream_order: int | None = None, failed: bool = False
    ) -> OrderView:
        try:
            order = await self._verdicts.resolve(order_id, upstream_order=upstream_order, failed=failed)
        except (ValueError, ClaimConflict) as exc:
            raise _refused(exc) from None
        except StateChanged as exc:
            raise OperatorError(f"order {order_id} is {exc.state}, not unknown: nothing to resolve") from None
        verdict = "failed" if failed else f"placed as upstream order {upstream_order}"
        await self.audit(actor, "order.resolve", str(order_id), verdict=verdict)
        return OrderView.of(order)

    async def refund(self, actor: str, order_id: int, total: object) -> OrderView:
        try:
            order = await self._verdicts.refund(order_id, amount(total))
        except ValueError as exc:
            raise _refused(exc) from None
        except StateChanged as exc:
            raise OperatorError(f"order {order_id} is {exc.state}: it cannot be refunded now") from None
        await self.audit(actor, "order.refund", str(order_id), total=format_amount(order.refunded))
        return OrderView.of(order)

    async def acknowledge(self, actor: str, order_id: int) -> OrderView:
        order = await self._verdicts.acknowledge(order_id)
        await self.audit(actor, "order.ack", str(order_id))
        return OrderView.of(order)

    async def close(self, actor: str, order_id: int, total: object, reason: object = "") -> OrderView:
        """End an order the router cannot finish, with the total refund the operator chose."""
        if not isinstance(reason, str) or len(reason) > 1000:
            raise OperatorError("a reason is text of at most 1000 characters")
        try:
            order = await self._verdicts.close(order_id, amount(total), reason)
        except ValueError as exc:
            raise _refused(exc) from None
        except StateChanged as exc:
            raise OperatorError(
                f"order {order_id} is {exc.state}: only a placed or unknown order can be closed"
            ) from None
        await self.audit(actor, "order.close", str(order_id), refunded=format_amount(order.refunded), reason=reason)
        return OrderView.of(order)

    # -- providers -------------------------------------------------------------

    async def providers(self, check: bool = False) -> list[ProviderView]:
        """Each provider: health (ejections for orders and reads), balance and
        currency as last read and the age of that reading, whether it is low on
        funds, service count, services not sold for their price, catalog age,
        recent and held price changes, and the outcomes of its routes. `check`
        reads the balances now."""
        currencies = {name: provider.currency for name, provider in self._config.providers.items()}
        if check:
            for name, client in self._providers.items():
                try:
                    await self._health.verify(client, currencies[name])
                except UpstreamError:
                    pass
        names = list(self._providers)
        cooldowns = await self._health.cooldowns(names)
        ages = await self._listings.ages(names)
        rows = []
        now = self._health.clock()
        for name in names:
            state = await self._health.state(name)
            listing = await self._listings.cached(name)
            ejected = [scope for scope, on in cooldowns[name].items() if on]
            health = "ejected: " + ", ".join(ejected) if ejected else ("low balance" if state.low else "ok")
            outcomes = await self._outcomes.of_provider(name) if self._outcomes else {}
            rows.append(
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
                    disabled=listing.disabled if listing else (),
                    catalog_age=None if (age := ages[name]) is None else round(age),
                    price_changes=tuple(await self._listings.price_changes(name, 10)),
                    held_prices=tuple(
                        HeldPriceView.of(service, held) for service, held in (await self._listings.held(name)).items()
                    ),
                    outcomes={str(service): RouteOutcomes.of(rates) for service, rates in outcomes.items()},
                )
            )
        return rows

    async def approve_prices(self, actor: str, provider: str, services: Sequence[int] = ()) -> PriceApproval:
        """Approve held price changes of a provider (all, or those of `services`)."""
        if provider not in self._providers:
            raise NotFound(f"no provider {provider!r}")
        held = await self._listings.held(provider)
        unknown = [s for s in services if s not in held]
        if unknown:
            raise OperatorError(f"no held price change of {provider} service {', '.join(map(str, unknown))}")
        approved = await self._listings.approve(provider, services)
        for change in approved:
            await self.audit(actor, "price.approve", f"{provider}:{change['service']}", **change)
            if self._events is not None:
                await self._events.emit(
                    "price.approved",
                    provider,
                    f"{provider} service {change['service']}: {change['from']} -> {change['to']} approved by {actor}",
                    actor=actor,
                    **change,
                )
        return PriceApproval(provider, tuple(approved))

    # -- events and the config -------------------------------------------------

    async def events(self, since: float | None = None, limit: int = 100, kind: str | None = None) -> list[EventView]:
        if self._events is None:
            return []
        if not 1 <= limit <= READ_LIMIT:
            raise OperatorError(f"limit must be between 1 and {READ_LIMIT}")
        return await self._events.read(since, limit, kind)

    async def reload_config(self, actor: str) -> ConfigReload:
        """Read the config file again; a bad one is refused and the running one kept."""
        if self._reload is None:
            raise OperatorError("this process cannot reload its config")
        result = await self._reload()
        detail = {name: value for name, value in vars(result).items() if name != "config"}
        await self.audit(actor, "config.reload", result.config, **detail)
        return result

    # -- reports ---------------------------------------------------------------

    async def report(self, since: float, by: str = "provider") -> ReportView:
        try:
            return ReportView.of(await reports.report(self._book, self._config, since, by))
        except ValueError as exc:
            raise OperatorError(str(exc)) from None

    # -- admin tokens ----------------------------------------------------------

    async def add_admin(self, actor: str, name: str) -> NewAdmin:
        """A token for the admin API; shown once, stored as its SHA-256."""
        if not _ADMIN_NAME.match(name):
            raise OperatorError("an admin name is 1-64 letters, digits, '_', '.' or '-'")
        redis, keys = self._redis, self._keys
        if await redis.hexists(keys.admins, name):
            raise OperatorError(f"admin {name!r} exists already")
        token = secrets.token_urlsafe(32)
        digest = hashlib.sha256(token.encode()).hexdigest()
        await redis.hset(keys.admins, name, digest)
        await redis.set(keys.admin(digest), name)  # last: the token works once all is in place
        await self.audit(actor, "admin.add", name)
        return NewAdmin(name, token)

    async def remove_admin(self, actor: str, name: str) -> RemovedAdmin:
        redis, keys = self._redis, self._keys
        digest = maybe_text(await redis.hget(keys.admins, name))
        if digest is None:
            raise NotFound(f"no admin {name!r}")
        await redis.delete(keys.admin(digest))  # first: the token stops working at once
        await redis.hdel(keys.admins, name)
        await self.audit(actor, "admin.remove", name)
        return RemovedAdmin(name)

    async def admins(self) -> list[str]:
        return sorted(texts(await self._redis.hkeys(self._keys.admins)))

    async def admin_of(self, token: str) -> str | None:
        """The admin a token belongs to, or None."""
        if not token or len(token) > 200:
            return None
        return maybe_text(await self._redis.get(self._keys.admin(hashlib.sha256(token.encode()).hexdigest())))
