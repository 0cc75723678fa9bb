"""Who an identity becomes, and the edges a review found: no account by an unverified
email, no invitation handed to the wrong person, no 500 on odd input."""

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Attachment, Identity, Membership, User
from portal.oidc import VerifiedIdentity
from portal.services import identities
from portal.services.accounts import accept_invitation, invite_user
from portal.services.errors import NotAllowed
from tests.factories import PASSWORD

ISSUER = "https://op.example"


def verified(sub="u1", email="new@contoso.com", email_verified=True):
    return VerifiedIdentity(issuer=ISSUER, subject=sub, email=email, email_verified=email_verified,
                            name="New Person", id_token=None)


def test_unverified_email_never_makes_an_account(app):
    outcome = identities.resolve(verified(email_verified=False))
    assert outcome.kind == "refused" and "did not confirm" in outcome.message
    assert db.session.scalar(select(func.count(User.id))) == 0


def test_unverified_email_does_not_reveal_an_existing_account(make):
    make.user(make.customer(), email="cfo@contoso.com")
    outcome = identities.resolve(verified(email="cfo@contoso.com", email_verified=False))
    assert outcome.kind == "refused" and "exists" not in outcome.message


def test_invitation_to_an_existing_account_needs_that_verified_email(make):
    acme_admin = make.user(make.producer(), "admin", email="admin@acme.example")
    customer = make.customer("Contoso")
    _, token = invite_user(make.actor(customer, "admin"), customer, "admin@acme.example", "member")
    db.session.commit()
    stolen = identities.resolve(verified(sub="attacker", email="eve@evil.example"), invitation_token=token)
    assert stolen.kind == "refused"
    assert db.session.scalar(select(func.count(Identity.id))) == 0
    owner = identities.resolve(verified(sub="acme-admin", email="admin@acme.example"), invitation_token=token)
    assert owner.kind == "signed_in" and owner.user.id == acme_admin.id


def test_invitation_is_accepted_only_by_its_invitee(make):
    customer = make.customer("Contoso")
    eve = make.user(make.customer("Fabrikam"), email="eve@fabrikam.com")
    _, token = invite_user(make.system, customer, "bob@contoso.com", "admin")
    db.session.commit()
    with pytest.raises(NotAllowed):
        accept_invitation(token, eve)
    assert db.session.scalar(select(func.count(Membership.id)).where(Membership.org_id == customer.id)) == 0


def test_planted_invitation_is_not_accepted_silently_at_sign_in(client, make):
    evil = make.customer("Aaa Evil Corp")
    victim = make.user(make.customer("Contoso"), email="victim@contoso.com", password=PASSWORD)
    _, token = invite_user(make.system, evil, "mallory@evil.example", "admin")
    db.session.commit()
    client.get(f"/invitations/{token}")  # the victim opens a link Mallory sent
    response = client.post("/login", data={"email": "victim@contoso.com", "password": PASSWORD})
    assert response.headers["Location"] == f"/invitations/{token}"  # asked, not joined
    assert client.post(f"/invitations/{token}").status_code == 403
    db.session.rollback()
    assert db.session.scalar(select(func.count(Membership.id)).where(Membership.user_id == victim.id)) == 1


def test_control_characters_in_next_do_not_break_sign_in(client, make):
    make.user(make.customer(), email="ann@contoso.com", password=PASSWORD)
    response = client.post("/login", data={"email": "ann@contoso.com", "password": PASSWORD, "next": "/a\nb"})
    assert response.status_code == 302 and response.headers["Location"] == "/"


@pytest.mark.parametrize("raw", ["²", "9" * 30, "-1", "1.5"])
def test_odd_customer_ids_are_404_not_500(login_as, make, raw):
    client = login_as(make.user(make.partner("reseller")))
    assert client.post("/partner/customer", data={"customer_id": raw}).status_code == 404


def test_huge_page_numbers_are_an_empty_page(login_as, make):
    client = login_as(make.user(make.partner("reseller")))
    response = client.get("/partner/customers?page=" + "9" * 30)
    assert response.status_code == 200 and 'class="customer-row"' not in response.get_data(as_text=True)


def test_partner_loses_its_customer_choice_when_revoked(login_as, make):
    from portal.services.entitlements import revoke_attachment

    reseller = make.partner("reseller", "BlueSky")
    customer = make.customer("Contoso")
    entitlement = make.entitlement(customer, [reseller])
    client = login_as(make.user(reseller))
    client.post("/partner/customer", data={"customer_id": customer.id})
    assert "of Contoso" in client.get("/partner/").get_data(as_text=True)
    revoke_attachment(make.system, entitlement.attachments[0])
    db.session.commit()
    page = client.get("/partner/").get_data(as_text=True)
    assert "of Contoso" not in page and 'id="entitlement-count">0<' in page


def test_granted_access_request_keeps_the_sellers_rights(make):
    from portal.services.requests import decide_request, request_partner_access

    seller = make.partner("reseller", "BlueSky")
    customer = make.customer("Contoso")
    entitlement = make.entitlement(customer, [seller])
    req = request_partner_access(make.actor(seller), customer, [entitlement.code], permissions=["view"])
    decide_request(make.actor(customer, "admin"), req, approve=True)
    db.session.commit()
    (attachment,) = db.session.scalars(select(Attachment)).all()
    assert (attachment.relation, attachment.permissions) == ("sold", ["view", "download", "activate"])


def test_view_only_partner_cannot_download_certificates(make):
    from portal.policy import Actor, can
    from portal.services.activations import activate
    from tests.factories import write_transaction

    distributor = make.partner("distributor", "Northwind")
    reseller = make.partner("reseller", "BlueSky", supplied_by=distributor)
    customer = make.customer("Contoso")
    entitlement = make.entitlement(customer, [distributor, reseller])
    member = make.actor(customer, "member")
    write_transaction()
    activation, _ = activate(member, entitlement.lines[0], "host-1")
    db.session.commit()
    northwind = Actor(user=None, org=distributor, role="admin")
    bluesky = Actor(user=None, org=reseller, role="admin")
    assert can(northwind, "view", entitlement) and not can(northwind, "download", activation)
    assert can(bluesky, "download", activation)


def test_attach_twice_in_one_call_and_delete_with_history(make):
    from portal.services.entitlements import attach_partner
    from portal.services.errors import Conflict, ServiceError
    from portal.services.orgs import delete_organization
    from portal.services.requests import apply_as_partner

    customer = make.customer("Contoso")
    entitlement = make.entitlement(customer)
    provider = make.partner("service_provider", "Initech")
    assert len(attach_partner(make.system, [entitlement, entitlement], provider)) == 1
    site = make.customer("Site", parent=customer)
    invite_user(make.system, site, "x@contoso.com", "member")
    with pytest.raises(Conflict):
        delete_organization(make.system, site)
    with pytest.raises(ServiceError):
        apply_as_partner(make.user(customer), company="x" * 201, kind="reseller")


@pytest.mark.parametrize("app_config", [{"PROXY_HOPS": 1}])
def test_behind_one_proxy_the_client_address_is_the_forwarded_one(client, make):
    from portal.models import AuditEvent

    client.post("/login", data={"email": "nobody@contoso.com", "password": "wrong password"},
                headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "session.sign_in_failed"))
    assert event.client_addr == "203.0.113.7"


def test_csrf_tokens_last_as_long_as_the_session(app):
    assert app.config["WTF_CSRF_TIME_LIMIT"] is None
