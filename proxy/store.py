"""Redis: the client every component is handed (`Store`, `connect`) and reading
replies (its connections: `proxy.connection`; key names: `proxy.keys`; the
embedded server: `proxy.embedded`)."""

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
    Connection,
    parse_url,
)
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from proxy.connection import CANCELLABLE, CANCELLABLE_CLUSTER, Client, Pool
from proxy.errors import StoreUnfit

log = logging.getLogger(__name__)

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
        nodes.connection_kwargs["connection_class"] = CANCELLABLE_CLUSTER[nodes.connection_kwargs["connection_class"]]
        for node in nodes.startup_nodes.values():
            node.connection_class = CANCELLABLE_CLUSTER[node.connection_class]
        return as_store(cluster)
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "timeout": timeout,
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    options.update(parse_url(url))  # the URL's own options win, as in redis-py's from_url
    options["connection_class"] = CANCELLABLE[options.get("connection_class", Connection)]
    pool = Pool(**options)
    return as_store(Client.from_pool(pool))


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
