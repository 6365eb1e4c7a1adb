"""The dashboard (proxy/edge/dashboard/) in process: logins and their cookie,
the guard on every form, roles, bad input, and that pages only read. The
pages in a real browser, against the demo, are tests/browser/."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from decimal import Decimal

import httpx
import pytest
from starlette.applications import Starlette

from proxy.accounts.fair_use import storage_for
from proxy.edge import dashboard
from proxy.edge.app import create_app
from proxy.store import connect

SITE = "http://dash"
SAME = {"Origin": SITE, "Sec-Fetch-Site": "same-origin"}


@pytest.fixture
def settings(runtime):
    return runtime.settings.model_copy(update={"dashboard": True, "dashboard_logins": "5/minute"})


@pytest.fixture
async def browser(runtime, settings):
    """A client like a browser: it keeps cookies and sends its own origin."""
    routes = dashboard.routes(
        runtime.operators,
        runtime.redis,
        runtime.keys,
        storage_for(runtime.redis, runtime.keys),
        settings,
        lambda: "USD",
    )
    app = Starlette(routes=routes)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SITE) as client:
        yield client


async def token(runtime, role: str = "owner", name: str = "alice") -> str:
    return (await runtime.operators.add_admin("cli", name, role)).token


async def login(browser, runtime, role: str = "owner", name: str = "alice") -> str:
    """Log in; the CSRF token of the session (from a page's form)."""
    answer = await browser.post("/dashboard/login", data={"token": await token(runtime, role, name)}, headers=SAME)
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard"
    page = await browser.get("/dashboard/clients")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


async def test_it_is_closed_unless_the_operator_enables_it(runtime):
    app = create_app(runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SITE) as client:
        assert (await client.get("/dashboard")).status_code == 404
        assert (await client.get("/dashboard/login")).status_code == 404


async def test_a_login_sets_an_http_only_same_site_cookie_and_keeps_no_token(browser, runtime):
    assert (await browser.get("/dashboard")).headers["location"] == "/dashboard/login"
    secret = await token(runtime)
    answer = await browser.post("/dashboard/login", data={"token": secret}, headers=SAME)
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("smm_dashboard=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/dashboard" in cookie and "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    assert secret not in cookie and secret not in answer.headers["location"]
    page = await browser.get("/dashboard")
    assert page.status_code == 200 and "Overview" in page.text and secret not in page.text
    assert (
        page.headers["cache-control"] == "no-store"
        and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    )
    stored = [key async for key in runtime.redis.scan_iter(match=f"{runtime.keys.prefix}dashboard:session:*")]
    assert len(stored) == 1 and browser.cookies["smm_dashboard"] not in stored[0]  # kept hashed


async def test_over_tls_the_cookie_is_secure(runtime, settings):
    routes = dashboard.routes(
        runtime.operators,
        runtime.redis,
        runtime.keys,
        storage_for(runtime.redis, runtime.keys),
        settings,
        lambda: "USD",
    )
    transport = httpx.ASGITransport(app=Starlette(routes=routes))
    async with httpx.AsyncClient(transport=transport, base_url="https://dash") as client:
        answer = await client.post(
            "/dashboard/login", data={"token": await token(runtime)}, headers={"Origin": "https://dash"}
        )
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("__Host-smm_dashboard=") and "Secure" in cookie and "Path=/;" in cookie
        assert (await client.get("/dashboard")).status_code == 200


async def test_a_bad_token_opens_nothing_and_logins_are_rate_limited(browser, runtime):
    for attempt in range(5):
        answer = await browser.post("/dashboard/login", data={"token": f"guess-{attempt}"}, headers=SAME)
        assert answer.status_code == 401 and "opens nothing" in answer.text and "set-cookie" not in answer.headers
    good = await token(runtime)
    answer = await browser.post("/dashboard/login", data={"token": good}, headers=SAME)
    assert answer.status_code == 429 and "set-cookie" not in answer.headers
    # A token in a URL logs nobody in.
    assert (await browser.get(f"/dashboard/login?token={good}")).status_code == 200
    assert (await browser.get("/dashboard")).status_code == 303


async def test_a_form_from_another_origin_or_without_the_session_token_moves_nothing(browser, runtime):
    await runtime.accounts.create("acme", Decimal("10"))
    csrf = await login(browser, runtime)
    before = await runtime.operators.audit_log()
    topup = {"amount": "5", "ref": "inv-1", "csrf": csrf}
    for headers, data in (
        ({"Origin": "http://evil.example"}, topup),
        ({"Origin": SITE, "Sec-Fetch-Site": "cross-site"}, topup),
        ({}, topup),  # no origin at all
        ({"Origin": "null"}, topup),
        (SAME, {**topup, "csrf": "forged"}),
        (SAME, {"amount": "5", "ref": "inv-1"}),
    ):
        answer = await browser.post("/dashboard/clients/acme/topup", data=data, headers=headers)
        assert answer.status_code == 403 and "Nothing was changed" in answer.text
    assert await runtime.ledger.balance("acme") == Decimal("10")
    assert await runtime.operators.audit_log() == before
    answer = await browser.post("/dashboard/clients/acme/topup", data=topup, headers=SAME)
    assert answer.status_code == 303 and await runtime.ledger.balance("acme") == Decimal("15")
    page = await browser.get("/dashboard/clients/acme")
    assert "Top-up of 5.00 applied" in page.text


async def test_a_top_up_twice_with_one_reference_credits_once_and_says_so(browser, runtime):
    await runtime.accounts.create("acme", Decimal("10"))
    csrf = await login(browser, runtime)
    for _ in range(2):
        await browser.post(
            "/dashboard/clients/acme/topup", data={"amount": "5", "ref": "inv-7", "csrf": csrf}, headers=SAME
        )
    assert await runtime.ledger.balance("acme") == Decimal("15")
    assert "was applied before: nothing moved" in (await browser.get("/dashboard/clients/acme")).text
    entries = [e for e in await runtime.operators.ledger("acme") if e.ref.startswith("topup:")]
    assert [e.ref for e in entries] == ["topup:inv-7"]
    assert [e.actor for e in await runtime.operators.audit_log() if e.action == "client.topup"] == ["admin:alice"]


@pytest.mark.parametrize(
    "path, data",
    [
        ("/dashboard/clients/acme/topup", {"amount": "lots"}),
        ("/dashboard/clients/acme/topup", {"amount": "-5"}),
        ("/dashboard/clients/acme/topup", {"amount": "1e999999"}),
        ("/dashboard/clients/acme/adjust", {"amount": "-50", "reason": "too much"}),
        ("/dashboard/clients/acme/adjust", {"amount": "5", "reason": ""}),
        ("/dashboard/clients/nobody/topup", {"amount": "5"}),
        ("/dashboard/orders/99/failed", {}),
        ("/dashboard/orders/abc/failed", {}),
        ("/dashboard/orders/1/resolve", {"upstream_order": "x"}),
        ("/dashboard/providers/nobody/approve", {"service": "1"}),
        ("/dashboard/providers/echomark/approve", {"service": "1"}),
        ("/dashboard/clients/acme/topup", {"amount": "5\x00"}),
    ],
)
async def test_bad_input_is_a_message_and_changes_nothing(browser, runtime, path, data):
    await runtime.accounts.create("acme", Decimal("10"))
    csrf = await login(browser, runtime)
    before = (await runtime.operators.ledger("acme"), await runtime.operators.audit_log())
    answer = await browser.post(path, data={**data, "csrf": csrf}, headers=SAME)
    assert answer.status_code in (303, 400), answer.text
    if answer.status_code == 303:
        shown = await browser.get(answer.headers["location"])
        assert shown.status_code in (200, 404) and "flash error" in shown.text and "Nothing was changed" in shown.text
    assert (await runtime.operators.ledger("acme"), await runtime.operators.audit_log())[0] == before[0]


async def test_a_read_token_sees_every_page_and_changes_nothing(browser, runtime):
    await runtime.accounts.create("acme", Decimal("10"))
    csrf = await login(browser, runtime, role="read", name="viewer")
    for path in ("/dashboard", "/dashboard/queue", "/dashboard/providers", "/dashboard/orders", "/dashboard/clients"):
        page = await browser.get(path)
        assert page.status_code == 200, path
    client_page = await browser.get("/dashboard/clients/acme")
    assert 'data-form="topup"' not in client_page.text  # no forms it may not use
    answer = await browser.post("/dashboard/clients/acme/topup", data={"amount": "5", "csrf": csrf}, headers=SAME)
    shown = await browser.get(answer.headers["location"])
    assert "may not client.topup" in shown.text and await runtime.ledger.balance("acme") == Decimal("10")


async def test_pages_only_read_and_the_ledger_exports_as_csv(browser, runtime):
    await runtime.accounts.create("acme", Decimal("10"))
    await runtime.operators.topup("cli", "acme", "5", ref="=HYPERLINK(1)", memo="+evil")
    await login(browser, runtime)
    await runtime.listings.refresh("echomark")  # an upstream call, counted in this process's memory

    async def everything() -> dict[str, object]:
        keys = [key async for key in runtime.redis.scan_iter(match=f"{runtime.keys.prefix}*")]
        return {key: await runtime.redis.dump(key) for key in keys}

    stored = await everything()
    before = (await runtime.operators.ledger("acme"), await runtime.operators.audit_log())
    pages = ("", "/queue", "/providers", "/orders", "/orders?by=client&q=acme", "/clients", "/clients/acme")
    for path in pages:
        assert (await browser.head(f"/dashboard{path}")).status_code == 200
        assert (await browser.get(f"/dashboard{path}")).status_code == 200
    assert await everything() == stored  # GET and HEAD write nothing at all (not even the call counts)
    calls = (await browser.get("/dashboard/providers")).text
    assert 'data-calls="echomark">1 calls' in calls  # the call not yet written is shown all the same
    csv = await browser.get("/dashboard/clients/acme/ledger.csv")
    assert csv.headers["content-type"].startswith("text/csv") and "attachment" in csv.headers["content-disposition"]
    lines = csv.text.splitlines()
    assert lines[0] == "id,time,kind,amount,balance,ref,memo,order,actor" and len(lines) == 3
    assert ",'topup:=HYPERLINK(1),'+evil," not in lines[2] and "'+evil" in lines[2]  # no formula runs
    assert (await runtime.operators.ledger("acme"), await runtime.operators.audit_log()) == before
    for bad in ("/dashboard/orders?by=colour&q=1", "/dashboard/orders?by=order&q=abc", "/dashboard/orders/0"):
        assert (await browser.get(bad)).status_code in (400, 404)
    for missing in ("/dashboard/clients/nobody", "/dashboard/orders/4242", "/dashboard/clients/nobody/ledger.csv"):
        answer = await browser.get(missing)
        assert answer.status_code == 404 and "no " in answer.text


async def test_logging_out_ends_the_session_and_so_do_time_and_a_removed_token(browser, runtime, clock):
    csrf = await login(browser, runtime)
    cookie = browser.cookies["smm_dashboard"]
    answer = await browser.post("/dashboard/logout", data={"csrf": csrf}, headers=SAME)
    assert answer.headers["location"] == "/dashboard/login"
    assert "smm_dashboard" not in browser.cookies  # the browser was told to forget it
    old = await browser.get("/dashboard", headers={"Cookie": f"smm_dashboard={cookie}"})
    assert old.status_code == 303  # and the server forgot it: the old cookie opens nothing
    await login(browser, runtime, name="bob")
    assert (await browser.get("/dashboard")).status_code == 200
    clock.advance(8 * 3600 + 1)
    assert (await browser.get("/dashboard")).status_code == 303  # expired
    clock.advance(-(8 * 3600 + 1))
    await login(browser, runtime, name="carol")
    assert (await browser.get("/dashboard")).status_code == 200
    await runtime.operators.remove_admin("cli", "carol")
    assert (await browser.get("/dashboard")).status_code == 303  # its token removed: its logins end


async def test_a_held_price_change_is_approved_from_the_providers_page(browser, runtime, panels, clock):
    await runtime.listings.refresh("echomark")
    same = {"name": "F", "type": "Default", "category": "C", "min": "10", "max": "10000"}
    panels["echomark"].on("services", [{**same, "service": 1, "rate": "2.00"}, {**same, "service": 3, "rate": "0.50"}])
    clock.advance(301)
    await runtime.listings.refresh("echomark")
    csrf = await login(browser, runtime, role="operator", name="op")
    page = await browser.get("/dashboard/providers")
    assert "Price changes waiting for approval" in page.text and "<td>2.00</td>" in page.text
    answer = await browser.post(
        "/dashboard/providers/echomark/approve", data={"service": "1", "csrf": csrf}, headers=SAME
    )
    assert answer.headers["location"] == "/dashboard/providers"
    page = await browser.get("/dashboard/providers")
    assert "Approved for echomark: service 1: 0.90 -&gt; 2.00" in page.text
    assert "waiting for approval" not in page.text
    assert [(e.actor, e.action, e.target) for e in await runtime.operators.audit_log()][0] == (
        "admin:op",
        "price.approve",
        "echomark:1",
    )


async def test_the_queue_and_an_orders_page_show_what_needs_a_person(browser, runtime):
    await runtime.accounts.create("acme", Decimal("10"))
    book = runtime.book
    from support import new_order

    from proxy.orders.states import LOSE, SUBMIT

    lost = await book.apply((await book.reserve(new_order(client="acme"))).order, SUBMIT, {"provider": "echomark"})
    lost = await book.apply(lost, LOSE)
    await login(browser, runtime)
    queue = await browser.get("/dashboard/queue")
    assert f'data-order="{lost.id}"' in queue.text and "Resolve as failed" in queue.text
    confirm = await browser.get(f"/dashboard/orders/{lost.id}/confirm?verdict=failed")
    assert 'data-figure="credit"><strong>1.17 USD</strong>' in confirm.text
    assert 'data-figure="balance-after">10.00</strong>' in confirm.text  # 8.83 now, 10.00 after
    for bad in ("verdict=colour", "verdict=resolve", "verdict=resolve&upstream_order=x", "verdict=refund&total=99"):
        assert (await browser.get(f"/dashboard/orders/{lost.id}/confirm?{bad}")).status_code in (400, 409)
    order_page = await browser.get(f"/dashboard/orders/{lost.id}")
    assert 'data-figure="state">unknown (the client sees Pending' in order_page.text
    assert await runtime.ledger.balance("acme") == Decimal("8.83")  # previews moved nothing


def test_a_chart_has_a_bar_per_day_empty_days_included_and_losses_below_zero():
    from datetime import date

    from proxy.edge.dashboard.charts import HEIGHT, by_day
    from proxy.ops.answers import ReportLine

    lines = (
        ReportLine("2026-11-02", 2, "10.00", "0.00", "6.00", "4.00", 50.0),
        ReportLine("2026-11-04", 2, "2.00", "0.00", "4.00", "-2.00", 50.0),
    )
    chart = by_day(lines, date(2026, 11, 1), 5)
    assert [bar.day for bar in chart.bars] == ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"]
    empty, best, _, loss, _ = chart.bars
    assert empty.line is None and empty.revenue_height == 0
    assert best.revenue_height > best.margin_height > 0 and best.revenue_y + best.revenue_height == chart.zero_y
    assert loss.margin_y == chart.zero_y and loss.margin_height > 0  # drawn downwards
    assert chart.top == "10" and 0 < chart.zero_y < HEIGHT


async def test_a_store_that_is_down_is_a_503_page_not_a_traceback(runtime, settings):
    down = connect("redis://127.0.0.1:1/0", timeout=0.5)
    routes = dashboard.routes(
        runtime.operators, down, runtime.keys, storage_for(down, runtime.keys), settings, lambda: "USD"
    )
    transport = httpx.ASGITransport(app=Starlette(routes=routes))
    async with httpx.AsyncClient(transport=transport, base_url=SITE) as client:
        cookie = {"Cookie": f"smm_dashboard={'x' * 43}"}
        for answer in (
            await client.get("/dashboard", headers=cookie),
            await client.post("/dashboard/logout", headers={**SAME, **cookie}),
        ):
            assert answer.status_code == 503 and "The store is unavailable" in answer.text
    await down.aclose()


async def test_keys_are_rotated_by_an_owner_shown_once_and_clients_disabled_and_enabled(browser, runtime):
    _, old_key = await runtime.accounts.create("acme", Decimal("10"))
    csrf = await login(browser, runtime)
    answer = await browser.post("/dashboard/clients/acme/rotate-key", data={"csrf": csrf}, headers=SAME)
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    new_key = answer.text.split('data-figure="new-key">')[1].split("<")[0]
    assert (
        await runtime.accounts.authenticate(new_key) == "acme" and await runtime.accounts.authenticate(old_key) is None
    )
    assert new_key not in (await browser.get("/dashboard/clients/acme")).text  # shown that once
    await browser.post("/dashboard/clients/acme/disable", data={"csrf": csrf, "reason": "chargeback"}, headers=SAME)
    assert await runtime.accounts.authenticate(new_key) is None
    assert "acme is disabled" in (await browser.get("/dashboard/clients/acme")).text
    await browser.post("/dashboard/clients/acme/enable", data={"csrf": csrf}, headers=SAME)
    assert await runtime.accounts.authenticate(new_key) == "acme"
    actions = [(e.actor, e.action, e.reason) for e in await runtime.operators.audit_log()][:3]
    assert actions == [
        ("admin:alice", "client.enable", ""),
        ("admin:alice", "client.disable", "chargeback"),
        ("admin:alice", "client.rotate_key", ""),
    ]
    # An operator may not rotate keys: the form is not offered, and a forged post is refused by the role.
    other = await login(browser, runtime, role="operator", name="op")
    assert 'data-form="rotate"' not in (await browser.get("/dashboard/clients/acme")).text
    refused = await browser.post("/dashboard/clients/acme/rotate-key", data={"csrf": other}, headers=SAME)
    assert "may not client.rotate_key" in (await browser.get(refused.headers["location"])).text
    assert await runtime.accounts.authenticate(new_key) == "acme"


@pytest.mark.parametrize("typed", ["\U0001f4a9" * 500, "é" * 2000, "x" * 5000, '"' * 3000])
async def test_a_refusal_of_any_length_fits_the_cookie_that_tells_it(browser, runtime, typed):
    """A browser drops a cookie over 4096 bytes: the message of a refused form
    (which may quote what was typed) is shortened to fit, never lost."""
    await runtime.accounts.create("acme", Decimal("10"))
    csrf = await login(browser, runtime)
    answer = await browser.post("/dashboard/clients/acme/topup", data={"amount": typed, "csrf": csrf}, headers=SAME)
    assert answer.status_code == 303
    assert all(len(cookie) <= 4096 for cookie in answer.headers.get_list("set-cookie"))
    shown = await browser.get(answer.headers["location"])
    assert "flash error" in shown.text and "not an amount" in shown.text
    assert await runtime.ledger.balance("acme") == Decimal("10")


async def test_the_ledger_csv_leaves_only_plain_numbers_unquoted(browser, runtime):
    """A spreadsheet evaluates a cell that starts with - or +: only a plain
    number (an amount, a balance) may; "-Infinity" or "-1e999999" typed in a
    memo is quoted like any other text."""
    await runtime.accounts.create("acme", Decimal("10"))
    for n, memo in enumerate(("-Infinity", "-1e999999", "+1_0", "-nan", "@SUM(A1)")):
        await runtime.operators.topup("cli", "acme", "1", ref=f"r{n}", memo=memo)
    await runtime.operators.adjust("cli", "acme", "-2.5", "undo")
    await login(browser, runtime)
    rows = list(csv.reader(io.StringIO((await browser.get("/dashboard/clients/acme/ledger.csv")).text)))
    memos = [row[6] for row in rows[1:] if row[2] == "topup" and row[5].startswith("topup:r")]
    assert memos == ["'-Infinity", "'-1e999999", "'+1_0", "'-nan", "'@SUM(A1)"]
    assert [row[3] for row in rows[1:] if row[2] == "adjust"] == ["-2.50"]  # a plain negative amount stays a number


async def test_a_money_form_sent_twice_moves_money_once_even_without_a_reference(browser, runtime):
    """A double click (or a resend after a slow answer) on a top-up or an
    adjustment typed without a reference: the form itself carries a one-time
    key from the page, so the second sending moves nothing and says so."""
    await runtime.accounts.create("acme", Decimal("10"))
    await login(browser, runtime)
    page = (await browser.get("/dashboard/clients/acme")).text
    for kind, typed, after in (("topup", {"amount": "5"}, "15"), ("adjust", {"amount": "-2", "reason": "x"}, "13")):
        form = page.split(f'data-form="{kind}"')[1].split("</form>")[0]
        hidden = dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]+)"', form))
        assert set(hidden) == {"csrf", "once"}
        sent = await asyncio.gather(
            *(browser.post(f"/dashboard/clients/acme/{kind}", data={**hidden, **typed}, headers=SAME) for _ in range(3))
        )
        assert all(answer.status_code == 303 for answer in sent)
        assert await runtime.ledger.balance("acme") == Decimal(after)
        await browser.post(f"/dashboard/clients/acme/{kind}", data={**hidden, **typed}, headers=SAME)
        assert "sent before: nothing moved" in (await browser.get("/dashboard/clients/acme")).text
        assert await runtime.ledger.balance("acme") == Decimal(after)
    other = (await browser.get("/dashboard/clients/acme")).text
    assert re.findall(r'name="once" value="([^"]+)"', other)[0] not in page  # a new page, a new key


