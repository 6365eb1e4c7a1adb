"""Redis: the connection, every key name, and reading replies (the embedded server: `proxy.embedded`).

Keys a single script touches share a hash tag (`{c:NAME}` for a client), so
the layout also works on Redis Cluster. Records and the ledger never expire;
caches do.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, TypeGuard, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy.errors import StoreUnfit

log = logging.getLogger(__name__)

# IDs per owner-index bucket: small enough for Redis' compact hash encoding.
OWNER_BUCKET = 100


class Keys:
    """Every Redis key name the router uses, under one prefix."""

    def __init__(self, prefix: str = "smm:") -> None:
        self.prefix = prefix

    # Client accounts: one hash tag per client, for the ledger scripts.
    def client(self, name: str) -> str:
        return f"{self.prefix}client:{{c:{name}}}"

    def balance(self, name: str) -> str:
        return f"{self.prefix}balance:{{c:{name}}}"

    def ledger(self, name: str) -> str:
        return f"{self.prefix}ledger:{{c:{name}}}"

    def applied(self, name: str) -> str:
        """Hash of idempotency reference -> ledger entry, per client."""
        return f"{self.prefix}applied:{{c:{name}}}"

    def totals(self, name: str) -> str:
        """Running totals of a client's money by kind (charge, refund, topup, paid upstream)."""
        return f"{self.prefix}totals:{{c:{name}}}"

    def rates(self, name: str) -> str:
        """A client's custom rates: service -> rate per 1000 (`proxy.accounts.terms`)."""
        return f"{self.prefix}rates:{{c:{name}}}"

    def open_links(self, name: str, link_key: str = "") -> str:
        """How many open orders the client has on each link (by the link's key): the
        order scripts keep it as orders open and end; the reserve script reads it.
        In 256 buckets by the key's first two hex digits, each small enough for
        Redis' compact hash encoding up to about 30,000 open links a client;
        the bucket of a link's key (`open_links_buckets` matches them all)."""
        return f"{self.prefix}links:{{c:{name}}}:{link_key[:2] or '-'}"

    def open_links_buckets(self, name: str) -> str:
        """A SCAN pattern matching every bucket of the client's open-links index."""
        return f"{self.prefix}links:{{c:{name}}}:*"

    @property
    def clients(self) -> str:
        return f"{self.prefix}clients"

    def api_key(self, key_hash: str) -> str:
        return f"{self.prefix}apikey:{key_hash}"

    @property
    def hot(self) -> tuple[str, ...]:
        """The prefixes of what a read request reads (an API key's client, the
        client's record and rates, its balance, an order's record): kept in each
        process by the tracked cache (`proxy.tracking`), which Redis invalidates
        on every change."""
        return tuple(f"{self.prefix}{kind}:" for kind in ("apikey", "client", "rates", "balance", "order"))

    # Orders and refills: records under their client's hash tag, with the
    # working sets that change with an order's state under the same tag, so
    # one script changes a record, its money and its indexes together. To
    # find an order by our ID alone, owner indexes map IDs to clients in
    # buckets of OWNER_BUCKET IDs, each bucket its own small hash (and slot).
    @property
    def order_seq(self) -> str:
        return f"{self.prefix}seq:order"

    @property
    def refill_seq(self) -> str:
        return f"{self.prefix}seq:refill"

    def order(self, client: str, order_id: int) -> str:
        return f"{self.prefix}order:{{c:{client}}}:{order_id}"

    def all_orders(self, client: str, order_id: int) -> str:
        """The bucket (a set of IDs, OWNER_BUCKET IDs a bucket: Redis' compact
        integer set) that lists `order_id` among every order of the client.
        Orders opened before the buckets are in the client's `orders_of(client, "all")`."""
        return f"{self.prefix}orders:{{c:{client}}}:all:{order_id // OWNER_BUCKET}"

    def orders_of(self, client: str, group: str = "all") -> str:
        """A client's order IDs: 'all', or one of the working sets
        (`proxy.orders.states.WORKING_SETS` says which orders each holds)."""
        return f"{self.prefix}orders:{{c:{client}}}:{group}"

    def archived(self, client: str, order_id: int) -> str:
        """The bucket hash holding what Redis keeps of the client's archived
        orders (`records.ArchivedOrder`): order ID -> compact view."""
        return f"{self.prefix}archived:{{c:{client}}}:{order_id // OWNER_BUCKET}"

    @property
    def archive_dirs(self) -> str:
        """The absolute folders orders were archived to (a set)."""
        return f"{self.prefix}archive-dirs"

    def fence(self, client: str, order_id: int) -> str:
        """Set when a reservation was settled as not applied: it can no longer apply (fence.lua)."""
        return f"{self.prefix}fence:{{c:{client}}}:{order_id}"

    def lease(self, client: str, order_id: int) -> str:
        """Held (and renewed) by the task placing the order; expires if it dies."""
        return f"{self.prefix}lease:{{c:{client}}}:{order_id}"

    def refill(self, client: str, refill_id: int) -> str:
        return f"{self.prefix}refill:{{c:{client}}}:{refill_id}"

    def duplicate(self, client: str, token: str) -> str:
        """An add's fingerprint -> the order it made, for client retries."""
        return f"{self.prefix}dedupe:{{c:{client}}}:{token}"

    def order_owner(self, order_id: int) -> str:
        """The bucket hash holding `order_id` -> client."""
        return f"{self.prefix}owner:{{o:{order_id // OWNER_BUCKET}}}"

    def refill_owner(self, refill_id: int) -> str:
        return f"{self.prefix}refill-owner:{{r:{refill_id // OWNER_BUCKET}}}"

    def due(self, provider: str) -> str:
        """A provider's open orders ("client:order") by when their status was last read."""
        return f"{self.prefix}due:{{p:{provider}}}"

    def claims(self, provider: str, upstream_order: int) -> str:
        """The bucket hash holding (provider, upstream order) -> our order ID."""
        return f"{self.prefix}claims:{{p:{provider}:{upstream_order // OWNER_BUCKET}}}"

    def health(self, provider: str, scope: str) -> str:
        """A provider's consecutive failures and ejection, for orders or for reads."""
        return f"{self.prefix}health:{{p:{provider}}}:{scope}"

    def outcomes(self, provider: str) -> str:
        """A provider's decayed outcome counts per upstream service."""
        return f"{self.prefix}outcomes:{{p:{provider}}}"

    def stuck(self, provider: str) -> str:
        """Our orders at a provider counted as stuck (their final outcome does not count again)."""
        return f"{self.prefix}stuck:{{p:{provider}}}"

    def held_prices(self, provider: str) -> str:
        """Upstream services whose price change waits for an operator: the last approved rate and the new one."""
        return f"{self.prefix}held-prices:{{p:{provider}}}"

    def removed_services(self, provider: str) -> str:
        """Upstream services gone from a provider's list, or listed at a price we cannot use,
        with their last usable rate (to tell a return, and judge its price)."""
        return f"{self.prefix}removed:{{p:{provider}}}"

    @property
    def events(self) -> str:
        """The operators' event stream."""
        return f"{self.prefix}events"

    @property
    def limits(self) -> str:
        """The prefix of the per-client limits (kept by the `limits` library)."""
        return f"{self.prefix}limits"

    def provider_state(self, provider: str) -> str:
        """What the last check of a provider read: balance, currency, a block."""
        return f"{self.prefix}provider:{provider}"

    def budget(self, provider: str, minute: int) -> str:
        return f"{self.prefix}budget:{provider}:{minute}"

    @property
    def metrics(self) -> str:
        return f"{self.prefix}metrics"

    # Caches.
    def catalog(self, provider: str) -> str:
        return f"{self.prefix}catalog:{provider}"

    def price_changes(self, provider: str) -> str:
        return f"{self.prefix}price-changes:{provider}"

    # The operators' audit log and its chain's head: one hash tag, for the append script.
    @property
    def audit(self) -> str:
        """The operators' audit log (a stream; `proxy.ops.audit`)."""
        return f"{self.prefix}{{audit}}:log"

    @property
    def audit_head(self) -> str:
        """The audit chain's head: the last entry's number and hash, and their MAC."""
        return f"{self.prefix}{{audit}}:head"

    # Admin tokens (`proxy.ops.admins`): one hash tag, so the registry and its
    # index change together.
    @property
    def admins(self) -> str:
        """The registry: admin name -> its record (token hash, role, expiry)."""
        return f"{self.prefix}{{admins}}:registry"

    @property
    def admin_tokens(self) -> str:
        """Token hash -> admin name, for finding a token's admin in one read."""
        return f"{self.prefix}{{admins}}:tokens"

    @property
    def admins_used(self) -> str:
        """Admin name -> when its token was last used (written at most once a minute)."""
        return f"{self.prefix}{{admins}}:used"

    def calls(self, provider: str, minute: int) -> str:
        """Upstream calls to a provider in one minute (`proxy.providers.calls`): counts and time."""
        return f"{self.prefix}calls:{provider}:{minute}"

    def dashboard_session(self, session_hash: str) -> str:
        """A dashboard login (`proxy.edge.dashboard.sessions`), by the SHA-256 of its cookie; it expires."""
        return f"{self.prefix}dashboard:session:{session_hash}"

    def catalog_lock(self, provider: str) -> str:
        return f"{self.prefix}catalog-lock:{provider}"


