"""A TCP proxy to Redis whose replies take a little while: "a Redis under load".

Each chunk Redis sends back is held for a random time of up to `most`
seconds (in order, per connection), so a command spends that long inside
redis-py waiting for its reply: where a cancel lands when it lands
"mid-command".

    async with SlowRedisProxy(redis_url, random.Random(1), most=0.005) as proxy:
        redis = connect(proxy.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from urllib.parse import urlsplit


class SlowRedisProxy:
    def __init__(self, target_url: str, rng: random.Random, most: float) -> None:
        self.target = urlsplit(target_url)
        self.rng = rng
        self.most = most
        self._server: asyncio.Server | None = None
        self._port = 0
        self._db = ""
        self._tasks: set[asyncio.Task[None]] = set()

    async def _open_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.target.scheme == "unix":
            return await asyncio.open_unix_connection(self.target.path)
        return await asyncio.open_connection(self.target.hostname, self.target.port or 6379)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await self._open_target()
        except OSError:
            writer.close()
            return

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay: bool) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    if delay:
                        await asyncio.sleep(self.rng.random() * self.most)
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, upstream_writer, False), pump(upstream_reader, writer, True))

    @property
    def url(self) -> str:
        if self.target.scheme == "unix":
            query = dict(p.split("=") for p in self.target.query.split("&") if "=" in p)
            return f"redis://127.0.0.1:{self._port}/{query.get('db', '0')}"
        return f"redis://127.0.0.1:{self._port}/{self.target.path.strip('/') or 0}"

    async def __aenter__(self) -> SlowRedisProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
