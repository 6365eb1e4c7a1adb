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
  billing in another currency than the config says is blocked; what it
  says of the balance may put the provider below its `low_balance`.
- Probes: every round, providers ejected for failing whose time is up are
  asked for their balance; one that answers is back.
- The webhook, if one is set: events are delivered in a task of their own.

Every step is safe to run on several instances at once: the order book's
transitions check state, lease and status version in one atomic step.

Each round is logged (one line: what each step did, how long it took) and
measured (`proxy.ops.metrics`: rounds, step durations and failures, the time
of the last round), so a worker that stalls or fails shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

from redis.exceptions import RedisError

from proxy.errors import ArchiveUnwritable
from proxy.ops.events import Webhook
from proxy.orders.archive import Archive
from proxy.orders.book import OrderBook
from proxy.orders.statuses import StatusRefresher
from proxy.providers.health import Health
from proxy.providers.upstream import ProviderClient

log = logging.getLogger(__name__)


class SyncObserver(Protocol):
    """What measures the background work (`proxy.ops.metrics.Metrics`)."""

    def sync_step(self, step: str, seconds: float, ok: bool) -> None: ...

    def sync_round(self, seconds: float) -> None: ...


POLL_BATCH = 500
# Every this many rounds, the open orders of every client are swept too.
SWEEP_EVERY = 10
ARCHIVE_EVERY_SECONDS = 86400.0
# Seconds a stopping background loop is waited for.
STOP_SECONDS = 1.0


class Sync:
    """The background work, on the collaborators it works through.

    `currencies` names the providers and the currency the config says each
    bills in; `archive_after_days` (None: never) and `check_interval` come
    from the settings.
    """

    def __init__(
        self,
        book: OrderBook,
        refresher: StatusRefresher,
        archive: Archive,
        health: Health,
        providers: Mapping[str, ProviderClient],
        currencies: Mapping[str, str],
        *,
        archive_after_days: float | None,
        check_interval: float,
        webhook: Webhook | None = None,
        webhook_interval: float = 5.0,
        observer: SyncObserver | None = None,
    ) -> None:
        self.book = book
        self.refresher = refresher
        self.archive = archive
        self.health = health
        self.providers = providers
        self.currencies = currencies
        self.archive_after_days = archive_after_days
        self.check_interval = check_interval
        self.stopping = False
        self.webhook = webhook
        self.webhook_interval = webhook_interval
        self.observer = observer

    async def recover(self) -> int:
        settled = await self.book.recover()
        for order in settled:
            log.warning("order %s was abandoned in flight; now %s", order.id, order.state)
        return len(settled)

    async def poll_due(self) -> int:
        """Read the due statuses of every provider, 100 orders a call; claims keep
        instances from reading the same orders in one round."""
        read = 0
        for provider in self.providers:
            read += await self.refresher.poll(provider)
        return read

    async def poll_open_orders(self) -> int:
        """Sweep every client's open orders (a slower path than the due index,
        which it repairs: an order missing there is put back when it is read)."""
        looked = 0
        for client in await self.book.clients():
            ids = await self.book.ids_in("open", client)
            for start in range(0, len(ids), POLL_BATCH):
                orders = await self.book.get_many(client, ids[start : start + POLL_BATCH])
                await self.refresher.refresh(orders.values())
                looked += len(orders)
        return looked

    async def archive_old_orders(self) -> int:
        days = self.archive_after_days
        if not days:
            return 0
        try:
            moved = await self.archive.archive(time.time() - days * 86400)
        except ArchiveUnwritable as exc:
            log.error("finished orders not archived: %s", exc)
            return 0
        if moved:
            log.info("%d finished orders older than %s days archived", moved, days)
        return moved

    async def probe_providers(self) -> int:
        """Probe the ejected providers whose time is up; how many came back."""
        probed = await self.health.probe(self.providers)
        return sum(probed.values())

    async def check_providers(self) -> None:
        await asyncio.gather(
            *(self.health.verify(client, self.currencies[name]) for name, client in self.providers.items())
        )

    async def run_forever(self, interval: float) -> None:
        checked_at = time.monotonic()
        archived_at = 0.0
        rounds = 0
        while not self.stopping:
            rounds += 1
            steps: list[Callable[[], Awaitable[object]]] = [self.recover, self.probe_providers, self.poll_due]
            if rounds % SWEEP_EVERY == 1:
                steps.append(self.poll_open_orders)
            if time.monotonic() - archived_at >= ARCHIVE_EVERY_SECONDS:
                archived_at = time.monotonic()
                steps.append(self.archive_old_orders)
            started, done = time.monotonic(), {}
            for step in steps:
                if self.stopping:
                    return
                step_started, ok = time.monotonic(), False
                try:
                    done[step.__name__] = await step()
                    ok = True
                except (RedisError, OSError) as exc:
                    log.warning("background %s skipped, store unavailable: %s", step.__name__, type(exc).__name__)
                except Exception:
                    log.exception("background %s failed; trying again later", step.__name__)
                if self.observer is not None:
                    self.observer.sync_step(step.__name__, time.monotonic() - step_started, ok)
            self._round_done(rounds, started, done, len(steps))
            if time.monotonic() - checked_at >= self.check_interval:
                checked_at = time.monotonic()
                try:
                    await self.check_providers()
                except Exception:
                    log.exception("provider checks failed; trying again later")
            await asyncio.sleep(interval)

    def _round_done(self, rounds: int, started: float, done: dict[str, object], steps: int) -> None:
        seconds = time.monotonic() - started
        if self.observer is not None:
            self.observer.sync_round(seconds)
        did = ", ".join(f"{name} {value}" for name, value in done.items() if isinstance(value, int))
        log.info(
            "background round %d: %s in %.0f ms%s",
            rounds,
            did or "nothing done",
            seconds * 1000,
            "" if len(done) == steps else f" ({steps - len(done)} steps failed)",
            extra={"round": rounds, "ms": round(seconds * 1000, 1), **{k: v for k, v in done.items() if v is not None}},
        )

    @contextlib.asynccontextmanager
    async def background(self, interval: float) -> AsyncIterator[asyncio.Task[None]]:
        """Run the work every `interval` seconds while the block runs (checking the providers first)."""
        try:
            await self.check_providers()
        except Exception:
            log.exception("provider checks failed at start")
        task = asyncio.create_task(self.run_forever(interval), name="smm-proxy-sync")
        try:
            if self.webhook is not None:
                async with self.webhook.running(self.webhook_interval):
                    yield task
            else:
                yield task
        finally:
            self.stopping = True
            task.cancel()
            # A cancel that lands inside a Redis command may be swallowed: the
            # loop then stops at its next step (`stopping`); nobody waits longer.
            await asyncio.wait({task}, timeout=STOP_SECONDS)
            if task.done() and not task.cancelled() and (error := task.exception()) is not None:
                log.warning("background work ended with %s", type(error).__name__)
