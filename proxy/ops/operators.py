"""What operators do, written once: the CLI and the admin API both call here.

`Operators` is every operator action, grouped by what it works on: clients
(`proxy.ops.clients_desk`), orders (`proxy.ops.orders_desk`), providers,
events, the config and reports (`proxy.ops.providers_desk`), and admin
tokens (here). Each change checks the role matrix (`proxy.ops.roles`) and is
written to the audit log before it happens (`proxy.ops.acting` says how);
reads take no actor (the admin API checks each route's role against the same
matrix). Every action answers a typed value (`proxy.ops.answers`); a refusal
raises `OperatorError` (`Invalid` for a bad value) with a message fit to show.
"""

from __future__ import annotations

from proxy.errors import (
    NotFound,
    OperatorError,
)
from proxy.ops.acting import amount, reason_text, reference, whole
from proxy.ops.admins import expiry_seconds
from proxy.ops.answers import (
    AdminView,
    NewAdmin,
    RemovedAdmin,
    iso,
)
from proxy.ops.audit import Record
from proxy.ops.clients_desk import ClientsDesk
from proxy.ops.orders_desk import OrdersDesk
from proxy.ops.providers_desk import NotReloaded, ProvidersDesk
from proxy.ops.roles import READ, Actor

__all__ = ["NotReloaded", "Operators", "amount", "reason_text", "reference", "whole"]


class Operators(ClientsDesk, OrdersDesk, ProvidersDesk):
    """Every operator action, on the collaborators it works through."""

    async def add_admin(
        self, actor: Actor | str, name: str, role: str = READ, expires: str | None = None, reason: str = ""
    ) -> NewAdmin:
        """A token for the admin API with a role (and a life, if given); shown once, stored hashed."""
        self.admins_registry.check(name, role)
        life = None if expires is None else expiry_seconds(expires)

        async def act(entry: Record) -> NewAdmin:
            admin, token = await self.admins_registry.add(name, role, life)
            return NewAdmin(admin.name, admin.role, iso(admin.expires) if admin.expires else "", token)

        detail = {"role": role, "expires": expires or ""}
        if any(a.name == name and a.registered for a in await self.admins_registry.all()):
            raise OperatorError(f"admin {name!r} exists already")
        return await self._audited(actor, "admin.add", name, act, reason=reason_text(reason), detail=detail)

    async def remove_admin(self, actor: Actor | str, name: str, reason: str = "") -> RemovedAdmin:
        if not any(a.name == name for a in await self.admins_registry.all()):
            raise NotFound(f"no admin {name!r}")

        async def act(entry: Record) -> RemovedAdmin:
            await self.admins_registry.remove(name)
            return RemovedAdmin(name)

        return await self._audited(actor, "admin.remove", name, act, reason=reason_text(reason))

    async def admins(self) -> list[AdminView]:
        now = self.admins_registry.clock()
        return [AdminView.of(admin, now) for admin in await self.admins_registry.all()]
