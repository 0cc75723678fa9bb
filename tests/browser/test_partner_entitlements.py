"""The partner's entitlements, acting on behalf and stock in real Chromium, on the demo story.

The spec's isolation example end to end: Fabrikam bought ENT-DEMO-FAB1-0004 through RedRock and
ENT-DEMO-FAB2-0005 through Northwind -> BlueSky. RedRock never sees the second: not in its list,
its search, its CSV, nor by URL (404); after Fabrikam revokes RedRock's attachment, RedRock's
next request is refused, in the page it already has open too (the next htmx request).
Each new page at desktop and 390 px, checked with axe-core (``check_page``).
"""

from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import select

from portal.database import begin_write
from portal.extensions import db
from portal.models import Attachment, Entitlement, User
from portal.policy import Actor
from portal.services.entitlements import revoke_attachment
from tests.browser.test_customer_portal import check_page, expect_refusal, sign_in_as
from tests.factories import page_without_csrf

VIA_REDROCK = "ENT-DEMO-FAB1-0004"
VIA_BLUESKY = "ENT-DEMO-FAB2-0005"
CONTOSO_USA_SYNC = "ENT-DEMO-CUS1-0002"
CONTOSO_DE_STUDIO = "ENT-DEMO-CDE1-0001"


def _codes(page) -> list[str]:
    return page.locator(".entitlement-row td:first-child").all_inner_texts()


def _revoke(demo, code: str, partner: str) -> None:
    """Fabrikam's admin revokes the partner's attachment (as the customer's partner page does)."""
    db.session.rollback()  # a fresh transaction: the live server wrote meanwhile
    begin_write()
    entitlement = db.session.scalar(select(Entitlement).where(Entitlement.code == code))
    attachment = db.session.scalar(select(Attachment).where(Attachment.entitlement_id == entitlement.id,
                                                            Attachment.partner_id == demo[partner].id))
    admin = db.session.scalar(select(User).where(User.email == "admin@fabrikam.example"))
    revoke_attachment(Actor(user=admin, org=demo["Fabrikam Inc"], role="admin"), attachment)
    db.session.commit()


def test_reseller_1_never_sees_what_the_customer_bought_through_reseller_2(browse, demo):
    page = sign_in_as(browse, "admin@redrock.example")
    page = browse.goto("/partner/entitlements")
    expect(page.locator("nav .nav-link[aria-current=page]")).to_have_text("Entitlements")
    expect(page.locator("#entitlements-table-summary")).to_have_text("2 entitlements")
    assert sorted(_codes(page)) == sorted([VIA_REDROCK, CONTOSO_USA_SYNC])
    check_page(browse, "partner-entitlements")

    # Search: by code prefix, and by the other entitlement's exact code.
    page.locator("#entitlements-table-q").fill("ENT-DEMO-FAB")
    expect(page.locator("#entitlements-table-summary")).to_have_text("1 entitlement matching “ENT-DEMO-FAB”")
    assert _codes(page) == [VIA_REDROCK]
    expect(page).to_have_url(re.compile(r"/partner/entitlements\?q=ENT-DEMO-FAB$"))
    page.locator("#entitlements-table-q").fill(VIA_BLUESKY)
    expect(page.locator("#entitlements-table-summary")).to_have_text(f"0 entitlements matching “{VIA_BLUESKY}”")

    # The CSV of the whole list.
    csv = page.request.get("/partner/entitlements.csv").text()
    assert VIA_REDROCK in csv and VIA_BLUESKY not in csv and "BlueSky" not in csv

    # Working for Fabrikam: one entitlement, the one sold through RedRock.
    page = browse.goto("/partner/customers")
    browse.submit(page.get_by_role("button", name="Work for Fabrikam Inc"))
    page = browse.goto("/partner/entitlements")
    expect(page.locator("#working-for")).to_contain_text("Fabrikam Inc")
    assert _codes(page) == [VIA_REDROCK]

    # By URL: exactly like a page that does not exist.
    response = page.goto(f"/partner/entitlements/{VIA_BLUESKY}")
    assert response.status == 404
    missing = page.request.get("/partner/no-such-page").text()
    assert page_without_csrf(response.text()) == page_without_csrf(missing)
    expect_refusal(browse, 404)

    # The page of its own entitlement, open while Fabrikam revokes the attachment.
    page = browse.goto(f"/partner/entitlements/{VIA_REDROCK}")
    expect(page.locator("#our-access")).to_contain_text("Sold by us")
    expect(page.locator("#on-behalf")).to_contain_text("on behalf of Fabrikam Inc")
    expect(page.locator("main")).not_to_contain_text("BlueSky")
    check_page(browse, "partner-entitlement")
    line = page.locator(".line-card").first
    line.get_by_label("Host ID").fill("fab-after-revoke")
    _revoke(demo, VIA_REDROCK, "RedRock IT")
    line.get_by_role("button", name=re.compile("^Activate")).click()
    expect(page.locator("#toasts .toast.text-bg-danger")).to_be_visible()
    expect_refusal(browse, 404)
    expect(line.locator(".activation-row", has_text="fab-after-revoke")).to_have_count(0)
    browse.snap("refused-after-revoke")
    response = page.goto(f"/partner/entitlements/{VIA_REDROCK}")
    assert response.status == 404
    expect_refusal(browse, 404)
    # RedRock serves Fabrikam no more: back to all its customers, where Fabrikam's is gone.
    page = browse.goto("/partner/entitlements")
    expect(page.locator("#working-for")).to_have_text(re.compile(r"Working for\s+all customers I serve"))
    expect(page.locator("#entitlements-table-summary")).to_have_text("1 entitlement")
    assert _codes(page) == [CONTOSO_USA_SYNC]
    browse.assert_clean()


