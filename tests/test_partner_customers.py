"""The customers a partner serves: derived from its attachments, searchable, paginated."""

import pytest

from portal.extensions import db


@pytest.fixture
def world(make):
    bluesky = make.partner("reseller", "BlueSky")
    redrock = make.partner("reseller", "RedRock")
    shared = make.customer("Shared Holdings")
    make.entitlement(shared, [bluesky])
    make.entitlement(shared, [redrock])
    group = make.customer("Contoso Group")
    germany = make.customer("Contoso Germany", parent=group)
    make.entitlement(germany, [bluesky])
    make.entitlement(make.customer("Only RedRock"), [redrock])
    revoked = make.entitlement(make.customer("Revoked Ltd"), [bluesky])
    from portal.services.entitlements import revoke_attachment

    revoke_attachment(make.system, revoked.attachments[0])
    db.session.commit()
    return {"bluesky": bluesky, "redrock": redrock, "user": make.user(bluesky)}


def test_list_shows_exactly_the_customers_served(world, login_as):
    client = login_as(world["user"])
    page = client.get("/partner/customers")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count('class="customer-row"') == 2
    assert "Contoso Germany" in html and "Contoso Group &gt; Contoso Germany" in html
    assert "Shared Holdings" in html
    for decoy in ("Only RedRock", "Revoked Ltd", "<td>Contoso Group</td>"):
        assert decoy not in html


def test_htmx_gets_the_fragment_and_a_browser_the_page(world, login_as):
    client = login_as(world["user"])
    fragment = client.get("/partner/customers?q=contoso", headers={"HX-Request": "true"})
    full = client.get("/partner/customers?q=contoso")
    assert fragment.get_data(as_text=True).lstrip().startswith('<div id="customers"')
    assert "<html" in full.get_data(as_text=True)
    for response in (fragment, full):
        assert "HX-Request" in response.headers["Vary"]
        assert response.get_data(as_text=True).count('class="customer-row"') == 1


@pytest.mark.parametrize(("query", "expected"), [("hold", 1), ("%", 0), ("_", 0), ("CONTOSO", 1), ("", 2)])
def test_search_is_literal_and_case_insensitive(world, login_as, query, expected):
    client = login_as(world["user"])
    html = client.get("/partner/customers", query_string={"q": query}).get_data(as_text=True)
    assert html.count('class="customer-row"') == expected


def test_pages_and_query_count(make, login_as, count_queries, app):
    reseller = make.partner("reseller", "Big Reseller")
    user = make.user(reseller)
    client = login_as(user)

    def measure(page):
        db.session.commit()
        with count_queries() as counter:
            html = client.get(f"/partner/customers?page={page}").get_data(as_text=True)
        return counter.count, html.count('class="customer-row"')

    parent = make.customer("Parent")
    for n in range(3):
        make.entitlement(make.customer(f"Small {n}", parent=parent), [reseller])
    small_count, small_rows = measure(1)
    for n in range(30):
        make.entitlement(make.customer(f"Large {n:02d}", parent=parent), [reseller])
    large_count, large_rows = measure(1)
    _, second_page_rows = measure(2)
    _, beyond = measure(9)
    assert (small_rows, large_rows, second_page_rows, beyond) == (3, 25, 8, 0)
    assert small_count == large_count