# -- the client ----------------------------------------------------------------
# Replies as redis-py 8 types them (7.x has no names for them). Our
# connections decode and speak RESP2, so values are in fact `str`.
Value = bytes | str
StreamEntry = tuple[Value | None, dict[Value, Value] | None]
StreamRange = list[StreamEntry]
XClaimResponse = StreamRange | list[Value]
XPendingRange = list[dict[str, str | int]]
Members = set[Value]
XReadGroupResponse = list[list[Any]] | dict[Value, list[StreamRange]] | dict[Value, StreamRange]
Field = str | int | float


class Pipe(Protocol):
    """A pipeline: the commands we queue on one (their replies come from
    `execute`, in order) and the pipeline's own methods."""

    async def __aenter__(self) -> Pipe: ...
    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    def execute(self, raise_on_error: bool = True) -> Awaitable[list[Any]]: ...
    def exists(self, *names: str) -> object: ...
    def get(self, name: str) -> object: ...
    def set(self, name: str, value: Field, ex: int | None = None, nx: bool = False) -> object: ...
    def hget(self, name: str, key: str) -> object: ...
    def hgetall(self, name: str) -> object: ...
    def hmget(self, name: str, keys: Sequence[str]) -> object: ...
    def hset(
        self, name: str, key: str | None = None, value: Field | None = None, mapping: Mapping[str, Field] | None = None
    ) -> object: ...
    def hdel(self, name: str, *keys: str) -> object: ...
    def hincrby(self, name: str, key: str, amount: int = 1) -> object: ...
    def expire(self, name: str, time: int) -> object: ...
    def lpush(self, name: str, *values: Field) -> object: ...
    def ltrim(self, name: str, start: int, end: int) -> object: ...
    def zadd(self, name: str, mapping: Mapping[str, float]) -> object: ...
    def zrem(self, name: str, *values: str) -> object: ...
    def zcard(self, name: str) -> object: ...
    def zrange(self, name: str, start: int, end: int) -> object: ...
    def smembers(self, name: str) -> object: ...


