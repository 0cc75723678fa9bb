"""The single pane, entitlements (list, new with a two-tier chain, page, suspend, correct, attach,
revoke), audit and mail pages on the demo story, with exact counts."""

from __future__ import annotations

import re
from datetime import date, timedelta

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEvent, Entitlement, OutboxEmail, Product
from portal.services.mail import queue_email
from tests.producer.conftest import HX, org


def _figure(page: str, id_: str) -> int:
    return int(re.search(rf'id="{id_}">([\d,]+)<', page).group(1).replace(",", ""))


def test_single_pane_figures_link_to_lists_that_count_the_same(staff):
    failed = queue_email(to="x@example.com", subject="Bounced", body="b")
    failed.status, failed.last_error = "failed", "550 no such user"
    db.session.commit()
    page = staff.get("/producer/").get_data(as_text=True)
    assert _figure(page, "failed-mail") == 1
    assert _figure(page, "entitlement-count") == db.session.scalar(select(func.count(Entitlement.id)))
    assert 'href="/producer/requests?kind=transfer"' in page
    assert "4 requests" in page
    mail = staff.get("/producer/mail?status=failed").get_data(as_text=True)
    assert "1 mail" in mail and "550 no such user" in mail
    entered = _figure(page, "entered-month")
    month = date.today().replace(day=1).isoformat()
    audit = staff.get(f"/producer/audit?action=entitlement.create&from={month}").get_data(as_text=True)
    assert f"{entered} event" in audit
    ending = _figure(page, "ending-90")
    listed = staff.get("/producer/entitlements?ending=90").get_data(as_text=True)
    assert f"{ending} entitlement" in listed
    old = staff.get("/producer/entitlements?held=old_stock").status_code
    assert old == 200


def test_entitlement_list_search_and_csv(staff):
    total = db.session.scalar(select(func.count(Entitlement.id)))
    page = staff.get("/producer/entitlements").get_data(as_text=True)
    assert f"{total} entitlements" in page
    stock = staff.get("/producer/entitlements?held=stock", headers=HX).get_data(as_text=True)
    assert "2 entitlements" in stock  # BlueSky's two in stock
    fab = staff.get("/producer/entitlements?q=Fabrikam").get_data(as_text=True)
    assert "2 entitlements" in fab
    csv = staff.get("/producer/entitlements.csv?q=Fabrikam").get_data(as_text=True)
    assert len(csv.strip().splitlines()) == 3
    assert staff.get("/producer/entitlements?sort=nope").status_code == 400


def _order(**extra):
    studio = db.session.scalar(select(Product).where(Product.name == "Acme Studio"))
    sync = db.session.scalar(select(Product).where(Product.name == "Acme Cloud Sync"))
    today = date.today()
    data = {"fulfilment": "drop_ship", "customer": "Tailspin Toys", "tiers-0": str(org("Northwind Distribution").id),
            "tiers-1": str(org("BlueSky Resellers").id), "order_ref": "PO-77",
            "lines-0-product_id": str(studio.id), "lines-0-license_model": "perpetual", "lines-0-quantity": "5",
            "lines-0-maintenance_end": (today + timedelta(days=365)).isoformat(),
            "lines-1-product_id": str(sync.id), "lines-1-license_model": "subscription", "lines-1-quantity": "8",
            "lines-1-start_date": today.isoformat(), "lines-1-end_date": (today + timedelta(days=30)).isoformat()}
    data.update(extra)
    return data


def test_enter_an_order_with_a_two_tier_chain(staff):
    assert staff.get("/producer/entitlements/new").status_code == 200
    response = staff.post("/producer/entitlements/new", data=_order())
    assert response.status_code == 302, response.get_data(as_text=True)
    code = response.headers["Location"].rsplit("/", 1)[1]
    page = staff.get(f"/producer/entitlements/{code}").get_data(as_text=True)
    assert "Northwind Distribution → BlueSky Resellers" in page and "PO-77" in page
    db.session.rollback()
    entitlement = db.session.scalar(select(Entitlement).where(Entitlement.code == code))
    assert [line.license_model for line in entitlement.lines] == ["perpetual", "subscription"]
    # Off the channel: RedRock is not supplied by Northwind.
    bad = staff.post("/producer/entitlements/new", data=_order(**{"tiers-1": str(org("RedRock IT").id)}))
    assert bad.status_code == 422
    assert "RedRock IT is not supplied by Northwind Distribution" in bad.get_data(as_text=True)
    forged = staff.post("/producer/entitlements/new", data=_order(**{"tiers-1": str(org("Contoso Group").id)}))
    assert forged.status_code == 422 and "Choose a partner of the list." in forged.get_data(as_text=True)
    nobody = staff.post("/producer/entitlements/new", data=_order(customer="Nobody Ltd"))
    assert nobody.status_code == 422 and "No active customer has exactly this name" in nobody.get_data(as_text=True)
    no_dates = staff.post("/producer/entitlements/new", data=_order(**{"lines-1-end_date": ""}))
    assert no_dates.status_code == 422 and "A subscription needs a start and an end date." in no_dates.get_data(
        as_text=True)
    stock = staff.post("/producer/entitlements/new", data=_order(fulfilment="stocking", customer=""))
    assert stock.status_code == 302
    code = stock.headers["Location"].rsplit("/", 1)[1]
    db.session.rollback()
    assert db.session.scalar(select(Entitlement).where(Entitlement.code == code)).owner.name == "BlueSky Resellers"


