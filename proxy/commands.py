"""The operator commands of `smm-proxy`: clients, orders, providers, report,
admin and audit.

Each calls `proxy.ops.operators` (as the admin API does), acting as
`cli:<the operating-system user>` with the owner's role (whoever holds the
Redis URL holds every power), and prints a short human table from the typed
answer, or its JSON with `--json` (`proxy.ops.answers.as_json`, as the admin
API answers). `proxy.cli` parses the arguments and runs them; a command may
answer an exit status (`audit verify`: 1 when the chain is broken).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import getpass
import io
import json
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from proxy.errors import CommandError
from proxy.ops import reports
from proxy.ops.answers import ReportLine, as_json
from proxy.ops.operators import Operators
from proxy.ops.roles import Actor


def operating_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's user without a name
        return f"uid{os.getuid()}"


ACTOR = Actor(f"cli:{operating_user()}")


def show(args: argparse.Namespace, data: object, human: Callable[[], str]) -> None:
    print(json.dumps(as_json(data), indent=2, ensure_ascii=False) if getattr(args, "json", False) else human())


def table(rows: Sequence[Sequence[object]]) -> str:
    if len(rows) <= 1:
        return "(none)"
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


# -- clients ---------------------------------------------------------------


async def clients_add(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.create_client(ACTOR, args.name, args.balance, args.reason)
    show(
        args,
        data,
        lambda: (
            f"client {data.name} created, balance {data.balance} {data.currency}\n"
            f"API key (shown once, stored hashed): {data.key}"
        ),
    )


async def clients_topup(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.topup(ACTOR, args.name, args.amount, ref=args.ref, memo=args.memo, reason=args.reason)
    note = "" if data.applied else " (already applied earlier: nothing changed)"
    show(args, data, lambda: f"{args.name}: +{data.amount}, balance {data.balance}{note}")


async def clients_adjust(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.adjust(ACTOR, args.name, args.amount, args.reason, ref=args.ref)
    note = "" if data.applied else " (already applied earlier: nothing changed)"
    sign = "" if data.amount.startswith("-") else "+"
    show(args, data, lambda: f"{args.name}: {sign}{data.amount} ({data.memo}), balance {data.balance}{note}")


def _terms(c: object) -> str:
    markup, window, same_link, rates = (getattr(c, n) for n in ("markup", "duplicate_window", "same_link", "rates"))
    parts = [f"markup {markup}%" if markup else "", f"window {window:g}s" if window is not None else ""]
    parts += ["same link refused" if same_link == "refuse" else "", f"{len(rates)} custom rates" if rates else ""]
    return ", ".join(part for part in parts if part) or "default"


async def clients_list(args: argparse.Namespace, ops: Operators) -> None:
    clients = await ops.clients()
    rows = [["NAME", "BALANCE", "CURRENCY", "STATE", "TERMS"]] + [
        [c.name, c.balance, c.currency, "disabled" if c.disabled else "active", _terms(c)] for c in clients
    ]
    show(args, clients, lambda: table(rows))


async def clients_disable(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.disable_client(ACTOR, args.name, args.reason)
    show(args, data, lambda: f"client {data.name} disabled")


async def clients_enable(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.enable_client(ACTOR, args.name, args.reason)
    show(args, data, lambda: f"client {data.name} enabled")


async def clients_rotate_key(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.rotate_key(ACTOR, args.name, args.reason)
    show(
        args,
        data,
        lambda: f"client {args.name}: new API key (shown once, stored hashed; the old one no longer works): {data.key}",
    )


async def clients_set(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.set_terms(
        ACTOR,
        args.name,
        markup=args.markup,
        duplicate_window=args.duplicate_window,
        same_link=args.same_link,
        reason=args.reason,
    )
    show(args, data, lambda: f"client {data.name}: {_terms(data)}")


async def clients_rate(args: argparse.Namespace, ops: Operators) -> None:
    if (args.rate is None) == (not args.clear):
        raise CommandError("give a RATE, or --clear to drop the custom rate")
    data = await ops.set_rate(ACTOR, args.name, args.service, None if args.clear else args.rate, reason=args.reason)
    rate = data.rates.get(str(args.service))
    show(args, data, lambda: f"client {data.name}: service {args.service} at {rate or 'its markup'}")


async def clients_ledger(args: argparse.Namespace, ops: Operators) -> None:
    entries = await ops.ledger(args.name, args.limit)
    rows = [["TIME", "KIND", "AMOUNT", "BALANCE", "REF", "MEMO", "BY"]] + [
        [e.time, e.kind, e.amount, e.balance, e.ref, e.memo, e.actor] for e in entries
    ]
    show(args, entries, lambda: table(rows))


# -- orders ----------------------------------------------------------------


async def orders_show(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.order(args.id)

    def human() -> str:
        shown = [f.name for f in dataclasses.fields(data) if f.name not in ("attempts", "ledger")]
        lines = [f"{name:17} {getattr(data, name)}" for name in shown]
        lines += [f"attempt           {a.provider}: {a.outcome} {a.reason}".rstrip() for a in data.attempts]
        lines += [f"ledger            {e.time} {e.kind} {e.amount} ({e.ref})" for e in data.ledger]
        return "\n".join(lines)

    show(args, data, human)


async def orders_list(args: argparse.Namespace, ops: Operators) -> None:
    found = await ops.orders(
        args.state,
        args.client,
        args.limit,
        link=args.link,
        upstream_order=args.upstream_order,
        since=None if args.since is None else since_timestamp(args.since, "since"),
        until=None if args.until is None else since_timestamp(args.until, "until"),
    )
    rows = [["ID", "CLIENT", "SERVICE", "QTY", "STATE", "STATUS", "CHARGE", "REFUNDED", "PROVIDER", "UPSTREAM"]] + [
        [
            o.id,
            o.client,
            o.service,
            o.quantity,
            o.state,
            o.status,
            o.charge,
            o.refunded,
            o.provider,
            o.upstream_order or "",
        ]
        for o in found
    ]
    show(args, found, lambda: table(rows))


async def orders_resolve(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.resolve(ACTOR, args.id, upstream_order=args.upstream_order, failed=args.failed, reason=args.reason)
    verdict = "failed, refunded in full" if args.failed else f"placed as upstream order {args.upstream_order}"
    show(args, data, lambda: f"order {data.id} resolved: {verdict}")


async def orders_refund(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.refund(ACTOR, args.id, args.total, args.reason)
    show(args, data, lambda: f"order {data.id}: refunded {data.refunded} in all")


async def orders_archive(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.archive(ACTOR, since_timestamp(args.older_than, "older-than"), args.reason)
    show(args, data, lambda: f"{data.moved} finished orders from before {data.before} moved to {data.to}")


async def orders_ack(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.acknowledge(ACTOR, args.id, args.reason)
    show(args, data, lambda: f"order {data.id}: attention cleared")


async def orders_close(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.close(ACTOR, args.id, args.refund, args.reason)
    show(
        args,
        data,
        lambda: f"order {data.id} closed: refunded {data.refunded} in all, the client sees {data.status}",
    )


# -- providers, reports, admins, audit -------------------------------------


async def providers(args: argparse.Namespace, ops: Operators) -> None:
    if getattr(args, "action", None) == "approve":
        await providers_approve(args, ops)
        return
    rows_data = await ops.providers(check=args.check)

    def human() -> str:
        rows: list[list[object]] = [
            [
                "NAME",
                "HEALTH",
                "CURRENCY",
                "BALANCE",
                "BALANCE AGE",
                "SERVICES",
                "DISABLED",
                "CATALOG AGE",
                "HELD PRICES",
            ]
        ]
        for p in rows_data:
            read = p.currency_read or "?"
            currency = p.currency if read in (p.currency, "?") else f"{p.currency} (reads {read})"
            age = "never" if p.catalog_age is None else f"{p.catalog_age} s"
            balance = p.funds or p.balance or "?"
            rows.append(
                [
                    p.name,
                    p.health,
                    currency,
                    f"{balance} (low below {p.low_balance})" if p.low else balance,
                    "never" if p.balance_age is None else f"{p.balance_age} s",
                    p.services,
                    len(p.disabled),
                    age,
                    len(p.held_prices),
                ]
            )
        lines = [table(rows)]
        for p in rows_data:
            for scope, e in p.ejections.items():
                if e.until:
                    lines.append(f"  {p.name}: ejected from {scope} until {e.until}: {e.reason}")
            lines += [
                f"  {p.name}: service {h.service} held at {h.approved} (now {h.proposed}): "
                f"smm-proxy providers approve {p.name} {h.service}"
                for h in p.held_prices
            ]
            lines += [f"  {p.name}: service {c['service']} {c['from']} -> {c['to']}" for c in p.price_changes[:5]]
            lines += [f"  {p.name}: service {d.service} not sold: {d.reason} (rate {d.rate})" for d in p.disabled]
            for service, r in p.outcomes.items():
                lines.append(
                    f"  {p.name}: service {service}: {r.completed_pct}% completed, {r.partial_pct}% partial, "
                    f"{r.canceled_pct}% canceled, {r.stuck_pct}% stuck of ~{r.orders} orders; "
                    f"completes in {r.mean_completion_seconds or '?'} s"
                )
            if p.check_error:
                lines.append(f"  {p.name}: last check failed: {p.check_error}")
        return "\n".join(lines)

    show(args, rows_data, human)


async def providers_approve(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.approve_prices(ACTOR, args.provider, args.services, args.reason)
    show(
        args,
        data,
        lambda: (
            "\n".join(
                f"{data.provider} service {c['service']}: {c['from']} -> {c['to']} approved" for c in data.approved
            )
            or "nothing was held"
        ),
    )


async def events(args: argparse.Namespace, ops: Operators) -> None:
    start = since_timestamp(args.since) if args.since else None
    found = await ops.events(start, args.limit, args.kind)
    rows = [["TIME", "KIND", "SUBJECT", "MESSAGE"]] + [[e.time, e.kind, e.subject, e.message] for e in found]
    show(args, found, lambda: table(rows))


def since_timestamp(text: str | None, option: str = "since") -> float:
    try:
        return reports.since(text)
    except ValueError as exc:
        raise CommandError(f"--{option}: {exc}") from None


async def report(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.report(since_timestamp(args.since), args.by)
    lines = [*data.lines, data.total]
    if args.csv:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([f.name for f in dataclasses.fields(ReportLine)])
        writer.writerows(dataclasses.astuple(line) for line in lines)
        print(out.getvalue(), end="")
        return
    rows: list[list[object]] = [[args.by.upper(), "ORDERS", "SHARE %", "REVENUE", "REFUNDS", "COST", "MARGIN"]]
    rows += [
        [line.key, line.orders, "" if line.share_pct is None else line.share_pct, line.revenue]
        + [line.refunds, line.cost, line.margin]
        for line in lines
    ]
    show(
        args,
        data,
        lambda: (
            f"since {datetime.fromtimestamp(data.since, tz=UTC):%Y-%m-%d %H:%M} UTC, in {data.currency}\n{table(rows)}"
        ),
    )


async def admin_add(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.add_admin(ACTOR, args.name, args.role, args.expires, args.reason)
    life = f", expires {data.expires}" if data.expires else ""
    show(
        args,
        data,
        lambda: f"admin {data.name} added ({data.role}{life})\ntoken (shown once, stored hashed): {data.token}",
    )


async def admin_list(args: argparse.Namespace, ops: Operators) -> None:
    admins = await ops.admins()
    rows = [["NAME", "ROLE", "EXPIRES", "LAST USED", "STATE"]] + [
        [
            a.name,
            a.role or "-",
            a.expires or "never",
            a.last_used or "never",
            "expired" if a.expired else ("active" if a.registered else "UNREGISTERED: opens nothing, remove it"),
        ]
        for a in admins
    ]
    show(args, admins, lambda: table(rows))


async def admin_remove(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.remove_admin(ACTOR, args.name, args.reason)
    show(args, data, lambda: f"admin {args.name} removed")


async def audit(args: argparse.Namespace, ops: Operators) -> None:
    rows_data = await ops.audit_log(args.limit)
    rows = [["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "REASON", "DETAIL"]] + [
        [r.seq, r.time, r.actor, r.action, r.target, r.reason, json.dumps(r.detail, ensure_ascii=False)]
        for r in rows_data
    ]
    show(args, rows_data, lambda: table(rows))


async def audit_verify(args: argparse.Namespace, ops: Operators) -> int:
    """Exit 0 when the chain is intact, 1 naming the first bad entry."""
    data = await ops.verify_audit()
    keyed = "keyed with SMM_PROXY_AUDIT_SECRET" if data.keyed else "not keyed (SMM_PROXY_AUDIT_SECRET unset)"

    def human() -> str:
        if data.intact:
            return f"audit log intact: {data.entries} entries, head at {data.head}, {keyed}"
        where = f"entry {data.bad_seq}" if data.bad_seq else "the log"
        at = f" (stream ID {data.bad_id})" if data.bad_id else ""
        return f"audit log BROKEN at {where}{at}: {data.problem}"

    show(args, data, human)
    return 0 if data.intact else 1
