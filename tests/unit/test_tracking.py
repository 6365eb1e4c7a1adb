"""The client-side cache (proxy/tracking.py): what it serves from memory, and
that Redis' invalidations keep it exact, against a real Redis.

Every test tracks only its own key prefix; the ones that flush, pause or need a
password run on a private redis-server of their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import hiredis
import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from tcpproxy import RedisProxy

from proxy.embedded import EmbeddedRedis, redis_server_binary
from proxy.store import connect
from proxy.tracking import TrackedCache

FAST = dict(backoff=(0.01, 0.05), connect_timeout=2.0)


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


class Loader:
    """A load function for one key that counts its calls (each one is a Redis read)."""

    def __init__(self, redis: aioredis.Redis, key: str) -> None:
        self.redis, self.key, self.calls = redis, key, 0

    async def __call__(self) -> str | None:
        self.calls += 1
        return await self.redis.get(self.key)  # type: ignore[no-any-return]


@pytest.fixture
def tracked(key_prefix: str) -> str:
    return f"{key_prefix}apikey:"


@pytest.fixture
async def cache(redis_url: str, tracked: str) -> AsyncIterator[TrackedCache]:
    async with TrackedCache(redis_url, [tracked], **FAST) as cache:
        assert cache.healthy
        yield cache


@pytest.fixture
async def private_redis() -> AsyncIterator[tuple[str, aioredis.Redis]]:
    """A redis-server of this test's own, for what would disturb a shared one (FLUSHDB, CLIENT PAUSE)."""
    with EmbeddedRedis() as url:
        client = connect(url)
        yield url, client
        await client.aclose()


# -- the Redis behaviour the guarantee rests on ----------------------------------


def _socket(url: str) -> socket.socket:
    params = parse_url(url)
    if "path" in params:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(params["path"])
        return sock
    return socket.create_connection((params.get("host", "localhost"), params.get("port", 6379)))


def test_redis_writes_the_invalidation_before_the_reply_to_the_write(redis_url: str, tracked: str) -> None:
    """With no event loop at all: when a write's reply is in the writer's hands,
    the invalidation is already readable on the tracking connection."""
    a, reader = _socket(redis_url), hiredis.Reader()

    def command(sock: socket.socket, rd: hiredis.Reader, *args: object) -> object:
        sock.sendall(hiredis.pack_command(args))
        while (reply := rd.gets()) is False:
            rd.feed(sock.recv(65536))
        return reply

    b = _socket(redis_url)
    writer = redis.Redis.from_url(redis_url)
    try:
        a_id = command(a, reader, "CLIENT", "ID")
        command(a, reader, "SUBSCRIBE", "__redis__:invalidate")
        assert (
            command(b, hiredis.Reader(), "CLIENT", "TRACKING", "ON", "REDIRECT", a_id, "BCAST", "PREFIX", tracked)
            == b"OK"
        )
        late = 0
        for i in range(300):
            if i % 3 == 0:
                writer.set(f"{tracked}k", i)
            elif i % 3 == 1:
                writer.delete(f"{tracked}k")
            else:
                writer.eval("return redis.call('set', KEYS[1], ARGV[1])", 1, f"{tracked}k", i)
            readable, _, _ = select.select([a], [], [], 0)
            late += not readable
            while True:  # read this write's invalidation whole before the next write
                if (message := reader.gets()) is not False:
                    assert message == [b"message", b"__redis__:invalidate", [f"{tracked}k".encode()]]
                    break
                reader.feed(a.recv(65536))
        assert late == 0
    finally:
        writer.delete(f"{tracked}k")
        writer.close()
        a.close()
        b.close()


# -- what is served from memory ---------------------------------------------------


async def test_a_cached_value_is_served_without_reading_redis(cache, redis_client, tracked) -> None:
    await redis_client.set(f"{tracked}alice", "alice")
    load = Loader(redis_client, f"{tracked}alice")
    assert [await cache.get(load.key, load) for _ in range(5)] == ["alice"] * 5
    assert load.calls == 1
    assert cache.stats.hits == 4


async def test_an_absent_key_is_cached_too(cache, redis_client, tracked) -> None:
    """The common attack is an unknown key: it must not cost a Redis read each time."""
    load = Loader(redis_client, f"{tracked}nobody")
    assert [await cache.get(load.key, load) for _ in range(5)] == [None] * 5
    assert load.calls == 1


