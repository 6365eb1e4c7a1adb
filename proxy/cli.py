"""The `smm-proxy` command: serve, demo, check, and operator commands.

Every command that reads or changes data prints a short human table, or
JSON with `--json` for scripts. Errors go to stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from proxy.accounts.clients import AccountError, Client
from proxy.accounts.ledger import Entry
from proxy.config import Config, ConfigError, load_config
from proxy.money import MoneyError, format_amount, parse_amount
from proxy.orders.book import GROUPS, ClaimConflict, Order, StateChanged
from proxy.runtime import Runtime
from proxy.settings import Settings


class CommandError(Exception):
    """A refusal to print as it is, without a traceback."""


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "config", None):
        overrides["config"] = Path(args.config)
    return Settings(**overrides)


def _config(settings: Settings) -> Config:
    return load_config(settings.config, settings.environ())


def _amount(text: str) -> Decimal:
    try:
        return parse_amount(text)
    except MoneyError as exc:
        raise CommandError(str(exc)) from None


def _print(args: argparse.Namespace, data: Any, human: Callable[[], str]) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else human())


def _client_json(client: Client) -> dict[str, Any]:
    return {
        "name": client.name,
        "balance": format_amount(client.balance),
        "currency": client.currency,
        "disabled": client.disabled,
    }


def _entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "time": entry.time.isoformat(timespec="seconds"),
        "kind": entry.kind,
        "amount": format_amount(entry.amount),
        "balance": format_amount(entry.balance),
        "ref": entry.ref,
        "memo": entry.memo,
    }


def _table(rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


async def _with_runtime(args: argparse.Namespace, work: Callable[[Runtime], Awaitable[None]]) -> None:
    settings = _settings(args)
    runtime = Runtime.from_settings(settings, _config(settings))
    try:
        await work(runtime)
    finally:
        await runtime.aclose()


# -- clients ---------------------------------------------------------------


async def clients_add(args: argparse.Namespace, runtime: Runtime) -> None:
    client, api_key = await runtime.accounts.create(args.name, _amount(args.balance))
    data = {**_client_json(client), "key": api_key}
    _print(
        args,
        data,
        lambda: f"client {client.name} created, balance {data['balance']} {client.currency}\n"
        f"API key (shown once, stored hashed): {api_key}",
    )


async def clients_topup(args: argparse.Namespace, runtime: Runtime) -> None:
    entry = await runtime.accounts.topup(args.name, _amount(args.amount), ref=args.ref, memo=args.memo)
    data = {**_entry_json(entry), "applied": not entry.duplicate}
    note = " (already applied earlier: nothing changed)" if entry.duplicate else ""
    _print(args, data, lambda: f"{args.name}: +{data['amount']}, balance {data['balance']}{note}")


async def clients_list(args: argparse.Namespace, runtime: Runtime) -> None:
    clients = await runtime.accounts.all()
    rows = [["NAME", "BALANCE", "CURRENCY", "STATE"]] + [
        [c.name, format_amount(c.balance), c.currency, "disabled" if c.disabled else "active"]
        for c in clients
    ]
    _print(args, [_client_json(c) for c in clients], lambda: _table(rows))


async def clients_disable(args: argparse.Namespace, runtime: Runtime) -> None:
    client = await runtime.accounts.disable(args.name)
    _print(args, _client_json(client), lambda: f"client {client.name} disabled")


async def clients_ledger(args: argparse.Namespace, runtime: Runtime) -> None:
    await runtime.accounts.get(args.name)
    entries = await runtime.ledger.entries(args.name, args.limit)
    rows = [["TIME", "KIND", "AMOUNT", "BALANCE", "REF", "MEMO"]] + [
        [e["time"], e["kind"], e["amount"], e["balance"], e["ref"], e["memo"]]
        for e in map(_entry_json, entries)
    ]
    _print(args, [_entry_json(e) for e in entries], lambda: _table(rows))


# -- orders ----------------------------------------------------------------


def _order_json(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "client": order.client,
        "service": order.service,
        "type": order.type,
        "link": order.link,
        "quantity": order.quantity,
        "state": order.state,
        "status": order.public_status,
        "remains": order.remains,
        "charge": format_amount(order.charge),
        "refunded": format_amount(order.refunded),
        "provider": order.provider,
        "upstream_service": order.upstream_service,
        "upstream_order": order.upstream_order,
        "attempts": [a.__dict__ for a in order.attempts],
        "attention": order.attention,
        "cost": "" if order.cost is None else f"{format_amount(order.cost)} {order.cost_currency}",
        "upstream_charge": (
            "" if order.upstream_charge is None
            else f"{format_amount(order.upstream_charge)} {order.upstream_currency or order.cost_currency}"
        ),
        "created": datetime.fromtimestamp(order.created, tz=UTC).isoformat(timespec="seconds"),
    }


async def _find_order(runtime: Runtime, order_id: int) -> Order:
    order = await runtime.book.find(order_id)
    if order is None:
        raise CommandError(f"no order {order_id}")
    return order


async def _order_entries(runtime: Runtime, order: Order) -> list[Entry]:
    return [e for e in await runtime.ledger.entries(order.client) if e.order == order.id]


async def orders_show(args: argparse.Namespace, runtime: Runtime) -> None:
    order = await _find_order(runtime, args.id)
    entries = await _order_entries(runtime, order)
    data = {**_order_json(order), "ledger": [_entry_json(e) for e in entries]}

    def human() -> str:
        lines = [f"{k:17} {v}" for k, v in data.items() if k not in ("attempts", "ledger")]
        lines += [f"attempt           {a['provider']}: {a['outcome']} {a['reason']}".rstrip() for a in data["attempts"]]
        lines += [f"ledger            {e['time']} {e['kind']} {e['amount']} ({e['ref']})" for e in data["ledger"]]
        return "\n".join(lines)

    _print(args, data, human)


async def orders_list(args: argparse.Namespace, runtime: Runtime) -> None:
    wanted = (args.state or "").casefold()
    found: list[Order] = []
    if wanted in GROUPS:  # a working set: read it, newest first
        for order_id in reversed(await runtime.book.ids_in(wanted, args.client)):
            order = await runtime.book.find(order_id)
            if order is not None:
                found.append(order)
            if len(found) >= args.limit:
                break
    else:
        async for order in runtime.book.newest(args.client):
            if wanted and wanted not in (order.state, order.public_status.casefold()):
                continue
            found.append(order)
            if len(found) >= args.limit:
                break
    rows = [["ID", "CLIENT", "SERVICE", "QTY", "STATE", "STATUS", "CHARGE", "REFUNDED", "PROVIDER", "UPSTREAM"]] + [
        [str(o.id), o.client, str(o.service), str(o.quantity), o.state, o.public_status,
         format_amount(o.charge), format_amount(o.refunded), o.provider, str(o.upstream_order or "")]
        for o in found
    ]
    _print(args, [_order_json(o) for o in found], lambda: _table(rows))


async def orders_resolve(args: argparse.Namespace, runtime: Runtime) -> None:
    try:
        order = await runtime.book.resolve(args.id, upstream_order=args.upstream_order, failed=args.failed)
    except (LookupError, ValueError, ClaimConflict) as exc:
        raise CommandError(str(exc)) from None
    except StateChanged as exc:
        raise CommandError(f"order {args.id} is {exc.state}, not unknown: nothing to resolve") from None
    verdict = "failed, refunded in full" if args.failed else f"placed as upstream order {args.upstream_order}"
    _print(args, _order_json(order), lambda: f"order {order.id} resolved: {verdict}")


async def orders_refund(args: argparse.Namespace, runtime: Runtime) -> None:
    try:
        order = await runtime.book.refund(args.id, _amount(args.total))
    except (LookupError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    except StateChanged as exc:
        raise CommandError(f"order {args.id} is {exc.state}: it cannot be refunded now") from None
    _print(args, _order_json(order), lambda: f"order {order.id}: refunded {format_amount(order.refunded)} in all")


async def orders_ack(args: argparse.Namespace, runtime: Runtime) -> None:
    try:
        order = await runtime.book.acknowledge(args.id)
    except LookupError as exc:
        raise CommandError(str(exc)) from None
    _print(args, _order_json(order), lambda: f"order {order.id}: attention cleared")


# -- top-level commands ----------------------------------------------------


def check(args: argparse.Namespace) -> None:
    settings = _settings(args)
    config = _config(settings)
    routes = sum(len(s.routes) for s in config.services)
    print(
        f"{settings.config}: OK - {len(config.providers)} providers, {len(config.services)} services "
        f"({routes} routes), {len(config.imports)} import rules, currency {config.currency}"
    )


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .app import create_app

    settings = _settings(args)
    config = _config(settings)
    if not settings.redis_url:
        raise CommandError(
            "SMM_PROXY_REDIS_URL is not set: the router keeps balances and orders in Redis "
            "(try 'smm-proxy demo' for a self-contained demo)"
        )
    runtime = Runtime.from_settings(settings, config)
    uvicorn.run(
        create_app(runtime, close_runtime=True, background=True),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level=settings.log_level,
    )


def demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    asyncio.run(run_demo(_settings(args), host=args.host, port=args.port))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smm-proxy", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(parent: Any, name: str, help: str, run: Any, *, config: bool = True, json_out: bool = False) -> Any:
        sub = parent.add_parser(name, help=help, description=help)
        if config:
            sub.add_argument("--config", help="YAML provider config (default: $SMM_PROXY_CONFIG)")
        if json_out:
            sub.add_argument("--json", action="store_true", help="print JSON for scripts")
        sub.set_defaults(run=run)
        return sub

    sub = command(commands, "serve", "run the router", serve)
    sub.add_argument("--host")
    sub.add_argument("--port", type=int)
    sub = command(commands, "demo", "run a self-contained demo with simulated panels", demo, config=False)
    sub.add_argument("--host", default="127.0.0.1")
    sub.add_argument("--port", type=int, default=8080)
    command(commands, "check", "validate a config file without starting", check)

    clients = commands.add_parser("clients", help="manage downstream client accounts")
    actions = clients.add_subparsers(dest="action", required=True)
    sub = command(actions, "add", "open an account and print its API key once", clients_add, json_out=True)
    sub.add_argument("name")
    sub.add_argument("--balance", default="0", help="opening balance in the deployment currency")
    sub = command(actions, "topup", "credit an account", clients_topup, json_out=True)
    sub.add_argument("name")
    sub.add_argument("amount")
    sub.add_argument("--ref", help="idempotency reference: a retried top-up with the same ref credits once")
    sub.add_argument("--memo", default="", help="a note kept in the ledger")
    command(actions, "list", "list accounts and balances", clients_list, json_out=True)
    sub = command(actions, "disable", "refuse the account's API key from now on", clients_disable, json_out=True)
    sub.add_argument("name")
    sub = command(actions, "ledger", "show an account's ledger", clients_ledger, json_out=True)
    sub.add_argument("name")
    sub.add_argument("--limit", type=int, help="only the newest N entries")

    orders = commands.add_parser("orders", help="inspect and settle orders")
    actions = orders.add_subparsers(dest="action", required=True)
    sub = command(actions, "show", "one order, its attempts and its ledger entries", orders_show, json_out=True)
    sub.add_argument("id", type=int)
    sub = command(actions, "list", "orders, newest first", orders_list, json_out=True)
    sub.add_argument(
        "--state",
        help="reserved, submitted, placed, unknown, failed, inflight, open, attention, or a status like Partial",
    )
    sub.add_argument("--client")
    sub.add_argument("--limit", type=int, default=50)
    sub = command(actions, "resolve", "settle an order whose outcome is unknown", orders_resolve, json_out=True)
    sub.add_argument("id", type=int)
    verdict = sub.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--upstream-order", type=int, help="the order exists upstream under this ID")
    verdict.add_argument("--failed", action="store_true", help="the order does not exist upstream: refund it")
    sub = command(
        actions, "refund", "raise an order's total refund (orders that need attention)", orders_refund, json_out=True
    )
    sub.add_argument("id", type=int)
    sub.add_argument("total", help="the order's total refund, in the deployment currency")
    sub = command(actions, "ack", "clear an order's attention note once it is dealt with", orders_ack, json_out=True)
    sub.add_argument("id", type=int)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.run in (check, serve, demo):
            args.run(args)
        else:
            asyncio.run(_with_runtime(args, lambda runtime: args.run(args, runtime)))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (CommandError, AccountError) as exc:
        print(f"smm-proxy: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
