"""The aiohttp transport under the provider client: which failures mean "never sent"."""

import asyncio
import socket

import httpx
import pytest

from proxy.errors import OutcomeUnknown, ProviderRefused
from proxy.providers.transport import AiohttpTransport
from proxy.providers.upstream import ProviderClient


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def serve(behaviour):
    server = await asyncio.start_server(behaviour, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/v2"


async def test_a_reply_comes_back_whole():
    async def ok(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{"order": 123}')
        await writer.drain()

    server, url = await serve(ok)
    async with server, ProviderClient("p", url, "k", transport=AiohttpTransport()) as client:
        assert await client.add({"service": 1}) == 123


async def test_a_refused_connection_was_never_sent():
    async with ProviderClient("p", f"http://127.0.0.1:{closed_port()}/api/v2", "k") as client:
        with pytest.raises(ProviderRefused) as refused:
            await client.add({"service": 1})
    assert refused.value.message is None and "not sent" in refused.value.reason


@pytest.mark.parametrize("how", ["hang_up", "reset", "half_reply"])
async def test_a_connection_lost_after_sending_is_unknown(how):
    async def lost(reader, writer):
        await reader.readuntil(b"\r\n\r\n")  # the request arrived: the panel may act on it
        if how == "half_reply":
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"ord')
            await writer.drain()
        if how == "reset":
            writer.transport.abort()
        else:
            writer.close()

    server, url = await serve(lost)
    async with server, ProviderClient("p", url, "k") as client:
        with pytest.raises(OutcomeUnknown):
            await client.add({"service": 1})


async def test_no_reply_in_time_is_unknown():
    async def silent(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)

    server, url = await serve(silent)
    async with server, ProviderClient("p", url, "k", timeout=httpx.Timeout(0.3)) as client:
        with pytest.raises(OutcomeUnknown, match="no reply in time"):
            await client.add({"service": 1})


class ThroughHttpx(httpx.AsyncBaseTransport):
    """The same aiohttp transport, called through httpx's API (as an injected transport is)."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("request_format", ["form", "json"])
async def test_the_direct_call_sends_what_httpx_would_send(request_format):
    """The provider client calls its own aiohttp transport directly, without httpx's
    objects: the panel gets the same request either way."""
    seen: list[tuple[bytes, bytes]] = []

    async def record(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        body = await reader.readexactly(length)
        content_type = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-type"))
        seen.append((content_type.lower().replace(b" ", b""), body))
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{"order": 123}')
        await writer.drain()
        writer.close()

    server, url = await serve(record)
    fields = {"service": 1, "link": "https://instagram.com/p/ü?a=1&b=2", "comments": "one\ntwo"}
    async with server:
        for transport in (AiohttpTransport(), ThroughHttpx()):
            async with ProviderClient("p", url, "k+ey", transport=transport, request_format=request_format) as client:
                assert await client.add(fields) == 123
    assert len(seen) == 2 and seen[0] == seen[1]


@pytest.mark.parametrize("how", ["hang_up", "reset"])
async def test_a_get_provider_s_add_lost_after_sending_is_sent_once(how):
    """aiohttp resends an idempotent method (GET) once by itself when the connection
    drops; a panel that takes `add` as a GET may have created the order the first
    time: a second request would buy it twice. Unknown, sent once."""
    requests: list[bytes] = []

    async def lost(reader, writer):
        requests.append(await reader.readuntil(b"\r\n\r\n"))  # the panel may act on it
        if how == "reset":
            writer.transport.abort()
        else:
            writer.close()

    server, url = await serve(lost)
    async with server, ProviderClient("p", url, "k", method="GET") as client:
        with pytest.raises(OutcomeUnknown):
            await client.add({"service": 1})
    assert len(requests) == 1


@pytest.mark.parametrize("charset", ["utf8mb4", "x-unknown"])
async def test_a_reply_naming_an_unknown_charset_is_read_as_httpx_reads_it(charset):
    """httpx reads a body whose Content-Type names a charset Python does not know as
    UTF-8; the direct call must too, not raise (an accepted order left as lost)."""

    async def ok(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset="
            + charset.encode()
            + b'\r\nContent-Length: 14\r\n\r\n{"order": 123}'
        )
        await writer.drain()

    server, url = await serve(ok)
    async with server:
        for transport in (AiohttpTransport(), ThroughHttpx()):
            async with ProviderClient("p", url, "k", transport=transport) as client:
                assert await client.add({"service": 1}) == 123
