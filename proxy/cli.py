"""The `smm-proxy` command: its argument parser, and the commands it runs
(`serve` and `worker` run from `proxy.serving`).

Every command that reads or changes data prints a short human table, or
JSON with `--json` for scripts. The operator commands (`proxy.commands`) go
through `proxy.ops.operators`, as the admin API does, and are audited. Every
refusal and usage error goes to stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from proxy import __version__, commands, logs
from proxy.config import load_config
from proxy.errors import CommandError, ConfigError, OperatorError
from proxy.ops.operators import Operators
from proxy.ops.reports import GROUPINGS
from proxy.ops.roles import READ, ROLES
from proxy.ops.search import MAX_ROWS
from proxy.orders.states import STATES, WORKING_SETS
from proxy.runtime import Runtime
from proxy.serving import config_of, log_setup, need_redis, serve, settings_of, worker
from proxy.store import redacted_url


class Parser(argparse.ArgumentParser):
    """Usage errors: a clear message and exit status 2 (argparse's own)."""


async def _with_operators(args: argparse.Namespace, work: Callable[[Operators], Awaitable[int | None]]) -> int | None:
    """Run an operator command. It needs no provider key unless it calls a
    provider (`Config.missing_keys`), and logs what it changes (stderr)."""
    settings = settings_of(args)
    url = need_redis(settings)
    config = load_config(settings.config, settings.environ(), keys_optional=True)
    log_setup(settings, config)
    runtime = Runtime.from_settings(settings, config)
    try:
        return await work(runtime.operators)
    except RedisError as exc:
        raise CommandError(f"Redis at {redacted_url(url)} failed: {exc}") from None
    finally:
        await runtime.aclose()
        logs.unconfigure()  # this run's stderr: a command run inside a process (tests) leaves none behind


# -- running ---------------------------------------------------------------


def check(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    try:
        config = config_of(settings)
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
    commands.show(
        args,
        data,
        lambda: (
            f"{settings.config}: OK - {len(config.providers)} providers, {len(config.services)} "
            f"services ({routes} routes), {len(config.imports)} import rules, currency {config.currency}"
        ),
    )
    return 0


def demo(args: argparse.Namespace) -> None:
    from proxy.demo import run_demo

    settings = settings_of(args)
    logs.configure("console", "info")
    listener = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((args.host, args.port))
    except OSError as exc:
        listener.close()
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror} (try --port)") from None
    asyncio.run(run_demo(settings, listener, args.step))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="smm-proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"smm-proxy {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(parent: Any, name: str, help: str, run: Any, *, config: bool = True, json_out: bool = False) -> Any:
        sub = parent.add_parser(name, help=help, description=help)
        if config:
            sub.add_argument("--config", help="YAML provider config (default: $SMM_PROXY_CONFIG)")
        if json_out:
            sub.add_argument("--json", action="store_true", help="print JSON for scripts")
        sub.set_defaults(run=run)
        return sub

    sub = command(subcommands, "serve", "run the router", serve)
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
        subcommands, "worker", "run the background work alone: recovery, status polling, provider checks", worker
    )
    sub.add_argument("--allow-volatile", action="store_true")
    sub = command(subcommands, "demo", "run a self-contained demo with simulated panels", demo, config=False)
    sub.add_argument("--host", default="127.0.0.1")
    sub.add_argument("--port", type=int, default=8080)
    sub.add_argument(
        "--step", type=float, default=20.0, help="seconds in which a simulated order moves one status (default 20)"
    )
    command(subcommands, "check", "validate a config file without starting", check, json_out=True)

    clients = subcommands.add_parser("clients", help="manage downstream client accounts")
    actions = clients.add_subparsers(dest="action", required=True, parser_class=Parser)
    sub = command(actions, "add", "open an account and print its API key once", commands.clients_add, json_out=True)
    sub.add_argument("name")
    sub.add_argument("--balance", default="0", help="opening balance in the deployment currency")
    reason(sub)
    sub = command(actions, "topup", "credit an account", commands.clients_topup, json_out=True)
    sub.add_argument("name")
    sub.add_argument("amount")
    sub.add_argument("--ref", help="idempotency reference: a retried top-up with the same ref credits once")
    sub.add_argument("--memo", default="", help="a note kept in the ledger")
    reason(sub)
    sub = command(
        actions,
        "adjust",
        "correct a balance by a signed amount (undo a wrong top-up); never below zero",
        commands.clients_adjust,
        json_out=True,
    )
    sub.add_argument("name")
    sub.add_argument("amount", help="signed, in the deployment currency: -25 takes 25 back")
    sub.add_argument("--reason", required=True, help="why: kept in the ledger and the audit log")
    sub.add_argument("--ref", help="idempotency reference: a retried adjustment with the same ref moves money once")
    command(actions, "list", "list accounts, balances and terms", commands.clients_list, json_out=True)
    for name, help_text, run in (
        ("disable", "refuse the account's API key from now on", commands.clients_disable),
        ("enable", "take the account's API key again", commands.clients_enable),
        ("rotate-key", "give the account a new API key, printed once; the old one stops", commands.clients_rotate_key),
    ):
        sub = command(actions, name, help_text, run, json_out=True)
        sub.add_argument("name")
        reason(sub)
    sub = command(
        actions, "set", "set a client's own terms ('default' gives one back)", commands.clients_set, json_out=True
    )
    sub.add_argument("name")
    sub.add_argument("--markup", help="percent in place of the configured markup, e.g. 15 (or 'default')")
    sub.add_argument(
        "--duplicate-window",
        help="seconds in which an identical add returns the first order (0: never; or 'default')",
    )
    sub.add_argument(
        "--same-link", choices=["allow", "refuse", "default"], help="refuse a second open order on one link"
    )
    reason(sub)
    sub = command(
        actions,
        "rate",
        "a client's custom rate for one service (never below cost)",
        commands.clients_rate,
        json_out=True,
    )
    sub.add_argument("name")
    sub.add_argument("service", help="our service ID")
    sub.add_argument("rate", nargs="?", help="per 1000, in the deployment currency")
    sub.add_argument("--clear", action="store_true", help="drop the custom rate: the client's markup again")
    reason(sub)
    sub = command(actions, "ledger", "show an account's ledger", commands.clients_ledger, json_out=True)
    sub.add_argument("name")
    sub.add_argument("--limit", type=count, help="only the newest N entries")

    orders = subcommands.add_parser("orders", help="inspect and settle orders")
    actions = orders.add_subparsers(dest="action", required=True, parser_class=Parser)
    sub = command(
        actions, "show", "one order, its attempts and its ledger entries", commands.orders_show, json_out=True
    )
    sub.add_argument("id", type=order_id)
    sub = command(actions, "list", "orders, newest first", commands.orders_list, json_out=True)
    sub.add_argument(
        "--state",
        help=f"{', '.join(dict.fromkeys([*STATES, *WORKING_SETS]))}, or a status like Partial",
    )
    sub.add_argument("--client")
    sub.add_argument("--link", help="orders on this link (https://www.x.com/a/ and x.com/a are one)")
    sub.add_argument("--upstream-order", type=order_id, help="the order a provider knows under this ID")
    sub.add_argument("--since", help="created since: 7d, 24h, 30m or a date like 2026-11-01")
    sub.add_argument("--until", help="created until: as --since")
    sub.add_argument("--limit", type=count, default=50, help=f"at most this many (1 to {MAX_ROWS})")
    sub = command(
        actions, "resolve", "settle an order whose outcome is unknown", commands.orders_resolve, json_out=True
    )
    sub.add_argument("id", type=order_id)
    verdict = sub.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--upstream-order", type=order_id, help="the order exists upstream under this ID")
    verdict.add_argument("--failed", action="store_true", help="the order does not exist upstream: refund it")
    reason(sub)
    sub = command(
        actions,
        "refund",
        "raise an order's total refund (orders that need attention)",
        commands.orders_refund,
        json_out=True,
    )
    sub.add_argument("id", type=order_id)
    sub.add_argument("total", help="the order's total refund, in the deployment currency")
    reason(sub)
    sub = command(
        actions, "ack", "clear an order's attention note once it is dealt with", commands.orders_ack, json_out=True
    )
    sub.add_argument("id", type=order_id)
    reason(sub)
    sub = command(
        actions,
        "close",
        "end an order the router cannot finish (placed, or unknown), with the total refund you choose",
        commands.orders_close,
        json_out=True,
    )
    sub.add_argument("id", type=int)
    sub.add_argument(
        "--refund",
        required=True,
        help="the order's total refund, from what is refunded already up to its charge (its charge: Canceled)",
    )
    sub.add_argument("--reason", default="", help="a note kept with the order and in the audit log")
    sub = command(
        actions,
        "archive",
        "move finished orders out of Redis into $SMM_PROXY_ARCHIVE_DIR",
        commands.orders_archive,
        json_out=True,
    )
    sub.add_argument("--older-than", required=True, help="a span like 90d, or a date like 2026-01-01")
    reason(sub)

    sub = command(
        subcommands,
        "providers",
        "each provider's health, balance, currency, catalog and price changes",
        commands.providers,
        json_out=True,
    )
    sub.add_argument("--check", action="store_true", help="read every provider's balance now")
    sub.set_defaults(action=None)
    approvals = sub.add_subparsers(dest="action", required=False, parser_class=Parser)
    approve = command(
        approvals,
        "approve",
        "approve held price changes of a provider (all of them, or the services named)",
        commands.providers,
        json_out=True,
    )
    approve.add_argument("provider")
    approve.add_argument("services", nargs="*", type=order_id, help="upstream service IDs (default: every held one)")
    reason(approve)
    sub = command(
        subcommands, "events", "what happened to providers and orders, newest first", commands.events, json_out=True
    )
    sub.add_argument("--since", help="1h, 7d, or a date like 2026-11-01")
    sub.add_argument("--limit", type=count, default=50)
    sub.add_argument("--kind", help="only kinds starting with this, e.g. provider. or order.stuck")
    sub = command(subcommands, "report", "revenue, upstream cost, refunds and margin", commands.report, json_out=True)
    sub.add_argument("--since", help="7d (default), 24h, 30m, or a date like 2026-11-01")
    sub.add_argument("--by", choices=GROUPINGS, default="provider")
    sub.add_argument("--csv", action="store_true", help="print CSV")

    admin = subcommands.add_parser("admin", help="tokens for the admin HTTP API")
    actions = admin.add_subparsers(dest="action", required=True, parser_class=Parser)
    sub = command(actions, "add", "make an admin token and print it once", commands.admin_add, json_out=True)
    sub.add_argument("name")
    sub.add_argument(
        "--role",
        choices=ROLES,
        default=READ,
        help="read: reads only; operator: orders and client money too; owner: everything (default: read)",
    )
    sub.add_argument("--expires", help="the token's life: 90d, 12h, 30m (default: never)")
    reason(sub)
    command(actions, "list", "admins: role, expiry, last use", commands.admin_list, json_out=True)
    sub = command(actions, "remove", "revoke an admin's token", commands.admin_remove, json_out=True)
    sub.add_argument("name")
    reason(sub)
    audit = command(subcommands, "audit", "the operators' audit log, newest first", commands.audit, json_out=True)
    audit.add_argument("--limit", type=count, default=50)
    actions = audit.add_subparsers(dest="action", required=False, parser_class=Parser)
    sub = command(actions, "list", "the audit log, newest first", commands.audit, json_out=True)
    sub.add_argument("--limit", type=count, default=50)
    command(
        actions,
        "verify",
        "check the audit log's hash chain: exit 0 intact, 1 naming the first bad entry",
        commands.audit_verify,
        json_out=True,
    )
    return parser


def reason(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why: kept in the audit log")


def count(text: str) -> int:
    """A --limit: a whole number from 1 to MAX_ROWS."""
    if not (text.isascii() and text.isdigit() and len(text) <= 6 and 1 <= int(text) <= MAX_ROWS):
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_ROWS}, not {text!r}")
    return int(text)


def order_id(text: str) -> int:
    """An order ID: a positive whole number written in ASCII digits."""
    if not (text.isascii() and text.isdigit() and len(text) <= 18 and int(text) > 0):
        raise argparse.ArgumentTypeError(f"a positive whole number, not {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.run in (check, serve, demo, worker):
            return args.run(args) or 0
        return asyncio.run(_with_operators(args, lambda ops: args.run(args, ops))) or 0
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ValidationError as exc:  # the environment's SMM_PROXY_* settings (proxy.settings)
        print("smm-proxy: settings refused:", file=sys.stderr)
        for error in exc.errors():
            where = "_".join(str(part) for part in error["loc"]).upper()
            print(f"  SMM_PROXY_{where}: {error['msg']}" if where else f"  {error['msg']}", file=sys.stderr)
        return 2
    except (CommandError, OperatorError) as exc:
        print(f"smm-proxy: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
