"""A TCP proxy to Redis that a test can stop and start: "Redis stopped mid-traffic".

Stopping drops every open connection and refuses new ones; the data stays in
the Redis behind, as it would across a restart with persistence.

    async with RedisProxy(redis_url) as proxy_url:  # "redis://127.0.0.1:PORT/DB"
        ...
        await proxy.stop(); ...; await proxy.start()

With `reply_delay` (seconds, drawn for each chunk Redis sends back) it is "a
Redis under load": a command spends that long inside redis-py waiting for its
reply, which is where a cancel lands when it lands "mid-command".

`reset` cuts the client's connections with a TCP reset (a crashed host, a
middlebox), not Redis' orderly close; `inject` sends the client bytes no
command asked for, at once or with the next reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from urllib.parse import urlsplit


class RedisProxy:
    def __init__(self, target_url: str, reply_delay: Callable[[], float] | None = None) -> None:
        self.target = urlsplit(target_url)
        self.reply_delay = reply_delay
        self._server: asyncio.Server | None = None
        self._port = 0
        self._streams: set[asyncio.StreamWriter] = set()
        self._clients: set[asyncio.StreamWriter] = set()
        self._extra = b""

    async def _open_target(self):  # type: ignore[no-untyped-def]
        if self.target.scheme == "unix":
            return await asyncio.open_unix_connection(self.target.path)
        return await asyncio.open_connection(self.target.hostname, self.target.port or 6379)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await self._open_target()
        except OSError:
            writer.close()
            return
        self._streams |= {writer, upstream_writer}
        self._clients.add(writer)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay: bool = False) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    if delay and self.reply_delay is not None:
                        await asyncio.sleep(self.reply_delay())
                    if delay and self._extra:
                        data, self._extra = data + self._extra, b""
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer, delay=True))
        self._streams -= {writer, upstream_writer}
        self._clients.discard(writer)

    @property
    def url(self) -> str:
        db = self.target.path.strip("/") if self.target.scheme != "unix" else ""
        if self.target.scheme == "unix":
            db = dict(p.split("=") for p in self.target.query.split("&") if "=" in p).get("db", "")
        return f"redis://127.0.0.1:{self._port}/{db or 0}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._streams):
            writer.transport.abort()
        self._streams.clear()

    def reset(self) -> None:
        """Cut every client connection with a TCP reset (RST), not a close (FIN)."""
        for writer in list(self._clients):
            if writer.transport.is_closing():
                continue  # closed already (its socket may be gone)
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    def inject(self, data: bytes, with_next_reply: bool = False) -> None:
        """Send every client `data` no command asked for: now, or in the same chunk as the next reply."""
        if with_next_reply:
            self._extra += data
            return
        for writer in self._clients:
            writer.write(data)

    async def __aenter__(self) -> RedisProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
