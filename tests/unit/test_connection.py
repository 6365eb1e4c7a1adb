"""The store's client sends the commands sent alone on one shared connection (`proxy.connection.Client`, `proxy.lane`).

What it must keep of redis-py's path: the same replies and errors, every
reply its own caller's (many at once, callers that give up among them), a
connection that Redis closed or that was reset replaced before it is
written to, bytes no command asked for never read as a reply, a connection
that stops answering failed at the socket timeout, commands that change or
hold their connection never on the shared one, the options a URL gives
(retries, an encoding) honoured, a script found again after SCRIPT FLUSH,
and the pool never starved by a waiter cancelled as a connection was freed
for it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterator

import hiredis
import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tcpproxy import RedisProxy

from proxy import scripts
from proxy.connection import Client, _shares_lane
from proxy.embedded import EmbeddedRedis
from proxy.keys import Keys
from proxy.store import Store, connect


@pytest.fixture(scope="module")
def own_redis() -> Iterator[str]:
    """A redis-server of this module's own, for what must not touch the shared one (SCRIPT FLUSH)."""
    with EmbeddedRedis() as url:
        yield url


def _with(url: str, query: str) -> str:
    return url + ("&" if "?" in url else "?") + query


def _client(store: Store) -> Client:
    assert isinstance(store, Client)
    return store


async def test_replies_and_errors_are_redis_pys(redis_url: str, keys: Keys) -> None:
    store = connect(redis_url)
    key = keys.client("replies")
    try:
        assert await store.set(key, "v") is True  # redis-py's callback: OK -> True
        assert await store.get(key) == "v"
        assert await store.hset(key + ":h", mapping={"a": 1, "b": "é"}) == 2
        assert await store.hgetall(key + ":h") == {"a": "1", "b": "é"}
        assert await store.exists(key, key + ":none") == 1
        await store.zadd(key + ":z", {"m": 0.1})  # a float: redis-py's packer, redis-py's text for it
        assert await store.zrange(key + ":z", 0, -1) == ["m"]
        with pytest.raises(ResponseError):
            await store.hget(key, "field")  # WRONGTYPE: Redis' own error, raised as redis-py raises it
        assert await store.get(key) == "v"  # and the connection is still in step
    finally:
        await store.delete(key, key + ":h", key + ":z")
        await store.aclose()


async def test_a_connection_redis_closed_while_idle_is_reconnected_first(redis_url: str, keys: Keys) -> None:
    store = connect(redis_url)
    key = keys.client("killed")
    try:
        await store.set(key, "before")
        lane = _client(store)._lane
        assert lane is not None
        host, port = lane.address  # type: ignore[misc]
        killer = connect(redis_url)
        assert await killer.execute_command("CLIENT KILL", "ADDR", f"{host}:{port}") == 1  # type: ignore[attr-defined]
        await killer.aclose()
        await asyncio.sleep(0.05)  # the end of the connection reaches us
        assert await store.get(key) == "before"  # no ConnectionError: not written to a closed connection
    finally:
        await store.delete(key)
        await store.aclose()


async def test_a_connection_reset_while_idle_is_reconnected_first(redis_url: str, keys: Keys) -> None:
    # A reset (a crashed host, a middlebox dropping the flow) reaches the reader as an
    # error, not as the end of the stream: the connection is as gone as one Redis closed.
    key = keys.client("reset")
    async with RedisProxy(redis_url) as proxy:
        store = connect(proxy.url)
        try:
            await store.set(key, "before")
            proxy.reset()
            await asyncio.sleep(0.05)  # the reset reaches us
            assert await store.get(key) == "before"  # no ConnectionError for a command never sent
        finally:
            await store.delete(key)
            await store.aclose()


