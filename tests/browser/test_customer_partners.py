"""The customer's partner and request pages in real Chromium, signed in as demo users: attach a
partner to two entitlements, change what an attachment allows, revoke the seller (with its
confirmation), invite a partner that is not on the portal, decide requests addressed to us, ask
for a transfer and withdraw it. Every page at desktop and phone width, checked by axe-core.

Each interaction is checked where it lands: the page (htmx swapped the part in place, a toast
said what happened) and the database (through the policy, or the rows themselves).
"""

from __future__ import annotations

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect
from sqlalchemy import select

from portal import policy
from portal.demo import DEMO_PASSWORD
from portal.extensions import db
from portal.models import Attachment, Entitlement, Invitation, Organization, OutboxEmail, PortalRequest, User
from portal.services.requests import decide_request
from tests.browser.test_sign_in import sign_in

pytestmark = pytest.mark.browser

CDE1, CUS1, CGR1, FAB2 = "ENT-DEMO-CDE1-0001", "ENT-DEMO-CUS1-0002", "ENT-DEMO-CGR1-0003", "ENT-DEMO-FAB2-0005"


def _fresh():
    """What the live server committed, not what this thread's session remembers."""
    db.session.rollback()
    db.session.expire_all()


def _entitlement(code: str) -> Entitlement:
    return db.session.scalar(select(Entitlement).where(Entitlement.code == code))


def _live(code: str) -> dict[str, tuple[str, list[str]]]:
    """partner name -> (relation, permissions) of the live attachments of an entitlement."""
    _fresh()
    rows = db.session.scalars(select(Attachment).where(Attachment.entitlement_id == _entitlement(code).id,
                                                       Attachment.active.is_(True)))
    return {a.partner.name: (a.relation, a.permissions) for a in rows}


def _toast(page):
    return page.locator("#toasts .toast").last


def _row(page, partner: str, code: str):
    return page.locator(".attachment-row").filter(has_text=partner).filter(has_text=code)


def test_attach_a_partner_to_two_entitlements(browse, demo):
    page = sign_in(browse, "admin@contoso.example", DEMO_PASSWORD)
    browse.goto("/customer/partners")
    expect(page.get_by_role("link", name="Partners", exact=True)).to_have_attribute("aria-current", "page")
    form = page.locator("#attach-form")
    form.get_by_label("Partner").select_option(label="Initech Services (service provider)")
    form.get_by_label("Download").check()
    # Find the first entitlement, tick it, find the second: the first stays ticked.
    with page.expect_response(lambda r: "/customer/partners/choices" in r.url):
        form.get_by_label("Find").fill("Cloud Sync")
    form.get_by_label(re.compile(CUS1)).check()
    with page.expect_response(lambda r: "/customer/partners/choices" in r.url):
        form.get_by_label("Find").fill("CGR1")
    expect(form.locator(".choices-summary")).to_have_text("1 entitlement matches “CGR1”.")
    expect(form.get_by_label(re.compile(CUS1))).to_be_checked()
    form.get_by_label(re.compile(CGR1)).check()
    browse.snap("attach-filled")
    with page.expect_response(lambda r: r.url.endswith("/customer/partners/attach")) as answer:
        form.get_by_role("button", name="Attach").click()
    assert answer.value.status == 200
    expect(_toast(page)).to_have_text("Attached Initech Services to 2 entitlements (view and download).")
    # The table shows the new attachments in place; the form is fresh again.
    expect(_row(page, "Initech Services", CUS1)).to_have_count(1)
    expect(_row(page, "Initech Services", CGR1)).to_have_count(1)
    expect(page.locator("#attachments-summary")).to_have_text("6 attachments")
    expect(page.locator("#attach-form").get_by_label("Partner")).to_have_value("")
    browse.snap("attached")
    browse.assert_clean()
    for code in (CUS1, CGR1):
        assert _live(code)["Initech Services"] == ("services", ["view", "download"])
    initech = demo["Initech Services"]
    seen = db.session.scalars(policy.visible_entitlements(policy.Actor(user=None, org=initech, role="admin"))
                              .with_only_columns(Entitlement.code)).all()
    assert sorted(seen) == sorted([CDE1, CUS1, CGR1])


def test_attach_refuses_missing_choices_next_to_the_fields(browse, demo):
    page = sign_in(browse, "admin@contoso.example", DEMO_PASSWORD)
    browse.goto("/customer/partners")
    form = page.locator("#attach-form")
    form.get_by_label("View").uncheck()
    form.get_by_label("Activate").check()
    with page.expect_response(lambda r: r.url.endswith("/customer/partners/attach")) as answer:
        form.get_by_role("button", name="Attach").click()
    assert answer.value.status == 422
    expect(page.locator("#attach-partner-error")).to_have_text("Choose a partner.")
    expect(page.locator("#attach-entitlements-error")).to_have_text("Choose at least one entitlement.")
    expect(page.locator("#attach-view-error")).to_have_text(
        "Download and Activate need View: a partner cannot use what it cannot see.")
    expect(page.locator("#attach-partner")).to_have_attribute("aria-invalid", "true")
    browse.snap("attach-errors")
    browse.page.evaluate("0")
    browse.problems = [p for p in browse.problems if "status of 422" not in p]
    browse.assert_clean()
    assert len(_live(CDE1)) == 3 and len(_live(CUS1)) == 1


