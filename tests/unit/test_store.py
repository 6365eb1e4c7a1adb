"""The store's client: a cancelled task stops.

The router relies on cancellation: the lease renewal is cancelled when its
order is placed, shutdown cancels what outlives its grace, an add stops
waiting at SMM_PROXY_ADD_WAIT. redis-py bounds each write by its socket
timeout with asyncio.wait_for, which on Python 3.11 swallows a cancellation
arriving as the write completes: the task went on (89 of 200 times on 7.4.1
with our timeout, 195 on 8.2.0). `connect` bounds writes another way.
"""

from __future__ import annotations

import asyncio

from support import on_every_store

from proxy.keys import Keys
from proxy.store import Store, connect

CANCELS = 200


@on_every_store
async def test_a_task_cancelled_inside_a_command_always_stops(redis_client: Store, keys: Keys) -> None:
    key = keys.client("cancelled")
    await redis_client.set(key, "x" * 100)
    lost: list[str] = []

    async def reader(point: int, cancelled: asyncio.Event) -> None:
        while True:
            await redis_client.get(key)
            if cancelled.is_set():  # a command finished after cancel(): the cancellation was swallowed
                lost.append(f"cancel {point}: the task went on")
                return

    for point in range(CANCELS):
        cancelled = asyncio.Event()
        task = asyncio.create_task(reader(point, cancelled))
        # Spread the cancels over a command's whole path: queued, sent, its
        # reply awaited, read, the connection released.
        for _ in range(point % 25):
            await asyncio.sleep(0)
        if point >= 100:
            await asyncio.sleep((point - 100) * 1e-5)
        task.cancel()
        cancelled.set()
        try:
            await task
        except asyncio.CancelledError:
            continue
        except Exception as exc:  # noqa: BLE001 - any other ending is a lost cancel too
            lost.append(f"cancel {point}: ended with {exc!r}")
    assert not lost, f"{len(lost)} of {CANCELS} cancels lost: {lost[:3]}"
    assert await redis_client.get(key) == "x" * 100  # the client still works


async def test_a_url_may_name_options_connect_also_sets(redis_url: str, keys: Keys) -> None:
    store = connect(redis_url + ("&" if "?" in redis_url else "?") + "socket_timeout=5&socket_connect_timeout=5")
    key = keys.client("url-options")
    try:
        await store.set(key, "x")
        assert await store.get(key) == "x"
    finally:
        await store.delete(key)
        await store.aclose()
