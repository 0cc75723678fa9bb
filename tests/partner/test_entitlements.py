"""The partner's entitlements: what it is attached to or holds in stock, scoped to the customer
it works for, with its own relation and permissions and nothing else of the customer (rule 3).
Exact codes with decoys present: RedRock's and BlueSky's Fabrikam entitlements, a decoy partner
attached to everything, another partner's activations."""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Attachment
from portal.policy import Actor
from portal.services.entitlements import revoke_attachment
from tests.factories import page_without_csrf
from tests.partner.conftest import HX

CODES = re.compile(r'href="/partner/entitlements/([A-Z0-9-]+)"')


def listed(client, **args) -> list[str]:
    response = client.get("/partner/entitlements", query_string=args, headers=HX)
    assert response.status_code == 200, response.get_data(as_text=True)
    return sorted(CODES.findall(response.get_data(as_text=True)))


def codes(pworld, *keys) -> list[str]:
    return sorted(pworld.code(k) for k in keys)


@pytest.mark.parametrize(("partner", "expected"), [
    ("bluesky", ("de_studio", "fab_bluesky", "stock_old", "stock_new")),
    ("northwind", ("de_studio", "fab_bluesky", "stock_old", "stock_new")),  # distributed: view
    ("redrock", ("fab_redrock",)),
    ("initech", ("de_studio",)),
])
def test_each_partner_lists_what_it_is_attached_to_or_holds(pworld, as_partner, partner, expected):
    assert listed(as_partner(partner)) == codes(pworld, *expected)


def test_working_for_a_customer_scopes_the_list_to_it(pworld, as_partner):
    assert listed(as_partner("bluesky", working_for="fabrikam")) == codes(pworld, "fab_bluesky")
    assert listed(as_partner("redrock", working_for="fabrikam")) == codes(pworld, "fab_redrock")
    assert listed(as_partner("bluesky", working_for="germany")) == codes(pworld, "de_studio")


def test_search_finds_only_what_we_see(pworld, as_partner):
    bluesky, redrock = as_partner("bluesky"), as_partner("redrock")
    rr_line = pworld.entitlements["fab_redrock"].lines[0]
    # RedRock's host and activation code and entitlement code: found by RedRock, never by BlueSky.
    for text in ("fab-rr-host", rr_line.activation_code, pworld.code("fab_redrock")):
        assert listed(redrock, q=text) == codes(pworld, "fab_redrock")
        assert listed(bluesky, q=text) == []
    assert listed(bluesky, q="munich-cad") == codes(pworld, "de_studio")
    body = bluesky.get("/partner/entitlements", query_string={"q": "fab-rr-host"}, headers=HX).get_data(as_text=True)
    assert "0 entitlements matching" in body


def test_filters_by_our_relation_and_the_shared_filters(pworld, as_partner):
    bluesky = as_partner("bluesky")
    assert listed(bluesky, access="stock") == codes(pworld, "stock_old", "stock_new")
    assert listed(bluesky, access="sold") == codes(pworld, "de_studio", "fab_bluesky")
    assert listed(bluesky, access="services") == []
    assert listed(as_partner("northwind"), access="distributed") == codes(
        pworld, "de_studio", "fab_bluesky", "stock_old", "stock_new")  # BlueSky's stock: not Northwind's
    assert listed(bluesky, status="active", model="perpetual") == codes(
        pworld, "de_studio", "fab_bluesky", "stock_old", "stock_new")
    assert listed(bluesky, model="usage") == []
    assert bluesky.get("/partner/entitlements", query_string={"access": "nonsense"}).status_code == 400
    assert bluesky.get("/partner/entitlements", query_string={"sort": "seller"}).status_code == 400


def test_sort_and_pages(pworld, as_partner, app):
    app.config["PAGE_SIZE"] = 2
    bluesky = as_partner("bluesky")
    first = CODES.findall(bluesky.get("/partner/entitlements?sort=code", headers=HX).get_data(as_text=True))
    second = CODES.findall(bluesky.get("/partner/entitlements?sort=code&page=2", headers=HX).get_data(as_text=True))
    assert first + second == codes(pworld, "de_studio", "fab_bluesky", "stock_old", "stock_new")
    by_customer = CODES.findall(bluesky.get("/partner/entitlements?sort=-customer", headers=HX).get_data(as_text=True))
    assert len(by_customer) == 2