async def test_a_new_login_in_a_browser_ends_the_session_it_had(browser, runtime):
    """Logging in again (another token, or the same) makes a new session ID
    and ends the one the browser held: no ID chosen before a login, or left
    from an earlier one, outlives it."""
    await login(browser, runtime)
    before = browser.cookies["smm_dashboard"]
    await login(browser, runtime, role="read", name="viewer")
    after = browser.cookies["smm_dashboard"]
    assert after != before
    assert (await browser.get("/dashboard", headers={"Cookie": f"smm_dashboard={before}"})).status_code == 303
    page = await browser.get("/dashboard", headers={"Cookie": f"smm_dashboard={after}"})
    assert page.status_code == 200 and "viewer" in page.text
    stored = [key async for key in runtime.redis.scan_iter(match=f"{runtime.keys.prefix}dashboard:session:*")]
    assert len(stored) == 1
    # A cookie the browser was given by someone else (an ID no login made) is simply replaced.
    planted = {"Cookie": "smm_dashboard=planted-by-someone-else"}
    answer = await browser.post(
        "/dashboard/login", data={"token": await token(runtime, name="alice2")}, headers={**SAME, **planted}
    )
    assert answer.status_code == 303 and "planted-by-someone-else" not in answer.headers["set-cookie"]


async def test_an_unknown_dashboard_page_is_an_html_not_found_page(browser, runtime):
    """A logged-in browser that follows a stale or mistyped link gets a page
    (with the dashboard's headers and a way back), not the API's JSON."""
    assert (await browser.get("/dashboard/nowhere")).headers["location"] == "/dashboard/login"  # nothing said
    await login(browser, runtime)
    for path in ("/dashboard/nowhere", "/dashboard/clients/acme/history", "/dashboard/orders/1/2/3"):
        answer = await browser.get(path)
        assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html"), path
        assert "No such page" in answer.text and 'href="/dashboard"' in answer.text
        assert answer.headers["cache-control"] == "no-store"
    assert (await browser.head("/dashboard/nowhere")).status_code == 404
    assert (await browser.get("/dashboard/static/dashboard.css")).status_code == 200
    assert (await browser.get("/dashboard/static/nothing.css")).status_code == 404


