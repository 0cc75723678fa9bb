"""The customer's hierarchy, users, inbox and audit in real Chromium, signed in as demo users,
with real CSRF: every htmx interaction once, every page at desktop width and at 390 px with a
screenshot and an axe-core check (no serious or critical violation)."""

from __future__ import annotations

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect
from sqlalchemy import select

from portal.demo import DEMO_PASSWORD
from portal.extensions import db
from portal.models import Membership, Organization, User
from portal.policy import system_actor
from portal.services.orgs import move_organization
from tests.browser.test_sign_in import sign_in
from tests.factories import write_transaction

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


# What sticks out to the right of the viewport: the outermost such elements, for the message.
WIDE_ELEMENTS = """(limit) => [...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > limit + 1
                 && !(e.parentElement && e.parentElement.getBoundingClientRect().right > limit + 1))
  .slice(0, 5).map((e) => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right))"""


def check_page(browse, label: str) -> None:
    """Desktop and 390 px: a full-page screenshot of each, no sideways scrolling of the page at
    390 px, and axe-core finding no serious or critical violation."""
    page = browse.page
    for size, name in ((DESKTOP, "desktop"), (PHONE, "390px")):
        page.set_viewport_size(size)
        page.evaluate("0")
        browse.snap(f"{label}-{name}", full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= size["width"], f"{label} is {width}px wide at {size['width']}px: " + str(page.evaluate(
            WIDE_ELEMENTS, size["width"]))
        results = Axe().run(page)
        bad = [(v["id"], v["impact"], [node["target"] for node in v["nodes"]][:3])
               for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        assert bad == [], f"{label} at {name}: {bad}"
    page.set_viewport_size(DESKTOP)
    browse.assert_clean()


def expect_refusal(browse, status: int) -> None:
    """Chromium logs a 4xx answer to an htmx request as a console error: expected here."""
    browse.page.evaluate("0")
    expected = (f"status of {status} ", f"Response Status Error Code {status} ")
    browse.problems = [p for p in browse.problems if not any(e in p for e in expected)]


def toast(page, text: str):
    expect(page.locator("#toasts .toast").filter(has_text=text)).to_be_visible()


def sign_in_as(browse, email: str):
    page = sign_in(browse, email, DEMO_PASSWORD)
    page.wait_for_load_state("networkidle")
    return page


def open_panel(page, name: str):
    """Open an organization's panel in the tree (htmx loads it the first time) and return it."""
    node = page.locator(".org-node", has=page.locator(":scope > .org-node-head .org-name", has_text=re.compile(
        f"^{re.escape(name)}$")))
    if node.locator(":scope > details[open]").count() == 0:
        node.locator(":scope > details > summary").click()
    panel = node.locator(":scope > details .org-panel-content")
    expect(panel).to_be_visible()
    return panel


def tree_names(page) -> list[str]:
    return page.locator("#org-tree .org-name").all_inner_texts()


def org(name: str) -> Organization:
    db.session.rollback()
    return db.session.scalar(select(Organization).where(Organization.name == name))


def test_hierarchy_edits_in_place(browse, demo):
    page = sign_in_as(browse, "admin@contoso.example")
    page = browse.goto("/customer/organization")
    expect(page.locator("#area-nav .nav-link[aria-current=page]")).to_have_text("Organization")
    assert tree_names(page) == ["Contoso Group", "Contoso Germany", "Contoso Munich Plant", "Contoso USA"]
    check_page(browse, "organization")

    # Add a site under Contoso USA.
    panel = open_panel(page, "Contoso USA")
    browse.snap("organization-panel-open")
    panel.get_by_label("Name of the subsidiary or site").fill("Contoso Boston Site")
    panel.get_by_role("button", name="Add under Contoso USA").click()
    toast(page, "Added Contoso Boston Site under Contoso USA.")
    expect(page.locator("#org-tree .org-name")).to_have_text(
        ["Contoso Group", "Contoso Germany", "Contoso Munich Plant", "Contoso USA", "Contoso Boston Site"])
    assert org("Contoso Boston Site").parent_id == demo["Contoso USA"].id

    # Rename it, with contacts.
    panel = open_panel(page, "Contoso Boston Site")
    panel.get_by_label("Name", exact=True).fill("Contoso Boston Office")
    panel.get_by_label("Notification contacts").fill("boston-it@contoso.example")
    panel.get_by_role("button", name="Save Contoso Boston Site").click()
    toast(page, "Renamed Contoso Boston Site to Contoso Boston Office.")
    expect(page.locator("#org-tree")).to_contain_text("Contoso Boston Office")
    assert org("Contoso Boston Office").notification_emails == "boston-it@contoso.example"

    # A bad address is refused next to its field; nothing changes.
    panel = page.locator(".org-panel[open] .org-panel-content")
    panel.get_by_label("Email").fill("not an address")
    panel.get_by_role("button", name="Save Contoso Boston Office").click()
    error = page.locator(".org-panel[open] .field", has=page.get_by_label("Email")).locator(".error")
    expect(error).to_have_text("Enter a valid email address.")
    expect_refusal(browse, 422)
    assert org("Contoso Boston Office").email is None
    browse.snap("organization-field-error")

    # Move it under Contoso Germany.
    panel = page.locator(".org-panel[open] .org-panel-content")
    panel.get_by_label("New parent organization").select_option(label="— Contoso Germany")
    panel.get_by_role("button", name="Move Contoso Boston Office").click()
    toast(page, "Moved Contoso Boston Office under Contoso Germany.")
    expect(page.locator("#org-tree .org-name")).to_have_text(
        ["Contoso Group", "Contoso Germany", "Contoso Boston Office", "Contoso Munich Plant", "Contoso USA"])
    assert org("Contoso Boston Office").parent_id == demo["Contoso Germany"].id

    # Delete it, after confirming.
    panel = page.locator(".org-panel[open] .org-panel-content")
    page.once("dialog", lambda dialog: dialog.accept() if "Delete Contoso Boston Office?" in dialog.message
              else dialog.dismiss())
    panel.get_by_role("button", name="Delete Contoso Boston Office").click()
    toast(page, "Deleted Contoso Boston Office.")
    expect(page.locator("#org-tree .org-name")).to_have_text(
        ["Contoso Group", "Contoso Germany", "Contoso Munich Plant", "Contoso USA"])
    assert org("Contoso Boston Office") is None

    # Deleting what is not empty says why, next to the button.
    panel = open_panel(page, "Contoso Germany")
    page.once("dialog", lambda dialog: dialog.accept())
    panel.get_by_role("button", name="Delete Contoso Germany").click()
    refusal = page.locator(f"#delete-{demo['Contoso Germany'].id}-refusal")
    expect(refusal).to_have_text("Contoso Germany cannot be deleted: Move or delete its subsidiaries first.")
    toast(page, "Contoso Germany cannot be deleted")
    expect_refusal(browse, 422)
    assert org("Contoso Germany") is not None
    browse.snap("organization-delete-refused")


def test_a_move_under_its_own_descendant_is_refused(browse, demo):
    """The page offers no such move; a page that went stale meanwhile still cannot make one."""
    page = sign_in_as(browse, "admin@contoso.example")
    page = browse.goto("/customer/organization")
    panel = open_panel(page, "Contoso Germany")
    options = panel.get_by_label("New parent organization").locator("option").all_inner_texts()
    assert options == ["Choose…", "— Contoso USA"]  # not itself, not Munich, not its parent
    # Meanwhile another admin moves Contoso USA under Contoso Germany.
    write_transaction()
    move_organization(system_actor(demo["Acme Software"]), org("Contoso USA"), org("Contoso Germany"))
    db.session.commit()
    panel.get_by_label("New parent organization").select_option(label="— Contoso USA")
    panel.get_by_role("button", name="Move Contoso Germany").click()
    error = page.locator(".org-panel[open] .field", has=page.get_by_label("New parent organization")).locator(".error")
    expect(error).to_have_text("An organization cannot move under itself or its own descendants.")
    expect(page.get_by_label("New parent organization")).to_have_attribute("aria-invalid", "true")
    expect_refusal(browse, 422)
    assert org("Contoso Germany").parent_id == demo["Contoso Group"].id
    assert org("Contoso USA").parent_id == demo["Contoso Germany"].id
    browse.snap("organization-move-refused")


def test_organization_page_of_one_organization_and_for_a_member(browse, demo):
    sign_in_as(browse, "admin@contoso.example")
    page = browse.goto(f"/customer/organization/{demo['Contoso Germany'].id}")
    expect(page.locator(".breadcrumb")).to_contain_text("Organization")
    expect(page.locator("main h1")).to_have_text("Contoso Germany")
    check_page(browse, "organization-detail")
    browse.submit(page.get_by_role("button", name="Sign out"))
    page = sign_in_as(browse, "it@contoso-de.example")
    page = browse.goto("/customer/organization")
    assert tree_names(page) == ["Contoso Germany", "Contoso Munich Plant"]
    panel = open_panel(page, "Contoso Germany")
    expect(panel.locator("form")).to_have_count(0)
    expect(panel).to_contain_text("it@contoso-de.example")
    check_page(browse, "organization-member")


def test_invite_change_role_remove_and_decide_a_join_request(browse, demo):
    page = sign_in_as(browse, "admin@contoso.example")
    page = browse.goto("/customer/users")
    expect(page.locator("#members-summary")).to_have_text("2 members")
    check_page(browse, "users")

    # Invite: the link goes out by mail, never onto the page.
    form = page.locator("#invite-form")
    form.get_by_label("Email").fill("not-an-address")
    form.get_by_role("button", name="Send the invitation").click()
    expect(page.locator("#invite-email-error")).to_contain_text("Enter a valid email address")
    expect_refusal(browse, 422)
    form = page.locator("#invite-form")
    form.get_by_label("Email").fill("new.engineer@contoso.example")
    form.get_by_label("Organization").select_option(label="— Contoso Germany")
    form.get_by_label("Role").select_option("member")
    form.get_by_role("button", name="Send the invitation").click()
    toast(page, "Invited new.engineer@contoso.example to Contoso Germany as member.")
    expect(page.locator(".invitation-row")).to_have_count(1)
    expect(page.locator(".invitation-row")).to_contain_text("new.engineer@contoso.example")
    assert "/invitations/" not in page.content()

    # Change a role.
    row = page.locator(".member-row", has_text="it@contoso-de.example")
    row.get_by_label("Role of it@contoso-de.example in Contoso Germany").select_option("admin")
    row.get_by_role("button", name="Change role of it@contoso-de.example").click()
    toast(page, "it@contoso-de.example is now admin of Contoso Germany.")
    expect(page.locator(".member-row", has_text="it@contoso-de.example").locator(".member-role")).to_have_text("Admin")

    # Decide Nina's request to join (the demo's pending join_org).
    request = page.locator(".join-request", has_text="Nina Newhire")
    request.get_by_label("Note to Nina Newhire").fill("Welcome to the design team")
    request.get_by_role("button", name="Approve Nina Newhire's request").click()
    toast(page, "Nina Newhire joined Contoso Group as member.")
    expect(page.locator(".join-request")).to_have_count(0)
    expect(page.locator("#members-summary")).to_have_text("3 members")
    browse.snap("users-after-join")

    # Remove someone, after confirming.
    page.once("dialog", lambda dialog: dialog.accept() if "They lose access at once." in dialog.message
              else dialog.dismiss())
    page.get_by_role("button", name="Remove it@contoso-de.example from Contoso Germany").click()
    toast(page, "Removed it@contoso-de.example from Contoso Germany.")
    expect(page.locator("#members-summary")).to_have_text("2 members")
    expect(page.locator(".member-row", has_text="it@contoso-de.example")).to_have_count(0)
    db.session.rollback()
    emails = set(db.session.scalars(select(User.email).join(Membership).where(
        Membership.org_id.in_([demo["Contoso Group"].id, demo["Contoso Germany"].id]))))
    assert emails == {"admin@contoso.example", "newhire@contoso.example"}
    check_page(browse, "users-after-changes")


def test_a_member_sees_users_without_forms(browse, demo):
    page = sign_in_as(browse, "it@contoso-de.example")
    page = browse.goto("/customer/users")
    expect(page.locator(".member-row")).to_have_count(1)
    expect(page.locator("#invite-form")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Change role|Remove"))).to_have_count(0)
    expect(page.locator("#area-nav")).not_to_contain_text("Audit")
    check_page(browse, "users-member")


def test_inbox_mark_one_and_all_read(browse, demo, make):
    code = "ENT-DEMO-CDE1-0001"
    bluesky = {"name": "BlueSky Resellers", "email": "hello@bluesky.example", "phone": "+1 555 0300",
               "website": "https://bluesky.example"}
    make.message(demo["Contoso Germany"], "Acme Studio 5.1.1 security patch", "security_patch",
                 content=[{"code": code, "partners": [bluesky]}],
                 body="A file-parsing flaw is fixed in 5.1.1.\nInstall it on every workstation.")
    make.message(demo["Contoso Group"], "Acme Studio 5.1 service pack", "service_pack")
    make.message(demo["Contoso USA"], "Acme Cloud Sync maintenance window", "general")
    make.message(demo["Fabrikam Inc"], "Fabrikam's own notice", "critical")  # not ours
    page = sign_in_as(browse, "admin@contoso.example")
    expect(page.locator("#inbox-unread")).to_have_text("3 unread")
    page = browse.goto("/customer/inbox")
    expect(page.locator(".message-row")).to_have_count(3)
    expect(page.locator("main")).not_to_contain_text("Fabrikam")
    check_page(browse, "inbox")

    row = page.locator(".message-row", has_text="Acme Studio 5.1 service pack")
    row.get_by_role("button", name="Mark as read: Acme Studio 5.1 service pack").click()
    toast(page, "Marked “Acme Studio 5.1 service pack” as read.")
    expect(page.locator("#inbox-unread")).to_have_text("2 unread")
    expect(page.locator(".message-row.unread")).to_have_count(2)

    page.get_by_role("link", name="Acme Studio 5.1.1 security patch").click()
    expect(page.locator("main h1")).to_have_text("Acme Studio 5.1.1 security patch")
    expect(page.locator(".affected")).to_contain_text(code)
    expect(page.locator(".partner-contact")).to_contain_text("hello@bluesky.example")
    check_page(browse, "inbox-message")
    page = browse.submit(page.get_by_role("button", name="Mark as read"))
    expect(page.locator("#message-state")).to_contain_text("Read")
    expect(page.locator("#inbox-unread")).to_have_text("1 unread")

    page = browse.goto("/customer/inbox")
    page.get_by_role("button", name="Mark all as read").click()
    toast(page, "Marked 1 message as read.")
    expect(page.locator("#inbox-unread")).to_have_text("")
    expect(page.locator(".message-row.unread")).to_have_count(0)
    # Another user of Contoso still has everything unread.
    browse.submit(page.get_by_role("button", name="Sign out"))
    page = sign_in_as(browse, "it@contoso-de.example")
    expect(page.locator("#inbox-unread")).to_have_text("1 unread")


def test_audit_names_partners_on_our_behalf_and_filters_in_the_url(browse, demo):
    page = sign_in_as(browse, "admin@contoso.example")
    page = browse.goto("/customer/audit")
    who = page.locator(".audit-who")
    expect(who.filter(has_text="Ian Initech of Initech Services on behalf of Contoso Germany")).to_have_count(1)
    check_page(browse, "audit")
    page.get_by_label("Action").select_option(label="Seats activated")
    expect(page).to_have_url(re.compile(r"/customer/audit\?.*action=activation\.create"))
    expect(page.locator(".audit-row")).to_have_count(4)
    expect(page.locator("#audit-summary")).to_have_text("4 events")
    page.get_by_label("Who").fill("initech")
    expect(page.locator("#audit-summary")).to_have_text("1 event matching “initech”")
    expect(page).to_have_url(re.compile(r"q=initech"))
    expect(page.locator("#audit-csv")).to_have_attribute("href", re.compile(r"audit\.csv\?q=initech&action="))
    browse.snap("audit-filtered")
    page.go_back()
    expect(page.locator("#audit-summary")).to_have_text("4 events")
