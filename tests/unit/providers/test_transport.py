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
