"""The HTTP edge: API v2 in, panel-shaped JSON out.

It only translates. Parameters are read from the query string, a form
(url-encoded or multipart) or a JSON body; the key may also come in an
`X-Api-Key` header. Every answer is HTTP 200 JSON, errors included, as
panel clients expect; an unexpected failure is logged and answered with a
plain error, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import protocol
from .money import format_amount
from .protocol import ProtocolError
from .runtime import Runtime
from .vocabulary import Errors

log = logging.getLogger("proxy.app")

MAX_BODY_BYTES = 1024 * 1024


class BadBody(Exception):
    pass


async def read_params(request: Request) -> dict[str, str]:
    """The call's flat parameters, whatever way the client sent them."""
    params = dict(request.query_params)
    if request.method == "POST":
        content_type = request.headers.get("content-type", "")
        if "json" in content_type:
            try:
                body = json.loads(await request.body() or b"{}")
            except (ValueError, UnicodeDecodeError):
                raise BadBody() from None
            if not isinstance(body, dict):
                raise BadBody()
            for name, value in body.items():
                if isinstance(value, bool):
                    params[name] = "1" if value else "0"
                elif isinstance(value, str | int | float):
                    params[name] = str(value)
                elif isinstance(value, list) and all(isinstance(v, str | int) for v in value):
                    params[name] = ",".join(map(str, value))
                elif value is not None:
                    raise BadBody()
        elif "form" in content_type:
            async with request.form() as form:
                for name, value in form.multi_items():
                    if isinstance(value, str):
                        params[name] = value
    header_key = request.headers.get("x-api-key")
    if header_key and not params.get("key"):
        params["key"] = header_key
    return params


def reply(body: object) -> Response:
    return JSONResponse(body)


class Api:
    """The `/api/v2` endpoint, bound to a runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def endpoint(self, request: Request) -> Response:
        try:
            return await self.handle(request)
        except Exception:
            log.exception("unexpected error answering %s", request.method)
            return reply(protocol.error("Internal error, please try again later"))

    async def handle(self, request: Request) -> Response:
        try:
            params = await read_params(request)
        except BadBody:
            return reply(protocol.error(Errors.INCORRECT_REQUEST))
        client = await self.runtime.accounts.authenticate(params.get("key", "").strip())
        if client is None:
            return reply(protocol.error(Errors.INVALID_KEY))
        try:
            parsed = protocol.parse_request(params)
        except ProtocolError as exc:
            return reply(protocol.error(exc.message))
        return reply(await self.dispatch(client, parsed))

    async def dispatch(self, client: str, request: protocol.Request) -> object:
        runtime = self.runtime
        match request:
            case protocol.ServicesRequest():
                return (await runtime.catalog()).public()
            case protocol.BalanceRequest():
                balance = await runtime.ledger.balance(client)
                return {"balance": format_amount(balance), "currency": runtime.config.currency}
        return protocol.error(Errors.INCORRECT_REQUEST)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(runtime: Runtime, *, close_runtime: bool = False) -> Starlette:
    """The router's ASGI app. With `close_runtime` it closes the runtime on shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if close_runtime:
                await runtime.aclose()

    api = Api(runtime)
    return Starlette(
        routes=[
            Route("/api/v2", api.endpoint, methods=["GET", "POST"]),
            Route("/api/v2/", api.endpoint, methods=["GET", "POST"]),
            Route("/healthz", health),
        ],
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