async def test_a_refund_confirmed_twice_at_once_moves_the_previewed_money_once(browser, runtime):
    """The confirmation page's figure is the money that moves; the form sent
    again (or three times at once) moves nothing more: a refund is a total."""
    from support import new_order

    from proxy.orders.states import ACCEPT, STATUS, SUBMIT

    await runtime.accounts.create("acme", Decimal("10"))
    book = runtime.book
    placed = await book.apply((await book.reserve(new_order(client="acme"))).order, SUBMIT, {"provider": "echomark"})
    placed = await book.apply(placed, ACCEPT, {"upstream_order": 5000})
    noted = await book.apply(
        placed, STATUS, {"status": "In progress"}, attention="charged twice", version=placed.version
    )
    csrf = await login(browser, runtime)
    before = await runtime.ledger.balance("acme")
    confirm = await browser.get(f"/dashboard/orders/{noted.id}/confirm?verdict=refund&total=0.5")
    previewed = Decimal(re.search(r'data-figure="credit"><strong>([0-9.]+)', confirm.text).group(1))
    after = Decimal(re.search(r'data-figure="balance-after">([0-9.]+)', confirm.text).group(1))
    form = {"csrf": csrf, "total": "0.5", "reason": "double charge"}
    sent = await asyncio.gather(
        *(browser.post(f"/dashboard/orders/{noted.id}/refund", data=form, headers=SAME) for _ in range(3))
    )
    assert all(answer.status_code == 303 for answer in sent)
    assert previewed == Decimal("0.5") and await runtime.ledger.balance("acme") == before + previewed == after
    refunds = [e for e in await runtime.operators.ledger("acme") if e.kind == "refund"]
    assert [e.amount for e in refunds] == ["0.50"]