class Store(Protocol):
    """What every component is handed: the commands the router uses, with the
    types redis-py 8 gives them (7.x types each `Awaitable[T] | T`).

    `connect` returns redis-py's own client (one server's, or a Redis
    Cluster's) as a `Store`: calls go straight to it, nothing wraps them.
    Where the two kinds differ, `single` and `is_cluster` tell them apart.
    A command not named here is one the router does not use yet: name it here.
    """

    def ping(self) -> Awaitable[bool]: ...
    def config_get(self, pattern: str = "*") -> Awaitable[Mapping[str, str]]: ...
    def aclose(self) -> Awaitable[None]: ...
    def pipeline(self, transaction: bool = True) -> Pipe: ...
    def register_script(self, script: str) -> AsyncScript: ...

    def get(self, name: str) -> Awaitable[Value | None]: ...
    def set(self, name: str, value: Field, ex: int | None = None, nx: bool = False) -> Awaitable[bool | None]: ...
    def exists(self, *names: str) -> Awaitable[int]: ...
    def delete(self, *names: str) -> Awaitable[int]: ...
    def incr(self, name: str, amount: int = 1) -> Awaitable[int]: ...
    def incrby(self, name: str, amount: int = 1) -> Awaitable[int]: ...

    def hget(self, name: str, key: str) -> Awaitable[Value | None]: ...
    def hmget(self, name: str, keys: Sequence[str]) -> Awaitable[list[Value | None]]: ...
    def hgetall(self, name: str) -> Awaitable[dict[Value, Value]]: ...
    def hexists(self, name: str, key: str) -> Awaitable[bool]: ...
    def hset(
        self, name: str, key: str | None = None, value: Field | None = None, mapping: Mapping[str, Field] | None = None
    ) -> Awaitable[int]: ...
    def hsetnx(self, name: str, key: str, value: Field) -> Awaitable[int]: ...
    def hdel(self, name: str, *keys: str) -> Awaitable[int]: ...
    def hincrby(self, name: str, key: str, amount: int = 1) -> Awaitable[int]: ...

    def sadd(self, name: str, *values: str) -> Awaitable[int]: ...
    def srem(self, name: str, *values: str) -> Awaitable[int]: ...
    def smembers(self, name: str) -> Awaitable[Members]: ...
    def lrange(self, name: str, start: int, end: int) -> Awaitable[list[Value]]: ...
    def zrange(self, name: str, start: int, end: int) -> Awaitable[list[Value]]: ...
    def zrevrange(self, name: str, start: int, end: int) -> Awaitable[list[Value]]: ...
    def zadd(self, name: str, mapping: Mapping[str, float]) -> Awaitable[int]: ...
    def zrem(self, name: str, *values: str) -> Awaitable[int]: ...

    def xadd(
        self, name: str, fields: dict[str, Field], maxlen: int | None = None, approximate: bool = True
    ) -> Awaitable[Value]: ...
    def xrange(self, name: str, min: str = "-", max: str = "+", count: int | None = None) -> Awaitable[StreamRange]: ...
    def xrevrange(
        self, name: str, max: str = "+", min: str = "-", count: int | None = None
    ) -> Awaitable[StreamRange]: ...
    def xgroup_create(self, name: str, groupname: str, id: str = "$", mkstream: bool = False) -> Awaitable[bool]: ...
    def xpending_range(self, name: str, groupname: str, min: str, max: str, count: int) -> Awaitable[XPendingRange]: ...
    def xack(self, name: str, groupname: str, *ids: str) -> Awaitable[int]: ...
    def xclaim(
        self, name: str, groupname: str, consumername: str, min_idle_time: int, message_ids: list[str]
    ) -> Awaitable[XClaimResponse]: ...
    def xreadgroup(
        self, groupname: str, consumername: str, streams: dict[str, str], count: int | None = None
    ) -> Awaitable[XReadGroupResponse]: ...


