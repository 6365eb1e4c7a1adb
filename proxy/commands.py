"""The operator commands of `smm-proxy`: clients, orders, providers, report,
admin and audit.

Each calls `proxy.ops.operators` (as the admin API does, audited under the
actor "cli") and prints a short human table, or the same data as JSON with
`--json`. `proxy.cli` parses the arguments and runs them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from proxy.errors import CommandError
from proxy.ops import reports
from proxy.ops.operators import Operators

ACTOR = "cli"


def show(args: argparse.Namespace, data: Any, human: Callable[[], str]) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False) if getattr(args, "json", False) else human())


def table(rows: Sequence[Sequence[object]]) -> str:
    if len(rows) <= 1:
        return "(none)"
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


# -- clients ---------------------------------------------------------------


async def clients_add(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.create_client(ACTOR, args.name, args.balance)
    show(
        args,
        data,
        lambda: (
            f"client {data['name']} created, balance {data['balance']} {data['currency']}\n"
            f"API key (shown once, stored hashed): {data['key']}"
        ),
    )


async def clients_topup(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.topup(ACTOR, args.name, args.amount, ref=args.ref, memo=args.memo)
    note = "" if data["applied"] else " (already applied earlier: nothing changed)"
    show(args, data, lambda: f"{args.name}: +{data['amount']}, balance {data['balance']}{note}")


async def clients_list(args: argparse.Namespace, ops: Operators) -> None:
    clients = await ops.clients()
    rows = [["NAME", "BALANCE", "CURRENCY", "STATE"]] + [
        [c["name"], c["balance"], c["currency"], "disabled" if c["disabled"] else "active"] for c in clients
    ]
    show(args, clients, lambda: table(rows))


async def clients_disable(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.disable_client(ACTOR, args.name)
    show(args, data, lambda: f"client {data['name']} disabled")


async def clients_ledger(args: argparse.Namespace, ops: Operators) -> None:
    entries = await ops.ledger(args.name, args.limit)
    rows = [["TIME", "KIND", "AMOUNT", "BALANCE", "REF", "MEMO"]] + [
        [e["time"], e["kind"], e["amount"], e["balance"], e["ref"], e["memo"]] for e in entries
    ]
    show(args, entries, lambda: table(rows))


# -- orders ----------------------------------------------------------------


async def orders_show(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.order(args.id)

    def human() -> str:
        lines = [f"{k:17} {v}" for k, v in data.items() if k not in ("attempts", "ledger")]
        lines += [f"attempt           {a['provider']}: {a['outcome']} {a['reason']}".rstrip() for a in data["attempts"]]
        lines += [f"ledger            {e['time']} {e['kind']} {e['amount']} ({e['ref']})" for e in data["ledger"]]
        return "\n".join(lines)

    show(args, data, human)


async def orders_list(args: argparse.Namespace, ops: Operators) -> None:
    found = await ops.orders(args.state, args.client, args.limit)
    rows = [["ID", "CLIENT", "SERVICE", "QTY", "STATE", "STATUS", "CHARGE", "REFUNDED", "PROVIDER", "UPSTREAM"]] + [
        [
            o["id"],
            o["client"],
            o["service"],
            o["quantity"],
            o["state"],
            o["status"],
            o["charge"],
            o["refunded"],
            o["provider"],
            o["upstream_order"] or "",
        ]
        for o in found
    ]
    show(args, found, lambda: table(rows))


async def orders_resolve(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.resolve(ACTOR, args.id, upstream_order=args.upstream_order, failed=args.failed)
    verdict = "failed, refunded in full" if args.failed else f"placed as upstream order {args.upstream_order}"
    show(args, data, lambda: f"order {data['id']} resolved: {verdict}")


async def orders_refund(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.refund(ACTOR, args.id, args.total)
    show(args, data, lambda: f"order {data['id']}: refunded {data['refunded']} in all")


async def orders_archive(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.archive(ACTOR, since_timestamp(args.older_than))
    show(args, data, lambda: f"{data['moved']} finished orders from before {data['before']} moved to {data['to']}")


async def orders_ack(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.acknowledge(ACTOR, args.id)
    show(args, data, lambda: f"order {data['id']}: attention cleared")


async def orders_close(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.close(ACTOR, args.id, args.refund, args.reason)
    show(
        args,
        data,
        lambda: f"order {data['id']} closed: refunded {data['refunded']} in all, the client sees {data['status']}",
    )


# -- providers, reports, admins, audit -------------------------------------


async def providers(args: argparse.Namespace, ops: Operators) -> None:
    rows_data = await ops.providers(check=args.check)

    def human() -> str:
        rows = [
            ["NAME", "HEALTH", "CURRENCY", "BALANCE", "CHECKED", "SERVICES", "DISABLED", "CATALOG AGE", "PRICE CHANGES"]
        ]
        for p in rows_data:
            read = p["currency_read"] or "?"
            currency = p["currency"] if read in (p["currency"], "?") else f"{p['currency']} (reads {read})"
            age = "never" if p["catalog_age"] is None else f"{p['catalog_age']} s"
            rows.append(
                [
                    p["name"],
                    p["health"],
                    currency,
                    p["balance"] or "?",
                    p["checked"] or "never",
                    p["services"],
                    str(len(p["disabled"])),
                    age,
                    len(p["price_changes"]),
                ]
            )
        lines = [table(rows)]
        for p in rows_data:
            lines += [f"  {p['name']}: service {c['service']} {c['from']} -> {c['to']}" for c in p["price_changes"][:5]]
            lines += [
                f"  {p['name']}: service {d['service']} not sold: {d['reason']} (rate {d['rate']})"
                for d in p["disabled"]
            ]
            if p["check_error"]:
                lines.append(f"  {p['name']}: last check failed: {p['check_error']}")
        return "\n".join(lines)

    show(args, rows_data, human)


def since_timestamp(text: str | None) -> float:
    try:
        return reports.since(text)
    except ValueError as exc:
        raise CommandError(f"--{exc}") from None


async def report(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.report(since_timestamp(args.since), args.by)
    columns = ["key", "orders", "revenue", "refunds", "cost", "margin"]
    if args.csv:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows([*data["lines"], data["total"]])
        print(out.getvalue(), end="")
        return
    rows = [[args.by.upper(), "ORDERS", "REVENUE", "REFUNDS", "COST", "MARGIN"]]
    rows += [[line[c] for c in columns] for line in [*data["lines"], data["total"]]]
    show(
        args,
        data,
        lambda: (
            f"since {datetime.fromtimestamp(data['since'], tz=UTC):%Y-%m-%d %H:%M} UTC, "
            f"in {data['currency']}\n{table(rows)}"
        ),
    )


async def admin_add(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.add_admin(ACTOR, args.name)
    show(args, data, lambda: f"admin {data['name']} added\ntoken (shown once, stored hashed): {data['token']}")


async def admin_list(args: argparse.Namespace, ops: Operators) -> None:
    names = await ops.admins()
    show(args, names, lambda: "\n".join(names) or "(none)")


async def admin_remove(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.remove_admin(ACTOR, args.name)
    show(args, data, lambda: f"admin {args.name} removed")


async def audit(args: argparse.Namespace, ops: Operators) -> None:
    rows_data = await ops.audit_log(args.limit)
    rows = [["TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"]] + [
        [r["time"], r["actor"], r["action"], r["target"], json.dumps(r["detail"], ensure_ascii=False)]
        for r in rows_data
    ]
    show(args, rows_data, lambda: table(rows))
