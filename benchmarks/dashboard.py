"""What the dashboard's pages cost with many orders: numbers, not assertions.

    .venv/bin/python benchmarks/dashboard.py [--redis URL] [--orders 5000]

Places N orders on the simulated panels (through the book, as `add` records
them, half of them placed), then times each page over the app in process
(httpx's ASGI transport), logged in as an owner: the median of five loads.
The overview reads every order of the last 30 days once (its four reports
come from one pass); the other pages read what they show.

Without --redis it starts an embedded Redis on a unix socket, as the tests do.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from support import new_order, router_config  # noqa: E402

from proxy.config import parse_config  # noqa: E402
from proxy.edge.app import create_app  # noqa: E402
from proxy.embedded import EmbeddedRedis  # noqa: E402
from proxy.orders.states import ACCEPT, SUBMIT  # noqa: E402
from proxy.runtime import Runtime  # noqa: E402
from proxy.settings import Settings  # noqa: E402
from proxy.sim.app import create_app as panel_app  # noqa: E402
from proxy.sim.catalogs import build_panel  # noqa: E402
from proxy.store import connect  # noqa: E402

PREFIX = "bench-dashboard:"
SITE = "http://dash"
PAGES = ("", "/queue", "/providers", "/orders", "/orders?by=client&q=alice", "/clients", "/clients/alice")


async def bench(url: str, orders: int) -> list[tuple[str, str]]:
    panels = {"echomark": build_panel("echomark"), "korean": build_panel("korean", seed=1)}
    transports = {name: httpx.ASGITransport(app=panel_app(panel)) for name, panel in panels.items()}
    settings = Settings(key_prefix=PREFIX, dashboard=True, dashboard_logins="1000/minute")
    built = Runtime(settings, parse_config(router_config(), {}), connect(url), transports=transports)
    cleanup = connect(url)
    rows: list[tuple[str, str]] = []
    try:
        await built.accounts.create("alice", Decimal(orders) * 2)
        started = time.perf_counter()
        for n in range(orders):
            made = (await built.book.reserve(new_order(link=f"https://instagram.com/p/{n}"))).order
            if n % 2:
                sent = await built.book.apply(made, SUBMIT, {"provider": "echomark", "cost_base": 9_000_000})
                await built.book.apply(sent, ACCEPT, {"upstream_order": 10_000 + n})
        rows.append((f"placing {orders} orders through the book (s)", f"{time.perf_counter() - started:.1f}"))
        token = (await built.operators.add_admin("bench", "bench", "owner")).token
        transport = httpx.ASGITransport(app=create_app(built))
        async with httpx.AsyncClient(transport=transport, base_url=SITE) as http:
            await http.post("/dashboard/login", data={"token": token}, headers={"Origin": SITE})
            for page in PAGES:
                times = []
                for _ in range(5):
                    began = time.perf_counter()
                    answer = await http.get(f"/dashboard{page}")
                    times.append((time.perf_counter() - began) * 1000)
                    assert answer.status_code == 200, (page, answer.status_code)
                rows.append((f"GET /dashboard{page} (ms, median of 5)", f"{statistics.median(times):.0f}"))
    finally:
        await built.aclose()
        stale = [key async for key in cleanup.scan_iter(match=f"{PREFIX}*", count=1000)]
        for start in range(0, len(stale), 1000):
            await cleanup.delete(*stale[start : start + 1000])
        await cleanup.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="a Redis URL (default: an embedded one)")
    parser.add_argument("--orders", type=int, default=5000)
    args = parser.parse_args()
    if args.redis:
        rows = asyncio.run(bench(args.redis, args.orders))
    else:
        with EmbeddedRedis() as url:
            rows = asyncio.run(bench(url, args.orders))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:{width}}  {value}")


if __name__ == "__main__":
    main()
