"""The producer portal in real Chromium, signed in as demo producer staff: enter an order with a
two-tier chain (Northwind -> BlueSky), refused first off the channel; bulk-approve the demo's four
pending requests with a join to the producer among them (refused for staff, its row says why, the
others stay approved); suspend an entitlement. Every page at desktop and 390 px with axe-core.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.demo import DEMO_PASSWORD
from portal.extensions import db
from portal.models import Entitlement, Organization, PortalRequest
from portal.services.accounts import create_user
from portal.services.requests import request_to_join
from tests.browser.test_customer_portal import check_page, expect_refusal
from tests.browser.test_sign_in import sign_in

pytestmark = pytest.mark.browser

CDE1 = "ENT-DEMO-CDE1-0001"


def _fresh():
    db.session.rollback()
    db.session.expire_all()


def test_enter_an_order_with_a_two_tier_chain(browse, demo):
    page = sign_in(browse, "staff@acme.example", DEMO_PASSWORD)
    check_page(browse, "home")
    browse.goto("/producer/entitlements")
    check_page(browse, "entitlements")
    browse.submit(page.get_by_role("link", name="Enter an order"))
    check_page(browse, "new-entitlement")
    page.get_by_label("Drop-ship to a customer").check()
    page.get_by_label("Customer", exact=True).fill("Tailspin Toys")
    page.get_by_label("Tier 1 (supplied by the producer)").select_option(label="BlueSky Resellers")
    page.get_by_label("Order reference").fill("PO-2026-118")
    line = page.locator(".order-line").first
    line.get_by_label("Product").select_option(label="Acme Studio (ACME-STUDIO)")
    line.get_by_label("License model").select_option("perpetual")
    line.get_by_label("Seats or units").fill("12")
    line.get_by_label("Maintenance until (perpetual)").fill((date.today() + timedelta(days=365)).isoformat())
    second = page.locator(".order-line").nth(1)
    second.get_by_label("Product").select_option(label="Acme Cloud Sync (ACME-SYNC)")
    second.get_by_label("License model").select_option("subscription")
    second.get_by_label("Seats or units").fill("20")
    second.get_by_label("Start (subscription, usage)").fill(date.today().isoformat())
    second.get_by_label("End (subscription)").fill((date.today() + timedelta(days=365)).isoformat())
    # BlueSky is supplied by Northwind, not by Acme: refused next to the chain.
    browse.submit(page.get_by_role("button", name="Enter the order"), status=422)
    expect(page.locator("#tiers-0-error")).to_contain_text("BlueSky Resellers is not supplied by the producer")
    check_page(browse, "new-entitlement-refused")
    page.get_by_label("Tier 1 (supplied by the producer)").select_option(label="Northwind Distribution")
    page.get_by_label("Tier 2").select_option(label="BlueSky Resellers")
    browse.submit(page.get_by_role("button", name="Enter the order"))
    expect(page.locator("#sales-chain")).to_have_text("Northwind Distribution → BlueSky Resellers")
    expect(page.locator("#owner-path")).to_contain_text("Tailspin Toys")
    expect(page.locator(".attachments-table")).to_contain_text("BlueSky Resellers")
    check_page(browse, "entitlement")
    _fresh()
    code = page.url.rsplit("/", 1)[1]
    entitlement = db.session.scalar(select(Entitlement).where(Entitlement.code == code))
    assert [(line.license_model, line.quantity) for line in entitlement.lines] == [("perpetual", 12),
                                                                                 ("subscription", 20)]
    assert [link.partner.name for link in entitlement.chain] == ["Northwind Distribution", "BlueSky Resellers"]


def test_bulk_approve_the_demo_requests(browse, demo):
    acme = db.session.scalar(select(Organization).where(Organization.kind == "producer"))
    hire = request_to_join(create_user("new.hire@acme.example", "New Hire"), acme, organization_name=acme.name)
    db.session.commit()
    hire_id = hire.id
    page = sign_in(browse, "staff@acme.example", DEMO_PASSWORD)
    browse.goto("/producer/requests")
    expect(page.locator("#queue-summary")).to_have_text("5 pending requests")
    check_page(browse, "queue")
    # Staff may not decide a join to the producer: no tick box, "Admins decide".
    expect(page.locator(f"#queue-row-{hire_id}")).to_contain_text("Admins decide")
    for kind in ("join_org", "partner_access", "transfer", "partner_application"):
        page.locator(f'.queue-row[data-kind="{kind}"] input[name="ids"]').check()
    page.get_by_label("Note to the requester").fill("Approved in the weekly review.")
    page.get_by_role("button", name="Approve ticked requests").click()
    expect(page.locator("#bulk-outcome")).to_have_text("4 approved.")
    expect(page.locator(".queue-row .status-badge", has_text="Approved")).to_have_count(4)
    expect(page.locator(".queue-row .result-text").first).to_contain_text("Approved")
    check_page(browse, "queue-decided")
    _fresh()
    states = dict(db.session.execute(select(PortalRequest.kind, PortalRequest.state)
                                     .where(PortalRequest.id != hire_id)).all())
    assert states == {"join_org": "approved", "partner_access": "approved", "transfer": "approved",
                      "partner_application": "approved"}
    browse.goto(f"/producer/requests/{hire_id}")
    expect(page.locator("main")).to_contain_text("Only producer admins decide who joins the producer.")
    check_page(browse, "request")
    # The decided ones under "Approved", with their decider.
    browse.goto("/producer/requests?state=approved")
    expect(page.locator("#queue-summary")).to_have_text("4 requests")


def test_a_refused_row_in_a_bulk_decision_says_why(browse, demo):
    page = sign_in(browse, "staff@acme.example", DEMO_PASSWORD)
    browse.goto("/producer/requests?kind=transfer")
    page.locator('.queue-row input[name="ids"]').check()
    transfer_id = int(page.locator('.queue-row input[name="ids"]').get_attribute("value"))
    # Someone else decides it meanwhile.
    _fresh()
    req = db.session.get(PortalRequest, transfer_id)
    req.state, req.decided_at = "rejected", req.created_at
    db.session.commit()
    page.get_by_role("button", name="Reject ticked requests").click()
    expect(page.locator("#bulk-outcome")).to_have_text("1 refused.")
    expect(page.locator(f"#queue-row-{transfer_id}")).to_contain_text("It was rejected already.")
    expect_refusal(browse, 422)
    # One row at a time: its own Approve, with the note above.
    browse.goto("/producer/requests?kind=partner_access")
    row = page.locator('.queue-row[data-kind="partner_access"]')
    page.get_by_label("Note to the requester").fill("Go ahead.")
    row.get_by_role("button", name="Approve").click()
    expect(row.locator(".result-text")).to_have_text("Approved: RedRock IT is attached.")
    expect(page.locator("#toasts .toast").last).to_contain_text("Approved: RedRock IT is attached.")
    _fresh()
    req = db.session.scalar(select(PortalRequest).where(PortalRequest.kind == "partner_access"))
    assert (req.state, req.decision_note) == ("approved", "Go ahead.")


def test_requeue_failed_mail(browse, demo):
    from portal.models import OutboxEmail
    from portal.services.mail import queue_email

    mail = queue_email(to="gone@fabrikam.example", subject="Your request was approved", body="b")
    mail.status, mail.attempts, mail.last_error = "failed", 5, "550 5.1.1 no such user"
    db.session.commit()
    mail_id = mail.id
    page = sign_in(browse, "staff@acme.example", DEMO_PASSWORD)
    browse.goto("/producer/mail?status=failed")
    expect(page.locator(f"#mail-row-{mail_id}")).to_contain_text("550 5.1.1 no such user")
    check_page(browse, "mail-failed")
    page.locator(f"#mail-tick-{mail_id}").check()
    page.get_by_role("button", name="Requeue ticked failed mails").click()
    expect(page.locator("#toasts .toast").last).to_contain_text("Requeued 1 mail")
    expect(page.locator("#mail-count-failed")).to_have_text("0")
    expect(page.locator("#mail-summary")).to_have_text("0 mails")
    _fresh()
    assert db.session.get(OutboxEmail, mail_id).status == "queued"


def test_suspend_an_entitlement(browse, demo):
    page = sign_in(browse, "staff@acme.example", DEMO_PASSWORD)
    browse.goto(f"/producer/entitlements/{CDE1}")
    expect(page.locator(".attachments-table")).to_contain_text("Initech Services")
    browse.submit(page.get_by_role("button", name=f"Suspend {CDE1}"))
    expect(page.locator("main h1")).to_contain_text("Suspended")
    expect(page.get_by_role("button", name=f"Reactivate {CDE1}")).to_be_visible()
    _fresh()
    assert db.session.scalar(select(Entitlement.status).where(Entitlement.code == CDE1)) == "suspended"
    browse.goto("/producer/audit?action=entitlement.status")
    expect(page.locator("#audit-summary")).to_have_text("1 event")
    check_page(browse, "audit")
    browse.goto("/producer/mail")
    check_page(browse, "mail")
