"""A partner's single-object loaders ask about that one row (its live attachment, or its stock),
never for the list of every id it sees, and answer exactly as the list scopes do."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from werkzeug.exceptions import NotFound

from portal.extensions import db
from portal.models import Activation, EntitlementLine
from portal.policy import load_activation, load_entitlement, load_line, visible_attachments, visible_entitlements
from portal.services.activations import activate
from portal.services.entitlements import revoke_attachment
from tests.factories import write_transaction


@pytest.fixture
def world(make):
    reseller = make.partner("reseller", "BlueSky", stocking=True)
    other = make.partner("reseller", "RedRock")
    contoso, fabrikam = make.customer("Contoso"), make.customer("Fabrikam")
    attached = make.entitlement(contoso, [reseller], seats=5)
    at_other = make.entitlement(fabrikam, [reseller], seats=5)
    decoy = make.entitlement(contoso, [other], seats=5)  # attached to another partner only
    stock = make.entitlement(reseller, [reseller], seats=5, fulfilment="stocking")
    revoked = make.entitlement(fabrikam, [reseller], seats=5)
    write_transaction()
    for entitlement in (attached, decoy, at_other, revoked):
        activate(make.system, entitlement.lines[0], "host-1")
    for attachment in revoked.attachments:
        revoke_attachment(make.system, attachment)
    db.session.commit()
    return {"reseller": reseller, "contoso": contoso, "attached": attached, "at_other": at_other,
            "decoy": decoy, "stock": stock, "revoked": revoked}


def _found(loader, *args):
    try:
        loader(*args)
    except NotFound:
        return False
    return True


@pytest.mark.parametrize("for_customer", [False, True])
def test_loaders_agree_with_the_list_scope(make, world, for_customer):
    actor = make.actor(world["reseller"], "admin")
    if for_customer:
        actor = actor.for_customer(world["contoso"].id)
    listed = set(db.session.scalars(visible_entitlements(actor).with_only_columns(
        visible_entitlements(actor).selected_columns[0].table.c.code)))
    expected = {"attached"} | ({"at_other", "stock"} if not for_customer else set())
    assert listed == {world[name].code for name in expected}
    for name in ("attached", "at_other", "decoy", "stock", "revoked"):
        entitlement = world[name]
        visible = entitlement.code in listed
        assert _found(load_entitlement, actor, entitlement.code) is visible, name
        assert _found(load_line, actor, entitlement.lines[0].id) is visible, name
        activation = db.session.scalar(select(Activation).join(EntitlementLine)
                                       .where(EntitlementLine.entitlement_id == entitlement.id))
        if activation is not None:
            assert _found(load_activation, actor, activation.id) is visible, name
        own = db.session.scalars(visible_attachments(actor, entitlement)).all()
        assert all(a.partner_id == world["reseller"].id for a in own)
        if not visible:
            assert own == []


def test_a_partner_loader_asks_about_one_row(make, world, count_queries):
    actor = make.actor(world["reseller"], "admin")
    code, line_id, _ = world["attached"].code, world["attached"].lines[0].id, actor.org.kind
    with count_queries() as counter:
        load_entitlement(actor, code)
        load_line(actor, line_id)
    assert counter.count == 2
    for statement in counter.statements:
        assert "UNION" not in statement.upper() and "EXISTS" in statement.upper(), statement
