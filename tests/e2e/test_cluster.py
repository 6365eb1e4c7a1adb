"""The order tests again, on a real three-master Redis Cluster.

Every script and transaction the router runs touches keys of one hash slot
(the client's), and the indexes that grow with orders are split across
slots, so the same code runs on a cluster: these are the tests of
test_orders.py and test_order_races.py, against one.
"""

import pytest
from cluster import LocalCluster

from e2e.test_order_races import *  # noqa: F403
from e2e.test_orders import *  # noqa: F403  (the same tests, with the fixture below)


@pytest.fixture(scope="module")
def redis_url():
    with LocalCluster() as url:
        yield url


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
