"""The HTTP edge: API v2 in, panel-shaped JSON out.

It only translates. Parameters come through the input boundary
(`proxy.edge.inputs`), which decodes every way a client sends them and
refuses what is not clean text. Every answer at the API is HTTP 200 JSON,
errors included, as panel clients expect; every other path and method gets a
JSON error too, never a redirect or a plain-text page. An unexpected failure
is logged and answered with a plain error, never a traceback; a store that is
down is one warning per interval, not a traceback per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import orjson
import uvicorn
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from proxy import logs
from proxy.accounts.fair_use import TOO_MANY_REQUESTS, RateWindow
from proxy.catalog.catalog import Listed
from proxy.edge import admin, dashboard, protocol
from proxy.edge.context import Context, RequestContext
from proxy.edge.inputs import Headers, header, read_params
from proxy.edge.signals import on_exit_signal, reload_on_hangup
from proxy.errors import BadInput, ClientGone, OrderRefused, ProtocolError
from proxy.money import format_amount
from proxy.ops.metrics import CONTENT_TYPE
from proxy.orders.actions import Failure, OrderView
from proxy.runtime import Runtime
from proxy.vocabulary import Errors, parse_id

log = logging.getLogger(__name__)

INTERNAL_ERROR = "Internal error, please try again later"
# Actions that change something: POST only (GET and HEAD never change anything).
CHANGES = frozenset({"add", "refill", "cancel"})
READ_ONLY_METHOD = "Send {action} as a POST request: GET and HEAD only read"
# A store outage is logged once per this many seconds.
OUTAGE_LOG_SECONDS = 10.0


def reply(body: object, status_code: int = 200) -> Response:
    """JSON as panels send it (orjson: the replies are on every request's path)."""
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


# What the API answers: a status, a body and its headers, sent as two ASGI
# messages (no response object a request). Starlette's Response sends the same.
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]
_JSON = (b"content-type", b"application/json")


