"""Operators' work on clients: accounts, money (top-ups and adjustments),
keys, and each client's terms. Every change is one audited step (`proxy.ops.acting`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable
from decimal import Decimal

from proxy.accounts.clients import Client, check_name
from proxy.accounts.terms import SAME_LINK
from proxy.catalog.catalog import build_catalog
from proxy.errors import (
    AccountError,
    InsufficientFunds,
    Invalid,
    MoneyError,
    NotFound,
    OperatorError,
    UnknownClient,
)
from proxy.money import format_amount, parse_amount
from proxy.ops.acting import Acting, amount, reason_text, reference, refusal, whole
from proxy.ops.answers import (
    ClientView,
    EntryView,
    NewClient,
    NewKey,
    TopUp,
)
from proxy.ops.audit import Record
from proxy.ops.roles import Actor, as_actor
from proxy.ops.search import rows

MAX_MARKUP_PERCENT = Decimal(1000)
MAX_WINDOW_SECONDS = 7 * 86400
DEFAULT = "default"  # a term set to this is the deployment's again


class ClientsDesk(Acting):
    """Clients: opening, money, keys, terms."""

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
                raise refusal(exc) from None
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
                raise refusal(exc) from None
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
                raise refusal(exc) from None
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

    async def client(self, name: str) -> ClientView:
        """One client, its balance and terms (`NotFound` for no such client)."""
        return await self._client(name)

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
            raise refusal(exc) from None

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
            raise refusal(exc) from None
