"""Order IDs in blocks (proxy/orders/ids.py)."""

import asyncio

from proxy.orders.ids import OrderIds


async def test_ids_are_unique_across_instances_and_restarts(redis_client, keys):
    first, second = OrderIds(redis_client, keys.order_seq, 10), OrderIds(redis_client, keys.order_seq, 10)
    taken = [await first.next() for _ in range(15)] + [await second.next() for _ in range(15)]
    restarted = OrderIds(redis_client, keys.order_seq, 10)  # a block in hand is never handed out again
    taken += [await restarted.next() for _ in range(5)]
    assert len(set(taken)) == len(taken)
    assert taken[:15] == list(range(1, 16))  # one instance's IDs run on within and across its blocks
    assert min(taken[30:]) > max(taken[:30])


async def test_one_incrby_per_block_however_many_adds_ask_at_once(redis_client, keys):
    ids = OrderIds(redis_client, keys.order_seq, 100)
    taken = await asyncio.gather(*(ids.next() for _ in range(250)))
    assert sorted(taken) == list(range(1, 251))
    assert int(await redis_client.get(keys.order_seq)) == 300  # three blocks, the last one in hand


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_block_is_used_for_at_most_its_age_so_ids_follow_time(redis_client, keys):
    """An ID above another was numbered at most `max_age` after the other's block
    was taken: reports and searches rely on it (proxy/ops/reports.py)."""
    clock = Clock()
    a = OrderIds(redis_client, keys.order_seq, 10, max_age=60, clock=clock)
    b = OrderIds(redis_client, keys.order_seq, 10, max_age=60, clock=clock)
    numbered: list[tuple[int, float]] = []
    for step in range(40):
        numbered.append((await (a if step % 3 else b).next(), clock.now))
        clock.now += 7 if step % 5 else 61
    for high, at_high in numbered:
        for low, at_low in numbered:
            if high > low:
                assert at_high >= at_low - 60, (high, low)
    assert len({n for n, _ in numbered}) == len(numbered)


async def test_a_quiet_instance_takes_smaller_blocks_and_a_busy_one_grows_them_back(redis_client, keys):
    clock = Clock()
    ids = OrderIds(redis_client, keys.order_seq, 8, max_age=60, clock=clock)
    for _ in range(5):  # one add a few minutes: each block dropped nearly unused
        await ids.next()
        clock.now += 300
    assert ids.size == 1
    before = int(await redis_client.get(keys.order_seq))
    assert before <= 8 + 4 + 2 + 1 + 1  # the sequence did not run ahead of the orders by a block each
    for _ in range(20):  # busy again: blocks used up in time double
        await ids.next()
    assert ids.size == 8
