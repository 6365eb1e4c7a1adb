"""The admin HTTP API under /admin/: what the CLI does, for a reseller's own panel.

Every request carries `Authorization: Bearer <token>`, a token made with
`smm-proxy admin add NAME` (stored as its SHA-256); every change is written
to the audit log under `admin:NAME`. Bodies are JSON objects; answers are
the operators' answers as JSON (`proxy.ops.answers.as_json`, the same the
CLI prints with `--json`), errors `{"error": ...}` with a 4xx status.

    GET  /admin/clients                    POST /admin/clients {name, balance}
    POST /admin/clients/{name}/topup {amount, ref?, memo?}
    POST /admin/clients/{name}/disable     GET  /admin/clients/{name}/ledger?limit=
    GET  /admin/orders?state=&client=&limit=
    GET  /admin/orders/{id}                POST /admin/orders/{id}/resolve {upstream_order | failed: true}
    POST /admin/orders/{id}/refund {total} POST /admin/orders/{id}/ack
    POST /admin/orders/{id}/close {refund, reason?}
    POST /admin/orders/archive {older_than}
    GET  /admin/providers?check=1          GET  /admin/report?since=7d&by=provider
    POST /admin/providers/{name}/approve {services?: "1,2"}   (held price changes; all if none named)
    GET  /admin/events?since=1h&limit=&kind=   (the operators' event stream, newest first)
    POST /admin/config/reload              (a bad file: 400 with its problems; the running config stays)
    GET  /admin/audit?limit=
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy import logs
from proxy.edge.inputs import clean
from proxy.errors import BadInput, NotFound, OperatorError
from proxy.ops.answers import as_json
from proxy.ops.events import READ_LIMIT
from proxy.ops.operators import Operators
from proxy.ops.reports import GROUPINGS, since

MAX_ADMIN_BODY = 64 * 1024

Handler = Callable[[Request, Operators, str], Awaitable[object]]


def _error(message: str, status: int) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_ADMIN_BODY:
        raise BadInput("Request too large")
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
    return str(value)


# Handlers: (request, operators, actor) -> data.


async def clients(request: Request, ops: Operators, actor: str) -> object:
    if request.method == "GET":
        return await ops.clients()
    body = await _body(request)
    return await ops.create_client(actor, _text(body, "name") or "", body.get("balance", "0"))


async def topup(request: Request, ops: Operators, actor: str) -> object:
    body = await _body(request)
    return await ops.topup(
        actor,
        request.path_params["name"],
        _text(body, "amount"),
        ref=_text(body, "ref", False),
        memo=_text(body, "memo", False) or "",
    )


async def disable(request: Request, ops: Operators, actor: str) -> object:
    return await ops.disable_client(actor, request.path_params["name"])


async def ledger(request: Request, ops: Operators, actor: str) -> object:
    limit = request.query_params.get("limit")
    return await ops.ledger(request.path_params["name"], _int(limit, "limit") if limit else None)


async def orders(request: Request, ops: Operators, actor: str) -> object:
    query = request.query_params
    return await ops.orders(
        query.get("state") or None, query.get("client") or None, _int(query.get("limit"), "limit", 50)
    )


async def order(request: Request, ops: Operators, actor: str) -> object:
    return await ops.order(_int(request.path_params["id"], "id"))


async def resolve(request: Request, ops: Operators, actor: str) -> object:
    body = await _body(request)
    upstream = body.get("upstream_order")
    return await ops.resolve(
        actor,
        _int(request.path_params["id"], "id"),
        upstream_order=None if upstream is None else _int(str(upstream), "upstream_order"),
        failed=body.get("failed") is True,
    )


async def refund(request: Request, ops: Operators, actor: str) -> object:
    body = await _body(request)
    return await ops.refund(actor, _int(request.path_params["id"], "id"), _text(body, "total"))


async def ack(request: Request, ops: Operators, actor: str) -> object:
    return await ops.acknowledge(actor, _int(request.path_params["id"], "id"))


async def close(request: Request, ops: Operators, actor: str) -> object:
    body = await _body(request)
    return await ops.close(
        actor, _int(request.path_params["id"], "id"), _text(body, "refund"), _text(body, "reason", False) or ""
    )


async def archive(request: Request, ops: Operators, actor: str) -> object:
    body = await _body(request)
    try:
        before = since(_text(body, "older_than"))
    except ValueError as exc:
        raise BadInput(f"older_than: {exc}") from None
    return await ops.archive(actor, before)


async def providers(request: Request, ops: Operators, actor: str) -> object:
    return await ops.providers(check=request.query_params.get("check") in ("1", "true"))


async def report(request: Request, ops: Operators, actor: str) -> object:
    by = request.query_params.get("by", "provider")
    if by not in GROUPINGS:
        raise BadInput(f"by must be one of {', '.join(GROUPINGS)}")
    try:
        start = since(request.query_params.get("since"))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    return await ops.report(start, by)


async def approve(request: Request, ops: Operators, actor: str) -> object:
    body = await _body(request)
    given = body.get("services")
    if given is None:
        named: list[object] = []
    elif isinstance(given, str):
        named = [part for part in given.replace(",", " ").split() if part]
    else:
        named = [given]
    services = [_int(str(s), "services") for s in named]
    return await ops.approve_prices(actor, request.path_params["name"], services)


async def events(request: Request, ops: Operators, actor: str) -> object:
    query = request.query_params
    start = None
    if query.get("since"):
        try:
            start = since(query.get("since"))
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    limit = _int(query.get("limit"), "limit", 100)
    if not 1 <= limit <= READ_LIMIT:
        raise BadInput(f"limit must be between 1 and {READ_LIMIT}")
    return await ops.events(start, limit, query.get("kind") or None)


async def reload_config(request: Request, ops: Operators, actor: str) -> object:
    result = await ops.reload_config(actor)
    if not result.ok:
        raise BadInput("config not reloaded, the running one stays: " + "; ".join(result.problems))
    return result


async def audit(request: Request, ops: Operators, actor: str) -> object:
    return await ops.audit_log(_int(request.query_params.get("limit"), "limit", 100))


def routes(ops: Operators) -> list[Route]:
    def guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            admin = await ops.admin_of(token.strip()) if scheme.lower() == "bearer" else None
            if admin is None:
                return _error("Unauthorized", 401)
            actor = f"admin:{admin}"
            logs.bind(actor=actor)
            try:
                return JSONResponse(as_json(await handler(request, ops, actor)))
            except BadInput as exc:
                return _error(exc.message, 400)
            except NotFound as exc:
                return _error(str(exc), 404)
            except OperatorError as exc:
                return _error(str(exc), 409)

        return endpoint

    return [
        Route("/admin/clients", guarded(clients), methods=["GET", "POST"]),
        Route("/admin/clients/{name}/topup", guarded(topup), methods=["POST"]),
        Route("/admin/clients/{name}/disable", guarded(disable), methods=["POST"]),
        Route("/admin/clients/{name}/ledger", guarded(ledger), methods=["GET"]),
        Route("/admin/orders", guarded(orders), methods=["GET"]),
        Route("/admin/orders/archive", guarded(archive), methods=["POST"]),
        Route("/admin/orders/{id}", guarded(order), methods=["GET"]),
        Route("/admin/orders/{id}/resolve", guarded(resolve), methods=["POST"]),
        Route("/admin/orders/{id}/refund", guarded(refund), methods=["POST"]),
        Route("/admin/orders/{id}/ack", guarded(ack), methods=["POST"]),
        Route("/admin/orders/{id}/close", guarded(close), methods=["POST"]),
        Route("/admin/providers", guarded(providers), methods=["GET"]),
        Route("/admin/report", guarded(report), methods=["GET"]),
        Route("/admin/providers/{name}/approve", guarded(approve), methods=["POST"]),
        Route("/admin/events", guarded(events), methods=["GET"]),
        Route("/admin/config/reload", guarded(reload_config), methods=["POST"]),
        Route("/admin/audit", guarded(audit), methods=["GET"]),
    ]
