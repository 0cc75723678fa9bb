"""Activations in place: htmx answers the line's card with its seats and a toast; bad input is a
422 with the error at its field and nothing written; what the user may not see is 404."""

from __future__ import annotations

import html
import json
import re

import jwt
import pytest
from sqlalchemy import event, func, select

from portal.database import begin_write
from portal.extensions import db
from portal.models import Activation, AuditEvent
from portal.services.entitlements import set_entitlement_status
from tests.customer.conftest import HX


def _text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))))


def _activations(line_id: int | None = None) -> int:
    db.session.rollback()  # end the test's read transaction: see what the requests wrote
    query = select(func.count(Activation.id)).where(Activation.active.is_(True))
    if line_id is not None:
        query = query.where(Activation.line_id == line_id)
    return db.session.scalar(query)


def _activate(client, line, headers=HX, **fields):
    data = {f"line-{line.id}-{name}": value for name, value in fields.items()}
    response = client.post(f"/customer/lines/{line.id}/activations", data=data, headers=headers)
    db.session.rollback()
    return response


def _toast(response) -> str:
    return json.loads(response.headers["HX-Trigger"])["portal:toast"]["message"]


def test_activate_answers_the_line_card_with_its_seats_and_a_toast(member_client, shop):
    line = shop.line("de_studio")
    response = _activate(member_client, line, host_id="munich-cad-07", seats="2", friendly_name="CAD 7")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith(f'<section class="card mb-4 line-card" id="line-{line.id}"')
    assert "5 used · 5 free of 10" in _text(response)
    assert _toast(response) == "Activated 2 seats of Acme Studio on munich-cad-07."
    activation = db.session.scalar(select(Activation).where(Activation.host_id == "munich-cad-07"))
    assert (activation.seats, activation.friendly_name, activation.activated_by_id) == (2, "CAD 7", shop.member.id)
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "activation.create",
                                                      AuditEvent.subject_id == str(activation.id))) is not None
    # The fresh form is empty again; the new activation is listed with its certificate.
    assert 'value="munich-cad-07"' not in body and f"/customer/activations/{activation.id}.lic" in body


def test_activating_the_same_host_again_changes_nothing(member_client, shop):
    line = shop.line("de_studio")
    response = _activate(member_client, line, host_id="munich-cad-01", seats="1")
    assert response.status_code == 200
    assert _toast(response) == "munich-cad-01 was already activated on this line (3 seats): nothing changed."
    assert _activations(line.id) == 1


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"host_id": "host with spaces", "seats": "1"}, "host_id", "A host id is 1 to 128 characters"),
    ({"host_id": "", "seats": "1"}, "host_id", "Enter the host ID."),
    ({"host_id": "h" * 129, "seats": "1"}, "host_id", "at most 128 characters"),
    ({"host_id": "bad\x00host", "seats": "1"}, "host_id", "Remove control characters"),
    ({"host_id": "fine-host", "seats": "8"}, "seats", "Only 7 of 10 seats are free."),
    ({"host_id": "fine-host", "seats": "0"}, "seats", "Enter a number of seats from 1 to 1,000,000."),
    ({"host_id": "fine-host", "seats": "99999999999999999999999"}, "seats", "Enter a number of seats"),
    ({"host_id": "fine-host", "seats": "two"}, "seats", "Not a valid integer value."),
    ({"host_id": "fine-host", "seats": "1", "friendly_name": "x\x1b[31m"}, "friendly_name",
     "Remove control characters"),
    ({"host_id": "fine-host", "seats": "1", "friendly_name": "n" * 201}, "friendly_name", "200 characters"),
])
def test_bad_input_is_422_at_the_field_and_writes_nothing(member_client, shop, fields, field, message):
    line = shop.line("de_studio")
    before = (_activations(), db.session.scalar(select(func.count(AuditEvent.id))))
    response = _activate(member_client, line, **fields)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    error = re.search(rf'<p class="error" id="line-{line.id}-{field}-error">([^<]+)</p>', body)
    assert error and message in html.unescape(error.group(1)), body
    assert f'id="line-{line.id}-{field}"' in body and 'aria-invalid="true"' in body
    assert f'aria-describedby="line-{line.id}-{field}' in body
    assert "HX-Trigger" not in response.headers
    assert (_activations(), db.session.scalar(select(func.count(AuditEvent.id)))) == before


def test_without_htmx_errors_render_the_page_and_success_redirects(member_client, shop):
    line = shop.line("de_studio")
    refused = _activate(member_client, line, headers={}, host_id="a b", seats="1")
    assert refused.status_code == 422 and "<html" in refused.get_data(as_text=True)
    assert 'value="a b"' in refused.get_data(as_text=True)  # what was typed stays
    done = _activate(member_client, line, headers={}, host_id="plain-host", seats="1")
    assert done.status_code == 302
    assert done.location.endswith(f"/customer/entitlements/{shop.entitlements['de_studio'].code}#line-{line.id}")
    assert "Activated 1 seat of Acme Studio on plain-host." in member_client.get(done.location).get_data(as_text=True)


def test_a_suspended_entitlement_is_not_activated(admin_client, shop, make):
    begin_write()
    set_entitlement_status(make.system, shop.entitlements["de_studio"], "suspended")
    db.session.commit()
    response = _activate(admin_client, shop.line("de_studio"), host_id="new-host", seats="1")
    assert response.status_code == 403
    page = admin_client.get(f"/customer/entitlements/{shop.entitlements['de_studio'].code}").get_data(as_text=True)
    assert "Activate seats" not in page
    assert "Return" in page  # seats can always be given back


