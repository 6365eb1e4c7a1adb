"""The `smm-proxy` command: serve, worker, demo, check, and operator commands.

Every command that reads or changes data prints a short human table, or
JSON with `--json` for scripts. Operator commands go through
`proxy.ops.operators`, as the admin API does, and are audited. Every refusal
and usage error goes to stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from proxy import __version__, logs
from proxy.config import Config, load_config
from proxy.errors import CommandError, ConfigError, OperatorError, StoreUnfit
from proxy.ops import reports
from proxy.ops.operators import Operators
from proxy.ops.reports import GROUPINGS
from proxy.runtime import Runtime
from proxy.settings import Settings
from proxy.store import check_store, connect, redacted_url

ACTOR = "cli"
log = logging.getLogger(__name__)


class Parser(argparse.ArgumentParser):
    """Usage errors: a clear message and exit status 2 (argparse's own)."""


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "config", None):
        overrides["config"] = Path(args.config)
    return Settings(**overrides)


def _config(settings: Settings) -> Config:
    return load_config(settings.config, settings.environ())


def _print(args: argparse.Namespace, data: Any, human: Callable[[], str]) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False) if getattr(args, "json", False) else human())


def _table(rows: Sequence[Sequence[object]]) -> str:
    if len(rows) <= 1:
        return "(none)"
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def _need_redis(settings: Settings) -> str:
    if not settings.redis_url:
        raise CommandError(
            "SMM_PROXY_REDIS_URL is not set: the router keeps balances and orders in Redis "
            "(try 'smm-proxy demo' for a self-contained demo)"
        )
    return settings.redis_url


async def _with_operators(args: argparse.Namespace, work: Callable[[Operators], Awaitable[None]]) -> None:
    settings = _settings(args)
    url = _need_redis(settings)
    runtime = Runtime.from_settings(settings, _config(settings))
    try:
        await work(runtime.operators)
    except RedisError as exc:
        raise CommandError(f"Redis at {redacted_url(url)} failed: {exc}") from None
    finally:
        await runtime.aclose()


# -- clients ---------------------------------------------------------------


