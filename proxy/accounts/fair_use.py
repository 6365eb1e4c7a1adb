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

On one server an `add` is counted by the script that opens its order
(`proxy/orders/scripts/reserve.lua`, with `scripts/rate_window.lua`, the
same moving window on the same keys as `limits`), so it costs no round
trip of its own; `windows` says where and how.

What it costs, and the pre-check
--------------------------------
Counting in Redis is a round trip and a Lua script a request (about 90 µs of
this process's CPU: benchmarks/hot_path.py), as much as everything else a
cached read does. So on one server each instance takes a busy client's
request allowance in small leases (`scripts/lease.lua`, on `limits`' own
window key and format): one round trip counts `n` requests at once, and the
next `n - 1` requests of that client on this instance are let through from
memory within `V` seconds. `n` follows the client's recent rate here, from 1
up to a 50th of the limit, and `V` is a 50th of the period, at most a second.
What a lease did not use is given back in the client's next lease round trip
(its entries are removed from the window), so a client that pauses loses
nothing it did not use. So:

- every request is counted in Redis before it is let through, at most `V`
  early: over any period each instance lets through at most one lease
  (≤ 2 % of the limit) beyond it, and instances together stay honest;
- a client sending less than one request per `V` is counted request by
  request, as before; so is everything on a Redis Cluster, and a policy of
  several limits (`10/second;600/minute`), through `limits` as before;
- a lease Redis refuses is asked again for one request, so the last requests
  under a limit are counted one by one.

(600/minute, a client at 10 requests a second: one round trip a second
instead of ten.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisClusterStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from proxy import scripts
from proxy.keys import Keys
from proxy.policies import FairUsePolicy
from proxy.store import Store, is_cluster, single

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


@dataclass(frozen=True)
class RateWindow:
    """One of a client's request limits, as a script counts it (`scripts/rate_window.lua`)."""

    key: str
    limit: int
    seconds: int


# A lease is at most this share of the smallest limit, valid at most this share
# of the shortest period (and never longer than MAX_LEASE_SECONDS).
LEASE_SHARE = 50
MAX_LEASE_SECONDS = 1.0
# Leases kept for at most this many clients (past it, all are dropped: a lease is only a saving).
MAX_LEASES = 10_000


class _Lease:
    """Requests of one client this instance may let through before `until`."""

    __slots__ = ("left", "size", "since", "until", "stamp")

    def __init__(self, left: int, size: int, since: float, until: float, stamp: str) -> None:
        self.left = left
        self.size = size
        self.since = since
        self.until = until
        self.stamp = stamp  # the time its requests were counted at, in the window


class FairUse:
    """Fair use, counted in Redis. `redis` and `key_prefix` (the storage's
    prefix, which `limits` puts before each key) turn on leases for requests."""

    def __init__(
        self,
        storage: Storage,
        policy: FairUsePolicy,
        key_prefix: str = "",
        *,
        redis: Store | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiter = MovingWindowRateLimiter(storage)
        self.key_prefix = key_prefix
        self.clock = clock
        self._script = scripts.register(redis, "proxy.accounts", "lease") if redis and single(redis) else None
        self._leases: dict[str, _Lease] = {}
        self._claims: dict[str, asyncio.Future[None]] = {}
        self.configure(policy)

    def configure(self, policy: FairUsePolicy) -> None:
        self.requests: list[RateLimitItem] = parse_many(policy.requests)
        self.per_order: dict[str, list[RateLimitItem]] = {
            "refill": parse_many(policy.refills_per_order),
            "cancel": parse_many(policy.cancels_per_order),
        }
        [first, *more] = self.requests
        # Leases: on one server, for a policy of one limit.
        self.leased = first if self._script is not None and not more else None
        self.max_lease = max(1, first.amount // LEASE_SHARE)
        self.lease_seconds = min(MAX_LEASE_SECONDS, first.get_expiry() / LEASE_SHARE)
        self._leases.clear()

    async def request(self, client: str) -> bool:
        """Count one API request of `client`; False if it is over its rate."""
        if self.leased is None:
            return await self._hit(self.requests, "request", client)
        while True:
            lease = self._leases.get(client)
            if lease is not None and lease.left > 0 and self.clock() < lease.until:
                lease.left -= 1
                return True
            claim = self._claims.get(client)
            if claim is None:
                break
            await asyncio.shield(claim)  # another request of the client is taking a lease: share it
        claim = self._claims[client] = asyncio.get_running_loop().create_future()
        try:
            return await self._lease(client, self.leased, lease)
        finally:
            del self._claims[client]
            claim.set_result(None)

    async def _lease(self, client: str, item: RateLimitItem, last: _Lease | None) -> bool:
        """Count a lease of requests in Redis (one of them this one's), giving
        back what the last one did not use."""
        assert self._script is not None
        now = self.clock()
        size = 1
        if last is not None and now < last.until + self.lease_seconds:  # the client is busy here
            used = last.size - last.left
            size = max(1, min(self.max_lease, int(used / max(now - last.since, 1e-3) * self.lease_seconds)))
        unused, stamp = (last.left, last.stamp) if last is not None else (0, "0")
        key = self._request_key(item, client)
        wall = f"{time.time():.6f}"
        try:
            granted = await self._script(keys=[key], args=[wall, item.amount, item.get_expiry(), size, stamp, unused])
            if not granted and size > 1:
                size = 1
                granted = await self._script(keys=[key], args=[wall, item.amount, item.get_expiry(), 1, stamp, 0])
        except Exception as exc:
            log.warning("fair use not counted (%s): let through", type(exc).__name__)
            self._leases.pop(client, None)
            return True
        if len(self._leases) >= MAX_LEASES:
            self._leases.clear()
        if granted:
            self._leases[client] = _Lease(size - 1, size, now, now + self.lease_seconds, wall)
        else:
            self._leases.pop(client, None)
        return bool(granted)

    def windows(self, client: str) -> list[RateWindow]:
        """Where and how `request(client)` counts, for a script to count one
        request the same way (`limits`' keys: its prefix, then the item's)."""
        return [RateWindow(self._request_key(item, client), item.amount, item.get_expiry()) for item in self.requests]

    def _request_key(self, item: RateLimitItem, client: str) -> str:
        """`limits`' key for the client's requests under `item`: its prefix, then the item's."""
        return f"{self.key_prefix}:{item.key_for('request', client)}"

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