def test_rows_show_our_access_only(pworld, as_partner):
    body = as_partner("bluesky").get("/partner/entitlements", headers=HX).get_data(as_text=True)
    access = re.findall(r'<td class="access">([^<]*)', body)
    assert sorted(access) == ["In our stock", "In our stock", "Sold by us", "Sold by us"]
    assert "May view, download, activate" in body
    for other in ("Zephyr", "Initech", "RedRock"):
        assert other not in body
    initech = as_partner("initech").get("/partner/entitlements").get_data(as_text=True)
    assert "Serviced by us" in initech and "May view, activate" in initech
    assert "BlueSky" not in initech and "Northwind" not in initech and "Zephyr" not in initech
    assert "Contoso Germany" in initech  # the customer it serves


def test_csv_is_what_the_list_shows(pworld, as_partner):
    response = as_partner("redrock").get("/partner/entitlements.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["code"] for r in rows] == [pworld.code("fab_redrock")]
    assert rows[0]["owner"] == "Fabrikam Inc"
    assert rows[0]["attachments"] == "RedRock IT (sold: view, download, activate)"
    text = response.get_data(as_text=True)
    assert "Zephyr" not in text and "BlueSky" not in text
    narrowed = as_partner("bluesky").get("/partner/entitlements.csv", query_string={"access": "stock"})
    assert sorted(r["code"] for r in csv.DictReader(io.StringIO(narrowed.get_data(as_text=True)))) == codes(
        pworld, "stock_old", "stock_new")
    scoped = as_partner("bluesky", working_for="fabrikam").get("/partner/entitlements.csv")
    assert [r["code"] for r in csv.DictReader(io.StringIO(scoped.get_data(as_text=True)))] == [
        pworld.code("fab_bluesky")]


def test_an_entitlement_we_do_not_see_is_404_like_a_missing_page(pworld, as_partner):
    bluesky = as_partner("bluesky")
    missing = bluesky.get("/partner/no-such-page").get_data(as_text=True)
    for key in ("fab_redrock", "tailspin"):
        response = bluesky.get(f"/partner/entitlements/{pworld.code(key)}")
        assert response.status_code == 404 and page_without_csrf(response) == page_without_csrf(missing)
    assert bluesky.get("/partner/entitlements/ENT-NOPE-NOPE").status_code == 404
    assert bluesky.get("/partner/entitlements/%00").status_code == 404
    # Working for Fabrikam: Contoso's entitlement is out of scope.
    scoped = as_partner("bluesky", working_for="fabrikam")
    assert scoped.get(f"/partner/entitlements/{pworld.code('de_studio')}").status_code == 404
    assert scoped.get(f"/partner/entitlements/{pworld.code('fab_bluesky')}").status_code == 200


def test_the_page_shows_our_access_and_nothing_of_other_partners(pworld, as_partner):
    body = as_partner("bluesky").get(f"/partner/entitlements/{pworld.code('de_studio')}").get_data(as_text=True)
    assert "Contoso Group &gt; Contoso Germany" in body
    assert "Sold by us" in body and "view, download, activate" in body
    assert "Northwind Distribution" in body  # the chain it is part of
    for other in ("Zephyr", "Initech"):
        assert other not in body
    assert "zephyr-node" in body  # the host is the entitlement's; who activated it is not said
    # Initech, brought in by the customer, does not learn through whom Contoso bought.
    initech = as_partner("initech").get(f"/partner/entitlements/{pworld.code('de_studio')}").get_data(as_text=True)
    assert "Serviced by us" in initech
    assert "BlueSky" not in initech and "Northwind" not in initech and "Zephyr" not in initech


def test_stock_page_of_an_entitlement_says_its_age(pworld, as_partner):
    body = as_partner("bluesky").get(f"/partner/entitlements/{pworld.code('stock_old')}").get_data(as_text=True)
    assert "In your stock for 40 days" in body and 'href="/partner/stock"' in body
    # Northwind sees BlueSky's stock through its distributed attachment, not whose stock it is.
    nw = as_partner("northwind").get(f"/partner/entitlements/{pworld.code('stock_old')}").get_data(as_text=True)
    assert "In a partner&#39;s stock" in nw or "In a partner's stock" in nw


def test_revoking_our_attachment_ends_access_at_the_next_request(pworld, as_partner):
    redrock = as_partner("redrock", working_for="fabrikam")
    url = f"/partner/entitlements/{pworld.code('fab_redrock')}"
    assert redrock.get(url).status_code == 200
    attachment = db.session.scalar(select(Attachment).where(
        Attachment.entitlement_id == pworld.entitlements["fab_redrock"].id,
        Attachment.partner_id == pworld.orgs["redrock"].id))
    revoke_attachment(Actor(user=pworld.users["fabrikam"], org=pworld.orgs["fabrikam"], role="admin"), attachment)
    db.session.commit()
    assert redrock.get(url).status_code == 404
    assert redrock.get(url, headers=HX).status_code == 404
    assert listed(redrock) == []
    assert listed(redrock, q="fab-rr-host") == []