def test_act_on_behalf_and_the_customer_sees_who(browse, demo, context):
    page = sign_in_as(browse, "admin@bluesky.example")
    page = browse.goto(f"/partner/entitlements/{VIA_BLUESKY}")
    line = page.locator(".line-card").first
    seats = line.locator(".seats-summary")
    expect(seats).to_have_text("0 used · 5 free of 5")
    line.get_by_label("Host ID").fill("fab-ws-01")
    line.get_by_label("Seats", exact=True).fill("2")
    line.locator("input[name$=friendly_name]").fill("Fabrikam workstation")
    with page.expect_response(lambda r: "/partner/lines/" in r.url) as answer:
        line.get_by_role("button", name=re.compile("^Activate")).click()
    assert answer.value.status == 200
    expect(page.locator("#toasts")).to_contain_text("Activated 2 seats of Acme Studio on fab-ws-01.")
    expect(seats).to_have_text("2 used · 3 free of 5")
    row = line.locator(".activation-row", has_text="fab-ws-01")
    expect(row.locator(".activated-by")).to_contain_text("of BlueSky Resellers on behalf of Fabrikam Inc")
    expect(row.get_by_role("link", name=re.compile("Certificate"))).to_have_attribute(
        "href", re.compile(r"/partner/activations/\d+\.lic$"))
    # Rehost, then return, in place.
    row.locator("summary").click()
    row.get_by_label("New host ID").fill("fab-ws-02")
    row.get_by_role("button", name=re.compile("^Move seats")).click()
    expect(page.locator("#toasts")).to_contain_text("Moved 2 seats from fab-ws-01 to fab-ws-02.")
    page.once("dialog", lambda dialog: dialog.accept())
    line.locator(".activation-row", has_text="fab-ws-02").get_by_role("button", name=re.compile("^Return")).click()
    expect(page.locator("#toasts")).to_contain_text("Returned 2 seats of fab-ws-02.")
    expect(seats).to_have_text("0 used · 5 free of 5")
    line.get_by_label("Host ID").fill("fab-ws-03")
    line.get_by_role("button", name=re.compile("^Activate")).click()
    expect(seats).to_have_text("1 used · 4 free of 5")
    browse.snap("acted-on-behalf")
    browse.assert_clean()

    # The customer sees it on the activation and in its audit trail.
    other = context.browser.new_context(base_url=page.url.split("/partner")[0])
    try:
        customer_page = other.new_page()
        customer_page.goto("/login")
        customer_page.get_by_label("Email").fill("admin@fabrikam.example")
        from portal.demo import DEMO_PASSWORD
        customer_page.get_by_label("Password").fill(DEMO_PASSWORD)
        customer_page.get_by_role("button", name="Sign in").click()
        customer_page.wait_for_url(re.compile(r"/customer/"))
        customer_page.goto(f"/customer/entitlements/{VIA_BLUESKY}")
        expect(customer_page.locator(".activation-row", has_text="fab-ws-03")).to_contain_text(
            "of BlueSky Resellers on behalf of Fabrikam Inc")
        customer_page.goto("/customer/audit")
        expect(customer_page.locator("main")).to_contain_text("of BlueSky Resellers on behalf of Fabrikam Inc")
    finally:
        other.close()


