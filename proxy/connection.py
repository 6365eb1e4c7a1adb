"""Redis connections: writes that keep a cancellation, and a command sent
alone on a short path of our own (`Client`, `Pool`), past redis-py's
per-command machinery. `proxy.store.connect` builds its clients from these."""

from __future__ import annotations

import asyncio
import codecs
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


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


CANCELLABLE: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _TCPConnection,
    UnixDomainSocketConnection: _UnixConnection,
    SSLConnection: _TLSConnection,
}
CANCELLABLE_CLUSTER: dict[type[Connection], type[Connection]] = {
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
