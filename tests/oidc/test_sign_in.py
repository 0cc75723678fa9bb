"""OIDC sign-in against two REAL providers (npm oidc-provider on 127.0.0.1): no mocks.

The Flask test client drives the portal; a ``requests`` session plays the browser at the
provider (``login_round_trip(..., stop_at_callback=True)`` returns the provider's redirect
to our callback, which the test then delivers, unchanged or altered).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
from sqlalchemy import func, select

from portal import oidc
from portal.extensions import db
from portal.models import AuditEvent, Identity, Membership, PortalRequest, User, utcnow
from portal.policy import Actor
from portal.services.accounts import invite_user, set_user_active
from portal.services.requests import decide_request
from tests.factories import PASSWORD
from tests.oidc.provider import OTHER_CLIENT_ID, OTHER_CLIENT_SECRET, authorize_code, login_round_trip


@pytest.fixture
def app_config(oidc_providers):
    return {"OIDC_PROVIDERS": {name: p.portal_config(name, display_name=f"{name.title()} SSO")
                               for name, p in oidc_providers.items()}}


def start(client, name: str = "alpha", **params) -> str:
    """Begin sign-in at the portal; returns the provider's authorization URL."""
    response = client.get(f"/login/oidc/{name}", query_string=params)
    assert response.status_code == 302
    return response.headers["Location"]


def at_provider(authorize_url: str, login: str = "alice") -> str:
    """Sign in at the provider (a browser of its own); returns our callback URL with code/state/iss."""
    response = login_round_trip(requests.Session(), authorize_url, login=login, stop_at_callback=True)
    location = response.headers["Location"]
    assert "/callback?" in location and "code=" in location
    return location


def with_params(url: str, **changes) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


def sign_in(client, name: str = "alpha", login: str = "alice"):
    return client.get(at_provider(start(client, name), login))


def test_round_trip_with_a_plain_http_client(live_server, oidc_providers):
    session = requests.Session()
    landed = login_round_trip(session, f"{live_server}/login/oidc/alpha", login="dora")
    assert landed.status_code == 200
    assert landed.url == f"{live_server}/no-access"  # known to nobody yet: may only ask to join
    assert "Request access" in landed.text and "dora@example.com" in landed.text
    identity = db.session.scalar(select(Identity))
    assert (identity.issuer, identity.subject) == (oidc_providers["alpha"].issuer, "dora")
    assert identity.user.email == "dora@example.com"
    assert session.get(f"{live_server}/customer/", allow_redirects=False).headers["Location"] == "/no-access"


def test_known_identity_signs_in_and_lands_on_its_portal(client, make, oidc_providers):
    customer = make.customer("Contoso")
    user = make.user(customer, "admin", email="erin@contoso.com")
    make.identity(user, oidc_providers["beta"].issuer, "erin")
    response = sign_in(client, "beta", "erin")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/customer/").status_code == 200
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "session.sign_in"))
    assert event.user_id == user.id and event.details == {"method": "oidc:beta"}


def test_same_subject_at_another_issuer_is_someone_else(client, make, oidc_providers):
    customer = make.customer("Contoso")
    user = make.user(customer, "admin", email="erin@contoso.com")
    make.identity(user, oidc_providers["beta"].issuer, "erin")
    sign_in(client, "alpha", "erin")  # alpha's "erin" is not beta's "erin"
    assert client.get("/customer/").headers["Location"] == "/no-access"


def test_next_is_kept_through_the_provider(client, make, oidc_providers):
    customer = make.customer("Contoso")
    user = make.user(customer, "admin")
    make.identity(user, oidc_providers["alpha"].issuer, "frank")
    response = client.get(at_provider(start(client, "alpha", next="/customer/?x=1"), "frank"))
    assert response.headers["Location"] == "/customer/?x=1"
    evil = client.get(at_provider(start(client, "alpha", next="https://evil.example/"), "frank"))
    assert evil.headers["Location"] == "/"


# --- what is refused ----------------------------------------------------------------------


def test_replayed_callback_is_refused(client, oidc_providers):
    callback = at_provider(start(client))
    assert client.get(callback).status_code == 302
    signed_in_users = db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "session.sign_in"))
    replay = client.get(callback)
    assert replay.status_code == 400
    other_browser = client.__class__(client.application)
    assert other_browser.get(callback).status_code == 400
    db.session.rollback()
    assert db.session.scalar(
        select(func.count(AuditEvent.id)).where(AuditEvent.action == "session.sign_in")) == signed_in_users == 1


def test_wrong_state_is_refused(client, oidc_providers):
    callback = at_provider(start(client))
    response = client.get(with_params(callback, state=secrets.token_urlsafe(20)))
    assert response.status_code == 400
    assert db.session.scalar(select(func.count(Identity.id))) == 0


