"""Requests and their decisions: each kind carried out on approval, audited, requester told."""

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Attachment, AuditEvent, Membership, Organization, OutboxEmail
from portal.policy import Actor
from portal.services.accounts import create_user
from portal.services.errors import Conflict, NotAllowed
from portal.services.requests import (
    apply_as_partner,
    decide_request,
    request_partner_access,
    request_to_join,
    request_transfer,
    withdraw_request,
)


@pytest.fixture
def world(make):
    customer = make.customer("Contoso")
    other = make.customer("Fabrikam")
    reseller = make.partner("reseller", "RedRock")
    return {"customer": customer, "other": other, "reseller": reseller,
            "admin": make.actor(customer, "admin"), "staff": make.system}


def test_join_request_approved_by_the_org_admin(world):
    newcomer = create_user("new@contoso.com", "New")
    req = request_to_join(newcomer, world["customer"], message="Hello")
    db.session.commit()
    with pytest.raises(NotAllowed):
        decide_request(Actor(user=newcomer, org=world["other"], role="admin"), req, approve=True)
    decide_request(world["admin"], req, approve=True, note="Welcome")
    db.session.commit()
    membership = db.session.scalar(select(Membership).where(Membership.user_id == newcomer.id))
    assert (membership.org_id, membership.role) == (world["customer"].id, "member")
    assert req.state == "approved" and req.decided_by_id == world["admin"].user.id
    mail = db.session.scalar(select(OutboxEmail).where(OutboxEmail.to_addr == "new@contoso.com"))
    assert "approved" in mail.subject and "Welcome" in mail.body_text
    with pytest.raises(Conflict):
        decide_request(world["admin"], req, approve=False)


def test_partner_access_approved_attaches_only_the_customers_entitlements(world, make):
    own = make.entitlement(world["customer"])
    foreign = make.entitlement(world["other"])
    reseller_actor = make.actor(world["reseller"])
    req = request_partner_access(reseller_actor, world["customer"], [own.code, foreign.code],
                                 permissions=["view", "download"])
    db.session.commit()
    decide_request(world["admin"], req, approve=True)
    db.session.commit()
    attachments = db.session.scalars(select(Attachment).where(Attachment.partner_id == world["reseller"].id)).all()
    assert [(a.entitlement_id, a.relation, a.permissions) for a in attachments] == [
        (own.id, "services", ["view", "download"])]


def test_transfer_is_decided_by_producer_staff(world, make):
    entitlement = make.entitlement(world["customer"])
    req = request_transfer(world["admin"], entitlement, world["other"], message="Acquired")
    db.session.commit()
    with pytest.raises(NotAllowed):
        decide_request(world["admin"], req, approve=True)
    decide_request(world["staff"], req, approve=True)
    db.session.commit()
    assert entitlement.owner_id == world["other"].id
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "entitlement.transfer")) == 1


def test_partner_application_approved_creates_the_partner(world):
    founder = create_user("founder@globex.com", "Grace")
    req = apply_as_partner(founder, company="Globex", kind="reseller", email="sales@globex.com")
    db.session.commit()
    decide_request(world["staff"], req, approve=True)
    db.session.commit()
    globex = db.session.scalar(select(Organization).where(Organization.name == "Globex"))
    assert globex.kind == "reseller" and globex.path == f"/{globex.id}/"
    assert db.session.scalar(select(Membership.role).where(Membership.user_id == founder.id)) == "admin"


def test_rejected_and_withdrawn_change_nothing(world, make):
    entitlement = make.entitlement(world["customer"])
    req = request_partner_access(make.actor(world["reseller"]), world["customer"], [entitlement.code])
    db.session.commit()
    decide_request(world["admin"], req, approve=False, note="No thanks")
    db.session.commit()
    assert db.session.scalar(select(func.count(Attachment.id))) == 0
    newcomer = create_user("maybe@contoso.com", "Maybe")
    join = request_to_join(newcomer, world["customer"])
    db.session.commit()
    requester = Actor(user=newcomer, org=world["customer"], role="requester")
    withdraw_request(requester, join)
    db.session.commit()
    assert join.state == "withdrawn"
    with pytest.raises(Conflict):  # its state says why: nothing left to withdraw
        withdraw_request(requester, join)
    assert db.session.scalar(select(func.count(Membership.id)).where(Membership.user_id == newcomer.id)) == 0
