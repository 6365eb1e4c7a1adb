"""Background work (proxy/ops/sync.py): recovery, status polling, archiving, provider checks."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from support import new_order

from proxy.ops.sync import Sync
from proxy.orders.archive import Archive
from proxy.orders.states import ACCEPT, EXHAUST, FAILED, SUBMIT, UNKNOWN
from proxy.vocabulary import CANCELED, IN_PROGRESS


async def funded(runtime, balance: str = "10") -> None:
    await runtime.accounts.create("alice", Decimal(balance))


async def placed(runtime, upstream_order: int, link: str):
    book = runtime.book
    order = (await book.reserve(new_order(link=link, charge="0.5"))).order
    order = await book.apply(order, SUBMIT, {"provider": "echomark"})
    return await book.apply(order, ACCEPT, {"upstream_order": upstream_order, "status_at": f"{runtime.clock():.3f}"})


async def test_recovery_settles_what_dead_tasks_left_in_flight(runtime, keys):
    await funded(runtime)
    never_sent = (await runtime.book.reserve(new_order())).order
    maybe_sent = await runtime.book.apply(
        (await runtime.book.reserve(new_order(link="https://x.test/2"))).order, SUBMIT
    )
    await runtime.redis.delete(keys.lease("alice", never_sent.id), keys.lease("alice", maybe_sent.id))
    assert await runtime.sync.recover() == 2
    assert (await runtime.book.get("alice", never_sent.id)).state == FAILED
    assert (await runtime.book.get("alice", maybe_sent.id)).state == UNKNOWN
    assert await runtime.sync.recover() == 0


async def test_polling_reads_due_orders_and_the_sweep_finds_those_the_index_lost(runtime, panels, clock, keys):
    await funded(runtime)
    first = await placed(runtime, 5000, "https://x.test/1")
    second = await placed(runtime, 5001, "https://x.test/2")
    panels["echomark"].on(
        "status",
        lambda fields: {
            i: {"status": IN_PROGRESS, "remains": "10", "charge": "0.1"} for i in fields["orders"].split(",")
        },
    )
    clock.advance(61)
    assert await runtime.sync.poll_due() == 2
    assert (await runtime.book.get("alice", first.id)).status == IN_PROGRESS
    await runtime.redis.zrem(keys.due("echomark"), f"alice:{second.id}")  # the index lost it
    panels["echomark"].on("status", {"5001": {"status": CANCELED, "remains": "1000"}})
    clock.advance(61)
    assert await runtime.sync.poll_due() == 1  # only the one it still knows
    assert await runtime.sync.poll_open_orders() == 2
    assert (await runtime.book.get("alice", second.id)).status == CANCELED
    # Final now: in the index only for its re-checks, at the slow rate.
    rechecked_at = await runtime.redis.zscore(keys.due("echomark"), f"alice:{second.id}")
    assert rechecked_at is not None and rechecked_at >= clock() + runtime.refresher.slow_delay - 1


async def test_archiving_waits_for_its_setting(runtime):
    assert runtime.sync.archive_after_days is None
    assert await runtime.sync.archive_old_orders() == 0


async def test_provider_checks_block_a_provider_billing_in_another_currency(runtime, panels):
    panels["korean"].on("balance", {"balance": "100", "currency": "USD"})
    await runtime.sync.check_providers()
    assert (await runtime.health.state("echomark")).blocked == ""
    assert (await runtime.health.state("korean")).blocked == "its balance is in USD, the config says KRW"


async def test_the_background_loop_checks_providers_first_then_recovers_and_polls(runtime, keys):
    await funded(runtime)
    left = (await runtime.book.reserve(new_order())).order
    await runtime.redis.delete(keys.lease("alice", left.id))
    # One round, then a long sleep: the loop is stopped while it sleeps, not mid-command
    # (redis-py 8 loses a cancellation that lands inside a command).
    async with runtime.sync.background(3600) as task:
        assert (await runtime.health.state("echomark")).currency == "USD"  # checked before the loop
        for _ in range(200):
            if (await runtime.book.get("alice", left.id)).state == FAILED:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the rest of the round
        assert not task.done()
    assert task.done()
    assert (await runtime.book.get("alice", left.id)).state == FAILED


async def test_with_archiving_on_old_finished_orders_leave_redis(runtime, tmp_path, clock):
    await funded(runtime)
    clock.now = 1_000_000_000.0  # 2001: the cut-off is taken from the wall clock, not the runtime's
    done = await runtime.book.apply((await runtime.book.reserve(new_order())).order, EXHAUST)
    sync = Sync(
        runtime.book,
        runtime.refresher,
        Archive(runtime.book, tmp_path / "kept"),
        runtime.health,
        runtime.providers,
        runtime.currencies,
        archive_after_days=1,
        check_interval=300,
    )
    assert await sync.archive_old_orders() == 1
    assert await runtime.book.get("alice", done.id) is None
    assert (tmp_path / "kept").is_dir()
