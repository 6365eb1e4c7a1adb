"""The add floor: the least any design must pay for an `add`, as an app.

    python benchmarks/addfloor.py --port 18004 --redis URL --panel http://127.0.0.1:18001/api/v2

Two Redis round trips through redis-py (the same client library as the
router): one script that debits the charge and records the order as "may
have been sent" before the upstream call, and one write of the upstream ID
after it; the upstream call over aiohttp's pool; no logs, no routing, no
validation. It answers {"order": ID}. benchmarks/run.py measures the router
against it, side by side.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import orjson
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
    args = parser.parse_args()
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
        if not session:
            session.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)))
        body = {"key": "sim-key", "action": "add", "service": "1", "link": link, "quantity": quantity}
        async with session[0].post(args.panel, data=body) as reply:
            upstream = orjson.loads(await reply.read())["order"]
        await redis.hset(f"{PREFIX}order:{order}", mapping={"state": "placed", "upstream": upstream})  # round trip 2
        return Response(orjson.dumps({"order": order}), media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await redis.set(PREFIX + "balance", 10**15)
        yield

    app = Starlette(routes=[Route("/api/v2", add, methods=["POST"])], lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