async def test_keys_outside_the_prefixes_are_never_kept(cache, redis_client, key_prefix) -> None:
    await redis_client.set(f"{key_prefix}balance:x", "10")
    load = Loader(redis_client, f"{key_prefix}balance:x")
    for _ in range(3):
        assert await cache.get(load.key, load) == "10"
    assert load.calls == 3
    assert len(cache) == 0


async def test_get_many_reads_only_what_is_missing(cache, redis_client, tracked) -> None:
    keys = [f"{tracked}{n}" for n in range(4)]
    await redis_client.set(keys[0], "zero")
    await redis_client.set(keys[2], "two")
    asked: list[list[str]] = []

    async def mget(missing: list[str]) -> list[str | None]:
        asked.append(missing)
        return await redis_client.mget(missing)  # type: ignore[no-any-return]

    assert await cache.get_many(keys + keys[:1], mget) == ["zero", None, "two", None, "zero"]
    assert await cache.get_many(keys, mget) == ["zero", None, "two", None]
    assert asked == [keys]  # once, each key once
    await redis_client.set(keys[1], "one")
    await asyncio.sleep(0.01)
    assert await cache.get_many(keys, mget) == ["zero", "one", "two", None]
    assert asked[1:] == [[keys[1]]]


# -- what invalidates ---------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r, k: r.set(k, "bob"), id="set"),
        pytest.param(lambda r, k: r.delete(k), id="delete"),
        pytest.param(lambda r, k: r.expire(k, -1), id="expire-now"),
        pytest.param(lambda r, k: r.eval("return redis.call('append', KEYS[1], '!')", 1, k), id="script"),
        pytest.param(lambda r, k: r.rename(k, k + ":renamed"), id="rename"),
    ],
)
async def test_a_change_by_another_client_invalidates(cache, redis_url, redis_client, tracked, change) -> None:
    key = f"{tracked}alice"
    await redis_client.set(key, "alice")
    load = Loader(redis_client, key)
    assert await cache.get(key, load) == "alice"
    other = connect(redis_url)
    try:
        await change(other, key)
    finally:
        await other.aclose()
    await asyncio.sleep(0.01)
    assert await cache.get(key, load) == await redis_client.get(key) != "alice"
    assert load.calls == 2


async def test_an_absent_key_created_by_another_client_is_seen(cache, redis_url, redis_client, tracked) -> None:
    key = f"{tracked}late"
    load = Loader(redis_client, key)
    assert await cache.get(key, load) is None
    other = connect(redis_url)
    await other.set(key, "now")
    await other.aclose()
    await asyncio.sleep(0.01)
    assert await cache.get(key, load) == "now"


async def test_a_key_that_expires_is_dropped_when_redis_deletes_it(cache, redis_client, tracked) -> None:
    """Redis invalidates when its expire cycle (or an access) deletes the key:
    soon after the TTL, not at it (the module docstring says so)."""
    key = f"{tracked}short"
    await redis_client.set(key, "v", px=30)
    load = Loader(redis_client, key)
    assert await cache.get(key, load) == "v"
    await until(lambda: len(cache) == 0, timeout=5)
    assert await cache.get(key, load) is None


async def test_our_own_write_is_seen_by_our_next_read(cache, redis_client, tracked) -> None:
    """No sleep: the invalidation arrives before the write's reply, so by the time
    the writing task resumes, it has been applied."""
    key = f"{tracked}mine"
    load = Loader(redis_client, key)
    for n in range(50):
        await redis_client.set(key, str(n))
        assert await cache.get(key, load) == str(n)
        assert await cache.get(key, load) == str(n)
    assert load.calls == 50


@pytest.mark.parametrize("flush", ["flushdb", "flushall"])
async def test_a_flush_clears_everything(private_redis, flush) -> None:
    url, client = private_redis
    async with TrackedCache(url, ["k:"], **FAST) as cache:
        await client.mset({"k:1": "1", "k:2": "2"})
        loads = [Loader(client, "k:1"), Loader(client, "k:2"), Loader(client, "k:3")]
        for load in loads:
            await cache.get(load.key, load)
        assert len(cache) == 3
        await getattr(client, flush)()
        await asyncio.sleep(0.01)
        assert len(cache) == 0
        assert [await cache.get(load.key, load) for load in loads] == [None, None, None]
        assert cache.stats.flushes == 1