# -- replies -------------------------------------------------------------------
# Our connections decode replies (`decode_responses=True`): every value is
# text. redis-py types a reply `bytes | str` whatever the connection, so these
# say what ours are, once, where a reply is read.


def text(value: bytes | str) -> str:
    """One value of a reply."""
    return value if isinstance(value, str) else value.decode()


def maybe_text(value: bytes | str | None) -> str | None:
    """One value of a reply, or None for a missing key or field."""
    return None if value is None else text(value)


def texts(values: Iterable[bytes | str]) -> list[str]:
    """The members of a set, list or sorted set."""
    return [text(value) for value in values]


def ints(values: Iterable[object]) -> list[int]:
    """Integer members (order IDs) of a set, or of a range read without scores."""
    found = []
    for value in values:
        if not isinstance(value, bytes | str):
            raise TypeError(f"not a member of a set: {value!r}")
        found.append(int(value))
    return found


def text_map(mapping: Mapping[bytes | str, bytes | str] | None) -> dict[str, str]:
    """A hash (HGETALL), or the fields of a stream entry."""
    return {text(name): text(value) for name, value in (mapping or {}).items()}


def stream_entries(
    rows: Iterable[tuple[bytes | str | None, Mapping[bytes | str, bytes | str] | None]] | None,
) -> list[tuple[str, dict[str, str]]]:
    """The entries of an XRANGE or XREVRANGE reply: (ID, fields)."""
    return [(text(entry_id), text_map(fields)) for entry_id, fields in rows or () if entry_id is not None]


