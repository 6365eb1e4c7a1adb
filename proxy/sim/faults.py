"""Faults and quirks a simulated panel can be switched into at runtime.

`Faults.mode` breaks the transport the way real upstreams break:

- `None`: behave.
- `"timeout"`: hang `hang_seconds` without doing the action, then answer 504.
- `"timeout_after_accept"`: do the action (create the order, debit), then hang
  `hang_seconds` before answering: the client times out, the order exists.
- `"http_500"`: HTTP 500 with an nginx HTML page.
- `"html"`: HTTP 200 with an HTML page.
- `"cloudflare"`: HTTP 503 Cloudflare challenge page.
- `"malformed_json"`: HTTP 200 with a truncated JSON body.
- `"error"`: HTTP 200 `{"error": error_message}`.

Except for `timeout_after_accept`, a faulted request does nothing on the panel.
`actions` restricts the fault to some actions, `count` to the next N faulted
requests (then `mode` clears itself). `latency` delays every reply.

`Faults.quirks` changes reply spellings the way real panels differ (QUIRKS):

- `string_ids`: integer IDs as strings (`{"order": "23501"}`, bulk items, `service`).
- `numeric_values`: documented strings as JSON numbers (`"charge": 0.27819`,
  `start_count`, `remains`, `balance`, `rate`, `min`, `max`, single `refill`).
- `loose_flags`: `refill`/`cancel` in services as 1/0, bulk cancel success as `true`.
- `status_spellings`: `Inprogress`, `Complete`, `Cancelled`, `pending`, `processing`.
- `status_codes`: order statuses as numeric codes 0-4.
- `remains_unknown`: `"remains": "Unknown"`.
- `remains_negative`: completed orders report `"remains": "-5"` (over-delivery).
- `order_id_key`: `add` answers `{"order_id": ...}` instead of `{"order": ...}`.
- `funds_key`: `balance` answers `{"funds": ...}` instead of `{"balance": ...}`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from proxy.vocabulary import (
    CANCELED,
    COMPLETED,
    IN_PROGRESS,
    PARTIAL,
    PENDING,
    PROCESSING,
)

MODES = frozenset({"timeout", "timeout_after_accept", "http_500", "html", "cloudflare", "malformed_json", "error"})
QUIRKS = frozenset(
    {
        "string_ids",
        "numeric_values",
        "loose_flags",
        "status_spellings",
        "status_codes",
        "remains_unknown",
        "remains_negative",
        "order_id_key",
        "funds_key",
    }
)


@dataclass
class Faults:
    mode: str | None = None
    latency: float = 0.0
    hang_seconds: float = 30.0
    error_message: str = "Incorrect request"
    actions: frozenset[str] | None = None
    count: int | None = None
    quirks: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"unknown fault mode {self.mode!r}; known: {sorted(MODES)}")
        unknown = set(self.quirks) - QUIRKS
        if unknown:
            raise ValueError(f"unknown quirks {sorted(unknown)}; known: {sorted(QUIRKS)}")

    def take(self, action: str) -> str | None:
        """The fault mode to apply to a request for `action`, counting it down."""
        if self.mode is None or (self.actions is not None and action not in self.actions):
            return None
        mode = self.mode
        if self.count is not None:
            self.count -= 1
            if self.count <= 0:
                self.mode, self.count = None, None
        return mode

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Faults:
        known = {"mode", "latency", "hang_seconds", "error_message", "actions", "count", "quirks"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings {sorted(unknown)}")
        values = dict(data)
        if values.get("actions") is not None:
            values["actions"] = frozenset(values["actions"])
        values["quirks"] = set(values.get("quirks") or ())
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "latency": self.latency,
            "hang_seconds": self.hang_seconds,
            "error_message": self.error_message,
            "actions": sorted(self.actions) if self.actions is not None else None,
            "count": self.count,
            "quirks": sorted(self.quirks),
        }


# Respelling replies.

ORDER_SPELLINGS = {
    PENDING: "pending",
    IN_PROGRESS: "Inprogress",
    PROCESSING: "processing",
    COMPLETED: "Complete",
    CANCELED: "Cancelled",
}
REFILL_SPELLINGS = {PENDING: "pending", IN_PROGRESS: "In Progress", CANCELED: "Cancelled"}
STATUS_CODES = {PENDING: 0, IN_PROGRESS: 1, PROCESSING: 1, COMPLETED: 2, PARTIAL: 3, CANCELED: 4}


def _number(text: str) -> int | float:
    """A decimal string as the JSON number a sloppy panel would send."""
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else float(value)


def _is_error(item: object) -> bool:
    return isinstance(item, dict) and "error" in item


def respell(action: str, reply: Any, quirks: Iterable[str]) -> Any:
    """`reply` as a panel with `quirks` would spell it. Errors are left alone."""
    quirks = frozenset(quirks)
    if not quirks or _is_error(reply):
        return reply
    speller = _SPELLERS.get(action)
    return speller(reply, quirks) if speller else reply


def _services(reply: list[dict[str, Any]], quirks: frozenset[str]) -> list[dict[str, Any]]:
    result = []
    for item in reply:
        item = dict(item)
        if "string_ids" in quirks:
            item["service"] = str(item["service"])
        if "numeric_values" in quirks:
            for name in ("rate", "min", "max"):
                item[name] = _number(item[name])
        if "loose_flags" in quirks:
            for name in ("refill", "cancel"):
                item[name] = int(item[name])
        result.append(item)
    return result


def _add(reply: dict[str, Any], quirks: frozenset[str]) -> dict[str, Any]:
    order = str(reply["order"]) if "string_ids" in quirks else reply["order"]
    return {"order_id" if "order_id_key" in quirks else "order": order}


def _order_status(item: dict[str, Any], quirks: frozenset[str]) -> dict[str, Any]:
    item = dict(item)
    status = item["status"]
    if "remains_negative" in quirks and status == COMPLETED:
        item["remains"] = "-5"
    if "remains_unknown" in quirks:
        item["remains"] = "Unknown"
    if "numeric_values" in quirks:
        for name in ("charge", "start_count", "remains"):
            if item[name] != "Unknown":
                item[name] = _number(item[name])
    if "status_codes" in quirks and status in STATUS_CODES:
        item["status"] = STATUS_CODES[status]
    elif "status_spellings" in quirks:
        item["status"] = ORDER_SPELLINGS.get(status, status)
    return item


def _status(reply: dict[str, Any], quirks: frozenset[str]) -> dict[str, Any]:
    if "status" in reply:
        return _order_status(reply, quirks)
    return {key: item if _is_error(item) else _order_status(item, quirks) for key, item in reply.items()}


def _bulk_ids(items: list[dict[str, Any]], id_names: tuple[str, ...]) -> list[dict[str, Any]]:
    result = []
    for item in items:
        item = dict(item)
        for name in id_names:
            if isinstance(item[name], int):
                item[name] = str(item[name])
        result.append(item)
    return result


def _refill(reply: Any, quirks: frozenset[str]) -> Any:
    if isinstance(reply, dict):
        return {"refill": int(reply["refill"])} if "numeric_values" in quirks else reply
    return _bulk_ids(reply, ("order", "refill")) if "string_ids" in quirks else reply


def _refill_status(reply: Any, quirks: frozenset[str]) -> Any:
    def spell(status: Any) -> Any:
        if "status_spellings" in quirks and isinstance(status, str):
            return REFILL_SPELLINGS.get(status, status)
        return status

    if isinstance(reply, dict):
        return {"status": spell(reply["status"])}
    items = _bulk_ids(reply, ("refill",)) if "string_ids" in quirks else reply
    return [{**item, "status": spell(item["status"])} for item in items]


def _cancel(reply: list[dict[str, Any]], quirks: frozenset[str]) -> list[dict[str, Any]]:
    items = _bulk_ids(reply, ("order", "cancel")) if "string_ids" in quirks else reply
    if "loose_flags" in quirks:
        items = [item if _is_error(item["cancel"]) else {**item, "cancel": True} for item in items]
    return items


def _balance(reply: dict[str, Any], quirks: frozenset[str]) -> dict[str, Any]:
    balance = _number(reply["balance"]) if "numeric_values" in quirks else reply["balance"]
    return {"funds" if "funds_key" in quirks else "balance": balance, "currency": reply["currency"]}


# Each action's speller: (the reply, the quirks) -> the reply as spelled.
_SPELLERS: dict[str, Callable[[Any, frozenset[str]], Any]] = {
    "services": _services,
    "add": _add,
    "status": _status,
    "refill": _refill,
    "refill_status": _refill_status,
    "cancel": _cancel,
    "balance": _balance,
}
