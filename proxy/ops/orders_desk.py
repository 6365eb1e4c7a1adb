"""Operators' work on orders: finding them, settling what the router could
not (resolve, refund, acknowledge, close) and archiving. Every change is one
audited step (`proxy.ops.acting`).

Each verdict can be previewed first (`preview`, the admin API's `dry_run`):
the same checks, the money the state table's rule would move
(`proxy.orders.verdicts.credit`) and the client's balance after, with
nothing written. A confirmation page shows that, never its own sums."""

from __future__ import annotations

from decimal import Decimal

from proxy.errors import (
    ArchiveUnwritable,
    ClaimConflict,
    Invalid,
    NotFound,
    OperatorError,
    StateChanged,
)
from proxy.money import format_amount
from proxy.ops.acting import Acting, amount, reason_text, refusal, whole
from proxy.ops.answers import (
    Archived,
    AuditEntry,
    EventView,
    OrderDetail,
    OrderView,
    Preview,
    Queues,
    iso,
)
from proxy.ops.audit import Record
from proxy.ops.events import READ_LIMIT
from proxy.ops.roles import Actor, as_actor
from proxy.ops.search import CLOCK_SLACK_SECONDS, Search, rows, search
from proxy.orders.records import Order
from proxy.orders.states import ACK, CLOSE, REFUND, RESOLVE_FAILED, RESOLVE_PLACED, UNKNOWN, WORKING_SETS, rule
from proxy.orders.verdicts import credit

VERDICTS = ("order.resolve", "order.refund", "order.ack", "order.close")
# How far back `order_actions` looks in the audit log for an order's entries.
ORDER_ACTIONS_SCAN = 1000


