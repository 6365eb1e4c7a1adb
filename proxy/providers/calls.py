"""Upstream calls over the last hour, per provider: how many, how many failed,
how long they took. Shared by every instance through Redis.

Each call is counted in memory as it ends (`record`, the upstream client's
observer: no Redis write on a call's path) and the counts are added to
per-minute hashes in Redis (`Keys.calls`) at most every FLUSH_SECONDS, by
a task `record` starts. A read (`last_hour`: the providers page, GET
/admin/providers/calls) writes nothing: it adds the counts this process
holds in memory (or is writing) to what Redis holds. At
shutdown the counts not yet written (a few seconds' worth) are dropped:
nothing is written while a process closes. A failure is a call
that got no usable answer: the provider could not be reached, or what it
answered leaves the outcome unknown (a timeout, 5xx, HTML, garbled JSON).
An answered refusal is counted apart. The numbers are advice for an
operator: a write that fails is dropped with a warning, never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from proxy.keys import Keys
from proxy.store import Store, text_map

log = logging.getLogger(__name__)

FLUSH_SECONDS = 5.0
WINDOW_MINUTES = 60
KEEP_SECONDS = 2 * 3600
FAILURES = frozenset({"unreachable", "unknown"})


@dataclass(frozen=True)
class CallWindow:
    """A provider's calls over a window: counts and total time in milliseconds."""

    calls: int = 0
    failures: int = 0
    refused: int = 0
    milliseconds: int = 0

    @property
    def failure_rate(self) -> float | None:
        return self.failures / self.calls if self.calls else None

    @property
    def mean_ms(self) -> float | None:
        return self.milliseconds / self.calls if self.calls else None


class CallStats:
    def __init__(self, redis: Store, keys: Keys, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self._pending: dict[tuple[str, int], list[int]] = {}
        self._writing: dict[tuple[str, int], list[int]] = {}  # the counts a flush is adding to Redis
        self._task: asyncio.Task[None] | None = None
        self._flushed = time.monotonic()

    def record(self, provider: str, action: str, outcome: str, seconds: float) -> None:
        """One call ended (the upstream client's observer)."""
        counts = self._pending.setdefault((provider, int(self.clock() // 60)), [0, 0, 0, 0])
        counts[0] += 1
        counts[1] += outcome in FAILURES
        counts[2] += outcome == "refused"
        counts[3] += round(seconds * 1000)
        if time.monotonic() - self._flushed >= FLUSH_SECONDS and (self._task is None or self._task.done()):
            with contextlib.suppress(RuntimeError):  # no running loop: the next call or aclose flushes
                self._task = asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        """Add the counts kept in memory to Redis."""
        pending, self._pending = self._pending, {}
        self._flushed = time.monotonic()
        if not pending:
            return
        self._writing = pending
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for (provider, minute), (calls, failures, refused, ms) in pending.items():
                    key = self.keys.calls(provider, minute)
                    pipe.hincrby(key, "calls", calls)
                    pipe.hincrby(key, "failures", failures)
                    pipe.hincrby(key, "refused", refused)
                    pipe.hincrby(key, "ms", ms)
                    pipe.expire(key, KEEP_SECONDS)
                await pipe.execute()
        except Exception as exc:
            log.warning("upstream call counts not written (%s): dropped", type(exc).__name__)
        finally:
            self._writing = {}

    async def last_hour(self, providers: Iterable[str]) -> dict[str, CallWindow]:
        """Each provider's calls over the last WINDOW_MINUTES minutes (this one
        included): what Redis holds and what this process has not written yet.
        It writes nothing (a flush that ends while this reads may be counted twice
        in this one answer: these numbers are advice)."""
        names = list(providers)
        now = int(self.clock() // 60)
        minutes = range(now - WINDOW_MINUTES + 1, now + 1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                for minute in minutes:
                    pipe.hgetall(self.keys.calls(name, minute))
            replies = await pipe.execute()
        unwritten = [*self._writing.items(), *self._pending.items()]
        found = {}
        for n, name in enumerate(names):
            rows = [text_map(r) for r in replies[n * WINDOW_MINUTES : (n + 1) * WINDOW_MINUTES]]
            held = [counts for (provider, minute), counts in unwritten if provider == name and minute in minutes]
            found[name] = CallWindow(
                calls=sum(int(r.get("calls", 0)) for r in rows) + sum(c[0] for c in held),
                failures=sum(int(r.get("failures", 0)) for r in rows) + sum(c[1] for c in held),
                refused=sum(int(r.get("refused", 0)) for r in rows) + sum(c[2] for c in held),
                milliseconds=sum(int(r.get("ms", 0)) for r in rows) + sum(c[3] for c in held),
            )
        return found

    async def aclose(self) -> None:
        """Stop writing: a flush under way is cancelled, what is left in memory dropped."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._pending = {}
