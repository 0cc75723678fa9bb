"""Session lifetime, cookie flags, security headers and sign-in rate limits."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis

from tests.factories import PASSWORD

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def alice(make):
    customer = make.customer("Contoso")
    reseller = make.partner("reseller", "BlueSky")
    make.entitlement(customer, [reseller])
    return {"user": make.user(customer, "admin", email="alice@contoso.com", password=PASSWORD),
            "partner": make.user(reseller, "admin", email="bob@bluesky.com", password=PASSWORD)}


def _age_session(client, **ages):
    now = datetime.now(UTC).timestamp()
    with client.session_transaction() as session:
        for key, age in ages.items():
            session[key] = now - age.total_seconds()


def test_idle_timeout_ends_the_session(client, alice, app):
    client.post("/login", data={"email": "alice@contoso.com", "password": PASSWORD})
    assert client.get("/customer/").status_code == 200
    _age_session(client, seen_at=app.config["SESSION_IDLE_TIMEOUT"] + timedelta(seconds=5))
    assert client.get("/customer/").headers["Location"].startswith("/login")


def test_absolute_lifetime_ends_an_active_session(client, alice, app):
    client.post("/login", data={"email": "alice@contoso.com", "password": PASSWORD})
    _age_session(client, login_at=app.config["PERMANENT_SESSION_LIFETIME"] + timedelta(seconds=5),
                 seen_at=timedelta(seconds=1))
    assert client.get("/customer/").status_code == 302


def test_activity_keeps_the_session_alive(client, alice, app):
    client.post("/login", data={"email": "alice@contoso.com", "password": PASSWORD})
    _age_session(client, seen_at=app.config["SESSION_IDLE_TIMEOUT"] - timedelta(minutes=1))
    assert client.get("/customer/").status_code == 200
    assert client.get("/customer/").status_code == 200


def test_a_new_session_at_sign_in(client, alice):
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    client.post("/login", data={"email": "alice@contoso.com", "password": PASSWORD})
    with client.session_transaction() as session:
        assert "planted" not in session


def _assert_security_headers(response, https=False):
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    if https:
        assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    else:
        assert "Strict-Transport-Security" not in response.headers


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_headers_on_a_page_a_fragment_and_an_error(make, database_url, signing_key_dir, alice, https):
    from tests.conftest import IsolatedClient, make_test_app

    base = "https://portal.example" if https else "http://127.0.0.1:5000"
    app = make_test_app(database_url, signing_key_dir, BASE_URL=base)
    app.test_client_class = IsolatedClient
    try:
        client = app.test_client()
        url_scheme = "https" if https else "http"
        signed = client.post("/login", data={"email": "bob@bluesky.com", "password": PASSWORD},
                             base_url=f"{url_scheme}://localhost")
        cookie = signed.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
        if https:
            assert cookie.startswith("__Host-portal_session=") and "Secure" in cookie and "Domain" not in cookie
        else:
            assert cookie.startswith("portal_session=") and "Secure" not in cookie
        kwargs = {"base_url": f"{url_scheme}://localhost"}
        page = client.get("/partner/", **kwargs)
        fragment = client.get("/partner/customers", headers={"HX-Request": "true"}, **kwargs)
        error = client.get("/partner/no-such-page", **kwargs)
        htmx_error = client.get("/partner/no-such-page", headers={"HX-Request": "true"}, **kwargs)
        assert (page.status_code, fragment.status_code, error.status_code, htmx_error.status_code) == (
            200, 200, 404, 404)
        assert "<html" not in fragment.get_data(as_text=True)
        assert "<html" not in htmx_error.get_data(as_text=True)
        for response in (page, fragment, error, htmx_error, client.get("/login", **kwargs)):
            _assert_security_headers(response, https=https)
    finally:
        from portal.extensions import db

        with app.app_context():
            db.engine.dispose()


@pytest.fixture(params=["memory", "redis"])
def app_config(request):
    config = {"RATELIMIT_ENABLED": True, "LOGIN_FAILURE_LIMIT": "10 per minute"}
    if request.param == "redis":
        try:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        except redis.ConnectionError:
            if __import__("os").environ.get("PORTAL_REQUIRE_POSTGRES"):
                raise
            pytest.skip("Redis is not reachable on 127.0.0.1:6379")
        # A key prefix of this test's own, so runs never see each other's counters.
        config |= {"RATELIMIT_STORAGE_URI": REDIS_URL, "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    return config


def test_eleventh_failed_sign_in_from_one_address_gets_429(client, alice, app_config):
    for attempt in range(10):
        response = client.post("/login", data={"email": f"guess{attempt}@contoso.com", "password": "nope"})
        assert response.status_code == 401, attempt
    blocked = client.post("/login", data={"email": "alice@contoso.com", "password": PASSWORD})
    assert blocked.status_code == 429
    assert "Too many attempts" in blocked.get_data(as_text=True)
    # Another address is not affected.
    other = client.post("/login", data={"email": "alice@contoso.com", "password": PASSWORD},
                        environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert other.status_code == 302


def test_failures_against_one_account_are_limited_across_addresses(client, alice, app_config):
    for attempt in range(10):
        response = client.post("/login", data={"email": "alice@contoso.com", "password": "nope"},
                               environ_base={"REMOTE_ADDR": f"10.0.0.{attempt + 1}"})
        assert response.status_code == 401
    blocked = client.post("/login", data={"email": "alice@contoso.com", "password": PASSWORD},
                          environ_base={"REMOTE_ADDR": "10.0.1.1"})
    assert blocked.status_code == 429


def test_successful_sign_ins_do_not_count(client, alice, app_config):
    for _ in range(12):
        assert client.post("/login", data={"email": "alice@contoso.com", "password": PASSWORD}).status_code == 302
        client.post("/logout")
