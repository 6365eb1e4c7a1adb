"""The router's HTTP protocol: a reply's head and body go out in one write,
and nothing is lost, reordered or held back on the way."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.edge.server import HttpProtocol, PairedWrites


class Recorder(asyncio.Transport):
    """A transport that records what is sent through it, one entry a system call."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(data))

    def writelines(self, list_of_data) -> None:  # type: ignore[no-untyped-def]
        self.sent.append(b"".join(bytes(d) for d in list_of_data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 0


async def next_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_two_writes_in_a_row_are_one_send_in_order():
    inner = Recorder()
    paired = PairedWrites(inner, asyncio.get_running_loop())
    paired.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert inner.sent == []
    paired.write(b"body")
    assert inner.sent == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    await next_turn()
    assert inner.sent == [b"HTTP/1.1 200 OK\r\n\r\nbody"]  # nothing sent twice


async def test_a_write_no_other_follows_goes_out_at_the_next_turn():
    inner = Recorder()
    paired = PairedWrites(inner, asyncio.get_running_loop())
    paired.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    await next_turn()
    assert inner.sent == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    paired.write(b"a")
    paired.write(b"b")
    paired.write(b"c")  # a third: held again, then sent alone
    await next_turn()
    assert inner.sent == [b"HTTP/1.1 100 Continue\r\n\r\n", b"ab", b"c"]


async def test_closing_sends_what_is_held_first_and_aborting_drops_it():
    inner = Recorder()
    paired = PairedWrites(inner, asyncio.get_running_loop())
    paired.write(b"last words")
    paired.close()
    assert inner.sent == [b"last words"] and inner.closed

    inner = Recorder()
    paired = PairedWrites(inner, asyncio.get_running_loop())
    paired.write(b"never")
    paired.abort()
    await next_turn()
    assert inner.sent == [] and inner.aborted


async def test_writelines_and_write_eof_keep_the_order():
    inner = Recorder()
    inner.write_eof = lambda: inner.sent.append(b"<eof>")  # type: ignore[method-assign]
    paired = PairedWrites(inner, asyncio.get_running_loop())
    paired.write(b"1")
    paired.writelines([b"2", b"3"])
    paired.write(b"4")
    paired.write_eof()
    assert inner.sent == [b"1", b"23", b"4", b"<eof>"]


async def test_nothing_is_written_to_a_transport_that_is_closing():
    inner = Recorder()
    paired = PairedWrites(inner, asyncio.get_running_loop())
    paired.write(b"too late")
    inner.closed = True  # the peer went away meanwhile
    await next_turn()
    assert inner.sent == []
    assert paired.is_closing()


# -- served by uvicorn ---------------------------------------------------------------

BIG = b"x" * (1024 * 1024 + 7)


async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


async def chunks(request: Request) -> StreamingResponse:
    async def parts():  # type: ignore[no-untyped-def]
        for i in range(5):
            yield f"part {i}\n".encode()
            await asyncio.sleep(0.01)

    return StreamingResponse(parts(), media_type="text/plain")


APP = Starlette(
    routes=[
        Route("/small", lambda request: PlainTextResponse("ok"), methods=["GET", "HEAD"]),
        Route("/big", lambda request: Response(BIG), methods=["GET"]),
        Route("/echo", echo, methods=["POST"]),
        Route("/chunks", chunks, methods=["GET"]),
        Route("/empty", lambda request: Response(status_code=204), methods=["GET"]),
    ]
)


@pytest.fixture
async def served():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(APP, http=HttpProtocol, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield "127.0.0.1", listener.getsockname()[1]
    server.should_exit = True
    await task


async def test_every_kind_of_reply_arrives_whole(served):
    host, port = served
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
        for _ in range(3):  # over one kept-alive connection
            assert (await http.get("/small")).text == "ok"
            head = await http.head("/small")
            assert head.status_code == 200 and head.content == b""
            assert (await http.get("/big")).content == BIG
            assert (await http.post("/echo", content=BIG)).content == BIG
            assert (await http.get("/chunks")).text == "".join(f"part {i}\n" for i in range(5))
            assert (await http.get("/empty")).status_code == 204


async def read_replies(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    bodies = []
    for _ in range(count):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        bodies.append(await asyncio.wait_for(reader.readexactly(length), 5))
    return bodies


async def test_pipelined_requests_are_answered_in_order(served):
    host, port = served
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
        b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nthree"
    )
    assert await read_replies(reader, 3) == [b"one", b"ok", b"three"]
    writer.close()


async def test_a_client_that_expects_100_continue_gets_it_and_its_reply(served):
    host, port = served
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # sent alone, at the next turn
    assert interim.startswith(b"HTTP/1.1 100")
    writer.write(b"body")
    assert await read_replies(reader, 1) == [b"body"]
    writer.close()


async def test_a_client_gone_mid_reply_leaves_the_server_serving(served):
    host, port = served
    for _ in range(5):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.read(100)
        writer.transport.abort()
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
        assert (await http.get("/small")).text == "ok"


# -- served on uvloop, as `smm-proxy serve` is ------------------------------------


@contextlib.contextmanager
def served_on_uvloop(app: ASGIApp, http: type[asyncio.Protocol] | str = HttpProtocol) -> Iterator[tuple[str, int]]:
    """uvicorn in a thread of its own, on uvloop (uvicorn's default loop when
    it is installed): its loop runs call_soon callbacks and I/O in separate
    phases, which asyncio's does not."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=http, log_config=None, access_log=False, lifespan="off", loop="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=uvloop.run, args=(server.serve(sockets=[listener]),))
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        yield listener.getsockname()
    finally:
        server.should_exit = True
        thread.join()


def read_to_the_end(client: socket.socket) -> bytes:
    client.settimeout(5)
    got = b""
    while data := client.recv(65536):
        got += data
    return got


@pytest.mark.parametrize("http", ["httptools", HttpProtocol])
def test_a_client_that_half_closes_gets_its_whole_reply(http: type[asyncio.Protocol] | str) -> None:
    """It got nothing: its EOF made uvloop close the transport (uvicorn keeps no
    half-open connections) before the held write went out, and the flush then
    dropped it as written to a closing transport. Plain uvicorn had sent it."""
    replied, half_closed = threading.Event(), threading.Event()

    async def head_then_busy(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})  # a HEAD reply: its head is the one write
        replied.set()
        half_closed.wait(5)  # the loop is busy until the client's FIN is on its way
        time.sleep(0.05)

    with served_on_uvloop(head_then_busy, http) as address, socket.create_connection(address) as client:
        client.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert replied.wait(5)
        client.shutdown(socket.SHUT_WR)  # "no more requests", still reading
        half_closed.set()
        assert read_to_the_end(client).startswith(b"HTTP/1.1 200 OK\r\n")


async def one_buffer_for_every_part(scope: Scope, receive: Receive, send: Send) -> None:
    buffer = bytearray(4)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"12")]})
    for part in (b"aaaa", b"bbbb", b"cccc"):
        buffer[:] = part
        await send({"type": "http.response.body", "body": memoryview(buffer), "more_body": part != b"cccc"})


@pytest.mark.parametrize("http", ["httptools", HttpProtocol])
def test_a_part_sent_from_a_buffer_the_app_then_reuses_arrives_as_it_was(http: type[asyncio.Protocol] | str) -> None:
    """The body read aaaacccccccc: the held write was a view of the app's
    buffer, sent after the app had written the next part into it. Starlette's
    StreamingResponse passes memoryviews through as they are."""
    with served_on_uvloop(one_buffer_for_every_part, http) as address, socket.create_connection(address) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_to_the_end(client).endswith(b"\r\n\r\naaaabbbbcccc")
