"""The add floor: the least any design must pay for an `add`, as an app.

    python benchmarks/addfloor.py --port 18004 --redis URL --panel http://127.0.0.1:18001/api/v2

Two Redis round trips through redis-py (the same client library as the
router): one script that debits the charge and records the order as "may
have been sent" before the upstream call, and one write of the upstream ID
after it; the upstream call over aiohttp's pool; no logs, no routing, no
validation. It answers {"order": ID}. benchmarks/run.py measures the router
against it, side by side.

`--kept` adds what issue 17 keeps beyond that floor, and nothing else:
`reserved` and `submitted` apart (a third round trip, before the upstream
call) and the router's four log lines an add (reserved, submitted, placed,
the access line), written by `proxy.logs` as a served router writes them
(JSON at INFO, to `--log`). No state table, ledger, routing or validation:
what is left between it and the router is those.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy import logs  # noqa: E402

PREFIX = "floor:"
OPEN = """
local balance = redis.call('DECRBY', KEYS[1], ARGV[1])
if balance < 0 then
  redis.call('INCRBY', KEYS[1], ARGV[1])
  return -1
end
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3] .. id, 'state', 'submitted', 'charge', ARGV[1], 'link', ARGV[2], 'quantity', ARGV[3])
return id
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--panel", required=True)
    parser.add_argument("--kept", action="store_true", help="a third round trip and four log lines an add")
    parser.add_argument("--log", default="/dev/null", help="where --kept writes its log lines")
    args = parser.parse_args()
    book, access = logging.getLogger("proxy.orders.book"), logging.getLogger("proxy.access")
    if args.kept:
        logs.configure("json", "info", stream=open(args.log, "a"))  # noqa: SIM115  # the process' whole life
    redis = aioredis.Redis.from_url(args.redis, decode_responses=True, max_connections=64)
    opening = redis.register_script(OPEN)
    session: list[aiohttp.ClientSession] = []

    async def add(request: Request) -> Response:
        form = await request.form()
        link, quantity = str(form["link"]), str(form["quantity"])
        order = await opening(
            keys=[PREFIX + "balance", PREFIX + "seq", PREFIX + "order:"], args=[117, link, quantity]
        )  # round trip 1
        if order < 0:
            return Response(b'{"error":"Not enough funds on balance"}', media_type="application/json")
        if args.kept:
            logs.info(book, f"order {order} reserved: 0.117 charged", {"order": order, "client": "floor"})
            await redis.hset(f"{PREFIX}order:{order}", "state", "submitted")  # reserved and submitted apart
            logs.info(book, f"order {order} submit: reserved -> submitted", {"order": order, "transition": "submit"})
        if not session:
            session.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)))
        body = {"key": "sim-key", "action": "add", "service": "1", "link": link, "quantity": quantity}
        async with session[0].post(args.panel, data=body) as reply:
            upstream = orjson.loads(await reply.read())["order"]
        await redis.hset(f"{PREFIX}order:{order}", mapping={"state": "placed", "upstream": upstream})  # round trip 2
        if args.kept:
            logs.info(book, f"order {order} accept: submitted -> placed", {"order": order, "transition": "accept"})
            logs.info(access, "POST /api/v2 200", {"status": 200, "method": "POST", "path": "/api/v2", "order": order})
        return Response(orjson.dumps({"order": order}), media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await redis.set(PREFIX + "balance", 10**15)
        yield

    app = Starlette(routes=[Route("/api/v2", add, methods=["POST"])], lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