async def clients_add(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.create_client(ACTOR, args.name, args.balance)
    _print(
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
    _print(args, data, lambda: f"{args.name}: +{data['amount']}, balance {data['balance']}{note}")


async def clients_list(args: argparse.Namespace, ops: Operators) -> None:
    clients = await ops.clients()
    rows = [["NAME", "BALANCE", "CURRENCY", "STATE"]] + [
        [c["name"], c["balance"], c["currency"], "disabled" if c["disabled"] else "active"] for c in clients
    ]
    _print(args, clients, lambda: _table(rows))


async def clients_disable(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.disable_client(ACTOR, args.name)
    _print(args, data, lambda: f"client {data['name']} disabled")


async def clients_ledger(args: argparse.Namespace, ops: Operators) -> None:
    entries = await ops.ledger(args.name, args.limit)
    rows = [["TIME", "KIND", "AMOUNT", "BALANCE", "REF", "MEMO"]] + [
        [e["time"], e["kind"], e["amount"], e["balance"], e["ref"], e["memo"]] for e in entries
    ]
    _print(args, entries, lambda: _table(rows))


# -- orders ----------------------------------------------------------------


async def orders_show(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.order(args.id)

    def human() -> str:
        lines = [f"{k:17} {v}" for k, v in data.items() if k not in ("attempts", "ledger")]
        lines += [f"attempt           {a['provider']}: {a['outcome']} {a['reason']}".rstrip() for a in data["attempts"]]
        lines += [f"ledger            {e['time']} {e['kind']} {e['amount']} ({e['ref']})" for e in data["ledger"]]
        return "\n".join(lines)

    _print(args, data, human)


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
    _print(args, found, lambda: _table(rows))


async def orders_resolve(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.resolve(ACTOR, args.id, upstream_order=args.upstream_order, failed=args.failed)
    verdict = "failed, refunded in full" if args.failed else f"placed as upstream order {args.upstream_order}"
    _print(args, data, lambda: f"order {data['id']} resolved: {verdict}")


async def orders_refund(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.refund(ACTOR, args.id, args.total)
    _print(args, data, lambda: f"order {data['id']}: refunded {data['refunded']} in all")


async def orders_archive(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.archive(ACTOR, since_timestamp(args.older_than))
    _print(args, data, lambda: f"{data['moved']} finished orders from before {data['before']} moved to {data['to']}")


async def orders_ack(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.acknowledge(ACTOR, args.id)
    _print(args, data, lambda: f"order {data['id']}: attention cleared")


# -- providers, reports, admins, audit -------------------------------------


async def providers(args: argparse.Namespace, ops: Operators) -> None:
    rows_data = await ops.providers(check=args.check)

    def human() -> str:
        rows = [["NAME", "HEALTH", "CURRENCY", "BALANCE", "CHECKED", "SERVICES", "CATALOG AGE", "PRICE CHANGES"]]
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
                    age,
                    len(p["price_changes"]),
                ]
            )
        lines = [_table(rows)]
        for p in rows_data:
            lines += [f"  {p['name']}: service {c['service']} {c['from']} -> {c['to']}" for c in p["price_changes"][:5]]
            if p["check_error"]:
                lines.append(f"  {p['name']}: last check failed: {p['check_error']}")
        return "\n".join(lines)

    _print(args, rows_data, human)


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
    _print(
        args,
        data,
        lambda: (
            f"since {datetime.fromtimestamp(data['since'], tz=UTC):%Y-%m-%d %H:%M} UTC, "
            f"in {data['currency']}\n{_table(rows)}"
        ),
    )


async def admin_add(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.add_admin(ACTOR, args.name)
    _print(args, data, lambda: f"admin {data['name']} added\ntoken (shown once, stored hashed): {data['token']}")


async def admin_list(args: argparse.Namespace, ops: Operators) -> None:
    names = await ops.admins()
    _print(args, names, lambda: "\n".join(names) or "(none)")


async def admin_remove(args: argparse.Namespace, ops: Operators) -> None:
    data = await ops.remove_admin(ACTOR, args.name)
    _print(args, data, lambda: f"admin {args.name} removed")


async def audit(args: argparse.Namespace, ops: Operators) -> None:
    rows_data = await ops.audit_log(args.limit)
    rows = [["TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"]] + [
        [r["time"], r["actor"], r["action"], r["target"], json.dumps(r["detail"], ensure_ascii=False)]
        for r in rows_data
    ]
    _print(args, rows_data, lambda: _table(rows))


# -- running ---------------------------------------------------------------


def check(args: argparse.Namespace) -> int | None:
    settings = _settings(args)
    try:
        config = _config(settings)
    except ConfigError as exc:
        if args.json:
            print(json.dumps({"config": str(settings.config), "ok": False, "problems": exc.problems}, indent=2))
            return 2
        raise
    routes = sum(len(s.routes) for s in config.services)
    data = {
        "config": str(settings.config),
        "ok": True,
        "providers": len(config.providers),
        "services": len(config.services),
        "routes": routes,
        "imports": len(config.imports),
        "currency": config.currency,
    }
    _print(
        args,
        data,
        lambda: (
            f"{settings.config}: OK - {len(config.providers)} providers, {len(config.services)} "
            f"services ({routes} routes), {len(config.imports)} import rules, currency {config.currency}"
        ),
    )


def _log_setup(settings: Settings, config: Config) -> None:
    secrets = [p.key for p in config.providers.values()] + ([settings.metrics_token] if settings.metrics_token else [])
    logs.configure(settings.log_format, settings.log_level, secrets)


def _checked_store(settings: Settings, allow_volatile: bool) -> None:
    """Refuse a Redis that does not answer or may evict keys; warn if it keeps nothing."""
    url = _need_redis(settings)

    async def probe() -> list[str]:
        redis = connect(url)
        try:
            return await check_store(redis, allow_volatile)
        finally:
            await redis.aclose()

    try:
        for warning in asyncio.run(probe()):
            log.warning(warning)
    except StoreUnfit as exc:
        raise CommandError(f"Redis at {redacted_url(url)}: {exc}") from None


def serve(args: argparse.Namespace) -> None:
    import os

    import uvicorn

    settings = _settings(args)
    config = _config(settings)
    _log_setup(settings, config)
    _checked_store(settings, args.allow_volatile)
    host, port = args.host or settings.host, args.port or settings.port
    if args.workers > 1:
        # Each worker process builds its own app from the environment: hand it what the flags said.
        os.environ["SMM_PROXY_CONFIG"] = str(settings.config.resolve())
        if args.no_background:
            os.environ["SMM_PROXY_BACKGROUND"] = "false"
        uvicorn.run(
            "proxy.cli:app_from_environment",
            factory=True,
            workers=args.workers,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
        )
        return
    uvicorn.run(
        app_for(settings, config, background=settings.background and not args.no_background),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
    )


def app_for(settings: Settings, config: Config, background: bool):  # type: ignore[no-untyped-def]
    from proxy.edge.app import create_app

    return create_app(Runtime.from_settings(settings, config), close_runtime=True, background=background)


def app_from_environment():  # type: ignore[no-untyped-def]
    """The app of one `serve --workers N` process, from the environment alone."""
    settings = Settings()
    config = _config(settings)
    _log_setup(settings, config)
    return app_for(settings, config, background=settings.background)


def worker(args: argparse.Namespace) -> None:
    """The background work alone (recovery, status polling, provider checks)."""
    settings = _settings(args)
    config = _config(settings)
    _log_setup(settings, config)
    _checked_store(settings, args.allow_volatile)

    async def run() -> None:
        runtime = Runtime.from_settings(settings, config)
        try:
            async with runtime.sync.background(settings.sync_interval) as task:
                await task
        finally:
            await runtime.aclose()

    asyncio.run(run())


def demo(args: argparse.Namespace) -> None:
    from proxy.demo import run_demo

    settings = _settings(args)
    logs.configure("console", "info")
    listener = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((args.host, args.port))
    except OSError as exc:
        listener.close()
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror} (try --port)") from None
    asyncio.run(run_demo(settings, listener))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="smm-proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"smm-proxy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

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
    sub.add_argument(
        "--no-background",
        action="store_true",
        help="leave recovery and polling to 'smm-proxy worker' (replicas behind a load balancer)",
    )
    sub.add_argument(
        "--allow-volatile", action="store_true", help="do not warn about a Redis that keeps nothing on disk"
    )
    sub.add_argument("--workers", type=int, default=1, help="processes serving the API (one per core)")
    sub = command(
        commands, "worker", "run the background work alone: recovery, status polling, provider checks", worker
    )
    sub.add_argument("--allow-volatile", action="store_true")
    sub = command(commands, "demo", "run a self-contained demo with simulated panels", demo, config=False)
    sub.add_argument("--host", default="127.0.0.1")
    sub.add_argument("--port", type=int, default=8080)
    command(commands, "check", "validate a config file without starting", check, json_out=True)

    clients = commands.add_parser("clients", help="manage downstream client accounts")
    actions = clients.add_subparsers(dest="action", required=True, parser_class=Parser)
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
    actions = orders.add_subparsers(dest="action", required=True, parser_class=Parser)
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
    sub = command(
        actions,
        "archive",
        "move finished orders out of Redis into $SMM_PROXY_ARCHIVE_DIR",
        orders_archive,
        json_out=True,
    )
    sub.add_argument("--older-than", required=True, help="a span like 90d, or a date like 2026-01-01")

    sub = command(
        commands,
        "providers",
        "each provider's health, balance, currency, catalog and price changes",
        providers,
        json_out=True,
    )
    sub.add_argument("--check", action="store_true", help="read every provider's balance now")
    sub = command(commands, "report", "revenue, upstream cost, refunds and margin", report, json_out=True)
    sub.add_argument("--since", help="7d (default), 24h, 30m, or a date like 2026-11-01")
    sub.add_argument("--by", choices=GROUPINGS, default="provider")
    sub.add_argument("--csv", action="store_true", help="print CSV")

    admin = commands.add_parser("admin", help="tokens for the admin HTTP API")
    actions = admin.add_subparsers(dest="action", required=True, parser_class=Parser)
    sub = command(actions, "add", "make an admin token and print it once", admin_add, json_out=True)
    sub.add_argument("name")
    command(actions, "list", "list admins", admin_list, json_out=True)
    sub = command(actions, "remove", "revoke an admin's token", admin_remove, json_out=True)
    sub.add_argument("name")
    sub = command(commands, "audit", "the operators' audit log, newest first", audit, json_out=True)
    sub.add_argument("--limit", type=int, default=50)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.run in (check, serve, demo, worker):
            return args.run(args) or 0
        else:
            asyncio.run(_with_operators(args, lambda ops: args.run(args, ops)))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (CommandError, OperatorError) as exc:
        print(f"smm-proxy: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
