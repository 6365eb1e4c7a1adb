"""The async client for one upstream panel.

`ProviderClient` speaks API v2 to a provider and answers in plain, typed
values, whatever spelling the provider uses: `proxy.providers.replies` reads
the replies, `proxy.providers.quirks` normalises their values.

Failures are typed (`proxy.errors`, the upstream branch) by what they tell
us about the request:

- `ProviderRefused`: the provider provably did not act on it. The request
  never left (could not connect), or the provider answered `{"error": ...}`.
  Safe to send again, here or to another provider.
- `OutcomeUnknown`: the request may have been acted upon. The reply timed
  out or was cut off after the request was sent, the server failed (5xx),
  or the reply was not the JSON we expected. A reply larger than its
  action's limit (`reply_bytes`, `services_bytes`) is not read past it:
  `ReplyTooLarge`, one of these. After `add` the order may
  exist; sending it again can buy the same thing twice.

Neither ever carries the API key in its text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import quote, quote_plus, urlencode

import httpx

from proxy.config import REPLY_BYTES, SERVICES_BYTES
from proxy.errors import OutcomeUnknown, ProviderRefused, ReplyTooLarge, UpstreamError
from proxy.providers import quirks
from proxy.providers.replies import (
    BALANCE_KEYS,
    CANCELS,
    MISSING,
    ORDER_ID_KEYS,
    REFILL_STATUSES,
    REFILLS,
    STATUSES,
    UNREADABLE,
    Bulk,
    DisabledService,
    ItemError,
    Items,
    Key,
    UpstreamBalance,
    UpstreamService,
    UpstreamStatus,
    chunks,
    currency,
    error_of,
    json_kind,
    order_id,
    parse_status,
    read_service,
)
from proxy.providers.transport import AiohttpTransport, Timeouts, known_charset, read_capped
from proxy.vocabulary import Errors, known_error

__all__ = ["ProviderClient"]

log = logging.getLogger(__name__)

USER_AGENT = "smm-proxy/0.1"
# How much of an upstream error message a reason quotes.
_QUOTE_CHARS = 200


class Budget(Protocol):
    """How many requests a provider may still get (see `proxy.providers.budget`);
    an order may use all of it, reads only their share."""

    async def take(self, wait: float = 0.0, *, order: bool = False) -> bool: ...


# How long an order may wait for the provider's request budget or a free
# connection before it fails over, unless the provider's config says.
ORDER_WAIT_SECONDS = 5.0


_Result = TypeVar("_Result")
_Error = TypeVar("_Error", bound=UpstreamError)


class ProviderClient:
    """One upstream panel, over one pooled `httpx.AsyncClient`.

    `request_format` picks a form-encoded or JSON body for POST; with
    `method="GET"` the fields go in the query string (and the API key into
    the URL: keep the `httpx` logger above INFO, as it logs request URLs).

    At most `max_connections` requests are under way at once. A request first
    takes its slot: one from the rate `budget`, then a free connection. An
    order waits for both at most `order_wait` seconds, a read no longer than
    the pool timeout; one that gets no slot was never sent (`ProviderRefused`
    with `local`). So everything that can wait happens before `add` calls its
    `before_send`, and the connection pool itself never makes a sent request
    wait.
    """

    def __init__(
        self,
        name: str,
        url: str,
        api_key: str,
        *,
        timeout: httpx.Timeout | float = 30.0,
        request_format: Literal["form", "json"] = "form",
        method: Literal["POST", "GET"] = "POST",
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 20,
        budget: Budget | None = None,
        order_wait: float = ORDER_WAIT_SECONDS,
        observer: Callable[[str, str, str, float], None] | None = None,
        on_read_ok: Callable[[str], Awaitable[None]] | None = None,
        reply_bytes: int = REPLY_BYTES,
        services_bytes: int = SERVICES_BYTES,
    ) -> None:
        if request_format not in ("form", "json"):
            raise ValueError(f"request_format must be 'form' or 'json', not {request_format!r}")
        if method not in ("POST", "GET"):
            raise ValueError(f"method must be 'POST' or 'GET', not {method!r}")
        if reply_bytes < 1 or services_bytes < 1:
            raise ValueError("a reply's size limit is at least one byte")
        # The most bytes of a reply read (`services_bytes` for `services`);
        # past it the reply is cut and the call fails (`ReplyTooLarge`).
        self.reply_bytes = reply_bytes
        self.services_bytes = services_bytes
        self.url = httpx.URL(url)  # An internationalised domain name becomes punycode here.
        if self.url.scheme not in ("http", "https") or not self.url.host:
            raise ValueError(f"provider {name!r}: not an http(s) URL")
        self.name = name
        self.budget = budget
        self.order_wait = order_wait
        # Told of every call: (provider, action, outcome, seconds); outcome is
        # ok, refused, unreachable, not_sent or unknown.
        self.observer = observer
        # Awaited (best effort) after every read that worked: the provider's read health.
        self.on_read_ok = on_read_ok
        self._slots = asyncio.Semaphore(max_connections)
        pool_wait = timeout.pool if isinstance(timeout, httpx.Timeout) else timeout
        self._pool_wait = 60.0 if pool_wait is None else float(pool_wait)
        # httpx's timeouts bound each read, not a whole reply: one that drips
        # a byte at a time would never end. This bounds the whole exchange.
        if isinstance(timeout, httpx.Timeout):
            parts = [t for t in (timeout.connect, timeout.write, timeout.read) if t is not None]
            self._total = sum(parts) + 1.0 if len(parts) == 3 else None
        else:
            self._total = 3 * float(timeout) + 1.0
        self.request_format = request_format
        self.method = method
        self._api_key = api_key
        # The key as it could be echoed back: raw, or URL-encoded from our request.
        self._secrets = tuple(secret for secret in {api_key, quote(api_key, safe=""), quote_plus(api_key)} if secret)
        self._items = Items(self._redact)
        transport = transport or AiohttpTransport(max_connections)
        options: dict[str, Any] = {"limits": httpx.Limits(max_connections=max_connections), "transport": transport}
        # Our own transport is called directly (`_wire`); one a test injects, through httpx.
        self._direct = transport if isinstance(transport, AiohttpTransport) else None
        self._url = str(self.url)
        self._headers = [("User-Agent", USER_AGENT), ("Accept", "application/json")]
        given = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._timeouts = Timeouts(given.pool, given.connect, given.read)
        self._client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            **options,
        )

    def __repr__(self) -> str:
        return f"<ProviderClient {self.name!r} {self.url}>"

    async def __aenter__(self) -> ProviderClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # Actions.

    async def services(self) -> list[UpstreamService]:
        """The provider's services; malformed entries are skipped, not fatal."""
        return (await self.listing())[0]

    async def listing(self) -> tuple[list[UpstreamService], list[DisabledService]]:
        """The provider's services, and those whose price we cannot use
        (`DisabledService`: not sold, shown to operators); entries without a
        usable ID or limits are skipped."""
        payload = await self._call("services")
        if not isinstance(payload, list):
            raise self._unknown("services", f"expected a list, got {json_kind(payload)}")
        services, disabled = [], []
        for entry in payload:
            read = read_service(entry)
            if isinstance(read, UpstreamService):
                services.append(read)
            elif isinstance(read, DisabledService):
                disabled.append(read)
        skipped = len(payload) - len(services) - len(disabled)
        if skipped:
            log.warning("%s: services: skipped %d malformed entries", self.name, skipped)
        if disabled:
            log.warning("%s: services: %d listed with a price we cannot use", self.name, len(disabled))
        return services, disabled

    async def add(
        self, fields: Mapping[str, str | int], before_send: Callable[[], Awaitable[object]] | None = None
    ) -> int:
        """Place an order; the provider's order ID.

        Only `ProviderRefused` means no order was placed. `before_send` is
        awaited once the request has its slot, just before it leaves; if it
        raises, nothing is sent and its exception propagates.
        """
        reserved = sorted({"key", "action"} & set(fields))
        if reserved:
            raise ValueError(f"add fields may not set {reserved}")
        payload = await self._call(
            "add", fields, answer_keys=ORDER_ID_KEYS, wait=self.order_wait, before_send=before_send
        )
        order = order_id(payload)
        if order is None:
            raise self._unknown("add", "reply has no usable order ID")
        return order

    async def status(self, order: int) -> UpstreamStatus:
        payload = await self._call("status", {"order": order})
        status = parse_status(payload)
        if status is None:
            raise self._unknown("status", "reply has no status")
        return status

    async def statuses(self, orders: Sequence[int]) -> dict[int, UpstreamStatus | ItemError]:
        """Statuses of many orders, `BULK_LIMIT` per request."""
        return await self._each(STATUSES, orders, self._items.status)

    async def refill(self, order: int) -> str:
        """Ask for a refill; the provider's refill ID."""
        payload = await self._call("refill", {"order": order})
        return self._single("refill", self._items.refill(payload))

    async def refills(self, orders: Sequence[int]) -> dict[int, str | ItemError]:
        return await self._each(REFILLS, orders, self._items.refill)

    async def refill_status(self, refill: str) -> str | None:
        """A refill's canonical status, or `None` if the spelling is unknown."""
        payload = await self._call("refill_status", {"refill": refill})
        if not isinstance(payload, dict) or "status" not in payload:
            raise self._unknown("refill_status", "reply has no status")
        return self._single("refill_status", self._items.refill_status(payload))

    async def refill_statuses(self, refills: Sequence[str]) -> dict[str, str | None | ItemError]:
        return await self._each(REFILL_STATUSES, refills, self._items.refill_status)

    async def cancel(self, orders: Sequence[int]) -> dict[int, bool | ItemError]:
        """Ask to cancel orders; per order, whether the provider accepted."""
        return await self._each(CANCELS, orders, self._items.cancel)

    async def balance(self) -> UpstreamBalance:
        """The account balance, in the provider's own currency."""
        payload = await self._call("balance")
        amount = None
        if isinstance(payload, dict):
            key = next((key for key in BALANCE_KEYS if payload.get(key) is not None), None)
            amount = quirks.to_amount(payload[key]) if key else None
        if amount is None:
            raise self._unknown("balance", "reply has no readable balance")
        return UpstreamBalance(balance=amount, currency=currency(payload.get("currency")))

    # Transport and classification.

    async def _call(
        self,
        action: str,
        params: Mapping[str, object] | None = None,
        *,
        answer_keys: Sequence[str] = (),
        wait: float | None = None,
        before_send: Callable[[], Awaitable[object]] | None = None,
    ) -> Any:
        """Send one request; its JSON reply, or raise a typed failure.

        `wait` bounds the time spent waiting for a budget and a connection
        (reads: none for the budget, the pool timeout for a connection).
        `answer_keys` name the success fields of the action: a reply with
        both an error and one of those is contradictory, hence unknown.
        """
        started = time.monotonic()
        outcome = "ok"
        try:
            payload = await self._call_once(action, params, answer_keys, wait, before_send)
            if self.on_read_ok is not None and action != "add":
                try:
                    await self.on_read_ok(self.name)
                except Exception as exc:  # advice, not the answer
                    log.warning("%s: read health not recorded: %s", self.name, type(exc).__name__)
            return payload
        except ProviderRefused as exc:
            outcome = "not_sent" if exc.local else ("unreachable" if exc.message is None else "refused")
            raise
        except OutcomeUnknown:
            outcome = "unknown"
            raise
        finally:
            if self.observer is not None:
                self.observer(self.name, action, outcome, time.monotonic() - started)

    async def _call_once(
        self,
        action: str,
        params: Mapping[str, object] | None,
        answer_keys: Sequence[str],
        wait: float | None,
        before_send: Callable[[], Awaitable[object]] | None,
    ) -> Any:
        deadline = time.monotonic() + (self._pool_wait if wait is None else wait)
        if self.budget is not None and not await self.budget.take(wait=wait or 0.0, order=action == "add"):
            raise self._not_sent(action, "this minute's request budget is spent")
        if self._slots.locked():  # every connection busy: wait for one, until the deadline
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._slots.acquire()
            except TimeoutError:
                raise self._not_sent(action, "no free connection in time") from None
        else:
            await self._slots.acquire()  # one is free: taken at once, nothing to time
        try:
            if before_send is not None:
                await before_send()
            try:
                async with asyncio.timeout(self._total):
                    limit = self.services_bytes if action == "services" else self.reply_bytes
                    if self._direct is not None:  # our own aiohttp transport: no httpx objects around the call
                        wire = self._wire(action, params or {})
                        reply = await self._direct.exchange(*wire, self._timeouts, limit=limit)
                        if reply.cut:
                            raise self._too_large(action, limit)
                        status, text = reply.status, reply.text
                    else:
                        response = await self._client.send(self._request(action, params or {}), stream=True)
                        try:
                            content = await read_capped(response.aiter_bytes(), limit)
                        finally:
                            await response.aclose()  # unread: the connection is closed, not pooled
                        if content is None:
                            raise self._too_large(action, limit)
                        status = response.status_code
                        text = content.decode(known_charset(response.charset_encoding), "replace")
            except TimeoutError:
                raise self._unknown(action, f"no complete reply in {self._total:.0f} s") from None
            except httpx.PoolTimeout as exc:
                raise self._not_sent(action, self._describe(exc)) from None
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise self._refused(action, f"not sent: {self._describe(exc)}") from None
            except httpx.TimeoutException as exc:
                raise self._unknown(action, f"no reply in time: {self._describe(exc)}") from None
            except httpx.HTTPError as exc:
                raise self._unknown(action, f"failed after sending: {self._describe(exc)}") from None
        finally:
            self._slots.release()
        return self._read(action, status, text, answer_keys)

    def _not_sent(self, action: str, why: str) -> ProviderRefused:
        """A request that never left because of us: no sign of trouble at the provider."""
        error = self._refused(action, f"not sent: {why}")
        error.local = True
        return error

    def _wire(self, action: str, params: Mapping[str, object]) -> tuple[str, str, list[tuple[str, str]], bytes | None]:
        """The request `_request` builds, as the method, URL, headers and body bytes
        `AiohttpTransport.exchange` sends (the same bytes httpx would send)."""
        fields = {"key": self._api_key, "action": action, **params}
        if self.method == "GET":
            query = {name: str(value) for name, value in fields.items()}
            return "GET", str(self.url.copy_merge_params(query)), self._headers, None
        if self.request_format == "json":
            body = json.dumps(fields, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            return "POST", self._url, [*self._headers, ("Content-Type", "application/json")], body
        form = urlencode({name: str(value) for name, value in fields.items()}).encode()
        return "POST", self._url, [*self._headers, ("Content-Type", "application/x-www-form-urlencoded")], form

    def _request(self, action: str, params: Mapping[str, object]) -> httpx.Request:
        fields = {"key": self._api_key, "action": action, **params}
        if self.method == "GET":
            query = {name: str(value) for name, value in fields.items()}
            return self._client.build_request("GET", self.url.copy_merge_params(query))
        if self.request_format == "json":
            return self._client.build_request("POST", self.url, json=fields)
        form = {name: str(value) for name, value in fields.items()}
        return self._client.build_request("POST", self.url, data=form)

    def _read(self, action: str, code: int, text: str, answer_keys: Sequence[str]) -> Any:
        try:
            payload = quirks.parse_json(text)
        except ValueError:
            raise self._unknown(action, quirks.describe_body(text, code)) from None
        error = error_of(payload)
        if code >= 500:
            said = f" with error {self._quote(error)}" if error is not None else ""
            raise self._unknown(action, f"server error (HTTP {code}){said}")
        if error is not None:
            assert isinstance(payload, dict)
            quoted = self._quote(error)
            if any(payload.get(key) is not None for key in answer_keys):
                raise self._unknown(action, f"reply has both an answer and error {quoted}")
            raise self._refused(action, f"provider error {quoted}", self._redact(error))
        if not 200 <= code < 300:
            raise self._unknown(action, f"unexpected {json_kind(payload)} (HTTP {code})")
        return payload

    async def _each(
        self,
        bulk: Bulk[Key],
        ids: Sequence[Key],
        read_item: Callable[[object], _Result],
    ) -> dict[Key, _Result]:
        """A bulk action over any number of IDs, `BULK_LIMIT` per request."""
        results: dict[Key, _Result] = {}
        for chunk in chunks(ids):
            replies = await self._bulk(bulk, chunk)
            for key in chunk:
                wanted = bulk.read_id(key)  # our own ID, as the reply spells it
                results[key] = read_item(MISSING if wanted is None else replies.get(wanted, MISSING))
        return results

    async def _bulk(self, bulk: Bulk[Key], chunk: list[Key]) -> dict[Key, object]:
        """One bulk request; its items keyed by ID, from either reply shape.

        Panels answer bulk calls as an object keyed by ID (`status`) or as a
        list of objects that name their ID (`refill`, `cancel`...). Asked
        about a single ID, some answer with the single-item shape instead.
        """
        joined = ",".join(str(key) for key in chunk)
        try:
            payload = await self._call(bulk.action, {bulk.parameter: joined})
        except ProviderRefused as refused:
            # Asked about one ID, a panel may answer its error for that item at
            # the top level: about this item, unless it is about our key.
            if len(chunk) != 1 or refused.message is None or known_error(refused.message) == Errors.INVALID_KEY:
                raise
            key = bulk.read_id(chunk[0])
            return {key: {"error": refused.message}} if key is not None else {}
        if (
            len(chunk) == 1
            and isinstance(payload, dict)
            and bulk.answer_field in payload
            and str(chunk[0]) not in payload
        ):
            key = bulk.read_id(chunk[0])
            return {key: payload} if key is not None else {}
        if isinstance(payload, dict):
            pairs: Iterator[tuple[object, object]] = iter(payload.items())
        elif isinstance(payload, list):
            pairs = ((item.get(bulk.id_field), item) for item in payload if isinstance(item, dict))
        else:
            raise self._unknown(bulk.action, f"expected a bulk reply, got {json_kind(payload)}")
        replies: dict[Key, object] = {}
        for raw_id, item in pairs:
            key = bulk.read_id(raw_id)
            if key is not None:
                replies.setdefault(key, item)
        return replies

    def _single(self, action: str, result: _Result | ItemError) -> _Result:
        """The answer of a single-item call, or the failure its item error means."""
        if result is UNREADABLE:
            raise self._unknown(action, "reply has no usable answer")
        if isinstance(result, ItemError):
            reason = f"provider error {self._quote(result.message)}"
            raise self._refused(action, reason, result.message)
        return result

    # Reading items.

    def _refused(self, action: str, reason: str, message: str | None = None) -> ProviderRefused:
        return self._logged(ProviderRefused(self.name, f"{action}: {reason}", message))

    def _unknown(self, action: str, reason: str) -> OutcomeUnknown:
        return self._logged(OutcomeUnknown(self.name, f"{action}: {reason}"))

    def _too_large(self, action: str, limit: int) -> ReplyTooLarge:
        return self._logged(
            ReplyTooLarge(self.name, f"{action}: reply larger than {limit} bytes: cut, connection closed")
        )

    @staticmethod
    def _logged(error: _Error) -> _Error:
        log.warning("%s: %s", type(error).__name__, error)
        return error

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _quote(self, text: str) -> str:
        """Upstream text fit for a reason: redacted, one line, short, quoted."""
        text = " ".join(self._redact(text).split())
        if len(text) > _QUOTE_CHARS:
            text = text[: _QUOTE_CHARS - 1] + "…"
        return repr(text)

    def _describe(self, exc: Exception) -> str:
        detail = " ".join(self._redact(str(exc)).split())[:_QUOTE_CHARS]
        return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