async def test_two_instances_both_see_a_delete(redis_url, redis_client, tracked) -> None:
    """Two router processes: a key disabled through either is refused by both."""
    key = f"{tracked}alice"
    await redis_client.set(key, "alice")
    async with TrackedCache(redis_url, [tracked], **FAST) as one, TrackedCache(redis_url, [tracked], **FAST) as two:
        loads = [Loader(redis_client, key), Loader(redis_client, key)]
        for cache, load in zip((one, two), loads, strict=True):
            assert await cache.get(key, load) == await cache.get(key, load) == "alice"
        await redis_client.delete(key)
        await asyncio.sleep(0.01)
        assert [await cache.get(key, load) for cache, load in zip((one, two), loads, strict=True)] == [None, None]
        assert [load.calls for load in loads] == [2, 2]


# -- loads that race a change --------------------------------------------------------


async def test_a_write_racing_a_load_is_not_kept(cache, redis_url, redis_client, tracked) -> None:
    key = f"{tracked}alice"
    await redis_client.set(key, "old")
    other = connect(redis_url)
    calls = 0

    async def load() -> str | None:
        nonlocal calls
        calls += 1
        value = await redis_client.get(key)
        if calls == 1:  # another client changes the key after our read, before we keep it
            await other.set(key, "new")
            await asyncio.sleep(0.01)
        return value  # type: ignore[no-any-return]

    try:
        assert await cache.get(key, load) == "old"  # as fresh as a plain read was
        assert cache.stats.discarded == 1
        assert await cache.get(key, load) == "new"
        assert await cache.get(key, load) == "new"
        assert calls == 2
    finally:
        await other.aclose()


async def test_a_create_racing_a_load_of_an_absent_key_is_not_kept(cache, redis_url, redis_client, tracked) -> None:
    key = f"{tracked}new-client"
    other = connect(redis_url)

    async def mget(missing: list[str]) -> list[str | None]:
        values = await redis_client.mget(missing)
        await other.set(key, "created")
        await asyncio.sleep(0.01)
        return values  # type: ignore[no-any-return]

    try:
        assert await cache.get_many([key], mget) == [None]
        assert await cache.get(key, Loader(redis_client, key)) == "created"
    finally:
        await other.aclose()


async def test_of_two_overlapping_loads_only_the_one_after_the_change_is_kept(cache, redis_client, tracked) -> None:
    key = f"{tracked}alice"
    await redis_client.set(key, "old")
    release_first = asyncio.Event()

    async def slow_load() -> str | None:
        value = await redis_client.get(key)
        await release_first.wait()
        return value  # type: ignore[no-any-return]

    first = asyncio.create_task(cache.get(key, slow_load))
    await asyncio.sleep(0.01)
    await redis_client.set(key, "new")  # invalidates while the first load is in flight
    second = await cache.get(key, Loader(redis_client, key))
    release_first.set()
    assert (await first, second) == ("old", "new")
    load = Loader(redis_client, key)
    assert await cache.get(key, load) == "new" and load.calls == 0


async def test_a_load_across_a_flush_or_a_loss_is_not_kept(private_redis) -> None:
    url, client = private_redis
    async with TrackedCache(url, ["k:"], **FAST) as cache:
        await client.set("k:1", "v")
        for interrupt in ("flushall", "kill"):
            gate = asyncio.Event()

            async def load(gate: asyncio.Event = gate) -> str | None:
                value = await client.get("k:1")
                await gate.wait()
                return value  # type: ignore[no-any-return]

            task = asyncio.create_task(cache.get("k:1", load))
            await asyncio.sleep(0.01)
            if interrupt == "flushall":
                await client.flushall()
                await client.set("k:1", "v")
            else:
                await client.client_kill_filter(_id=cache.connection_ids[0])
            await asyncio.sleep(0.01)
            gate.set()
            assert await task == "v"
            assert len(cache) == 0
            await until(lambda: cache.healthy)


# -- losing the tracking connections -------------------------------------------------


