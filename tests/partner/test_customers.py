"""The customers a partner serves: derived from its attachments, searchable by name and by any name
on the customer's hierarchy path, paginated, one form for the table's "Work for" buttons."""

import re

import pytest

from portal.extensions import db
from portal.models.entitlements import PartnerCustomer, rebuild_partner_customers
from portal.services.entitlements import revoke_attachment
from portal.services.orgs import move_organization, update_organization

ROW = 'class="customer-row'
HX = {"HX-Request": "true"}


@pytest.fixture
def world(make):
    bluesky = make.partner("reseller", "BlueSky")
    redrock = make.partner("reseller", "RedRock")
    shared = make.customer("Shared Holdings")
    make.entitlement(shared, [bluesky])
    make.entitlement(shared, [redrock])
    group = make.customer("Contoso Group")
    germany = make.customer("Contoso Germany", parent=group)
    munich = make.customer("Munich Plant", parent=germany)
    make.entitlement(germany, [bluesky])
    make.entitlement(munich, [bluesky])
    make.entitlement(make.customer("Only RedRock"), [redrock])
    make.entitlement(make.customer("Contoso Decoy Ltd"), [redrock])  # matches "contoso": RedRock's only
    revoked = make.entitlement(make.customer("Revoked Ltd"), [bluesky])
    revoke_attachment(make.system, revoked.attachments[0])
    db.session.commit()
    return {"bluesky": bluesky, "redrock": redrock, "user": make.user(bluesky), "group": group,
            "germany": germany, "munich": munich, "shared": shared}


def _names(html: str) -> list[str]:
    return re.findall(r'<td class="fw-semibold customer-name">([^<]+)</td>', html)


def test_list_shows_exactly_the_customers_served(world, login_as):
    client = login_as(world["user"])
    page = client.get("/partner/customers")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert _names(html) == ["Contoso Germany", "Munich Plant", "Shared Holdings"]
    assert "Contoso Group &gt; Contoso Germany &gt; Munich Plant" in html
    for decoy in ("Only RedRock", "Revoked Ltd", "Contoso Decoy", "RedRock"):
        assert decoy not in html
    assert "3 customers" in html


def test_one_csrf_token_for_the_whole_table(make, world, login_as):
    for n in range(20):
        make.entitlement(make.customer(f"Extra {n:02d}"), [world["bluesky"]])
    html = login_as(world["user"]).get("/partner/customers").get_data(as_text=True)
    assert html.count(ROW) == 23
    assert html.count('name="csrf_token"') == 3  # #work-for, the top bar's chooser, sign-out: not one per row
    assert html.count('form="work-for" name="customer_id"') == 23
    assert 'Work for<span class="visually-hidden"> Shared Holdings</span>' in html


def test_htmx_gets_the_fragment_and_a_browser_the_page(world, login_as):
    client = login_as(world["user"])
    fragment = client.get("/partner/customers?q=shared", headers=HX)
    full = client.get("/partner/customers?q=shared")
    assert fragment.get_data(as_text=True).lstrip().startswith('<div id="customers"')
    assert "<html" in full.get_data(as_text=True)
    assert fragment.headers["HX-Push-Url"] == "/partner/customers?q=shared"
    for response in (fragment, full):
        assert "HX-Request" in response.headers["Vary"]
        assert response.get_data(as_text=True).count(ROW) == 1


@pytest.mark.parametrize(("query", "expected"), [
    ("hold", ["Shared Holdings"]), ("%", []), ("_", []), ("CONTOSO", ["Contoso Germany", "Munich Plant"]),
    ("contoso group", ["Contoso Germany", "Munich Plant"]), ("germany", ["Contoso Germany", "Munich Plant"]),
    ("munich", ["Munich Plant"]), ("redrock", []), ("", ["Contoso Germany", "Munich Plant", "Shared Holdings"])])
def test_search_by_name_or_any_name_on_the_path(world, login_as, query, expected):
    client = login_as(world["user"])
    html = client.get("/partner/customers", query_string={"q": query}).get_data(as_text=True)
    assert _names(html) == expected


