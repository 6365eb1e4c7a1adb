"""Redis: the connection and reading replies (key names: `proxy.keys`; the
embedded server: `proxy.embedded`)."""

from __future__ import annotations

import asyncio
import codecs
import logging
import re
from collections import deque
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, TypeGuard, cast

import hiredis
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
        writer: asyncio.StreamWriter | None = getattr(self, "_writer", None)
        if type(command) is bytes and not check_health and writer is not None and not writer.transport.is_closing():
            # The common case, without a timeout or a coroutine of redis-py's: the socket
            # takes the bytes at once (a write never waits; `drain` would only if the
            # transport's buffer were full). A connection lost after this is found by the read.
            writer.write(command)
            if not writer.transport.get_write_buffer_size():
                return
            command = b""  # written; wait below, as redis-py would, until the buffer drains
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


class Client(aioredis.Redis):
    """redis-py's client for one server, with a short path for a command sent alone.

    Around each command redis-py takes its pool's condition and a timeout,
    checks the connection for stray bytes, runs a retry object (of no
    retries, ours), observability hooks and its own packer: about 100 µs of
    CPU a command here, more than the exchange itself (an EVALSHA: 170 µs
    against 65, `benchmarks/redis_call.py`). Here a command goes out on a
    connection from a short idle list (`Pool.idle`; from the pool when the
    list is empty, back to it when the list is full), packed by hiredis, and
    its reply is read by redis-py's own `parse_response`: the same replies,
    callbacks and exceptions, and the same writes (`send_packed_command`,
    whose timeout keeps a cancellation, above).

    A connection goes back to the pool rather than on the list while anyone
    waits for one there (`Pool.waiting`), and one who would wait takes a
    connection back from the list: the list never starves the pool. A
    client whose connections retry or check health, or encode text other
    than as UTF-8, gets what it asked for: redis-py's path, redis-py's packer.
    A connection goes back on the list only with nothing outstanding: redis-py
    disconnects one whose write or read failed or was cancelled, and any
    other exception between the write and the reply disconnects it here. One
    that Redis closed while idle (a restart, CLIENT KILL), one reset, and
    one with bytes waiting that no command asked for are reconnected before
    they are written to, as the pool's own check would: the command is not
    lost to a connection that was already gone, and never reads a reply that
    is not its own.
    """

    IDLE = 16  # connections kept out of the pool between commands, at most (and a quarter of the pool)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pool = self.connection_pool
        if isinstance(pool, Pool):  # its idle list, which it takes back from when it would wait
            self._idle = pool.idle
            self._keep = max(1, min(self.IDLE, pool.max_connections // 4))  # pipelines and `limits` use the pool
        else:  # a pool that would not: keep none
            self._idle = deque()
            self._keep = 0
        # hiredis packs text as UTF-8: only for connections that encode it so (a URL may say `encoding=`).
        encoder = pool.get_encoder()  # type: ignore[no-untyped-call]
        self._utf8 = codecs.lookup(encoder.encoding).name == "utf-8" and encoder.encoding_errors == "strict"
        # The short path neither retries nor checks health: a client whose connections are
        # to (a URL's `retry_on_timeout` or `health_check_interval`, redis-py's default
        # retries of a client made without a pool) takes redis-py's path for every command.
        options = pool.connection_kwargs
        retry = options.get("retry")
        self._redis_pys = bool(
            options.get("health_check_interval")
            or options.get("retry_on_timeout")
            or options.get("retry_on_error")
            or (retry is not None and retry.get_retries())
        )

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._redis_pys or self.single_connection_client or _NEVER_DECODE in options:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        idle = self._idle
        conn = idle.pop() if idle else await self.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        answered = False
        try:
            if _unfit(conn):
                await conn.disconnect()  # and the write below connects it again, as the pool would
            packed = _packed(conn, args) if self._utf8 else conn.pack_command(*args)
            await conn.send_packed_command(packed, check_health=False)
            try:
                reply = await self.parse_response(cast(Connection, conn), args[0], **options)
            except ResponseError:  # Redis' own answer (a script's error, NOSCRIPT): the reply was read
                answered = True
                raise
            answered = True
            return reply
        finally:
            if not answered:
                await conn.disconnect(nowait=True)
            if len(idle) < self._keep and not getattr(self.connection_pool, "waiting", 0):
                idle.append(conn)
            else:
                await self.connection_pool.release(conn)


class Pool(aioredis.BlockingConnectionPool):
    """redis-py's blocking pool, with the list of connections `Client` keeps
    idle between commands (in use, as the pool counts them), and a count of
    the tasks that found it empty and wait for a connection (a `Client` keeps
    none idle while one does).

    A task that would wait because every connection is in use takes one back
    from the idle list instead: without a command alone to end and hand its
    connection over, a connection kept idle would otherwise sit there while a
    pipeline waits out the pool's timeout (a pool of one: every pipeline
    after the first command)."""

    waiting = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle: deque[AbstractConnection] = deque()

    def can_get_connection(self) -> bool:
        # What the pool waits on, under its condition: a connection kept idle counts as free.
        if super().can_get_connection():
            return True
        if not self.idle:
            return False
        conn = self.idle.popleft()  # the longest idle; the pool checks it as any other it hands out
        self._in_use_connections.discard(conn)
        self._available_connections.append(conn)
        return True

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        if self.can_get_connection():  # one is there for it (or may be made)
            return cast(AbstractConnection, await super().get_connection(*args, **kwargs))  # type: ignore[no-untyped-call]
        self.waiting += 1
        try:
            return cast(AbstractConnection, await super().get_connection(*args, **kwargs))  # type: ignore[no-untyped-call]
        except BaseException:
            # A freed connection wakes one waiter (Condition.notify). Python 3.11's Condition
            # loses that wake-up when the waiter is cancelled, or times out, before it runs:
            # the next waiter would wait out the timeout beside a free connection. Pass it on
            # (a wake-up too many costs a waiter a look at the pool).
            async with self._condition:
                self._condition.notify()
            raise
        finally:
            self.waiting -= 1


_NEVER_DECODE = "NEVER_DECODE"  # redis-py's option for a reply read as bytes: its own path
_PLAIN = (str, bytes, int)


def _packed(conn: AbstractConnection, args: tuple[Any, ...]) -> bytes | list[bytes]:
    """A command as RESP, by hiredis (text as UTF-8: the caller's to check);
    redis-py's packer for what hiredis would write differently (floats, a
    command name of two words) or refuse."""
    if " " not in str(args[0]):
        for arg in args:
            if type(arg) not in _PLAIN:
                break
        else:
            return cast(bytes, hiredis.pack_command(args))
    return conn.pack_command(*args)


def _unfit(conn: AbstractConnection) -> bool:
    """Whether an idle connection must not be written to as it is: its peer
    closed it (the end of the stream: a restart, CLIENT KILL, a server-side
    timeout) or reset it (an error on the stream), or bytes no command asked
    for wait on it, in the socket's buffer or the parser's, which the next
    command would read as its reply. redis-py's pool checks the same
    (`can_read_destructive`) before it hands a connection out; here it costs
    no read."""
    reader = getattr(conn, "_reader", None)
    if not isinstance(reader, asyncio.StreamReader):
        return False  # not connected: the write connects it
    if reader._buffer or reader.at_eof() or reader.exception() is not None:  # type: ignore[attr-defined]  # as redis-py's _socket_is_empty
        return True
    parsing = getattr(getattr(conn, "_parser", None), "_reader", None)  # hiredis' reader, with what it holds
    return isinstance(parsing, hiredis.Reader) and bool(parsing.has_data())


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