@pytest.mark.parametrize("which", [0, 1], ids=["invalidation-connection", "tracking-connection"])
async def test_a_killed_connection_flushes_at_once_then_tracking_comes_back(
    cache, redis_client, tracked, which, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.tracking")
    key = f"{tracked}alice"
    await redis_client.set(key, "alice")
    load = Loader(redis_client, key)
    await cache.get(key, load)
    ids = cache.connection_ids
    await redis_client.client_kill_filter(_id=ids[which])
    await until(lambda: cache.stats.losses == 1)
    assert len(cache) == 0
    await until(lambda: cache.healthy)
    assert cache.connection_ids != ids
    assert [await cache.get(key, load) for _ in range(3)] == ["alice"] * 3
    assert load.calls == 2
    # Tracking really is back: a change is seen again.
    await redis_client.set(key, "bob")
    await asyncio.sleep(0.01)
    assert await cache.get(key, load) == "bob"
    lost = [r for r in caplog.records if "lost" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelno == logging.WARNING
    assert not any(key in r.getMessage() or "alice" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("which", [0, 1], ids=["invalidation-connection", "tracking-connection"])
async def test_a_change_after_a_kill_is_never_served_by_the_next_turn_of_the_loop(
    cache, redis_url, redis_client, tracked, which
) -> None:
    """A tracking connection is lost from the moment its end is read: a request
    handled in the same turn of the event loop or any later one reads through
    (asyncio tells a protocol `connection_lost` only a turn after it reads the
    end). Here the kill and the change come from another client while this
    loop reads nothing, then the loop reads the end, then the next request."""
    key = f"{tracked}alice"
    await redis_client.set(key, "alice")
    other = redis.Redis.from_url(redis_url, decode_responses=True)
    load = Loader(redis_client, key)
    assert [await cache.get(key, load) for _ in range(2)] == ["alice", "alice"] and load.calls == 1
    ids = cache.connection_ids
    assert ids is not None
    other.client_kill_filter(_id=ids[which])  # blocking calls: this loop reads nothing meanwhile
    other.delete(key)  # no invalidation comes: the session is gone
    other.close()
    time.sleep(0.05)  # the end of the connection is in this process's socket by now
    await asyncio.sleep(0)  # a turn of the loop: it reads the end of the connection
    await asyncio.sleep(0)  # the next request
    assert await cache.get(key, load) is None


class ResettingProxy(threading.Thread):
    """A TCP proxy to Redis in a thread of its own (blocking sockets), which can
    end every connection with a reset (RST) while the test's event loop reads
    nothing: a middlebox dropping the connections, or a Redis host gone."""

    def __init__(self, redis_url: str) -> None:
        super().__init__(daemon=True)
        params = parse_url(redis_url)
        self.target = (params.get("host", "localhost"), params.get("port", 6379))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/{params.get('db', 0)}"
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        self.stopped = False

    def run(self) -> None:
        while not self.stopped:
            try:
                readable, _, _ = select.select(
                    [self.listener, *(s for pair in self.live() for s in pair)], [], [], 0.01
                )
            except (OSError, ValueError):  # a socket reset_all closed meanwhile
                continue
            for sock in readable:
                if sock is self.listener:
                    client, _ = self.listener.accept()
                    with self.lock:
                        self.pairs.append((client, socket.create_connection(self.target)))
                    continue
                for a, b in self.live():
                    if sock in (a, b):
                        try:
                            data = sock.recv(65536)
                            (b if sock is a else a).sendall(data)
                        except OSError:
                            pass

    def live(self) -> list[tuple[socket.socket, socket.socket]]:
        with self.lock:
            return [pair for pair in self.pairs if pair[0].fileno() != -1]

    def reset_all(self) -> None:
        with self.lock:
            for client, upstream in [pair for pair in self.pairs if pair[0].fileno() != -1]:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                upstream.close()

    def stop(self) -> None:
        self.stopped = True
        self.join()
        self.reset_all()
        self.listener.close()


async def test_a_reset_connection_is_never_served_by_the_next_turn_of_the_loop(
    redis_url, redis_client, tracked
) -> None:
    """As with a kill, for a connection that ends with a reset: asyncio tells a
    protocol nothing when it reads one, and `connection_lost` a turn later;
    the cache must not serve that turn from the session that is gone."""
    proxy = ResettingProxy(redis_url)
    proxy.start()
    try:
        async with TrackedCache(proxy.url, [tracked], heartbeat=None, **FAST) as cache:
            assert cache.healthy
            key = f"{tracked}alice"
            await redis_client.set(key, "alice")
            await until(lambda: cache.stats.invalidated >= 1)  # through the proxy's thread: later
            load = Loader(redis_client, key)
            assert [await cache.get(key, load) for _ in range(2)] == ["alice", "alice"] and load.calls == 1
            other = redis.Redis.from_url(redis_url, decode_responses=True)
            proxy.reset_all()  # blocking calls: this loop reads nothing meanwhile
            other.delete(key)  # no invalidation reaches this process
            other.close()
            time.sleep(0.05)  # the resets are in this process's sockets by now
            await asyncio.sleep(0)  # a turn of the loop: it reads the resets
            await asyncio.sleep(0)  # the next request
            assert await cache.get(key, load) is None
    finally:
        proxy.stop()


async def test_while_redis_is_unreachable_every_get_reads_through(redis_url, redis_client, tracked, caplog) -> None:
    caplog.set_level(logging.INFO, logger="proxy.tracking")
    key = f"{tracked}alice"
    await redis_client.set(key, "alice")
    load = Loader(redis_client, key)
    async with RedisProxy(redis_url) as proxy:
        async with TrackedCache(proxy.url, [tracked], **FAST) as cache:
            assert await cache.get(key, load) == await cache.get(key, load) == "alice"
            assert load.calls == 1
            await proxy.stop()  # the tracking connections are cut, new ones refused
            await until(lambda: not cache.healthy)
            for n in range(3):  # reads go on, through Redis, and nothing is kept
                await redis_client.set(key, f"v{n}")
                assert await cache.get(key, load) == f"v{n}"
            assert load.calls == 4 and len(cache) == 0
            await asyncio.sleep(0.2)  # several failed reconnections: still one line about it
            await proxy.start()
            await until(lambda: cache.healthy)
            assert await cache.get(key, load) == await cache.get(key, load) == "v2"
            assert load.calls == 5
    messages = [r.getMessage() for r in caplog.records]
    assert sum("lost" in m for m in messages) == 1
    assert sum("cannot track" in m for m in messages) == 0  # the same state as "lost"
    assert sum("tracking 1 key prefix" in m for m in messages) == 2


async def test_a_silent_connection_is_found_by_the_heartbeat(private_redis) -> None:
    """Redis stops answering but the sockets stay open (a partition, a frozen
    server): values stop being served within two heartbeats."""
    url, client = private_redis
    async with TrackedCache(url, ["k:"], heartbeat=0.05, **FAST) as cache:
        await client.set("k:1", "v")
        await cache.get("k:1", Loader(client, "k:1"))
        await client.execute_command("CLIENT", "PAUSE", 600, "ALL")
        await until(lambda: not cache.healthy, timeout=0.5)
        assert len(cache) == 0
        await until(lambda: cache.healthy, timeout=5)  # after the pause
        assert cache.stats.losses == 1


async def test_without_any_redis_it_reads_through_and_closes_cleanly(caplog) -> None:
    caplog.set_level(logging.INFO, logger="proxy.tracking")
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        return "v"

    async with TrackedCache("redis://:hunter2@127.0.0.1:1/0", ["k:"], **FAST) as cache:
        assert not cache.healthy
        assert [await cache.get("k:1", load) for _ in range(3)] == ["v"] * 3
        assert calls == 3 and len(cache) == 0
    assert len(caplog.records) == 1 and "cannot track" in caplog.records[0].getMessage()
    assert "hunter2" not in caplog.text


async def test_redis_cluster_is_not_tracked(caplog) -> None:
    caplog.set_level(logging.INFO, logger="proxy.tracking")
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        return "v"

    async with TrackedCache("redis-cluster://127.0.0.1:7000", ["k:"]) as cache:
        assert not cache.tracks and not cache.healthy
        assert [await cache.get("k:1", load) for _ in range(2)] == ["v", "v"]
    assert calls == 2
    assert "Cluster" in caplog.text


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[str]:
    sock = tmp_path / "redis.sock"
    server = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
            "--requirepass",
            "s3cret",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            if sock.exists():
                break
            time.sleep(0.01)
        yield f"unix://{sock}"
    finally:
        server.terminate()
        server.wait(timeout=5)


async def test_it_authenticates_from_the_url(redis_with_password, caplog) -> None:
    caplog.set_level(logging.INFO, logger="proxy.tracking")
    path = redis_with_password.removeprefix("unix://")
    client = connect(f"unix://:s3cret@{path}?db=3")
    try:
        async with TrackedCache(f"unix://:s3cret@{path}?db=3", ["k:"], **FAST) as cache:
            assert cache.healthy
            await client.set("k:1", "one")
            load = Loader(client, "k:1")
            assert await cache.get("k:1", load) == await cache.get("k:1", load) == "one"
            await client.set("k:1", "two")
            await asyncio.sleep(0.01)
            assert await cache.get("k:1", load) == "two" and load.calls == 2
        async with TrackedCache(f"unix://:wrong@{path}", ["k:"], **FAST) as refused:
            assert not refused.healthy
    finally:
        await client.aclose()
    assert "AUTH refused" in caplog.text
    assert "s3cret" not in caplog.text and "wrong" not in caplog.text


@pytest.fixture
async def tls_redis(redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """The test Redis behind a TLS front of this test's own, with a self-signed
    certificate for 127.0.0.1: ("rediss://127.0.0.1:PORT/0", the certificate)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    target = parse_url(redis_url)
    handlers: set[asyncio.Task[None]] = set()

    async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            sink.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        if "path" in target:
            upstream = await asyncio.open_unix_connection(target["path"])
        else:
            upstream = await asyncio.open_connection(target.get("host", "localhost"), target.get("port", 6379))
        await asyncio.gather(pump(reader, upstream[1]), pump(upstream[0], writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    yield f"rediss://127.0.0.1:{server.sockets[0].getsockname()[1]}/0", cert
    server.close()
    await server.wait_closed()
    await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), timeout=5)


async def test_rediss_urls_are_verified_as_redis_py_does(tls_redis, redis_client, tracked, caplog) -> None:
    caplog.set_level(logging.INFO, logger="proxy.tracking")
    url, cert = tls_redis
    key = f"{tracked}alice"
    for trusted in (f"{url}?ssl_ca_certs={cert}", f"{url}?ssl_cert_reqs=none"):
        await redis_client.set(key, "alice")
        async with TrackedCache(trusted, [tracked], **FAST) as cache:
            assert cache.healthy
            load = Loader(redis_client, key)
            assert await cache.get(key, load) == await cache.get(key, load) == "alice"
            await redis_client.append(key, "!")
            await asyncio.sleep(0.01)
            assert await cache.get(key, load) == await redis_client.get(key)
            assert load.calls == 2
    # Built from the store's own client (as the runtime does): the same address, TLS and trust.
    store = connect(f"{url}?ssl_ca_certs={cert}")
    try:
        async with TrackedCache(store, [tracked], **FAST) as cache:
            assert cache.healthy
            load = Loader(redis_client, key)
            await cache.get(key, load)
            await redis_client.append(key, "?")
            await asyncio.sleep(0.01)
            assert await cache.get(key, load) == await redis_client.get(key) and load.calls == 2
    finally:
        await store.aclose()
    async with TrackedCache(url, [tracked], **FAST) as untrusted:  # a certificate nobody vouches for
        assert not untrusted.healthy
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    with pytest.raises(ValueError, match="ssl_cert_reqs"):
        TrackedCache(f"{url}?ssl_cert_reqs=maybe", [tracked])


# -- memory and setup ------------------------------------------------------------------


async def test_memory_is_bounded_and_the_least_recently_used_go_first(redis_url, redis_client, tracked) -> None:
    async with TrackedCache(redis_url, [tracked], max_entries=3, max_absent=2, **FAST) as cache:
        assert cache.healthy
        for n in range(5):
            await redis_client.set(f"{tracked}{n}", str(n))
        loads = {n: Loader(redis_client, f"{tracked}{n}") for n in range(5)}
        for n in (0, 1, 2):
            await cache.get(loads[n].key, loads[n])
        await cache.get(loads[0].key, loads[0])  # 0 used again: 1 is now the oldest
        await cache.get(loads[3].key, loads[3])
        assert len(cache) == 3
        for n in (0, 2, 3):
            await cache.get(loads[n].key, loads[n])
        assert [loads[n].calls for n in range(4)] == [1, 1, 1, 1]
        await cache.get(loads[1].key, loads[1])
        assert loads[1].calls == 2
        # Unknown keys have their own, smaller room: a flood of them evicts no client.
        for n in range(100):
            await cache.get(f"{tracked}unknown{n}", Loader(redis_client, f"{tracked}unknown{n}"))
        assert len(cache) == 3 + 2
        for n in (1, 2, 3):
            await cache.get(loads[n].key, loads[n])
        assert [loads[n].calls for n in (1, 2, 3)] == [2, 1, 1]


def test_overlapping_prefixes_collapse_to_the_shorter_and_none_is_refused() -> None:
    cache = TrackedCache("redis://127.0.0.1:6379/0", ["a:b:", "a:", "c:", "a:"])
    assert cache.prefixes == ("a:", "c:")
    for prefixes in ([], [""]):
        with pytest.raises(ValueError):
            TrackedCache("redis://127.0.0.1:6379/0", prefixes)


async def test_after_aclose_it_reads_through(redis_url, redis_client, tracked) -> None:
    cache = TrackedCache(redis_url, [tracked], **FAST)
    await cache.start()
    load = Loader(redis_client, f"{tracked}x")
    await cache.get(load.key, load)
    await cache.aclose()
    assert not cache.healthy and cache.connection_ids is None
    await cache.get(load.key, load)
    assert load.calls == 2


# -- "refused on the very next request", across processes ------------------------------

WRITER = textwrap.dedent(
    """
    # Another process: an operator disabling or rotating a client's key, then
    # (once the write returned) a client sending the next request to the router.
    import json, socket, sys
    import redis

    url, key, rounds, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    writer = redis.Redis.from_url(url, decode_responses=True)
    router = socket.create_connection(("127.0.0.1", port))
    replies = router.makefile("r")
    seen = []
    for n in range(rounds):
        router.sendall(f"prime {n}\\n".encode())   # the router caches the key's current value
        primed = replies.readline().strip()
        if primed != "primed":
            seen.append(primed)
            break
        if n % 2:
            writer.set(key, f"rotated-{n}")
        else:
            writer.delete(key)
        router.sendall(f"request {n}\\n".encode())  # the very next request
        seen.append(replies.readline().strip())
    print(json.dumps(seen))
    """
)


async def test_a_change_in_another_process_is_seen_by_the_next_request(cache, redis_url, redis_client, tracked) -> None:
    """A separate process changes the key with its own blocking client and, once
    the write returned, sends a request to this process over a socket; the
    request is handled as uvicorn does (a task started from data_received). Each
    time, that request must see the change: no sleeping anywhere."""
    key = f"{tracked}rotating"
    load = Loader(redis_client, key)
    loop = asyncio.get_running_loop()
    handled: list[asyncio.Task[None]] = []

    class Router(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                handled.append(loop.create_task(self.handle(line.decode())))

        async def handle(self, line: str) -> None:
            verb, n = line.split()
            if verb == "prime":
                await redis_client.set(key, f"key-{n}")
                calls = load.calls
                values = [await cache.get(key, load), await cache.get(key, load)]
                primed = values == [f"key-{n}"] * 2 and load.calls == calls + 1  # the second from memory
                reply = "primed" if primed else f"not primed: {values}, {load.calls - calls} loads"
            else:
                reply = str(await cache.get(key, load))
            self.transport.write(f"{reply}\n".encode())  # type: ignore[attr-defined]

    server = await loop.create_server(Router, "127.0.0.1", 0)
    rounds = 100
    try:
        port = server.sockets[0].getsockname()[1]
        writer = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, redis_url, key, str(rounds), str(port), stdout=subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(writer.communicate(), timeout=30)
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.gather(*handled)
    assert writer.returncode == 0
    seen = json.loads(out)
    assert seen == [f"rotated-{n}" if n % 2 else "None" for n in range(rounds)]
    assert cache.stats.hits >= rounds
