"""The simulated panel over HTTP: `POST|GET /api/v2`, plus a small admin API.

- `/api/v2` takes form, multipart or JSON bodies and query strings; the key may
  also come in an `X-Api-Key` header. Answers JSON with HTTP 200, errors
  included, unless `panel.faults` says otherwise.
- `POST /_sim/faults` replaces `panel.faults` with the JSON body
  (see `Faults.from_dict`) and answers the new settings.
- `GET /_sim/state` answers a summary: counts, calls, balances, faults.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from proxy.sim.faults import Faults
from proxy.sim.panel import Panel

NGINX_500 = (
    "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n"
    "<center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
NGINX_504 = NGINX_500.replace("500 Internal Server Error", "504 Gateway Time-out")
MAINTENANCE_PAGE = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Maintenance</title></head>\n'
    "<body><h1>We'll be back soon!</h1><p>The panel is under maintenance.</p></body></html>\n"
)
CLOUDFLARE_CHALLENGE = (
    '<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>'
    '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8"></head>'
    '<body><div class="main-wrapper" role="main"><div class="main-content">'
    "<noscript>Enable JavaScript and cookies to continue</noscript></div></div>"
    '<script src="/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1"></script></body></html>'
)
CLOUDFLARE_HEADERS = {"server": "cloudflare", "cf-ray": "8a1b2c3d4e5f6789-FRA", "cf-mitigated": "challenge"}
TRUNCATED_JSON = '{"charge": "0.27819", "start_count": "35'


def create_app(panel: Panel) -> Starlette:
    async def api(request: Request) -> Response:
        params = await read_params(request)
        action = params.get("action", "")
        faults = panel.faults
        if faults.latency:
            await asyncio.sleep(faults.latency)
        mode = faults.take(action)
        if mode is None:
            return JSONResponse(panel.handle(params))
        if mode == "timeout_after_accept":
            reply = panel.handle(params)
            await hang(request, faults.hang_seconds)
            return JSONResponse(reply)
        panel.calls[action] += 1  # seen, not performed
        if mode == "timeout":
            await hang(request, faults.hang_seconds)
            return HTMLResponse(NGINX_504, status_code=504)
        return fault_response(mode, faults)

    async def set_faults(request: Request) -> Response:
        try:
            panel.faults = Faults.from_dict(await request.json())
        except (ValueError, TypeError, AttributeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse(panel.faults.to_dict())

    async def state(request: Request) -> Response:
        return JSONResponse(panel.state())

    return Starlette(
        routes=[
            Route("/api/v2", api, methods=["GET", "POST"]),
            Route("/_sim/faults", set_faults, methods=["POST"]),
            Route("/_sim/state", state, methods=["GET"]),
        ]
    )


async def read_params(request: Request) -> dict[str, str]:
    """Every way clients send API v2 parameters, merged: query, then body, then header key."""
    params = dict(request.query_params)
    if request.method == "POST":
        params.update(await _body_params(request))
    if not params.get("key") and request.headers.get("x-api-key"):
        params["key"] = request.headers["x-api-key"]
    return params


async def _body_params(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        return {name: value for name, value in form.items() if isinstance(value, str)}
    body = (await request.body()).decode("utf-8", errors="replace")
    if content_type.startswith("application/json") or body.lstrip().startswith("{"):
        try:
            data = json.loads(body)
        except ValueError:
            return {}
        return {name: _text(value) for name, value in data.items()} if isinstance(data, dict) else {}
    return dict(parse_qsl(body, keep_blank_values=True))


def _text(value: Any) -> str:
    """A JSON value as the form field a PHP panel would see."""
    if isinstance(value, list):
        return ",".join(_text(item) for item in value)
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else str(value)


async def hang(request: Request, seconds: float) -> None:
    """Wait `seconds`, or less if the client goes away first."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(disconnected(), seconds)
    except asyncio.TimeoutError:
        pass


def fault_response(mode: str, faults: Faults) -> Response:
    if mode == "http_500":
        return HTMLResponse(NGINX_500, status_code=500)
    if mode == "html":
        return HTMLResponse(MAINTENANCE_PAGE)
    if mode == "cloudflare":
        return HTMLResponse(CLOUDFLARE_CHALLENGE, status_code=503, headers=CLOUDFLARE_HEADERS)
    if mode == "malformed_json":
        return Response(TRUNCATED_JSON, media_type="application/json")
    return JSONResponse({"error": faults.error_message})
