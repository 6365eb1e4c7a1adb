"""The cached values of `proxy.tracking` (its docstring says what is guaranteed)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

from redis.asyncio.connection import parse_url

from proxy.store import CLUSTER_SCHEMES, Store, single
from proxy.tracking.links import Tracker

log = logging.getLogger(__name__)

T = TypeVar("T")

_MISSING: Any = object()


class Stats:
    """Counters for metrics: hits, loads (misses), values kept, loads not kept
    because the key changed meanwhile, keys invalidated, flushes, lost connections."""

    __slots__ = ("hits", "loads", "kept", "discarded", "invalidated", "flushes", "losses")

    def __init__(self) -> None:
        self.hits = self.loads = self.kept = self.discarded = 0
        self.invalidated = self.flushes = self.losses = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class _Ticket:
    """Held by the loads of one key; an invalidation of the key marks it stale."""

    __slots__ = ("stale", "holders")

    def __init__(self) -> None:
        self.stale = False
        self.holders = 0


def connection_params(where: str | Store) -> dict[str, Any] | None:
    """redis-py's connection keywords (with `connection_class`) for a URL or a
    client's pool; None for a Redis Cluster (not tracked)."""
    if isinstance(where, str):
        return None if where.lower().startswith(CLUSTER_SCHEMES) else dict(parse_url(where))
    server = single(where)
    if server is None:
        return None
    pool = server.connection_pool
    return {**pool.connection_kwargs, "connection_class": pool.connection_class}


class TrackedCache:
    """Values of keys under `prefixes`, kept in memory while Redis tracks them for us.

    `where` is the Redis the loads read: its URL, or the client itself (its
    pool's address and credentials are used). A Redis Cluster is not tracked."""

    def __init__(
        self,
        where: str | Store,
        prefixes: Iterable[str],
        *,
        max_entries: int = 100_000,
        max_absent: int = 20_000,
        heartbeat: float | None = 1.0,
        connect_timeout: float = 5.0,
        backoff: tuple[float, float] = (0.05, 5.0),
        name: str = "smm-proxy",
    ) -> None:
        wanted = sorted(set(prefixes))
        if not wanted or "" in wanted:
            raise ValueError("name at least one non-empty key prefix to track")
        # Redis refuses overlapping BCAST prefixes; the shorter one covers the longer.
        self.prefixes = tuple(p for p in wanted if not any(p != q and p.startswith(q) for q in wanted))
        if max_entries < 0 or max_absent < 0:
            raise ValueError("max_entries and max_absent cannot be negative")
        self.max_entries = max_entries
        self.max_absent = max_absent
        self.stats = Stats()
        self._values: OrderedDict[str, Any] = OrderedDict()
        self._absent: OrderedDict[str, None] = OrderedDict()
        self._pending: dict[str, _Ticket] = {}
        self._epoch = 0
        self._healthy = False
        params = connection_params(where)
        self.tracks = params is not None
        self._tracker = (
            Tracker(
                params,
                self.prefixes,
                on_keys=self._invalidate,
                on_up=self._up,
                on_down=self._down,
                heartbeat=heartbeat,
                connect_timeout=connect_timeout,
                backoff=backoff,
                name=name,
            )
            if params is not None
            else None
        )

    # -- reading -------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """True while Redis tracks the prefixes for us and values are kept; when
        False every get reads through (still exact)."""
        return self._healthy

    @property
    def connection_ids(self) -> tuple[int, int] | None:
        """Redis' CLIENT IDs of (A: invalidations, B: tracking), for operators and tests."""
        session = self._tracker.session if self._tracker is not None else None
        return session.ids if session is not None else None

    def __len__(self) -> int:
        return len(self._values) + len(self._absent)

    def cacheable(self, key: str) -> bool:
        return key.startswith(self.prefixes)

    def _intact(self) -> bool:
        """Before serving from memory: the tracking pair stands (else it is lost now, and flushed)."""
        return self._tracker is not None and self._tracker.intact()

    async def get(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        value = self._values.get(key, _MISSING)
        if value is not _MISSING and self._intact():
            self._values.move_to_end(key)
            self.stats.hits += 1
            return cast(T, value)  # what `load` returned for this key
        if key in self._absent and self._intact():
            self._absent.move_to_end(key)
            self.stats.hits += 1
            return cast(T, None)  # `load` returned None for this key
        self.stats.loads += 1
        if not (self._healthy and key.startswith(self.prefixes)):
            return await load()
        epoch = self._epoch
        ticket = self._hold(key)
        try:
            value = await load()
        finally:
            self._release(key, ticket)
        self._keep(key, value, ticket, epoch)
        return value

    async def get_many(self, keys: Sequence[str], load: Callable[[list[str]], Awaitable[Sequence[T]]]) -> list[T]:
        """Values for `keys`, in order; `load(missing)` (an MGET, say) reads the
        keys not in memory, returning their values in the order asked."""
        found: dict[str, Any] = {}
        missing: list[str] = []
        if self._healthy:
            self._intact()  # a pair found broken is lost now: memory is flushed, every key is read
        for key in keys:
            if key in found:
                continue
            value = self._values.get(key, _MISSING)
            if value is not _MISSING:
                self._values.move_to_end(key)
                found[key] = value
            elif key in self._absent:
                self._absent.move_to_end(key)
                found[key] = None
            else:
                found[key] = _MISSING
                missing.append(key)
        self.stats.hits += len(found) - len(missing)
        if missing:
            self.stats.loads += len(missing)
            tracked = self._healthy
            epoch = self._epoch
            tickets = {key: self._hold(key) for key in missing if key.startswith(self.prefixes)} if tracked else {}
            try:
                values = await load(missing)
            finally:
                for key, ticket in tickets.items():
                    self._release(key, ticket)
            if len(values) != len(missing):
                raise ValueError(f"load returned {len(values)} values for {len(missing)} keys")
            for key, value in zip(missing, values, strict=True):
                found[key] = value
                if key in tickets:
                    self._keep(key, value, tickets[key], epoch)
        return [found[key] for key in keys]

    def discard(self, *keys: str) -> None:
        """Forget keys now (Redis' invalidation will follow anyway)."""
        for key in keys:
            self._forget(key)

    def clear(self) -> None:
        """Forget everything; loads in flight are not kept."""
        self._epoch += 1
        self._values.clear()
        self._absent.clear()

    def _hold(self, key: str) -> _Ticket:
        ticket = self._pending.get(key)
        if ticket is None:
            ticket = self._pending[key] = _Ticket()
        ticket.holders += 1
        return ticket

    def _release(self, key: str, ticket: _Ticket) -> None:
        ticket.holders -= 1
        if ticket.holders == 0 and self._pending.get(key) is ticket:
            del self._pending[key]

    def _keep(self, key: str, value: Any, ticket: _Ticket, epoch: int) -> None:
        if ticket.stale or epoch != self._epoch or not self._healthy:
            self.stats.discarded += 1
            return
        table, limit = (self._absent, self.max_absent) if value is None else (self._values, self.max_entries)
        (self._values if value is None else self._absent).pop(key, None)
        if limit == 0:
            return
        table[key] = value
        table.move_to_end(key)
        if len(table) > limit:
            table.popitem(last=False)
        self.stats.kept += 1

    def _forget(self, key: str) -> None:
        self._values.pop(key, None)
        self._absent.pop(key, None)
        ticket = self._pending.pop(key, None)
        if ticket is not None:
            ticket.stale = True

    # -- invalidations (called from A's data_received) -------------------------

    def _invalidate(self, keys: list[bytes] | None) -> None:
        if keys is None:  # FLUSHDB, FLUSHALL
            self.stats.flushes += 1
            self.clear()
            return
        for raw in keys:
            # redis-py sends str keys as UTF-8; anything else was never ours.
            self._forget(raw.decode("utf-8", "surrogateescape"))
        self.stats.invalidated += len(keys)

    # -- the tracking connections (proxy.tracking.links) -------------------------

    @property
    def started(self) -> bool:
        return self._tracker is not None and self._tracker.started

    async def start(self) -> None:
        """Start tracking in the background; returns after the first attempt
        (successful or not: until tracking is on, gets read through)."""
        if self._tracker is None:
            log.info("client-side cache: Redis Cluster is not tracked, every read goes to Redis")
            return
        await self._tracker.start()

    async def aclose(self) -> None:
        if self._tracker is not None:
            await self._tracker.aclose()

    async def __aenter__(self) -> TrackedCache:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _up(self) -> None:
        self._healthy = True

    def _down(self) -> None:
        """Flush at once and read through: called the moment a loss is known."""
        self._healthy = False
        self.stats.losses += 1
        self.clear()
        self._pending.clear()
