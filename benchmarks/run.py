"""The router's performance, side by side with a bare Starlette app: one command.

    .venv/bin/python benchmarks/run.py [--duration 5] [--rounds 3] [--quick]

    .venv/bin/python benchmarks/run.py --reads     # only the read floors (about 3 minutes; 25 s with --quick)

Needs `wrk` (Debian: apt-get install wrk). Starts everything on loopback:
an embedded Redis (so no other data is measured), two fast simulated panels
(one with 5,000 extra services), `smm-proxy serve` as the README starts it,
and a bare Starlette app that answers the router's own reply bytes from
memory. The reads (`balance`, one `status`, `services`) are measured against
three floors, each round alternating all four: (a) that bare app; (b) it
plus one redis-py read of the client's key entry a request; (c) that read
from the tracked cache instead (`proxy.tracking`); then the router.
The other actions are loaded with `wrk -t2 -c16`, bare and router
alternated `--rounds` times; then the order throughput, the add overhead,
the upstream amplification of status reads and Redis memory per order are
measured. It prints one table, each figure beside its target.

Numbers, not assertions: machines are noisy; ratios of runs made side by
side are less so. docs/benchmarks.md records a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.embedded import EmbeddedRedis  # noqa: E402

PYTHON = sys.executable
SMM = str(Path(PYTHON).parent / "smm-proxy")
LINK = "https://instagram.com/p/bench"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


class Stack(contextlib.ExitStack):
    def process(self, argv: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
        out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)

        def stop() -> None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

        self.callback(stop)
        return proc


def router_config(echomark: int, korean: int) -> str:
    return f"""
currency: USD
exchange_rates: {{KRW: "1380"}}
markup: {{percent: 30}}
providers:
  echomark: {{url: "http://127.0.0.1:{echomark}/api/v2", key: sim-key, currency: USD, max_connections: 64}}
  korean: {{url: "http://127.0.0.1:{korean}/api/v2", key: sim-key, currency: KRW, max_connections: 64}}
services:
  - id: 1
    routes: [{{provider: echomark, service: 1}}, {{provider: korean, service: 101}}]
  - id: 2
    routes: [{{provider: korean, service: 101}}, {{provider: echomark, service: 1}}]
imports:
  - {{provider: echomark, id_offset: 1000000}}
  - {{provider: korean, id_offset: 2000000}}
# One client sends thousands of requests a second here: a limit that lets them
# through (the limiter is still asked on every request, as in production).
fair_use: {{requests: "1000000000/minute"}}
"""


def run_wrk(url: str, lua: str, duration: float, connections: int = 16) -> dict[str, float]:
    """wrk -t2 -cN with the Lua script `lua`: requests per second, p50 latency (ms) and
    requests answered in all; any non-2xx reply is an error."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(lua)
    script.close()
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "-s", script.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors against {url}:\n{out}")
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    return {
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": float(p50.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p50.group(2)],
        "answered": int(re.search(r"(\d+) requests in", out).group(1)),
    }


def wrk(url: str, body: str, headers: dict[str, str], duration: float, connections: int = 16) -> tuple[float, float]:
    """Requests per second and p50 latency (ms) of a POST under wrk -t2 -cN."""
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    found = run_wrk(url, "\n".join(lines) + "\n", duration, connections)
    return found["rate"], found["p50"]


def raw_post(url: str, body: str, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """A reply's bytes as sent (not decompressed) and the headers that shape it."""
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request) as response:
        keep = {k: v for k, v in response.headers.items() if k.lower() in ("content-type", "content-encoding", "etag")}
        return response.read(), keep


def form(**fields: object) -> str:
    from urllib.parse import urlencode

    return urlencode({k: str(v) for k, v in fields.items()})


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def side_by_side(name: str, router_url: str, bare_url: str, body: str, headers: dict[str, str], args) -> dict:
    bare, routed = [], []
    for _ in range(args.rounds):
        bare.append(wrk(bare_url + f"?a={name}", body, headers, args.duration))
        routed.append(wrk(router_url, body, headers, args.duration))
    b = statistics.median(r for r, _ in bare), statistics.median(p for _, p in bare)
    r = statistics.median(r for r, _ in routed), statistics.median(p for _, p in routed)
    return {"bare_rps": b[0], "bare_p50": b[1], "router_rps": r[0], "router_p50": r[1], "ratio": r[0] / b[0]}