def test_wrong_nonce_is_refused(client, oidc_providers):
    authorize_url = start(client)
    assert "nonce=" in authorize_url
    tampered = with_params(authorize_url, nonce="not-the-nonce-we-sent")
    response = client.get(at_provider(tampered))
    assert response.status_code == 400
    assert "did not check out" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count(Identity.id))) == 0


def test_id_token_for_another_audience_is_refused(app, oidc_providers):
    alpha = oidc_providers["alpha"]
    nonce = secrets.token_urlsafe(16)
    mine = authorize_code(alpha, "portal", "portal-secret", "http://localhost/login/oidc/alpha/callback", nonce)
    theirs = authorize_code(alpha, OTHER_CLIENT_ID, OTHER_CLIENT_SECRET,
                            "http://localhost/login/oidc/alpha/callback", nonce)
    with app.test_request_context():
        assert oidc.verify_id_token("alpha", mine, nonce)["aud"] == "portal"
        with pytest.raises(oidc.SignInError):
            oidc.verify_id_token("alpha", theirs, nonce)
        with pytest.raises(oidc.SignInError):  # and our own token with another nonce
            oidc.verify_id_token("alpha", mine, "another-nonce")


def test_our_claim_checks_refuse_foreign_audience_and_issuer():
    claims = {"iss": "https://op.example", "aud": "portal", "sub": "x", "exp": 4102444800, "nonce": "n"}
    oidc.check_claims(claims, issuer="https://op.example", client_id="portal", nonce="n")
    for bad in ({"aud": "other-app"}, {"aud": ["portal", "other-app"]}, {"iss": "https://op.example/"},
                {"exp": 1}, {"nonce": "m"}, {"sub": ""}):
        with pytest.raises(oidc.SignInError):
            oidc.check_claims(claims | bad, issuer="https://op.example", client_id="portal", nonce="n")


def test_callback_naming_the_other_provider_is_refused(client, oidc_providers):
    callback = at_provider(start(client, "alpha"))
    assert parse_qs(urlsplit(callback).query)["iss"] == [oidc_providers["alpha"].issuer]
    response = client.get(with_params(callback, iss=oidc_providers["beta"].issuer))
    assert response.status_code == 400
    assert "another identity provider" in response.get_data(as_text=True)


def test_code_from_one_provider_delivered_to_the_others_callback_is_refused(client, oidc_providers):
    callback = at_provider(start(client, "beta"))
    mixed_up = callback.replace("/login/oidc/beta/callback", "/login/oidc/alpha/callback")
    assert client.get(mixed_up).status_code == 400
    assert db.session.scalar(select(func.count(Identity.id))) == 0


def test_unknown_provider_is_404(client, oidc_providers):
    assert client.get("/login/oidc/gamma").status_code == 404
    assert client.get("/login/oidc/gamma/callback?code=x&state=y").status_code == 404


# --- joining --------------------------------------------------------------------------------


def test_unknown_identity_requests_access_and_gets_it_once_approved(client, make, oidc_providers):
    customer = make.customer("Contoso Group")
    make.entitlement(customer)
    admin = make.actor(customer, "admin")
    sign_in(client, "alpha", "gina")
    page = client.get("/", follow_redirects=True)
    assert page.request.path == "/no-access"
    for path in ("/customer/", "/partner/", "/producer/"):
        assert client.get(path).headers["Location"] == "/no-access"
    asked = client.post("/no-access", data={"organization": "contoso group", "message": "I design toys"})
    assert asked.status_code == 302
    assert "Waiting for a decision" in client.get("/no-access").get_data(as_text=True)
    req = db.session.scalar(select(PortalRequest))
    assert (req.kind, req.target_org_id, req.message) == ("join_org", customer.id, "I design toys")
    decide_request(admin, req, approve=True)
    db.session.commit()
    home = client.get("/", follow_redirects=True)
    assert home.request.path == "/customer/"
    assert "Contoso Group" in home.get_data(as_text=True)


def test_request_for_an_unknown_organization_goes_to_producer_staff(client, make, oidc_providers):
    make.producer()
    sign_in(client, "alpha", "hank")
    response = client.post("/no-access", data={"organization": "Globex Corp"})
    assert response.status_code == 302
    req = db.session.scalar(select(PortalRequest))
    assert req.target_org_id is None and req.details == {"organization_name": "Globex Corp"}
    staff = make.actor(make.producer())
    from portal.policy import decidable_requests

    assert db.session.scalars(decidable_requests(staff)).all() == [req]


