"""The pages that were there before the design system, in the new layouts: each at desktop
width and at 390 px, axe-core clean, the area's nav marking the current page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_customer_portal import check_page, sign_in_as


def test_sign_in_page(browse):
    browse.goto("/login")
    check_page(browse, "login")


@pytest.mark.parametrize(("email", "path", "current"), [
    ("admin@bluesky.example", "/partner/", "Overview"),
    ("admin@bluesky.example", "/partner/customers", "Customers"),
    ("admin@acme.example", "/producer/", "Overview"),
])
def test_area_pages(browse, demo, email, path, current):
    sign_in_as(browse, email)
    page = browse.goto(path)
    expect(page.locator("#area-nav .nav-link[aria-current=page]")).to_have_text(current)
    check_page(browse, path.strip("/").replace("/", "-"))


def test_partner_top_bar_names_the_customer_it_works_for(browse, demo):
    page = sign_in_as(browse, "admin@bluesky.example")
    expect(page.locator("#working-for")).to_have_text("Working for all customers I serve")
    page.locator("#customer-chooser summary").click()
    browse.submit(page.locator(".chooser-choice", has_text="Contoso Germany"))
    expect(page.locator("#working-for")).to_have_text("Working for Contoso Germany")


def test_the_nav_collapses_on_a_phone(browse, demo):
    page = sign_in_as(browse, "admin@contoso.example")
    page.set_viewport_size({"width": 390, "height": 844})
    nav = page.locator("#area-nav .nav-link", has_text="Entitlements")
    expect(nav).to_be_hidden()
    toggler = page.get_by_role("button", name="Menu")
    expect(toggler).to_have_attribute("aria-expanded", "false")
    toggler.click()
    expect(toggler).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#area-nav.show:not(.collapsing)")).to_have_count(1)  # opened, done moving
    expect(nav).to_be_visible()
    expect(page.locator(".topbar .org")).to_be_visible()
    browse.snap("nav-open-390px")
    nav.click()
    expect(page.locator("main h1")).to_have_text("Entitlements")


def test_a_missing_page_in_the_layout(browse, demo):
    sign_in_as(browse, "admin@contoso.example")
    response = browse.page.goto("/customer/entitlements/ENT-NOT-THERE")
    assert response.status == 404
    browse.page.evaluate("0")
    browse.problems = [p for p in browse.problems if "status of 404" not in p]
    expect(browse.page.locator("main h1")).to_have_text("404 · Not Found")
    check_page(browse, "not-found")
