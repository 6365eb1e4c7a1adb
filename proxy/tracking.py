"""An in-process cache of Redis values that Redis itself invalidates (CLIENT TRACKING).

    cache = TrackedCache(url, prefixes=[f"{prefix}apikey:", f"{prefix}balance:", f"{prefix}order:"])
    await cache.start()
    client = await cache.get(keys.api_key(digest), lambda: redis.get(keys.api_key(digest)))
    ...
    await cache.aclose()

`get(key, load)` answers from memory, else awaits `load()` (a read through the
router's normal redis-py client) and keeps its result, `None` (key absent)
included, in memory until Redis says the key changed. Values are shared
between callers: cache immutable values (str, tuple, a frozen dataclass).

How Redis tells us (RESP2 redirect, BCAST)
------------------------------------------
Two connections of our own, beside the redis-py pool:

- A is subscribed to `__redis__:invalidate`;
- B ran `CLIENT TRACKING ON REDIRECT <A's id> BCAST PREFIX p1 PREFIX p2 ...`
  and stays open doing nothing else: Redis now sends A the name of every key
  under those prefixes that anyone changes (a write, a delete, an expiry, an
  eviction), whichever connection read it, so the ordinary pool does the reads;
  FLUSHDB/FLUSHALL sends a nil list, which clears everything.

Both are `asyncio.Protocol`s parsing with `hiredis.Reader`, so an invalidation
is applied inside `data_received`, in the event-loop iteration in which its
bytes are read from the socket, not when some task gets round to it. (One
RESP3 connection with push messages would do the work of both, but needs
hiredis >= 3 to tell a push from a reply; RESP2 works with every hiredis and
every Redis >= 6.)

Redis tracks key names across all its databases, so a write to the same name
in another DB invalidates here too (harmless); no SELECT is needed on A or B.

The guarantee
-------------
1. Once this process has read an invalidation of key K (or a flush), no `get`
   that starts afterwards returns a value of K read before the write that
   caused it. A load that overlapped an invalidation of its key, a flush or a
   lost connection is returned to its caller (it is as fresh as a plain read)
   but not kept: each load holds a per-key ticket that an invalidation marks
   stale, and a global epoch counts flushes and losses.
2. Redis (checked on 6.2 and 7.0 by tests/unit/test_tracking.py) queues a BCAST
   invalidation in the event-loop cycle of the write and writes it to A before
   it writes the reply to the writer. So when the writer has its reply, the
   invalidation is already on its way to us, ahead of anything the writer
   causes next. A request that arrives at this process after the writer's
   reply, on the same host or over a network that does not reorder the two
   paths, is read by the event loop no earlier than the invalidation, and is
   handled in a later iteration: it sees the new value. That is "refused on the
   very next request", on every instance, for a disabled key.
3. While tracking is not established (starting, lost, reconnecting, Redis
   Cluster, Redis < 6, a user without CLIENT rights), every `get` calls `load`
   and nothing is kept: read-through, exact, slower.

What it does not promise:

- A lost connection is seen when the socket reports it (EOF or error: at once
  for a killed client or a stopped server) or, for a silent one (a network
  partition), when a PING sent on each connection every `heartbeat` seconds
  has not been answered by the next beat: values may be served for up to two
  beats of a silent partition. Then the cache is flushed at once and reads go
  through until a fresh pair of connections is tracking.
- Redis invalidates an expired key when it deletes it (on access or in its
  active expire cycle), which can be later than its TTL: do not cache keys
  whose expiry time must be exact (the router's keys, balances and orders
  have none).
- SWAPDB is not reported by Redis (6.2, 7.0) as a change of any key: an
  operator who swaps the router's database must restart it (or `clear()`).
- Redis Cluster: not tracked (it would need a pair of connections per master,
  kept right across resharding and failover); every read goes to Redis.
- If Redis cannot write to A as fast as keys change (A's output buffer backed
  up), or the two network paths reorder, point 2 weakens to "as soon as the
  invalidation arrives".

Choosing prefixes: every change of a key under them costs every instance one
invalidation (about 10 µs of CPU, benchmarks/tracking.py), read or not, so
track what is read far more often than written (API keys; balances and order
views are read on every request but written on every add). The cache must
name the same Redis the loads read (the store's URL); keys are str, as the
store's decode_responses client uses them.

Memory: at most `max_entries` values and `max_absent` negative entries, each
in its own LRU, so a flood of unknown keys (the common attack) cannot push the
real clients' entries out.

Logging: one line per state change (tracking on, unavailable, lost), never a
key, a value or a password.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

import hiredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url

from proxy.store import CLUSTER_SCHEMES

log = logging.getLogger(__name__)

T = TypeVar("T")

CHANNEL = b"__redis__:invalidate"
_MISSING: Any = object()


class _SetupFailed(Exception):
    """Redis refused a command of the handshake (its message; never our arguments)."""


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


class _Link(asyncio.Protocol):
    """One connection: replies go to the commands in order; invalidation messages
    (on A) go to `on_keys` as they are parsed."""

    def __init__(self, on_keys: Callable[[list[bytes] | None], None] | None, on_lost: Callable[[_Link], None]):
        self._reader = hiredis.Reader()
        self._waiting: deque[asyncio.Future[Any] | None] = deque()  # None: a heartbeat PING
        self._on_keys = on_keys
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.unanswered_pings = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection's (loop.create_connection); uvloop's is not an asyncio.Transport subclass.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError:
                self.close()
                return
            if reply is False:
                return
            if (
                self._on_keys is not None
                and type(reply) is list
                and len(reply) == 3
                and reply[0] == b"message"
                and reply[1] == CHANNEL
            ):
                self._on_keys(reply[2])
                continue
            if not self._waiting:  # a reply nobody asked for: we no longer know where we are
                self.close()
                return
            waiter = self._waiting.popleft()
            if waiter is None:
                self.unanswered_pings -= 1
            elif not waiter.done():
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("the tracking connection closed"))
                waiter.exception()  # whoever awaits it still gets it; nobody need
        if not self.closed.done():
            self.closed.set_result(None)
        self._on_lost(self)

    def send(self, commands: Sequence[Sequence[Any]]) -> list[asyncio.Future[Any]]:
        """Write every command in one go; a future for each reply."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self._waiting.extend(futures)
        self.transport.write(b"".join(hiredis.pack_command(tuple(command)) for command in commands))
        return futures

    def ping(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._waiting.append(None)
            self.unanswered_pings += 1
            self.transport.write(b"*1\r\n$4\r\nPING\r\n")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Session:
    """A tracking pair (A subscribed, B tracking) and the future its loss completes."""

    __slots__ = ("links", "lost", "ids")

    def __init__(self, links: tuple[_Link, _Link], ids: tuple[int, int]) -> None:
        self.links = links
        self.ids = ids
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()


def _ssl_context(params: dict[str, Any]) -> ssl.SSLContext:
    """TLS as redis-py reads it from a rediss:// URL: verified unless ssl_cert_reqs=none."""
    context = ssl.create_default_context(cafile=params.get("ssl_ca_certs"))
    if params.get("ssl_certfile"):
        context.load_cert_chain(params["ssl_certfile"], params.get("ssl_keyfile"))
    reqs = params.get("ssl_cert_reqs", "required")
    if isinstance(reqs, str):
        modes = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
        if reqs.lower() not in modes:
            raise ValueError(f"ssl_cert_reqs must be one of {', '.join(modes)}")
        reqs = modes[reqs.lower()]
    if reqs == ssl.CERT_NONE or params.get("ssl_check_hostname") is False:
        context.check_hostname = False
    context.verify_mode = reqs
    return context


class TrackedCache:
    """Values of keys under `prefixes`, kept in memory while Redis tracks them for us."""

    def __init__(
        self,
        url: str,
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
        self._closing = False
        self._session: _Session | None = None
        self._links: set[_Link] = set()
        self._task: asyncio.Task[None] | None = None
        self._attempted: asyncio.Event | None = None
        self._heartbeat = heartbeat
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._name = name
        self.tracks = not url.lower().startswith(CLUSTER_SCHEMES)
        self._params: dict[str, Any] = dict(parse_url(url)) if self.tracks else {}
        # A bad TLS setting is the operator's to fix now, not a retry loop's.
        self._ssl = _ssl_context(self._params) if self._params.get("connection_class") is SSLConnection else None

    # -- reading -------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """True while Redis tracks the prefixes for us and values are kept; when
        False every get reads through (still exact)."""
        return self._healthy

    @property
    def connection_ids(self) -> tuple[int, int] | None:
        """Redis' CLIENT IDs of (A: invalidations, B: tracking), for operators and tests."""
        return self._session.ids if self._session is not None else None

    def __len__(self) -> int:
        return len(self._values) + len(self._absent)

    def cacheable(self, key: str) -> bool:
        return key.startswith(self.prefixes)

    async def get(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        value = self._values.get(key, _MISSING)
        if value is not _MISSING:
            self._values.move_to_end(key)
            self.stats.hits += 1
            return cast(T, value)  # what `load` returned for this key
        if key in self._absent:
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

    # -- the tracking connections --------------------------------------------

    async def start(self) -> None:
        """Start tracking in the background; returns after the first attempt
        (successful or not: until tracking is on, gets read through)."""
        if self._task is not None or self._closing:
            return
        if not self.tracks:
            log.info("client-side cache: Redis Cluster is not tracked, every read goes to Redis")
            return
        self._attempted = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="redis-tracking")
        await self._attempted.wait()

    async def aclose(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._lose("closed")
        for link in list(self._links):
            link.close()
        if self._links:
            await asyncio.wait([link.closed for link in self._links], timeout=self._connect_timeout)

    async def __aenter__(self) -> TrackedCache:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self) -> None:
        assert self._attempted is not None
        failures = 0
        reported = False  # the unhealthy state was logged
        while True:
            try:
                session = await self._connect()
            except Exception as exc:  # any failure to set up means: read through, retry later
                failures += 1
                if not reported:
                    reported = True
                    log.warning(
                        "client-side cache: cannot track Redis (%s); reading through until it can",
                        _describe(exc),
                    )
                self._attempted.set()
                low, high = self._backoff
                await asyncio.sleep(min(high, low * 2 ** min(failures - 1, 30)) * random.uniform(0.5, 1.0))
                continue
            self._session = session
            self._healthy = True
            self._attempted.set()
            log.info(
                "client-side cache: tracking %d key prefix(es)%s",
                len(self.prefixes),
                f" again after {failures} failed attempt(s)" if failures else "",
            )
            failures = 0
            reason = await self._watch(session)
            reported = True
            if not self._closing:
                log.warning("client-side cache: tracking lost (%s); flushed, reading through until it is back", reason)

    async def _watch(self, session: _Session) -> str:
        """Until the session is lost: PING both connections every heartbeat; one
        not answered by the next beat counts as lost (a silent partition)."""
        while not session.lost.done():
            await asyncio.wait([session.lost], timeout=self._heartbeat)
            if session.lost.done():
                break
            if any(link.unanswered_pings for link in session.links):
                self._lose("no answer to PING within a heartbeat")
                break
            for link in session.links:
                link.ping()
        return session.lost.result()

    async def _connect(self) -> _Session:
        params = self._params
        auth: list[Any] = []
        if params.get("password"):
            auth = (
                ["AUTH", params["username"], params["password"]]
                if params.get("username")
                else ["AUTH", params["password"]]
            )
        opened: list[_Link] = []
        try:
            async with asyncio.timeout(self._connect_timeout):
                a = await self._open(self._invalidate, opened)
                replies = await _handshake(
                    a,
                    auth,
                    [
                        ("CLIENT", "SETNAME", f"{self._name}:invalidations"),
                        ("CLIENT", "ID"),
                        ("SUBSCRIBE", CHANNEL),
                    ],
                )
                a_id = replies[1]
                tracking = ["CLIENT", "TRACKING", "ON", "REDIRECT", a_id, "BCAST"]
                for prefix in self.prefixes:
                    tracking += ["PREFIX", prefix]
                b = await self._open(None, opened)
                replies = await _handshake(
                    b, auth, [("CLIENT", "SETNAME", f"{self._name}:tracking"), ("CLIENT", "ID"), tracking]
                )
                b_id = replies[1]
                # A loss reported before the session exists would go unseen: look now
                # (the caller installs the session without awaiting in between).
                if any(link.transport is None or link.transport.is_closing() for link in (a, b)):
                    raise ConnectionError("a tracking connection closed during the handshake")
        except BaseException:
            for link in opened:
                link.close()
            raise
        return _Session((a, b), (a_id, b_id))

    async def _open(self, on_keys: Callable[[list[bytes] | None], None] | None, opened: list[_Link]) -> _Link:
        loop = asyncio.get_running_loop()
        links: list[_Link] = []

        def factory() -> _Link:
            link = _Link(on_keys, self._link_lost)
            links.append(link)
            return link

        params = self._params
        if params.get("connection_class") is UnixDomainSocketConnection:
            await loop.create_unix_connection(factory, params["path"])
        else:
            host = params.get("host", "localhost")
            await loop.create_connection(factory, host, params.get("port", 6379), ssl=self._ssl)
        link = links[0]
        opened.append(link)
        self._links.add(link)
        link.closed.add_done_callback(lambda _: self._links.discard(link))
        return link

    def _link_lost(self, link: _Link) -> None:
        session = self._session
        if session is not None and link in session.links:
            self._lose("connection closed")

    def _lose(self, reason: str) -> None:
        """Flush at once and read through: called the moment a loss is known."""
        session, self._session = self._session, None
        if session is None:
            return
        self._healthy = False
        self.stats.losses += 1
        self.clear()
        self._pending.clear()
        for link in session.links:
            link.close()
        if not session.lost.done():
            session.lost.set_result(reason)


async def _handshake(link: _Link, auth: list[Any], commands: list[Sequence[Any]]) -> list[Any]:
    """Send AUTH (if any) and `commands` in one write; their replies, after AUTH's.
    CLIENT SETNAME may be refused (an ACL): it only helps operators read CLIENT LIST."""
    sent = ([auth] if auth else []) + commands
    replies = [await future for future in link.send(sent)]
    for command, reply in zip(sent, replies, strict=True):
        if isinstance(reply, hiredis.ReplyError) and tuple(command[:2]) != ("CLIENT", "SETNAME"):
            name = f"CLIENT {command[1]}" if command[0] == "CLIENT" else command[0]  # never an argument
            raise _SetupFailed(f"{name} refused: {reply}")
    return replies[1:] if auth else replies


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, _SetupFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
