"""Orders whose outcome is unknown, over real loopback HTTP with real timeouts.

A panel that accepts an order and then hangs makes the router time out after
the order exists: the order must stay `unknown`, never be sent anywhere else,
show as Pending, and be settled by an operator.
"""

import asyncio
import json
import socket
from decimal import Decimal

import httpx
import pytest
from support import expire_leases, new_order, router_config

from proxy.cli import main
from proxy.config import parse_config
from proxy.edge.app import create_app
from proxy.orders.states import FAILED, PLACED, SUBMIT, UNKNOWN
from proxy.runtime import Runtime
from proxy.settings import Settings
from proxy.sim.app import create_app as create_panel_app
from proxy.sim.catalogs import build_panel
from proxy.sim.faults import Faults
from proxy.sim.server import serve_panel
from proxy.store import connect

LINK = "https://instagram.com/p/abc"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def place_orders(redis_url, key_prefix, echomark_faults, echomark_url=None, count=1, **settings):
    """Run a router against loopback panels, place `count` orders; return what happened."""
    echomark = build_panel("echomark", first_order_id=5000)
    korean = build_panel("korean", first_order_id=9000)
    echomark.faults = echomark_faults
    async with (
        serve_panel(create_panel_app(echomark)) as live_echomark_url,
        serve_panel(create_panel_app(korean)) as korean_url,
    ):
        raw = router_config()
        raw["providers"]["echomark"].update(url=echomark_url or live_echomark_url, timeout={"read": 0.5})
        raw["providers"]["korean"].update(url=korean_url)
        runtime = Runtime(Settings(key_prefix=key_prefix, **settings), parse_config(raw, {}), connect(redis_url))
        if echomark_url:  # the echomark listing cannot be fetched from a closed port: seed it
            await runtime.listings.store("echomark", await _listing_of(echomark))
        _, api_key = await runtime.accounts.create("alice", Decimal("10"))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://router"
        ) as http:
            replies = []
            for i in range(count):
                data = {"key": api_key, "action": "add", "service": "1", "link": f"{LINK}{i}", "quantity": "1000"}
                replies.append((await http.post("/api/v2", data=data)).json())
                if "order" in replies[-1]:  # answered once a provider took it: read what was recorded after
                    await runtime.actions.recorded(replies[-1]["order"])
            status = (await http.post("/api/v2", data={"key": api_key, "action": "status", "order": "1"})).json()
        orders = [await runtime.book.get("alice", r["order"]) for r in replies]
        balance = await runtime.ledger.balance("alice")
        await runtime.aclose()
    return echomark, korean, replies, orders, status, balance


async def _listing_of(panel):
    transport = httpx.ASGITransport(app=create_panel_app(panel))
    from proxy.providers.upstream import ProviderClient

    async with ProviderClient("echomark", "http://sim/api/v2", "sim-key", transport=transport) as client:
        return await client.services()


async def test_timeout_after_accept_leaves_one_unknown_order(redis_url, key_prefix, redis_client):
    faults = Faults(mode="timeout_after_accept", actions=frozenset({"add"}), hang_seconds=3)
    echomark, korean, replies, orders, status, balance = await place_orders(redis_url, key_prefix, faults)
    assert replies == [{"order": 1}]
    assert orders[0].state == UNKNOWN
    assert len(echomark.orders) == 1  # it exists upstream ...
    assert len(korean.orders) == 0  # ... and was never bought a second time
    assert status["status"] == "Pending" and status["charge"] == "1.17"
    assert balance == Decimal("8.83")
    assert [(a.provider, a.outcome) for a in orders[0].attempts] == [("echomark", "unknown")]


async def test_connection_refused_fails_over(redis_url, key_prefix, redis_client):
    dead = f"http://127.0.0.1:{closed_port()}/api/v2"
    echomark, korean, replies, orders, status, balance = await place_orders(
        redis_url, key_prefix, Faults(), echomark_url=dead, count=2
    )
    assert [o.state for o in orders] == [PLACED, PLACED]
    assert [o.provider for o in orders] == ["korean", "korean"]
    assert [(a.provider, a.outcome) for a in orders[0].attempts] == [("echomark", "refused"), ("korean", "placed")]
    # One failure is not an ejection (health.consecutive_failures, 3): the second order tried it again.
    assert [(a.provider, a.outcome) for a in orders[1].attempts] == [("echomark", "refused"), ("korean", "placed")]
    assert len(korean.orders) == 2


