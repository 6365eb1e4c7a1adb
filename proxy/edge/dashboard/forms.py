"""The dashboard's forms: logging in and out, and every change an operator
makes, each one call of the operators' functions (`proxy.ops.operators`),
so it is checked against the role matrix and audited as the CLI's and the
admin API's are. A refusal is a message (`proxy.edge.dashboard.web`);
what was done is said on the next page, with the money that moved."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from proxy.edge.admin import source_of
from proxy.edge.dashboard.pages import client_page
from proxy.edge.dashboard.sessions import PATH, Sessions, clear_cookie, forged, set_cookie
from proxy.edge.dashboard.web import Dashboard, Refused, View, read_form
from proxy.errors import BadInput
from proxy.ops.operators import whole

LOGIN_FAILED = "That token opens nothing (unknown, removed or expired)."
TOO_MANY = "Too many login attempts from this address: wait a minute."


class Forms:
    def __init__(self, dashboard: Dashboard, sessions: Sessions) -> None:
        self.d = dashboard
        self.sessions = sessions

    # -- logging in and out ------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if await self.sessions.find(request) is not None:
            return self.d.redirect(PATH)
        return self.d.render(None, request, "login.html", title="Log in", error="")

    async def login(self, request: Request) -> Response:
        why = forged(request, None, None)
        if why:
            return self.d.message(None, request, f"Refused: {why}.", 403, f"{PATH}/login")
        try:
            form = await read_form(request)
        except BadInput as exc:
            return self.d.render(None, request, "login.html", 400, title="Log in", error=exc.message)
        peer = request.client.host if request.client else source_of(request)
        if not await self.sessions.may_try(peer):
            return self.d.render(None, request, "login.html", 429, title="Log in", error=TOO_MANY)
        made = await self.sessions.login(form.get("token", ""))
        if made is None:
            return self.d.render(None, request, "login.html", 401, title="Log in", error=LOGIN_FAILED)
        if (previous := await self.sessions.find(request)) is not None:
            await self.sessions.logout(previous)  # a browser holds one session: the new one
        session_id, session = made
        response = self.d.redirect(PATH)
        set_cookie(response, request, session_id, max(1, int(session.expires - self.sessions.clock())))
        return response

    async def logout(self, view: View) -> Response:
        await self.sessions.logout(view.session)
        response = self.d.redirect(f"{PATH}/login")
        clear_cookie(response, view.request)
        return response

    # -- orders ------------------------------------------------------------------

    async def verdict(self, view: View) -> Response:
        """Resolve, refund or acknowledge an order, as its confirmation page showed it."""
        order_id = whole(view.request.path_params["id"], "an order ID")
        verdict = view.request.path_params["verdict"]
        form, ops, actor = view.form, view.ops, view.actor
        reason = form.get("reason", "")
        if verdict == "resolve":
            done = await ops.resolve(
                actor,
                order_id,
                upstream_order=whole(form.get("upstream_order", ""), "the upstream order ID"),
                reason=reason,
            )
            said = f"Order {done.id} resolved: placed as upstream order {done.upstream_order}."
        elif verdict == "failed":
            done = await ops.resolve(actor, order_id, failed=True, reason=reason)
            said = f"Order {done.id} resolved as failed: refunded {done.refunded} to {done.client}."
        elif verdict == "refund":
            done = await ops.refund(actor, order_id, form.get("total", ""), reason)
            said = f"Order {done.id} refunded: its total refund is {done.refunded} of {done.charge}."
        elif verdict == "ack":
            done = await ops.acknowledge(actor, order_id, reason)
            said = f"Order {done.id} acknowledged: no money moved."
        else:
            raise Refused(f"no verdict {verdict!r}")
        balance = (await ops.client(done.client)).balance
        return self.d.done(view, f"{said} {done.client}'s balance is now {balance}.", f"{PATH}/queue")

    # -- providers ------------------------------------------------------------------

    async def approve(self, view: View) -> Response:
        name = view.request.path_params["name"]
        service = whole(view.form.get("service", ""), "the service")
        done = await view.ops.approve_prices(view.actor, name, [service], view.form.get("reason", ""))
        changes = ", ".join(f"service {c['service']}: {c['from']} -> {c['to']}" for c in done.approved)
        return self.d.done(view, f"Approved for {name}: {changes}.", f"{PATH}/providers")

    # -- clients ----------------------------------------------------------------------

    async def topup(self, view: View) -> Response:
        name, form = view.request.path_params["name"], view.form
        done = await view.ops.topup(
            view.actor, name, form.get("amount", ""), ref=_reference(form), memo=form.get("memo", "")
        )
        said = (
            f"Top-up of {done.amount} applied: {name}'s balance is {done.balance}."
            if done.applied
            else f"{_again(form)}: nothing moved. {name}'s balance is {(await view.ops.client(name)).balance}."
        )
        return self.d.done(view, said, f"{PATH}/clients/{name}")

    async def adjust(self, view: View) -> Response:
        name, form = view.request.path_params["name"], view.form
        done = await view.ops.adjust(
            view.actor, name, form.get("amount", ""), form.get("reason", ""), ref=_reference(form)
        )
        said = (
            f"Adjustment of {done.amount} applied: {name}'s balance is {done.balance}."
            if done.applied
            else f"{_again(form)}: nothing moved."
        )
        return self.d.done(view, said, f"{PATH}/clients/{name}")

    async def switch(self, view: View) -> Response:
        name, reason = view.request.path_params["name"], view.form.get("reason", "")
        if view.request.url.path.endswith("/disable"):
            await view.ops.disable_client(view.actor, name, reason)
            said = f"{name} is disabled: its key is refused."
        else:
            await view.ops.enable_client(view.actor, name, reason)
            said = f"{name} is enabled."
        return self.d.done(view, said, f"{PATH}/clients/{name}")

    async def rotate_key(self, view: View) -> Response:
        """A new key, shown on this answer alone (never stored, never in a URL)."""
        name = view.request.path_params["name"]
        made = await view.ops.rotate_key(view.actor, name, view.form.get("reason", ""))
        return await client_page(self.d, view, name, made.key)


# A money form without a reference typed carries a one-time key from its page
# (`once`, made as the page is drawn, stored nowhere): it becomes the
# reference, so the same form sent twice (a double click, a resend after a
# slow answer) moves money once, as a reference does.
_ONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def _reference(form: dict[str, str]) -> str | None:
    if form.get("ref"):
        return form["ref"]
    once = form.get("once", "")
    return f"form-{once}" if _ONCE.fullmatch(once) else None


def _again(form: dict[str, str]) -> str:
    return f"Reference {form['ref']!r} was applied before" if form.get("ref") else "This form was sent before"
