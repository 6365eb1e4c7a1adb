"""SIGTERM stops a served router within its grace, and no order it was placing is stranded.

Issue 12, case 2: SIGTERM did not stop the server within 10 s; an order being
placed held it up without a deadline. Now `SMM_PROXY_SHUTDOWN_GRACE` bounds
it: adds waiting for their order answer with its ID at once, new adds are
refused before any money moves, orders still being placed finish or are
handed over (their leases given up and taken over at once: one never sent is
refunded, one that may exist upstream waits for an operator as `unknown`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
from invariants import check_money

from proxy.orders.states import FAILED, RESERVED, SUBMITTED, UNKNOWN
from proxy.sim.catalogs import build_panel
from proxy.sim.server import serve_panel_in_thread

GRACE = 4.0
LINK = "https://instagram.com/p/abc"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_provider_config(url: str) -> dict[str, object]:
    return {
        "currency": "USD",
        "markup": {"percent": 30},
        # One connection: a second order waits for it (still `reserved`, never sent).
        "providers": {
            "echomark": {
                "url": url,
                "key": "sim-key",
                "currency": "USD",
                "max_connections": 1,
                "order_wait": 60,
                "timeout": 60,
            }
        },
        "services": [{"id": 1, "routes": [{"provider": "echomark", "service": 1}]}],
    }


async def wait_for(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_sigterm_stops_the_server_within_its_grace_and_hands_orders_over(
    make_router, redis_url, key_prefix, tmp_path: Path
):
    panel = build_panel("echomark", step_seconds=10, first_order_id=5000)
    with serve_panel_in_thread(panel) as panel_url:
        raw = one_provider_config(panel_url)
        router = await make_router(raw, panels={"echomark": panel})  # the same Redis and prefix, to look
        key = await router.client(balance="10")
        config = tmp_path / "router.yaml"
        config.write_text(json.dumps(raw))
        port = free_port()
        env = {
            **os.environ,
            "SMM_PROXY_REDIS_URL": redis_url,
            "SMM_PROXY_KEY_PREFIX": key_prefix,
            "SMM_PROXY_CONFIG": str(config),
            "SMM_PROXY_PORT": str(port),
            "SMM_PROXY_SHUTDOWN_GRACE": str(GRACE),
            "SMM_PROXY_LOG_FORMAT": "json",
        }
        served = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--allow-volatile", "--no-background"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=60) as http:

                async def up() -> bool:
                    try:
                        return (await http.get("/healthz")).status_code == 200
                    except httpx.TransportError:
                        return False

                await wait_for(up)
                await http.post("/api/v2", data={"key": key, "action": "services"})  # lists fetched
                panel.faults.latency = 120  # the panel takes two minutes to answer an add
                adds = [
                    asyncio.create_task(
                        http.post(
                            "/api/v2",
                            data={
                                "key": key,
                                "action": "add",
                                "service": "1",
                                "link": f"{LINK}{i}",
                                "quantity": "1000",
                            },
                        )
                    )
                    for i in range(2)
                ]
                book = router.runtime.book

                async def one_sent_one_waiting() -> bool:
                    orders = [await book.get("alice", i) for i in (1, 2)]
                    return sorted(o.state for o in orders if o) == [RESERVED, SUBMITTED]

                await wait_for(one_sent_one_waiting)
                stopped_at = time.monotonic()
                served.send_signal(signal.SIGTERM)
                replies = [(await add).json() for add in adds]
                answered_in = time.monotonic() - stopped_at
                served.wait(timeout=GRACE + 10)
                took = time.monotonic() - stopped_at
        finally:
            if served.poll() is None:
                served.kill()
            output = served.stdout.read().decode() if served.stdout else ""
        assert took <= GRACE + 2, (took, output[-3000:])
        assert answered_in <= 1, answered_in  # the adds answered with their IDs at once
        assert sorted(r["order"] for r in replies) == [1, 2], replies
        orders = {o.id: o for o in [await book.get("alice", 1), await book.get("alice", 2)] if o}
        states = sorted(o.state for o in orders.values())
        assert states == [FAILED, UNKNOWN], (states, output[-3000:])  # handed over, not stranded
        waited = next(o for o in orders.values() if o.state == FAILED)
        assert waited.refunded == waited.charge  # it never left: refunded at once
        assert not [k async for k in router.runtime.redis.scan_iter(match=f"{key_prefix}lease:*")]
        assert "handed over at shutdown" in output
        await check_money(router, {"alice": Decimal("10")})
