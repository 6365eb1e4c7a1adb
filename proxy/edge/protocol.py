"""API v2 requests as typed values, and the error replies.

`parse_request` turns the flat parameters of a call (already read from a
form, JSON body or query string by the app) into one typed request, or
raises `ProtocolError` with the panel-style message to answer. The actions,
their fields and their answers are described in docs/api-v2.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from proxy.errors import ProtocolError
from proxy.vocabulary import BULK_LIMIT, Errors, parse_id


@dataclass(frozen=True)
class ServicesRequest:
    pass


@dataclass(frozen=True)
class BalanceRequest:
    pass


@dataclass(frozen=True)
class AddRequest:
    service: int
    fields: Mapping[str, str] = field(default_factory=dict)  # everything but key/action/service


@dataclass(frozen=True)
class StatusRequest:
    ids: tuple[str, ...]  # as the client gave them: bulk replies are keyed by these
    bulk: bool


@dataclass(frozen=True)
class RefillRequest:
    ids: tuple[str, ...]
    bulk: bool


@dataclass(frozen=True)
class RefillStatusRequest:
    ids: tuple[str, ...]
    bulk: bool


@dataclass(frozen=True)
class CancelRequest:
    ids: tuple[str, ...]


Request = (
    ServicesRequest | BalanceRequest | AddRequest | StatusRequest | RefillRequest | RefillStatusRequest | CancelRequest
)


def error(message: str) -> dict[str, str]:
    return {"error": message}


def _ids(params: Mapping[str, str], single: str, bulk: str) -> tuple[tuple[str, ...], bool]:
    if params.get(bulk, "").strip():
        ids = tuple(part.strip() for part in params[bulk].split(",") if part.strip())
        if len(ids) > BULK_LIMIT:
            raise ProtocolError(f"Too many IDs: up to {BULK_LIMIT} in one request")
        return ids, True
    if params.get(single, "").strip():
        return (params[single].strip(),), False
    raise ProtocolError(Errors.INCORRECT_REQUEST)


def parse_request(params: Mapping[str, str]) -> Request:
    action = params.get("action", "").strip().lower()
    if action == "services":
        return ServicesRequest()
    if action == "balance":
        return BalanceRequest()
    if action == "add":
        service = parse_id(params.get("service", ""))
        if service is None:
            raise ProtocolError(Errors.INCORRECT_SERVICE)
        fields = {k: v for k, v in params.items() if k not in ("key", "action", "service")}
        return AddRequest(service, fields)
    if action == "status":
        return StatusRequest(*_ids(params, "order", "orders"))
    if action == "refill":
        return RefillRequest(*_ids(params, "order", "orders"))
    if action == "refill_status":
        return RefillStatusRequest(*_ids(params, "refill", "refills"))
    if action == "cancel":
        ids, _ = _ids(params, "order", "orders")
        return CancelRequest(ids)
    raise ProtocolError(Errors.INCORRECT_REQUEST)


_ACTIONS = {
    ServicesRequest: "services",
    BalanceRequest: "balance",
    AddRequest: "add",
    StatusRequest: "status",
    RefillRequest: "refill",
    RefillStatusRequest: "refill_status",
    CancelRequest: "cancel",
}


def action_of(request: Request) -> str:
    """The API v2 action a typed request is (for logs and metrics)."""
    return _ACTIONS[type(request)]