def test_change_permissions_then_revoke_the_seller(browse, demo):
    page = sign_in(browse, "admin@contoso.example", DEMO_PASSWORD)
    browse.goto("/customer/partners")
    row = _row(page, "Initech Services", CDE1)
    row.get_by_label("Activate").uncheck()
    row.get_by_role("button", name=f"Save permissions of Initech Services on {CDE1}").click()
    expect(_toast(page)).to_have_text(f"Initech Services may now view and download on {CDE1}.")
    expect(row.get_by_label("Activate")).not_to_be_checked()
    expect(row.get_by_label("Download")).to_be_checked()
    assert _live(CDE1)["Initech Services"] == ("services", ["view", "download"])

    # Revoking asks first: dismissed, nothing happens.
    seller = _row(page, "BlueSky Resellers", CDE1)
    messages = []
    page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.dismiss()))
    seller.get_by_role("button", name=f"Revoke BlueSky Resellers on {CDE1}").click()
    expect(seller.get_by_role("button", name=re.compile("Revoke"))).to_be_visible()
    assert messages == [f"Revoke BlueSky Resellers from {CDE1}? It loses access at once; the sale stays on "
                        "record for the producer."]
    assert "BlueSky Resellers" in _live(CDE1)
    # Accepted: the row says revoked, the partner sees nothing of it any more.
    page.once("dialog", lambda dialog: dialog.accept())
    seller.get_by_role("button", name=f"Revoke BlueSky Resellers on {CDE1}").click()
    expect(_toast(page)).to_have_text(f"Revoked BlueSky Resellers from {CDE1}: it has no access to it any more.")
    expect(seller).to_contain_text("Revoked")
    expect(seller.get_by_role("button")).to_have_count(0)
    browse.snap("revoked")
    assert "BlueSky Resellers" not in _live(CDE1)
    bluesky = policy.Actor(user=None, org=demo["BlueSky Resellers"], role="admin")
    assert not policy.sees_entitlement(bluesky, _entitlement(CDE1))
    assert [link.partner.name for link in _entitlement(CDE1).chain] == ["Northwind Distribution", "BlueSky Resellers"]
    browse.assert_clean()


def test_invite_a_partner_that_is_not_on_the_portal(browse, demo):
    page = sign_in(browse, "admin@contoso.example", DEMO_PASSWORD)
    browse.goto("/customer/partners")
    form = page.locator("#invite-form")
    form.get_by_label("Company name").fill("Litware Support")
    form.get_by_label("Admin's email").fill("boss@litware.example")
    form.get_by_label("Activate").check()
    form.get_by_label(re.compile(CDE1)).check()
    with page.expect_response(lambda r: r.url.endswith("/customer/partners/invite")):
        form.get_by_role("button", name="Invite partner").click()
    expect(_toast(page)).to_contain_text("Invitation of Litware Support sent to producer staff.")
    expect(page.locator("#invite-form").get_by_label("Company name")).to_have_value("")
    browse.goto("/customer/requests")
    row = page.locator(".request-row").filter(has_text="Litware Support")
    expect(row).to_contain_text("Partner invitation")
    expect(row).to_contain_text("boss@litware.example")
    expect(row).to_contain_text("Pending")
    browse.assert_clean()

    # Producer staff approve it: the partner exists, is attached as asked, its admin is invited.
    _fresh()
    req = db.session.scalar(select(PortalRequest).where(PortalRequest.kind == "partner_application",
                                                        PortalRequest.requester_org_id == demo["Contoso Group"].id))
    staff = db.session.scalar(select(User).where(User.email == "staff@acme.example"))
    decide_request(policy.Actor(user=staff, org=demo["Acme Software"], role="staff"), req, approve=True)
    db.session.commit()
    litware = db.session.scalar(select(Organization).where(Organization.name == "Litware Support"))
    assert (litware.kind, litware.status) == ("service_provider", "active")
    assert _live(CDE1)["Litware Support"] == ("services", ["view", "activate"])
    invitation = db.session.scalar(select(Invitation).where(Invitation.org_id == litware.id))
    assert (invitation.email, invitation.role) == ("boss@litware.example", "admin")
    assert db.session.scalar(select(OutboxEmail).where(OutboxEmail.to_addr == "boss@litware.example")) is not None
    browse.goto("/customer/requests")
    expect(page.locator(".request-row").filter(has_text="Litware Support")).to_contain_text("Approved")


