"""Local sign-in, sessions that the server can end, the organization switcher."""

import pytest

from portal.extensions import db
from portal.services.accounts import set_user_active
from portal.services.orgs import remove_member
from tests.factories import PASSWORD


@pytest.fixture
def people(make):
    customer = make.customer("Contoso")
    reseller = make.partner("reseller", "BlueSky")
    alice = make.user(customer, "admin", email="alice@contoso.com", password=PASSWORD)
    return {"customer": customer, "reseller": reseller, "alice": alice}


def sign_in(client, email, password=PASSWORD, **extra):
    return client.post("/login", data={"email": email, "password": password, **extra})


def test_sign_in_lands_on_the_role_shell(client, people):
    response = sign_in(client, "Alice@Contoso.com")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    home = client.get("/", follow_redirects=True)
    assert home.request.path == "/customer/"
    assert b"Contoso" in home.data


@pytest.mark.parametrize("email", ["alice@contoso.com", "nobody@contoso.com"])
def test_failures_say_the_same_thing(client, people, email):
    response = sign_in(client, email, password="wrong password!")
    assert response.status_code == 401
    assert b"Email or password is not right." in response.data
    assert client.get("/customer/").status_code == 302  # still signed out


def test_invalid_email_gets_a_message_next_to_the_field(client, people):
    response = sign_in(client, "not-an-email")
    assert response.status_code == 401
    assert b'aria-invalid="true"' in response.data


@pytest.mark.parametrize("app_config", [{"LOCAL_LOGIN_ENABLED": False}])
def test_local_login_can_be_switched_off(client, people):
    page = client.get("/login")
    assert page.status_code == 200 and b'name="password"' not in page.data
    response = client.post("/login", data={"email": "alice@contoso.com", "password": PASSWORD})
    assert response.status_code == 404


def test_logout_makes_the_old_cookie_worthless(client, people):
    sign_in(client, "alice@contoso.com")
    old_cookie = client.get_cookie("portal_session").value
    assert client.get("/customer/").status_code == 200
    assert client.post("/logout").status_code == 302
    replay = client.__class__(client.application)
    replay.set_cookie("portal_session", old_cookie)
    response = replay.get("/customer/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_disabling_a_user_ends_its_open_session(client, people, make):
    sign_in(client, "alice@contoso.com")
    assert client.get("/customer/").status_code == 200
    set_user_active(make.system, people["alice"], False)
    db.session.commit()
    assert client.get("/customer/").status_code == 302


def test_removing_the_membership_ends_the_session(client, people, make):
    sign_in(client, "alice@contoso.com")
    assert client.get("/customer/").status_code == 200
    remove_member(make.system, people["alice"].memberships[0])
    db.session.commit()
    assert client.get("/customer/").status_code == 302


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "evil.example"]
)
def test_next_never_leaves_the_site(client, people, target):
    response = sign_in(client, "alice@contoso.com", next=target)
    assert response.headers["Location"] == "/"


def test_next_to_our_own_path_is_kept(client, people):
    response = sign_in(client, "alice@contoso.com", next="/customer/?tab=1")
    assert response.headers["Location"] == "/customer/?tab=1"


def test_organization_switcher(client, people, make):
    alice = people["alice"]
    from portal.models import Membership

    db.session.add(Membership(user=alice, org=people["reseller"], role="member"))
    db.session.commit()
    sign_in(client, "alice@contoso.com")
    assert b'id="org-switcher"' in client.get("/customer/").data
    response = client.post("/switch-org", data={"org_id": people["reseller"].id})
    assert response.headers["Location"] == "/partner/"
    assert client.get("/partner/").status_code == 200
    assert client.get("/customer/").status_code == 404  # the other area is not this session's now
    stranger = make.customer("Fabrikam")
    assert client.post("/switch-org", data={"org_id": stranger.id}).status_code == 404


def test_signed_in_without_membership_sees_nothing(client, make):
    from portal.services.accounts import create_user

    create_user("loner@example.com", "Loner", password=PASSWORD)
    db.session.commit()
    sign_in(client, "loner@example.com")
    assert client.get("/", follow_redirects=True).request.path == "/no-access"
    for path in ("/customer/", "/partner/", "/producer/"):
        assert client.get(path).headers["Location"] == "/no-access"


def test_htmx_request_without_session_gets_hx_redirect(client):
    response = client.get("/customer/", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")


def test_security_headers_on_pages_and_errors(client, people):
    for response in (client.get("/login"), client.get("/nothing-here")):
        csp = response.headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
    assert client.get("/nothing-here").status_code == 404


def test_session_cookie_flags(client, people):
    response = sign_in(client, "alice@contoso.com")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_sign_in_and_out_are_audited(client, people):
    from sqlalchemy import select

    from portal.models import AuditEvent

    sign_in(client, "nobody@contoso.com", password="wrong password!")
    sign_in(client, "alice@contoso.com")
    client.post("/logout")
    events = db.session.execute(
        select(AuditEvent.action, AuditEvent.user_id, AuditEvent.details, AuditEvent.client_addr)
        .where(AuditEvent.action.startswith("session.")).order_by(AuditEvent.id)
    ).all()
    alice = people["alice"].id
    assert [(e.action, e.user_id) for e in events] == [
        ("session.sign_in_failed", None), ("session.sign_in", alice), ("session.sign_out", alice)]
    assert events[0].details == {"method": "local", "email": "nobody@contoso.com"}
    assert all(e.client_addr == "127.0.0.1" for e in events)
