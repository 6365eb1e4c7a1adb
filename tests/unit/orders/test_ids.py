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
