"""The baseline: a bare Starlette app answering recorded bytes from memory.

    python benchmarks/bare.py --port 18003 --replies replies.json

`replies.json` maps a name to {"body": <latin-1 text of the bytes>, "headers": {...}};
a POST to /api/v2?a=<name> answers those bytes, as fast as Starlette can.
"""

from __future__ import annotations

import argparse
import json

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replies", required=True)
    args = parser.parse_args()
    with open(args.replies) as file:
        replies = {name: (reply["body"].encode("latin-1"), reply["headers"]) for name, reply in json.load(file).items()}

    async def endpoint(request: Request) -> Response:
        await request.body()
        body, headers = replies[request.query_params["a"]]
        return Response(body, headers=headers)

    app = Starlette(routes=[Route("/api/v2", endpoint, methods=["GET", "POST"])])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
