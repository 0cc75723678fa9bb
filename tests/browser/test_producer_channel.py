"""The producer's channel pages in real Chromium, signed in as the demo's producer staff: creating
a partner, the tiers, importing a CSV of orders with errors then without (htmx, in place), the
channel report; each page at desktop width and at 390 px, checked with axe-core."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.test_customer_portal import check_page, expect_refusal, sign_in_as

HEADER = ("customer,order_ref,purchase_date,sales_chain,fulfilment,sku,license_model,quantity,start_date,end_date,"
          "maintenance_end,usage_period,notes\n")
BAD = HEADER + (
    "Contoso Group,PW-1,2026-01-10,Northwind Distribution > BlueSky Resellers,,ACME-STUDIO,perpetual,10,,,,,\n"
    "Nobody Ltd,PW-2,2026-01-10,,,ACME-STUDIO,perpetual,1,,,,,\n"
    "Fabrikam Inc,PW-3,2026-01-10,BlueSky Resellers,,ACME-STUDIO,perpetual,2,,,,,\n"
)
GOOD = HEADER + (
    "Contoso Group,PW-1,2026-01-10,Northwind Distribution > BlueSky Resellers,,ACME-STUDIO,perpetual,10,,,,,\n"
    "Contoso Group,PW-1,2026-01-10,Northwind Distribution > BlueSky Resellers,,ACME-SYNC,subscription,5,"
    "2026-01-10,2027-01-09,,,\n"
    "Fabrikam Inc,PW-3,2026-01-10,RedRock IT,,ACME-STUDIO,perpetual,2,,,,,\n"
)


def nav(page):
    return page.get_by_role("navigation", name="Producer portal")


def test_create_a_partner_and_see_the_tiers(browse, demo):
    page = sign_in_as(browse, "staff@acme.example")
    nav(page).get_by_role("link", name="Partners", exact=True).click()
    expect(page.locator("#partners-summary")).to_have_text(re.compile(r"^\d+ partners$"))
    check_page(browse, "producer-partners")
    form = page.get_by_role("region", name="Add a partner")
    form.get_by_label("Company name").fill("Globex Resale")
    form.get_by_label("Kind of partner").select_option("reseller")
    form.get_by_label("Supplied by").select_option(label="Northwind Distribution (Distributor)")
    browse.submit(form.get_by_role("button", name="Add the partner"))
    expect(page.locator("h1")).to_have_text("Globex Resale")
    expect(page.get_by_text("Added Globex Resale.")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Supplied by Northwind Distribution.")
    check_page(browse, "producer-partner")
    nav(page).get_by_role("link", name="Partners", exact=True).click()
    page.get_by_role("link", name="Channel relationships and tiers").click()
    expect(page.locator("#tiers title").first).to_have_text("Tiers of the channel")
    expect(page.locator("#tiers-svg-desc")).to_contain_text("Northwind Distribution supplies 2 resellers.")
    check_page(browse, "producer-channel")
    page.locator("#tiers a").filter(has_text="Northwind Distribution").first.click()
    expect(page.locator("#tiers")).to_contain_text("Globex Resale")
    check_page(browse, "producer-channel-focus")


def test_import_with_errors_then_without(browse, demo, tmp_path):
    page = sign_in_as(browse, "staff@acme.example")
    nav(page).get_by_role("link", name="Import").click()
    check_page(browse, "producer-import")
    bad, good = tmp_path / "bad.csv", tmp_path / "good.csv"
    bad.write_text(BAD)
    good.write_text(GOOD)
    page.get_by_label("CSV file of orders").set_input_files(str(bad))
    page.get_by_role("button", name="Check the file").click()
    expect(page.locator("#import-errors")).to_contain_text("2 errors in 3 rows: nothing was imported.")
    rows = page.locator("#import-error-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("3customerNo customer is called “Nobody Ltd”.")
    expect(rows.nth(1)).to_contain_text("4sales_chainBlueSky Resellers is not supplied by the producer")
    expect_refusal(browse, 422)
    check_page(browse, "producer-import-errors")
    page.get_by_label("CSV file of orders").set_input_files(str(good))
    page.get_by_role("button", name="Check the file").click()
    expect(page.locator("#import-preview-summary")).to_contain_text(
        "3 rows are valid: 2 entitlements with 3 lines will be created.")
    expect(page.locator("#import-preview tbody tr")).to_have_count(2)
    check_page(browse, "producer-import-preview")
    page.get_by_role("button", name="Import 2 entitlements").click()
    expect(page.locator("#import-done")).to_have_text("Imported 2 entitlements.")
    browse.snap("producer-import-done")
    browse.assert_clean()


def test_the_channel_report(browse, demo):
    page = sign_in_as(browse, "staff@acme.example")
    nav(page).get_by_role("link", name="Reports").click()
    expect(page.locator("#report-chart title").first).to_contain_text("Seats sold and seats activated")
    bluesky = page.locator("#report-table tbody tr").filter(has_text="BlueSky Resellers")
    expect(bluesky).to_have_count(1)
    check_page(browse, "producer-reports")
    page.get_by_label("Per", exact=True).select_option("tier")
    page.get_by_label("Period").select_option("quarter")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"group=tier"))
    expect(page.locator("#report-table")).to_contain_text("Resellers")
    expect(page.locator("#report-table")).to_contain_text("Direct sales")
    check_page(browse, "producer-reports-tier")
    href = page.locator("#report-csv").get_attribute("href")
    assert "group=tier" in href and "period=quarter" in href


def test_customer_directory_and_page(browse, demo):
    page = sign_in_as(browse, "staff@acme.example")
    nav(page).get_by_role("link", name="Customers").click()
    # Typing before htmx has bound the search box (a loaded machine) would send no request.
    expect(page).to_have_url(re.compile(r"/producer/customers$"))
    page.wait_for_load_state("load")
    page.get_by_label("Search customers by name").fill("contoso")
    expect(page.locator("#customers-summary")).to_have_text("4 customers matching “contoso”")
    check_page(browse, "producer-customers")
    page.get_by_role("link", name="Contoso Group", exact=True).click()
    expect(page.locator("main")).to_contain_text("sold it (the seller of the sales chain)")
    check_page(browse, "producer-customer")
