"""Headers the error pages keep, and cookies a cacheable response never carries (issue 6, item 20)."""

from __future__ import annotations

import pytest
from werkzeug.exceptions import ServiceUnavailable

from tests.factories import PASSWORD


@pytest.fixture
def ann(make):
    return make.user(make.customer("Contoso"), "admin", email="ann@contoso.com", password=PASSWORD)


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "fragment"])
def test_405_says_which_methods_are_allowed(client, htmx):
    headers = {"HX-Request": "true"} if htmx else {}
    response = client.get("/logout", headers=headers)
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    assert response.mimetype == "text/html"
    assert ("<html" in response.get_data(as_text=True)) is not htmx
    response = client.put("/login", headers=headers)
    assert response.status_code == 405
    assert {"GET", "POST"} <= set(response.headers["Allow"].split(", "))


def test_retry_after_of_an_http_error_is_kept(app, client):
    @app.get("/test-busy")
    def busy():
        raise ServiceUnavailable(retry_after=120)

    response = client.get("/test-busy")
    assert response.status_code == 503 and response.headers["Retry-After"] == "120"
    assert response.mimetype == "text/html" and "Service Unavailable" in response.get_data(as_text=True)


def _age_seen_at(client, seconds=120):
    """Make the session's last-seen time old enough for the next request to move it on."""
    with client.session_transaction() as session:
        session["seen_at"] -= seconds


def test_a_public_response_never_sets_a_cookie(client, ann):
    # A real sign-in: a permanent session, whose last-seen time a request a minute later moves on.
    assert client.post("/login", data={"email": "ann@contoso.com", "password": PASSWORD}).status_code == 302
    _age_seen_at(client)
    refreshed = client.get("/customer/")
    assert refreshed.status_code == 200 and "Set-Cookie" in refreshed.headers

    _age_seen_at(client)
    jwks = client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200 and jwks.json["keys"]
    assert jwks.cache_control.public
    assert "Set-Cookie" not in jwks.headers
    assert "Cookie" not in jwks.vary  # nothing in it depends on who asked
    # The session is as it was: still signed in.
    assert client.get("/customer/").status_code == 200


def test_a_public_static_file_never_sets_a_cookie(app, client, ann):
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = 3600  # what a deployment sets for cacheable assets
    client.post("/login", data={"email": "ann@contoso.com", "password": PASSWORD})
    response = client.get("/static/portal.css")
    response.close()
    assert response.status_code == 200 and response.cache_control.public
    assert "Set-Cookie" not in response.headers
