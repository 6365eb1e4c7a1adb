"""Scripted upstream panels for unit tests: a transport that answers as the test says.

    panel = ScriptedPanel("echomark")
    panel.on("add", {"order": 5000}, {"error": "Incorrect link"})   # the first add, then every later one
    panel.on("status", lambda params: {...})                       # computed from the request
    panel.on("add", httpx.ConnectError)                           # never reached
    client = panel.client()                                        # a ProviderClient over it

No server and no simulated panel: httpx's MockTransport hands each request
to the script. A reply is JSON-able data, an `httpx.Response`, an exception
class or instance (raised as the transport would), or a function of the
request's fields (sync or async) returning any of those. Every request is
kept (`requests`, `asked`).
"""

from __future__ import annotations

import inspect
import json
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qsl

import httpx

from proxy.providers.upstream import ProviderClient

HTML_PAGE = "<!DOCTYPE html><html><body><h1>We'll be back soon!</h1></body></html>"


class ScriptedPanel:
    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"https://{name}.test/api/v2"
        self.requests: list[dict[str, str]] = []
        self._script: dict[str, list[Any]] = defaultdict(list)

    def on(self, action: str, *replies: Any) -> ScriptedPanel:
        """Answer `action` with these replies in turn; the last one from then on."""
        self._script[action] = list(replies)
        return self

    def asked(self, action: str) -> list[dict[str, str]]:
        return [r for r in self.requests if r.get("action") == action]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def client(self, **options: Any) -> ProviderClient:
        return ProviderClient(self.name, self.url, "sim-key", transport=self.transport(), **options)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        fields = dict(json.loads(body)) if body.startswith("{") else dict(parse_qsl(body))
        fields.update(dict(request.url.params))
        self.requests.append(fields)
        script = self._script.get(fields.get("action", ""))
        if not script:
            return httpx.Response(200, json={"error": "Incorrect request"})
        reply = script.pop(0) if len(script) > 1 else script[0]
        if callable(reply) and not isinstance(reply, type):
            reply = reply(fields)
            if inspect.isawaitable(reply):
                reply = await reply
        if isinstance(reply, type) and issubclass(reply, Exception):
            reply = reply("scripted", request=request) if issubclass(reply, httpx.RequestError) else reply()
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx.Response):
            return reply
        return httpx.Response(200, json=reply)


def html(status: int = 200) -> httpx.Response:
    """A page where JSON was expected (a maintenance page, a Cloudflare challenge)."""
    return httpx.Response(status, text=HTML_PAGE, headers={"content-type": "text/html"})
