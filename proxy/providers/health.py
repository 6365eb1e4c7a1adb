"""Whether a provider may be sent orders now: ejection with memory, and verification.

Both live in Redis, so every instance of the router sees (and decides) the same.

- **Ejection** (Envoy's outlier detection is the model): failures in a row
  are counted per provider, for orders and for reads apart (a provider whose
  status endpoint fails may still take orders, and the other way round).
  After `consecutive_failures` of them it is ejected for base x
  2^(ejections-1) seconds, at most `max_ejection_seconds`. When that time is
  up, the background loop probes it with a cheap `balance` call; it comes
  back when one answers (or an order that went there anyway is accepted),
  and is ejected for longer if not. A success resets the count; after
  `max_ejection_seconds` healthy, ejections start over. Every decision is
  one small Lua script (`scripts/health.lua`) on the provider's key, so two
  instances never both eject, or both announce a return.
- **Verification**: at start and on a schedule each provider's `balance` is
  read. Its reply names the currency the provider bills in; if that is not
  the currency the config says, every price we computed for it is wrong, so
  the provider is blocked from routing (and its services are not sold) until
  a later read agrees. The balance itself goes to `proxy.providers.funds`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from proxy import scripts
from proxy.config import Config
from proxy.errors import ProviderRefused, UpstreamError
from proxy.keys import Keys
from proxy.logs import Emit, no_events
from proxy.money import from_minor
from proxy.providers.funds import Funds
from proxy.providers.upstream import ProviderClient
from proxy.store import Field, Store, maybe_text, text_map

log = logging.getLogger(__name__)

ORDERS = "orders"  # a provider that fails `add`s is ejected from routing
READS = "reads"  # one whose status reads fail is not asked again for a while
SCOPES = (ORDERS, READS)
# Seconds one instance's probe of an ejected provider is left alone by the others.
PROBE_LOCK_SECONDS = 30


@dataclass(frozen=True)
class Thresholds:
    """One provider's ejection policy."""

    consecutive_failures: int = 3
    base_ejection_seconds: float = 60.0
    max_ejection_seconds: float = 900.0


def thresholds_from(config: Config, default_base: float) -> dict[str, Thresholds]:
    """Each provider's thresholds: its own, else the config's, else `default_base`
    (SMM_PROXY_UPSTREAM_COOLDOWN) for the first ejection's length."""
    policy = config.health
    result = {}
    for name, provider in config.providers.items():
        own = provider.health
        base = own.base_ejection_seconds
        if base is None:
            base = policy.base_ejection_seconds if policy.base_ejection_seconds is not None else default_base
        result[name] = Thresholds(
            consecutive_failures=own.consecutive_failures or policy.consecutive_failures,
            base_ejection_seconds=base,
            max_ejection_seconds=own.max_ejection_seconds or policy.max_ejection_seconds,
        )
    return result


@dataclass(frozen=True)
class ProviderState:
    """What the last check of a provider read, and what we know of its balance since."""

    balance: str = ""
    currency: str = ""
    checked_at: float = 0.0
    blocked: str = ""  # why it is out of routing, if it is
    error: str = ""  # why the last check failed, if it did
    funds: Decimal | None = None  # the balance as read, less what we sent it since
    funds_at: float = 0.0  # when the balance was last read
    low: bool = False  # below its `low_balance`: no new orders


@dataclass(frozen=True)
class Ejection:
    """A provider's health in one scope."""

    failures: int = 0
    ejections: int = 0
    until: float = 0.0  # while set, ejected (until a probe answers, even after this time)
    reason: str = ""

    @property
    def ejected(self) -> bool:
        return self.until > 0


@dataclass(frozen=True)
class RouteState:
    """What routing must know of a provider for one order."""

    blocked: str = ""
    ejected_until: float = 0.0
    funds: Decimal | None = None
    low: bool = False


def _state(record: Mapping[str, str]) -> ProviderState:
    funds = record.get("funds")
    return ProviderState(
        balance=record.get("balance", ""),
        currency=record.get("currency", ""),
        checked_at=float(record.get("checked_at", "0")),
        blocked=record.get("blocked", ""),
        error=record.get("error", ""),
        funds=from_minor(funds) if funds not in (None, "") else None,
        funds_at=float(record.get("funds_at", "0")),
        low=record.get("low") == "1",
    )


def _ejection(record: Mapping[str, str]) -> Ejection:
    return Ejection(
        failures=int(record.get("failures", "0")),
        ejections=int(record.get("ejections", "0")),
        until=float(record.get("until", "0")),
        reason=record.get("reason", ""),
    )