FLOORS = ("a", "b", "c")
READS = ("balance", "status", "services")


def read_floors(router_url: str, bare_url: str, bodies: dict[str, str], expected: dict[str, bytes], args) -> dict:
    """Each read against the three floors and the router, all four alternated in
    every round; medians. The router's reply is checked after each of its runs."""
    runs: dict[str, dict[str, list[tuple[float, float]]]] = {n: {k: [] for k in (*FLOORS, "router")} for n in READS}
    names = args.only or READS
    runs = {name: runs[name] for name in names}
    for _ in range(args.rounds):
        for name in names:
            for floor in FLOORS:
                runs[name][floor].append(wrk(f"{bare_url}?a={name}&floor={floor}", bodies[name], FORM, args.duration))
            runs[name]["router"].append(wrk(router_url, bodies[name], FORM, args.duration))
            answered = raw_post(router_url, bodies[name], FORM)[0]
            if answered != expected[name]:
                raise RuntimeError(f"the router answered {name} differently under load: {answered[:200]!r}")
    out: dict[str, dict[str, float]] = {}
    for name, by in runs.items():
        out[name] = {k: statistics.median(r for r, _ in v) for k, v in by.items()}
        out[name].update({f"{k}_p50": statistics.median(p for _, p in v) for k, v in by.items()})
    return out


def print_floors(floors: dict, args) -> None:
    print(f"\nReads: wrk -t2 -c16, {args.duration:.0f} s, median of {args.rounds} rounds, all four alternated\n")
    print("| read | (a) bare | (b) + auth read | (c) + tracked cache | router | router / a | router / b | target |")
    print("|---|---|---|---|---|---|---|---|")
    names = {"balance": "`balance`", "status": "`status`, one cached order", "services": "`services`"}
    for name, f in floors.items():
        ratio = f["router"] / f["a"]
        print(
            f"| {names[name]} | {f['a']:,.0f} req/s | {f['b']:,.0f} | {f['c']:,.0f} | {f['router']:,.0f} "
            f"(p50 {f['router_p50']:.2f} ms) | {ratio:.2f} | {f['router'] / f['b']:.2f} | >= 0.7 x (a) "
            f"({'met' if ratio >= 0.7 else 'NOT met'}) |"
        )


async def sequential_adds(router: str, panel: str, key: str, count: int) -> tuple[float, float]:
    """p50 of an add through the router, and straight to the panel (ms)."""
    async with httpx.AsyncClient(timeout=30) as http:

        async def timed(url: str, data: dict) -> float:
            started = time.perf_counter()
            reply = (await http.post(url, data=data)).json()
            assert "order" in reply, reply
            return (time.perf_counter() - started) * 1000

        direct, routed = [], []
        for i in range(count):
            fields = {"action": "add", "service": "1", "link": f"{LINK}/{i}", "quantity": "100"}
            direct.append(await timed(panel, {**fields, "key": "sim-key"}))
            routed.append(await timed(router, {**fields, "key": key}))
    return statistics.median(routed), statistics.median(direct)


async def amplification(router: str, panels: dict[str, str], key: str, orders: int, reads: int, ttl: float) -> dict:
    """Single-order status reads over open orders whose statuses go stale."""
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=32)) as http:
        ids: list[int] = []
        for start in range(0, orders, 50):
            batch = [
                http.post(
                    router,
                    data={
                        "key": key,
                        "action": "add",
                        "service": str(1 + i % 2),
                        "link": f"{LINK}/amp{i}",
                        "quantity": "100",
                    },
                )
                for i in range(start, min(orders, start + 50))
            ]
            ids += [r.json()["order"] for r in await asyncio.gather(*batch)]

        async def calls() -> int:
            total = 0
            for url in panels.values():
                state = (await http.get(url.replace("/api/v2", "/_sim/state"))).json()
                total += state["calls"].get("status", 0)
            return total

        before = await calls()
        started = time.perf_counter()
        queue = list(range(reads))

        async def reader() -> None:
            while queue:
                queue.pop()
                order = random.choice(ids)
                reply = (await http.post(router, data={"key": key, "action": "status", "order": str(order)})).json()
                assert "status" in reply, reply

        await asyncio.gather(*(reader() for _ in range(16)))
        elapsed = time.perf_counter() - started
        made = await calls() - before
    periods = max(elapsed / ttl, 1.0)
    return {"orders": orders, "reads": reads, "seconds": elapsed, "calls": made, "per_ttl": made / periods}


