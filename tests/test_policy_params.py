"""The policy's scopes as bound parameters (statements built once) select exactly what the scopes
with their values in the statement select: the same entitlements, lines, attachments, subtree and
count, for every kind of actor, with decoys of every kind next to what each may see."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from portal import policy
from portal.extensions import db
from portal.models import Attachment, Entitlement, EntitlementLine
from portal.services.entitlements import revoke_attachment

E, L, A = policy.ENTITLEMENT_TABLE, policy.LINE_TABLE, policy.ATTACHMENT_TABLE


@pytest.fixture
def world(make):
    """Contoso Group > Germany > Munich, and Contoso USA; Fabrikam (a decoy customer); Northwind
    (distributor) -> BlueSky (stocking reseller) with stock of its own, another holder's stock it
    is attached to, a revoked attachment and a view-less one; Initech (services) on one Contoso
    entitlement; RedRock on Fabrikam's."""
    northwind = make.partner("distributor", "Northwind Distribution")
    bluesky = make.partner("reseller", "BlueSky Resellers", supplied_by=northwind, stocking=True)
    redrock = make.partner("reseller", "RedRock IT")
    initech = make.partner("service_provider", "Initech Services")
    stockist = make.partner("reseller", "Stockists Ltd", stocking=True)
    group = make.customer("Contoso Group")
    germany = make.customer("Contoso Germany", parent=group)
    munich = make.customer("Contoso Munich Plant", parent=germany)
    usa = make.customer("Contoso USA", parent=group)
    fabrikam = make.customer("Fabrikam Inc")
    w = SimpleNamespace(
        producer=make.producer(), northwind=northwind, bluesky=bluesky, redrock=redrock, initech=initech,
        group=group, germany=germany, munich=munich, usa=usa, fabrikam=fabrikam,
        group_e=make.entitlement(group, [northwind, bluesky], model="subscription"),
        germany_e=make.entitlement(germany, [northwind, bluesky]),
        munich_e=make.entitlement(munich),
        usa_e=make.entitlement(usa, [redrock], model="usage"),
        fabrikam_e=make.entitlement(fabrikam, [redrock]),
        stock=make.entitlement(bluesky, [northwind, bluesky], fulfilment="stocking"),
        other_stock=make.entitlement(stockist, [stockist], fulfilment="stocking"),
        revoked=make.entitlement(fabrikam, [northwind, bluesky]),
        viewless=make.entitlement(fabrikam),
    )
    make.attach(w.munich_e, initech, permissions=("view", "activate"))
    make.attach(w.other_stock, bluesky)
    attachment = db.session.scalar(select(Attachment).where(Attachment.entitlement_id == w.revoked.id,
                                                            Attachment.partner_id == bluesky.id))
    revoke_attachment(make.system, attachment)
    make.attach(w.viewless, bluesky)
    viewless = db.session.scalar(select(Attachment).where(Attachment.entitlement_id == w.viewless.id))
    viewless.can_view = viewless.can_download = viewless.can_activate = False  # attached, seeing nothing
    db.session.commit()
    return w


def _actors(world, make):
    partners = [world.northwind, world.bluesky, world.redrock, world.initech]
    yield policy.Actor(user=None, org=world.producer, role="staff")
    for org in (world.group, world.germany, world.munich, world.usa, world.fabrikam):
        yield make.actor(org, "admin")
    for org in partners:
        yield make.actor(org, "admin")
    for org, customer in ((world.bluesky, world.group), (world.bluesky, world.fabrikam),
                          (world.redrock, world.usa), (world.initech, world.munich)):
        yield make.actor(org, "admin").for_customer(customer.id)


def _ids(statement, params=None) -> set[int]:
    return set(db.session.execute(statement, params or {}).scalars())


def test_parametrized_scopes_select_what_the_scopes_select(world, make):
    dialect = db.engine.dialect.name
    seen_some = 0
    for actor in _actors(world, make):
        shape, params = policy.scope_shape(actor), policy.scope_params(actor)
        expected = _ids(select(Entitlement.id).where(policy.entitlement_scope(actor)))
        label = f"{actor.org.name} ({shape})"
        assert _ids(select(E.c.id).where(policy.entitlement_scope_param(shape, dialect)), params) == expected, label
        assert _ids(select(E.c.id).where(policy.entitlement_row_scope_param(shape, dialect)), params) == expected, label
        assert _ids(select(Entitlement.id).where(policy.entitlement_row_scope(actor))) == expected, label
        assert policy.visible_entitlement_count(actor) == len(expected), label
        lines = _ids(select(EntitlementLine.id).where(policy.line_scope(actor)))
        assert _ids(select(L.c.id).where(policy.line_scope_param(shape, dialect)), params) == lines, label
        attachments = _ids(select(Attachment.id).where(policy.attachment_scope(actor)))
        assert _ids(select(A.c.id).where(policy.attachment_scope_param(shape)), params) == attachments, label
        if actor.is_customer:
            subtree = _ids(policy.subtree_org_ids(actor.org))
            assert _ids(policy.subtree_ids_param(dialect), params) == subtree, label
        seen_some += bool(expected)
    everything = db.session.scalar(select(func.count()).select_from(Entitlement))
    assert seen_some >= 10 and everything == 9


def test_what_the_reseller_sees_through_parameters(world, make):
    """The decoys are decoys: BlueSky sees its stock, the chain it sold and the other holder's
    stock it is attached to; not the revoked one, not the one it may not view."""
    bluesky = make.actor(world.bluesky, "admin")
    shape = policy.scope_shape(bluesky)
    found = _ids(select(E.c.code).where(policy.entitlement_row_scope_param(shape, db.engine.dialect.name)),
                 policy.scope_params(bluesky))
    assert found == {world.group_e.code, world.germany_e.code, world.stock.code, world.other_stock.code}
    for_group = bluesky.for_customer(world.group.id)
    found = _ids(select(E.c.code).where(policy.entitlement_row_scope_param("partner_customer", db.engine.dialect.name)),
                 policy.scope_params(for_group))
    assert found == {world.group_e.code}


def test_unread_counts_through_parameters_are_the_inbox(world, make):
    """The nav's unread count (built once, parameters) counts what the inbox's scope holds unread
    by this user: its hierarchy's messages, not a decoy customer's, not what it read."""
    from portal.models import NotificationMessage, NotificationRead
    from portal.services.inbox import unread_count, unread_messages

    for org in (world.group, world.germany, world.munich, world.fabrikam):
        make.message(org, title=f"Notice for {org.name}")
    admin = make.actor(world.group, "admin")
    read = db.session.scalar(policy.visible_messages(admin).where(NotificationMessage.org_id == world.munich.id))
    db.session.add(NotificationRead(message_id=read.id, user_id=admin.user.id))
    db.session.commit()
    for actor in (admin, make.actor(world.germany, "member"), make.actor(world.fabrikam, "admin"),
                  make.actor(world.bluesky, "admin"), make.actor(world.producer)):
        expected = db.session.scalar(select(func.count()).select_from(unread_messages(actor).subquery()))
        assert unread_count(actor) == expected, actor.org.name
    assert unread_count(admin) == 2  # the group's and Germany's; Munich's was read; Fabrikam's is not ours
