"""Normalising what real panels send.

Upstream panels all speak "API v2", each with its own accent: numbers as
strings and strings as numbers, a dozen spellings of "cancelled", `remains`
of "Unknown", HTML where JSON was promised. These pure functions turn such
values into the canonical words of `proxy.vocabulary` and into plain Python
types. None of them raises on bad input: a value that cannot be read comes
back as `None` (or `False`, or as given), and the caller decides what that
means. docs/api-v2.md lists the quirks ("What upstream panels send").
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from proxy.errors import MoneyError
from proxy.money import parse_amount
from proxy.vocabulary import (
    ACTIVE,
    CANCELED,
    COMPLETED,
    EXPIRED,
    IN_PROGRESS,
    PARTIAL,
    PAUSED,
    PENDING,
    PROCESSING,
    REJECTED,
    SERVICE_TYPES,
)

__all__ = [
    "describe_body",
    "parse_json",
    "looks_like_html",
    "order_status",
    "refill_status",
    "remains",
    "service_type",
    "to_amount",
    "to_bool",
    "to_int",
]

# Keys are spellings with case, spaces, underscores and hyphens removed.
_ORDER_STATUSES = {
    "pending": PENDING,
    "inprogress": IN_PROGRESS,
    "processing": PROCESSING,
    "completed": COMPLETED,
    "complete": COMPLETED,
    "processed": COMPLETED,
    "partial": PARTIAL,
    "canceled": CANCELED,
    "cancelled": CANCELED,
    "ordercanceled": CANCELED,
    "ordercancelled": CANCELED,
    "refunded": CANCELED,
    "failed": CANCELED,
    # Subscriptions.
    "active": ACTIVE,
    "paused": PAUSED,
    "expired": EXPIRED,
}
# Numeric status codes: pending, processing, completed, partial, canceled, refunded.
_ORDER_STATUS_CODES = (PENDING, PROCESSING, COMPLETED, PARTIAL, CANCELED, CANCELED)

_REFILL_STATUSES = {
    "pending": PENDING,
    "inprogress": IN_PROGRESS,
    "completed": COMPLETED,
    "complete": COMPLETED,
    "rejected": REJECTED,
    "canceled": CANCELED,
    "cancelled": CANCELED,
}

_SEPARATORS = re.compile(r"[\s_\-]+")
_INTEGER = re.compile(r"[+-]?\d+(?:\.0*)?", re.ASCII)
# An integer with more digits than this is not an ID or a count we can use.
_MAX_DIGITS = 30
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


def _squash(raw: str) -> str:
    return _SEPARATORS.sub("", raw).lower()


def order_status(raw: object) -> str | None:
    """The canonical order (or subscription) status for `raw`, if we know it.

    >>> order_status("Order Cancelled"), order_status(" in_progress "), order_status("2")
    ('Canceled', 'In progress', 'Completed')

    `None` means "unrecognised": the caller keeps the status it had.
    """
    if isinstance(raw, str):
        status = _ORDER_STATUSES.get(_squash(raw))
        if status is not None:
            return status
    code = to_int(raw)
    if code is not None and 0 <= code < len(_ORDER_STATUS_CODES):
        return _ORDER_STATUS_CODES[code]
    return None


def refill_status(raw: object) -> str | None:
    """The canonical refill status for `raw`, or `None` if unrecognised."""
    if not isinstance(raw, str):
        return None
    return _REFILL_STATUSES.get(_squash(raw))


def to_int(value: object) -> int | None:
    """An integer from an int or integral text/number ("157", " 12 ", "157.0").

    Booleans, fractions, blanks and words are `None`, never 0 or 1.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_DIGITS + 2 or not _INTEGER.fullmatch(text):
            return None
        return int(text.partition(".")[0])
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite() or value.adjusted() > _MAX_DIGITS:
            return None
        if value != value.to_integral_value():
            return None
        return int(value)
    return None


