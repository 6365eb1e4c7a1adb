"""What clients' terms and the audit chain cost: numbers, not assertions.

    .venv/bin/python benchmarks/operators.py [--redis URL] [--requests 2000] [--entries 10000]

- `services` over the app in process (httpx's ASGI transport, simulated
  panels), for a client on the deployment's terms and for one with its own
  markup and custom rates: each request reads the client's terms (one more
  Redis round trip than before issue 14) and serves the catalog's bytes, built
  once per catalog and terms;
- reading a client's terms alone;
- appending to the audit log, one operator at a time and eight at once (each
  append is a compare-and-set on the chain's head: concurrent ones retry);
- `verify` over the whole log.

Without --redis it starts an embedded Redis on a unix socket, as the tests do.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from support import router_config  # noqa: E402

from proxy.config import parse_config  # noqa: E402
from proxy.edge.app import create_app  # noqa: E402
from proxy.embedded import EmbeddedRedis  # noqa: E402
from proxy.ops.roles import Actor  # noqa: E402
from proxy.runtime import Runtime  # noqa: E402
from proxy.settings import Settings  # noqa: E402
from proxy.sim.app import create_app as panel_app  # noqa: E402
from proxy.sim.catalogs import build_panel  # noqa: E402
from proxy.store import connect  # noqa: E402

PREFIX = "bench-operators:"


def runtime(url: str) -> Runtime:
    panels = {
        "echomark": build_panel("echomark", first_order_id=5000),
        "korean": build_panel("korean", first_order_id=9000, seed=1),
    }
    transports = {name: httpx.ASGITransport(app=panel_app(panel)) for name, panel in panels.items()}
    settings = Settings(key_prefix=PREFIX, catalog_recheck=1)
    return Runtime(settings, parse_config(router_config(), {}), connect(url), transports=transports)


async def per_call(count: int, call: object) -> float:
    """Microseconds per call, the median of three runs."""
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(count):
            await call()  # type: ignore[operator]
        runs.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(runs)


async def bench(url: str, requests: int, entries: int) -> list[tuple[str, str]]:
    built = runtime(url)
    cleanup = connect(url)
    rows: list[tuple[str, str]] = []
    try:
        ops = built.operators
        plain = (await ops.create_client("bench", "plain", "100")).key
        own = (await ops.create_client("bench", "own", "100")).key
        await ops.set_terms("bench", "own", markup="12.5", duplicate_window="60", same_link="refuse")
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(built)), base_url="http://router")
        await http.post("/api/v2", data={"key": plain, "action": "services"})  # the service lists, fetched once
        for service in (1, 2, 2101):
            await ops.set_rate("bench", "own", service, str((await built.catalog.current()).get(service).rate))

        def services(key: str) -> object:
            return lambda: http.post("/api/v2", data={"key": key, "action": "services"})

        rows.append(("services, deployment's terms (µs/request)", f"{await per_call(requests, services(plain)):.0f}"))
        rows.append(("services, own markup and 3 rates (µs/request)", f"{await per_call(requests, services(own)):.0f}"))
        rows.append(
            ("reading a client's terms (µs)", f"{await per_call(requests, lambda: built.accounts.terms('own')):.0f}")
        )

        actor = Actor("cli:bench")
        audit = built.audit
        started = time.perf_counter()
        for n in range(entries // 2):
            await audit.append(actor, "client.topup", "plain", "", {"amount": "1.00", "n": n})
        sequential = (time.perf_counter() - started) / (entries // 2) * 1e6
        rows.append(("audit append, one operator (µs/entry)", f"{sequential:.0f}"))
        started = time.perf_counter()
        rest = entries - entries // 2

        async def operator(count: int) -> None:
            for _ in range(count):
                await audit.append(actor, "client.topup", "plain", "", {"amount": "1.00"})

        await asyncio.gather(*(operator(rest // 8) for _ in range(8)))
        rows.append(
            (
                "audit appends, 8 operators at once (entries/s)",
                f"{(rest // 8 * 8) / (time.perf_counter() - started):.0f}",
            )
        )
        started = time.perf_counter()
        check = await audit.verify()
        seconds = time.perf_counter() - started
        rows.append((f"audit verify of {check.entries} entries (s)", f"{seconds:.2f} (intact: {check.intact})"))
        await http.aclose()
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
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--entries", type=int, default=10_000)
    args = parser.parse_args()
    if args.redis:
        rows = asyncio.run(bench(args.redis, args.requests, args.entries))
    else:
        with EmbeddedRedis() as url:
            rows = asyncio.run(bench(url, args.requests, args.entries))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:{width}}  {value}")


if __name__ == "__main__":
    main()
