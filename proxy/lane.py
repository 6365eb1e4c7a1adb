"""One Redis connection that carries many commands at once (`Lane`).

Commands sent alone (not in a pipeline or a transaction) do not need a
connection each: Redis answers the commands of one connection in the order
it read them, so a connection can carry the next command before the last
reply came back, and match replies to callers by their order. That is what
`Lane` does: a caller writes its command and waits on a future that the
next reply in line resolves. Under load the replies of many callers arrive
in one read, so a command costs a fraction of one on a connection of its
own (one read, one wakeup, one reply parse for several; the add's scripts:
`benchmarks/redis_call.py`).

The lane is made by redis-py (`open`): its connection class connects and
says hello as the pool's would (AUTH, SELECT, the client's name, TLS), and
the lane takes the connected socket over. Replies are parsed by hiredis
with redis-py's error classes, so a caller gets the same replies and the
same exceptions as on redis-py's own path.

What a lane keeps:

- A reply is never given to the wrong caller: replies are matched by
  order, and anything out of step (a reply nobody waits for, a reply hiredis
  cannot parse) ends the lane, failing every command on it.
- A caller that gives up (a cancel) leaves its future behind; its reply is
  read and dropped when it comes, and the lane stays in step (a connection
  of its own would have to be dropped).
- A lane that stops answering fails: when the oldest command has waited
  `timeout` seconds with no reply at all since, every command waiting on the
  lane fails with redis-py's `TimeoutError` and the connection is closed.
- A lane that Redis closed, or that was reset, fails what waits on it with
  redis-py's `ConnectionError`, as a connection of its own would; the next
  command opens a new lane. Whether a failed command was applied is unknown,
  exactly as on a connection of its own (the order book fences that).

Commands that change the state of their connection (SELECT, CLIENT,
MULTI, WATCH, ...) or that block (BLPOP, XREAD with BLOCK, WAIT, ...) must
not share one: `Client` sends those on connections of their own.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisTimeoutError

# Commands that a lane never carries: they change their connection's state, hold it
# (a block, a subscription), or end it. Matched on the command's first word, upper case.
OWN_CONNECTION = frozenset(
    {
        "AUTH", "HELLO", "SELECT", "CLIENT", "RESET", "QUIT", "READONLY", "READWRITE",
        "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH",
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR",
        "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP",
        "XREAD", "XREADGROUP", "WAIT", "WAITAOF",
        "SHUTDOWN", "DEBUG", "SYNC", "PSYNC", "REPLICAOF", "SLAVEOF",
    }
)  # fmt: skip


class Lane(asyncio.Protocol):
    """A connected socket to Redis that carries commands in order, many at
    once: `send` writes one and returns the future its reply resolves."""

    def __init__(self, reader: hiredis.Reader, timeout: float | None) -> None:
        self._reader = reader
        self._timeout = timeout
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._failed: Exception | None = None
        self._heard = 0.0  # when the lane last made progress: a reply, or a command to an idle lane
        self._watch: asyncio.TimerHandle | None = None
        self._writer: asyncio.StreamWriter | None = None

    @classmethod
    async def open(cls, conn: AbstractConnection, timeout: float | None) -> Lane:
        """A lane on `conn`'s socket, once redis-py connected it and said hello."""
        await conn.connect()  # type: ignore[no-untyped-call]
        writer: asyncio.StreamWriter | None = getattr(conn, "_writer", None)
        reader: asyncio.StreamReader | None = getattr(conn, "_reader", None)
        parser = getattr(conn, "_parser", None)
        if writer is None or reader is None or parser is None:
            await conn.disconnect()
            raise RedisConnectionError("a lane needs a stream connection")
        kwargs: dict[str, Any] = {"protocolError": InvalidResponse, "replyError": parser.parse_error}
        if conn.encoder.decode_responses:
            kwargs["encoding"] = conn.encoder.encoding
            kwargs["errors"] = conn.encoder.encoding_errors
        lane = cls(hiredis.Reader(**kwargs), timeout)
        transport = writer.transport
        buffered = bytes(reader._buffer)  # type: ignore[attr-defined]  # nothing, after a hello
        # The socket is the lane's now: redis-py's connection forgets it (it would close it when collected).
        conn._writer = conn._reader = None
        transport.set_protocol(lane)
        lane._transport = transport  # type: ignore[assignment]
        lane._writer = writer  # kept: a StreamWriter closes its transport when collected
        if buffered:
            lane._fail(RedisConnectionError("Redis sent bytes no command asked for"))
            raise lane._failed  # type: ignore[misc]
        return lane

    @property
    def address(self) -> object:
        """The lane's own end of the socket (as `CLIENT LIST` shows it: `addr`)."""
        return self._transport.get_extra_info("sockname") if self._transport is not None else None

    @property
    def usable(self) -> bool:
        """Whether a command may go on this lane (it stands, in this loop)."""
        return self._failed is None and self._loop is asyncio.get_running_loop()

    def send(self, packed: bytes | list[bytes]) -> asyncio.Future[Any]:
        """Write one command (packed RESP); the future its reply resolves:
        the reply as hiredis parses it (an error reply is an exception
        instance, not raised), or the lane's failure."""
        if self._failed is not None:
            raise self._failure()
        transport = self._transport
        assert transport is not None
        future: asyncio.Future[Any] = self._loop.create_future()
        waiting = self._waiting
        if not waiting:
            self._heard = self._loop.time()
        waiting.append(future)
        if isinstance(packed, bytes):
            transport.write(packed)
        else:
            transport.writelines(packed)
        if self._watch is None and self._timeout:
            self._watch = self._loop.call_at(self._heard + self._timeout, self._check)
        return future

    def close(self) -> None:
        """End the lane: what still waits fails, the socket closes."""
        self._fail(RedisConnectionError("Connection closed by the client."))

    # -- asyncio.Protocol ----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        while True:
            undecoded: UnicodeError | None = None
            try:
                reply = reader.gets()
            except InvalidResponse as exc:
                self._fail(RedisConnectionError(f"Redis sent what is not RESP: {exc}"))
                return
            except UnicodeError as exc:  # a whole reply hiredis read but could not decode: its caller's
                undecoded = exc  # error, as on redis-py's path (hiredis is in step past it)
            else:
                if reply is False:
                    break
            if not waiting:
                self._fail(RedisConnectionError("Redis sent a reply no command asked for"))
                return
            future = waiting.popleft()
            if future.done():  # its caller gave up: the reply is dropped
                continue
            if undecoded is None:
                future.set_result(reply)
            else:
                future.set_exception(undecoded)
        self._heard = self._loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError("Connection closed by server."))

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    # -- failing -------------------------------------------------------------------

    def _check(self) -> None:
        """The oldest command's wait is up: fail the lane if nothing came since."""
        self._watch = None
        if not self._waiting or self._failed is not None or not self._timeout:
            return
        due = self._heard + self._timeout
        if self._loop.time() >= due:
            self._fail(RedisTimeoutError("Timeout reading from Redis"))
        else:
            self._watch = self._loop.call_at(due, self._check)

    def _failure(self) -> Exception:
        """The lane's failure, as an exception of its own for each caller (each traceback its own)."""
        failed = self._failed
        assert failed is not None
        return type(failed)(*failed.args)

    def _fail(self, error: Exception) -> None:
        if self._failed is None:
            self._failed = error
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        waiting = self._waiting
        while waiting:
            future = waiting.popleft()
            if not future.done():
                future.set_exception(self._failure())
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.abort()