@pytest.mark.parametrize("with_next_reply", [False, True], ids=["alone", "with-a-reply"])
async def test_bytes_no_command_asked_for_are_never_read_as_a_reply(
    redis_url: str, keys: Keys, with_next_reply: bool
) -> None:
    # redis-py's pool never hands out a connection with bytes waiting on it; an idle
    # connection of ours must not be written to either, wherever those bytes wait (the
    # socket's buffer, or the parser's when they came in the same read as a reply).
    key = keys.client("stray")
    async with RedisProxy(redis_url) as proxy:
        store = connect(proxy.url)
        try:
            await store.set(key, "mine")
            proxy.inject(b":42\r\n", with_next_reply)
            if with_next_reply:
                assert await store.set(key, "mine") is True  # the reply, and the stray bytes behind it
            await asyncio.sleep(0.05)
            assert await store.get(key) == "mine"  # not 42
        finally:
            await store.delete(key)
            await store.aclose()


async def test_a_cancelled_command_never_leaves_its_reply_for_the_next(redis_url: str, keys: Keys) -> None:
    store = connect(redis_url)
    key = keys.client("in-step")
    try:
        await store.set(key + ":a", "a")
        await store.set(key + ":b", "b")
        for point in range(60):
            task = asyncio.create_task(store.get(key + ":a"))
            for _ in range(point % 6):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            # Whatever the moment of the cancel, the next command reads its own reply.
            assert await store.get(key + ":b") == "b"
    finally:
        await store.delete(key + ":a", key + ":b")
        await store.aclose()


async def test_a_script_is_loaded_again_after_a_flush(own_redis: str, keys: Keys) -> None:
    store = connect(own_redis)  # SCRIPT FLUSH: never on the shared server
    key = keys.client("script")
    script = scripts.Script(store, "return redis.call('INCRBY', KEYS[1], ARGV[1])")
    try:
        assert await script(keys=[key], args=[2]) == 2
        await store.execute_command("SCRIPT FLUSH")  # type: ignore[attr-defined]
        assert await script(keys=[key], args=[3]) == 5  # NOSCRIPT: loaded, then run once
    finally:
        await store.delete(key)
        await store.aclose()


async def test_commands_sent_alone_share_one_connection_and_each_reply_is_its_callers(
    redis_url: str, keys: Keys
) -> None:
    store = connect(redis_url, max_connections=2)
    client = _client(store)
    names = [keys.client(f"shared:{i}") for i in range(50)]
    try:
        await store.mset({name: f"v{i}" for i, name in enumerate(names)})  # type: ignore[attr-defined]
        for round_ in range(20):
            tasks = [asyncio.create_task(store.get(names[i])) for i in range(len(names))]
            await asyncio.sleep(0)
            for i in range(round_ % 7, len(tasks), 7):
                tasks[i].cancel()  # some callers give up, at once or after their write
            got = await asyncio.gather(*tasks, return_exceptions=True)
            for i, value in enumerate(got):
                assert isinstance(value, asyncio.CancelledError) or value == f"v{i}"
        lane = client._lane
        assert lane is not None and lane.usable
        host, port = lane.address  # type: ignore[misc]
        clients = await store.client_list()  # type: ignore[attr-defined]  # a connection of its own
        mine = [c for c in clients if c["addr"] == f"{host}:{port}"]
        assert len(mine) == 1
        assert not client.connection_pool._in_use_connections  # type: ignore[attr-defined]
    finally:
        await store.delete(*names)
        await store.aclose()


async def test_a_connection_that_stops_answering_fails_what_waits_and_the_next_command_opens_another(
    redis_url: str, keys: Keys
) -> None:
    key = keys.client("silent")
    slow = [False]
    async with RedisProxy(redis_url, reply_delay=lambda: 1.0 if slow[0] else 0.0) as proxy:
        store = connect(_with(proxy.url, "socket_timeout=0.2"))
        try:
            await store.set(key, "v")
            slow[0] = True
            started = asyncio.get_running_loop().time()
            got = await asyncio.gather(*(store.get(key) for _ in range(5)), return_exceptions=True)
            assert all(isinstance(g, RedisTimeoutError) for g in got), got
            assert asyncio.get_running_loop().time() - started < 0.9  # at the timeout, not at the late reply
            slow[0] = False
            assert await store.get(key) == "v"  # a new connection; the late replies never reach it
        finally:
            await store.delete(key)
            await store.aclose()


