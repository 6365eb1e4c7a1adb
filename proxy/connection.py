"""Redis connections: writes that keep a cancellation, and commands sent
alone sharing one connection (`Client`, over `proxy.lane`), past redis-py's
per-command machinery. `proxy.store.connect` builds its clients from these."""

from __future__ import annotations

import asyncio
import codecs
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
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy.lane import OWN_CONNECTION, Lane


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
    """redis-py's client for one server, whose commands sent alone share a `Lane`.

    Around each command redis-py takes a connection from its pool under the
    pool's condition, a timeout, a check for stray bytes, a retry object (of
    no retries, ours), observability hooks and its own packer, and one
    connection carries one command at a time: about 100 µs of CPU a command
    here, more than the exchange itself. Here a command sent alone goes out
    on the client's lane (`proxy.lane`), packed by hiredis, and many share
    it: their replies come back in one read. Replies pass through redis-py's
    response callbacks, and errors are redis-py's classes: the same replies
    and exceptions as on redis-py's path.

    Pipelines, transactions and the `limits` library take connections from
    the pool, as before; so do the commands a lane never carries (those that
    change or hold their connection, `lane.OWN_CONNECTION`), and every
    command of a client whose connections retry or check health, or encode
    text other than as UTF-8: redis-py's path for what it asked for. A lane
    that failed (Redis closed it, a reset, a timeout) fails what waited on
    it, and the next command opens another.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pool = self.connection_pool
        # hiredis packs text as UTF-8: only for connections that encode it so (a URL may say `encoding=`).
        encoder = pool.get_encoder()  # type: ignore[no-untyped-call]
        utf8 = codecs.lookup(encoder.encoding).name == "utf-8" and encoder.encoding_errors == "strict"
        # A lane neither retries nor checks health: a client whose connections are to (a
        # URL's `retry_on_timeout` or `health_check_interval`, redis-py's default retries
        # of a client made without a pool) takes redis-py's path for every command.
        options = pool.connection_kwargs
        retry = options.get("retry")
        # Nor does it speak RESP3 (a URL's `protocol=3`): a boolean false is hiredis' "no reply
        # yet", and a push is no command's reply; the lane would hand on the replies after them.
        resp3 = str(options.get("protocol") or 2) != "2"
        self._redis_pys = (
            not utf8
            or resp3
            or bool(
                options.get("health_check_interval")
                or options.get("retry_on_timeout")
                or options.get("retry_on_error")
                or (retry is not None and retry.get_retries())
            )
        )
        # redis-py's packer, for what hiredis would not pack (a connection never connected).
        self._packer = pool.connection_class(**options)
        self.lane_class = Lane  # what carries commands sent alone (a test may count them)
        self._lane: Lane | None = None
        self._opening: asyncio.Future[Lane] | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        name = args[0]
        alone = _ALONE.get(name)
        if alone is None:
            alone = _shares_lane(name)
            if len(_ALONE) < 512:  # the names our code sends: a few dozen
                _ALONE[name] = alone
        if not alone or self._redis_pys or self.single_connection_client or _NEVER_DECODE in options:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        lane = self._lane
        if lane is None or not lane.usable:
            lane = await self._open_lane()
        reply = await lane.send(_packed(self._packer, args))
        if isinstance(reply, ResponseError):  # Redis' own answer: raised, as redis-py raises it
            if _EMPTY_RESPONSE in options:
                return options[_EMPTY_RESPONSE]
            raise reply
        # redis-py's error classes make some error replies ConnectionErrors (LOADING, NOAUTH),
        # which its parser raises, at the top of a reply or first in an array: never a value.
        if isinstance(reply, RedisConnectionError):
            raise reply
        if type(reply) is list and reply and isinstance(reply[0], RedisConnectionError):
            raise reply[0]
        options.pop(_EMPTY_RESPONSE, None)
        options.pop("keys", None)  # redis-py's, for its client-side cache
        callback = self.response_callbacks.get(name)
        return reply if callback is None else callback(reply, **options)

    async def _open_lane(self) -> Lane:
        """The lane, opened once for the tasks that find none standing."""
        opening = self._opening
        # One that ended while nobody waited on it (its callers gave up) is not this caller's:
        # its lane may have failed since, or it failed when Redis was down.
        if opening is None or opening.done() or opening.get_loop() is not asyncio.get_running_loop():
            opening = self._opening = asyncio.ensure_future(self._new_lane())
        try:
            return await asyncio.shield(opening)
        finally:
            if opening.done() and self._opening is opening:
                self._opening = None

    async def _new_lane(self) -> Lane:
        old, self._lane = self._lane, None
        if old is not None and old.usable:
            old.close()
        pool = self.connection_pool
        conn = pool.connection_class(**pool.connection_kwargs)
        lane = await self.lane_class.open(conn, pool.connection_kwargs.get("socket_timeout"))
        self._lane = lane
        return lane

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        lane, self._lane = self._lane, None
        if lane is not None:
            lane.close()
        opening, self._opening = self._opening, None
        if opening is not None and not opening.done():  # a lane still opening: closed once open
            opening.add_done_callback(_close_opened)
        await super().aclose(close_connection_pool)


class Pool(aioredis.BlockingConnectionPool):
    """redis-py's blocking pool, which passes a freed connection's wake-up on
    when the waiter it was meant for gave up."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
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


_NEVER_DECODE = "NEVER_DECODE"  # redis-py's option for a reply read as bytes: its own path
_EMPTY_RESPONSE = "EMPTY_RESPONSE"  # redis-py's option: the value to answer for an error reply
_PLAIN = (str, bytes, int)
# Whether a command name may go on a lane, by the name as given ("GET", "get", "SCRIPT LOAD").
_ALONE: dict[Any, bool] = {}


def _close_opened(opening: asyncio.Future[Lane]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def _shares_lane(name: object) -> bool:
    """Whether a command named so may go on a lane: not one that keeps a connection of its
    own (`OWN_CONNECTION`, by its first word; and SCRIPT DEBUG, which puts its connection in
    debug mode). redis-py takes a name as bytes too (b"SELECT")."""
    text = name if type(name) is str else name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    words = text.upper().split()
    return bool(words) and words[0] not in OWN_CONNECTION and words[:2] != ["SCRIPT", "DEBUG"]


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
