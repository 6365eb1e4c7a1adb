"""The operators' dashboard at /dashboard: pages rendered on the server
(Starlette and Jinja2), a little script for live refresh, every asset in the
package (`templates/`, `static/`), no build step, no CDN.

It is closed unless `SMM_PROXY_DASHBOARD` is set. An operator logs in with
an admin token (its role decides what the pages allow); the session is a
cookie (`sessions`); every page reads, and every form acts, only through the
operators' functions the CLI and the admin API call (`proxy.ops.operators`),
so each change is checked and audited the same way.

    sessions   logins, the session cookie, the guard on every form
    web        what every page and form goes through; the templates
    pages      overview, needs a person, confirmations, providers, orders, clients, the ledger as CSV
    forms      log in and out, verdicts, price approvals, top-ups, adjustments, keys
    charts     a report by day as SVG bars
"""

from __future__ import annotations

from collections.abc import Callable

from limits.aio.storage import Storage
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from proxy.edge.dashboard.forms import Forms
from proxy.edge.dashboard.pages import Pages
from proxy.edge.dashboard.sessions import PATH, Sessions
from proxy.edge.dashboard.web import HERE, Dashboard
from proxy.keys import Keys
from proxy.ops.operators import Operators
from proxy.settings import Settings
from proxy.store import Store

__all__ = ["routes"]


def routes(
    ops: Operators, redis: Store, keys: Keys, storage: Storage, settings: Settings, currency: Callable[[], str]
) -> list[BaseRoute]:
    sessions = Sessions(
        redis,
        keys,
        ops.admins_registry,
        storage,
        hours=settings.dashboard_session_hours,
        logins=settings.dashboard_logins,
        clock=ops.admins_registry.clock,
    )
    d = Dashboard(ops, sessions, currency)
    pages, forms = Pages(d), Forms(d, sessions)

    def client_page(request: object) -> str:
        name = getattr(request, "path_params", {}).get("name", "")
        return f"{PATH}/clients/{name}"

    def back_to(path: str) -> Callable[[object], str]:
        return lambda request: f"{PATH}{path}"

    get = ["GET", "HEAD"]
    return [
        Route(f"{PATH}/login", forms.login_page, methods=get),
        Route(f"{PATH}/login", forms.login, methods=["POST"]),
        Route(f"{PATH}/logout", d.form(forms.logout, back_to("")), methods=["POST"]),
        Route(PATH, d.page(pages.overview), methods=get),
        Route(f"{PATH}/queue", d.page(pages.queue), methods=get),
        Route(f"{PATH}/orders", d.page(pages.orders), methods=get),
        Route(f"{PATH}/orders/{{id}}", d.page(pages.order), methods=get),
        Route(f"{PATH}/orders/{{id}}/confirm", d.page(pages.confirm), methods=get),
        Route(f"{PATH}/orders/{{id}}/{{verdict}}", d.form(forms.verdict, back_to("/queue")), methods=["POST"]),
        Route(f"{PATH}/providers", d.page(pages.providers), methods=get),
        Route(f"{PATH}/providers/{{name}}/approve", d.form(forms.approve, back_to("/providers")), methods=["POST"]),
        Route(f"{PATH}/clients", d.page(pages.clients), methods=get),
        Route(f"{PATH}/clients/{{name}}", d.page(pages.client), methods=get),
        Route(f"{PATH}/clients/{{name}}/ledger.csv", d.page(pages.ledger_csv), methods=get),
        Route(f"{PATH}/clients/{{name}}/topup", d.form(forms.topup, client_page), methods=["POST"]),
        Route(f"{PATH}/clients/{{name}}/adjust", d.form(forms.adjust, client_page), methods=["POST"]),
        Route(f"{PATH}/clients/{{name}}/rotate-key", d.form(forms.rotate_key, client_page), methods=["POST"]),
        Route(f"{PATH}/clients/{{name}}/disable", d.form(forms.switch, client_page), methods=["POST"]),
        Route(f"{PATH}/clients/{{name}}/enable", d.form(forms.switch, client_page), methods=["POST"]),
        Mount(f"{PATH}/static", StaticFiles(directory=HERE / "static"), name="dashboard-static"),
        # Last: any other page is a "not found" page (after a login: before, the login page).
        Route(f"{PATH}/{{rest:path}}", d.page(pages.not_found), methods=get),
    ]
