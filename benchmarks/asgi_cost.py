"""CPU per request inside the app, without a server or a load generator.

    .venv/bin/python benchmarks/asgi_cost.py [--redis URL] [--requests 20000] [--rounds 5]

Calls the router's ASGI app (as `smm-proxy serve` builds it: JSON logs at
INFO to /dev/null, tracking started) and a bare Starlette app answering the
same bytes, directly with a prepared request, and prints this process's CPU
per request (time.process_time), medians of alternated rounds, for
`balance`, one `status` and `services`. What uvicorn and the socket cost is
the same for both and left out, so the difference is the router's own work;
on a machine shared with other work these numbers move far less than wrk's.
Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from proxy import logs  # noqa: E402
from proxy.config import parse_config  # noqa: E402
from proxy.edge.app import create_app  # noqa: E402
from proxy.embedded import EmbeddedRedis  # noqa: E402
from proxy.runtime import Runtime  # noqa: E402
from proxy.settings import Settings  # noqa: E402
from proxy.store import connect  # noqa: E402

PREFIX = "bench-asgi:"
CONFIG = {
    "currency": "USD",
    "providers": {"echomark": {"url": "http://127.0.0.1:9/api/v2", "key": "sim-key", "currency": "USD"}},
    "services": [{"id": 1, "routes": [{"provider": "echomark", "service": 1}]}],
    "fair_use": {"requests": "1000000000/minute"},
}


class Call:
    """One prepared POST /api/v2 with a form body; `run` sends it to an app."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.body = urlencode(fields).encode()
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/v2",
            "raw_path": b"/api/v2",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"content-length", str(len(self.body)).encode()),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8080),
        }
        self.sent: list[bytes] = []

    async def run(self, app: Callable[..., Awaitable[None]]) -> bytes:
        body = self.body
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(dict(self.scope), receive, send)
        return b"".join(chunks)


async def cpu_per_request(requests: int, call: Call, app: Callable[..., Awaitable[None]]) -> float:
    started = time.process_time()
    for _ in range(requests):
        await call.run(app)
    return (time.process_time() - started) / requests * 1e6


async def bench(url: str, requests: int, rounds: int) -> dict[str, dict[str, float]]:
    devnull = open(os.devnull, "w")  # noqa: SIM115
    logs.configure("json", "info", secrets=["sim-key"], stream=devnull)
    runtime = Runtime(Settings(key_prefix=PREFIX), parse_config(CONFIG, {}), connect(url))
    if hasattr(runtime, "start"):  # (a router from before the tracked cache has none)
        await runtime.start()
    router = create_app(runtime)
    _, key = await runtime.accounts.create("bench", Decimal(100))
    # An order to read: reserved straight in the book (no panel is called).
    from proxy.orders.records import NewOrder

    new = NewOrder(
        client="bench",
        service=1,
        type="Default",
        quantity=100,
        fields={"link": "https://instagram.com/p/x", "quantity": "100"},
        charge=Decimal("0.1"),
        refill=False,
        cancel=False,
    )
    order = (await runtime.book.reserve(new)).order_id
    calls = {
        "balance": Call({"key": key, "action": "balance"}),
        "status": Call({"key": key, "action": "status", "order": str(order)}),
        "services": Call({"key": key, "action": "services"}),
    }
    replies = {call.body: await call.run(router) for call in calls.values()}

    async def endpoint(request: Request) -> Response:  # the router's reply to the same body, from memory
        return Response(replies[await request.body()], media_type="application/json")

    bare = Starlette(routes=[Route("/api/v2", endpoint, methods=["GET", "POST"])])
    apps = {"bare": bare, "router": router}
    results: dict[str, dict[str, list[float]]] = {n: {a: [] for a in apps} for n in calls}
    for call in calls.values():
        for app in apps.values():
            await cpu_per_request(200, call, app)
    for _ in range(rounds):
        for name, call in calls.items():
            for app_name, app in apps.items():
                results[name][app_name].append(await cpu_per_request(requests, call, app))
    stale = [k async for k in runtime.redis.scan_iter(match=f"{PREFIX}*")]
    if stale:
        await runtime.redis.delete(*stale)
    await runtime.aclose()
    logs.unconfigure()
    devnull.close()
    return {n: {a: statistics.median(v) for a, v in by.items()} for n, by in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.redis or stack.enter_context(EmbeddedRedis())
        numbers = asyncio.run(bench(url, args.requests, args.rounds))
    print(f"\nCPU per request inside the app, median of {args.rounds} rounds of {args.requests:,}\n")
    print("| read | bare Starlette | router | the router's own work |")
    print("|---|---|---|---|")
    for name, by in numbers.items():
        print(f"| {name} | {by['bare']:.1f} µs | {by['router']:.1f} µs | {by['router'] - by['bare']:.1f} µs |")


if __name__ == "__main__":
    main()
