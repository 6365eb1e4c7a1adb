"""One upstream `add`, through the provider client: aiohttp directly against httpx's API over it.

    .venv/bin/python benchmarks/upstream_call.py [--calls 2000] [--rounds 5]

Starts a fast simulated panel on loopback and places `--calls` orders one at
a time through `ProviderClient`, rounds alternated: with its own transport
(called directly, `AiohttpTransport.exchange`) and with the same transport
behind httpx's API (as a transport a test injects is called). Prints the
medians of wall time and of this process's CPU per call. Numbers, not
assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from run import PYTHON, Stack, free_port, wait_for  # noqa: E402

from proxy.providers.transport import AiohttpTransport  # noqa: E402
from proxy.providers.upstream import ProviderClient  # noqa: E402


class ThroughHttpx(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = AiohttpTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def one_round(url: str, transport: httpx.AsyncBaseTransport, calls: int) -> tuple[float, float]:
    async with ProviderClient("bench", url, "sim-key", transport=transport) as client:
        for i in range(50):  # warm: the connection made, the code paths hot
            await client.add({"service": 1, "link": f"https://instagram.com/p/warm{i}", "quantity": 100})
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(calls):
            await client.add({"service": 1, "link": f"https://instagram.com/p/u{i}", "quantity": 100})
        return (time.perf_counter() - wall) / calls * 1e6, (time.process_time() - cpu) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with Stack() as stack:
        port = free_port()
        stack.process([PYTHON, str(ROOT / "benchmarks" / "panel.py"), "--port", str(port)])
        wait_for(f"http://127.0.0.1:{port}/_sim/state")
        url = f"http://127.0.0.1:{port}/api/v2"
        found: dict[str, list[tuple[float, float]]] = {"direct": [], "httpx": []}
        for _ in range(args.rounds):
            found["direct"].append(asyncio.run(one_round(url, AiohttpTransport(), args.calls)))
            found["httpx"].append(asyncio.run(one_round(url, ThroughHttpx(), args.calls)))
    print(f"\none upstream add, {args.calls} a round, median of {args.rounds} alternated rounds\n")
    print("| path | wall per call | CPU per call (this process) |")
    print("|---|---|---|")
    for name, runs in found.items():
        print(
            f"| {name} | {statistics.median(w for w, _ in runs):,.0f} µs | {statistics.median(c for _, c in runs):,.0f} µs |"
        )


if __name__ == "__main__":
    main()
