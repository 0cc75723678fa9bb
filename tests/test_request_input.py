"""What the portal accepts from a request: its id, text without control characters, form
bodies only, and bodies of a bounded size (issue 6, items 14 to 17).

``tests/test_hostile_input.py`` sends all of this to every route; these tests pin the exact
answers, and what ends up (or does not) in the database.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from flask import Blueprint, request
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

import portal
from portal.blueprints.auth.forms import LocalLoginForm, SwitchOrgForm
from portal.extensions import db
from portal.forms import PortalForm, has_control_characters
from portal.models import AuditEvent, PortalRequest, User
from portal.services.accounts import create_user
from portal.web import accepts_upload
from tests.factories import PASSWORD

MB = 1024 * 1024
CONTROL_MESSAGE = "Remove control characters from this field."


@pytest.fixture
def ann(make):
    return make.user(make.customer("Contoso"), "admin", email="ann@contoso.com", password=PASSWORD)


@pytest.fixture
def lonely(login_as):
    user = create_user("lonely@example.com", "No Membership Yet")
    db.session.commit()
    return login_as(user)


@pytest.fixture
def partner(login_as, make):
    reseller = make.partner("reseller", "BlueSky")
    make.entitlement(make.customer("Contoso Group"), [reseller])
    return login_as(make.user(reseller))


def _events(action: str) -> list[AuditEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def _join_requests() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count(PortalRequest.id)))


# --- 14. the request id -----------------------------------------------------------------------


@pytest.mark.parametrize("given", ["r" * 65, "a b", "x\x01y", "caf\u00e9", ""], ids=["65-chars", "space", "control",
                                                                               "latin-1", "empty"])
def test_a_failed_sign_in_is_audited_whatever_the_request_id(client, ann, given):
    response = client.post("/login", data={"email": "ann@contoso.com", "password": "wrong password"},
                           headers={"X-Request-ID": given})
    assert response.status_code == 401
    [event] = _events("session.sign_in_failed")
    assert re.fullmatch(r"[0-9a-f]{32}", event.request_id)  # one of ours, not the client's
    assert response.headers["X-Request-ID"] == event.request_id


def test_sign_out_works_with_an_overlong_request_id(login_as, ann):
    client = login_as(ann)
    version = ann.session_version
    response = client.post("/logout", headers={"X-Request-ID": "r" * 200})
    assert response.status_code == 302
    [event] = _events("session.sign_out")
    assert len(event.request_id) == 32
    assert db.session.get(User, ann.id).session_version == version + 1
    assert client.get("/customer/").status_code == 302  # signed out


def test_a_short_printable_request_id_is_kept_and_echoed(client, ann):
    given = "lb-7f3a:req/42_" + "x" * 49  # 64 characters
    response = client.post("/login", data={"email": "ann@contoso.com", "password": "wrong password"},
                           headers={"X-Request-ID": given})
    [event] = _events("session.sign_in_failed")
    assert event.request_id == given
    assert response.headers["X-Request-ID"] == given


def test_every_response_names_its_request_id(client):
    first, second = client.get("/login"), client.get("/no-such-page")
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["X-Request-ID"])
    assert second.status_code == 404 and first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


# --- 15. control characters -------------------------------------------------------------------


@pytest.mark.parametrize("q", ["Con\x00toso", "Con\x1btoso", "Con\ttoso", "Con\x85toso"])
def test_control_characters_in_the_customer_search_are_a_400_with_a_message(partner, q):
    response = partner.get("/partner/customers", query_string={"q": q})
    assert response.status_code == 400
    assert "The search contains characters that are not allowed." in response.get_data(as_text=True)
    fragment = partner.get("/partner/customers", query_string={"q": q}, headers={"HX-Request": "true"})
    assert fragment.status_code == 400 and "<html" not in fragment.get_data(as_text=True)


def test_the_customer_search_still_finds_by_name(partner):
    response = partner.get("/partner/customers", query_string={"q": "  contoso  "})
    assert response.status_code == 200 and "Contoso Group" in response.get_data(as_text=True)
    assert partner.get("/partner/customers", query_string={"q": "contoso", "page": "-5"}).status_code == 400


@pytest.mark.parametrize(("field", "value"), [
    ("organization", "Con\x00toso"), ("organization", "Con\ttoso"), ("organization", "Contoso\n"),
    ("message", "Hello\x00"), ("message", "Hello\x7f"), ("message", "Hello\x0b"),
])
def test_control_characters_in_the_join_form_get_a_message_next_to_the_field(lonely, field, value):
    form = {"organization": "Contoso Group", "message": "Hi"} | {field: value}
    response = lonely.post("/no-access", data=form)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert page.count(CONTROL_MESSAGE) == 1
    assert re.search(rf'<textarea[^>]*name="{field}"|<input[^>]*name="{field}"', page)
    assert _join_requests() == 0  # nothing written


def test_a_message_may_hold_lines_and_tabs(lonely):
    response = lonely.post("/no-access", data={"organization": "Contoso Group", "message": "Hello,\r\n\tplease"})
    assert response.status_code == 302
    db.session.rollback()
    assert db.session.scalar(select(PortalRequest.message)) == "Hello,\r\n\tplease"


def test_control_characters_in_the_sign_in_form(client, ann):
    response = client.post("/login", data={"email": "ann@contoso.com\x00", "password": PASSWORD})
    assert response.status_code == 401
    assert CONTROL_MESSAGE in response.get_data(as_text=True)
    assert client.get("/customer/").status_code == 302
    response = client.post("/login", data={"email": "ann@contoso.com", "password": PASSWORD + "\x00"})
    assert response.status_code == 401


def test_control_characters_in_next_are_dropped_not_refused(client, ann):
    response = client.post("/login", data={"email": "ann@contoso.com", "password": PASSWORD, "next": "/customer/\x00"})
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_whole_numbers_beyond_the_database_are_refused(app):
    for raw, ok in [("2147483647", True), ("2147483648", False), ("-2147483649", False), ("9" * 30, False)]:
        with app.test_request_context("/switch-org", method="POST", data={"org_id": raw}):
            form = SwitchOrgForm()
            assert form.validate() is ok, raw
            if not ok:
                assert form.org_id.errors == ["Enter a number between -2147483648 and 2147483647."]


def test_control_characters_by_kind_of_field():
    assert has_control_characters("a\x00b") and has_control_characters("a\x9fb") and has_control_characters("a\tb")
    assert not has_control_characters("a\tb\r\nc", multiline=True)
    assert has_control_characters("a\x00b", multiline=True)
    assert not has_control_characters("Zürich – Straße 5 · 東京")


def test_every_form_is_a_portal_form(app):
    """One mechanism for every form: a form that bypasses PortalForm fails here."""

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    ours = [cls for cls in subclasses(FlaskForm) if cls.__module__.startswith("portal.")]
    assert ours and all(issubclass(cls, PortalForm) for cls in ours), [c for c in ours if not issubclass(c, PortalForm)]
    package = Path(portal.__file__).parent
    direct = [str(path.relative_to(package)) for path in package.rglob("*.py")
              if path.name != "forms.py" or path.parent != package
              if "FlaskForm" in path.read_text(encoding="utf-8")]
    assert not direct, f"Use portal.forms.PortalForm instead of FlaskForm in {direct}"


# --- 16. bodies that are not forms ------------------------------------------------------------


def test_a_json_body_to_a_form_endpoint_is_415(client, lonely, ann):
    response = client.post("/login", json={"email": 5, "password": ["x"]})
    assert response.status_code == 415
    assert "Send the form as application/x-www-form-urlencoded or multipart/form-data." in response.get_data(
        as_text=True)
    assert lonely.post("/no-access", json=[1, 2, 3]).status_code == 415
    assert lonely.post("/no-access", data="organization=Contoso", content_type="text/plain").status_code == 415
    assert _join_requests() == 0


def test_a_post_without_a_body_needs_no_content_type(login_as, ann):
    assert login_as(ann).post("/logout").status_code == 302


@pytest.mark.parametrize("body", [[1, 2], "text", 12, {"email": 5, "password": ["x"], "next": {"a": 1}}],
                         ids=["list", "string", "number", "object"])
def test_a_form_is_never_built_from_a_json_body(app, body):
    """The TypeError's cause: Flask-WTF fills a form from ImmutableMultiDict(request.get_json())."""
    with app.test_request_context("/login", method="POST", json=body):
        form = LocalLoginForm()
        assert not form.validate()
        assert form.email.data is None and form.password.data is None