def test_renaming_or_moving_an_organization_keeps_the_path_search_right(make, world, login_as):
    client = login_as(world["user"])
    update_organization(make.system, world["group"], name="Fabrikam Holding")
    db.session.commit()
    assert _names(client.get("/partner/customers?q=fabrikam holding").get_data(as_text=True)) == [
        "Contoso Germany", "Munich Plant"]
    assert _names(client.get("/partner/customers?q=contoso group").get_data(as_text=True)) == []
    move_organization(make.system, world["munich"], world["shared"])
    db.session.commit()
    assert _names(client.get("/partner/customers?q=shared").get_data(as_text=True)) == [
        "Munich Plant", "Shared Holdings"]
    assert _names(client.get("/partner/customers?q=fabrikam").get_data(as_text=True)) == ["Contoso Germany"]
    # What the hooks keep equals what a rebuild derives.
    kept = sorted(db.session.query(PartnerCustomer.partner_id, PartnerCustomer.customer_id,
                                   PartnerCustomer.search_name).all())
    rebuild_partner_customers(db.session.connection())
    assert kept == sorted(db.session.query(PartnerCustomer.partner_id, PartnerCustomer.customer_id,
                                           PartnerCustomer.search_name).all())


def test_work_for_marks_the_row_and_the_top_bar(world, login_as):
    client = login_as(world["user"])
    response = client.post("/partner/customer", data={"customer_id": world["germany"].id})
    assert response.status_code == 302 and response.location.endswith("/partner/")
    html = client.get("/partner/customers").get_data(as_text=True)
    current = re.findall(r'<tr class="customer-row table-active" aria-current="true">\s*<td[^>]*>([^<]+)<', html)
    assert current == ["Contoso Germany"]
    assert html.count('aria-current="true"') == 1
    assert re.search(r'id="working-for">\s*Working for <strong>Contoso Germany</strong>', html)
    # Back to all customers, staying on the page it was asked from.
    back = client.post("/partner/customer", data={"customer_id": "", "next": "/partner/customers"})
    assert back.location.endswith("/partner/customers")
    assert "all customers I serve" in client.get("/partner/customers").get_data(as_text=True)


def test_next_page_is_a_partner_list_page_only(world, login_as):
    client = login_as(world["user"])
    for bad in ("https://evil.example/", "//evil.example", "/customer/", "/partner/entitlements/ENT-1"):
        response = client.post("/partner/customer", data={"customer_id": "", "next": bad})
        assert response.location.endswith("/partner/"), bad
    # Enter in the chooser's search box (no customer chosen) changes nothing.
    client.post("/partner/customer", data={"customer_id": world["shared"].id})
    client.post("/partner/customer", data={"q": "x", "next": "/partner/requests"})
    assert "Working for <strong>Shared Holdings</strong>" in client.get("/partner/requests").get_data(as_text=True)


def test_chooser_shows_a_few_matches_never_all(make, world, login_as):
    for n in range(12):
        make.entitlement(make.customer(f"Chooser {n:02d}"), [world["bluesky"]])
    client = login_as(world["user"])
    html = client.get("/partner/customers/choose", headers=HX).get_data(as_text=True)
    assert html.lstrip().startswith('<div id="chooser-results"')
    assert html.count('class="btn btn-link text-start px-0 py-1 chooser-choice"') == 8
    assert "8 of 15 customers" in html
    narrowed = client.get("/partner/customers/choose?q=contoso+group", headers=HX).get_data(as_text=True)
    assert re.findall(r'value="(\d+)"', narrowed) == [str(world["germany"].id), str(world["munich"].id)]
    assert "Contoso Decoy" not in narrowed
    page = client.get("/partner/customers/choose?q=munich")
    assert "<html" in page.get_data(as_text=True) and page.get_data(as_text=True).count("chooser-choice") == 1


def test_pages_and_query_count(make, login_as, count_queries, app):
    reseller = make.partner("reseller", "Big Reseller")
    user = make.user(reseller)
    client = login_as(user)

    def measure(url):
        db.session.commit()
        with count_queries() as counter:
            html = client.get(url).get_data(as_text=True)
        return counter.count, html.count(ROW)

    parent = make.customer("Parent")
    for n in range(3):
        make.entitlement(make.customer(f"Small {n}", parent=parent), [reseller])
    small_count, small_rows = measure("/partner/customers")
    small_search, _ = measure("/partner/customers?q=parent")
    for n in range(30):
        make.entitlement(make.customer(f"Large {n:02d}", parent=parent), [reseller])
    large_count, large_rows = measure("/partner/customers")
    large_search, search_rows = measure("/partner/customers?q=parent")
    _, second_page_rows = measure("/partner/customers?page=2")
    _, beyond = measure("/partner/customers?page=9")
    assert (small_rows, large_rows, search_rows, second_page_rows, beyond) == (3, 25, 25, 8, 0)
    assert small_count == large_count and small_search == large_search
