"""The partner's "customers I serve" list: htmx search and paging in real Chromium, search in the URL."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_sign_in import sign_in
from tests.factories import PASSWORD


@pytest.fixture
def reseller_world(make):
    bluesky = make.partner("reseller", "BlueSky Resellers")
    redrock = make.partner("reseller", "RedRock IT")
    for n in range(27):
        make.entitlement(make.customer(f"Customer {n:02d}"), [bluesky])
    for name in ("Northwind Bikes", "Northern Lights Ltd", "North Star Foods"):
        make.entitlement(make.customer(name), [bluesky])
    # Decoys: RedRock's customers, one with a matching name; BlueSky must never list them.
    for name in ("Northpole Logistics", "Other Corp"):
        make.entitlement(make.customer(name), [redrock])
    user = make.user(bluesky, "admin", email="admin@bluesky.com", password=PASSWORD)
    return {"user": user}


def test_search_and_page_through_customers(browse, reseller_world):
    page = sign_in(browse, "admin@bluesky.com", PASSWORD)
    expect(page).to_have_url(re.compile(r"/partner/$"))
    expect(page.locator("#customer-count")).to_have_text("30")
    page.wait_for_load_state("networkidle")
    page = browse.goto("/partner/customers")
    expect(page.locator("#customers-summary")).to_have_text("30 customers")
    expect(page.locator(".customer-row")).to_have_count(25)
    # htmx runs under the strict CSP: no eval, no injected indicator styles.
    assert page.evaluate("[htmx.config.allowEval, htmx.config.includeIndicatorStyles]") == [False, False]

    with page.expect_request(lambda r: "/partner/customers" in r.url and r.headers.get("hx-request") == "true"):
        page.locator("#customers-next").click()
    expect(page.locator(".customer-row")).to_have_count(5)
    expect(page.locator("#customers")).to_contain_text("Page 2 of 2")
    expect(page).to_have_url(re.compile(r"/partner/customers\?page=2$"))

    page.get_by_label("Find a customer", exact=True).fill("north")
    expect(page.locator("#customers-summary")).to_have_text("3 customers matching “north”")
    expect(page.locator(".customer-row")).to_have_count(3)
    names = page.locator(".customer-row .customer-name").all_inner_texts()
    assert names == ["North Star Foods", "Northern Lights Ltd", "Northwind Bikes"]
    expect(page.locator("#customers")).not_to_contain_text("Northpole")
    expect(page).to_have_url(re.compile(r"/partner/customers\?q=north$"))
    browse.snap("customers-search")

    page.get_by_label("Find a customer", exact=True).fill("no such customer")
    expect(page.locator("#customers-summary")).to_have_text("0 customers matching “no such customer”")
    expect(page.locator(".customer-row")).to_have_count(0)
    browse.assert_clean()


def test_work_for_a_customer_from_the_list(browse, reseller_world):
    page = sign_in(browse, "admin@bluesky.com", PASSWORD)
    page.wait_for_load_state("networkidle")
    page = browse.goto("/partner/customers?q=Northwind")
    expect(page.locator(".customer-row")).to_have_count(1)
    browse.submit(page.get_by_role("button", name="Work for Northwind Bikes"))
    expect(page.locator("#entitlement-count")).to_have_text("1")
    expect(page.locator("#working-for")).to_contain_text("Northwind Bikes")
    page.wait_for_load_state("networkidle")
    browse.assert_clean()
