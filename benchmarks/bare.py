"""The floors: a bare Starlette app answering recorded bytes from memory.

    python benchmarks/bare.py --port 18003 --replies replies.json [--redis URL --read KEY]

`replies.json` maps a name to {"body": <latin-1 text of the bytes>, "headers": {...}};
a POST to /api/v2?a=<name> answers those bytes, as fast as Starlette can:
floor (a). With `--redis` and `--read`, `&floor=b` first reads KEY through
redis-py (the router's own pool, `proxy.store.connect`): floor (b), what one
Redis read a request costs; `&floor=c` reads it through the tracked cache
(`proxy.tracking`, a hit once warm): floor (c).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.store import connect  # noqa: E402
from proxy.tracking import TrackedCache  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replies", required=True)
    parser.add_argument("--redis", help="the Redis floors (b) and (c) read from")
    parser.add_argument("--read", help="the key floors (b) and (c) read (the client's API key entry)")
    args = parser.parse_args()
    with open(args.replies) as file:
        replies = {name: (reply["body"].encode("latin-1"), reply["headers"]) for name, reply in json.load(file).items()}
    redis = connect(args.redis) if args.redis else None
    key = args.read or ""
    cache = TrackedCache(redis, [key.rsplit(":", 1)[0] + ":"]) if redis is not None and key else None

    def load() -> object:
        assert redis is not None
        return redis.get(key)

    async def endpoint(request: Request) -> Response:
        await request.body()
        query = request.query_params
        floor = query.get("floor", "a")
        if floor == "b":
            assert redis is not None
            if await redis.get(key) is None:
                return Response(b"no such key", status_code=500)
        elif floor == "c":
            assert cache is not None
            if await cache.get(key, load) is None:  # type: ignore[arg-type]
                return Response(b"no such key", status_code=500)
        body, headers = replies[query["a"]]
        return Response(body, headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if cache is not None:
            await cache.start()
        yield
        if cache is not None:
            await cache.aclose()

    app = Starlette(routes=[Route("/api/v2", endpoint, methods=["GET", "POST"])], lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
