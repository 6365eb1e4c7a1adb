"""Who may do what (proxy/ops/roles.py): one matrix for the CLI and the admin API."""

import pytest

from proxy.edge.admin import ENDPOINTS
from proxy.errors import Forbidden
from proxy.ops.roles import NEEDS, OPERATOR, OWNER, READ, READS, Actor, as_actor, may, needs


def test_read_only_reads_operator_works_orders_and_money_owner_does_everything():
    for action, role in NEEDS.items():
        assert may(OWNER, action)
        assert may(OPERATOR, action) == (role != OWNER)
        assert may(READ, action) == (role == READ)
    assert needs("client.topup") == OPERATOR and needs("client.adjust") == OPERATOR
    assert needs("client.create") == OWNER and needs("client.rotate_key") == OWNER and needs("admin.add") == OWNER


def test_an_action_nobody_classified_needs_an_owner():
    assert needs("orders.something_new") == OWNER
    assert not may(OPERATOR, "orders.something_new") and may(OWNER, "orders.something_new")
    assert not may("root", "clients.list") and not may("", "clients.list")


def test_every_admin_route_reads_with_get_and_changes_with_post():
    for endpoint in ENDPOINTS:
        assert endpoint.action in NEEDS, endpoint
        assert (endpoint.method == "GET") == (endpoint.action in READS), endpoint


def test_an_actor_checks_its_role():
    with pytest.raises(Forbidden, match=r"admin:bo \(read\) may not client.topup: it needs the operator role"):
        Actor("admin:bo", READ).check("client.topup")
    Actor("admin:bo", OPERATOR).check("client.topup")
    assert as_actor("cli:ann") == Actor("cli:ann", OWNER)
