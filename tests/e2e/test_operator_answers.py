"""What operators are answered, as JSON: the same fields, in the same order,
from the admin API and from the CLI's --json (scripts of resellers read both)."""

import argparse
import json

from support import fault, router_config

from proxy import commands

LINK = "https://instagram.com/p/abc"

CLIENT = ["name", "balance", "currency", "disabled", "markup", "duplicate_window", "same_link", "rates"]
ENTRY = ["id", "time", "kind", "amount", "balance", "ref", "memo", "order", "actor"]
ORDER = [
    "id",
    "client",
    "service",
    "type",
    "link",
    "quantity",
    "state",
    "status",
    "remains",
    "charge",
    "refunded",
    "provider",
    "upstream_service",
    "upstream_order",
    "attempts",
    "attention",
    "closed_reason",
    "cost",
    "upstream_charge",
    "created",
]
ATTEMPT = ["provider", "outcome", "reason"]
PROVIDER = [
    "name",
    "health",
    "blocked",
    "ejections",
    "currency",
    "currency_read",
    "balance",
    "funds",
    "low_balance",
    "low",
    "balance_age",
    "checked",
    "check_error",
    "services",
    "disabled",
    "catalog_age",
    "price_changes",
    "held_prices",
    "outcomes",
]
EJECTION = ["failures", "ejections", "until", "reason"]
PRICE_CHANGE = ["at", "service", "from", "to"]
HELD_PRICE = ["service", "approved", "proposed", "at"]
ROUTE_OUTCOMES = [
    "orders",
    "completed_pct",
    "partial_pct",
    "canceled_pct",
    "stuck_pct",
    "delivered_pct",
    "mean_completion_seconds",
]
APPROVED = ["service", "from", "to"]
EVENT = ["id", "time", "kind", "subject", "message", "detail"]
REPORT = ["by", "since", "currency", "lines", "total"]
REPORT_LINE = ["key", "orders", "revenue", "refunds", "cost", "margin", "share_pct"]
AUDIT = ["seq", "time", "actor", "role", "action", "target", "reason", "detail", "source", "request_id", "hash"]
ADMIN = ["name", "role", "expires", "expired", "last_used", "registered"]
CHECK = ["intact", "entries", "keyed", "head", "bad_seq", "bad_id", "problem"]


def printed(answer, capsys) -> object:
    """What `smm-proxy ... --json` prints for an operator's answer."""
    commands.show(argparse.Namespace(json=True), answer, lambda: "")
    return json.loads(capsys.readouterr().out)


