"""An operator can close any order the router cannot finish, and it stays closed.

Issue 12, case 4: an order the provider lost could not be finished: after
`orders refund` or `orders ack` its attention note was back within seconds,
on every read, and the client saw Pending with charge 0.00 forever. `close`
(CLI `smm-proxy orders close ID --refund TOTAL [--reason]`, admin `POST
/admin/orders/{id}/close`) is a final event of the state table: the order's
total refund becomes what the operator chose, it is never read again, its
note never comes back, and the client sees Canceled (refunded in full),
Completed (nothing refunded) or Partial.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from invariants import check_money
from support import fault, router_config

from proxy import commands
from proxy.cli import main
from proxy.errors import NotFound, OperatorError
from proxy.orders.states import CLOSED, PLACED, UNKNOWN
from proxy.vocabulary import CANCELED, COMPLETED, IN_PROGRESS, PARTIAL

LINK = "https://instagram.com/p/abc"


async def lost_by_the_provider(router, key):
    """A placed order the provider stops knowing ("Incorrect order ID" at every read)."""
    order_id = (await router.call(key, action="add", service=1, link=LINK, quantity=1000))["order"]
    order = await router.runtime.book.get("alice", order_id)
    router.panels["echomark"].forget_order(order.upstream_order)
    for _ in range(5):
        router.clock.advance(2)
        await router.call(key, action="status", order=order_id)
    return await router.runtime.book.get("alice", order_id)


async def run_cli(monkeypatch, redis_url, key_prefix, tmp_path, *argv: str) -> int:
    cfg = tmp_path / "router.yaml"
    cfg.write_text(json.dumps(router_config()))
    monkeypatch.setenv("SMM_PROXY_REDIS_URL", redis_url)
    monkeypatch.setenv("SMM_PROXY_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("SMM_PROXY_CONFIG", str(cfg))
    return await asyncio.to_thread(main, list(argv))


@pytest.mark.parametrize("verdict", ["refund", "ack"])
async def test_after_refund_or_ack_the_note_of_a_lost_order_stays_away(make_router, verdict):
    router = await make_router(router_config(), status_ttl=1)
    key = await router.client(balance="10")
    order = await lost_by_the_provider(router, key)
    assert order.attention.startswith("5 status reads in a row could not be settled")
    ops = router.runtime.operators
    if verdict == "refund":
        await ops.refund("cli", order.id, "1.17")
    else:
        await ops.acknowledge("cli", order.id)
    for _ in range(4):
        router.clock.advance(3601)  # read at the slow rate now
        await router.call(key, action="status", order=order.id)
        await router.runtime.sync.poll_due()
    after = await router.runtime.book.get("alice", order.id)
    assert after.attention == "" and after.misses > 5
    assert await router.runtime.book.ids_in("attention") == []


async def test_a_lost_order_closed_with_a_full_refund_is_canceled_for_good(
    make_router, monkeypatch, redis_url, key_prefix, tmp_path, capsys
):
    router = await make_router(router_config(), status_ttl=1)
    key = await router.client(balance="10")
    order = await lost_by_the_provider(router, key)
    argv = ["orders", "close", str(order.id), "--refund", "1.17", "--reason", "lost by the provider, ticket 88"]
    assert await run_cli(monkeypatch, redis_url, key_prefix, tmp_path, *argv) == 0
    assert "closed: refunded 1.17 in all, the client sees Canceled" in capsys.readouterr().out
    closed = await router.runtime.book.get("alice", order.id)
    assert closed.state == CLOSED and closed.refunded == closed.charge and closed.attention == ""
    assert closed.closed_reason == "lost by the provider, ticket 88"
    reply = await router.call(key, action="status", order=order.id)
    assert reply == {"charge": "0.00", "start_count": "0", "status": CANCELED, "remains": "1000", "currency": "USD"}
    panel = router.panels["echomark"]
    calls = panel.calls["status"]
    for _ in range(3):  # never read again, never asks for an operator again
        router.clock.advance(100_000)
        await router.call(key, action="status", order=order.id)
        await router.runtime.sync.poll_due()
        await router.runtime.sync.poll_open_orders()
    assert panel.calls["status"] == calls
    assert (await router.runtime.book.get("alice", order.id)).attention == ""
    assert await router.runtime.book.ids_in("open") == [] and await router.runtime.book.ids_in("attention") == []
    audit = await router.runtime.operators.audit_log()
    assert audit[0].action == "order.close" and audit[0].actor == commands.ACTOR.name  # cli:<the OS user>
    assert (audit[0].detail, audit[0].reason) == ({"refund": "1.17"}, "lost by the provider, ticket 88")
    assert (await router.call(key, action="cancel", orders=str(order.id))) == [
        {"order": order.id, "cancel": {"error": "Cannot cancel"}}
    ]
    await check_money(router, {"alice": Decimal("10")})


@pytest.mark.parametrize(
    "refund, shown, remains, charge",
    [("0", COMPLETED, "0", "1.17"), ("0.585", PARTIAL, "500", "0.585"), ("1.17", CANCELED, "1000", "0.00")],
)
async def test_what_the_client_sees_of_a_closed_order_follows_its_refund(make_router, refund, shown, remains, charge):
    router = await make_router(router_config(), status_ttl=1)
    key = await router.client(balance="10")
    order_id = (await router.call(key, action="add", service=1, link=LINK, quantity=1000))["order"]
    upstream = (await router.runtime.book.get("alice", order_id)).upstream_order
    router.panels["echomark"].force(upstream, status=IN_PROGRESS)
    await router.runtime.operators.close("admin:ops", order_id, refund)
    reply = await router.call(key, action="status", order=order_id)
    assert (reply["status"], reply["remains"], reply["charge"]) == (shown, remains, charge)
    assert await router.runtime.ledger.balance("alice") == Decimal("10") - Decimal(charge)
    shown_to_operator = await router.runtime.operators.order(order_id)
    assert shown_to_operator.state == CLOSED and shown_to_operator.status == shown
    assert shown_to_operator.remains == int(remains)
    await check_money(router, {"alice": Decimal("10")})


async def test_close_refuses_what_it_cannot_do_and_changes_nothing(make_router):
    router = await make_router(router_config(), status_ttl=1)
    key = await router.client(balance="10")
    order_id = (await router.call(key, action="add", service=1, link=LINK, quantity=1000))["order"]
    ops = router.runtime.operators
    await ops.refund("cli", order_id, "0.5")
    for total in ("0.4", "1.18", "-1", "1e999999", "NaN", "", "0.00000001", "abc"):
        with pytest.raises(OperatorError):
            await ops.close("cli", order_id, total)
    with pytest.raises(OperatorError):
        await ops.close("cli", order_id, "1", reason=123)
    with pytest.raises(NotFound):
        await ops.close("cli", 999, "1")
    order = await router.runtime.book.get("alice", order_id)
    assert order.state == PLACED and order.refunded == Decimal("0.5")
    await ops.close("cli", order_id, "0.5")  # what is refunded already: nothing more moves
    with pytest.raises(OperatorError, match="is closed: only a placed or unknown order can be closed"):
        await ops.close("cli", order_id, "1.17")
    await ops.refund("cli", order_id, "1.17")  # a closed order's refund may still be raised
    assert (await router.call(key, action="status", order=order_id))["status"] == CANCELED
    fault(router.panels["korean"], "error", "Incorrect link")
    fault(router.panels["echomark"], "error", "Incorrect link")
    await router.call(key, action="add", service=1, link=LINK + "x", quantity=1000)  # failed, refunded
    with pytest.raises(OperatorError, match="is failed"):
        await ops.close("cli", 2, "0")
    await check_money(router, {"alice": Decimal("10")})


async def test_an_unknown_order_can_be_closed_and_a_late_accept_asks_for_an_operator(make_router):
    router = await make_router(router_config())
    key = await router.client(balance="10")
    fault(router.panels["echomark"], "html")
    order_id = (await router.call(key, action="add", service=1, link=LINK, quantity=1000))["order"]
    book = router.runtime.book
    assert (await book.get("alice", order_id)).state == UNKNOWN
    closed = await router.runtime.verdicts.close(order_id, Decimal("0.5"), "half delivered, says the provider")
    assert closed.state == CLOSED and closed.refunded == Decimal("0.5")
    late = await book.apply(closed, "accept", {"upstream_order": 4242})
    assert late.state == CLOSED and late.attention.startswith("accepted upstream after an operator closed it")
    assert late.upstream_order == 0 and "upstream_order=4242" in late.attention
    assert (await router.runtime.tallies.counts())["orders_closed"] == 1


async def test_the_admin_api_closes_orders(make_router):
    router = await make_router(router_config(), status_ttl=1)
    key = await router.client(balance="10")
    order_id = (await router.call(key, action="add", service=1, link=LINK, quantity=1000))["order"]
    token = (await router.runtime.operators.add_admin("cli", "backoffice", "operator")).token
    headers = {"Authorization": f"Bearer {token}"}
    url = f"/admin/orders/{order_id}/close"
    assert (await router.http.post(url, json={"reason": "x"}, headers=headers)).status_code == 400
    assert (await router.http.post(url, json={"refund": "9"}, headers=headers)).status_code == 409
    assert (await router.http.post(url, json={"refund": "1"})).status_code == 401
    assert (await router.http.post("/admin/orders/999/close", json={"refund": "1"}, headers=headers)).status_code == 404
    assert (await router.http.get(url, headers=headers)).status_code == 405
    response = await router.http.post(url, json={"refund": "1.17", "reason": "lost"}, headers=headers)
    assert response.status_code == 200
    assert response.json()["state"] == CLOSED and response.json()["status"] == CANCELED
    assert response.json()["closed_reason"] == "lost"
    assert (await router.runtime.operators.audit_log())[0].actor == "admin:backoffice"
    assert (await router.http.post(url, json={"refund": "1.17"}, headers=headers)).status_code == 409