def test_request_access_form_errors_are_shown_at_the_field(client, oidc_providers):
    sign_in(client, "alpha", "ivy")
    response = client.post("/no-access", data={"organization": ""})
    assert response.status_code == 422
    assert 'id="organization-error"' in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count(PortalRequest.id))) == 0


def test_invitation_binds_the_first_identity_and_works_once(client, app, make, oidc_providers):
    customer = make.customer("Contoso")
    _, token = invite_user(make.system, customer, "jane@contoso.com", "member")
    db.session.commit()
    page = client.get(f"/invitations/{token}")
    assert page.status_code == 200 and "Join Contoso" in page.get_data(as_text=True)
    # Jane's company account is "jsmith" at alpha: the link binds it to the invited user.
    assert sign_in(client, "alpha", "jsmith").headers["Location"] == "/"
    assert client.get("/customer/").status_code == 200
    jane = db.session.scalar(select(User).where(User.email == "jane@contoso.com"))
    assert [(i.issuer, i.subject) for i in jane.identities] == [(oidc_providers["alpha"].issuer, "jsmith")]
    assert db.session.scalar(select(Membership.role).where(Membership.user_id == jane.id)) == "member"
    # A second visitor with the same link gets nothing.
    stranger = app.test_client()
    assert stranger.get(f"/invitations/{token}").status_code == 410
    sign_in(stranger, "alpha", "mallory")
    assert stranger.get("/customer/").headers["Location"] == "/no-access"


def test_expired_invitation_is_refused(client, make, oidc_providers):
    customer = make.customer("Contoso")
    invitation, token = invite_user(make.system, customer, "late@contoso.com", "member")
    invitation.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert client.get(f"/invitations/{token}").status_code == 410
    sign_in(client, "alpha", "late")
    assert client.get("/customer/").headers["Location"] == "/no-access"


def test_matching_email_is_linked_only_after_re_authentication(client, make, oidc_providers):
    customer = make.customer("Contoso")
    kim = make.user(customer, "admin", email="kim@example.com", password=PASSWORD)
    response = sign_in(client, "alpha", "kim")  # the provider says kim@example.com, verified
    assert response.status_code == 200
    assert "Is this you?" in response.get_data(as_text=True)
    assert client.get("/customer/").status_code == 302  # not signed in by the email match
    assert db.session.scalar(select(func.count(Identity.id))) == 0
    client.post("/login", data={"email": "kim@example.com", "password": PASSWORD})
    assert client.get("/customer/").status_code == 200
    db.session.rollback()  # end the test's read transaction: see what the requests committed
    assert [(i.subject, i.issuer) for i in db.session.get(User, kim.id).identities] == [
        ("kim", oidc_providers["alpha"].issuer)]
    # From now on the identity signs in by itself.
    fresh = client.__class__(client.application)
    assert sign_in(fresh, "alpha", "kim").headers["Location"] == "/"


# --- sessions -------------------------------------------------------------------------------


def test_logout_goes_to_the_provider_and_the_old_cookie_is_refused(client, make, oidc_providers):
    customer = make.customer("Contoso")
    user = make.user(customer, "admin")
    make.identity(user, oidc_providers["alpha"].issuer, "lee")
    sign_in(client, "alpha", "lee")
    old_cookie = client.get_cookie("portal_session").value
    response = client.post("/logout")
    end_session = oidc_providers["alpha"].metadata["end_session_endpoint"]
    assert response.headers["Location"].startswith(end_session + "?")
    params = parse_qs(urlsplit(response.headers["Location"]).query)
    assert params["post_logout_redirect_uri"] == ["http://localhost/login"]
    assert params["client_id"] == ["portal"] and params["id_token_hint"][0].count(".") == 2
    replay = client.__class__(client.application)
    replay.set_cookie("portal_session", old_cookie)
    assert replay.get("/customer/").headers["Location"].startswith("/login")


def test_disabled_users_open_session_is_refused(client, make, oidc_providers):
    customer = make.customer("Contoso")
    user = make.user(customer, "admin")
    make.identity(user, oidc_providers["alpha"].issuer, "max")
    sign_in(client, "alpha", "max")
    assert client.get("/customer/").status_code == 200
    set_user_active(Actor(user=None, org=make.producer(), role="admin"), user, False)
    db.session.commit()
    assert client.get("/customer/").status_code == 302
    again = sign_in(client, "alpha", "max")
    assert again.status_code == 403 and "disabled" in again.get_data(as_text=True)


def test_abandoned_flows_do_not_grow_the_session(client, oidc_providers):
    for _ in range(5):
        start(client, "alpha")
    start(client, "beta")
    with client.session_transaction() as session:
        states = [key for key in session if key.startswith("_state_")]
    assert len(states) == 1 and states[0].startswith("_state_beta_")
