"""Background work of a running router.

- Recovery: orders whose placing task is gone (its lease expired) are taken
  over: one never sent is refunded, one that may exist upstream becomes
  `unknown` for an operator. Leases expire on Redis' clock, so an instance
  whose clock is off never takes a live order.
- Status polling: due open orders are read in bulk (100 a call, from each
  provider's due index, claimed so instances share the work), so Partial
  and Canceled orders are refunded even when the client never asks; every
  few rounds every client's open orders are swept too.
- Provider checks: each provider's balance reply is read, and a provider
  billing in another currency than the config says is blocked.

Every step is safe to run on several instances at once: the order book's
transitions check state, lease and status version in one atomic step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.exceptions import RedisError

from proxy.runtime import Runtime

log = logging.getLogger(__name__)

POLL_BATCH = 500
# Every this many rounds, the open orders of every client are swept too.
SWEEP_EVERY = 10
ARCHIVE_EVERY_SECONDS = 86400.0


async def recover(runtime: Runtime) -> int:
    settled = await runtime.book.recover()
    for order in settled:
        log.warning("order %s was abandoned in flight; now %s", order.id, order.state)
    return len(settled)


async def poll_due(runtime: Runtime) -> int:
    """Read the due statuses of every provider, 100 orders a call; claims keep
    instances from reading the same orders in one round."""
    read = 0
    for provider in runtime.providers:
        read += await runtime.refresher.poll(provider)
    return read


async def poll_open_orders(runtime: Runtime) -> int:
    """Sweep every client's open orders (a slower path than the due index,
    which it repairs: an order missing there is put back when it is read)."""
    looked = 0
    for client in await runtime.book.clients():
        ids = await runtime.book.ids_in("open", client)
        for start in range(0, len(ids), POLL_BATCH):
            orders = await runtime.book.get_many(client, ids[start : start + POLL_BATCH])
            await runtime.refresher.refresh(orders.values())
            looked += len(orders)
    return looked


async def archive_old_orders(runtime: Runtime) -> int:
    days = runtime.settings.archive_after_days
    if not days:
        return 0
    moved = await runtime.archive.archive(time.time() - days * 86400)
    if moved:
        log.info("%d finished orders older than %s days archived", moved, days)
    return moved


async def check_providers(runtime: Runtime) -> None:
    await asyncio.gather(
        *(runtime.health.verify(client, runtime.currencies[name]) for name, client in runtime.providers.items())
    )


async def run_forever(runtime: Runtime, interval: float) -> None:
    checked_at = time.monotonic()
    archived_at = 0.0
    rounds = 0
    while True:
        rounds += 1
        steps = [recover, poll_due] + ([poll_open_orders] if rounds % SWEEP_EVERY == 1 else [])
        if time.monotonic() - archived_at >= ARCHIVE_EVERY_SECONDS:
            archived_at = time.monotonic()
            steps.append(archive_old_orders)
        for step in steps:
            try:
                await step(runtime)
            except (RedisError, OSError) as exc:
                log.warning("background %s skipped, store unavailable: %s", step.__name__, type(exc).__name__)
            except Exception:
                log.exception("background %s failed; trying again later", step.__name__)
        if time.monotonic() - checked_at >= runtime.settings.provider_check_interval:
            checked_at = time.monotonic()
            try:
                await check_providers(runtime)
            except Exception:
                log.exception("provider checks failed; trying again later")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def background(runtime: Runtime, interval: float):  # type: ignore[no-untyped-def]
    try:
        await check_providers(runtime)
    except Exception:
        log.exception("provider checks failed at start")
    task = asyncio.create_task(run_forever(runtime, interval), name="smm-proxy-sync")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
