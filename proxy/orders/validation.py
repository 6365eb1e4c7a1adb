"""Checking an `add` before anything is charged or sent upstream.

`validate_add(service, fields)` reads a client's raw `add` parameters against
the fields its service type takes (see `vocabulary.SERVICE_TYPES` and the
"`add` fields by service type" in docs/api-v2.md) and returns an
`OrderSpec`: what was ordered, what it costs and exactly what to send
upstream. Bad input raises `InvalidOrder`, whose message is the panel-style
error to answer the client with. Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlsplit

from proxy.catalog.catalog import Service
from proxy.catalog.pricing import charge
from proxy.errors import InvalidOrder
from proxy.policies import HOLD_POSTS, MAX_OLD_POSTS
from proxy.vocabulary import (
    LIST_FIELDS,
    SERVICE_TYPES,
    SUBSCRIPTION_DELAYS,
    SUBSCRIPTIONS,
    Errors,
    ServiceType,
)

DEFAULT = "Default"
WEB_TRAFFIC = "Web Traffic"
POLL = "Poll"

MAX_FIELD_CHARS = 10_000
MAX_LINK_CHARS = 2048
RUNS = range(2, 1001)
INTERVAL_MINUTES = range(1, 1441)
DEVICES = range(1, 6)
TRAFFIC_TYPES = range(1, 4)
KEYWORD_TRAFFIC, REFERRER_TRAFFIC = 1, 2
MAX_POSTS = 10_000
EXPIRY_FORMAT = "%d/%m/%Y"

# Messages of our own, where panels have no verbatim one.
NO_DRIPFEED = "Drip-feed is not available for this service"
RUNS_WITH_INTERVAL = "runs and interval go together: send both for drip-feed, or neither"
BAD_RUNS = f"runs must be a whole number from {RUNS.start} to {RUNS.stop - 1}"
BAD_INTERVAL = (
    f"interval must be a whole number of minutes from {INTERVAL_MINUTES.start} to {INTERVAL_MINUTES.stop - 1}"
)
INCORRECT_QUANTITY = "Incorrect quantity"
BAD_ANSWER_NUMBER = "answer_number must be a positive whole number"
BAD_DEVICE = f"device must be a whole number from {DEVICES.start} to {DEVICES.stop - 1}"
BAD_TRAFFIC_TYPE = "type_of_traffic must be 1, 2 or 3"
BAD_REFERRER = "Incorrect referring_url: an http(s) URL is expected"
BAD_COUNTRY = "Incorrect country: a 2-letter code or a country name is expected"
BAD_MIN = "min must be a positive whole number"
BAD_MAX = "max must be a positive whole number"
MIN_ABOVE_MAX = "min must not be more than max"
BAD_POSTS = f"posts must be a whole number from 0 (unlimited) to {MAX_POSTS}"


def bad_old_posts(most: int) -> str:
    return f"old_posts must be a whole number from 0 to {most}"


BAD_OLD_POSTS = bad_old_posts(MAX_OLD_POSTS)
BAD_DELAY = "delay must be one of " + ", ".join(map(str, SUBSCRIPTION_DELAYS)) + " (minutes)"
BAD_EXPIRY = "expiry must be a date written d/m/Y, like 31/12/2025"


def missing(name: str) -> str:
    return f"Missing field: {name}"


@dataclass(frozen=True)
class OrderSpec:
    quantity: int  # units per run (list lines counted; 1 for packages; max x (posts + old posts) for subscriptions)
    runs: int  # 1 unless drip-feed
    interval: int | None  # minutes between runs, drip-feed only
    link: str | None
    charge: Decimal  # what the client pays
    upstream_fields: dict[str, str]  # the `add` fields to send upstream, without key/action/service
    billing: str = "rate"  # "delivery": settled at the end to what the provider charged


def validate_add(
    service: Service,
    fields: Mapping[str, str],
    hold_posts: int = HOLD_POSTS,
    *,
    max_old_posts: int = MAX_OLD_POSTS,
) -> OrderSpec:
    """Check a client's `add` fields (all but key/action/service) for `service`.

    `hold_posts` is how many posts an unlimited subscription is held for;
    `max_old_posts` the most old posts a subscription may ask for.
    """
    kind = SERVICE_TYPES.get(service.type, SERVICE_TYPES[DEFAULT])
    given = _given(fields)
    dripfeed = "runs" in given or "interval" in given
    if dripfeed and not (kind.dripfeed and service.dripfeed):
        raise InvalidOrder(NO_DRIPFEED)
    for name in kind.required:
        if name not in given:
            raise InvalidOrder(missing(name))
    if kind.name == SUBSCRIPTIONS:
        return _subscription(service, given, hold_posts, max_old_posts)

    upstream = {name: _lines(given[name]) if name in LIST_FIELDS else given[name] for name in kind.required}
    link = upstream["link"] = _link(given["link"])
    quantity = _quantity(service, kind, upstream)
    if kind.name == POLL:
        upstream["answer_number"] = str(_answer_number(given["answer_number"]))
    if kind.name == WEB_TRAFFIC:
        upstream.update(_web_traffic(given))
    runs, interval = _runs_and_interval(given) if dripfeed else (1, None)
    if interval is not None:
        upstream.update(runs=str(runs), interval=str(interval))
    return OrderSpec(
        quantity=quantity,
        runs=runs,
        interval=interval,
        link=link,
        charge=charge(service.rate, quantity, flat=kind.flat, runs=runs),
        upstream_fields=upstream,
    )


def _given(fields: Mapping[str, str]) -> dict[str, str]:
    """The non-blank fields, stripped. Oversized or non-text values are refused."""
    given = {}
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or len(value) > MAX_FIELD_CHARS:
            raise InvalidOrder(Errors.INCORRECT_REQUEST)
        value = value.strip()
        if value:
            given[name] = value
    return given


def _whole(text: str) -> int | None:
    """A non-negative integer written in ASCII digits ("0100" is 100), else None.

    Refuses signs, exponents, hex and non-ASCII digits such as "٣".
    """
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 50:
        return None
    return int(text)


def _in(text: str, allowed: range, message: str) -> int:
    value = _whole(text)
    if value is None or value not in allowed:
        raise InvalidOrder(message)
    return value


def _lines(text: str) -> str:
    """A list field, one item a line: blank lines dropped, items stripped, "\\n"-joined."""
    return "\n".join(line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip())


def _within_limits(service: Service, quantity: int) -> None:
    if quantity < service.min:
        raise InvalidOrder(Errors.quantity_below(service.min))
    if quantity > service.max:
        raise InvalidOrder(Errors.quantity_above(service.max))


def _quantity(service: Service, kind: ServiceType, upstream: dict[str, str]) -> int:
    """Units per run: 1 for packages, the lines of a list, else the `quantity` field."""
    if kind.flat:
        return 1
    if kind.quantity == "field":
        quantity = _whole(upstream["quantity"])
        if quantity is None:
            raise InvalidOrder(INCORRECT_QUANTITY)
        _within_limits(service, quantity)
        if quantity < 1:
            raise InvalidOrder(INCORRECT_QUANTITY)
        upstream["quantity"] = str(quantity)
        return quantity
    quantity = len(upstream[kind.quantity].split("\n"))
    _within_limits(service, quantity)
    return quantity


# A bare handle or domain-ish token: "@user", "user.name", "instagram.com/p/x".
_TOKEN = re.compile(r"@?[\w-]+(?:\.[\w-]+)*(?::\d{1,5})?(?:[/?#].*)?", re.DOTALL)
_SCHEME = re.compile(r"https?://", re.IGNORECASE)


def _is_url(text: str) -> bool:
    """An http(s) URL with a host."""
    if not _SCHEME.match(text):
        return False
    try:
        return bool(urlsplit(text).hostname)
    except ValueError:  # e.g. an unclosed "[" IPv6 host
        return False


def _plausible(text: str) -> bool:
    if len(text) > MAX_LINK_CHARS or not text.isprintable() or any(c.isspace() for c in text):
        return False
    return _is_url(text) if _SCHEME.match(text) else _TOKEN.fullmatch(text) is not None


def _link(text: str) -> str:
    if not _plausible(text):
        raise InvalidOrder(Errors.INCORRECT_LINK)
    return text


def _answer_number(text: str) -> int:
    value = _whole(text)
    if not value:  # None or 0
        raise InvalidOrder(BAD_ANSWER_NUMBER)
    return value


def _runs_and_interval(given: Mapping[str, str]) -> tuple[int, int]:
    if "runs" not in given or "interval" not in given:
        raise InvalidOrder(RUNS_WITH_INTERVAL)
    return _in(given["runs"], RUNS, BAD_RUNS), _in(given["interval"], INTERVAL_MINUTES, BAD_INTERVAL)


_COUNTRY = re.compile(r"[^\W\d_]+(?:[ .'’()-]+[^\W\d_]*)*")


def _web_traffic(given: Mapping[str, str]) -> dict[str, str]:
    """Device, traffic type and the one field that type needs (the other is dropped)."""
    country = given["country"]
    if len(country) > 100 or not _COUNTRY.fullmatch(country):
        raise InvalidOrder(BAD_COUNTRY)
    device = _in(given["device"], DEVICES, BAD_DEVICE)
    traffic = _in(given["type_of_traffic"], TRAFFIC_TYPES, BAD_TRAFFIC_TYPE)
    fields = {"country": country, "device": str(device), "type_of_traffic": str(traffic)}
    if traffic == KEYWORD_TRAFFIC:
        if "google_keyword" not in given:
            raise InvalidOrder(missing("google_keyword"))
        fields["google_keyword"] = given["google_keyword"]
    elif traffic == REFERRER_TRAFFIC:
        if "referring_url" not in given:
            raise InvalidOrder(missing("referring_url"))
        referrer = given["referring_url"]
        if not (_plausible(referrer) and _is_url(referrer)):
            raise InvalidOrder(BAD_REFERRER)
        fields["referring_url"] = referrer
    return fields


def _subscription(service: Service, given: Mapping[str, str], hold_posts: int, max_old_posts: int) -> OrderSpec:
    """Held up front as if every post got `max`, settled to what the provider charged.

    The hold covers everything the provider bills for the fields we pass on:
    `max` likes for each new post, and as many for each of the `old_posts`
    (posts already published, which the provider delivers to as well);
    `old_posts` above `max_old_posts` is refused. `posts` absent or 0 is an
    unlimited subscription (sent upstream as the client sent it): it is held
    for `hold_posts` new posts, and stopped upstream once its hold is used
    (`settlement.must_stop`).
    """
    low, high = _whole(given["min"]), _whole(given["max"])
    if not low:
        raise InvalidOrder(BAD_MIN)
    if not high:
        raise InvalidOrder(BAD_MAX)
    if low > high:
        raise InvalidOrder(MIN_ABOVE_MAX)
    if low < service.min:
        raise InvalidOrder(Errors.quantity_below(service.min))
    if high > service.max:
        raise InvalidOrder(Errors.quantity_above(service.max))
    upstream = {"username": given["username"], "min": str(low), "max": str(high)}
    posts = _in(given["posts"], range(0, MAX_POSTS + 1), BAD_POSTS) if "posts" in given else 0
    if "posts" in given:
        upstream["posts"] = str(posts)
    old_posts = 0
    if "old_posts" in given:
        old_posts = _in(given["old_posts"], range(0, max_old_posts + 1), bad_old_posts(max_old_posts))
        upstream["old_posts"] = str(old_posts)
    if "delay" in given:
        delay = _whole(given["delay"])
        if delay not in SUBSCRIPTION_DELAYS:
            raise InvalidOrder(BAD_DELAY)
        upstream["delay"] = str(delay)
    if "expiry" in given:
        upstream["expiry"] = _expiry(given["expiry"])
    quantity = high * ((posts or hold_posts) + old_posts)
    return OrderSpec(
        quantity=quantity,
        runs=1,
        interval=None,
        link=None,
        charge=charge(service.rate, quantity),
        upstream_fields=upstream,
        billing="delivery",
    )


def _expiry(text: str) -> str:
    """A d/m/Y date, written back zero-padded ("1/2/2030" is "01/02/2030")."""
    try:
        if not text.isascii():  # strptime would read non-ASCII digits
            raise ValueError(text)
        day = datetime.strptime(text, EXPIRY_FORMAT)
    except ValueError:
        raise InvalidOrder(BAD_EXPIRY) from None
    return f"{day.day:02}/{day.month:02}/{day.year}"
