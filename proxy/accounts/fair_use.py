"""Fair use: how often each client may call us, and each order be refilled or canceled.

Clients share the providers' request budgets: one client calling `refill`
in a loop must not spend what another client's `add` needs. Limits are
counted in Redis by the `limits` library (moving windows, so every instance
counts the same calls), written as it writes them ("600/minute",
"10/second;600/minute") in the config's `fair_use:`. A client over its rate
is answered `Too many requests, please slow down` and nothing is done; a
refill or cancel asked too often for one order is refused for that order
alone. (The providers' own budgets keep a share for orders too:
`proxy.providers.budget`.)

When Redis cannot count, calls are let through: a limit is protection, not
money.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisClusterStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from proxy.policies import FairUsePolicy
from proxy.store import Keys, Store, is_cluster, single

log = logging.getLogger(__name__)

TOO_MANY_REQUESTS = "Too many requests, please slow down"
TOO_MANY_REFILLS = "Too many refill requests for this order, please try again later"
TOO_MANY_CANCELS = "Too many cancel requests for this order, please try again later"


def storage_for(redis: Store, keys: Keys) -> Storage:
    """The `limits` storage on our Redis: our connection pool, or (on a
    cluster) a cluster client of its own to the same nodes."""
    if is_cluster(redis):
        startup = redis.nodes_manager.startup_nodes.values()
        nodes = ",".join(f"{node.host}:{node.port}" for node in startup)
        return RedisClusterStorage(f"async+redis+cluster://{nodes}", implementation="redispy", key_prefix=keys.limits)
    server = single(redis)
    if server is None:
        raise TypeError(f"not a Redis client: {redis!r}")
    # limits documents `connection_pool` among the options it hands redis-py,
    # but types those options float | str | bool: the pool has to pass as Any.
    pool = cast(Any, server.connection_pool)
    return RedisStorage("async+redis://", implementation="redispy", connection_pool=pool, key_prefix=keys.limits)


class FairUse:
    def __init__(self, storage: Storage, policy: FairUsePolicy) -> None:
        self.limiter = MovingWindowRateLimiter(storage)
        self.configure(policy)

    def configure(self, policy: FairUsePolicy) -> None:
        self.requests: list[RateLimitItem] = parse_many(policy.requests)
        self.per_order: dict[str, list[RateLimitItem]] = {
            "refill": parse_many(policy.refills_per_order),
            "cancel": parse_many(policy.cancels_per_order),
        }

    async def request(self, client: str) -> bool:
        """Count one API request of `client`; False if it is over its rate."""
        return await self._hit(self.requests, "request", client)

    async def order_action(self, action: str, client: str, order: int) -> bool:
        """Count one `refill` or `cancel` of an order; False if asked too often."""
        return await self._hit(self.per_order[action], action, client, str(order))

    async def _hit(self, items: list[RateLimitItem], *names: str) -> bool:
        try:
            for item in items:
                if not await self.limiter.hit(item, *names):
                    return False
        except Exception as exc:
            log.warning("fair use not counted (%s): let through", type(exc).__name__)
        return True
