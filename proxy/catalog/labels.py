"""Upstream labels, fit for a client's eyes: service names and categories.

A provider's service list is its own shop window: names and categories
often carry its domain, a link, a support e-mail or a Telegram handle, which
would tell our clients where we buy. `Labels.clean` removes URLs, hosts,
IP addresses and ports, e-mail addresses, Telegram handles and links,
numbers named as IDs ("#1234", "order 5000"), and every provider name, host
and key of the config, then tidies what is left.
A label with nothing left becomes the fallback.

The config can also name a service or category itself, literally or as a
template over the cleaned upstream values: `{name}`, `{category}`, `{type}`
and `{id}` (our service ID), e.g. `"{category} (fast)"`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import httpx

from proxy.config import Provider

MAX_LABEL_CHARS = 200

_URL = re.compile(r"(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)[^\s()\[\]{}<>\"']*", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_TELEGRAM = re.compile(r"(?:\b(?:t|telegram)\.(?:me|dog)/[^\s()\[\]{}<>\"']*|@\w{2,})", re.IGNORECASE)
_IP = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b")
_HOST = re.compile(
    r"\b(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+(?:[^\W\d_]{2,63}|xn--[a-z0-9-]+)\b(?::\d{1,5})?|\blocalhost(?::\d{1,5})?\b",
    re.IGNORECASE,
)
_PORT = re.compile(r":\d{2,5}\b")
# A number named as an ID ("#1234", "ID: 77", "order 5000"): the upstream's, not ours to show.
_NAMED_ID = re.compile(r"(?:#|№|\b(?:id|no|order|service|srv)\b\.?\s*[:#]?)\s*\d+", re.IGNORECASE)
_SEPARATOR_RUNS = re.compile(r"\s*([,;|])(?:\s*[,;|])+")
_SPACE_BEFORE = re.compile(r"\s+([,;.!?])")
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]|\{\s*\}|<\s*>")
_EDGES = " \t-–—|:/\\,;·•*_~"


def provider_secrets(providers: Iterable[Provider]) -> tuple[str, ...]:
    """What names a provider: its config name, its host (as written and as
    punycode, with and without the port) and its key."""
    found: set[str] = set()
    for provider in providers:
        found.add(provider.name)
        found.add(provider.key)
        url = httpx.URL(provider.url)
        for host in (url.host, url.raw_host.decode("ascii")):
            found.add(host)
            if url.port:
                found.add(f"{host}:{url.port}")
            first = host.removeprefix("www.").split(".")[0]
            if any(c.isalpha() for c in first):
                found.add(first)
    return tuple(sorted((s for s in found if len(s) >= 3), key=len, reverse=True))


class Labels:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        words = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)
        self._secrets = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE) if words else None

    def clean(self, text: str, fallback: str) -> str:
        """`text` without anything that points at a provider; `fallback` if nothing is left."""
        text = "".join(c if c.isprintable() else " " for c in text)
        for pattern in (_URL, _EMAIL, _TELEGRAM, _IP, _HOST):
            text = pattern.sub(" ", text)
        if self._secrets is not None:
            text = self._secrets.sub(" ", text)
        text = _PORT.sub(" ", text)
        text = _NAMED_ID.sub(" ", text)
        previous = None
        while previous != text:
            previous = text
            text = _EMPTY_BRACKETS.sub(" ", text)
            text = _SPACE_BEFORE.sub(r"\1", " ".join(text.split()))
            text = _SEPARATOR_RUNS.sub(r"\1", text).strip(_EDGES + ",;.")
        if len(text) > MAX_LABEL_CHARS:
            text = text[:MAX_LABEL_CHARS].rsplit(" ", 1)[0].strip(_EDGES)
        return text if any(c.isalnum() for c in text) else fallback

    def render(self, template: str | None, values: Mapping[str, str], default: str) -> str:
        """The configured label (literal or template over cleaned values), else `default`."""
        if template is None:
            return default
        return template.format_map(values)