def test_decide_a_partner_access_request_addressed_to_us(browse, demo):
    page = sign_in(browse, "admin@fabrikam.example", DEMO_PASSWORD)
    browse.goto("/customer/partners")
    card = page.locator(".request-card").filter(has_text="RedRock IT asks for access")
    expect(card).to_contain_text(FAB2)
    expect(card).to_contain_text("View, Download")
    card.get_by_label("Note to RedRock IT").fill("Welcome aboard.")
    card.get_by_role("button", name="Approve the request of RedRock IT").click()
    expect(_toast(page)).to_contain_text("Approved: RedRock IT is attached")
    expect(card).to_contain_text("Approved")
    expect(card).to_contain_text("Welcome aboard.")
    expect(card.get_by_role("button")).to_have_count(0)
    # The table of attached partners shows the new attachment in place.
    expect(_row(page, "RedRock IT", FAB2)).to_contain_text("Services")
    browse.snap("access-approved")
    browse.assert_clean()
    assert _live(FAB2)["RedRock IT"] == ("services", ["view", "download"])
    mail = db.session.scalar(select(OutboxEmail).where(OutboxEmail.to_addr == "admin@redrock.example"))
    assert "approved" in mail.subject and "Welcome aboard." in mail.body_text


def test_reject_a_join_request_on_the_requests_page(browse, demo):
    page = sign_in(browse, "admin@contoso.example", DEMO_PASSWORD)
    browse.goto("/customer/requests")
    card = page.locator(".request-card").filter(has_text="Nina Newhire asks to join Contoso Group")
    card.get_by_label("Note to Nina Newhire").fill("Please ask your manager to invite you.")
    card.get_by_role("button", name="Reject the request of Nina Newhire").click()
    expect(_toast(page)).to_have_text("Rejected the request of Nina Newhire; they are told by mail.")
    expect(card).to_contain_text("Rejected")
    expect(page.locator(".request-row").filter(has_text="Nina Newhire")).to_contain_text("Rejected")
    browse.assert_clean()
    _fresh()
    req = db.session.scalar(select(PortalRequest).where(PortalRequest.kind == "join_org"))
    assert (req.state, req.decision_note) == ("rejected", "Please ask your manager to invite you.")


def test_ask_for_a_transfer_then_withdraw_it(browse, demo):
    page = sign_in(browse, "admin@contoso.example", DEMO_PASSWORD)
    browse.goto("/customer/requests")
    form = page.locator("#transfer-form")
    form.get_by_label("Entitlement code").fill(CUS1.lower())
    form.get_by_label("Recipient organization").fill("contoso germany")
    form.get_by_role("button", name="Ask for the transfer").click()
    expect(page.locator("#transfer-recipient-error")).to_contain_text("No customer organization outside your own")
    form = page.locator("#transfer-form")
    form.get_by_label("Recipient organization").fill("  tailspin toys ")
    form.get_by_label("Message to producer staff").fill("Tailspin bought our US sync business.")
    form.get_by_role("button", name="Ask for the transfer").click()
    expect(_toast(page)).to_contain_text(f"Asked producer staff to transfer {CUS1} to Tailspin Toys.")
    # A fresh form: the earlier error is gone with its red border.
    expect(page.locator("#transfer-recipient")).not_to_have_class(re.compile("is-invalid"))
    expect(page.locator("#transfer-recipient-error")).to_have_count(0)
    row = page.locator(".request-row").filter(has_text=CUS1)
    expect(row).to_contain_text("Pending")
    expect(page.locator(".request-row").first).to_contain_text(CUS1)  # newest first, table reset in place
    browse.snap("transfer-asked")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name=re.compile("Withdraw request")).click()
    expect(_toast(page)).to_contain_text("Withdrew your transfer request")
    expect(page.locator(".request-row").filter(has_text=CUS1)).to_contain_text("Withdrawn")
    browse.page.evaluate("0")
    browse.problems = [p for p in browse.problems if "status of 422" not in p]
    browse.assert_clean()
    _fresh()
    req = db.session.scalar(select(PortalRequest).where(PortalRequest.entitlement_id == _entitlement(CUS1).id))
    assert (req.state, req.target_org.name, req.message) == ("withdrawn", "Tailspin Toys",
                                                           "Tailspin bought our US sync business.")
    assert _entitlement(CUS1).owner.name == "Contoso USA"


PAGES = {
    "partners": "/customer/partners",
    "requests": "/customer/requests",
    "visibility": f"/customer/entitlements/{CDE1}/visibility",
}


@pytest.mark.parametrize("email", ["admin@contoso.example", "it@contoso-de.example"])
def test_every_page_at_desktop_and_phone_width_passes_axe(browse, demo, email):
    page = sign_in(browse, email, DEMO_PASSWORD)
    axe = Axe()
    who = email.split("@")[0]
    for name, path in PAGES.items():
        for width, height in ((1280, 900), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            browse.goto(path)
            browse.snap(f"{name}-{who}-{width}", full_page=True)
            # Nothing sticks out sideways on a phone: wide tables scroll inside their card.
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), f"{path} at {width}"
            results = axe.run(page)
            serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
                       for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
            assert serious == [], f"{path} at {width} px as {email}: {serious}"
    browse.assert_clean()
