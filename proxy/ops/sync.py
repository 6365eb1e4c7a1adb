"""Background work of a running router.

- Recovery: orders a crash left `reserved` (never sent: refunded) or
  `submitted` (may exist: `unknown`), once they are older than any request
  could take.
- Status polling: open orders are refreshed in bulk, so Partial and
  Canceled orders are refunded even when the client never asks.

Every step is safe to run on several instances at once: the order book's
transitions check state and refund against references.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from proxy.runtime import Runtime

log = logging.getLogger("proxy.sync")

# An order still in flight after this long was abandoned by a crash.
STUCK_AFTER_SECONDS = 300.0
POLL_BATCH = 500


async def recover(runtime: Runtime) -> int:
    settled = await runtime.book.recover(older_than=runtime.clock() - STUCK_AFTER_SECONDS)
    for order in settled:
        log.warning("order %s was left in flight; now %s", order.id, order.state)
    return len(settled)


async def poll_open_orders(runtime: Runtime) -> int:
    """Refresh the stale open orders, oldest first; how many were looked at."""
    ids = await runtime.book.ids_in("open")
    looked = 0
    for start in range(0, len(ids), POLL_BATCH):
        owners = await runtime.redis.hmget(runtime.keys.order_owner, [str(i) for i in ids[start : start + POLL_BATCH]])
        by_client: dict[str, list[int]] = defaultdict(list)
        for order_id, client in zip(ids[start : start + POLL_BATCH], owners, strict=True):
            if client:
                by_client[client].append(order_id)
        orders = []
        for client, client_ids in by_client.items():
            orders += (await runtime.book.get_many(client, client_ids)).values()
        await runtime.refresher.refresh(orders)
        looked += len(orders)
    return looked


async def run_forever(runtime: Runtime, interval: float) -> None:
    while True:
        for step in (recover, poll_open_orders):
            try:
                await step(runtime)
            except Exception:
                log.exception("background %s failed; trying again later", step.__name__)
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def background(runtime: Runtime, interval: float):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(run_forever(runtime, interval), name="smm-proxy-sync")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