async def test_commands_that_change_their_connection_never_go_on_the_shared_one(redis_url: str, keys: Keys) -> None:
    store = connect(redis_url)
    client = _client(store)
    key = keys.client("own")
    try:
        await store.set(key, "v")
        lane = client._lane
        assert lane is not None
        await store.execute_command("CLIENT SETNAME", "renamed")  # type: ignore[attr-defined]
        await store.execute_command("SELECT", 14)  # type: ignore[attr-defined]  # a pool connection's, not the lane's
        host, port = lane.address  # type: ignore[misc]
        shared = [c for c in await store.client_list() if c["addr"] == f"{host}:{port}"]  # type: ignore[attr-defined]
        assert shared[0]["name"] != "renamed"
        assert shared[0]["db"] == redis_url.rsplit("/", 1)[1]
        assert await store.get(key) == "v"  # still this database
        assert client._lane is lane
    finally:
        await store.delete(key)
        await store.aclose()


async def test_retries_a_url_asks_for_are_redis_pys(redis_url: str, keys: Keys) -> None:
    # `connect` asks for no retries, but a URL may (`retry_on_timeout`, as it may ask for
    # health checks): a command then takes redis-py's path, which honours them, rather
    # than a short one that quietly does not.
    key = keys.client("retried")
    slow = [False]

    def delay() -> float:
        late, slow[0] = slow[0], False
        return 0.5 if late else 0.0

    async with RedisProxy(redis_url, reply_delay=delay) as proxy:
        store = connect(_with(proxy.url, "retry_on_timeout=true&socket_timeout=0.2"))
        try:
            await store.set(key, "v")
            slow[0] = True  # the next reply comes after the socket timeout; the retry's in time
            assert await store.get(key) == "v"
        finally:
            await store.delete(key)
            await store.aclose()


async def test_text_is_encoded_as_the_connection_encodes_it(redis_url: str, keys: Keys) -> None:
    # hiredis packs text as UTF-8; a URL may name another encoding (`?encoding=latin-1`),
    # which redis-py writes with and decodes replies with: the value must round-trip.
    key = keys.client("latin")
    store = connect(_with(redis_url, "encoding=latin-1"))
    raw = aioredis.Redis.from_url(redis_url)
    try:
        await store.set(key, "é")
        assert await raw.get(key) == b"\xe9"  # what redis-py's own path writes
        assert await store.get(key) == "é"
    finally:
        await store.delete(key)
        await store.aclose()
        await raw.aclose()


async def test_a_connection_freed_for_a_waiter_cancelled_meanwhile_goes_to_the_next(redis_url: str) -> None:
    # The pool wakes one waiter per connection freed (asyncio.Condition.notify). On Python
    # 3.11 a waiter cancelled after its wake-up and before it ran took the wake-up with it:
    # the next waiter waited out the pool's timeout beside a free connection, then raised
    # ConnectionError for a command never sent (a cancelled add, and another's write lost).
    store = connect(redis_url, max_connections=1, timeout=1)
    pool = _client(store).connection_pool
    try:
        held = await pool.get_connection()
        first = asyncio.create_task(pool.get_connection())
        second = asyncio.create_task(pool.get_connection())
        await asyncio.sleep(0.01)  # both wait
        await pool.release(held)  # wakes the first...
        first.cancel()  # ...which is cancelled before it runs
        await asyncio.gather(first, return_exceptions=True)
        async with asyncio.timeout(0.5):
            conn = await second  # the free connection, not "No connection available" a second later
        await pool.release(conn)
    finally:
        await store.aclose()


