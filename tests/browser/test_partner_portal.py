"""The partner portal in real Chromium, signed in as the demo's partners: switching the customer
worked for from the top bar (shown on every page, back to all customers), asking a customer for
access and withdrawing the request in place, the reports with their chart; every page also at
390 px wide and checked with axe-core.

Demo story (portal/demo.py): BlueSky Resellers (stocking, supplied by Northwind) serves Contoso
Germany, Fabrikam Inc and Tailspin Toys; two Acme Studio entitlements wait in its stock.
"""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.test_customer_portal import check_page, sign_in_as

PAGES = ["/partner/customers", "/partner/requests", "/partner/organization", "/partner/reports"]


def test_switch_customers_from_the_top_bar_on_every_page(browse, demo):
    page = sign_in_as(browse, "admin@bluesky.example")
    expect(page).to_have_url(re.compile(r"/partner/$"))
    for panel in ("customers", "expiring", "stock", "requests"):
        expect(page.locator(f"#panel-{panel}")).not_to_have_attribute("aria-busy", "true")
    expect(page.locator("#customer-count")).to_have_text("3")
    expect(page.locator("#working-for")).to_have_text(re.compile(r"Working for\s+all customers I serve"))
    expect(page.locator("#panel-stock")).to_contain_text("2 entitlements in stock")
    check_page(browse, "partner-home")

    # The chooser loads a few customers when opened; a search by a parent company's name finds its subsidiary.
    with page.expect_request(lambda r: "/partner/customers/choose" in r.url and r.headers.get("hx-request") == "true"):
        page.locator("#customer-chooser summary").click()
    expect(page.locator(".chooser-choice")).to_have_count(3)
    page.get_by_label("Find a customer to work for").fill("contoso group")
    expect(page.locator(".chooser-choice")).to_have_count(1)
    expect(page.locator(".chooser-choice")).to_contain_text("Contoso Group > Contoso Germany")
    browse.snap("chooser-open")
    browse.submit(page.locator(".chooser-choice").first)
    expect(page).to_have_url(re.compile(r"/partner/$"))
    page.wait_for_load_state("networkidle")
    expect(page.locator("#working-for")).to_have_text(re.compile(r"Working for\s+Contoso Germany"))
    expect(page.locator("#customer-count")).to_have_text("1")
    expect(page.locator("#entitlement-count")).to_have_text("1")
    expect(page.locator("#panel-stock")).to_contain_text("2 entitlements in stock")  # our own, whoever we work for

    for path in PAGES:
        page = browse.goto(path)
        expect(page.locator("#working-for")).to_have_text(re.compile(r"Working for\s+Contoso Germany"))
    # The customers list marks the one worked for; back to all customers from the top bar, staying here.
    page = browse.goto("/partner/customers")
    expect(page.locator("tr[aria-current=true] .customer-name")).to_have_text("Contoso Germany")
    check_page(browse, "partner-customers-working-for")
    browse.submit(page.locator("#all-customers"))
    expect(page).to_have_url(re.compile(r"/partner/customers$"))
    expect(page.locator("#working-for")).to_have_text(re.compile(r"Working for\s+all customers I serve"))
    expect(page.locator("tr[aria-current=true]")).to_have_count(0)

    # Work for Fabrikam from the list: the button names the customer.
    with page.expect_request(lambda r: "q=fab" in r.url and r.headers.get("hx-request") == "true"):
        page.get_by_label("Find a customer", exact=True).fill("fab")
    expect(page.locator(".customer-row")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/partner/customers\?q=fab$"))
    browse.submit(page.get_by_role("button", name="Work for Fabrikam Inc"))
    expect(page.locator("#working-for")).to_have_text(re.compile(r"Working for\s+Fabrikam Inc"))
    page.wait_for_load_state("networkidle")
    browse.assert_clean()


def test_ask_for_access_and_withdraw(browse, demo):
    page = sign_in_as(browse, "admin@bluesky.example")
    page = browse.goto("/partner/requests")
    expect(page.locator(".request-row")).to_have_count(0)
    check_page(browse, "partner-requests")
    # A name that is not exact finds nobody, and says so next to the field.
    page.get_by_label("Customer's exact name").fill("Contoso")
    page.get_by_label("Entitlement codes").fill("ENT-DEMO-CGR1-0003")
    browse.submit(page.get_by_role("button", name="Send the request"), status=422)
    expect(page.locator("#ask-customer-error")).to_contain_text("No single customer has exactly this name")
    page.get_by_label("Customer's exact name").fill("contoso group")
    page.get_by_label("Download software").check()
    browse.submit(page.get_by_role("button", name="Send the request"))
    expect(page.locator(".flash")).to_contain_text("Asked Contoso Group for access")
    row = page.locator(".request-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("ENT-DEMO-CGR1-0003")
    expect(row).to_contain_text("Pending")
    expect(row).to_contain_text("download, view")
    page.evaluate("window.__samePage = true")
    with page.expect_request(lambda r: r.url.endswith("/withdraw") and r.headers.get("hx-request") == "true"):
        page.get_by_role("button", name="Withdraw the request to Contoso Group").click()
    expect(page.locator(".request-row")).to_contain_text("Withdrawn")
    expect(page.locator("#toasts")).to_contain_text("Withdrew the request to Contoso Group")
    assert page.evaluate("window.__samePage") is True  # swapped in place
    expect(page.get_by_role("button", name=re.compile("Withdraw"))).to_have_count(0)
    browse.snap("partner-requests-withdrawn")
    browse.assert_clean()


def test_reports_with_chart_split_and_csv(browse, demo):
    page = sign_in_as(browse, "admin@northwind.example")
    page = browse.goto("/partner/reports")
    expect(page.locator("#chart-title")).to_have_text("Seats sold and activated per month")
    expect(page.locator(".period-row")).to_have_count(12)
    expect(page.locator(".split-row").first).to_contain_text("BlueSky Resellers")
    expect(page.locator("#split-table")).not_to_contain_text("RedRock")
    check_page(browse, "partner-reports")
    page.get_by_label("Per", exact=True).select_option("quarter")
    browse.submit(page.get_by_role("button", name="Show"))
    expect(page.locator(".period-row")).to_have_count(8)
    with page.expect_download() as download:
        page.locator("#report-csv").click()
    text = download.value.path().read_text(encoding="utf-8")
    assert text.startswith("period,sold_by,entitlements,seats_sold,seats_activated,activation_rate,customers")
    assert "BlueSky Resellers" in text and "RedRock" not in text
    page = browse.goto("/partner/organization")
    expect(page.locator(".member-row")).to_have_count(1)
    check_page(browse, "partner-organization")
    page = browse.goto("/partner/organization/audit")
    check_page(browse, "partner-audit")
