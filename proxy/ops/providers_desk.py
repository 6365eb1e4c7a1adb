"""Operators' work on providers and the deployment: provider health and
checks, held price changes, events, reloading the config, reports. Every
change is one audited step (`proxy.ops.acting`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from proxy.errors import (
    Invalid,
    NotFound,
    OperatorError,
    UpstreamError,
)
from proxy.money import format_amount
from proxy.ops import reports
from proxy.ops.acting import Acting, reason_text
from proxy.ops.answers import (
    CallsView,
    ConfigReload,
    EjectionView,
    EventView,
    HeldPriceView,
    PriceApproval,
    ProviderView,
    ReportView,
    RouteOutcomes,
    iso,
)
from proxy.ops.audit import Record
from proxy.ops.events import READ_LIMIT
from proxy.ops.roles import Actor, as_actor
from proxy.providers.listings import ApprovedPrice


class NotReloaded(OperatorError):
    """A config reload refused: the running config stays (`result` says why)."""

    def __init__(self, result: ConfigReload) -> None:
        super().__init__("config not reloaded, the running one stays: " + "; ".join(result.problems))
        self.result = result


class ProvidersDesk(Acting):
    """Providers, prices, events, the config, reports."""

    async def providers(self, check: bool = False) -> list[ProviderView]:
        """Each provider: health (ejections for orders and reads), balance and
        currency as last read and the age of that reading, whether it is low on
        funds, service count, services not sold for their price, catalog age,
        recent and held price changes, and the outcomes of its routes. `check`
        reads the balances now."""
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
                    disabled=listing.disabled if listing else (),
                    catalog_age=None if (age := ages[name]) is None else round(age),
                    price_changes=tuple(await self._listings.price_changes(name, 10)),
                    held_prices=tuple(
                        HeldPriceView.of(service, held) for service, held in (await self._listings.held(name)).items()
                    ),
                    outcomes={str(service): RouteOutcomes.of(rates) for service, rates in outcomes.items()},
                )
            )
        return found

    async def provider_calls(self) -> dict[str, CallsView]:
        """Each provider's upstream calls over the last hour (every instance's)."""
        if self._calls is None:
            return {}
        windows = await self._calls.last_hour(self._providers)
        return {name: CallsView.of(name, window) for name, window in windows.items()}

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

    async def reports(self, asked: Sequence[tuple[float, str]]) -> list[ReportView]:
        """Several reports (start, grouping) from one pass over the orders."""
        try:
            return [ReportView.of(made) for made in await reports.reports(self._book, self._config, asked)]
        except ValueError as exc:
            raise OperatorError(str(exc)) from None