def to_bool(value: object) -> bool:
    """A panel's flag (`true`, `1`, `"1"`, `"yes"`...) as a bool; anything else is False."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, Decimal)):
        return value == 1
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_WORDS
    return False


def to_amount(value: object) -> Decimal | None:
    """An amount of money (see `money.parse_amount`), or `None` if it is not one."""
    if value is None:
        return None
    try:
        return parse_amount(value)
    except MoneyError:
        return None


def remains(value: object) -> int | None:
    """What is left to deliver: `None` when unknown, never negative.

    A negative value means over-delivery, so nothing remains. A value above
    the ordered quantity is passed on: only the caller knows the quantity.
    """
    count = to_int(value)
    if count is None:
        return None
    return max(count, 0)


_SERVICE_TYPES_BY_KEY = {_squash(name): name for name in SERVICE_TYPES}
DEFAULT_SERVICE_TYPE = "Default"


def service_type(raw: object) -> str:
    """The canonical name of a service type ("custom comments" -> "Custom Comments").

    A type we do not know is kept as given (stripped); a missing or blank one
    is "Default", which is what panels mean by leaving it out.
    """
    if raw is None:
        return DEFAULT_SERVICE_TYPE
    text = str(raw).strip()
    if not text:
        return DEFAULT_SERVICE_TYPE
    return _SERVICE_TYPES_BY_KEY.get(_squash(text), text)


# Only the start of a body is inspected: enough to recognise a page.
_SNIFF_CHARS = 16384
_HTML_MARKERS = ("<!doctype html", "<html", "<head", "<body")
_CLOUDFLARE_MARKERS = ("cloudflare", "cf-ray", "cf-error", "/cdn-cgi/", "cf_chl_", "__cf_chl")
# Status codes only Cloudflare sends ("Web server is down", "Origin is unreachable"...).
_CLOUDFLARE_STATUSES = frozenset({520, 521, 522, 523, 524, 525, 526, 527, 530})
_CHALLENGE_MARKERS = (
    "challenge-platform",
    "cf_chl_",
    "__cf_chl",
    "just a moment...",
    "attention required! | cloudflare",
    "cf-browser-verification",
)


def _head(text: str) -> str:
    return text.lstrip("\ufeff \t\r\n")[:_SNIFF_CHARS].lower()


def looks_like_html(text: str) -> bool:
    """Whether a body is a page (or PHP's `<br /><b>Warning</b>`) rather than data."""
    head = _head(text)
    return head.startswith("<") or any(marker in head for marker in _HTML_MARKERS)


def describe_body(text: str, status_code: int) -> str:
    """A short, log-safe description of a body we could not use.

    Never quotes the body: pages can be large and can echo the request.

    >>> describe_body("<html><title>502</title></html>", 502)
    'HTML page (HTTP 502)'
    """
    where = f"(HTTP {status_code})"
    head = _head(text)
    if not head.strip():
        return f"empty body {where}"
    if any(marker in head for marker in _CHALLENGE_MARKERS):
        return f"Cloudflare challenge page {where}"
    if any(marker in head for marker in _CLOUDFLARE_MARKERS) or (
        status_code in _CLOUDFLARE_STATUSES and looks_like_html(text)
    ):
        return f"Cloudflare error page {where}"
    if looks_like_html(text):
        return f"HTML page {where}"
    try:
        value = parse_json(text)
    except ValueError:
        if head.startswith(("{", "[")):
            return f"malformed JSON {where}"
        return f"text that is not JSON {where}"
    return f"JSON {_json_kind(value)} {where}"


def _reject_constant(name: str) -> object:
    raise ValueError(f"not JSON: {name}")


def parse_json(text: str) -> Any:
    """Strict JSON with exact decimals (`0.27` is `Decimal("0.27")`).

    A leading byte order mark is tolerated; `NaN`, `Infinity` and nesting
    too deep to parse are `ValueError`, like any other malformed JSON.
    """
    try:
        return json.loads(text.lstrip("\ufeff"), parse_float=Decimal, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"
