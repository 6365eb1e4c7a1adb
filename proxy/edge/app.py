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
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message

from proxy import protocol
from proxy.money import format_amount
from proxy.ops import sync
from proxy.orders.desk import Failure, OrderView
from proxy.protocol import ProtocolError, parse_id
from proxy.runtime import Runtime
from proxy.store import warn_if_evicting
from proxy.vocabulary import Errors

log = logging.getLogger("proxy.app")

MAX_BODY_BYTES = 1024 * 1024


TOO_LARGE = "Request too large"


class BadBody(Exception):
    def __init__(self, message: str = Errors.INCORRECT_REQUEST) -> None:
        super().__init__(message)
        self.message = message


async def read_body(request: Request) -> bytes:
    """The body, refused past MAX_BODY_BYTES before it is all in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadBody(TOO_LARGE)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadBody(TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_params(request: Request) -> dict[str, str]:
    """The call's flat parameters, whatever way the client sent them."""
    params = dict(request.query_params)
    if request.method == "POST":
        content_type = request.headers.get("content-type", "")
        raw = await read_body(request)
        if "json" in content_type:
            try:
                body = json.loads(raw or b"{}")
            except (ValueError, UnicodeDecodeError, RecursionError):
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

            async def replay() -> Message:
                return {"type": "http.request", "body": raw, "more_body": False}

            async with Request(request.scope, replay).form() as form:
                for name, value in form.multi_items():
                    if isinstance(value, str):
                        params[name] = value
        elif not content_type and raw.strip():
            # Panels read a body sent without a Content-Type as a form: so do we.
            try:
                pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
            except (UnicodeDecodeError, ValueError):
                raise BadBody() from None
            params.update(pairs)
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
        except BadBody as exc:
            return reply(protocol.error(exc.message))
        client = await self.runtime.accounts.authenticate(params.get("key", "").strip())
        if client is None:
            return reply(protocol.error(Errors.INVALID_KEY))
        try:
            parsed = protocol.parse_request(params)
        except ProtocolError as exc:
            return reply(protocol.error(exc.message))
        idempotency_key = request.headers.get("idempotency-key", "").strip() or None
        return reply(await self.dispatch(client, parsed, idempotency_key))

    async def dispatch(self, client: str, request: protocol.Request, idempotency_key: str | None) -> object:
        runtime = self.runtime
        desk = runtime.desk
        match request:
            case protocol.ServicesRequest():
                return (await runtime.catalog()).public()
            case protocol.BalanceRequest():
                balance = await runtime.ledger.balance(client)
                return {"balance": format_amount(balance), "currency": runtime.config.currency}
            case protocol.AddRequest():
                try:
                    return {"order": await desk.add(client, request, idempotency_key)}
                except ProtocolError as exc:
                    return protocol.error(exc.message)
            case protocol.StatusRequest(ids=ids, bulk=bulk):
                statuses = {given: render_status(v) for given, v in (await desk.status(client, ids)).items()}
                return statuses if bulk else statuses[ids[0]]
            case protocol.RefillRequest(ids=ids, bulk=bulk):
                refills = await desk.refill(client, ids)
                if not bulk:
                    outcome = refills[ids[0]]
                    return render_failure(outcome) if isinstance(outcome, Failure) else {"refill": str(outcome)}
                return [
                    {"order": echo_id(given), "refill": render_failure(outcome) if isinstance(outcome, Failure) else outcome}
                    for given, outcome in refills.items()
                ]
            case protocol.RefillStatusRequest(ids=ids, bulk=bulk):
                statuses = await desk.refill_status(client, ids)
                if not bulk:
                    outcome = statuses[ids[0]]
                    return render_failure(outcome) if isinstance(outcome, Failure) else {"status": outcome}
                return [
                    {"refill": echo_id(given), "status": render_failure(outcome) if isinstance(outcome, Failure) else outcome}
                    for given, outcome in statuses.items()
                ]
            case protocol.CancelRequest(ids=ids):
                cancels = await desk.cancel(client, ids)
                return [
                    {"order": echo_id(given), "cancel": render_failure(outcome) if isinstance(outcome, Failure) else 1}
                    for given, outcome in cancels.items()
                ]
        return protocol.error(Errors.INCORRECT_REQUEST)


def echo_id(given: str) -> int | str:
    """An ID as bulk replies echo it: an integer where it is one."""
    return parse_id(given) or given


def render_failure(failure: Failure) -> dict[str, str]:
    return protocol.error(failure.message)


def render_status(view: OrderView | Failure) -> dict[str, str]:
    if isinstance(view, Failure):
        return render_failure(view)
    return {
        "charge": format_amount(view.charge),
        "start_count": str(view.start_count),
        "status": view.status,
        "remains": str(view.remains),
        "currency": view.currency,
    }


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def render_metrics(runtime: Runtime) -> str:
    """Order counters and working-set sizes, in Prometheus' text format."""
    counters = await runtime.book.metrics()
    lines = [
        "# HELP smm_proxy_orders_total Orders by outcome of their placement.",
        "# TYPE smm_proxy_orders_total counter",
    ]
    for outcome in ("placed", "unknown", "failed", "duplicate", "attention", "late_accept", "claimed_twice"):
        lines.append(f'smm_proxy_orders_total{{outcome="{outcome}"}} {counters.get(f"orders_{outcome}", 0)}')
    blocked = await runtime.health.blocked(runtime.providers)
    lines += [
        "# HELP smm_proxy_provider_blocked 1 while a provider is out of routing (it bills in another currency).",
        "# TYPE smm_proxy_provider_blocked gauge",
        *(f'smm_proxy_provider_blocked{{provider="{name}"}} {int(name in blocked)}' for name in runtime.providers),
    ]
    for group, meaning in (
        ("unknown", "Orders whose outcome is unknown, waiting for an operator."),
        ("open", "Placed orders not yet final."),
        ("inflight", "Orders being sent upstream."),
        ("attention", "Orders an operator must look at (see their attention note)."),
    ):
        lines += [
            f"# HELP smm_proxy_orders_{group} {meaning}",
            f"# TYPE smm_proxy_orders_{group} gauge",
            f"smm_proxy_orders_{group} {await runtime.book.count(group)}",
        ]
    return "\n".join(lines) + "\n"


def create_app(runtime: Runtime, *, close_runtime: bool = False, background: bool = False) -> Starlette:
    """The router's ASGI app.

    With `background` it runs the sync loops (recovery, status polling) while
    it serves; with `close_runtime` it closes the runtime on shutdown.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await warn_if_evicting(runtime.redis)
            if background:
                async with sync.background(runtime, runtime.settings.sync_interval):
                    yield
            else:
                yield
        finally:
            if close_runtime:
                await runtime.aclose()

    api = Api(runtime)

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(await render_metrics(runtime), media_type="text/plain; version=0.0.4")
    return Starlette(
        routes=[
            Route("/api/v2", api.endpoint, methods=["GET", "POST"]),
            Route("/api/v2/", api.endpoint, methods=["GET", "POST"]),
            Route("/healthz", health),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )
