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


def test_huge_page_numbers_are_refused_not_a_500(login_as, make):
    """Every list reads its page through the shared parser: beyond any list is a 400 (as on the
    customer's and producer's lists), a page past the end of this one an empty page."""
    client = login_as(make.user(make.partner("reseller")))
    assert client.get("/partner/customers?page=" + "9" * 30).status_code == 400
    response = client.get("/partner/customers?page=99")
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


# Invitations: the page never names the invited address to someone else, and with local
# sign-in on, an invited newcomer sets a password from the link.

NEW_PASSWORD = "twelve chars and more"


@pytest.fixture
def invitation(make):
    """Contoso Group invites alice@contoso.com as member; the link's path."""
    customer = make.customer("Contoso Group")
    make.entitlement(customer)
    _, token = invite_user(make.system, customer, "alice@contoso.com", "member")
    db.session.commit()
    return f"/invitations/{token}"


def _actions() -> list[str]:
    from portal.models import AuditEvent

    return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def _set_password(client, link, password=NEW_PASSWORD, confirm=None, **extra):
    data = {"display_name": "Alice", "password": password, "confirm": password if confirm is None else confirm}
    return client.post(link, data=data | extra)


def test_invitation_page_names_the_invitee_only_to_the_invitee(client, login_as, make, invitation):
    eve = make.user(make.customer("Fabrikam"), email="eve@fabrikam.com")
    anonymous = client.get(invitation).get_data(as_text=True)
    assert "Contoso Group" in anonymous and "a•••@contoso.com" in anonymous
    assert "alice@contoso.com" not in anonymous

    as_eve = login_as(eve)
    page = as_eve.get(invitation).get_data(as_text=True)
    assert "alice@contoso.com" not in page and "a•••@contoso.com" in page
    assert "signed in as eve@fabrikam.com" in page and "Accept as" not in page
    refused = as_eve.post(invitation)
    assert refused.status_code == 403
    assert "alice@contoso.com" not in refused.get_data(as_text=True)
    assert "a•••@contoso.com" in refused.get_data(as_text=True)

    alice = make.user(make.customer("Tailspin"), email="alice@contoso.com")
    page = login_as(alice).get(invitation).get_data(as_text=True)
    assert "Accept as alice@contoso.com" in page and "•••" not in page


def test_set_password_from_the_invitation_creates_joins_signs_in_and_audits_in_one_commit(client, invitation):
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    page = client.get(invitation).get_data(as_text=True)
    assert "Set a password" in page and 'autocomplete="new-password"' in page
    before = _actions()
    commits = []

    def count(session):
        commits.append(session)

    event.listen(Session, "after_commit", count)
    try:
        response = client.post(invitation, headers={"X-Request-ID": "set-password-1"},
                               data={"display_name": "Alice", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    finally:
        event.remove(Session, "after_commit", count)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert len(commits) == 1
    home = client.get("/", follow_redirects=True)
    assert home.request.path == "/customer/" and "Contoso Group" in home.get_data(as_text=True)
    assert "Welcome! You joined Contoso Group" in home.get_data(as_text=True)
    db.session.rollback()  # a new transaction sees what the requests committed
    user = db.session.scalar(select(User).where(User.email == "alice@contoso.com"))
    assert user.display_name == "Alice"
    assert [(m.org.name, m.role) for m in user.memberships] == [("Contoso Group", "member")]
    from portal.models import AuditEvent

    events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id).offset(len(before))).all()
    assert [(e.action, e.user_id, e.request_id) for e in events] == [
        ("user.create", user.id, "set-password-1"), ("invitation.accept", user.id, "set-password-1"),
        ("session.sign_in", user.id, "set-password-1")]
    # The link is used up; the password signs in from now on.
    assert client.get(invitation).status_code == 410
    client.post("/logout")
    again = client.post("/login", data={"email": "alice@contoso.com", "password": NEW_PASSWORD})
    assert again.status_code == 302


@pytest.mark.parametrize(("password", "confirm", "field", "message"), [
    ("", "", "password", "Choose a password."),
    ("eleven char", "eleven char", "password", "Use at least 12 characters."),
    ("x" * 501, "x" * 501, "password", "Use at most 500 characters."),
    (NEW_PASSWORD, NEW_PASSWORD + "!", "confirm", "The two passwords are not the same."),
])
def test_set_password_says_what_is_wrong_at_the_field(client, invitation, password, confirm, field, message):
    client.get(invitation)
    before = _actions()
    response = _set_password(client, invitation, password, confirm)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'<p class="error" id="{field}-error">{message}</p>' in page
    assert 'aria-invalid="true"' in page
    assert db.session.scalar(select(func.count(User.id)).where(User.email == "alice@contoso.com")) == 0
    assert _actions() == before
    assert client.get("/customer/").status_code == 302  # not signed in
    assert client.get(invitation).status_code == 200  # still usable


def test_set_password_is_never_offered_for_an_account_in_use(client, make, invitation):
    """A link must not set the password of an account someone signs in to: they sign in, then accept."""
    alice = make.user(make.customer("Tailspin"), email="alice@contoso.com", password=PASSWORD)
    page = client.get(invitation).get_data(as_text=True)
    assert "Set a password" not in page and 'id="sign-in-with-password"' in page
    before = _actions()
    response = _set_password(client, invitation)
    assert response.status_code == 409
    assert "has an account already" in response.get_data(as_text=True)
    assert client.get("/customer/").status_code == 302  # not signed in
    db.session.rollback()
    assert alice.password_hash is not None and len(alice.memberships) == 1
    assert _actions() == before
    # The owner signs in and comes back to the invitation, which still works.
    signed_in = client.post("/login", data={"email": "alice@contoso.com", "password": PASSWORD})
    assert signed_in.headers["Location"] == invitation
    assert client.post(invitation).status_code == 302
    db.session.rollback()  # a new transaction sees what the requests committed
    assert sorted(m.org.name for m in alice.memberships) == ["Contoso Group", "Tailspin"]


@pytest.mark.parametrize("app_config", [{"LOCAL_LOGIN_ENABLED": False}])
def test_no_password_from_an_invitation_without_local_sign_in(client, invitation):
    assert "Set a password" not in client.get(invitation).get_data(as_text=True)
    assert _set_password(client, invitation).status_code == 400
    assert db.session.scalar(select(func.count(User.id)).where(User.email == "alice@contoso.com")) == 0


@pytest.mark.parametrize("app_config", [{"WTF_CSRF_ENABLED": True}])
def test_set_password_needs_the_forms_csrf_token(client, invitation):
    import re

    page = client.get(invitation).get_data(as_text=True)
    assert _set_password(client, invitation).status_code == 400  # refused before the view
    assert db.session.scalar(select(func.count(User.id)).where(User.email == "alice@contoso.com")) == 0
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)[1]
    assert _set_password(client, invitation, csrf_token=token).status_code == 302