class Health:
    def __init__(
        self,
        redis: Store,
        keys: Keys,
        thresholds: Mapping[str, Thresholds],
        funds: Funds,
        clock: Callable[[], float] = time.time,
        emit: Emit = no_events,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.thresholds = dict(thresholds)
        self.funds = funds
        self.clock = clock
        self.emit = emit
        self._script = scripts.register(redis, "proxy.providers", "health")

    def _of(self, provider: str) -> Thresholds:
        return self.thresholds.get(provider) or Thresholds()

    async def _run(self, provider: str, scope: str, op: str, reason: str = "") -> list[str]:
        rules = self._of(provider)
        reply = await self._script(
            keys=[self.keys.health(provider, scope)],
            args=[
                op,
                repr(self.clock()),
                rules.consecutive_failures,
                repr(float(rules.base_ejection_seconds)),
                repr(float(rules.max_ejection_seconds)),
                reason[:200],
                PROBE_LOCK_SECONDS,
            ],
        )
        return [str(part) for part in reply]

    # -- counting --------------------------------------------------------------

    async def fail(self, provider: str, reason: str, scope: str = ORDERS) -> Ejection | None:
        """Count a failure; the ejection if this one ejected the provider."""
        reply = await self._run(provider, scope, "fail", reason)
        if reply[0] != "ejected":
            return None
        return await self._ejected(provider, scope, float(reply[1]), int(reply[2]), reason)

    async def succeed(self, provider: str, scope: str = ORDERS) -> None:
        """A call that worked: the count starts over, and an ejected provider is back."""
        reply = await self._run(provider, scope, "ok")
        if reply[0] == "back":
            await self._back(provider, scope, "an order it was sent anyway was accepted")

    async def accepted_anyway(self, provider: str) -> None:
        """An ejected provider's order was accepted (a script that counted the
        success said it is back): tell operators."""
        await self._back(provider, ORDERS, "an order it was sent anyway was accepted")

    async def read_failed(self, provider: str, error: UpstreamError) -> None:
        """Count a failed read, unless it was no outage: a plain JSON refusal,
        or a call we never sent (our pool or budget was spent)."""
        if not (isinstance(error, ProviderRefused) and (error.message or error.local)):
            await self.fail(provider, error.reason, READS)

    async def read_ok(self, provider: str) -> None:
        await self.succeed(provider, READS)

    async def _ejected(self, provider: str, scope: str, until: float, count: int, reason: str) -> Ejection:
        seconds = until - self.clock()
        log.warning(
            "PROVIDER %s EJECTED from %s for %.0f s (ejection %d in a row): %s", provider, scope, seconds, count, reason
        )
        await self.emit(
            "provider.ejected",
            provider,
            f"{provider} ejected from {scope} for {seconds:.0f} s after failures in a row: {reason}",
            scope=scope,
            seconds=round(seconds),
            ejections=count,
            reason=reason,
        )
        return Ejection(ejections=count, until=until, reason=reason)

    async def _back(self, provider: str, scope: str, why: str) -> None:
        log.warning("provider %s is back in %s: %s", provider, scope, why)
        await self.emit("provider.back", provider, f"{provider} is back in {scope}: {why}", scope=scope)

    # -- probing ---------------------------------------------------------------

    async def probe(self, clients: Mapping[str, ProviderClient]) -> dict[str, bool]:
        """Probe every provider whose ejection time is up with a `balance` call;
        per provider probed, whether it answered (and so is back)."""
        probed: dict[str, bool] = {}
        for name, client in clients.items():
            due = [scope for scope in SCOPES if (await self._run(name, scope, "probe"))[0] == "probe"]
            if not due:
                continue
            try:
                balance = await client.balance()
            except UpstreamError as exc:
                probed[name] = False
                for scope in due:
                    reply = await self._run(name, scope, "probe_failed", f"probe: {exc.reason}")
                    if reply[0] == "ejected":
                        await self._ejected(name, scope, float(reply[1]), int(reply[2]), f"probe: {exc.reason}")
                continue
            probed[name] = True
            for scope in due:
                if (await self._run(name, scope, "ok"))[0] == "back":
                    await self._back(name, scope, "its balance probe answered")
            await self.funds.read(name, balance.balance)
        return probed

    # -- reading ---------------------------------------------------------------

    async def ejection(self, provider: str, scope: str = ORDERS) -> Ejection:
        return _ejection(text_map(await self.redis.hgetall(self.keys.health(provider, scope))))

    async def cooling(self, provider: str, scope: str = ORDERS) -> bool:
        """Whether the provider is ejected from `scope` now."""
        return bool(float(maybe_text(await self.redis.hget(self.keys.health(provider, scope), "until")) or 0))

    def route_keys(self, providers: Iterable[str]) -> list[tuple[str, str]]:
        """The keys what routing needs of each provider lives in: (its order health, its state).
        A script given them reads them as `route_states` does (proxy/orders/scripts/reserve.lua):
        per provider, `until`, then `blocked`, `funds`, `low`."""
        return [(self.keys.health(name, ORDERS), self.keys.provider_state(name)) for name in dict.fromkeys(providers)]

    @staticmethod
    def route_states_from(providers: Iterable[str], values: Sequence[str | None]) -> dict[str, RouteState]:
        """Route states from the values read from `route_keys`, four per provider."""
        states = {}
        for index, name in enumerate(dict.fromkeys(providers)):
            until, blocked, funds, low = values[4 * index : 4 * index + 4]
            states[name] = RouteState(
                blocked=blocked or "",
                ejected_until=float(until or 0),
                funds=from_minor(funds) if funds not in (None, "") else None,
                low=low == "1",
            )
        return states

    async def route_states(self, providers: Iterable[str]) -> dict[str, RouteState]:
        """What routing needs of each provider, in one round trip."""
        names = list(dict.fromkeys(providers))
        async with self.redis.pipeline(transaction=False) as pipe:
            for health, state in self.route_keys(names):
                pipe.hget(health, "until")
                pipe.hmget(state, ["blocked", "funds", "low"])
            replies = await pipe.execute()
        values: list[str | None] = []
        for index in range(len(names)):
            values += [replies[2 * index], *replies[2 * index + 1]]
        return self.route_states_from(names, values)

    async def routable(self, providers: Iterable[str]) -> set[str]:
        """Those of `providers` that may take an order now: not ejected, blocked or low on funds."""
        states = await self.route_states(providers)
        return {name for name, s in states.items() if not s.ejected_until and not s.blocked and not s.low}

    async def cooldowns(self, providers: Iterable[str]) -> dict[str, dict[str, bool]]:
        """Per provider, whether it is ejected from orders and from reads."""
        names = list(providers)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                for scope in SCOPES:
                    pipe.hget(self.keys.health(name, scope), "until")
            replies = await pipe.execute()
        return {
            name: {scope: bool(float(replies[2 * i + j] or 0)) for j, scope in enumerate(SCOPES)}
            for i, name in enumerate(names)
        }

    async def ejections(self, provider: str) -> dict[str, Ejection]:
        return {scope: await self.ejection(provider, scope) for scope in SCOPES}

    async def blocked(self, providers: Iterable[str]) -> dict[str, str]:
        """The blocked ones among `providers`, with the reason."""
        names = list(providers)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(self.keys.provider_state(name), "blocked")
            replies = await pipe.execute()
        return {name: reason for name, reason in zip(names, replies, strict=True) if reason}

    async def state(self, provider: str) -> ProviderState:
        return _state(text_map(await self.redis.hgetall(self.keys.provider_state(provider))))

    # -- verification ----------------------------------------------------------

    async def verify(self, client: ProviderClient, currency: str) -> ProviderState:
        """Read the provider's balance; block it if it bills in another currency."""
        key = self.keys.provider_state(client.name)
        try:
            balance = await client.balance()
        except UpstreamError as exc:
            log.warning("provider %s not verified: %s", client.name, exc.reason)
            await self.redis.hset(key, mapping={"error": exc.reason[:200], "checked_at": repr(self.clock())})
            return await self.state(client.name)
        fields: dict[str, Field] = {
            "balance": str(balance.balance),
            "checked_at": repr(self.clock()),
            "error": "",
        }
        before = maybe_text(await self.redis.hget(key, "blocked"))
        if balance.currency is None:  # says nothing of the currency: a block stays until one agrees
            fields["currency"] = ""
            fields["blocked"] = before or ""
        elif balance.currency != currency:
            fields["currency"] = balance.currency
            fields["blocked"] = f"its balance is in {balance.currency}, the config says {currency}"
            log.error(
                "PROVIDER %s BLOCKED: its balance reply says %s but the config prices it in %s; "
                "no order is routed to it until they agree",
                client.name,
                balance.currency,
                currency,
            )
        else:
            fields["currency"] = balance.currency
            fields["blocked"] = ""
        await self.redis.hset(key, mapping=fields)
        if before and not fields["blocked"]:
            log.warning("provider %s unblocked: its balance is in %s again", client.name, currency)
        if not fields["blocked"]:
            await self.funds.read(client.name, balance.balance)
        return await self.state(client.name)