async def test_the_admin_api_and_the_cli_answer_the_same_json_shapes(make_router, tmp_path, capsys):
    raw = router_config(imports=[{"provider": "echomark", "id_offset": 1000}])
    router = await make_router(raw, status_ttl=1, archive_dir=tmp_path)
    ops, http = router.runtime.operators, router.http
    added = await ops.add_admin("cli", "backoffice", "owner")
    assert list(printed(added, capsys)) == ["name", "role", "expires", "token"]
    auth = {"Authorization": f"Bearer {added.token}"}

    async def admin(method: str, path: str, **options: object) -> object:
        response = await http.request(method, path, headers=auth, **options)
        assert response.status_code == 200, response.text
        return response.json()

    created = await admin("POST", "/admin/clients", json={"name": "acme", "balance": "20"})
    assert list(created) == [*CLIENT, "key"]
    assert list(printed(await ops.create_client("cli", "bob"), capsys)) == [*CLIENT, "key"]
    topped = await admin("POST", "/admin/clients/acme/topup", json={"amount": "5", "ref": "inv-1"})
    assert list(topped) == [*ENTRY, "applied"]
    assert printed(await ops.topup("cli", "acme", "5", ref="inv-1"), capsys) == {**topped, "applied": False}

    await router.call(created["key"], action="add", service=1, link=LINK, quantity=1000)
    fault(router.panels["echomark"], "html")
    await router.call(created["key"], action="add", service=1, link=LINK + "2", quantity=1000)
    router.panels["echomark"].faults.mode = None
    panel = router.panels["echomark"]
    panel.catalog[1] = panel.catalog[1].__class__(**{**panel.catalog[1].__dict__, "rate": panel.catalog[1].rate * 2})
    router.clock.advance(301)
    await router.runtime.listings.refresh("echomark")

    reads = {
        "/admin/clients": (ops.clients, (), [CLIENT]),
        "/admin/clients/acme/ledger": (ops.ledger, ("acme",), [ENTRY]),
        "/admin/orders": (ops.orders, (), [ORDER]),
        "/admin/orders/1": (ops.order, (1,), [*ORDER, "archived", "ledger"]),
        "/admin/providers": (ops.providers, (), [PROVIDER]),
        "/admin/events": (ops.events, (), [EVENT]),
        "/admin/report?since=2020-01-01&by=client": (ops.report, (1577836800.0, "client"), REPORT),
    }
    for path, (action, args, shape) in reads.items():
        over_http = await admin("GET", path)
        assert printed(await action(*args), capsys) == over_http, path
        first = over_http[0] if isinstance(over_http, list) else over_http
        assert list(first) == (shape[0] if isinstance(shape[0], list) else shape), path
    order = await admin("GET", "/admin/orders/1")
    assert [list(a) for a in order["attempts"]] == [ATTEMPT]
    assert [list(e) for e in order["ledger"]] == [ENTRY]
    providers = await admin("GET", "/admin/providers")
    assert [list(c) for c in providers[0]["price_changes"]] == [PRICE_CHANGE]
    assert {scope: list(e) for scope, e in providers[0]["ejections"].items()} == {"orders": EJECTION, "reads": EJECTION}
    assert [list(h) for h in providers[0]["held_prices"]] == [HELD_PRICE]
    approved = await admin("POST", "/admin/providers/echomark/approve", json={})
    assert list(approved) == ["provider", "approved"] and [list(a) for a in approved["approved"]] == [APPROVED]
    report = await admin("GET", "/admin/report?since=2020-01-01&by=client")
    assert [list(line) for line in [*report["lines"], report["total"]]] == [REPORT_LINE] * 2

    for path, body in [("/admin/orders/2/resolve", {"failed": True}), ("/admin/orders/1/refund", {"total": "0.5"})]:
        assert list(await admin("POST", path, json=body)) == ORDER
    assert list(await admin("POST", "/admin/orders/1/ack")) == ORDER
    closed = await admin("POST", "/admin/orders/1/close", json={"refund": "0.5", "reason": "lost upstream"})
    assert list(closed) == ORDER and closed["closed_reason"] == "lost upstream"
    assert list(printed(await ops.order(1), capsys)) == [*ORDER, "archived", "ledger"]
    assert list(await admin("POST", "/admin/clients/acme/disable")) == CLIENT
    assert list(await admin("POST", "/admin/clients/acme/enable")) == CLIENT
    assert list(await admin("POST", "/admin/clients/acme/terms", json={"markup": "10"})) == CLIENT
    assert list(await admin("POST", "/admin/clients/acme/rates", json={"service": 1, "rate": "5"})) == CLIENT
    adjusted = await admin("POST", "/admin/clients/acme/adjust", json={"amount": "-1", "reason": "typo"})
    assert list(adjusted) == [*ENTRY, "applied"] and adjusted["kind"] == "adjust"
    assert list(await admin("POST", "/admin/clients/acme/rotate-key")) == ["key"]
    assert list(printed(await ops.rotate_key("cli", "acme"), capsys)) == ["key"]
    audit = await admin("GET", "/admin/audit")
    assert printed(await ops.audit_log(), capsys) == audit and {tuple(entry) for entry in audit} == {tuple(AUDIT)}
    verified = await admin("GET", "/admin/audit/verify")
    assert printed(await ops.verify_audit(), capsys) == verified and list(verified) == CHECK
    assert list(printed(await ops.archive("cli", router.clock() + 1), capsys)) == ["moved", "before", "to"]
    assert list(await admin("POST", "/admin/orders/archive", json={"older_than": "0d"})) == ["moved", "before", "to"]
    admins = await admin("GET", "/admin/admins")
    assert printed(await ops.admins(), capsys) == admins and [list(a) for a in admins] == [ADMIN]
    assert printed(await ops.remove_admin("cli", "backoffice"), capsys) == {"name": "backoffice", "removed": True}
