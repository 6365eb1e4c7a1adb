"""How many times an add waits for Redis, counted (never timed).

A counting connection (`tests/faults.py`'s `FaultyRedis` with a plan that
never fires) records every command or pipeline the router sends: each is
one round trip. The add's floor is two (the debit, and the "may have been
sent" mark, durable before the upstream call; the upstream ID after it);
the router keeps `reserved` and `submitted` apart, so a crash before the
send refunds itself, and makes three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from faults import Command, FaultPlan, script_call, script_sha
from support import on_every_store, router_config

from proxy.orders.records import RECENT_CALLS
from proxy.orders.states import PLACED, lua_values
from proxy.scripts import lua

LINK = "https://instagram.com/p/round-trips"


@dataclass
class Counting(FaultPlan):
    """Counts round trips, and keeps each one's commands."""

    trips: list[list[str]] = field(default_factory=list)

    def start(self) -> None:
        self.arm(0, "")  # never fires: at=0 is never reached
        self.trips = []

    async def before(self, commands, pipeline: bool = False) -> str | None:  # type: ignore[no-untyped-def]
        if self.armed:
            self.trips.append([_describe(command) for command in commands])
        return await super().before(commands, pipeline)


def _describe(command: Command) -> str:
    return " ".join(str(part) for part in command[:4])


async def test_an_add_takes_at_most_three_round_trips(make_router):
    plan = Counting()
    router = await make_router(router_config(), redis_plan=plan, catalog_recheck=60)
    key = await router.client(balance="100")
    await router.call(key, action="services")
    first = await router.call(key, action="add", service=1, link=LINK + "/0", quantity=1000)
    assert "order" in first  # the first add loads the scripts and takes a block of IDs
    for n in range(1, 6):
        plan.start()
        reply = await router.call(key, action="add", service=1, link=f"{LINK}/{n}", quantity=1000)
        plan.disarm()
        order = await router.runtime.book.find(reply["order"])
        assert order.state == PLACED
        trips = [t for t in plan.trips if not _authentication(t)]  # the reserve, submit and accept scripts
        assert len(trips) <= 3, trips


def _authentication(trip: list[str]) -> bool:
    """The reads of the client behind the key and of its terms: the read
    side's cache (proxy/tracking.py) serves them from the process."""
    return all(
        " " in c and (":apikey:" in c or ":rates:" in c or (c.startswith("HMGET") and ":client:" in c)) for c in trip
    )


@on_every_store
async def test_an_accepted_order_is_due_and_counted_at_its_provider(make_router, store):
    """What the accept script does in one step on one server, the calls one
    by one do on a cluster (whose keys live in other slots): the same result."""
    router = await make_router(router_config(), catalog_recheck=60)
    key = await router.client(balance="100")
    health, redis, keys = router.runtime.health, router.runtime.redis, router.runtime.keys
    await health.funds.read("echomark", Decimal("50"))
    await health.fail("echomark", "a timeout")  # one failure in a row, counted
    reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    order = await router.runtime.book.find(reply["order"])
    assert (order.state, order.provider) == (PLACED, "echomark")
    assert await redis.zscore(keys.due("echomark"), f"alice:{order.id}") is not None
    assert await router.runtime.claims.owners(["echomark"], order.upstream_order) == [order.id]
    assert (await health.ejection("echomark")).failures == 0  # the success started the count over
    assert (await health.state("echomark")).funds == Decimal("50") - order.cost


ACCEPT_SCRIPT = script_sha("proxy.orders", "accept", {**lua_values(), "RECENT_CALLS": lua(RECENT_CALLS)})


async def test_an_accept_whose_reply_was_lost_is_applied_and_counted_once(make_router):
    class AcceptLost(FaultPlan):
        async def before(self, commands, pipeline=False):  # type: ignore[no-untyped-def]
            calls = [c for c in map(script_call, commands) if c is not None]
            if self.armed and any(c.sha == ACCEPT_SCRIPT for c in calls):
                self.armed, self.fired = False, True
                return "lost"
            return None

    plan = AcceptLost()
    router = await make_router(router_config(), redis_plan=plan, catalog_recheck=60)
    key = await router.client(balance="100")
    await router.call(key, action="add", service=1, link=LINK + "/warm", quantity=1000)  # the scripts loaded
    await router.runtime.health.funds.read("echomark", Decimal("50"))
    plan.armed = True
    reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    assert plan.fired
    order = await router.runtime.book.find(reply["order"])
    assert order.state == PLACED
    assert (await router.runtime.health.state("echomark")).funds == Decimal("50") - order.cost