class OrdersDesk(Acting):
    """Orders: search, verdicts, archive."""

    async def order(self, order_id: int) -> OrderDetail:
        """One order, from Redis or from the archive, with its ledger entries."""
        order = await self._book.find(order_id)
        archived = order is None and (order := await self._archive.find(order_id)) is not None
        if order is None:
            raise NotFound(f"no order {order_id}")
        entries = [e for e in await self._ledger.entries(order.client) if e.order == order.id]
        return OrderDetail.of_found(order, archived, entries)

    async def queues(self) -> Queues:
        """How many orders each working set holds, over every client."""
        counts = {group: await self._book.count(group) for group in WORKING_SETS}
        return Queues(counts["inflight"], counts["open"], counts["unknown"], counts["attention"])

    async def order_actions(self, order_id: int) -> list[AuditEntry]:
        """The audit entries that name an order (its verdicts, and refusals of
        them), newest first, from the newest ORDER_ACTIONS_SCAN entries."""
        target = str(whole(order_id, "an order ID"))
        found = await self._audit.newest(ORDER_ACTIONS_SCAN)
        return [AuditEntry.of(r) for r in found if r.target == target and r.action.startswith("order.")]

    async def order_events(self, order_id: int) -> list[EventView]:
        """The operators' events about an order (attention, stuck, ...), newest
        first, from those since it was created."""
        wanted = whole(order_id, "an order ID")
        found = await self._book.find(wanted) or await self._archive.find(wanted)
        if found is None:
            raise NotFound(f"no order {wanted}")
        if self._events is None:
            return []
        since = found.created - CLOCK_SLACK_SECONDS
        return [e for e in await self._events.read(since, READ_LIMIT, "order.") if e.subject == str(wanted)]

    async def preview(
        self,
        actor: Actor | str,
        order_id: int,
        action: str,
        *,
        upstream_order: int | None = None,
        failed: bool = False,
        total: object = None,
    ) -> Preview:
        """What `action` (one of VERDICTS) would do to an order, checked as
        the action itself checks it, with nothing written: the money it would
        move to the client and the balance after."""
        if action not in VERDICTS:
            raise Invalid(f"a verdict is one of {', '.join(VERDICTS)}")
        as_actor(actor).check(action)
        value = None
        if action == "order.resolve":
            found = await self._resolvable(order_id, upstream_order, failed)
            if upstream_order is not None:
                others = [o for o in await self._claims.owners([found.provider], upstream_order) if o != order_id]
                if others:
                    raise refusal(ClaimConflict(found.provider, upstream_order, others[0]))
            if failed:
                event, verdict = RESOLVE_FAILED, "failed"
            else:
                event, verdict = RESOLVE_PLACED, f"placed as upstream order {upstream_order}"
        elif action == "order.ack":
            found = await self._acknowledgeable(order_id)
            event, verdict = ACK, "acknowledged, no money moves"
        else:
            event = REFUND if action == "order.refund" else CLOSE
            value, found = await self._refundable(order_id, total, event)
            verdict = f"total refund {format_amount(value)}" + (", final" if event == CLOSE else "")
        moved = credit(found, event, value)
        balance = await self._ledger.balance(found.client)
        return Preview(
            order=found.id,
            action=action,
            verdict=verdict,
            client=found.client,
            charge=format_amount(found.charge),
            refunded=format_amount(found.refunded),
            credit=format_amount(moved),
            balance=format_amount(balance),
            balance_after=format_amount(balance + moved),
            state=found.state,
        )

    async def archive(self, actor: Actor | str, before: float, reason: str = "") -> Archived:
        async def act(entry: Record) -> Archived:
            try:
                moved = await self._archive.archive(before)
            except ArchiveUnwritable as exc:
                raise OperatorError(str(exc)) from None
            return Archived(moved, iso(before), str(self._archive.directory))

        target = str(self._archive.directory)
        return await self._audited(
            actor, "orders.archive", target, act, reason=reason_text(reason), detail={"before": iso(before)}
        )

    async def orders(
        self,
        state: str | None = None,
        client: str | None = None,
        limit: object = 50,
        *,
        link: str | None = None,
        upstream_order: int | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[OrderView]:
        query = Search(state or "", client or None, link or "", upstream_order, since, until, rows(limit))
        return [OrderView.of(o) for o in await search(self._book, self._claims, self._providers, query)]

    async def resolve(
        self,
        actor: Actor | str,
        order_id: int,
        *,
        upstream_order: int | None = None,
        failed: bool = False,
        reason: str = "",
    ) -> OrderView:
        await self._resolvable(order_id, upstream_order, failed)

        async def act(entry: Record) -> OrderView:
            try:
                return OrderView.of(
                    await self._verdicts.resolve(order_id, upstream_order=upstream_order, failed=failed)
                )
            except (ValueError, ClaimConflict) as exc:
                raise refusal(exc) from None
            except StateChanged as exc:
                raise OperatorError(f"order {order_id} is {exc.state}, not unknown: nothing to resolve") from None

        verdict = "failed" if failed else f"placed as upstream order {upstream_order}"
        return await self._audited(
            actor,
            "order.resolve",
            str(order_id),
            act,
            reason=reason_text(reason),
            order=order_id,
            detail={"verdict": verdict},
        )

    async def refund(self, actor: Actor | str, order_id: int, total: object, reason: str = "") -> OrderView:
        value, _ = await self._refundable(order_id, total, REFUND)

        async def act(entry: Record) -> OrderView:
            try:
                return OrderView.of(await self._verdicts.refund(order_id, value))
            except ValueError as exc:
                raise refusal(exc) from None
            except StateChanged as exc:
                raise OperatorError(f"order {order_id} is {exc.state}: it cannot be refunded now") from None

        return await self._audited(
            actor,
            "order.refund",
            str(order_id),
            act,
            reason=reason_text(reason),
            order=order_id,
            detail={"total": format_amount(value)},
        )

    async def acknowledge(self, actor: Actor | str, order_id: int, reason: str = "") -> OrderView:
        await self._acknowledgeable(order_id)

        async def act(entry: Record) -> OrderView:
            try:
                return OrderView.of(await self._verdicts.acknowledge(order_id))
            except StateChanged as exc:
                raise OperatorError(f"order {order_id} is {exc.state}: nothing to acknowledge") from None

        return await self._audited(actor, "order.ack", str(order_id), act, reason=reason_text(reason), order=order_id)

    async def close(self, actor: Actor | str, order_id: int, total: object, reason: object = "") -> OrderView:
        """End an order the router cannot finish, with the total refund the operator chose."""
        why = reason_text(reason)
        value, _ = await self._refundable(order_id, total, CLOSE)

        async def act(entry: Record) -> OrderView:
            try:
                return OrderView.of(await self._verdicts.close(order_id, value, why))
            except ValueError as exc:
                raise refusal(exc) from None
            except StateChanged as exc:
                raise OperatorError(
                    f"order {order_id} is {exc.state}: only a placed or unknown order can be closed"
                ) from None

        return await self._audited(
            actor,
            "order.close",
            str(order_id),
            act,
            reason=why,
            order=order_id,
            detail={"refund": format_amount(value)},
        )

    async def _resolvable(self, order_id: int, upstream_order: int | None, failed: bool) -> Order:
        if (upstream_order is None) == (not failed):
            raise Invalid("give the upstream order ID, or declare the order failed")
        if upstream_order is not None and upstream_order <= 0:
            raise Invalid("an upstream order ID is a positive number")
        found = await self._order(order_id)
        if found.state != UNKNOWN:
            raise OperatorError(f"order {order_id} is {found.state}, not unknown: nothing to resolve")
        return found

    async def _acknowledgeable(self, order_id: int) -> Order:
        found = await self._order(order_id)
        if rule(found.state, ACK) is None:
            raise OperatorError(f"order {order_id} is {found.state}: nothing to acknowledge")
        return found

    async def _refundable(self, order_id: int, total: object, event: str) -> tuple[Decimal, Order]:
        """A total refund (for a refund or a close) checked against the order."""
        value = amount(total)
        found = await self._order(order_id)
        if rule(found.state, event) is None:
            if event == CLOSE:
                raise OperatorError(f"order {order_id} is {found.state}: only a placed or unknown order can be closed")
            raise OperatorError(f"order {order_id} is {found.state}: it cannot be refunded now")
        if not found.refunded <= value <= found.charge:  # the order says: a 409
            raise OperatorError(
                f"the total refund must be between {found.refunded} (already refunded) and {found.charge} (charged)"
            )
        return value, found

    async def _order(self, order_id: int) -> Order:
        whole(order_id, "an order ID")
        found = await self._book.find(order_id)
        if found is None:
            raise NotFound(f"no order {order_id}")
        return found
