"""The admin HTTP API under /admin/: what the CLI does, for a reseller's own panel.

Every request carries `Authorization: Bearer <token>`, a token made with
`smm-proxy admin add NAME --role read|operator|owner [--expires 90d]`. A
token counts only through the admin registry (`proxy.ops.admins`), until it
expires; each route needs the role the matrix says for its action
(`proxy.ops.roles.NEEDS`): a read token gets 403 on anything but reads.
Changes are audited under `admin:NAME`, with the source address and the
request ID. GET and HEAD only read, on every route.

Bodies are JSON objects of at most 64 KiB (read in pieces, refused as soon
as they pass it); answers are the operators' answers as JSON
(`proxy.ops.answers.as_json`, the same the CLI prints with `--json`),
errors `{"error": ...}`: 400 bad input, 401 no valid token, 403 the role may
not, 404 not found, 405 method, 409 refused, 413 too large, 503 the store
is down (one warning a while in the log, not a traceback a request).

    GET  /admin/clients                      POST /admin/clients {name, balance?}          (owner)
    GET  /admin/clients/{name}
    POST /admin/clients/{name}/topup {amount, ref?, memo?}
    POST /admin/clients/{name}/adjust {amount, reason, ref?}
    POST /admin/clients/{name}/disable       POST /admin/clients/{name}/enable
    POST /admin/clients/{name}/rotate-key    (owner; answers {"name", "key"})
    POST /admin/clients/{name}/terms {markup?, duplicate_window?, same_link?}
    POST /admin/clients/{name}/rates {service, rate | clear: true}
    GET  /admin/clients/{name}/ledger?limit=
    GET  /admin/orders?state=&client=&link=&upstream_order=&since=&until=&limit=
    GET  /admin/orders/queues (how many orders are in flight, open, unknown, for attention)
    GET  /admin/orders/{id}                  POST /admin/orders/{id}/resolve {upstream_order | failed: true}
    GET  /admin/orders/{id}/actions (the audit entries naming it)   GET /admin/orders/{id}/events (events about it)
    POST /admin/orders/{id}/refund {total}   POST /admin/orders/{id}/ack
    POST /admin/orders/{id}/close {refund, reason?}                                 POST /admin/orders/archive {older_than}
    (each verdict with `"dry_run": true`: what it would do, the money it would move, nothing done)
    GET  /admin/providers                    POST /admin/providers/check
    GET  /admin/providers/calls (upstream calls over the last hour: count, failure rate, mean latency)
    GET  /admin/report?since=7d&by=provider|service|client|day  GET  /admin/ready (readiness, with providers)
    GET  /admin/audit?limit=                 GET  /admin/audit/verify
    GET  /admin/admins                       POST /admin/admins {name, role, expires?}      (owner)
    POST /admin/admins/{name}/remove                                                       (owner)
    POST /admin/providers/{name}/approve {services?: "1,2"}   (held price changes; all if none named)
    GET  /admin/events?since=1h&limit=&kind=   (the operators' event stream, newest first)
    POST /admin/config/reload              (owner; a bad file: 400 with its problems, the running config stays)

Every change takes an optional `reason`, kept in the audit log.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy import logs
from proxy.edge.inputs import clean
from proxy.errors import BadInput, Forbidden, Invalid, NotFound, OperatorError
from proxy.ops.answers import as_json
from proxy.ops.events import READ_LIMIT
from proxy.ops.operators import Operators
from proxy.ops.reports import GROUPINGS, since
from proxy.ops.roles import Actor, may, needs

log = logging.getLogger(__name__)

MAX_ADMIN_BODY = 64 * 1024
TOO_LARGE = "Request too large"
UNAVAILABLE = "the store is unavailable: try again later"
# A store outage is logged once per this many seconds.
OUTAGE_LOG_SECONDS = 10.0

Handler = Callable[[Request, Operators, Actor], Awaitable[object]]
Readiness = Callable[[], Awaitable[tuple[bool, dict[str, object]]]]


class TooLarge(BadInput):
    def __init__(self) -> None:
        super().__init__(TOO_LARGE)


def _error(message: str, status: int) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object a change sends, read in pieces: refused past 64 KiB before it is all in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_ADMIN_BODY:
        raise TooLarge()
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_ADMIN_BODY:
                raise TooLarge()
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadInput("the body was cut off") from None
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise BadInput("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadInput("the body must be a JSON object")
    for value in body.values():
        if isinstance(value, str):
            clean(value)
        elif isinstance(value, float) and value != value:
            raise BadInput("values must be text, numbers or booleans")
        elif value is not None and not isinstance(value, int | float | bool):
            raise BadInput("values must be text, numbers or booleans")
    return body


def _int(text: str | None, name: str, default: int | None = None) -> int:
    if text is None or text == "":
        if default is None:
            raise BadInput(f"{name} is required")
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise BadInput(f"{name} must be a whole number")
    return int(text)


def _text(body: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadInput(f"{name} is required")
        return None
    if isinstance(value, bool):
        raise BadInput(f"{name} must be text or a number")
    return str(value)


def _reason(body: dict[str, Any]) -> str:
    return _text(body, "reason", False) or ""


def _when(text: str | None, name: str) -> float | None:
    if not text:
        return None
    try:
        return since(text)
    except ValueError as exc:
        raise BadInput(f"{name}: {exc}") from None


# -- handlers: (request, operators, actor) -> an answer ---------------------------------


async def list_clients(request: Request, ops: Operators, actor: Actor) -> object:
    return await ops.clients()


async def show_client(request: Request, ops: Operators, actor: Actor) -> object:
    return await ops.client(request.path_params["name"])


async def create_client(request: Request, ops: Operators, actor: Actor) -> object:
    body = await _body(request)
    return await ops.create_client(actor, _text(body, "name") or "", body.get("balance", "0"), _reason(body))


async def topup(request: Request, ops: Operators, actor: Actor) -> object:
    body = await _body(request)
    return await ops.topup(
        actor,
        request.path_params["name"],
        _text(body, "amount"),
        ref=_text(body, "ref", False),
        memo=_text(body, "memo", False) or "",
        reason=_reason(body),
    )


async def adjust(request: Request, ops: Operators, actor: Actor) -> object:
    body = await _body(request)
    name = request.path_params["name"]
    return await ops.adjust(actor, name, _text(body, "amount"), _reason(body), ref=_text(body, "ref", False))


async def disable(request: Request, ops: Operators, actor: Actor) -> object:
    return await ops.disable_client(actor, request.path_params["name"], _reason(await _body(request)))


async def enable(request: Request, ops: Operators, actor: Actor) -> object:
    return await ops.enable_client(actor, request.path_params["name"], _reason(await _body(request)))


async def rotate_key(request: Request, ops: Operators, actor: Actor) -> object:
    return await ops.rotate_key(actor, request.path_params["name"], _reason(await _body(request)))


async def terms(request: Request, ops: Operators, actor: Actor) -> object:
    body = await _body(request)
    return await ops.set_terms(
        actor,
        request.path_params["name"],
        markup=_text(body, "markup", False),
        duplicate_window=_text(body, "duplicate_window", False),
        same_link=_text(body, "same_link", False),
        reason=_reason(body),
    )


async def rates(request: Request, ops: Operators, actor: Actor) -> object:
    body = await _body(request)
    clear = _flag(body, "clear")
    rate = None if clear else _text(body, "rate")
    return await ops.set_rate(actor, request.path_params["name"], _text(body, "service"), rate, reason=_reason(body))


async def ledger(request: Request, ops: Operators, actor: Actor) -> object:
    limit = request.query_params.get("limit")
    return await ops.ledger(request.path_params["name"], None if limit is None else limit)


async def orders(request: Request, ops: Operators, actor: Actor) -> object:
    query = request.query_params
    upstream = query.get("upstream_order")
    return await ops.orders(
        query.get("state") or None,
        query.get("client") or None,
        query.get("limit") or 50,
        link=query.get("link") or None,
        upstream_order=None if not upstream else _int(upstream, "upstream_order"),
        since=_when(query.get("since"), "since"),
        until=_when(query.get("until"), "until"),
    )


async def order(request: Request, ops: Operators, actor: Actor) -> object:
    return await ops.order(_int(request.path_params["id"], "id"))


async def queues(request: Request, ops: Operators, actor: Actor) -> object:
    return await ops.queues()


async def order_actions(request: Request, ops: Operators, actor: Actor) -> object:
    return await ops.order_actions(_int(request.path_params["id"], "id"))


async def order_events(request: Request, ops: Operators, actor: Actor) -> object:
    return await ops.order_events(_int(request.path_params["id"], "id"))


def _flag(body: dict[str, Any], name: str) -> bool:
    """A yes/no field: JSON true or false, or absent (false). Anything else is
    refused: "dry_run": "true" read as false would do for real what was only
    to be previewed."""
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadInput(f"{name} is true or false (a JSON boolean), not {value!r}")
    return value


def _dry_run(body: dict[str, Any]) -> bool:
    return _flag(body, "dry_run")


async def resolve(request: Request, ops: Operators, actor: Actor) -> object:
    body = await _body(request)
    upstream = body.get("upstream_order")
    order_id = _int(request.path_params["id"], "id")
    upstream_order = None if upstream is None else _int(str(upstream), "upstream_order")
    failed = _flag(body, "failed")
    if _dry_run(body):
        return await ops.preview(actor, order_id, "order.resolve", upstream_order=upstream_order, failed=failed)
    return await ops.resolve(actor, order_id, upstream_order=upstream_order, failed=failed, reason=_reason(body))


async def refund(request: Request, ops: Operators, actor: Actor) -> object:
    body = await _body(request)
    order_id, total = _int(request.path_params["id"], "id"), _text(body, "total")
    if _dry_run(body):
        return await ops.preview(actor, order_id, "order.refund", total=total)
    return await ops.refund(actor, order_id, total, _reason(body))


async def ack(request: Request, ops: Operators, actor: Actor) -> object:
    body = await _body(request)
    order_id = _int(request.path_params["id"], "id")
    if _dry_run(body):
        return await ops.preview(actor, order_id, "order.ack")
    return await ops.acknowledge(actor, order_id, _reason(body))


async def close(request: Request, ops: Operators, actor: Actor) -> object:
    body = await _body(request)
    order_id, total = _int(request.path_params["id"], "id"), _text(body, "refund")
    if _dry_run(body):
        return await ops.preview(actor, order_id, "order.close", total=total)
    return await ops.close(actor, order_id, total, _reason(body))


async def archive(request: Request, ops: Operators, actor: Actor) -> object:
    body = await _body(request)
    before = _when(_text(body, "older_than"), "older_than")
    assert before is not None  # _text refuses an absent one
    return await ops.archive(actor, before, _reason(body))


async def providers(request: Request, ops: Operators, actor: Actor) -> object:
    if "check" in request.query_params:
        raise BadInput("checking the providers changes what the router knows of them: POST /admin/providers/check")
    return await ops.providers()


async def provider_calls(request: Request, ops: Operators, actor: Actor) -> object:
    return list((await ops.provider_calls()).values())


async def check_providers(request: Request, ops: Operators, actor: Actor) -> object:
    return await ops.providers(check=True)


async def report(request: Request, ops: Operators, actor: Actor) -> object:
    by = request.query_params.get("by", "provider")
    if by not in GROUPINGS:
        raise BadInput(f"by must be one of {', '.join(GROUPINGS)}")
    return await ops.report(_when(request.query_params.get("since"), "since") or since(None), by)


async def audit(request: Request, ops: Operators, actor: Actor) -> object:
    return await ops.audit_log(request.query_params.get("limit") or 100)


async def verify_audit(request: Request, ops: Operators, actor: Actor) -> object:
    return await ops.verify_audit()


async def list_admins(request: Request, ops: Operators, actor: Actor) -> object:
    return await ops.admins()


async def add_admin(request: Request, ops: Operators, actor: Actor) -> object:
    body = await _body(request)
    return await ops.add_admin(
        actor, _text(body, "name") or "", _text(body, "role") or "", _text(body, "expires", False), _reason(body)
    )


async def remove_admin(request: Request, ops: Operators, actor: Actor) -> object:
    return await ops.remove_admin(actor, request.path_params["name"], _reason(await _body(request)))


async def approve(request: Request, ops: Operators, actor: Actor) -> object:
    body = await _body(request)
    given = body.get("services")
    if given is None:
        named: list[object] = []
    elif isinstance(given, str):
        named = [part for part in given.replace(",", " ").split() if part]
    else:
        named = [given]
    services = [_int(str(s), "services") for s in named]
    return await ops.approve_prices(actor, request.path_params["name"], services, _reason(body))


async def events(request: Request, ops: Operators, actor: Actor) -> object:
    query = request.query_params
    limit = _int(query.get("limit"), "limit", 100)
    if not 1 <= limit <= READ_LIMIT:
        raise BadInput(f"limit must be between 1 and {READ_LIMIT}")
    return await ops.events(_when(query.get("since"), "since"), limit, query.get("kind") or None)


async def reload_config(request: Request, ops: Operators, actor: Actor) -> object:
    result = await ops.reload_config(actor, _reason(await _body(request)))
    if not result.ok:
        raise BadInput("config not reloaded, the running one stays: " + "; ".join(result.problems))
    return result


@dataclass(frozen=True)
class Endpoint:
    path: str
    method: str  # "GET" (HEAD too) or "POST"
    action: str  # its name in the role matrix (`proxy.ops.roles.NEEDS`)
    handler: Handler


ENDPOINTS = (
    Endpoint("/admin/clients", "GET", "clients.list", list_clients),
    Endpoint("/admin/clients", "POST", "client.create", create_client),
    Endpoint("/admin/clients/{name}", "GET", "clients.list", show_client),
    Endpoint("/admin/clients/{name}/topup", "POST", "client.topup", topup),
    Endpoint("/admin/clients/{name}/adjust", "POST", "client.adjust", adjust),
    Endpoint("/admin/clients/{name}/disable", "POST", "client.disable", disable),
    Endpoint("/admin/clients/{name}/enable", "POST", "client.enable", enable),
    Endpoint("/admin/clients/{name}/rotate-key", "POST", "client.rotate_key", rotate_key),
    Endpoint("/admin/clients/{name}/terms", "POST", "client.terms", terms),
    Endpoint("/admin/clients/{name}/rates", "POST", "client.rate", rates),
    Endpoint("/admin/clients/{name}/ledger", "GET", "client.ledger", ledger),
    Endpoint("/admin/orders", "GET", "orders.list", orders),
    Endpoint("/admin/orders/archive", "POST", "orders.archive", archive),
    Endpoint("/admin/orders/queues", "GET", "orders.list", queues),
    Endpoint("/admin/orders/{id}", "GET", "order.show", order),
    Endpoint("/admin/orders/{id}/actions", "GET", "order.show", order_actions),
    Endpoint("/admin/orders/{id}/events", "GET", "order.show", order_events),
    Endpoint("/admin/orders/{id}/resolve", "POST", "order.resolve", resolve),
    Endpoint("/admin/orders/{id}/refund", "POST", "order.refund", refund),
    Endpoint("/admin/orders/{id}/ack", "POST", "order.ack", ack),
    Endpoint("/admin/orders/{id}/close", "POST", "order.close", close),
    Endpoint("/admin/providers", "GET", "providers.list", providers),
    Endpoint("/admin/providers/check", "POST", "providers.check", check_providers),
    Endpoint("/admin/providers/calls", "GET", "providers.list", provider_calls),
    Endpoint("/admin/report", "GET", "report", report),
    Endpoint("/admin/audit", "GET", "audit.list", audit),
    Endpoint("/admin/audit/verify", "GET", "audit.verify", verify_audit),
    Endpoint("/admin/admins", "GET", "admins.list", list_admins),
    Endpoint("/admin/admins", "POST", "admin.add", add_admin),
    Endpoint("/admin/admins/{name}/remove", "POST", "admin.remove", remove_admin),
    Endpoint("/admin/providers/{name}/approve", "POST", "price.approve", approve),
    Endpoint("/admin/events", "GET", "events.list", events),
    Endpoint("/admin/config/reload", "POST", "config.reload", reload_config),
)


class _Outage:
    """Logs a store outage once per OUTAGE_LOG_SECONDS, not a traceback per request."""

    def __init__(self) -> None:
        self.logged = -OUTAGE_LOG_SECONDS

    def warn(self, exc: BaseException) -> Response:
        now = time.monotonic()
        if now - self.logged >= OUTAGE_LOG_SECONDS:
            self.logged = now
            log.warning("admin API: store unavailable, answering 503: %s: %s", type(exc).__name__, exc)
        return _error(UNAVAILABLE, 503)


def source_of(request: Request) -> str:
    """Where a request came from, as the server believes it: the peer, or the
    client a trusted proxy forwarded for (uvicorn reads X-Forwarded-For only
    from SMM_PROXY_FORWARDED_ALLOW_IPS). The header itself is not repeated:
    from anyone else it is only a claim."""
    return request.client.host if request.client else ""


def routes(ops: Operators, readiness: Readiness | None = None) -> list[Route]:
    outage = _Outage()

    def guarded(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def respond(request: Request) -> Response:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            try:
                admin = await ops.admins_registry.authenticate(token.strip()) if scheme.lower() == "bearer" else None
            except (RedisError, OSError) as exc:
                return outage.warn(exc)
            if admin is None:
                return _error("Unauthorized", 401)
            if admin.expired(ops.admins_registry.clock()):
                return _error("Unauthorized: this token has expired", 401)
            actor = Actor(f"admin:{admin.name}", admin.role, source_of(request), logs.current("request_id"))
            logs.bind(actor=actor.name)
            if not may(admin.role, endpoint.action):
                log.warning("admin %s (%s) may not %s", admin.name, admin.role, endpoint.action)
                return _error(f"Forbidden: {endpoint.action} needs the {needs(endpoint.action)} role", 403)
            try:
                await ops.admins_registry.touch(admin)
                return JSONResponse(as_json(await endpoint.handler(request, ops, actor)))
            except TooLarge as exc:
                return _error(exc.message, 413)
            except BadInput as exc:
                return _error(exc.message, 400)
            except Forbidden as exc:
                return _error(str(exc), 403)
            except Invalid as exc:
                return _error(str(exc), 400)
            except NotFound as exc:
                return _error(str(exc), 404)
            except OperatorError as exc:
                return _error(str(exc), 409)
            except (RedisError, OSError) as exc:
                return outage.warn(exc)

        return respond

    async def ready(request: Request, ops: Operators, actor: Actor) -> object:
        ok, checks = await readiness() if readiness is not None else (True, {})
        return {"status": "ready" if ok else "not ready", **checks}

    endpoints = [*ENDPOINTS, Endpoint("/admin/ready", "GET", "ready", ready)]
    return [Route(e.path, guarded(e), methods=[e.method], name=f"{e.method} {e.path}") for e in endpoints]
