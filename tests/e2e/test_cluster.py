"""The key layout that lets the router run on a Redis Cluster.

Every script and transaction the router runs touches keys of one hash slot
(the client's), and the indexes that grow with orders are split across
slots. The order scenarios themselves run on a real three-master cluster
too: e2e/test_orders.py and e2e/test_order_races.py are parametrised over
the store (`support.on_every_store`).
"""

import pytest


@pytest.mark.parametrize("store", ["cluster"])
async def test_keys_of_one_order_share_a_slot_and_indexes_spread(make_router):
    from redis.cluster import key_slot

    router = await make_router()
    key = await router.client(balance="10")
    for i in range(3):
        await router.call(key, action="add", service=1, link=f"https://instagram.com/p/{i}", quantity=100)
    keys = router.runtime.keys
    client_slot = key_slot(keys.balance("alice").encode())
    assert {
        key_slot(k.encode())
        for k in (
            keys.order("alice", 1),
            keys.ledger("alice"),
            keys.totals("alice"),
            keys.orders_of("alice", "open"),
            keys.lease("alice", 1),
        )
    } == {client_slot}
    assert len({key_slot(keys.order_owner(i * 100).encode()) for i in range(50)}) > 1
