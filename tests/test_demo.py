"""The demo story of spec section 9: loads deterministically and shows the five rules."""

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Activation, Entitlement, Membership, Organization, PortalRequest, User
from portal.policy import Actor, customers_served_by, visible_attachments, visible_entitlements

# Who sees how many entitlements in the story, straight from spec sections 4 and 9.
EXPECTED_VISIBLE = {
    "admin@acme.example": 8,  # the producer sees everything
    "staff@acme.example": 8,
    "admin@northwind.example": 5,  # distributed: Contoso DE, Fabrikam studio, Tailspin, 2 in BlueSky's stock
    "admin@bluesky.example": 5,  # sold the same 3, holds the 2 in stock
    "admin@redrock.example": 2,  # Contoso USA sync, Fabrikam sync
    "admin@initech.example": 1,  # attached as services to Contoso Germany's studio
    "admin@contoso.example": 3,  # its own credits plus both subsidiaries'
    "it@contoso-de.example": 1,  # only Contoso Germany's subtree
    "admin@fabrikam.example": 2,
    "admin@tailspin.example": 1,
}


@pytest.fixture
def demo(app):
    result = app.test_cli_runner().invoke(args=["portal", "demo"])
    assert result.exit_code == 0, result.output
    return result


def _actor(email: str) -> Actor:
    user = db.session.scalar(select(User).where(User.email == email))
    membership = db.session.scalar(select(Membership).where(Membership.user_id == user.id))
    return Actor(user=user, org=membership.org, role=membership.role)


def test_demo_prints_every_login_and_the_password(demo):
    for email in EXPECTED_VISIBLE:
        assert email in demo.output
    assert "Password for every demo user: demo-password-2026" in demo.output


def test_demo_refuses_a_second_load(demo, app):
    again = app.test_cli_runner().invoke(args=["portal", "demo"])
    assert again.exit_code != 0
    assert "not empty" in again.output


def test_demo_story_counts(demo):
    assert db.session.scalar(select(func.count(Entitlement.id))) == 8
    assert db.session.scalar(select(func.count(Organization.id))) == 11
    assert db.session.scalar(select(func.count(Activation.id))) == 4
    kinds = db.session.scalars(select(PortalRequest.kind).where(PortalRequest.state == "pending")).all()
    assert sorted(kinds) == ["join_org", "partner_access", "partner_application", "transfer"]


def test_each_demo_user_sees_its_share(demo):
    seen = {
        email: db.session.scalar(select(func.count()).select_from(visible_entitlements(_actor(email)).subquery()))
        for email in EXPECTED_VISIBLE
    }
    assert seen == EXPECTED_VISIBLE


def test_redrock_never_sees_what_fabrikam_bought_through_bluesky(demo):
    redrock = _actor("admin@redrock.example")
    codes = set(db.session.scalars(visible_entitlements(redrock).with_only_columns(Entitlement.code)))
    assert codes == {"ENT-DEMO-CUS1-0002", "ENT-DEMO-FAB1-0004"}
    served = [org.name for org in db.session.scalars(customers_served_by(redrock))]
    assert served == ["Contoso USA", "Fabrikam Inc"]


def test_initech_sees_only_its_own_attachment(demo):
    initech = _actor("admin@initech.example")
    (entitlement,) = db.session.scalars(visible_entitlements(initech)).all()
    attachments = db.session.scalars(visible_attachments(initech, entitlement)).all()
    assert [(a.partner.name, a.relation) for a in attachments] == [("Initech Services", "services")]
    producer = _actor("admin@acme.example")
    everyone = db.session.scalars(visible_attachments(producer, entitlement)).all()
    assert sorted(a.partner.name for a in everyone) == [
        "BlueSky Resellers", "Initech Services", "Northwind Distribution"]
