"""Notifications in real Chromium on the demo story: producer staff compose a security patch
for Acme Studio 5.1.1, preview it (who, how many, the exact message of a chosen customer), send
it and watch the job's progress while the worker expands it; customers read it in their inbox,
an admin acknowledges it, and an admin turns off the email of optional kinds; a partner asks for
copies. Every page is also checked at 390 px and with axe-core (``check_page``).
"""

from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import select

from portal.extensions import db
from portal.models import Notification, NotificationMessage, NotificationPreference, Product, Release
from portal.policy import system_actor
from portal.services import notifications as notices
from tests.browser.test_customer_portal import check_page, sign_in_as

TITLE = "Studio 5.1.1 fixes a file-parsing vulnerability"


def _sent_patch(demo) -> Notification:
    """A security patch for Acme Studio 5.1.1, sent and fanned out as the worker does it."""
    staff = system_actor(demo["Acme Software"])
    studio = db.session.scalar(select(Product).where(Product.sku == "ACME-STUDIO"))
    release = db.session.scalar(select(Release).where(Release.version == "5.1.1"))
    notification = notices.compose(staff, kind="security_patch", title=TITLE, body="Install **5.1.1** now.",
                                   product=studio, release=release)
    notices.send(staff, notification)
    db.session.commit()
    notices.run_jobs()
    return notification


def test_staff_compose_preview_send_and_follow_the_progress(browse, demo):
    page = sign_in_as(browse, "staff@acme.example")
    page.get_by_role("link", name="Notifications").click()
    expect(page.get_by_role("heading", name="Notifications", level=1)).to_be_visible()
    page.get_by_role("link", name="Compose a notification").click()
    check_page(browse, "compose")

    page.get_by_label("Kind", exact=True).select_option("security_patch")
    page.get_by_label("Title", exact=True).fill(TITLE)
    page.get_by_label("Message", exact=True).fill("Install **5.1.1** now.")
    page.get_by_label("Product", exact=True).select_option(label="Acme Studio")
    page.get_by_label(re.compile("^Release")).select_option(label="5.1.1 (security patch)")
    browse.submit(page.get_by_role("button", name="Save and preview"))

    expect(page.locator("#preview-organizations")).to_have_text("3")
    expect(page.locator("#preview-emails")).to_have_text("3")
    expect(page.locator(".message-body strong")).to_have_text("5.1.1")  # the Markdown, rendered
    page.get_by_label("See the message of a customer (its exact name)").fill("Fabrikam Inc")
    browse.submit(page.get_by_role("button", name="Show its message"))
    preview = page.locator("#preview-message")
    expect(preview).to_contain_text("What Fabrikam Inc gets")
    expect(preview.locator(".preview-entitlement")).to_have_count(1)
    expect(preview).to_contain_text("ENT-DEMO-FAB2-0005")
    expect(preview).to_contain_text("BlueSky Resellers")
    expect(preview).not_to_contain_text("RedRock")
    check_page(browse, "preview")

    page.get_by_label("See the message of a customer (its exact name)").fill("Nobody Ltd")
    browse.submit(page.get_by_role("button", name="Show its message"))
    expect(page.locator("#preview-customer-error")).to_have_text("No customer organization has exactly that name.")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Send to 3 organizations").click()
    expect(page.locator("#progress")).to_contain_text("Checking every message")
    db.session.rollback()  # a fresh snapshot: the server wrote it
    notification = db.session.scalar(select(Notification).where(Notification.title == TITLE))
    assert notification.state == "checking"  # the page queued a job; the worker does the rest

    notices.run_jobs()  # the worker's turn; the open page polls and shows the result
    expect(page.locator("#progress")).to_contain_text("Sent to 3 organizations", timeout=10_000)
    expect(page.locator("#count-queued")).to_have_text("3")
    expect(page.locator(".recipient-row")).to_have_count(3)
    expect(page.locator("#recipients")).to_contain_text("it@fabrikam.example")
    check_page(browse, "sent")

    page.get_by_role("link", name="Notifications").first.click()
    expect(page.locator(".notification-row")).to_have_count(1)


def test_a_customer_admin_reads_and_acknowledges_a_member_waits(browse, demo):
    _sent_patch(demo)
    page = sign_in_as(browse, "admin@fabrikam.example")
    page.get_by_role("link", name=re.compile("^Inbox")).click()
    page.get_by_role("link", name=TITLE).click()
    expect(page.locator(".affected")).to_have_count(1)
    expect(page.locator(".affected")).to_contain_text("BlueSky Resellers")
    expect(page.locator("main")).not_to_contain_text("RedRock")
    check_page(browse, "message-to-acknowledge")
    page.get_by_role("button", name=f"Acknowledge “{TITLE}” for Fabrikam Inc").click()
    expect(page.locator("#acknowledged")).to_contain_text("Acknowledged by")
    db.session.rollback()
    message = db.session.scalar(
        select(NotificationMessage).where(NotificationMessage.org_id == demo["Fabrikam Inc"].id))
    assert message.acknowledged_at is not None


def test_a_member_sees_the_notice_but_cannot_acknowledge_it(browse, demo):
    _sent_patch(demo)
    page = sign_in_as(browse, "it@contoso-de.example")
    page.get_by_role("link", name=re.compile("^Inbox")).click()
    page.get_by_role("link", name=TITLE).click()
    expect(page.locator("#acknowledged")).to_have_text(
        "Waiting for an administrator of your organization to acknowledge it.")
    expect(page.get_by_role("button", name=re.compile("^Acknowledge"))).to_have_count(0)
    expect(page.locator(".affected")).to_contain_text("Initech Services")


def test_a_customer_admin_turns_off_email_of_service_packs(browse, demo):
    page = sign_in_as(browse, "admin@fabrikam.example")
    browse.goto("/customer/inbox")
    page.get_by_role("link", name="Choose which come by email").click()
    expect(page.get_by_label("Security patch")).to_be_disabled()
    page.get_by_label("Service pack").uncheck()
    browse.submit(page.get_by_role("button", name="Save"))
    expect(page.get_by_label("Service pack")).not_to_be_checked()
    expect(page.get_by_label("General notice")).to_be_checked()
    check_page(browse, "email-settings")
    db.session.rollback()
    preference = db.session.get(NotificationPreference, (demo["Fabrikam Inc"].id, "service_pack"))
    assert preference is not None and preference.email is False


def test_a_partner_asks_for_copies(browse, demo):
    page = sign_in_as(browse, "admin@bluesky.example")
    page.get_by_role("link", name="Notices").click()
    page.get_by_label("Security patch").check()
    browse.submit(page.get_by_role("button", name="Save"))
    expect(page.get_by_label("Security patch")).to_be_checked()
    check_page(browse, "partner-copies")
    db.session.rollback()
    preference = db.session.get(NotificationPreference, (demo["BlueSky Resellers"].id, "security_patch"))
    assert preference is not None and preference.partner_copy is True
