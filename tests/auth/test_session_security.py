"""Session lifetime, cookie flags, security headers and sign-in rate limits."""

import hashlib
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


def test_the_cookie_is_sent_again_only_when_the_session_changed(client, alice, app):
    client.post("/login", data={"email": "alice@contoso.com", "password": PASSWORD})
    assert client.get("/customer/").status_code == 200
    # Within a minute of the last-seen time nothing changed: no new cookie to sign and send.
    assert "Set-Cookie" not in client.get("/customer/").headers
    # A minute on, the request moves the last-seen time on: a new cookie carries it.
    _age_session(client, seen_at=timedelta(seconds=61))
    with client.session_transaction() as session:
        before = session["seen_at"]
    response = client.get("/customer/")
    assert response.status_code == 200 and "Set-Cookie" in response.headers
    with client.session_transaction() as session:
        assert session["seen_at"] > before + 60


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
    config = {"RATELIMIT_ENABLED": True, "LOGIN_FAILURE_LIMIT": "10 per minute",
              "LOGIN_ACCOUNT_FAILURE_LIMIT": "50 per hour"}
    if request.param == "memory":
        yield config
        return
    store = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, decode_responses=True)
    try:
        store.ping()
    except redis.ConnectionError:
        if __import__("os").environ.get("PORTAL_REQUIRE_POSTGRES"):
            raise
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    # A key prefix of this test's own, so runs never see each other's counters.
    prefix = f"test-{uuid.uuid4().hex}"
    yield config | {"RATELIMIT_STORAGE_URI": REDIS_URL, "RATELIMIT_KEY_PREFIX": prefix}
    for key in store.scan_iter(match=f"*{prefix}*"):
        store.delete(key)
    store.close()


@pytest.fixture
def counters(app):
    """``counters()``: the rate-limit counters as the store holds them, ``{key: count}``.

    With Redis it reads Redis itself (so a Redis test proves Redis was used); with memory it
    checks that the limiter counts in this process's memory.
    """
    from limits.storage import MemoryStorage, RedisStorage

    from portal.extensions import limiter

    prefix = app.config["RATELIMIT_KEY_PREFIX"]
    if app.config["RATELIMIT_STORAGE_URI"].startswith("redis://"):
        assert isinstance(limiter.storage, RedisStorage)
        store = redis.Redis.from_url(REDIS_URL, decode_responses=True)

        def _read():
            return {key.split(":", 1)[1].replace(f"LIMITER/{prefix}/", ""): int(store.get(key))
                    for key in store.scan_iter(match=f"LIMITS:LIMITER/{prefix}/*")}
    else:
        assert isinstance(limiter.storage, MemoryStorage)

        def _read():
            return {key.replace(f"LIMITER/{prefix}/", ""): count
                    for key, count in limiter.storage.storage.items() if count}
    return _read


ALICE = hashlib.sha256(b"alice@contoso.com").hexdigest()[:32]


def _sign_in(client, password, email="alice@contoso.com", addr="127.0.0.1"):
    return client.post("/login", data={"email": email, "password": password}, environ_base={"REMOTE_ADDR": addr})


def _retry_after(response) -> int:
    """The 429's Retry-After, checked against what the page says."""
    assert response.status_code == 429
    seconds = int(response.headers["Retry-After"])
    wait = f"{seconds} seconds" if seconds < 120 else f"{-(-seconds // 60)} minutes"
    assert f"Too many attempts. Try again in {wait}." in response.get_data(as_text=True)
    return seconds


def test_eleventh_failed_sign_in_from_one_address_gets_429(client, alice, counters):
    for attempt in range(10):
        response = _sign_in(client, "nope", email=f"guess{attempt}@contoso.com")
        assert response.status_code == 401, attempt
    blocked = _sign_in(client, PASSWORD)
    assert 0 < _retry_after(blocked) <= 60
    assert counters()["127.0.0.1/auth.login/10/1/minute"] == 10  # a refused attempt is not a failure
    # Another address is not affected.
    assert _sign_in(client, PASSWORD, addr="127.0.0.2").status_code == 302


def test_an_attacker_cannot_lock_alice_out(client, alice, counters):
    for attempt in range(15):
        response = _sign_in(client, "nope", addr="10.0.0.66")
        assert response.status_code == (401 if attempt < 10 else 429), attempt
    # Alice, elsewhere, signs in at once; the attacker's address waits.
    assert _sign_in(client, PASSWORD, addr="10.0.0.7").status_code == 302
    assert 0 < _retry_after(_sign_in(client, PASSWORD, addr="10.0.0.66")) <= 60
    assert counters() == {
        "10.0.0.66/auth.login/10/1/minute": 10,
        f"login-account/{ALICE}/50/1/hour": 10,
        f"login-account-address/{ALICE}/10.0.0.66/50/1/hour": 10,
    }


def test_the_account_limit_applies_across_addresses(app, client, alice, counters):
    app.config["LOGIN_ACCOUNT_FAILURE_LIMIT"] = "20 per hour"
    for attacker in ("10.0.0.1", "10.0.0.2"):
        for _ in range(10):
            assert _sign_in(client, "nope", addr=attacker).status_code == 401
    # The budget is spent: a new address may still try, but once it has failed it waits too,
    # even with the right password (else the limit would not slow the guessing).
    assert _sign_in(client, "nope", addr="10.0.0.3").status_code == 401
    assert 60 < _retry_after(_sign_in(client, PASSWORD, addr="10.0.0.3")) <= 3600
    assert counters()[f"login-account/{ALICE}/20/1/hour"] == 21
    # The real Alice, from an address that has not failed, is not locked out.
    assert _sign_in(client, PASSWORD, addr="10.0.0.4").status_code == 302
    # Other accounts are not limited by Alice's.
    assert _sign_in(client, PASSWORD, email="bob@bluesky.com", addr="10.0.0.3").status_code == 302


def test_successful_sign_ins_do_not_count(client, alice, counters):
    for _ in range(12):
        assert _sign_in(client, PASSWORD).status_code == 302
        client.post("/logout")
    assert counters() == {}


def test_failed_provider_callbacks_are_limited_with_retry_after(client, counters):
    for _ in range(10):
        assert client.get("/login/oidc/nobody/callback?code=x&state=y").status_code == 404
    assert 0 < _retry_after(client.get("/login/oidc/nobody/callback?code=x&state=y")) <= 60
    assert counters() == {"127.0.0.1/auth.oidc_callback/10/1/minute": 10}


def test_an_ipv6_client_is_counted_by_its_64(client, alice, counters):
    for host in range(1, 11):
        assert _sign_in(client, "nope", addr=f"2001:db8:1:2::{host:x}").status_code == 401
    assert _retry_after(_sign_in(client, PASSWORD, addr="2001:db8:1:2:ffff::1")) <= 60
    assert _sign_in(client, PASSWORD, addr="2001:db8:1:3::1").status_code == 302  # another network
    assert counters()["2001:db8:1:2::/64/auth.login/10/1/minute"] == 10