def json_answer(body: object) -> Answer:
    """`body` as JSON (bytes are JSON already)."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return 200, data, [(b"content-length", b"%d" % len(data)), _JSON]


def services_answer(listed: Listed, headers: Headers) -> Answer:
    """The catalog's bytes as built once: gzipped when the client takes it, 304
    when it already has this version (If-None-Match)."""
    tags = [(b"etag", listed.etag.encode()), (b"vary", b"Accept-Encoding")]
    if listed.etag in (headers.get(b"if-none-match") or ""):
        return 304, b"", tags
    if "gzip" in (headers.get(b"accept-encoding") or ""):
        body = listed.gzipped
        tags.append((b"content-encoding", b"gzip"))
    else:
        body = listed.body
    return 200, body, [*tags, (b"content-length", b"%d" % len(body)), _JSON]


class Api:
    """The `/api/v2` endpoint, bound to a runtime: an ASGI app of its own, in
    the request context (`proxy.edge.context`), answering every error itself."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._outage_logged = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope)
        context = Context(scope, headers.last(b"x-request-id"))
        try:
            status, body, head = await self.answer(scope, receive, headers)
            head.append(context.id_header)
            context.status = status
            await send({"type": "http.response.start", "status": status, "headers": head})
            await send({"type": "http.response.body", "body": body})
        finally:
            context.close()

    async def answer(self, scope: Scope, receive: Receive, headers: Headers) -> Answer:
        started = time.perf_counter()
        seen = {"action": "none", "outcome": "ok"}
        try:
            body = await self.handle(scope, receive, headers, seen)
            if isinstance(body, Listed):
                return services_answer(body, headers)
            if isinstance(body, dict) and seen["outcome"] == "ok" and set(body) == {"error"}:
                seen["outcome"] = "error"
            return json_answer(body)
        except ClientGone:
            log.debug("client hung up before its request was read")
            seen["outcome"] = "gone"
            return 499, b"", [(b"content-length", b"0")]
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._outage_logged >= OUTAGE_LOG_SECONDS:
                self._outage_logged = now
                log.warning("store unavailable, answering errors: %s: %s", type(exc).__name__, exc)
            seen["outcome"] = "unavailable"
            return json_answer(protocol.error(INTERNAL_ERROR))
        except Exception:
            log.exception("unexpected error answering %s", scope["method"])
            seen["outcome"] = "internal"
            return json_answer(protocol.error(INTERNAL_ERROR))
        finally:
            self.runtime.metrics.request(seen["action"], seen["outcome"], time.perf_counter() - started)

    async def handle(self, scope: Scope, receive: Receive, headers: Headers, seen: dict[str, str]) -> object:
        try:
            params = await read_params(scope, receive, headers)
            idempotency_key = header(headers, "idempotency-key")
        except BadInput as exc:
            seen["outcome"] = "bad_input"
            return protocol.error(exc.message)
        client = await self.runtime.accounts.authenticate(params.get("key", "").strip())
        if client is None:
            seen["outcome"] = "unauthorized"
            return protocol.error(Errors.INVALID_KEY)
        post = scope["method"] == "POST"
        # On one server an add is counted by the script that opens its order (no round trip of
        # its own); anything that refuses it before that script counts it then.
        counted_later = post and params.get("action") == "add" and self.runtime.book.single
        if not counted_later and not await self.runtime.fair_use.request(client):
            seen["outcome"] = "limited"
            return protocol.error(TOO_MANY_REQUESTS)
        try:
            parsed = protocol.parse_request(params)
        except ProtocolError as exc:
            if counted_later and not await self.runtime.fair_use.request(client):
                seen["outcome"] = "limited"
                return protocol.error(TOO_MANY_REQUESTS)
            seen["outcome"] = "bad_request"
            return protocol.error(exc.message)
        seen["action"] = protocol.action_of(parsed)
        logs.bind(client=client, action=seen["action"])
        if not post and seen["action"] in CHANGES:
            seen["outcome"] = "bad_request"
            return protocol.error(READ_ONLY_METHOD.format(action=seen["action"]))
        rate = self.runtime.fair_use.windows(client) if counted_later else []
        return await self.dispatch(client, parsed, idempotency_key, rate)

    async def dispatch(
        self, client: str, request: protocol.Request, idempotency_key: str | None, rate: list[RateWindow]
    ) -> object:
        runtime = self.runtime
        actions = runtime.actions
        match request:
            case protocol.ServicesRequest():
                return (await actions.catalog_for(client)).listed
            case protocol.BalanceRequest():
                balance = await runtime.ledger.balance(client)
                return {"balance": format_amount(balance), "currency": runtime.config.currency}
            case protocol.AddRequest():
                try:
                    order = await actions.add(client, request.service, request.fields, idempotency_key, rate=rate)
                    return {"order": order}
                except OrderRefused as exc:
                    return protocol.error(exc.message)
            case protocol.StatusRequest(ids=[given], bulk=False):
                view = await actions.status_of(client, given)
                return render_failure(view) if isinstance(view, Failure) else status_json(view)
            case protocol.StatusRequest(ids=ids):
                return {given: render_status(v) for given, v in (await actions.status(client, ids)).items()}
            case protocol.RefillRequest(ids=ids, bulk=bulk):
                refills = await actions.refill(client, ids)
                if not bulk:
                    made = refills[ids[0]]
                    return render_failure(made) if isinstance(made, Failure) else {"refill": str(made)}
                return [
                    {
                        "order": echo_id(given),
                        "refill": render_failure(made) if isinstance(made, Failure) else made,
                    }
                    for given, made in refills.items()
                ]
            case protocol.RefillStatusRequest(ids=ids, bulk=bulk):
                refill_statuses = await actions.refill_status(client, ids)
                if not bulk:
                    outcome = refill_statuses[ids[0]]
                    return render_failure(outcome) if isinstance(outcome, Failure) else {"status": outcome}
                return [
                    {
                        "refill": echo_id(given),
                        "status": render_failure(outcome) if isinstance(outcome, Failure) else outcome,
                    }
                    for given, outcome in refill_statuses.items()
                ]
            case protocol.CancelRequest(ids=ids):
                cancels = await actions.cancel(client, ids)
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


# One order's status as JSON, by the view it renders: a view renders to the same
# bytes every time, and most reads ask again for what they asked before.
_status_json: dict[OrderView, bytes] = {}
STATUS_JSON_KEPT = 4096


def status_json(view: OrderView) -> bytes:
    data = _status_json.get(view)
    if data is None:
        data = orjson.dumps(render_status(view))
        if view.charge:  # a zero charge is not kept: 0 and -0 are one key, but print differently
            if len(_status_json) >= STATUS_JSON_KEPT:
                _status_json.clear()
            _status_json[view] = data
    return data


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
    """Alive: the process answers."""
    return JSONResponse({"status": "ok"})


READY_TIMEOUT = 0.5


async def readiness(runtime: Runtime) -> tuple[bool, dict[str, object]]:
    """Ready: Redis answers, the config is loaded, a provider can take orders.

    The details name providers: only `/admin/ready` (a token's) shows them;
    `/readyz` on the public port says ready or not."""
    checks: dict[str, object] = {"config": f"{len(runtime.config.providers)} providers"}
    ready = True
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await runtime.redis.ping()
            routable = await runtime.health.routable(runtime.providers)
        checks["redis"] = "ok"
        checks["routable_providers"] = sorted(routable)
        if not routable:
            ready = False
    except (RedisError, OSError, TimeoutError) as exc:
        checks["redis"] = f"unavailable ({type(exc).__name__})"
        ready = False
    return ready, checks


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods: the panel's error shape, with the HTTP status."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return reply(protocol.error(Errors.INCORRECT_REQUEST), status)