@pytest.mark.parametrize("size", [1, 4])
async def test_mixed_traffic_with_cancels_and_resets_keeps_every_reply_its_own(
    own_redis: str, keys: Keys, size: int
) -> None:
    # Commands alone, pipelines and scripts share a small pool while tasks are cancelled
    # at any point, connections are reset and scripts flushed: every answer is the asker's,
    # nothing waits for a connection kept idle, and the pool counts what it lent.
    rnd = random.Random(size)
    names = [keys.client(f"mixed:{i}") for i in range(20)]
    mismatched: list[object] = []
    starved: list[str] = []
    direct = connect(own_redis)  # SCRIPT FLUSH, on a server of this module's own
    async with RedisProxy(own_redis, reply_delay=lambda: rnd.random() * 0.002) as proxy:
        store = connect(proxy.url, max_connections=size, timeout=2)
        pool = _client(store).connection_pool
        script = scripts.Script(store, "return {KEYS[1], redis.call('GET', KEYS[1])}")
        await store.mset({name: f"v{i}" for i, name in enumerate(names)})  # type: ignore[attr-defined]

        async def one() -> None:
            i = rnd.randrange(len(names))
            name, other = names[i], names[(i + 1) % len(names)]
            kind = rnd.randrange(3)
            try:
                if kind == 0:
                    got, want = await store.get(name), f"v{i}"
                elif kind == 1:
                    async with store.pipeline(transaction=rnd.random() < 0.5) as pipe:
                        pipe.get(name)
                        pipe.get(other)
                        got, want = await pipe.execute(), [f"v{i}", f"v{(i + 1) % len(names)}"]
                else:
                    got, want = await script(keys=[name]), [name, f"v{i}"]
            except RedisConnectionError as exc:  # a reset connection's command: its outcome unknown, said so
                if "No connection available" in str(exc):
                    starved.append(str(exc))
                return
            if got != want:
                mismatched.append((got, want))

        try:
            for _ in range(60):
                tasks = [asyncio.create_task(one()) for _ in range(rnd.randrange(1, 10))]
                await asyncio.sleep(rnd.random() * 0.003)
                for task in tasks:
                    if rnd.random() < 0.3:
                        task.cancel()
                if rnd.random() < 0.05:
                    proxy.reset()
                if rnd.random() < 0.05:
                    await direct.execute_command("SCRIPT FLUSH")  # type: ignore[attr-defined]
                async with asyncio.timeout(5):
                    await asyncio.gather(*tasks, return_exceptions=True)
            assert not mismatched
            assert not starved
            assert not pool._in_use_connections  # everything lent came back
        finally:
            await direct.delete(*names)
            await direct.aclose()
            await store.aclose()