def status_calls(panels: dict[str, str]) -> int:
    total = 0
    for url in panels.values():
        with urllib.request.urlopen(url.replace("/api/v2", "/_sim/state")) as reply:
            total += json.load(reply)["calls"].get("status", 0)
    return total


def lookup_flatness(redis_url: str, router: str, key: str, order_id: int, args) -> dict[int, float]:
    """p50 of one cached status as the number of stored orders grows (records copied in)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    record = client.hgetall(f"bench:order:{{c:bench}}:{order_id}")
    sizes = [1_000, 100_000] + ([1_000_000] if args.million else [])
    start, p50s = int(client.get("bench:seq:order")) + 1, {}
    body = form(key=key, action="status", order=order_id)
    for size in sizes:
        with client.pipeline(transaction=False) as pipe:
            for order in range(start, start + max(0, size - start)):
                pipe.hset(f"bench:order:{{c:bench}}:{order}", mapping={**record, "id": order})
                pipe.hset(f"bench:owner:{{o:{order // 100}}}", str(order), "bench")
                if order % 10_000 == 0:
                    pipe.execute()
            pipe.execute()
        start = max(start, size + 1)
        p50s[size] = wrk(router, body, FORM, max(2.0, args.duration / 2))[1]
    return p50s


# -- the add: the router against the two-round-trip floor (benchmarks/addfloor.py) ------------

ADD_WRK = """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end
function init(args)
  n = 0
