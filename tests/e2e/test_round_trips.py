"""How many times an add waits for Redis, counted (never timed).

A counting connection injected into the router's pool records every write
to Redis (a command, or a whole pipeline): each is one round trip. The add's floor is two (the debit, and the "may have been
sent" mark, durable before the upstream call; the upstream ID after it);
the router keeps `reserved` and `submitted` apart, so a crash before the
send refunds itself, and makes three.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from faults import FaultPlan, script_call, script_sha
from support import on_every_store, router_config

from proxy.connection import Client
from proxy.lane import Lane
from proxy.orders.records import RECENT_CALLS
from proxy.orders.states import PLACED, lua_values
from proxy.scripts import lua

LINK = "https://instagram.com/p/round-trips"


class Counting:
    """A counting connection, injected into the router's pool, and a counting
    lane into its client (`proxy.lane`: what carries the commands sent alone):
    every write of a command (or of a whole pipeline) to Redis is one round
    trip, whoever sends it (our scripts, redis-py's own SCRIPT LOAD, the
    `limits` library)."""

    def __init__(self) -> None:
        self.trips: list[str] = []
        self.counting = False

    def inject(self, client: Client) -> None:
        counter, pool = self, client.connection_pool

        class CountingConnection(pool.connection_class):  # type: ignore[misc, name-defined]
            async def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
                if counter.counting:
                    counter.trips.append(_describe(command))
                return await super().send_packed_command(command, check_health)

        class CountingLane(Lane):
            def send(self, packed):  # type: ignore[no-untyped-def]
                if counter.counting:
                    counter.trips.append(_describe(packed))
                return super().send(packed)

        pool.connection_class = CountingConnection
        client.lane_class = CountingLane


def _describe(packed: object) -> str:
    chunks = packed if isinstance(packed, list) else [packed]
    text = b"".join(c if isinstance(c, bytes) else bytes(c) for c in chunks).decode(errors="replace")
    words = [w for w in text.split("\r\n") if w and w[0] not in "*$"]
    return " ".join(words[:3])


async def test_an_add_takes_at_most_three_round_trips(make_router):
    counting = Counting()
    router = await make_router(router_config(), catalog_recheck=60)
    client = router.runtime.redis
    assert isinstance(client, Client)
    await client.aclose()  # connections and lanes from now on count (the next command opens them)
    counting.inject(client)
    key = await router.client(balance="100")
    await router.call(key, action="services")
    first = await router.call(key, action="add", service=1, link=LINK + "/0", quantity=1000)
    assert "order" in first  # the first add loads the scripts and takes a block of IDs
    for n in range(1, 6):
        counting.counting, counting.trips = True, []
        reply = await router.call(key, action="add", service=1, link=f"{LINK}/{n}", quantity=1000)
        counting.counting = False
        order = await router.runtime.book.find(reply["order"])
        assert order.state == PLACED
        # The reserve, submit and accept scripts; the request's fair use is counted by the first.
        trips = [t for t in counting.trips if not _authentication(t)]
        assert len(trips) == 3, counting.trips
        assert all(t.startswith("EVALSHA") for t in trips), trips


async def test_an_add_is_answered_before_the_providers_id_is_sent_to_be_recorded(make_router):
    """The third round trip is off the client's path: when the add has its
    answer, only the reserve and the submit have gone to Redis; the accept
    (the provider's order ID) goes after it."""
    counting = Counting()
    router = await make_router(router_config(), catalog_recheck=60)
    client = router.runtime.redis
    assert isinstance(client, Client)
    await client.aclose()
    counting.inject(client)
    key = await router.client(balance="100")
    assert "order" in await router.call(key, action="add", service=1, link=LINK + "/0", quantity=1000)
    actions = router.runtime.actions
    for n in range(1, 4):
        counting.counting, counting.trips = True, []
        order_id = await actions.add("alice", 1, {"link": f"{LINK}/{n}", "quantity": "1000"})
        at_answer = [t for t in counting.trips if not _authentication(t)]
        await actions.recorded(order_id)
        counting.counting = False
        assert len(at_answer) == 2, at_answer  # the reserve and the submit
        assert len([t for t in counting.trips if not _authentication(t)]) == 3, counting.trips
        assert (await router.runtime.book.get("alice", order_id)).state == PLACED


def _authentication(trip: str) -> bool:
    """The reads of the client behind the key and of its terms: the read
    side's cache (proxy/tracking.py) serves them from the process."""
    return ":apikey:" in trip or (trip.startswith("HMGET") and ":client:" in trip)


async def test_adds_counted_by_the_reserve_script_are_the_requests_limits_counts(make_router):
    """The reserve script counts an add in the moving window `limits` keeps, on its key:
    whichever counts, the other sees it."""
    raw = router_config(fair_use={"requests": "3/minute"})
    router = await make_router(raw, catalog_recheck=60)
    key = await router.client(balance="100")
    assert "balance" in await router.call(key, action="balance")  # counted by `limits`
    for n in range(2):  # counted by the reserve script
        assert "order" in await router.call(key, action="add", service=1, link=f"{LINK}/{n}", quantity=1000)
    assert await router.call(key, action="balance") == {"error": "Too many requests, please slow down"}
    refused = await router.call(key, action="add", service=1, link=f"{LINK}/x", quantity=1000)
    assert refused == {"error": "Too many requests, please slow down"}
    assert await router.call(key, action="add", service=99999, link=LINK, quantity=1) == refused  # refused early
    assert await router.runtime.ledger.balance("alice") == 100 - 2 * Decimal("1.17")


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


class AcceptHeld(FaultPlan):
    """Once armed, holds the accept script until `release` is set (`reached` says it got there)."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def before(self, commands, pipeline=False):  # type: ignore[no-untyped-def]
        calls = [c for c in map(script_call, commands) if c is not None]
        if self.armed and any(c.sha == ACCEPT_SCRIPT for c in calls):
            self.reached.set()
            await self.release.wait()
        return None


async def test_an_add_is_answered_once_the_provider_took_it_and_recorded_after(make_router):
    """The third round trip (the provider's order ID, recorded with the claim and
    the due index) is not on the client's path: the answer is this order's ID
    from the moment a provider answered with its own, whatever happens next."""
    plan = AcceptHeld()
    router = await make_router(router_config(), redis_plan=plan)
    key = await router.client(balance="10")
    plan.armed = True
    response = await asyncio.wait_for(  # answered while the accept is held
        router.http.post(
            "/api/v2", data={"key": key, "action": "add", "service": "1", "link": LINK, "quantity": "1000"}
        ),
        5,
    )
    assert response.json() == {"order": 1}
    assert plan.reached.is_set()
    order = await router.runtime.book.get("alice", 1)
    assert order.state == "submitted"  # the provider's ID is not recorded yet
    assert await router.runtime.ledger.balance("alice") == Decimal("8.83")
    status = await router.call(key, action="status", order=1)
    assert status["status"] == "Pending" and status["charge"] == "1.17"
    plan.release.set()
    await router.runtime.actions.recorded(1)
    order = await router.runtime.book.get("alice", 1)
    assert order.state == PLACED and order.upstream_order == 5000
    assert len(router.panels["echomark"].orders) == 1


async def test_a_shutdown_while_an_answered_add_is_recorded_waits_for_it_or_hands_it_over(make_router):
    """An add answered before its provider's ID was recorded is still being
    placed: a shutdown waits for it (half its grace), then hands it over; the
    client's answer stands either way, and nothing is left behind in memory."""
    from invariants import check_money, fresh_prefix
    from support import expire_leases

    from proxy.orders.states import UNKNOWN

    for held_past_grace in (False, True):
        plan = AcceptHeld()
        router = await make_router(router_config(), prefix=fresh_prefix(), redis_plan=plan)
        key = await router.client(balance="10")
        actions = router.runtime.actions
        plan.armed = True
        data = {"key": key, "action": "add", "service": "1", "link": LINK, "quantity": "1000"}
        assert (await router.http.post("/api/v2", data=data)).json() == {"order": 1}
        actions.stop_waiting()
        if not held_past_grace:
            asyncio.get_running_loop().call_later(0.1, plan.release.set)
        await asyncio.wait_for(actions.aclose(timeout=1.0), 5)
        plan.release.set()
        await actions.recorded(1)
        assert not actions._recording and not actions._placing
        order = await router.runtime.book.get("alice", 1)
        assert order.state == (UNKNOWN if held_past_grace else PLACED)  # handed over: for an operator
        await expire_leases(router)
        await router.runtime.sync.recover()
        await check_money(router, {"alice": Decimal("10")})
        assert len(router.panels["echomark"].orders) == 1