def claimed_entries(rows: XClaimResponse | None) -> list[tuple[str, dict[str, str] | None]]:
    """The entries of an XCLAIM reply: (ID, fields), the fields None for an
    entry trimmed from the stream meanwhile."""
    found: list[tuple[str, dict[str, str] | None]] = []
    for row in rows or ():
        if isinstance(row, bytes | str):
            raise TypeError("an XCLAIM reply of IDs alone (JUSTID): the entries were asked for")
        entry_id, fields = row
        if entry_id is not None:
            found.append((text(entry_id), None if fields is None else text_map(fields)))
    return found


def group_entries(reply: XReadGroupResponse | None) -> list[tuple[str, dict[str, str]]]:
    """The entries of an XREADGROUP reply, of every stream read: (ID, fields)."""
    if isinstance(reply, dict):
        raise TypeError("an XREADGROUP reply in RESP3: our connections speak RESP2")
    return [entry for _, entries in reply or () for entry in stream_entries(entries)]


CLUSTER_SCHEMES = ("redis-cluster://", "rediss-cluster://")


class _CancellableWrites(AbstractConnection):
    """A connection whose write timeout does not lose a cancellation.

    redis-py bounds a write by `socket_timeout` with `asyncio.wait_for`, and
    Python 3.11's `wait_for` swallows a cancellation that arrives as the write
    completes (CPython gh-86296, fixed in 3.12): the cancelled task goes on.
    With our socket timeout that lost 89 of 200 cancels of a task looping
    GET (tests/unit/test_store.py). Here the write runs under
    `asyncio.timeout` instead, which redis-py already uses for reads.
    """

    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        limit = self.socket_timeout
        if not limit:
            return await super().send_packed_command(command, check_health)
        self.socket_timeout = None  # redis-py's own send: no wait_for (a connection serves one command at a time)
        try:
            async with asyncio.timeout(limit):
                await super().send_packed_command(command, check_health)
        except TimeoutError:
            raise RedisTimeoutError("Timeout writing to socket") from None  # it disconnected already
        finally:
            self.socket_timeout = limit


class _TCPConnection(_CancellableWrites, Connection):
    pass


class _UnixConnection(_CancellableWrites, UnixDomainSocketConnection):
    pass


class _TLSConnection(_CancellableWrites, SSLConnection):
    pass


_CANCELLABLE: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _TCPConnection,
    UnixDomainSocketConnection: _UnixConnection,
    SSLConnection: _TLSConnection,
}
_CANCELLABLE_CLUSTER: dict[type[Connection], type[Connection]] = {
    Connection: _TCPConnection,
    SSLConnection: _TLSConnection,
}