def test_a_json_api_blueprint_reads_json(app, client):
    api = Blueprint("api", __name__)

    @api.post("/api/echo")
    def echo():
        return {"got": request.get_json()}

    app.register_blueprint(api)
    response = client.post("/api/echo", json={"a": 1})
    assert response.status_code == 200 and response.json == {"got": {"a": 1}}


# --- 17. body size ----------------------------------------------------------------------------


class CountingStream(io.RawIOBase):
    """A request body of ``size`` bytes that remembers how much of it was read."""

    def __init__(self, size: int):
        self.size, self.position, self.read_bytes = size, 0, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        self.position = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence] + offset
        return self.position

    def tell(self):
        return self.position

    def readinto(self, buffer):
        n = max(0, min(len(buffer), self.size - self.position))
        buffer[:n] = b"x" * n
        self.position += n
        self.read_bytes += n
        return n


def test_a_25_mb_form_is_413_and_never_read(client, ann):
    body = CountingStream(25 * MB)
    response = client.post("/login", input_stream=body, content_length=25 * MB,
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413
    assert "What you sent is larger than this page accepts (1 MB at most)." in response.get_data(as_text=True)
    assert body.read_bytes == 0
    fragment = client.post("/login", data=b"email=" + b"x" * (2 * MB), headers={"HX-Request": "true"},
                           content_type="application/x-www-form-urlencoded")
    assert fragment.status_code == 413 and "<html" not in fragment.get_data(as_text=True)
    assert _events("session.sign_in_failed") == []


def test_form_text_is_limited_below_the_body_limit(lonely, app):
    """Werkzeug holds the text fields of a multipart form to MAX_FORM_MEMORY_SIZE (500 KB)."""
    assert app.config["MAX_CONTENT_LENGTH"] == MB
    boundary, body = encode_multipart({"organization": "Contoso", "message": "x" * (600 * 1024)})
    response = lonely.post("/no-access", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 413
    assert "The form holds more text or more fields than the portal accepts." in response.get_data(as_text=True)
    assert _join_requests() == 0


@pytest.fixture
def app_config():
    return {"UPLOAD_MAX_CONTENT_LENGTH": 3 * MB}


def test_an_upload_route_has_its_own_limit_set_before_csrf_reads_the_form(app, client):
    seen = []

    @app.post("/test-upload")
    @accepts_upload
    def upload():
        upload = request.files["file"]
        seen.append(len(upload.read()))
        upload.close()
        return "stored"

    @app.post("/test-form")
    def plain():
        return "ok"

    def post(path, size):
        boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(b"x" * size), "a.bin")})
        return client.post(path, data=body, content_type=f"multipart/form-data; boundary={boundary}")

    assert post("/test-upload", 2 * MB).status_code == 200 and seen == [2 * MB]
    assert post("/test-form", 2 * MB).status_code == 413
    too_big = post("/test-upload", 4 * MB)
    assert too_big.status_code == 413 and "(3 MB at most)" in too_big.get_data(as_text=True)
    # With CSRF on, its check (which reads the form) sees the upload limit: 400 for the token, not 413.
    app.config["WTF_CSRF_ENABLED"] = True
    assert post("/test-upload", 2 * MB).status_code == 400
    assert post("/test-form", 2 * MB).status_code == 413


def test_int_urls_beyond_the_database_are_404(app, client):
    @app.get("/test-thing/<int:thing_id>")
    def thing(thing_id):
        return str(thing_id)

    assert client.get("/test-thing/2147483647").get_data(as_text=True) == "2147483647"
    assert client.get("/test-thing/2147483648").status_code == 404
    assert client.get("/test-thing/" + "9" * 30).status_code == 404