class _FakeRedis:
    """A server that says OK to the handshake (CLIENT SETINFO, SELECT) and answers
    every other command with `reply`: what a real Redis sends only at odd moments."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader()
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                writer.write(b"+OK\r\n" if command[0].upper() in (b"CLIENT", b"SELECT") else self.reply)
        writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"-LOADING Redis is loading the dataset in memory\r\n", BusyLoadingError),  # just restarted
        (b"-NOAUTH Authentication required.\r\n", AuthenticationError),
    ],
    ids=["loading", "noauth"],
)
async def test_error_replies_redis_py_raises_as_connection_errors_are_raised(
    reply: bytes, error: type[Exception]
) -> None:
    # redis-py's error classes make some error replies ConnectionErrors, not ResponseErrors
    # (LOADING after a restart, NOAUTH): redis-py raises them; they are never a value.
    async with _FakeRedis(reply) as url:
        raw = aioredis.Redis.from_url(url, decode_responses=True)
        store = connect(url)
        try:
            with pytest.raises(error):
                await raw.get("key")
            with pytest.raises(error):
                await store.get("key")
        finally:
            await raw.aclose()
            await store.aclose()


@pytest.mark.parametrize("opened", [True, False], ids=["opened", "failed"])
async def test_a_lane_opened_while_nobody_waited_is_not_the_next_callers_answer(
    redis_url: str, keys: Keys, opened: bool
) -> None:
    # The one who asked for the lane gave up while it opened; the opening went on. Once
    # that lane failed (or the opening did, Redis down), the next command must get a new
    # lane, not the old opening's answer: a ConnectionError for a command never sent.
    key = keys.client("orphan")
    async with RedisProxy(redis_url) as proxy:
        store = connect(proxy.url)
        client = _client(store)
        try:
            if not opened:
                await proxy.stop()
            task = asyncio.create_task(store.get(key))
            await asyncio.sleep(0)  # it waits on the opening
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(0.1)  # the opening ends, nobody waiting on it
            if opened:
                lane = client._lane
                assert lane is not None
                lane.close()  # as Redis closing it would
            else:
                await proxy.start()
            assert await store.get(key) is None
        finally:
            await store.aclose()


async def test_replies_in_resp3_are_each_their_callers(own_redis: str) -> None:
    # A URL may ask for RESP3 (`protocol=3`), where a reply may be the boolean false:
    # hiredis' own "not yet" answer unless told otherwise. The reply after it went to
    # the caller of the false, and so on down the line.
    store = connect(_with(own_redis, "protocol=3"))
    try:
        async with asyncio.timeout(2):
            got = await asyncio.gather(store.eval("redis.setresp(3) return false", 0), store.echo("a"), store.echo("b"))  # type: ignore[attr-defined]
        assert got == [False, "a", "b"]
    finally:
        await store.aclose()


async def test_a_reply_that_does_not_decode_fails_its_own_caller_alone(
    redis_url: str, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    # A value that is not UTF-8 (written by another client) raises UnicodeDecodeError
    # for its caller, as on redis-py's path; the commands beside it are answered, and
    # the connection stays (no "outcome unknown" for those beside it).
    key = keys.client("binary")
    raw = aioredis.Redis.from_url(redis_url)
    store = connect(redis_url)
    try:
        await raw.set(key, b"\xff\xfe")
        await store.set(key + ":text", "t")
        lane = _client(store)._lane
        got = await asyncio.gather(
            store.get(key + ":text"), store.get(key), store.get(key + ":text"), return_exceptions=True
        )
        assert got[0] == "t" and got[2] == "t", got
        assert isinstance(got[1], UnicodeDecodeError), got
        assert _client(store)._lane is lane and lane is not None and lane.usable
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        await raw.delete(key, key + ":text")
        await raw.aclose()
        await store.aclose()


async def test_a_command_named_in_bytes_is_routed_by_its_name(redis_url: str, keys: Keys) -> None:
    # redis-py takes a command's name as bytes too: b"SELECT" changes its connection as
    # "SELECT" does, and must never go on the shared one.
    store = connect(redis_url)
    key = keys.client("bytes-name")
    try:
        await store.set(key, "v")
        await store.execute_command(b"SELECT", 14)  # type: ignore[attr-defined]
        assert await store.get(key) == "v"  # still this database
    finally:
        await store.delete(key)
        await store.aclose()


async def test_aclose_closes_a_lane_that_was_opening() -> None:
    # aclose while a lane opens: the lane, once open, is closed, not left behind the
    # closed client (its socket open until collected: "unclosed transport").
    with EmbeddedRedis() as url:
        store = connect(url)
        client = _client(store)
        task = asyncio.create_task(store.get("key"))
        await asyncio.sleep(0)  # the lane opens
        await store.aclose()
        await asyncio.gather(task, return_exceptions=True)
        lane = client._lane
        assert lane is None or not lane.usable


@pytest.mark.parametrize(
    ("name", "shared"),
    [
        ("GET", True),
        ("evalsha", True),
        ("SCRIPT LOAD", True),
        (b"HGETALL", True),
        ("SELECT", False),
        (b"select", False),
        ("CLIENT KILL", False),
        ("SCRIPT DEBUG", False),  # puts its connection in debug mode
        ("script debug", False),
        ("XREADGROUP", False),  # may block
        ("", False),
    ],
)
def test_only_commands_that_leave_their_connection_as_it_was_share_one(name: object, shared: bool) -> None:
    assert _shares_lane(name) is shared


async def test_a_failed_lane_gives_each_caller_an_exception_of_its_own(redis_url: str) -> None:
    store = connect(redis_url)
    client = _client(store)
    try:
        await store.ping()
        lane = client._lane
        assert lane is not None
        lane.close()
        errors = []
        for _ in range(2):
            with pytest.raises(RedisConnectionError) as caught:
                lane.send(b"*1\r\n$4\r\nPING\r\n")
            errors.append(caught.value)
        assert errors[0] is not errors[1]
        assert await store.ping() is True  # and the client opens another
    finally:
        await store.aclose()