def bearer_ok(request: Request, token: str) -> bool:
    """Whether a request carries `token` as its bearer token."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_endpoint(runtime: Runtime, token: str | None) -> Callable[[Request], Awaitable[Response]]:
    """GET /metrics: with `token`, only for requests that carry it; None: for
    everyone who reaches it (the listener of its own, on its own address)."""

    async def metrics(request: Request) -> Response:
        if token is not None and not bearer_ok(request, token):
            return reply(protocol.error("Unauthorized"), 401)
        try:
            body = await runtime.metrics.render()
        except (RedisError, OSError) as exc:
            return reply(protocol.error(f"metrics unavailable: the store is down ({type(exc).__name__})"), 503)
        return Response(body, media_type=CONTENT_TYPE)

    return metrics


def metrics_app(runtime: Runtime) -> Starlette:
    """The metrics listener of its own (`SMM_PROXY_METRICS_HOST`:`SMM_PROXY_METRICS_PORT`):
    /metrics alone, no token; every other path a JSON 404."""
    app = Starlette(
        routes=[Route("/metrics", metrics_endpoint(runtime, None), methods=["GET"])],
        exception_handlers={HTTPException: http_error},
    )
    app.router.redirect_slashes = False
    return app


class _Listener(uvicorn.Server):
    """A second server in a process that has one: the signals are the first one's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def metrics_socket(host: str, port: int) -> socket.socket:
    """The metrics listener's socket, bound now: a taken port is refused before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


@contextlib.asynccontextmanager
async def serving_metrics(runtime: Runtime, sock: socket.socket | None) -> AsyncIterator[None]:
    """Answer GET /metrics on `sock` (no token: its address is the guard) while the block runs."""
    if sock is None:
        yield
        return
    config = uvicorn.Config(metrics_app(runtime), log_config=None, access_log=False, lifespan="off")
    server = _Listener(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="smm-proxy-metrics")
    host, port = sock.getsockname()[:2]
    log.info("metrics on http://%s:%s/metrics", host, port)
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait({task}, timeout=5)


API_PATHS = frozenset({"/api/v2", "/api/v2/"})
API_METHODS = frozenset({"GET", "HEAD", "POST"})


class ApiFirst:
    """The router's ASGI app: API v2 calls (GET, HEAD or POST to `/api/v2`) go
    straight to the `Api`, which keeps their request context itself;
    everything else (the admin API, health, metrics, lifespan, every 404 and
    405) goes to the Starlette app. Starlette's routing, its exception
    middleware, a Request and a Response cost about 6 µs a request, an eighth
    of a read's own work; the API answers every error itself."""

    def __init__(self, app: Starlette, api: Api) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in API_PATHS and scope["method"] in API_METHODS:
            await self.api(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(
    runtime: Runtime,
    *,
    close_runtime: bool = False,
    background: bool = False,
    metrics_listener: socket.socket | None = None,
) -> ApiFirst:
    """The router's ASGI app.

    With `background` it runs the sync loops (recovery, status polling) while
    it serves; with `metrics_listener` it answers /metrics on that socket too;
    with `close_runtime` it closes the runtime on shutdown.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if close_runtime:  # a served router: at SIGTERM, adds waiting for placement answer at once
            on_exit_signal(runtime.actions.stop_waiting)
        hangup = reload_on_hangup(runtime)
        await runtime.start()
        try:
            async with serving_metrics(runtime, metrics_listener):
                if background:
                    async with runtime.sync.background(runtime.settings.sync_interval):
                        yield
                else:
                    yield
        finally:
            hangup()
            if close_runtime:
                await runtime.aclose()

    api = Api(runtime)
    token = runtime.settings.metrics_token
    # Closed by default: without a token, /metrics is not served on the public port.
    public_metrics = [] if token is None else [Route("/metrics", metrics_endpoint(runtime, token.get_secret_value()))]

    async def ready(request: Request) -> Response:
        ok, _ = await readiness(runtime)
        return reply({"status": "ready" if ok else "not ready"}, 200 if ok else 503)

    # Closed by default: the dashboard is served only when the operator enables it.
    dashboard_routes = (
        dashboard.routes(
            runtime.operators,
            runtime.redis,
            runtime.keys,
            runtime.limits_storage,
            runtime.settings,
            lambda: runtime.config.currency,
        )
        if runtime.settings.dashboard
        else []
    )

    app = Starlette(
        middleware=[Middleware(RequestContext)],
        routes=[  # the API's other methods: 405
            Route("/api/v2", api, methods=["GET", "POST"]),
            Route("/api/v2/", api, methods=["GET", "POST"]),
            *admin.routes(runtime.operators, lambda: readiness(runtime)),
            *dashboard_routes,
            Route("/healthz", health),
            Route("/readyz", ready),
            *public_metrics,
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    return ApiFirst(app, api)
