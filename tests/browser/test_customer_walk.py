"""The single pane's unread notifications, "who can see this" on the entitlement's page, and a
walk through every customer page as the demo's Contoso admin and Contoso Germany's member, at
desktop width and at 390 px: axe-core finds no serious or critical violation, nothing sticks out
sideways (tables scroll inside their card), the top bar stays whole.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_customer_portal import DESKTOP, PHONE, STUDIO, check_page, sign_in_as


@pytest.fixture
def messages(demo, make):
    """Three unread notices to Contoso's tree, one to Fabrikam (not ours)."""
    return {
        "patch": make.message(demo["Contoso Germany"], "Acme Studio 5.1.1 security patch", "security_patch"),
        "sp": make.message(demo["Contoso Group"], "Acme Studio 5.1 service pack", "service_pack"),
        "sync": make.message(demo["Contoso USA"], "Acme Cloud Sync maintenance window", "general"),
        "decoy": make.message(demo["Fabrikam Inc"], "Fabrikam's own notice", "critical"),
    }


def test_unread_notifications_panel_links_to_the_unread_inbox_and_each_message(browse, messages):
    page = sign_in_as(browse, "admin@contoso.example")
    panel = page.locator("#panel-inbox")
    expect(panel).not_to_have_attribute("aria-busy", "true")
    expect(page.locator("#unread-count")).to_contain_text("3 unread messages")
    expect(panel.locator(".unread-message a")).to_have_text(
        ["Acme Cloud Sync maintenance window", "Acme Studio 5.1 service pack", "Acme Studio 5.1.1 security patch"])
    expect(panel).not_to_contain_text("Fabrikam")
    check_page(browse, "single-pane-unread")

    page.locator("#unread-count").click()
    expect(page).to_have_url(re.compile(r"/customer/inbox\?state=unread$"))
    expect(page.locator(".message-row.unread")).to_have_count(3)
    expect(page.get_by_label("Read or unread")).to_have_value("unread")
    page.go_back()
    page.wait_for_load_state("networkidle")
    page.locator("#panel-inbox").get_by_role("link", name="Acme Studio 5.1 service pack").click()
    expect(page.locator("main h1")).to_have_text("Acme Studio 5.1 service pack")
    page = browse.submit(page.get_by_role("button", name="Mark as read"))
    page = browse.goto("/customer/")
    page.wait_for_load_state("networkidle")
    expect(page.locator("#unread-count")).to_contain_text("2 unread messages")
    expect(page.locator("#panel-inbox .unread-message")).to_have_count(2)
    browse.assert_clean()


def test_who_can_see_this_loads_on_the_entitlement_page(browse, demo):
    page = sign_in_as(browse, "admin@contoso.example")
    with page.expect_response(lambda r: r.url.endswith(f"/customer/entitlements/{STUDIO}/visibility")
                              and r.request.headers.get("hx-request") == "true") as answer:
        page.goto(f"/customer/entitlements/{STUDIO}")
    assert answer.value.status == 200
    panel = page.locator("#visibility")
    expect(panel).not_to_have_attribute("aria-busy", "true")
    expect(panel.locator(".parties-hierarchy .party")).to_have_count(2)  # Contoso Group above, Germany owns it
    expect(panel.locator(".parties-hierarchy")).to_contain_text("Contoso Germany owns it")
    expect(panel.locator(".parties-partners")).to_contain_text("Initech Services")
    expect(panel).to_contain_text("runs the portal")
    expect(page.locator("#visibility-link")).to_have_count(0)  # the placeholder was replaced
    check_page(browse, "entitlement-with-visibility")
    # The member of Contoso Germany: the same parties, without the admin's button.
    browse.submit(page.get_by_role("button", name="Sign out"))
    page = sign_in_as(browse, "it@contoso-de.example")
    page.goto(f"/customer/entitlements/{STUDIO}")
    expect(page.locator("#visibility .parties-hierarchy .party")).to_have_count(2)
    expect(page.locator("#visibility")).not_to_contain_text("Attach or revoke partners")
    browse.assert_clean()


def test_who_can_see_this_without_javascript_is_a_link_to_its_page(browser, base_url, demo):
    context = browser.new_context(base_url=base_url, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Email").fill("admin@contoso.example")
        from portal.demo import DEMO_PASSWORD

        page.get_by_label("Password").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.goto(f"/customer/entitlements/{STUDIO}")
        page.locator("#visibility-link").click()
        expect(page).to_have_url(re.compile(rf"/customer/entitlements/{STUDIO}/visibility$"))
        expect(page.locator("main h1")).to_have_text(STUDIO)
        expect(page.locator("#visibility .parties-hierarchy .party")).to_have_count(2)
    finally:
        context.close()


PAGES = ["/customer/", "/customer/entitlements", f"/customer/entitlements/{STUDIO}",
         f"/customer/entitlements/{STUDIO}/visibility", "/customer/partners", "/customer/requests",
         "/customer/organization", "/customer/users", "/customer/inbox", "/customer/inbox?state=unread",
         "/customer/panels/inbox"]
ADMIN_ONLY = ["/customer/audit"]


@pytest.mark.parametrize("email", ["admin@contoso.example", "it@contoso-de.example"])
def test_walk_every_customer_page_at_desktop_and_390_px(browse, messages, demo, email):
    page = sign_in_as(browse, email)
    who = email.split("@")[0]
    pages = [*PAGES, f"/customer/organization/{demo['Contoso Germany'].id}",
             f"/customer/inbox/{messages['patch'].id}"]
    if who == "admin":
        pages += ADMIN_ONLY
    for path in pages:
        page = browse.goto(path)
        page.wait_for_load_state("networkidle")
        label = re.sub(r"[^a-z0-9]+", "-", path.lower().removeprefix("/customer")).strip("-") or "home"
        check_page(browse, f"{who}-{label}")
        # The top bar keeps one row of its own at 390 px: the brand and the menu button side by side.
        page.set_viewport_size(PHONE)
        brand, toggler = page.locator(".navbar-brand").first, page.locator(".navbar-toggler").first
        if toggler.count() and toggler.is_visible():
            assert abs(brand.bounding_box()["y"] - toggler.bounding_box()["y"]) < 24, path
        page.set_viewport_size(DESKTOP)
    browse.assert_clean()