@pytest.mark.parametrize("url", [
    "/customer/lines/{fab}/activations", "/customer/lines/99999999999999999999/activations",
    "/customer/lines/-1/activations", "/customer/lines/abc/activations",
])
def test_lines_the_user_may_not_see_are_404(admin_client, shop, url):
    line = shop.line("fab_studio")
    data = {f"line-{line.id}-host_id": "x", f"line-{line.id}-seats": "1"}
    response = admin_client.post(url.format(fab=line.id), data=data, headers=HX)
    assert response.status_code == 404
    assert _activations(line.id) == 1


def test_a_subsidiary_member_cannot_reach_a_siblings_line(member_client, shop):
    line = shop.line("us_sync")
    assert _activate(member_client, line, host_id="x", seats="1").status_code == 404


def test_return_frees_the_seats(member_client, shop):
    activation = shop.activations["de_cad"]
    response = member_client.post(f"/customer/activations/{activation.id}/return", headers=HX)
    assert response.status_code == 200
    assert _toast(response) == "Returned 3 seats of munich-cad-01."
    assert "0 used · 10 free of 10" in _text(response)
    db.session.rollback()
    assert not activation.active
    again = member_client.post(f"/customer/activations/{activation.id}/return", headers=HX)
    assert again.status_code == 409 and "already returned" in again.get_data(as_text=True)


def test_return_has_a_confirmation_and_names_the_host(admin_client, shop):
    page = admin_client.get(f"/customer/entitlements/{shop.entitlements['de_studio'].code}").get_data(as_text=True)
    assert 'hx-confirm="Return 3 seats of munich-cad-01? Its license stops working."' in page
    assert 'Return<span class="visually-hidden"> seats of munich-cad-01</span>' in page


def test_rehost_moves_the_seats(member_client, shop):
    activation = shop.activations["de_cad"]
    prefix = f"activation-{activation.id}"
    response = member_client.post(f"/customer/activations/{activation.id}/rehost",
                                  data={f"{prefix}-host_id": "munich-cad-99"}, headers=HX)
    assert response.status_code == 200
    assert _toast(response) == "Moved 3 seats from munich-cad-01 to munich-cad-99."
    db.session.rollback()
    moved = db.session.scalar(select(Activation).where(Activation.host_id == "munich-cad-99"))
    assert not activation.active and moved.active and moved.seats == 3 and moved.friendly_name == "CAD 1"
    assert "3 used · 7 free of 10" in _text(response)


@pytest.mark.parametrize(("host", "message"), [
    ("munich-cad-01", "Enter a different host id."), ("two words", "A host id is 1 to 128 characters"),
    ("", "Enter the new host ID."),
])
def test_rehost_errors_are_422_at_the_field(member_client, shop, host, message):
    activation = shop.activations["de_cad"]
    prefix = f"activation-{activation.id}"
    response = member_client.post(f"/customer/activations/{activation.id}/rehost",
                                  data={f"{prefix}-host_id": host}, headers=HX)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    error = re.search(rf'<p class="error" id="{prefix}-host_id-error">([^<]+)</p>', body)
    assert error and message in error.group(1)
    assert '<details class="rehost" open>' in body
    db.session.rollback()
    assert activation.active and _activations() == 3


@pytest.mark.parametrize("action", ["return", "rehost"])
def test_activations_the_user_may_not_see_are_404(admin_client, member_client, shop, action):
    theirs = shop.activations["fab_host"]
    sibling = shop.activations["us_gw"]
    for client, activation in [(admin_client, theirs), (member_client, theirs), (member_client, sibling)]:
        data = {f"activation-{activation.id}-host_id": "elsewhere"}
        assert client.post(f"/customer/activations/{activation.id}/{action}", data=data, headers=HX).status_code == 404
        assert client.get(f"/customer/activations/{activation.id}.lic").status_code == 404
    assert _activations() == 3
    assert admin_client.post("/customer/activations/99999999999/return").status_code == 404


def test_certificate_verifies_offline_with_the_published_key(admin_client, shop):
    activation = shop.activations["de_cad"]
    response = admin_client.get(f"/customer/activations/{activation.id}.lic")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="{shop.entitlements["de_studio"].code}-munich-cad-01.lic"')
    (jwk,) = admin_client.get("/.well-known/jwks.json").get_json()["keys"]
    claims = jwt.decode(response.get_data(as_text=True), jwt.PyJWK(jwk, algorithm="EdDSA"), algorithms=["EdDSA"],
                        options={"verify_iss": False})
    assert (claims["host_id"], claims["seats"], claims["entitlement"]) == (
        "munich-cad-01", 3, shop.entitlements["de_studio"].code)
    admin_client.post(f"/customer/activations/{activation.id}/return")
    assert admin_client.get(f"/customer/activations/{activation.id}.lic").status_code == 410


@pytest.mark.parametrize("action", ["activate", "return", "rehost"])
def test_each_post_takes_the_write_lock_before_its_first_read(member_client, shop, action):
    """SQLite: seats are counted under BEGIN IMMEDIATE from the request's first statement."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL locks the line row instead (SELECT ... FOR UPDATE)")
    line, activation = shop.line("de_studio"), shop.activations["de_cad"]
    url, data = {
        "activate": (f"/customer/lines/{line.id}/activations", {f"line-{line.id}-host_id": "locked-host",
                                                                f"line-{line.id}-seats": "1"}),
        "return": (f"/customer/activations/{activation.id}/return", {}),
        "rehost": (f"/customer/activations/{activation.id}/rehost", {f"activation-{activation.id}-host_id": "h2"}),
    }[action]
    db.session.rollback()
    statements: list[str] = []

    def listener(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        response = member_client.post(url, data=data, headers=HX)
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert response.status_code == 200
    assert statements[0] == "BEGIN IMMEDIATE", statements[:3]
    assert statements.count("BEGIN IMMEDIATE") == 1