def test_operator_resolves_unknown_orders(redis_url, key_prefix, redis_client, monkeypatch, capsys, tmp_path):
    faults = Faults(mode="timeout_after_accept", actions=frozenset({"add"}), hang_seconds=2)
    echomark, _, replies, orders, _, _ = asyncio.run(
        place_orders(redis_url, key_prefix, faults, count=2, upstream_cooldown=0)
    )
    assert [o.state for o in orders] == [UNKNOWN, UNKNOWN]
    upstream_first = min(echomark.orders)

    config = tmp_path / "router.yaml"
    config.write_text(json.dumps(router_config()))
    monkeypatch.setenv("SMM_PROXY_REDIS_URL", redis_url)
    monkeypatch.setenv("SMM_PROXY_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("SMM_PROXY_CONFIG", str(config))

    def cli(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out)

    listed = cli("orders", "list", "--state", "unknown", "--json")
    assert [o["id"] for o in listed] == [2, 1]
    resolved = cli("orders", "resolve", "1", "--upstream-order", str(upstream_first), "--json")
    assert resolved["state"] == PLACED and resolved["upstream_order"] == upstream_first
    failed = cli("orders", "resolve", "2", "--failed", "--json")
    assert failed["state"] == FAILED and failed["status"] == "Canceled" and failed["refunded"] == "1.17"
    shown = cli("orders", "show", "2", "--json")
    assert [(e["kind"], e["amount"]) for e in shown["ledger"]] == [("charge", "-1.17"), ("refund", "1.17")]
    assert cli("orders", "list", "--state", "unknown", "--json") == []
    # A second verdict on a settled order is refused and changes nothing.
    assert main(["orders", "resolve", "2", "--failed"]) == 2
    assert "not unknown" in capsys.readouterr().err
    balance = cli("clients", "list", "--json")[0]["balance"]
    assert balance == "8.83"  # 10 - 1.17 (order 1 stands) ; order 2 refunded


async def test_recovery_settles_orders_whose_lease_expired(make_router):
    router = await make_router(router_config())
    await router.client(balance="10")
    book = router.runtime.book
    # A task reserved order 1 and died before sending; another sent order 2 and died.
    one = (await book.reserve(new_order())).order
    two = (await book.reserve(new_order(link=LINK + "2"))).order
    two = await book.apply(two, SUBMIT, {"provider": "echomark"})
    assert await router.runtime.sync.recover() == 0  # leases alive: they may still be in flight
    router.clock.advance(3600)  # no local clock decides: only the leases do
    assert await router.runtime.sync.recover() == 0
    await expire_leases(router)
    assert await router.runtime.sync.recover() == 2
    assert (await book.get("alice", one.id)).state == FAILED
    assert (await book.get("alice", two.id)).state == UNKNOWN
    assert await router.runtime.ledger.balance("alice") == Decimal("10") - Decimal("1.17")
    assert await book.ids_in("inflight") == [] and await book.ids_in("unknown") == [two.id]


async def test_polling_refunds_without_the_client_asking(make_router):
    router = await make_router(router_config(), status_ttl=1)
    key = await router.client(balance="10")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    record = await router.runtime.book.get("alice", 1)
    router.panels["echomark"].force(record.upstream_order, status="Canceled")
    router.clock.advance(2)
    assert await router.runtime.sync.poll_open_orders() == 1
    assert await router.runtime.ledger.balance("alice") == Decimal("10")
    assert await router.runtime.sync.poll_open_orders() == 0  # final: no longer open


@pytest.mark.parametrize("verdict", [{"upstream_order": 1, "failed": True}, {}])
async def test_resolve_wants_exactly_one_verdict(make_router, verdict):
    router = await make_router(router_config())
    with pytest.raises(ValueError):
        await router.runtime.verdicts.resolve(1, **verdict)
