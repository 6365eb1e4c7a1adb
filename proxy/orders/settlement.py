"""What an upstream status means for an order's money. Pure: no I/O, no clock.

`settle(order, status, ...)` turns one status read into the fields to record,
the order's total refund (if the status calls for one) and, where something
does not add up, the reason an operator must look. The order book applies all
three in one atomic step.

Two ways to settle a final order:

- **By rate** (most orders): the panel convention. Completed keeps the whole
  charge, Partial refunds charge × remains / quantity, Canceled refunds all.
  What the provider says it charged is compared with the cost we recorded
  when we sent the order; a difference beyond the tolerance goes to the
  operator (the provider may be billing us differently from its rate).
- **By delivery** (subscriptions, and packages that end Partial): there is no
  per-unit price to refund by, so the order is settled to what the provider
  charged, marked up as the order was: billed = charge × upstream charge /
  recorded cost, rounded up, never more than was held. The rest of the hold
  is refunded. Without a usable upstream charge the operator decides.

An unlimited subscription (no `posts`) is held for a configured number of
posts; the provider bills every post it delivers, with no end. `must_stop`
says when it has used its hold: what the provider says it charged leaves no
room for one more post. The status refresher then asks the provider to
cancel it, and it is settled like any other when it ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from proxy.errors import MoneyError
from proxy.money import ceil_to, floor_to, format_amount, to_minor
from proxy.orders.records import Order
from proxy.orders.states import PLACED
from proxy.providers.replies import UpstreamStatus
from proxy.vocabulary import CANCELED, COMPLETED, FINAL_STATUSES, PARTIAL, SUBSCRIPTIONS

# Below this much, a difference between charges is rounding, not billing.
ROUNDING_SLACK = Decimal("0.0001")


@dataclass(frozen=True)
class Settlement:
    fields: dict[str, object] = field(default_factory=dict)
    refund_to: Decimal | None = None
    attention: str = ""
    # Why no rule could settle this read (the status was kept as it was), if none could.
    unsettled: str = ""


def _shown(amount: Decimal) -> str:
    text = str(amount)
    return text if len(text) <= 30 else text[:27] + "..."


def _shown_text(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= 60 else text[:57] + "...")


def unlimited(order: Order) -> bool:
    """A subscription without a number of posts: billed per post, with no end of its own."""
    return order.type == SUBSCRIPTIONS and order.fields.get("posts", "0") in ("", "0")


def must_stop(order: Order, provider_currency: str) -> bool | None:
    """Whether an open unlimited subscription has used its hold: what the
    provider says it charged, and the most one more post can cost, come to
    more than the hold's cost. None when that cannot be told (the provider
    reports no charge, or one in another currency)."""
    if order.state != PLACED or order.final or not unlimited(order) or not order.cost or order.quantity <= 0:
        return False
    charged_in = order.upstream_currency or provider_currency
    if order.upstream_charge is None or charged_in != (order.cost_currency or provider_currency):
        return None
    per_post = order.cost * int(order.fields.get("max") or 0) / order.quantity
    return order.upstream_charge + per_post > order.cost


def by_delivery(order: Order, status: str) -> bool:
    return order.billing == "delivery" or order.type == SUBSCRIPTIONS or (order.flat and status == PARTIAL)


def refund_by_rate(order: Order, status: str, remains: int) -> Decimal:
    """Total refund a final status calls for: none, remains' share, or all."""
    if status == CANCELED:
        return order.charge
    if status == PARTIAL and order.quantity > 0:
        return floor_to(order.charge * min(remains, order.quantity) / order.quantity)
    return Decimal(0)


def _delivered_share(order: Order, status: str, remains: int) -> Decimal:
    if status == CANCELED or order.quantity <= 0:
        return Decimal(0)
    if status == PARTIAL:
        return Decimal(order.quantity - remains) / order.quantity
    return Decimal(1)


def settle(
    order: Order,
    result: UpstreamStatus,
    *,
    provider_currency: str,
    tolerance_percent: Decimal,
    now: float,
) -> Settlement:
    fields: dict[str, object] = {"status_at": f"{now:.3f}"}
    problems = []
    reported = result.charge
    if reported is not None:
        try:
            if reported < 0:
                raise MoneyError("negative")
            fields["upstream_charge"] = to_minor(floor_to(reported))
        except (MoneyError, ArithmeticError):
            problems.append(f"the provider reported a charge we cannot use ({_shown(reported)})")
            reported = None
    if result.currency:
        fields["upstream_currency"] = result.currency
    if result.status is None:  # a spelling we do not know: keep the status we had
        word = (
            "no status" if result.raw_status is None else f"a status we do not know ({_shown_text(result.raw_status)})"
        )
        return Settlement(fields, attention="; ".join(problems), unsettled=word)
    status, remains = result.status, result.remains
    delivery = by_delivery(order, status)
    if remains is None:
        if status == PARTIAL and not delivery:  # a refund needs the remains: ask again later
            return Settlement(fields, attention="; ".join(problems), unsettled="Partial without usable remains")
        remains = 0 if status == COMPLETED else order.remains
    remains = max(0, min(remains, order.quantity))
    fields.update(status=status, remains=remains)
    if result.start_count is not None:
        fields["start_count"] = result.start_count
    if status not in FINAL_STATUSES:
        return Settlement(fields, attention="; ".join(problems))

    currency = result.currency or order.upstream_currency or provider_currency
    if currency != provider_currency:
        problems.append(f"the provider reported its charge in {currency}, not {provider_currency}")
    charged = reported if result.charge is not None else order.upstream_charge
    comparable = charged is not None and currency == provider_currency and order.cost is not None
    refund_to: Decimal | None
    if delivery:
        if not comparable or not order.cost:
            problems.append(f"{status}: what the provider charged is unknown; the refund is to be decided")
            refund_to = None
        else:
            assert charged is not None and order.cost is not None
            billed = max(Decimal(0), ceil_to(order.charge * charged / order.cost))
            if billed > order.charge:
                problems.append(
                    f"the provider charged {format_amount(charged)} {currency}, more than the "
                    f"{format_amount(order.cost)} {currency} held"
                )
                billed = order.charge
            refund_to = order.charge - billed
    else:
        refund_to = refund_by_rate(order, status, remains)
        if comparable:
            assert charged is not None and order.cost is not None
            expected = order.cost * _delivered_share(order, status, remains)
            slack = order.cost * tolerance_percent / 100 + ROUNDING_SLACK
            if abs(charged - expected) > slack:
                problems.append(
                    f"the provider charged {format_amount(charged)} {currency} for this {status} order, "
                    f"expected about {format_amount(ceil_to(expected))} {currency}"
                )
    return Settlement(fields, refund_to, "; ".join(problems))
