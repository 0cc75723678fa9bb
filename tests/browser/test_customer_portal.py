"""The customer portal in real Chromium, signed in as the demo's customer users: the single pane's
panels, the entitlement list's search, filters, sort, pages and Back, and activations in place
(activate, return, rehost, the .lic certificate), each page also at 390 px wide and checked with
axe-core (no serious or critical violation).

Demo story (portal/demo.py): Contoso Germany's Acme Studio, ENT-DEMO-CDE1-0001, 10 seats, 4 in use
on munich-cad-01 (2), munich-cad-02 (1) and munich-render-node (1); Contoso USA's Cloud Sync
(50 seats, 25 in use, ending within 90 days); Contoso Group's Render Credits (420 of 1000 units).
"""

from __future__ import annotations

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from portal.demo import DEMO_PASSWORD
from tests.browser.test_sign_in import sign_in

STUDIO = "ENT-DEMO-CDE1-0001"
SYNC = "ENT-DEMO-CUS1-0002"
RENDER = "ENT-DEMO-CGR1-0003"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def sign_in_as(browse, email: str):
    """Sign in as a demo user and wait until the single pane's panels have loaded (leaving
    earlier would cancel their requests, which the browse fixture reports)."""
    page = sign_in(browse, email, DEMO_PASSWORD)
    page.wait_for_load_state("networkidle")
    return page


