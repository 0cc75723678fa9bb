"""Service verbs behind the customer's hierarchy pages: moving an entitlement within one tree,
and an admin who may not remove or demote itself."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Membership
from portal.policy import Actor
from portal.services.entitlements import move_within_tree
from portal.services.errors import Conflict, NotAllowed, ServiceError
from portal.services.orgs import add_member, remove_member
from tests.customer.tree_world import build_tree_world


@pytest.fixture
def world(make):
    return build_tree_world(make)


def actor(user, org, role="admin") -> Actor:
    return Actor(user=user, org=org, role=role)


def test_an_admin_of_a_subsidiary_moves_within_its_own_subtree_only(world, make):
    germany_admin = actor(make.user(world.germany, "admin"), world.germany)
    entitlement = world.entitlements["germany"]
    move_within_tree(germany_admin, entitlement, world.munich)
    assert entitlement.owner_id == world.munich.id
    with pytest.raises(ServiceError, match="your own hierarchy") as refused:
        move_within_tree(germany_admin, entitlement, world.usa)  # a sibling of its own organization
    assert refused.value.field == "org"
    with pytest.raises(NotAllowed):
        move_within_tree(germany_admin, world.entitlements["group"], world.germany)  # its parent's


@pytest.mark.parametrize("target", ["tailspin", "tailspin_site", "bluesky"])
def test_never_outside_the_tree_not_even_for_producer_staff(world, make, target):
    """Outside the hierarchy it is a transfer, which has its own request and decision."""
    staff = actor(make.user(make.producer(), "staff"), make.producer(), "staff")
    for who in (staff, actor(world.admin, world.contoso)):
        with pytest.raises(ServiceError, match="transfer"):
            move_within_tree(who, world.entitlements["germany"], world.orgs[target])
    assert world.entitlements["germany"].owner_id == world.germany.id


def test_members_and_partners_move_nothing(world):
    for who in (actor(world.member, world.germany, "member"), actor(world.initech_admin, world.initech)):
        with pytest.raises(NotAllowed):
            move_within_tree(who, world.entitlements["germany"], world.munich)


def test_a_move_to_where_it_is_changes_and_records_nothing(world):
    before = db.session.scalar(select(db.func.count(AuditEvent.id)))
    move_within_tree(actor(world.admin, world.contoso), world.entitlements["germany"], world.germany)
    assert db.session.scalar(select(db.func.count(AuditEvent.id))) == before


def test_an_admin_cannot_remove_itself_from_the_organization_it_works_in(world):
    admin = actor(world.admin, world.contoso)
    own = db.session.scalar(select(Membership).where(Membership.user_id == world.admin.id))
    with pytest.raises(Conflict, match="cannot remove yourself"):
        remove_member(admin, own)
    with pytest.raises(ServiceError, match="your own role") as refused:
        add_member(admin, world.contoso, world.admin, "member")
    assert refused.value.field == "role"
    assert (own.role, db.session.get(Membership, own.id) is not None) == ("admin", True)
    add_member(admin, world.contoso, world.admin, "admin")  # keeping its role is no change


def test_another_admin_can_remove_or_demote_it(world, make):
    other = actor(make.user(world.contoso, "admin"), world.contoso)
    own = db.session.scalar(select(Membership).where(Membership.user_id == world.admin.id))
    add_member(other, world.contoso, world.admin, "member")
    assert own.role == "member"
    remove_member(other, own)
    db.session.flush()
    assert db.session.scalar(select(Membership).where(Membership.user_id == world.admin.id)) is None
