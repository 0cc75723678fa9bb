"""The moderation queue: the demo's four pending requests with decoys decided already, single and
bulk decisions (each row its own result, a refused one leaves the others decided), mail and audit."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEvent, Membership, OutboxEmail, PortalRequest
from portal.services.accounts import create_user
from portal.services.requests import request_to_join
from tests.producer.conftest import HX, org


def pending_ids() -> dict[str, int]:
    return dict(db.session.execute(select(PortalRequest.kind, PortalRequest.id)
                                   .where(PortalRequest.state == "pending")).all())


def _join_producer() -> PortalRequest:
    req = request_to_join(create_user("newhire@acme.example", "New Hire"), org("Acme Software"),
                          organization_name="Acme Software")
    db.session.commit()
    return req


def test_queue_lists_every_pending_kind_oldest_first(staff):
    decoy = request_to_join(create_user("decided@example.com", "Decided Decoy"), org("Tailspin Toys"),
                            organization_name="Tailspin Toys")
    decoy.state, decoy.decided_at = "rejected", decoy.created_at
    db.session.commit()
    page = staff.get("/producer/requests").get_data(as_text=True)
    assert "4 pending requests" in page
    kinds = re.findall(r'class="queue-row[^"]*" data-kind="(\w+)"', page)
    assert sorted(kinds) == sorted(["join_org", "partner_access", "transfer", "partner_application"])
    assert "Decided Decoy" not in page
    rejected = staff.get("/producer/requests?state=rejected").get_data(as_text=True)
    assert "1 request" in rejected and "Decided Decoy" in rejected
    only = staff.get("/producer/requests?kind=transfer", headers=HX).get_data(as_text=True)
    assert re.findall(r'data-kind="(\w+)"', only) == ["transfer"]
    assert "0 pending requests" in staff.get("/producer/requests?age=30").get_data(as_text=True)
    assert staff.get("/producer/requests?kind=nope").status_code == 400


def test_bulk_approve_the_demo_four_kinds_each_row_its_result(staff):
    ids = pending_ids()
    producer_join = _join_producer()  # staff may not decide it: refused, the others stay approved
    mails = db.session.scalar(select(func.count(OutboxEmail.id)))
    response = staff.post("/producer/requests/decide", headers=HX,
                          data={"ids": [*ids.values(), producer_join.id], "decision": "approve", "note": "Welcome"})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_data(as_text=True)
    assert "4 approved, 1 refused" in body
    assert body.count('hx-swap-oob="true"') == 5
    assert "Only producer admins decide who joins the producer." in body
    db.session.rollback()
    states = dict(db.session.execute(select(PortalRequest.id, PortalRequest.state)).all())
    assert all(states[i] == "approved" for i in ids.values())
    assert states[producer_join.id] == "pending"
    # Every decision told its requester (plus the invitation mails a carried-out request sends) and was audited.
    assert db.session.scalar(select(func.count(OutboxEmail.id))) >= mails + 4
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "request.approved")) == 4
    joiner = db.session.get(PortalRequest, ids["join_org"])
    assert db.session.scalar(select(Membership).where(Membership.user_id == joiner.requester_user_id,
                                                      Membership.org_id == joiner.target_org_id)) is not None


def test_admin_decides_joining_the_producer_staff_gets_403(staff, admin):
    req = _join_producer()
    assert staff.post(f"/producer/requests/{req.id}/decide", data={"decide-decision": "approve"}).status_code == 403
    page = staff.get(f"/producer/requests/{req.id}").get_data(as_text=True)
    assert "Only producer admins decide" in page
    response = admin.post(f"/producer/requests/{req.id}/decide", data={"decide-decision": "approve",
                                                                       "decide-note": "Hi"})
    assert response.status_code == 302
    db.session.rollback()
    assert db.session.get(PortalRequest, req.id).state == "approved"
    assert admin.post(f"/producer/requests/{req.id}/decide", data={"decide-decision": "reject"}).status_code == 409


def test_single_decision_from_the_queue_and_history(staff):
    ids = pending_ids()
    response = staff.post(f"/producer/requests/{ids['transfer']}/decide", headers=HX,
                          data={"decision": "reject", "note": "Not yet", "from": "queue"})
    assert response.status_code == 200
    assert "Rejected; the requester is told by mail." in response.get_data(as_text=True)
    page = staff.get(f"/producer/requests/{ids['transfer']}").get_data(as_text=True)
    assert "Request made" in page and "Request rejected" in page and "Not yet" in page
    bad = staff.post(f"/producer/requests/{ids['join_org']}/decide", data={"decide-decision": "maybe"})
    assert bad.status_code == 422 and "Choose Approve or Reject." in bad.get_data(as_text=True)
    assert staff.post("/producer/requests/decide", headers=HX, data={"decision": "approve"}).status_code == 422