def connect(url: str, max_connections: int = 64, timeout: float = 10.0) -> Store:
    """A pooled client that returns `str` values.

    The pool blocks (up to `timeout` seconds) when all its connections are
    busy, so a burst of requests queues for Redis instead of failing. No
    command waits longer than `timeout` for its reply, or for a connection to
    open: a socket timeout bounds each, which a swallowed cancel cannot undo. A URL starting
    `redis-cluster://` (or `rediss-cluster://`) names any node of a Redis
    Cluster: every script and transaction the router runs touches keys of one
    hash slot, so the same code runs on it.
    """
    if url.startswith(CLUSTER_SCHEMES):
        plain = url.replace("-cluster://", "://", 1)
        # The cluster client's pools do not block when full (they raise): room for bursts instead.
        cluster = RedisCluster.from_url(
            plain,
            decode_responses=True,
            max_connections=16 * max_connections,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        # The cluster client takes no connection class: its nodes' (those it starts from,
        # and those it finds) are set here, before any connection is made.
        nodes = cluster.nodes_manager
        nodes.connection_kwargs["connection_class"] = _CANCELLABLE_CLUSTER[nodes.connection_kwargs["connection_class"]]
        for node in nodes.startup_nodes.values():
            node.connection_class = _CANCELLABLE_CLUSTER[node.connection_class]
        return as_store(cluster)
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "timeout": timeout,
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    options.update(parse_url(url))  # the URL's own options win, as in redis-py's from_url
    options["connection_class"] = _CANCELLABLE[options.get("connection_class", Connection)]
    pool = aioredis.BlockingConnectionPool(**options)
    return as_store(aioredis.Redis.from_pool(pool))


def as_store(client: aioredis.Redis | RedisCluster) -> Store:
    """redis-py's client as a `Store`: the same object (redis-py 7 types its
    commands `Awaitable[T] | T`, which a `Store` narrows to `Awaitable[T]`)."""
    return cast(Store, client)


def single(redis: Store) -> aioredis.Redis | None:
    """One server's client, or None for a Redis Cluster's (the order book pipelines scripts
    only on one server; the rate limits share one server's pool)."""
    client: object = redis
    return client if isinstance(client, aioredis.Redis) else None


def is_cluster(redis: object) -> TypeGuard[RedisCluster]:
    return isinstance(redis, RedisCluster)


def redacted_url(url: str) -> str:
    """A Redis URL fit for a message: without its password."""
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


async def check_store(redis: Store, allow_volatile: bool = False, timeout: float = 5.0) -> list[str]:
    """Refuse a Redis that does not answer or may evict keys; warnings about the rest.

    Balances, orders and the ledger live in Redis: a policy that evicts keys
    loses money, and one that keeps nothing on disk loses it at a restart
    (a warning, unless `allow_volatile`: the demo). A managed Redis that
    forbids CONFIG is trusted, with a warning.
    """
    try:
        async with asyncio.timeout(timeout):
            await redis.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        raise StoreUnfit(f"does not answer ({type(exc).__name__}: {exc})") from None
    try:
        configs: list[Mapping[Any, Any]]
        if is_cluster(redis):
            # One config per primary ({node: {name: value}}), or one for all when they agree.
            replies: Mapping[Any, Any] = await redis.config_get("*", target_nodes=RedisCluster.PRIMARIES)
            configs = list(replies.values()) if all(isinstance(v, dict) for v in replies.values()) else [replies]
        else:
            configs = [await redis.config_get("*")]
    except ResponseError:
        return ["cannot read Redis' CONFIG: make sure it never evicts keys and keeps them on disk"]
    warnings = []
    for config in configs:
        policy = config.get("maxmemory-policy", "noeviction")
        if policy != "noeviction":
            raise StoreUnfit(f"maxmemory-policy is {policy!r}: balances and orders could be evicted; set 'noeviction'")
    if any(c.get("appendonly") != "yes" and not c.get("save") for c in configs) and not allow_volatile:
        warnings.append(
            "Redis keeps nothing on disk (appendonly no, no save points): a restart loses every balance and order; "
            "turn on 'appendonly yes' (or pass --allow-volatile)"
        )
    return warnings