async def test_a_login_ends_when_its_admin_token_expires(browser, runtime, clock):
    made = await runtime.operators.add_admin("cli", "temp", "operator", expires="1h")
    answer = await browser.post("/dashboard/login", data={"token": made.token}, headers=SAME)
    assert answer.status_code == 303 and "Max-Age=3600" in answer.headers["set-cookie"]  # not the 8 hours
    assert (await browser.get("/dashboard")).status_code == 200
    clock.advance(3600)
    assert (await browser.get("/dashboard")).status_code == 303
    again = await browser.post("/dashboard/login", data={"token": made.token}, headers=SAME)
    assert again.status_code == 401 and "set-cookie" not in again.headers


async def test_a_read_token_changes_nothing_through_any_form_url(browser, runtime):
    """Every POST a page offers, sent straight by a `read` login with its
    valid CSRF token: refused, and Redis is as it was (money, audit, keys)."""
    from support import new_order

    from proxy.orders.states import LOSE, SUBMIT

    await runtime.accounts.create("acme", Decimal("10"))
    book = runtime.book
    lost = await book.apply((await book.reserve(new_order(client="acme"))).order, SUBMIT, {"provider": "echomark"})
    lost = await book.apply(lost, LOSE)
    csrf = await login(browser, runtime, role="read", name="viewer")
    keys = [key async for key in runtime.redis.scan_iter(match=f"{runtime.keys.prefix}*")]
    stored = {key: await runtime.redis.dump(key) for key in keys}
    forms = {
        "/dashboard/clients/acme/topup": {"amount": "5", "ref": "r"},
        "/dashboard/clients/acme/adjust": {"amount": "-5", "reason": "x"},
        "/dashboard/clients/acme/disable": {"reason": "x"},
        "/dashboard/clients/acme/enable": {},
        "/dashboard/clients/acme/rotate-key": {},
        f"/dashboard/orders/{lost.id}/failed": {},
        f"/dashboard/orders/{lost.id}/resolve": {"upstream_order": "77"},
        f"/dashboard/orders/{lost.id}/refund": {"total": "1"},
        f"/dashboard/orders/{lost.id}/ack": {},
        "/dashboard/providers/echomark/approve": {"service": "1"},
    }
    for path, data in forms.items():
        answer = await browser.post(path, data={**data, "csrf": csrf}, headers=SAME)
        assert answer.status_code == 303, path
        shown = await browser.get(answer.headers["location"])
        assert "flash error" in shown.text and "Nothing was changed" in shown.text, path
    keys = [key async for key in runtime.redis.scan_iter(match=f"{runtime.keys.prefix}*")]
    assert {key: await runtime.redis.dump(key) for key in keys} == stored
