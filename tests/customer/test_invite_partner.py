"""One pending partner invitation per admin: inviting a company that is not on the portal makes a
``partner_application`` for producer staff; the same admin cannot pile up another one (same
company, same email, or any other) while it waits. The refusal is a message at the field, a 422,
and nothing written; the database's one-pending index settles two invitations at the same moment."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import func, select

from portal.database import begin_write
from portal.extensions import db
from portal.models import AuditEvent, Organization, PortalRequest
from portal.policy import Actor
from portal.services import requests as request_services
from portal.services.errors import Conflict
from portal.services.requests import invite_partner, withdraw_request
from tests.customer.conftest import HX


def _invite(client, shop, company="Litware Support", email="boss@litware.example", keys=("de_studio",),
            headers=None):
    return client.post("/customer/partners/invite", headers=headers or {}, data={
        "invite-company": company, "invite-email": email, "invite-view": "y",
        "invite-entitlements": [shop.entitlements[k].id for k in keys]})


def _field_error(response, field_id: str) -> str:
    found = re.search(rf'<p class="error[^"]*" id="{field_id}-error">([^<]*)</p>', response.get_data(as_text=True))
    return html.unescape(found.group(1)) if found else ""


def _written() -> tuple[int, int]:
    """Partner applications, and audit events of request creations."""
    db.session.rollback()
    return (db.session.scalar(select(func.count()).select_from(PortalRequest)
                              .where(PortalRequest.kind == "partner_application")),
            db.session.scalar(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.action == "request.create")))


@pytest.fixture
def invited(admin_client, shop, make):
    """The admin's pending invitation of Litware Support; a decoy pending application by another
    admin of Contoso and one by Fabrikam's admin, for the same company and email."""
    assert _invite(admin_client, shop).status_code == 302
    db.session.rollback()  # a fresh transaction: the request wrote meanwhile
    for org in (shop.orgs["contoso"], shop.orgs["fabrikam"]):
        other = make.actor(org, "admin")
        keys = ("us_sync",) if org is shop.orgs["contoso"] else ("fab_studio",)
        invite_partner(other, company="Litware Support", email="boss@litware.example",
                       entitlements=[shop.entitlements[k] for k in keys])
    db.session.commit()
    assert _written() == (3, 3)


@pytest.mark.parametrize(("company", "email", "field", "message"), [
    ("  litware   SUPPORT ", "other@litware.example", "invite-company",
     "You invited litware SUPPORT already; producer staff have not decided yet."),
    ("Litware GmbH", "Boss@Litware.example", "invite-email",
     "You invited boss@litware.example already (for Litware Support); producer staff have not decided yet."),
    ("Adventure Works", "ceo@adventure-works.example", "invite-company",
     "Your invitation of another partner is waiting for producer staff; withdraw it under Requests, "
     "or wait for their decision, before you invite the next one."),
])
def test_a_second_pending_invitation_by_the_same_admin_is_refused_at_the_field(
        admin_client, shop, invited, company, email, field, message):
    for headers in ({}, HX):
        response = _invite(admin_client, shop, company=company, email=email, keys=("munich_studio",),
                           headers=headers)
        assert response.status_code == 422
        assert _field_error(response, field) == message
        assert _written() == (3, 3)


def test_after_a_decision_or_withdrawal_the_admin_invites_again(admin_client, shop, invited):
    pending = db.session.scalar(select(PortalRequest).where(PortalRequest.requester_user_id == shop.admin.id))
    begin_write()
    withdraw_request(Actor(user=shop.admin, org=shop.orgs["contoso"], role="admin"), pending)
    db.session.commit()
    assert _invite(admin_client, shop).status_code == 302
    assert _written() == (4, 4)  # the withdrawn one stays on record
    assert db.session.scalar(select(func.count()).select_from(PortalRequest).where(
        PortalRequest.requester_user_id == shop.admin.id, PortalRequest.state == "pending")) == 1


def test_two_invitations_at_the_same_moment_the_index_keeps_one(shop, invited, monkeypatch):
    """Both passed the check before either was written: the partial unique index refuses the second."""
    monkeypatch.setattr(request_services, "_pending_duplicate", lambda **criteria: None)
    admin = Actor(user=shop.admin, org=shop.orgs["contoso"], role="admin")
    begin_write()
    with pytest.raises(Conflict, match="Your invitation of another partner is waiting"):
        invite_partner(admin, company="Adventure Works", email="ceo@adventure-works.example",
                       entitlements=[shop.entitlements["munich_studio"]])
    db.session.commit()  # the caller's transaction stays usable
    assert _written() == (3, 3)
    assert db.session.scalar(select(func.count()).select_from(Organization)
                             .where(Organization.name == "Adventure Works")) == 0
