"""The dashboard's pages: each reads through the operators' functions (the
ones the CLI and the admin API call) and renders a template. Pages only
read: GET and HEAD never change anything (a confirmation is a preview, a
dry run of the verdict that writes nothing)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

from starlette.responses import Response

from proxy.edge.dashboard import charts
from proxy.edge.dashboard.web import Dashboard, Refused, View
from proxy.errors import Invalid
from proxy.ops.answers import OrderView
from proxy.ops.operators import whole
from proxy.ops.reports import start_of_day

DAY = 86400.0
CHART_DAYS = 30
QUEUE_ROWS = 200
SEARCH_BY = ("order", "upstream", "client", "link")
VERDICTS = {"resolve": "order.resolve", "failed": "order.resolve", "refund": "order.refund", "ack": "order.ack"}


class Pages:
    def __init__(self, dashboard: Dashboard) -> None:
        self.d = dashboard

    async def overview(self, view: View) -> Response:
        ops = view.ops
        now = ops.admins_registry.clock()
        today = start_of_day(now)
        spans = (("Today", today), ("7 days", now - 7 * DAY), ("30 days", now - 30 * DAY))
        first = today - (CHART_DAYS - 1) * DAY
        *totals, days = await ops.reports([*((since, "provider") for _, since in spans), (first, "day")])
        figures = [(label, made.total) for (label, _), made in zip(spans, totals, strict=True)]
        chart = charts.by_day(days.lines, datetime.fromtimestamp(first, tz=UTC).date(), CHART_DAYS)
        return self.d.render(
            view,
            view.request,
            "overview.html",
            title="Overview",
            nav="overview",
            refresh=30,
            figures=figures,
            chart=chart,
            queues=await ops.queues(),
            providers=await ops.providers(),
            events=await ops.events(limit=12),
        )

    async def queue(self, view: View) -> Response:
        """Needs a person: unknown orders and the attention queue."""
        ops = view.ops
        return self.d.render(
            view,
            view.request,
            "queue.html",
            title="Needs a person",
            nav="queue",
            refresh=30,
            unknown=await ops.orders("unknown", limit=QUEUE_ROWS),
            attention=await ops.orders("attention", limit=QUEUE_ROWS),
        )

    async def confirm(self, view: View) -> Response:
        """What a verdict would do (the operators' dry run), and the form that does it."""
        order_id = _order_id(view)
        query = view.request.query_params
        verdict = query.get("verdict", "")
        if verdict not in VERDICTS:
            raise Refused(f"a verdict is one of {', '.join(VERDICTS)}")
        upstream = query.get("upstream_order", "").strip()
        total = query.get("total", "").strip()
        if verdict == "resolve" and not upstream:
            raise Refused("give the upstream order ID the provider shows for this order")
        preview = await view.ops.preview(
            view.actor,
            order_id,
            VERDICTS[verdict],
            upstream_order=whole(upstream, "the upstream order ID") if verdict == "resolve" else None,
            failed=verdict == "failed",
            total=total if verdict == "refund" else None,
        )
        return self.d.render(
            view,
            view.request,
            "confirm.html",
            title=f"Confirm: order {order_id}",
            nav="queue",
            preview=preview,
            verdict=verdict,
            upstream_order=upstream,
            total=total,
        )

    async def providers(self, view: View) -> Response:
        ops = view.ops
        now = ops.admins_registry.clock()
        week = await ops.report(now - 7 * DAY, "provider")
        return self.d.render(
            view,
            view.request,
            "providers.html",
            title="Providers",
            nav="providers",
            refresh=30,
            providers=await ops.providers(),
            week={line.key: line for line in week.lines},
            calls=await ops.provider_calls(),
        )

    async def orders(self, view: View) -> Response:
        query = view.request.query_params
        by, text = query.get("by", "order"), query.get("q", "").strip()
        if by not in SEARCH_BY:
            raise Refused(f"search by one of {', '.join(SEARCH_BY)}")
        ops = view.ops
        found_list: list[OrderView] | None = None
        if text:
            if by == "order":
                found_list = [await ops.order(whole(text, "an order ID"))]
            elif by == "upstream":
                found_list = await ops.orders(upstream_order=whole(text, "an upstream order ID"), limit=100)
            elif by == "client":
                found_list = await ops.orders(client=text, limit=100)
            else:
                found_list = await ops.orders(link=text, limit=100)
        state = query.get("state", "").strip()
        recent = None if text else await ops.orders(state or None, limit=50)
        return self.d.render(
            view,
            view.request,
            "orders.html",
            title="Orders",
            nav="orders",
            by=by,
            q=text,
            found=found_list,
            recent=recent,
            search_by=SEARCH_BY,
            state=state,
        )

    async def order(self, view: View) -> Response:
        order_id = _order_id(view)
        ops = view.ops
        return self.d.render(
            view,
            view.request,
            "order.html",
            title=f"Order {order_id}",
            nav="orders",
            order=await ops.order(order_id),
            actions=await ops.order_actions(order_id),
            events=await ops.order_events(order_id),
        )

    async def clients(self, view: View) -> Response:
        return self.d.render(
            view, view.request, "clients.html", title="Clients", nav="clients", clients=await view.ops.clients()
        )

    async def client(self, view: View) -> Response:
        return await client_page(self.d, view, view.request.path_params["name"])

    async def ledger_csv(self, view: View) -> Response:
        name = view.request.path_params["name"]
        entries = await view.ops.ledger(name)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["id", "time", "kind", "amount", "balance", "ref", "memo", "order", "actor"])
        for e in entries:
            row = [e.id, e.time, e.kind, e.amount, e.balance, e.ref, e.memo, e.order or "", e.actor]
            writer.writerow([_spreadsheet_safe(str(cell)) for cell in row])
        stamp = datetime.now(tz=UTC).strftime("%Y%m%d")
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="ledger-{name}-{stamp}.csv"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def not_found(self, view: View) -> Response:
        """Any other path under /dashboard (a stale or mistyped link)."""
        raise Refused("No such page on the dashboard.", 404)


async def client_page(d: Dashboard, view: View, name: str, key: str = "") -> Response:
    """A client's page: its record and latest ledger lines; `key` a new API key, shown this once."""
    found = await view.ops.client(name)
    ledger = await view.ops.ledger(name, limit=200)
    return d.render(
        view,
        view.request,
        "client.html",
        title=f"Client {name}",
        nav="clients",
        client=found,
        ledger=list(reversed(ledger)),
        key=key,
    )


def _order_id(view: View) -> int:
    try:
        return whole(view.request.path_params["id"], "an order ID")
    except Invalid as exc:
        raise Refused(str(exc), 404) from None


def _spreadsheet_safe(cell: str) -> str:
    """A cell a spreadsheet will not run as a formula (a memo or reference typed by someone)."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(cell) else cell


_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


def _number(cell: str) -> bool:
    """A plain number (an amount, a balance): float() would also pass "-Infinity" or "+1_0"."""
    return _PLAIN_NUMBER.fullmatch(cell) is not None