end
function request()
  n = n + 1
  local body = "key=%(key)s&action=add&service=1&quantity=100&link=https%%3A%%2F%%2Finstagram.com%%2Fp%%2F%(tag)s-" .. id .. "-" .. n
  return wrk.format("POST", nil, {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
"""


def wrk_adds(url: str, key: str, tag: str, duration: float, connections: int = 16) -> dict[str, float]:
    """Adds under wrk -t2 -cN, every one distinct (a per-thread id and a counter in the link:
    wrk's threads share one random sequence). Answers per second, p50 (ms), and answers in all."""
    return run_wrk(url, ADD_WRK % {"key": key, "tag": tag}, duration, connections)


def upstream_adds(panel: str) -> int:
    with urllib.request.urlopen(panel.replace("/api/v2", "/_sim/state")) as reply:
        return int(json.load(reply)["calls"].get("add", 0))


def adds_side_by_side(router: str, floor: str, kept: str, panel: str, key: str, args) -> dict:
    """The router, the floor and the floor with what the issue keeps (`addfloor.py --kept`) under
    the same distinct adds, rounds alternated; medians. Each run also counts the adds that reached
    the panel (its own count of `add` calls)."""
    runs: dict[str, list[dict[str, float]]] = {"floor": [], "router": [], "kept": []}
    for round_ in range(args.rounds):
        for name, url, client_key in (("floor", floor, "floor"), ("router", router, key), ("kept", kept, "floor")):
            before = upstream_adds(panel)
            run = wrk_adds(url, client_key, f"{name}{round_}", args.duration)
            time.sleep(0.5)  # adds answered late still reach the panel
            run["upstream"] = upstream_adds(panel) - before
            runs[name].append(run)

    def median(name: str, field: str) -> float:
        return statistics.median(run[field] for run in runs[name])

    return {name: {f: median(name, f) for f in ("rate", "p50", "answered", "upstream")} for name in runs}


async def sequential_overheads(
    router: str, floor: str, kept: str, panel: str, key: str, count: int
) -> dict[str, float]:
    """p50 of one add at a time: straight to the panel, through the floor, through the floor with
    what the issue keeps and through the router, alternated, every add distinct (ms)."""
    async with httpx.AsyncClient(timeout=30) as http:

        async def timed(url: str, data: dict[str, str]) -> float:
            started = time.perf_counter()
            reply = (await http.post(url, data=data)).json()
            assert "order" in reply, reply
            return (time.perf_counter() - started) * 1000

        times: dict[str, list[float]] = {"direct": [], "floor": [], "kept": [], "router": []}
        for i in range(count):
            fields = {"action": "add", "service": "1", "quantity": "100"}
            times["direct"].append(await timed(panel, {**fields, "link": f"{LINK}/sd{i}", "key": "sim-key"}))
            times["floor"].append(await timed(floor, {**fields, "link": f"{LINK}/sf{i}", "key": "floor"}))
            times["kept"].append(await timed(kept, {**fields, "link": f"{LINK}/sk{i}", "key": "floor"}))
            times["router"].append(await timed(router, {**fields, "link": f"{LINK}/sr{i}", "key": key}))
    return {name: statistics.median(values) for name, values in times.items()}


def memory_per_order(redis_url: str, prefix: str, router: str, key: str, duration: float) -> dict:
    """Redis' growth per order under distinct adds, everything counted (INFO used_memory), and
    where it goes (MEMORY USAGE of each key, grouped by kind, per order)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.execute_command("MEMORY", "PURGE")
    used = client.info("memory")["used_memory"]
    usage_before, records_before = _usage_by_kind(client, prefix)
    wrk_adds(router, key, "mem", duration)
    time.sleep(1.0)  # the last adds finish placing
    client.execute_command("MEMORY", "PURGE")
    grown = client.info("memory")["used_memory"] - used
    usage_after, records_after = _usage_by_kind(client, prefix)
    made = records_after - records_before
    kinds = {
        kind: (usage_after.get(kind, 0) - usage_before.get(kind, 0)) / made
        for kind in sorted(usage_after, key=lambda k: usage_before.get(k, 0) - usage_after[k])
    }
    # The fair-use window is the client's, not the orders': it holds the client's last `limit`
    # requests (600 at the default 600/minute), which the benchmark's lifted limit lets grow.
    window = usage_after.get("limits", 0) - usage_before.get("limits", 0)
    return {
        "orders": made,
        "per_order": grown / made,
        "per_order_without_window": (grown - window) / made,
        "by_kind": kinds,
    }


def _usage_by_kind(client: redis.Redis, prefix: str) -> tuple[dict[str, int], int]:
    """MEMORY USAGE of every key under `prefix`, summed by the kind its name starts
    with; and how many order records there are."""
    totals: dict[str, int] = {}
    records = 0
    names = list(client.scan_iter(match=f"{prefix}*", count=5000))
    for start in range(0, len(names), 5000):
        chunk = names[start : start + 5000]
        with client.pipeline(transaction=False) as pipe:
            for name in chunk:
                pipe.memory_usage(name, samples=0)
            for name, size in zip(chunk, pipe.execute(), strict=True):
                kind = re.split(r"[:{]", name[len(prefix) :], maxsplit=1)[0]
                totals[kind] = totals.get(kind, 0) + int(size or 0)
                records += kind == "order"
    return totals, records


def add_section(
    stack: Stack, work: Path, redis_url: str, env: dict[str, str], router: str, panel: str, key: str, args
) -> dict:
    """The add against its floor, and the add's memory: issue 17's add side."""
    urls = []
    for kept in ([], ["--kept", "--log", str(work / "kept-lines.log")]):
        port = free_port()
        stack.process(
            [
                PYTHON,
                str(ROOT / "benchmarks" / "addfloor.py"),
                "--port",
                str(port),
                "--redis",
                redis_url,
                "--panel",
                panel,
            ]
            + kept,
            log=work / ("addfloor-kept.log" if kept else "addfloor.log"),
        )
        urls.append(f"http://127.0.0.1:{port}/api/v2")
        for _ in range(100):
            with contextlib.suppress(Exception):
                urllib.request.urlopen(urllib.request.Request(urls[-1], data=form(link="x", quantity=100).encode()))
                break
            time.sleep(0.1)
    floor, kept_floor = urls
    found: dict[str, object] = {}
    found["sequential"] = asyncio.run(
        sequential_overheads(router, floor, kept_floor, panel, key, 100 if args.quick else 300)
    )
    print("  measured sequential adds", flush=True)
    found["concurrent"] = adds_side_by_side(router, floor, kept_floor, panel, key, args)
    print("  measured concurrent adds", flush=True)
    found["memory"] = memory_per_order(redis_url, env["SMM_PROXY_KEY_PREFIX"], router, key, args.memory_seconds)
    print("  measured memory per order", flush=True)
    return found


def stale_reads(stack: Stack, work: Path, env: dict[str, str], panels: dict[str, str], args) -> dict:
    """Upstream status calls per TTL for single-order reads over 1,000 open orders whose
    statuses go stale every 2 s: a router of its own (same Redis, own prefix)."""
    port = free_port()
    amp_env = {
        **env,
        "SMM_PROXY_KEY_PREFIX": "bench-stale:",
        "SMM_PROXY_STATUS_TTL": "2",
        "SMM_PROXY_SYNC_INTERVAL": "3600",
    }
    stack.process([SMM, "serve", "--port", str(port)], env=amp_env, log=work / "stale.log")
    wait_for(f"http://127.0.0.1:{port}/readyz")
    made = subprocess.run(
        [SMM, "clients", "add", "bench", "--balance", "100000000", "--json"],
        env={**os.environ, **amp_env},
        capture_output=True,
        text=True,
        check=True,
    )
    reads = 3000 if args.quick else 10_000
    url, key = f"http://127.0.0.1:{port}/api/v2", json.loads(made.stdout)["key"]
    return asyncio.run(amplification(url, panels, key, 1000, reads, 2.0))


KEPT = "the floor with what the issue keeps (a third round trip, four log lines)"


def print_add_section(found: dict) -> None:
    seq, conc, mem = found["sequential"], found["concurrent"], found["memory"]
    router_over, floor_over = seq["router"] - seq["direct"], seq["floor"] - seq["direct"]
    fl, ro, kept = conc["floor"], conc["router"], conc["kept"]

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print("\nThe add against its floor (two Redis round trips, no logs), alternated rounds, every add distinct\n")
    print("| figure | panel alone | floor | router | router / floor | target |")
    print("|---|---|---|---|---|---|")
    print(
        f"| `add` p50, one at a time | {seq['direct']:.2f} ms | {seq['floor']:.2f} ms (+{floor_over:.2f}) | "
        f"{seq['router']:.2f} ms (+{router_over:.2f}) | {router_over / floor_over:.2f} x the overhead | "
        f"+<= 1.5 ms ({met(router_over <= 1.5)}), <= 1.2 x ({met(router_over <= 1.2 * floor_over)}) |"
    )
    print(
        f"| `add`, wrk -t2 -c16 | | {fl['rate']:,.0f} orders/s, p50 {fl['p50']:.1f} ms | {ro['rate']:,.0f} "
        f"orders/s, p50 {ro['p50']:.1f} ms | {ro['rate'] / fl['rate']:.2f} | >= 0.9 ({met(ro['rate'] >= 0.9 * fl['rate'])}) |"
    )
    kept_over = seq["kept"] - seq["direct"]
    print(
        f"| {KEPT}, one at a time | | | "
        f"{seq['kept']:.2f} ms (+{kept_over:.2f}, `addfloor.py --kept`) | {kept_over / floor_over:.2f} x the overhead | |"
    )
    print(
        f"| {KEPT}, wrk -t2 -c16 | | | "
        f"{kept['rate']:,.0f} orders/s (`addfloor.py --kept`) | {kept['rate'] / fl['rate']:.2f} | |"
    )
    print(
        f"| adds that reached the panel, of those answered (a run) | | {fl['upstream']:,.0f} of {fl['answered']:,.0f} | "
        f"{ro['upstream']:,.0f} of {ro['answered']:,.0f} | | all |"
    )
    kinds = ", ".join(f"{kind} {size:.0f} B" for kind, size in mem["by_kind"].items() if abs(size) >= 1)
    print(
        f"| Redis growth per order (INFO used_memory) | | | {mem['per_order']:,.0f} B over {mem['orders']:,} orders; "
        f"{mem['per_order_without_window']:,.0f} B without the client's fair-use window (bounded per client) "
        f"| | <= 1,024 B ({met(mem['per_order'] <= 1024)}; {met(mem['per_order_without_window'] <= 1024)}) |"
    )
    print(f"\nwhere it goes (MEMORY USAGE by key kind, per order): {kinds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s: to see that it runs")
    parser.add_argument("--million", action="store_true", help="also time a status lookup among 10^6 stored orders")
    parser.add_argument("--adds", action="store_true", help="only the add side (its floor, memory, stale reads)")
    parser.add_argument("--memory-seconds", type=float, default=30, help="seconds of adds the memory figure spans")
    parser.add_argument("--reads", action="store_true", help="only the read floors (balance, status, services)")
    parser.add_argument("--only", choices=READS, action="append", help="with --reads: only these reads")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds = 2, 1
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="smm-bench-"))
    results: dict[str, object] = {}
    with Stack() as stack:
        redis_url = stack.enter_context(EmbeddedRedis())
        ports = {name: free_port() for name in ("echomark", "korean", "router", "bare", "amp", "two")}
        stack.process(
            [PYTHON, str(ROOT / "benchmarks" / "panel.py"), "--port", str(ports["echomark"]), "--services", "5000"],
            log=work / "echomark.log",
        )
        stack.process(
            [
                PYTHON,
                str(ROOT / "benchmarks" / "panel.py"),
                "--port",
                str(ports["korean"]),
                "--preset",
                "korean",
                "--first-order",
                "900000",
            ],
            log=work / "korean.log",
        )
        for name in ("echomark", "korean"):
            wait_for(f"http://127.0.0.1:{ports[name]}/_sim/state")
        config = work / "router.yaml"
        config.write_text(router_config(ports["echomark"], ports["korean"]))
        env = {
            "SMM_PROXY_REDIS_URL": redis_url,
            "SMM_PROXY_CONFIG": str(config),
            "SMM_PROXY_KEY_PREFIX": "bench:",
            "SMM_PROXY_DUPLICATE_WINDOW": "0",
            "SMM_PROXY_STATUS_TTL": "3600",
        }
        stack.process([SMM, "serve", "--port", str(ports["router"])], env=env, log=work / "router.log")
        wait_for(f"http://127.0.0.1:{ports['router']}/readyz")
        made = subprocess.run(
            [SMM, "clients", "add", "bench", "--balance", "100000000", "--json"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        key = json.loads(made.stdout)["key"]
        router = f"http://127.0.0.1:{ports['router']}/api/v2"
        bare = f"http://127.0.0.1:{ports['bare']}/api/v2"
        panels = {n: f"http://127.0.0.1:{ports[n]}/api/v2" for n in ("echomark", "korean")}
        if args.adds:
            results["add_side"] = add_section(stack, work, redis_url, env, router, panels["echomark"], key, args)
            results["stale"] = stale_reads(stack, work, env, panels, args)
            print_add_section(results["add_side"])
            stale = results["stale"]
            print(
                f"| stale status reads | {stale['calls']} upstream calls for {stale['reads']:,} reads over "
                f"{stale['orders']:,} orders in {stale['seconds']:.1f} s | {stale['per_ttl']:.1f} calls per TTL | <= 20 |"
            )
            (work / "results.json").write_text(json.dumps(results, indent=2))
            print(f"\nraw numbers and logs: {work}")
            return

        bodies = {
            "services": form(key=key, action="services"),
            "balance": form(key=key, action="balance"),
        }
        placed = [
            json.loads(
                raw_post(router, form(key=key, action="add", service=1, link=f"{LINK}/{i}", quantity=100), FORM)[0]
            )["order"]
            for i in range(100)
        ]
        bodies["status"] = form(key=key, action="status", order=placed[0])
        bodies["status_bulk_100"] = form(key=key, action="status", orders=",".join(map(str, placed)))
        gzip_headers = {**FORM, "Accept-Encoding": "gzip"}
        replies = {}
        for name, body in bodies.items():
            data, headers = raw_post(router, body, FORM)
            replies[name] = {"body": data.decode("latin-1"), "headers": headers}
        data, headers = raw_post(router, bodies["services"], gzip_headers)
        replies["services_gzip"] = {"body": data.decode("latin-1"), "headers": headers}
        results["services_bytes"] = {"plain": len(replies["services"]["body"]), "gzip": len(data)}
        (work / "replies.json").write_text(json.dumps(replies))
        stack.process(
            [
                PYTHON,
                str(ROOT / "benchmarks" / "bare.py"),
                "--port",
                str(ports["bare"]),
                "--replies",
                str(work / "replies.json"),
                "--redis",
                redis_url,
                "--read",
                f"bench:apikey:{hashlib.sha256(key.encode()).hexdigest()}",
            ],
            log=work / "bare.log",
        )
        wait_for(f"http://127.0.0.1:{ports['bare']}/api/v2?a=balance")

        expected = {name: replies[name]["body"].encode("latin-1") for name in READS}
        floors = results["floors"] = read_floors(router, bare, bodies, expected, args)
        print_floors(floors, args)
        if args.reads:
            (work / "results.json").write_text(json.dumps(results, indent=2))
            print(f"\nraw numbers and logs: {work}")
            return
        for name in READS:
            f = floors[name]
            results[name] = {
                "bare_rps": f["a"],
                "bare_p50": f["a_p50"],
                "router_rps": f["router"],
                "router_p50": f["router_p50"],
                "ratio": f["router"] / f["a"],
            }
        for name, body, headers in [
            ("services_gzip", bodies["services"], gzip_headers),
            ("status_bulk_100", bodies["status_bulk_100"], FORM),
        ]:
            results[name] = side_by_side(name, router, bare, body, headers, args)
            print(f"  measured {name}: {results[name]['ratio']:.2f} x bare", flush=True)

        add_body = form(key=key, action="add", service=1, link=LINK, quantity=100)
        sync_redis = redis.Redis.from_url(redis_url)
        memory_before, seq_before = sync_redis.info("memory")["used_memory"], int(sync_redis.get("bench:seq:order"))
        rates = [wrk(router, add_body, FORM, args.duration)[0] for _ in range(args.rounds)]
        results["add_16"] = statistics.median(rates)
        stored = int(sync_redis.get("bench:seq:order")) - seq_before
        results["memory"] = {
            "orders": stored,
            "per_order": (sync_redis.info("memory")["used_memory"] - memory_before) / stored,
        }
        sample = next(sync_redis.scan_iter(match="bench:order:*", count=1000))
        results["memory"]["record"] = sync_redis.memory_usage(sample)
        results["memory"]["encoding"] = sync_redis.object("encoding", sample).decode()

        # The same adds through two worker processes (one per core), against one.
        two_env = {**env, "SMM_PROXY_KEY_PREFIX": "bench-two:"}
        made = subprocess.run(
            [SMM, "clients", "add", "bench", "--balance", "100000000", "--json"],
            env={**os.environ, **two_env},
            capture_output=True,
            text=True,
            check=True,
        )
        two_key = json.loads(made.stdout)["key"]
        stack.process([SMM, "serve", "--port", str(ports["two"]), "--workers", "2"], env=two_env, log=work / "two.log")
        wait_for(f"http://127.0.0.1:{ports['two']}/readyz")
        two_body = form(key=two_key, action="add", service=1, link=LINK, quantity=100)
        rates = [
            wrk(f"http://127.0.0.1:{ports['two']}/api/v2", two_body, FORM, args.duration)[0] for _ in range(args.rounds)
        ]
        results["add_16_two_workers"] = statistics.median(rates)
        routed_p50, direct_p50 = asyncio.run(
            sequential_adds(router, f"http://127.0.0.1:{ports['echomark']}/api/v2", key, 300)
        )
        results["add_overhead"] = {
            "router_p50": routed_p50,
            "direct_p50": direct_p50,
            "overhead": routed_p50 - direct_p50,
        }

        # Upstream amplification: another router (same Redis, own prefix) whose statuses go stale every 2 s.
        amp_env = {
            **env,
            "SMM_PROXY_KEY_PREFIX": "bench-amp:",
            "SMM_PROXY_STATUS_TTL": "2",
            "SMM_PROXY_SYNC_INTERVAL": "3600",
        }
        stack.process([SMM, "serve", "--port", str(ports["amp"])], env=amp_env, log=work / "amp.log")
        wait_for(f"http://127.0.0.1:{ports['amp']}/readyz")
        made = subprocess.run(
            [SMM, "clients", "add", "bench", "--balance", "100000000", "--json"],
            env={**os.environ, **amp_env},
            capture_output=True,
            text=True,
            check=True,
        )
        amp_key = json.loads(made.stdout)["key"]
        results["amplification"] = asyncio.run(
            amplification(
                f"http://127.0.0.1:{ports['amp']}/api/v2",
                panels,
                amp_key,
                1000,
                3000 if args.quick else 10_000,
                2.0,
            )
        )
        # Background polling: two workers, 2 s interval, over the same 1,000 open orders.
        poll_env = {**amp_env, "SMM_PROXY_SYNC_INTERVAL": "2"}
        before = status_calls(panels)
        started = time.monotonic()
        workers = [
            stack.process([SMM, "worker", "--allow-volatile"], env=poll_env, log=work / f"worker{i}.log")
            for i in range(2)
        ]
        time.sleep(10.5)
        for proc in workers:
            proc.terminate()
        elapsed = time.monotonic() - started
        results["polling"] = {"orders": 1000, "calls": status_calls(panels) - before, "intervals": elapsed / 2}
        results["lookup"] = lookup_flatness(redis_url, router, key, placed[0], args)

    print_floors(results["floors"], args)
    print_table(results, args)
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nraw numbers and logs: {work}")


def print_table(r: dict, args) -> None:
    def row(name: str, key: str, target: float) -> str:
        x = r[key]
        ok = "met" if x["ratio"] >= target else "NOT met"
        return (
            f"| {name} | {x['bare_rps']:,.0f} req/s, p50 {x['bare_p50']:.1f} ms | {x['router_rps']:,.0f} req/s, "
            f"p50 {x['router_p50']:.1f} ms | {x['ratio']:.2f} | >= {target} ({ok}) |"
        )

    sizes = r["services_bytes"]
    amp, over = r["amplification"], r["add_overhead"]
    print(f"\nwrk -t2 -c16, {args.duration:.0f} s, median of {args.rounds} alternated rounds\n")
    print("| action | bare Starlette | router | ratio | target |")
    print("|---|---|---|---|---|")
    print(row(f"`services`, 5,019 services ({sizes['plain'] / 1e6:.2f} MB)", "services", 0.9))
    print(row(f"`services`, gzip ({sizes['gzip'] / 1e6:.2f} MB on the wire)", "services_gzip", 0.9))
    print(row("`balance`", "balance", 0.7))
    print(row("`status`, one cached order", "status", 0.7))
    print(row("`status`, 100 cached orders", "status_bulk_100", 0.5))
    print(
        f"| `add`, sequential, over calling the panel directly | {over['direct_p50']:.2f} ms | "
        f"{over['router_p50']:.2f} ms | +{over['overhead']:.2f} ms | <= 1 ms "
        f"({'met' if over['overhead'] <= 1 else 'NOT met'}) |"
    )
    print(
        f"| `add`, 16 concurrent | | {r['add_16']:,.0f} orders/s | | >= 1,500 "
        f"({'met' if r['add_16'] >= 1500 else 'NOT met'}) |"
    )
    print(
        f"| status reads, TTL 2 s, random orders | | {amp['calls']} upstream calls for {amp['reads']:,} reads "
        f"over {amp['orders']:,} orders in {amp['seconds']:.1f} s | {amp['per_ttl']:.1f} calls per TTL | <= 20 "
        f"({'met' if amp['per_ttl'] <= 20 else 'NOT met'}) |"
    )
    mem = r["memory"]
    print(
        f"| Redis per stored order | | {mem['per_order'] / 1024:.2f} KB over {mem['orders']:,} orders (record "
        f"{mem['record']} B, {mem['encoding']}) | | <= 1 KB ({'met' if mem['per_order'] <= 1024 else 'NOT met'}) |"
    )
    poll = r["polling"]
    per_100 = poll["calls"] / poll["intervals"] / (poll["orders"] / 100)
    print(
        f"| background polling, 2 workers, {poll['orders']:,} open orders | | {poll['calls']} upstream calls in "
        f"{poll['intervals']:.1f} intervals | {per_100:.2f} calls per 100 orders per interval | <= 1 "
        f"({'met' if per_100 <= 1 else 'NOT met'}) |"
    )
    two = r["add_16_two_workers"] / r["add_16"]
    print(
        f"| `add`, 16 concurrent, 2 workers | | {r['add_16_two_workers']:,.0f} orders/s | {two:.2f} x one worker | "
        f">= 1.7 ({'met' if two >= 1.7 else 'NOT met'}) |"
    )
    look = r["lookup"]
    first, last = min(look), max(look)
    print(
        "| `status` p50 as stored orders grow | | "
        + ", ".join(f"{n:,}: {p:.2f} ms" for n, p in look.items())
        + f" | {look[last] / look[first]:.2f} | flat |"
    )


if __name__ == "__main__":
    main()
