"""Whether a provider may be sent orders now: cool-downs and verification.

Both live in Redis, so every instance of the router sees them.

- **Cool-downs**: after a failure, a provider is skipped for a while. Kept
  apart for orders and for reads: a provider whose status endpoint failed may
  still take orders, and the other way round.
- **Verification**: at start and on a schedule each provider's `balance` is
  read. Its reply names the currency the provider bills in; if that is not
  the currency the config says, every price we computed for it is wrong, so
  the provider is blocked from routing (and its services are not sold) until
  a later read agrees. The balance and currency as last read are kept for
  operators.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from redis.typing import EncodableT

from proxy.errors import ProviderRefused, UpstreamError
from proxy.providers.upstream import ProviderClient
from proxy.store import Keys, Store, maybe_text, text_map

log = logging.getLogger(__name__)

ORDERS = "orders"  # a provider that failed an `add` is skipped for new orders
READS = "reads"  # one that failed a status read is not asked again for a while


@dataclass(frozen=True)
class ProviderState:
    """What the last check of a provider read."""

    balance: str = ""
    currency: str = ""
    checked_at: float = 0.0
    blocked: str = ""  # why it is out of routing, if it is
    error: str = ""  # why the last check failed, if it did


class Health:
    def __init__(self, redis: Store, keys: Keys, cooldown: float, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.keys = keys
        self.cooldown = cooldown
        self.clock = clock

    # -- cool-downs ------------------------------------------------------------

    async def cooling(self, provider: str, scope: str = ORDERS) -> bool:
        return bool(await self.redis.exists(self.keys.cooldown(f"{provider}:{scope}")))

    async def routable(self, providers: Iterable[str]) -> set[str]:
        """Those of `providers` that may take an order now: not cooling down, not blocked."""
        names = list(dict.fromkeys(providers))
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.exists(self.keys.cooldown(f"{name}:{ORDERS}"))
                pipe.hget(self.keys.provider_state(name), "blocked")
            replies = await pipe.execute()
        return {
            name
            for name, cooling, blocked in zip(names, replies[::2], replies[1::2], strict=True)
            if not cooling and not blocked
        }

    async def cooldowns(self, providers: Iterable[str]) -> dict[str, dict[str, bool]]:
        """Per provider, whether it cools down for orders and for reads."""
        names = list(providers)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                for scope in (ORDERS, READS):
                    pipe.exists(self.keys.cooldown(f"{name}:{scope}"))
            replies = await pipe.execute()
        return {name: {ORDERS: bool(replies[2 * i]), READS: bool(replies[2 * i + 1])} for i, name in enumerate(names)}

    async def read_failed(self, provider: str, error: UpstreamError) -> None:
        """Cool reads down after a failed read, unless it was no outage: a plain
        JSON refusal, or a call we never sent (our pool or budget was spent)."""
        if not (isinstance(error, ProviderRefused) and (error.message or error.local)):
            await self.fail(provider, error.reason, READS)

    async def fail(self, provider: str, reason: str, scope: str = ORDERS) -> None:
        if self.cooldown > 0:
            await self.redis.set(self.keys.cooldown(f"{provider}:{scope}"), reason[:200], px=int(self.cooldown * 1000))

    # -- verification ----------------------------------------------------------

    async def blocked(self, providers: Iterable[str]) -> dict[str, str]:
        """The blocked ones among `providers`, with the reason."""
        names = list(providers)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(self.keys.provider_state(name), "blocked")
            replies = await pipe.execute()
        return {name: reason for name, reason in zip(names, replies, strict=True) if reason}

    async def state(self, provider: str) -> ProviderState:
        record = text_map(await self.redis.hgetall(self.keys.provider_state(provider)))
        return ProviderState(
            balance=record.get("balance", ""),
            currency=record.get("currency", ""),
            checked_at=float(record.get("checked_at", "0")),
            blocked=record.get("blocked", ""),
            error=record.get("error", ""),
        )

    async def verify(self, client: ProviderClient, currency: str) -> ProviderState:
        """Read the provider's balance; block it if it bills in another currency."""
        key = self.keys.provider_state(client.name)
        try:
            balance = await client.balance()
        except UpstreamError as exc:
            log.warning("provider %s not verified: %s", client.name, exc.reason)
            await self.redis.hset(key, mapping={"error": exc.reason[:200], "checked_at": repr(self.clock())})
            return await self.state(client.name)
        fields: dict[EncodableT, EncodableT] = {
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
        return await self.state(client.name)
