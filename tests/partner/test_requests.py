"""Asking a customer for access (found by exact name, revealing nothing else), our requests' state,
withdrawing a pending one; what the customer decides shows here."""

from __future__ import annotations

import re

from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, PortalRequest
from portal.services.requests import decide_request, request_partner_access
from tests.partner.conftest import HX


def _ask(client, **form):
    data = {"ask-customer": "Wingtip Decoy", "ask-codes": "ENT-AAAA-BBBB, ent-cccc-dddd"} | form
    return client.post("/partner/requests", data=data)


def _rows(html: str) -> int:
    return html.count('<tr class="request-row">')


def test_ask_by_exact_name_with_codes_and_permissions(channel, bluesky):
    response = _ask(bluesky, **{"ask-customer": "  wingtip DECOY ", "ask-activate": "y", "ask-message": "Hi"})
    assert response.status_code == 302 and response.location.endswith("/partner/requests")
    db.session.rollback()  # see what the request committed
    req = db.session.scalar(select(PortalRequest).where(PortalRequest.kind == "partner_access"))
    assert (req.requester_org_id, req.target_org_id, req.state) == (
        channel.orgs["bluesky"].id, channel.orgs["wingtip"].id, "pending")
    assert req.details == {"codes": ["ENT-AAAA-BBBB", "ENT-CCCC-DDDD"], "permissions": ["activate", "view"]}
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "request.create"))
    assert (event.org_id, event.subject_org_id, event.on_behalf_of_org_id) == (
        channel.orgs["bluesky"].id, channel.orgs["wingtip"].id, None)
    html = bluesky.get("/partner/requests").get_data(as_text=True)
    assert _rows(html) == 1 and "Wingtip Decoy" in html and "ENT-AAAA-BBBB, ENT-CCCC-DDDD" in html


def test_a_name_that_is_not_exact_reveals_nothing(channel, bluesky):
    for name in ("Wingtip", "wingtip decoy ltd", "%", "BlueSky Resellers", "Contoso"):
        response = _ask(bluesky, **{"ask-customer": name})
        assert response.status_code == 422, name
        html = response.get_data(as_text=True)
        assert "No single customer has exactly this name" in html
        assert "Wingtip Decoy" not in html.replace('value="Wingtip', "")  # no suggestion
    assert db.session.scalar(select(PortalRequest.id)) is None


def test_bad_codes_and_missing_fields_are_field_errors(channel, bluesky):
    response = _ask(bluesky, **{"ask-codes": "ENT-1; <script>"})
    assert response.status_code == 422
    assert "is not an entitlement code" in response.get_data(as_text=True)
    response = _ask(bluesky, **{"ask-customer": "", "ask-codes": ""})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "Enter the customer" in html and "Enter the codes" in html
    assert db.session.scalar(select(PortalRequest.id)) is None


def test_a_second_pending_request_to_the_same_customer_is_refused(channel, bluesky):
    assert _ask(bluesky).status_code == 302
    response = _ask(bluesky)
    assert response.status_code == 422 and "pending request to this customer" in response.get_data(as_text=True)
    db.session.rollback()
    assert len(db.session.scalars(select(PortalRequest)).all()) == 1


def test_list_shows_our_requests_with_state_and_decoys_left_out(make, channel, bluesky, login_as):
    member = make.actor(channel.orgs["bluesky"], "member")
    mine = request_partner_access(member, channel.orgs["wingtip"], ["ENT-1111"])
    other = request_partner_access(member, channel.orgs["germany"], ["ENT-2222"])
    request_partner_access(make.actor(channel.orgs["redrock"]), channel.orgs["tailspin"], ["ENT-3333"])  # decoy
    decide_request(make.system, other, approve=False, note="Not ours to give")
    db.session.commit()
    html = bluesky.get("/partner/requests").get_data(as_text=True)
    assert _rows(html) == 2 and "Tailspin" not in html
    assert "Not ours to give" in html and "Rejected" in html
    pending = bluesky.get("/partner/requests?state=pending", headers=HX).get_data(as_text=True)
    assert _rows(pending) == 1 and "Wingtip Decoy" in pending
    assert _rows(bluesky.get("/partner/requests?q=contoso").get_data(as_text=True)) == 1
    # Our member sees our organization's requests too; RedRock sees only its own.
    assert _rows(login_as(channel.users["bluesky_member"]).get("/partner/requests").get_data(as_text=True)) == 2
    assert _rows(login_as(channel.users["redrock_admin"]).get("/partner/requests").get_data(as_text=True)) == 1
    assert mine.state == "pending"


def test_withdraw_a_pending_request_with_htmx(make, channel, bluesky):
    req = request_partner_access(make.actor(channel.orgs["bluesky"], "member"), channel.orgs["wingtip"], ["ENT-1"])
    db.session.commit()
    html = bluesky.get("/partner/requests").get_data(as_text=True)
    assert f'hx-post="/partner/requests/{req.id}/withdraw"' in html
    assert 'Withdraw<span class="visually-hidden"> the request to Wingtip Decoy</span>' in html
    response = bluesky.post(f"/partner/requests/{req.id}/withdraw",
                            headers=HX | {"HX-Current-URL": "http://localhost/partner/requests?state=pending"})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="requests"') and _rows(body) == 0  # the pending filter kept
    assert "Withdrew the request to Wingtip Decoy" in response.headers["HX-Trigger"]
    db.session.rollback()
    assert req.state == "withdrawn"
    again = bluesky.post(f"/partner/requests/{req.id}/withdraw")
    assert again.status_code == 409


def test_a_member_withdraws_only_its_own_and_others_are_404(make, channel, login_as):
    admin_req = request_partner_access(make.actor(channel.orgs["bluesky"]), channel.orgs["wingtip"], ["ENT-1"])
    red = request_partner_access(make.actor(channel.orgs["redrock"]), channel.orgs["tailspin"], ["ENT-2"])
    db.session.commit()
    member = login_as(channel.users["bluesky_member"])
    html = member.get("/partner/requests").get_data(as_text=True)
    assert _rows(html) == 1 and "/withdraw" not in html
    assert member.post(f"/partner/requests/{admin_req.id}/withdraw").status_code == 403
    assert member.post(f"/partner/requests/{red.id}/withdraw").status_code == 404
    db.session.rollback()
    assert admin_req.state == "pending" and red.state == "pending"


def test_query_count_does_not_grow_with_requests(make, channel, bluesky, count_queries):
    def measure():
        db.session.commit()
        with count_queries() as counter:
            html = bluesky.get("/partner/requests").get_data(as_text=True)
        return counter.count, _rows(html)

    customers = [make.customer(f"Customer {n}") for n in range(12)]
    actor = make.actor(channel.orgs["bluesky"])
    for c in customers[:2]:
        request_partner_access(actor, c, ["ENT-1"])
    small = measure()
    for c in customers[2:]:
        request_partner_access(actor, c, ["ENT-1"])
    large = measure()
    assert (small[1], large[1]) == (2, 12) and small[0] == large[0]
    assert re.search(r"12 requests", bluesky.get("/partner/requests").get_data(as_text=True))