def test_a_view_only_attachment_shows_no_controls(browse, demo):
    page = sign_in_as(browse, "admin@northwind.example")
    page = browse.goto(f"/partner/entitlements/{CONTOSO_DE_STUDIO}")
    expect(page.locator("#our-access")).to_contain_text("Distributed by us")
    expect(page.locator(".activation-row")).to_have_count(3)
    expect(page.locator(".activate-form")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^(Return|Activate|Move)"))).to_have_count(0)
    expect(page.locator(".rehost")).to_have_count(0)
    # Initech (the customer's service provider) activated one of them: who did is not said.
    expect(page.locator(".activated-by")).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text("Initech Services")
    check_page(browse, "partner-entitlement-view-only")


def test_assign_stock_to_a_customer(browse, demo):
    page = sign_in_as(browse, "admin@bluesky.example")
    page = browse.goto("/partner/stock")
    expect(page.locator("nav .nav-link[aria-current=page]")).to_have_text("Stock")
    expect(page.locator(".stock-row")).to_have_count(2)
    expect(page.locator(".stock-row .stock-age").first).to_contain_text("30 days")
    check_page(browse, "partner-stock")

    # A name that is not exactly a customer's: nothing is revealed, nothing moves.
    page.get_by_label("Select ENT-DEMO-STK1-0007").check()
    page.get_by_label("Or a customer's exact name").fill("Tailspin")
    page.get_by_role("button", name="Assign the ticked entitlements").click()
    expect(page.locator("#assign-customer_name-error")).to_have_text("No customer with exactly that name.")
    expect_refusal(browse, 422)
    expect(page.get_by_label("Select ENT-DEMO-STK1-0007")).to_be_checked()
    browse.snap("stock-no-such-customer")

    # A customer we serve, found with the chooser: both entitlements at once.
    page.get_by_label("Or a customer's exact name").fill("")
    page.get_by_label("Select ENT-DEMO-STK2-0008").check()
    page.get_by_label("A customer you serve").fill("fab")
    expect(page.locator("#stock-customer-choices .form-check")).to_have_count(1)
    page.get_by_label("Fabrikam Inc").check()
    browse.snap("stock-chosen")
    page.get_by_role("button", name="Assign the ticked entitlements").click()
    expect(page.locator("#toasts")).to_contain_text("Assigned 2 entitlements to Fabrikam Inc")
    expect(page.locator(".stock-row")).to_have_count(0)
    expect(page.locator("#stock-table")).to_contain_text("No entitlements in stock")
    browse.snap("stock-assigned")
    page = browse.goto("/partner/stock")
    check_page(browse, "partner-stock-empty")
    page = browse.goto("/partner/entitlements?access=sold")
    expect(page.locator(".entitlement-row", has_text="ENT-DEMO-STK1-0007")).to_contain_text("Fabrikam Inc")