def check_page(browse, label: str) -> None:
    """What every new page must pass, at desktop width and at 390 px: screenshots of both, no
    horizontal scrolling of the page at 390 px (tables scroll inside their card), and axe-core
    finding no serious or critical violation."""
    page = browse.page
    for size, name in ((DESKTOP, "desktop"), (PHONE, "390px")):
        page.set_viewport_size(size)
        page.evaluate("0")
        browse.snap(f"{label}-{name}", full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= size["width"], f"{label} is {width}px wide at {size['width']}px"
        results = Axe().run(page)
        bad = [(v["id"], v["impact"], [node["target"] for node in v["nodes"]][:3])
               for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        assert bad == [], f"{label} at {name}: {bad}"
    page.set_viewport_size(DESKTOP)
    browse.assert_clean()


def expect_refusal(browse, status: int) -> None:
    """Chromium (and htmx, for what it does not swap) log a 4xx answer to an htmx request as a
    console error: expected here."""
    browse.page.evaluate("0")
    expected = (f"status of {status} ", f"Response Status Error Code {status} ")
    browse.problems = [p for p in browse.problems if not any(e in p for e in expected)]


def test_single_pane_loads_its_panels_and_links_each_figure(browse, demo):
    page = sign_in_as(browse, "admin@contoso.example")
    expect(page).to_have_url(re.compile(r"/customer/$"))
    expect(page.locator("nav .nav-link[aria-current=page]")).to_have_text("Overview")
    for panel in ("seats", "expiring", "usage", "activations", "partners", "requests", "inbox"):
        expect(page.locator(f"#panel-{panel}")).not_to_have_attribute("aria-busy", "true")
    seats = page.locator("#panel-seats")
    expect(seats).to_contain_text("Acme Studio 4 used · 6 free of 10 seats")
    expect(seats).to_contain_text("Acme Cloud Sync 25 used · 25 free of 50 seats")
    expect(page.locator("#panel-usage")).to_contain_text("420 of 1000 units this month")
    expect(page.locator("#panel-partners")).to_contain_text("Initech Services")
    expect(page.locator("#panel-requests")).to_contain_text("Nina Newhire")
    check_page(browse, "single-pane")

    page.locator("#expiring-count").click()
    expect(page).to_have_url(re.compile(r"/customer/entitlements\?ending=90$"))
    expect(page.locator(".entitlement-row")).to_have_count(1)
    expect(page.locator(".entitlement-row")).to_contain_text(SYNC)
    expect(page.locator("#entitlements-table-ending")).to_have_value("90")
    page.go_back()
    page.wait_for_load_state("networkidle")  # the panels load again; leaving meanwhile would cancel them
    page.locator("#entitlement-count").click()
    expect(page.locator(".entitlement-row")).to_have_count(3)
    browse.assert_clean()


def test_a_subsidiary_member_sees_its_subtree(browse, demo):
    page = sign_in_as(browse, "it@contoso-de.example")
    expect(page.locator("#entitlement-count")).to_have_text("1")
    expect(page.locator("#panel-seats")).to_contain_text("Acme Studio 4 used · 6 free of 10 seats")
    expect(page.locator("#panel-seats")).not_to_contain_text("Cloud Sync")
    expect(page.locator("#panel-requests")).to_contain_text("administrators decide")
    check_page(browse, "single-pane-member")


def test_list_search_filter_sort_and_pages_live_in_the_url(browse, demo):
    page = sign_in_as(browse, "admin@contoso.example")
    page = browse.goto("/customer/entitlements")
    rows = page.locator(".entitlement-row")
    expect(rows).to_have_count(3)
    expect(page.locator("#entitlements-table-summary")).to_have_text("3 entitlements")
    check_page(browse, "entitlements")
    page.evaluate("window.__samePage = true")  # gone if anything reloads the page

    # Search by a host id: the table alone is swapped and the URL pushed.
    with page.expect_request(lambda r: "q=munich-cad" in r.url and r.headers.get("hx-request") == "true"):
        page.get_by_label("Search", exact=True).fill("munich-cad")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(STUDIO)
    expect(page).to_have_url(re.compile(r"/customer/entitlements\?q=munich-cad$"))
    expect(page.locator("#entitlements-table-summary")).to_have_text("1 entitlement matching “munich-cad”")

    page.get_by_label("Search", exact=True).fill("")
    expect(rows).to_have_count(3)
    page.get_by_label("License model").select_option("subscription")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(SYNC)
    expect(page).to_have_url(re.compile(r"model=subscription"))
    page.get_by_label("License model").select_option("")
    expect(rows).to_have_count(3)

    # Sort by code, then the other way round.
    page.locator("#entitlements-table-sort-code").click()
    expect(page).to_have_url(re.compile(r"sort=code"))
    expect(page.locator(".entitlement-row td:first-child")).to_have_text([STUDIO, RENDER, SYNC])
    page.locator("#entitlements-table-sort-code").click()
    expect(page).to_have_url(re.compile(r"sort=-code"))
    expect(page.locator(".entitlement-row td:first-child")).to_have_text([SYNC, RENDER, STUDIO])
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("Entitlement")
    # A filter keeps the sort (it travels with the form).
    page.get_by_label("Organization").select_option(label="Contoso Group > Contoso Germany")
    expect(page).to_have_url(re.compile(r"org=\d+.*sort=-code|sort=-code.*org=\d+"))
    expect(rows).to_have_count(1)
    assert page.evaluate("window.__samePage") is True
    browse.snap("entitlements-filtered")

    # Back walks the states (each a real URL), and a bookmark opens the same list.
    page.go_back()
    expect(page).to_have_url(re.compile(r"sort=-code$"))
    expect(page.locator(".entitlement-row td:first-child")).to_have_text([SYNC, RENDER, STUDIO])
    page.go_back()
    expect(page).to_have_url(re.compile(r"sort=code$"))
    expect(page.locator(".entitlement-row td:first-child")).to_have_text([STUDIO, RENDER, SYNC])
    page = browse.goto("/customer/entitlements?q=us-sync&sort=-code")
    expect(rows).to_have_count(1)
    expect(page.get_by_label("Search", exact=True)).to_have_value("us-sync")

    # Nothing found: an empty state with the way back.
    page.get_by_label("Search", exact=True).fill("no-such-thing")
    expect(page.locator("#entitlements-table")).to_contain_text("No entitlements match this search.")
    page.get_by_role("link", name="Show all entitlements").click()
    expect(rows).to_have_count(3)
    browse.assert_clean()


def test_pages_of_the_list(browse, demo, make):
    contoso = demo["Contoso USA"]
    for _ in range(27):
        make.entitlement(contoso, [demo["RedRock IT"]], seats=2)
    page = sign_in_as(browse, "admin@contoso.example")
    page = browse.goto("/customer/entitlements?sort=code")
    expect(page.locator(".entitlement-row")).to_have_count(25)
    expect(page.locator("#entitlements-table")).to_contain_text("Page 1 of 2")
    page.locator("#entitlements-table-next").click()
    expect(page).to_have_url(re.compile(r"sort=code&page=2$"))
    expect(page.locator(".entitlement-row")).to_have_count(5)
    # The focus, on the link that is gone now, moves to the new page's summary (not to the top).
    expect(page.locator("#entitlements-table-summary")).to_be_focused()
    check_page(browse, "entitlements-page-2")


def test_activate_return_and_rehost_in_place(browse, demo):
    page = sign_in_as(browse, "it@contoso-de.example")
    page.get_by_role("link", name="Entitlements").first.click()
    page.get_by_role("link", name=STUDIO).click()
    expect(page).to_have_url(re.compile(rf"/customer/entitlements/{STUDIO}$"))
    expect(page.locator("nav[aria-label=Breadcrumb] [aria-current=page]")).to_have_text(STUDIO)
    check_page(browse, "entitlement")
    page.evaluate("window.__samePage = true")
    line = page.locator(".line-card").first
    seats = line.locator(".seats-summary")
    expect(seats).to_have_text("4 used · 6 free of 10")

    # A host id with spaces: the error at the field, nothing activated.
    line.get_by_label("Host ID", exact=True).fill("munich cad 03")
    line.get_by_role("button", name="Activate").click()
    error = line.locator(".field .error").first
    expect(error).to_contain_text("A host id is 1 to 128 characters")
    host = line.get_by_label("Host ID", exact=True)
    expect(host).to_have_attribute("aria-invalid", "true")
    expect(host).to_be_focused()
    expect(host).to_have_value("munich cad 03")
    expect_refusal(browse, 422)
    browse.snap("activate-bad-host")

    # Too many seats.
    host.fill("munich-cad-03")
    line.get_by_label("Seats", exact=True).fill("7")
    line.get_by_role("button", name="Activate").click()
    expect(line.locator(".field .error")).to_have_text("Only 6 of 10 seats are free.")
    expect(line.get_by_label("Seats", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(seats).to_have_text("4 used · 6 free of 10")
    expect_refusal(browse, 422)

    # Right this time: a toast, the seats updated in place, the new host listed.
    line.get_by_label("Seats", exact=True).fill("2")
    line.get_by_label("Name").fill("Munich CAD workstation 3")
    line.get_by_role("button", name="Activate").click()
    expect(page.locator("#toasts .toast")).to_contain_text("Activated 2 seats of Acme Studio on munich-cad-03.")
    expect(seats).to_have_text("6 used · 4 free of 10")
    row = line.locator(".activation-row", has_text="munich-cad-03")
    expect(row).to_contain_text("Munich CAD workstation 3")
    expect(line.get_by_label("Host ID", exact=True)).to_have_value("")
    browse.snap("activated")

    # Its certificate, a .lic file.
    with page.expect_download() as download:
        row.get_by_role("link", name="Certificate of munich-cad-03").click()
    assert download.value.suggested_filename == f"{STUDIO}-munich-cad-03.lic"
    assert download.value.path().read_text().count(".") == 2  # a compact JWS

    # Return, after confirming.
    dialogs = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    line.get_by_role("button", name="Return seats of munich-cad-02").click()
    expect(page.locator("#toasts")).to_contain_text("Returned 1 seat of munich-cad-02.")
    assert dialogs == ["Return 1 seat of munich-cad-02? Its license stops working."]
    expect(seats).to_have_text("5 used · 5 free of 10")
    expect(line.locator(".activation-row", has_text="munich-cad-02")).to_have_count(0)

    # Declining the confirmation changes nothing.
    page.once("dialog", lambda dialog: dialog.dismiss())
    line.get_by_role("button", name="Return seats of munich-cad-01").click()
    expect(seats).to_have_text("5 used · 5 free of 10")

    # Rehost: a bad new host first, then a good one.
    row = line.locator(".activation-row", has_text="munich-cad-01")
    row.locator("summary", has_text="Rehost").click()
    row.get_by_label("New host ID").fill("munich-cad-01")
    row.get_by_role("button", name="Move seats of munich-cad-01").click()
    expect(row.locator(".error")).to_have_text("Enter a different host id.")
    expect_refusal(browse, 422)
    row.get_by_label("New host ID").fill("munich-cad-11")
    row.get_by_role("button", name="Move seats of munich-cad-01").click()
    expect(page.locator("#toasts")).to_contain_text("Moved 2 seats from munich-cad-01 to munich-cad-11.")
    expect(line.locator(".activation-row", has_text="munich-cad-11")).to_contain_text("Munich CAD workstation 1")
    expect(line.locator(".activation-row", has_text="munich-cad-01")).to_have_count(0)
    expect(seats).to_have_text("5 used · 5 free of 10")
    assert page.evaluate("window.__samePage") is True  # all of it in place, no page load
    expect(page.locator("#toasts .toast.show:not(.showing)", has_text="Moved")).to_have_count(1)
    browse.snap("rehosted")

    # The server agrees after a reload.
    page.reload()
    expect(page.locator(".line-card .seats-summary").first).to_have_text("5 used · 5 free of 10")
    browse.assert_clean()


def test_a_refused_action_says_why(browse, demo):
    """Two tabs: the second returns seats the first already returned; htmx gets a 409 it does not
    swap, and the toast says what happened."""
    page = sign_in_as(browse, "it@contoso-de.example")
    page = browse.goto(f"/customer/entitlements/{STUDIO}")
    other = page.context.new_page()
    other.goto(f"/customer/entitlements/{STUDIO}")
    other.once("dialog", lambda dialog: dialog.accept())
    other.get_by_role("button", name="Return seats of munich-cad-02").click()
    expect(other.locator("#toasts")).to_contain_text("Returned 1 seat of munich-cad-02.")
    other.close()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Return seats of munich-cad-02").click()
    expect(page.locator("#toasts .toast.text-bg-danger")).to_contain_text("This activation was already returned.")
    expect_refusal(browse, 409)
    expect(page.locator("#toasts .toast.show:not(.showing)")).to_have_count(1)
    browse.snap("refused")
    browse.assert_clean()


@pytest.mark.parametrize("path", [f"/customer/panels/{p}" for p in ("seats", "requests")])
def test_a_panel_opened_without_htmx_is_a_page(browse, demo, path):
    sign_in_as(browse, "admin@contoso.example")
    page = browse.goto(path)
    expect(page.locator("nav[aria-label=Breadcrumb]")).to_contain_text("Overview")
    check_page(browse, "panel-" + path.rsplit("/", 1)[-1])
