"""What operators do, written once: the CLI and the admin API both call here.

Each action takes the acting operator's name (`cli`, or `admin:NAME` for an
admin token), goes through the same domain functions the router uses
(accounts, order book, health, reports), writes what changed to the audit
log (who, what, when), and answers plain JSON-able data. A refusal raises
`OperatorError` with a message fit to show.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from proxy.accounts.clients import Accounts, Client
from proxy.accounts.ledger import Entry, Ledger
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
from proxy.orders.archive import Archive
from proxy.orders.book import OrderBook
from proxy.orders.records import Order
from proxy.orders.states import CLOSED, WORKING_SETS
from proxy.orders.verdicts import Verdicts
from proxy.providers.health import Health
from proxy.providers.listings import Listings
from proxy.providers.upstream import ProviderClient
from proxy.store import Keys

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


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="seconds")


def client_json(client: Client) -> dict[str, Any]:
    return {
        "name": client.name,
        "balance": format_amount(client.balance),
        "currency": client.currency,
        "disabled": client.disabled,
    }


def entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "time": entry.time.isoformat(timespec="seconds"),
        "kind": entry.kind,
        "amount": format_amount(entry.amount),
        "balance": format_amount(entry.balance),
        "ref": entry.ref,
        "memo": entry.memo,
        "order": entry.order,
    }


def order_json(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "client": order.client,
        "service": order.service,
        "type": order.type,
        "link": order.link,
        "quantity": order.quantity,
        "state": order.state,
        "status": order.public_status,
        "remains": order.public_remains,
        "charge": format_amount(order.charge),
        "refunded": format_amount(order.refunded),
        "provider": order.provider,
        "upstream_service": order.upstream_service,
        "upstream_order": order.upstream_order,
        "attempts": [a.__dict__ for a in order.attempts],
        "attention": order.attention,
        **({"closed_reason": order.closed_reason} if order.state == CLOSED else {}),
        "cost": "" if order.cost is None else f"{format_amount(order.cost)} {order.cost_currency}",
        "upstream_charge": (
            ""
            if order.upstream_charge is None
            else f"{format_amount(order.upstream_charge)} {order.upstream_currency or order.cost_currency}"
        ),
        "created": iso(order.created),
    }


class Operators:
    """Every operator action, on the collaborators it works through."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
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

    # -- the audit log ---------------------------------------------------------

    async def audit(self, actor: str, action: str, target: str, **detail: object) -> None:
        """Record an operator's action (best effort after it: the action itself stands)."""
        fields = {"actor": actor, "action": action, "target": target, "detail": json.dumps(detail, default=str)}
        try:
            await self._redis.xadd(self._keys.audit, fields)  # type: ignore[arg-type]
        except Exception as exc:  # never undo what was done because the log failed
            log.error("audit log not written for %s %s by %s: %s", action, target, actor, type(exc).__name__)
        log.info("operator %s: %s %s", actor, action, target, extra={"actor": actor, "detail": detail})

    async def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._redis.xrevrange(self._keys.audit, count=limit)
        return [
            {
                "time": iso(int(entry_id.split("-")[0]) / 1000),
                **{k: v for k, v in fields.items() if k != "detail"},
                "detail": json.loads(fields.get("detail", "{}")),
            }
            for entry_id, fields in rows
        ]

    # -- clients ---------------------------------------------------------------

    async def create_client(self, actor: str, name: str, balance: object = "0") -> dict[str, Any]:
        try:
            client, api_key = await self._accounts.create(name, amount(balance))
        except AccountError as exc:
            raise _refused(exc) from None
        await self.audit(actor, "client.create", name, balance=format_amount(client.balance))
        return {**client_json(client), "key": api_key}

    async def topup(
        self, actor: str, name: str, value: object, ref: str | None = None, memo: str = ""
    ) -> dict[str, Any]:
        try:
            entry = await self._accounts.topup(name, amount(value), ref=ref, memo=memo)
        except AccountError as exc:
            raise _refused(exc) from None
        if not entry.duplicate:
            await self.audit(actor, "client.topup", name, amount=format_amount(entry.amount), ref=ref, memo=memo)
        return {**entry_json(entry), "applied": not entry.duplicate}

    async def clients(self) -> list[dict[str, Any]]:
        return [client_json(c) for c in await self._accounts.all()]

    async def disable_client(self, actor: str, name: str) -> dict[str, Any]:
        try:
            client = await self._accounts.disable(name)
        except AccountError as exc:
            raise _refused(exc) from None
        await self.audit(actor, "client.disable", name)
        return client_json(client)

    async def ledger(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        try:
            await self._accounts.get(name)
        except AccountError as exc:
            raise _refused(exc) from None
        return [entry_json(e) for e in await self._ledger.entries(name, limit)]

    # -- orders ----------------------------------------------------------------

    async def order(self, order_id: int) -> dict[str, Any]:
        """One order, from Redis or from the archive, with its ledger entries."""
        order = await self._book.find(order_id)
        archived = order is None and (order := await self._archive.find(order_id)) is not None
        if order is None:
            raise NotFound(f"no order {order_id}")
        entries = [e for e in await self._ledger.entries(order.client) if e.order == order.id]
        return {**order_json(order), "archived": archived, "ledger": [entry_json(e) for e in entries]}

    async def archive(self, actor: str, before: float) -> dict[str, Any]:
        try:
            moved = await self._archive.archive(before)
        except ArchiveUnwritable as exc:
            raise OperatorError(str(exc)) from None
        await self.audit(actor, "orders.archive", str(self._archive.directory), before=iso(before), moved=moved)
        return {"moved": moved, "before": iso(before), "to": str(self._archive.directory)}

    async def orders(
        self, state: str | None = None, client: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
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
        return [order_json(o) for o in found]

    async def resolve(
        self, actor: str, order_id: int, *, upstream_order: int | None = None, failed: bool = False
    ) -> dict[str, Any]:
        try:
            order = await self._verdicts.resolve(order_id, upstream_order=upstream_order, failed=failed)
        except (ValueError, ClaimConflict) as exc:
            raise _refused(exc) from None
        except StateChanged as exc:
            raise OperatorError(f"order {order_id} is {exc.state}, not unknown: nothing to resolve") from None
        verdict = "failed" if failed else f"placed as upstream order {upstream_order}"
        await self.audit(actor, "order.resolve", str(order_id), verdict=verdict)
        return order_json(order)

    async def refund(self, actor: str, order_id: int, total: object) -> dict[str, Any]:
        try:
            order = await self._verdicts.refund(order_id, amount(total))
        except ValueError as exc:
            raise _refused(exc) from None
        except StateChanged as exc:
            raise OperatorError(f"order {order_id} is {exc.state}: it cannot be refunded now") from None
        await self.audit(actor, "order.refund", str(order_id), total=format_amount(order.refunded))
        return order_json(order)

    async def acknowledge(self, actor: str, order_id: int) -> dict[str, Any]:
        order = await self._verdicts.acknowledge(order_id)
        await self.audit(actor, "order.ack", str(order_id))
        return order_json(order)

    async def close(self, actor: str, order_id: int, total: object, reason: object = "") -> dict[str, Any]:
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
        return order_json(order)

    # -- providers -------------------------------------------------------------

    async def providers(self, check: bool = False) -> list[dict[str, Any]]:
        """Each provider: health, cool-downs, balance and currency as last read,
        service count, services not sold for their price, catalog age, recent
        price changes. `check` reads them now."""
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
        for name in names:
            state = await self._health.state(name)
            listing = await self._listings.cached(name)
            cooling = [scope for scope, on in cooldowns[name].items() if on]
            rows.append(
                {
                    "name": name,
                    "health": "blocked" if state.blocked else ("cooling: " + ", ".join(cooling) if cooling else "ok"),
                    "blocked": state.blocked,
                    "currency": currencies[name],
                    "currency_read": state.currency,
                    "balance": state.balance,
                    "checked": iso(state.checked_at) if state.checked_at else "",
                    "check_error": state.error,
                    "services": len(listing.services) if listing else 0,
                    "disabled": [
                        {"service": d.service, "name": d.name, "rate": d.rate, "reason": d.reason}
                        for d in (listing.disabled if listing else ())
                    ],
                    "catalog_age": None if ages[name] is None else round(ages[name]),
                    "price_changes": await self._listings.price_changes(name, 10),
                }
            )
        return rows

    # -- reports ---------------------------------------------------------------

    async def report(self, since: float, by: str = "provider") -> dict[str, Any]:
        try:
            return (await reports.report(self._book, self._config, since, by)).as_dict()
        except ValueError as exc:
            raise OperatorError(str(exc)) from None

    # -- admin tokens ----------------------------------------------------------

    async def add_admin(self, actor: str, name: str) -> dict[str, Any]:
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
        return {"name": name, "token": token}

    async def remove_admin(self, actor: str, name: str) -> dict[str, Any]:
        redis, keys = self._redis, self._keys
        digest = await redis.hget(keys.admins, name)
        if digest is None:
            raise NotFound(f"no admin {name!r}")
        await redis.delete(keys.admin(digest))  # first: the token stops working at once
        await redis.hdel(keys.admins, name)
        await self.audit(actor, "admin.remove", name)
        return {"name": name, "removed": True}

    async def admins(self) -> list[str]:
        return sorted(await self._redis.hkeys(self._keys.admins))

    async def admin_of(self, token: str) -> str | None:
        """The admin a token belongs to, or None."""
        if not token or len(token) > 200:
            return None
        return await self._redis.get(self._keys.admin(hashlib.sha256(token.encode()).hexdigest()))