def test_suspend_correct_attach_revoke(staff):
    entitlement = db.session.scalar(select(Entitlement).join(Entitlement.owner).where(
        Entitlement.owner.has(name="Tailspin Toys")))
    code, line = entitlement.code, entitlement.lines[0]
    assert staff.post(f"/producer/entitlements/{code}/status", data={"status-status": "suspended"}).status_code == 302
    db.session.rollback()
    assert db.session.scalar(select(Entitlement.status).where(Entitlement.code == code)) == "suspended"
    response = staff.post(f"/producer/entitlements/{code}/correct", data={
        "correct-order_ref": "PO-FIXED", "correct-notes": "", "correct-lines-0-quantity": "-1"})
    assert response.status_code == 422 and "Enter a quantity from 1 to 1,000,000." in response.get_data(as_text=True)
    response = staff.post(f"/producer/entitlements/{code}/correct", data={
        "correct-order_ref": "PO-FIXED", "correct-lines-0-quantity": str(line.quantity + 1),
        "correct-lines-0-maintenance_end": (line.maintenance_end or date.today()).isoformat()})
    assert response.status_code == 302
    db.session.rollback()
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "entitlement.correct")) == 1
    initech = org("Initech Services")
    assert staff.post(f"/producer/entitlements/{code}/attach", data={
        "attach-partner_id": str(initech.id), "attach-relation": "services", "attach-download": "y"}).status_code == 302
    page = staff.get(f"/producer/entitlements/{code}").get_data(as_text=True)
    assert "Initech Services" in page and "PO-FIXED" in page
    attachment_id = int(re.search(r'id="attachment-(\d+)"', page).group(1))
    assert staff.post(f"/producer/entitlements/{code}/attachments/{attachment_id}/revoke").status_code == 302
    assert staff.post(f"/producer/entitlements/{code}/attachments/{attachment_id}/revoke").status_code == 409
    assert staff.get("/producer/entitlements/ENT-NOPE-NOPE").status_code == 404


def test_audit_search_and_csv(staff):
    everything = staff.get("/producer/audit").get_data(as_text=True)
    total = db.session.scalar(select(func.count(AuditEvent.id)))
    assert f"{total} events" in everything
    transfers = db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "request.create"))
    assert f"{transfers} event" in staff.get("/producer/audit?action=request.create").get_data(as_text=True)
    by_org = staff.get("/producer/audit?org=Contoso", headers=HX).get_data(as_text=True)
    assert "audit-row" in by_org
    csv = staff.get("/producer/audit.csv?action=request.create").get_data(as_text=True)
    assert len(csv.strip().splitlines()) == transfers + 1
    assert staff.get("/producer/audit?from=yesterday").status_code == 400
    for method in ("put", "delete", "patch"):
        assert getattr(staff, method)("/producer/audit").status_code == 405


def test_requeue_failed_mail(staff, admin):
    failed = queue_email(to="x@example.com", subject="Bounced", body="b")
    failed.status, failed.last_error, failed.attempts = "failed", "550 no such user", 5
    sent = queue_email(to="y@example.com", subject="Fine", body="b")
    sent.status = "sent"
    db.session.commit()
    response = staff.post("/producer/mail/requeue", headers=HX, data={"ids": [failed.id]})
    assert response.status_code == 200 and "Requeued 1 mail" in response.headers["HX-Trigger"]
    db.session.rollback()
    assert db.session.get(OutboxEmail, failed.id).status == "queued"
    refused = staff.post("/producer/mail/requeue", headers=HX, data={"ids": [sent.id]})
    assert refused.status_code == 422
    assert db.session.get(OutboxEmail, sent.id).status == "sent"


def test_a_correction_never_goes_below_the_seats_in_use(staff):
    code = "ENT-DEMO-CDE1-0001"  # 4 of its 10 seats are activated
    entitlement = db.session.scalar(select(Entitlement).where(Entitlement.code == code))
    maintenance = entitlement.lines[0].maintenance_end.isoformat()
    response = staff.post(f"/producer/entitlements/{code}/correct", data={
        "correct-order_ref": "PO-CDE-1001", "correct-lines-0-quantity": "3",
        "correct-lines-0-maintenance_end": maintenance})
    assert response.status_code == 422
    assert "4 seats are activated on this line" in response.get_data(as_text=True)
    # Nothing half-written: the order reference stayed too.
    missing = staff.post(f"/producer/entitlements/{code}/correct", data={"correct-order_ref": "X"})
    assert missing.status_code == 422
    db.session.rollback()
    fresh = db.session.scalar(select(Entitlement).where(Entitlement.code == code))
    assert (fresh.lines[0].quantity, fresh.order_ref) == (10, "PO-CDE-1001")
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "entitlement.correct")) == 0
