"""Operators' work on orders: finding them, settling what the router could
not (resolve, refund, acknowledge) and archiving. Every change is one audited
step (`proxy.ops.acting`)."""

from __future__ import annotations

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
    OrderDetail,
    OrderView,
    iso,
)
from proxy.ops.audit import Record
from proxy.ops.roles import Actor
from proxy.ops.search import Search, rows, search
from proxy.orders.records import Order
from proxy.orders.states import ACK, CLOSE, REFUND, UNKNOWN, rule


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
        if (upstream_order is None) == (not failed):
            raise Invalid("give the upstream order ID, or declare the order failed")
        if upstream_order is not None and upstream_order <= 0:
            raise Invalid("an upstream order ID is a positive number")
        found = await self._order(order_id)
        if found.state != UNKNOWN:
            raise OperatorError(f"order {order_id} is {found.state}, not unknown: nothing to resolve")

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
        value = amount(total)
        found = await self._order(order_id)
        if rule(found.state, REFUND) is None:
            raise OperatorError(f"order {order_id} is {found.state}: it cannot be refunded now")
        if not found.refunded <= value <= found.charge:
            raise OperatorError(
                f"the total refund must be between {found.refunded} (already refunded) and {found.charge} (charged)"
            )

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
        found = await self._order(order_id)
        if rule(found.state, ACK) is None:
            raise OperatorError(f"order {order_id} is {found.state}: nothing to acknowledge")

        async def act(entry: Record) -> OrderView:
            try:
                return OrderView.of(await self._verdicts.acknowledge(order_id))
            except StateChanged as exc:
                raise OperatorError(f"order {order_id} is {exc.state}: nothing to acknowledge") from None

        return await self._audited(actor, "order.ack", str(order_id), act, reason=reason_text(reason), order=order_id)

    async def close(self, actor: Actor | str, order_id: int, total: object, reason: object = "") -> OrderView:
        """End an order the router cannot finish, with the total refund the operator chose."""
        value, why = amount(total), reason_text(reason)
        found = await self._order(order_id)
        if rule(found.state, CLOSE) is None:
            raise OperatorError(f"order {order_id} is {found.state}: only a placed or unknown order can be closed")
        if not found.refunded <= value <= found.charge:  # as a refund: the order says, a 409
            raise OperatorError(
                f"the total refund must be between {found.refunded} (already refunded) and {found.charge} (charged)"
            )

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

    async def _order(self, order_id: int) -> Order:
        whole(order_id, "an order ID")
        found = await self._book.find(order_id)
        if found is None:
            raise NotFound(f"no order {order_id}")
        return found
