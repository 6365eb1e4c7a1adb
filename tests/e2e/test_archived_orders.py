"""Archived orders stay whole: their claims, their clients' reads, their money in reports.

Issue 12, case 5: archiving deleted the claim on the upstream order ID, so the
typo `resolve --upstream-order` refused before was accepted after archiving
(and refunded twice); archived orders answered `status` and `refill` with
"Incorrect order ID"; `report` dropped their money. And (from issue 14's
list) a relative SMM_PROXY_ARCHIVE_DIR found archived orders only from the
folder that archived them; an unwritable archive folder ended in a traceback.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path

import pytest
from invariants import check_money
from support import FakeClock, fault, router_config

from proxy.cli import main
from proxy.errors import ClaimConflict, OperatorError
from proxy.orders.states import UNKNOWN
from proxy.vocabulary import COMPLETED, PARTIAL

LINK = "https://instagram.com/p/abc"


async def finished(router, key, count: int = 2) -> list[int]:
    """`count` orders of service 1 (refill allowed), final: the first Partial, the rest Completed."""
    ids = [
        (await router.call(key, action="add", service=1, link=f"{LINK}{i}", quantity=1000))["order"]
        for i in range(count)
    ]
    panel = router.panels["echomark"]
    for n, order_id in enumerate(ids):
        upstream = (await router.runtime.book.get("alice", order_id)).upstream_order
        panel.force(upstream, status=PARTIAL if n == 0 else COMPLETED, remains=100 if n == 0 else None)
    router.clock.advance(2)
    await router.call(key, action="status", orders=",".join(map(str, ids)))
    return ids


async def test_an_archived_order_keeps_its_claim_on_its_upstream_order(make_router, tmp_path):
    router = await make_router(router_config(), status_ttl=1, archive_dir=tmp_path)
    key = await router.client(balance="10")
    (placed,) = await finished(router, key, 1)
    await check_money(router, {"alice": Decimal("10")})
    owner = await router.runtime.book.get("alice", placed)
    fault(router.panels["echomark"], "html")
    unknown = (await router.call(key, action="add", service=1, link=LINK + "u", quantity=1000))["order"]
    assert (await router.runtime.book.get("alice", unknown)).state == UNKNOWN
    with pytest.raises(ClaimConflict):
        await router.runtime.verdicts.resolve(unknown, upstream_order=owner.upstream_order)
    assert await router.runtime.archive.archive(router.clock() + 1) == 1
    with pytest.raises(ClaimConflict, match=f"already belongs to order {placed}"):  # still refused
        await router.runtime.verdicts.resolve(unknown, upstream_order=owner.upstream_order)
    assert (await router.runtime.book.get("alice", unknown)).state == UNKNOWN


async def test_an_archived_order_answers_its_clients_status_and_refill(make_router, tmp_path):
    router = await make_router(router_config(), status_ttl=1, archive_dir=tmp_path)
    key = await router.client(balance="10")
    partial, done = await finished(router, key)
    before = await router.call(key, action="status", orders=f"{partial},{done},999")
    assert await router.runtime.archive.archive(router.clock() + 1) == 2
    assert await router.runtime.book.get("alice", partial) is None  # out of Redis
    assert await router.call(key, action="status", orders=f"{partial},{done},999") == before
    assert await router.call(key, action="status", order=partial) == before[str(partial)]
    assert before[str(partial)]["status"] == PARTIAL and before[str(done)]["status"] == COMPLETED
    refill = await router.call(key, action="refill", order=done)
    assert set(refill) == {"refill"}
    assert len(router.panels["echomark"].refills) == 1
    assert (await router.call(key, action="refill_status", refill=refill["refill"]))["status"]
    assert await router.call(key, action="cancel", orders=str(done)) == [
        {"order": done, "cancel": {"error": "Cannot cancel"}}
    ]
    bob = await router.client("bob", balance="1")  # and nobody else's client sees them
    assert await router.call(bob, action="status", order=done) == {"error": "Incorrect order ID"}
    assert await router.call(bob, action="refill", order=done) == {"error": "Incorrect order ID"}


async def test_reports_count_archived_orders_money(make_router, tmp_path):
    router = await make_router(router_config(), status_ttl=1, archive_dir=tmp_path)
    key = await router.client(balance="10")
    await finished(router, key, 3)
    ops = router.runtime.operators
    before = await ops.report(0, "provider")
    by_client = await ops.report(0, "client")
    assert await router.runtime.archive.archive(router.clock() + 1) == 3
    assert await ops.report(0, "provider") == before
    assert await ops.report(0, "client") == by_client
    assert before.total.orders == 3 and Decimal(before.total.revenue) > 0
    assert (await ops.report(router.clock() + 3600, "provider")).total.orders == 0  # "since" still applies


async def test_an_archived_order_costs_redis_little(make_router, tmp_path, redis_client, keys):
    router = await make_router(router_config(), status_ttl=1, archive_dir=tmp_path, duplicate_window=0)
    key = await router.client(balance="1000")
    count = 200
    ids = [
        (await router.call(key, action="add", service=1, link=f"{LINK}{i}", quantity=100))["order"]
        for i in range(count)
    ]
    router.clock.advance(100)  # every order Completed upstream
    for start in range(0, count, 100):
        await router.call(key, action="status", orders=",".join(map(str, ids[start : start + 100])))

    async def used(pattern: str) -> int:
        found = [k async for k in redis_client.scan_iter(match=f"{keys.prefix}{pattern}")]
        return sum([await redis_client.memory_usage(k) or 0 for k in found])

    records = await used("order:*")
    assert await router.runtime.archive.archive(router.clock() + 1) == count
    views, claims = await used("archived:*"), await used("claims:*")
    print(
        f"\nRedis per order: {records / count:.0f} bytes as a record; archived, {views / count:.0f} for its "
        f"view and {claims / count:.0f} for the claim it keeps"
    )
    assert await used("order:*") == 0
    assert (views + claims) / count < 150 < records / count


def cli_env(monkeypatch, redis_url: str, key_prefix: str, folder: Path, archive_dir: str) -> None:
    """The environment the CLI reads: the test's Redis and prefix, a config, the archive folder."""
    config = folder / "router.yaml"
    config.write_text(json.dumps(router_config()))
    monkeypatch.setenv("SMM_PROXY_REDIS_URL", redis_url)
    monkeypatch.setenv("SMM_PROXY_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("SMM_PROXY_CONFIG", str(config))
    monkeypatch.setenv("SMM_PROXY_ARCHIVE_DIR", archive_dir)


async def run_cli(monkeypatch, cwd: Path, *argv: str) -> int:
    monkeypatch.chdir(cwd)
    return await asyncio.to_thread(main, list(argv))


async def test_a_relative_archive_folder_is_found_from_anywhere(
    make_router, redis_url, key_prefix, tmp_path, monkeypatch, capsys
):
    router = await make_router(router_config(), status_ttl=1, clock=FakeClock(time.time() - 86400))
    key = await router.client(balance="10")
    (order_id,) = await finished(router, key, 1)
    cli_env(monkeypatch, redis_url, key_prefix, tmp_path, "archive")
    here, elsewhere = tmp_path / "deploy", tmp_path / "home"
    here.mkdir()
    elsewhere.mkdir()
    assert await run_cli(monkeypatch, here, "orders", "archive", "--older-than", "0d", "--json") == 0
    assert json.loads(capsys.readouterr().out)["to"] == str(here / "archive")
    assert (here / "archive").is_dir()
    assert await run_cli(monkeypatch, elsewhere, "orders", "show", str(order_id), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["archived"] is True and shown["status"] == PARTIAL
    assert not (elsewhere / "archive").exists()


async def test_an_unwritable_archive_folder_is_a_message_not_a_traceback(
    make_router, redis_url, key_prefix, tmp_path, monkeypatch, capsys
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    router = await make_router(router_config(), status_ttl=1, archive_dir=blocker / "archive")
    key = await router.client(balance="10")
    (order_id,) = await finished(router, key, 1)
    with pytest.raises(OperatorError, match="cannot write the archive in .*a-file/archive: .*nothing was archived"):
        await router.runtime.operators.archive("cli", router.clock() + 1)
    assert (await router.runtime.book.get("alice", order_id)) is not None  # nothing left Redis
    cli_env(monkeypatch, redis_url, key_prefix, tmp_path, str(blocker / "archive"))
    assert await run_cli(monkeypatch, tmp_path, "orders", "archive", "--older-than", "0d") == 2
    err = capsys.readouterr().err
    assert "cannot write the archive in" in err and "Traceback" not in err
    token = (await router.runtime.operators.add_admin("cli", "backoffice", "operator")).token
    headers = {"Authorization": f"Bearer {token}"}
    response = await router.http.post("/admin/orders/archive", json={"older_than": "0d"}, headers=headers)
    assert response.status_code == 409 and "cannot write the archive" in response.json()["error"]
    for bad in ({}, {"older_than": "soon"}, {"older_than": "9" * 400 + "d"}):
        assert (await router.http.post("/admin/orders/archive", json=bad, headers=headers)).status_code == 400
