"""The entitlement list (search, filters, sort, pages, CSV) and one entitlement's page, with
another customer's entitlements present as decoys: exact counts, nothing of theirs shown."""

from __future__ import annotations

import csv
import html
import io
import re

import pytest
from sqlalchemy import select

from portal.database import begin_write
from portal.extensions import db
from portal.models import Attachment
from portal.services.entitlements import revoke_attachment, set_entitlement_status
from tests.customer.conftest import HX
from tests.factories import page_without_csrf


def _codes(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return re.findall(r'class="font-monospace" href="/customer/entitlements/([^"]+)"', response.get_data(as_text=True))


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def _code(shop, key: str) -> str:
    return shop.entitlements[key].code


OURS = ["de_studio", "us_sync", "group_render", "munich_studio"]


def test_the_list_shows_every_entitlement_of_the_subtree_and_no_other(admin_client, shop):
    codes = _codes(admin_client.get("/customer/entitlements"))
    assert sorted(codes) == sorted(_code(shop, key) for key in OURS)
    page = admin_client.get("/customer/entitlements").get_data(as_text=True)
    assert "4 entitlements" in page and "Fabrikam" not in page and "Zephyr" not in page


def test_a_member_lists_its_subtree_only(member_client, shop):
    assert sorted(_codes(member_client.get("/customer/entitlements"))) == sorted(
        [_code(shop, "de_studio"), _code(shop, "munich_studio")])


def test_the_table_alone_answers_htmx(admin_client):
    response = admin_client.get("/customer/entitlements?q=ENT", headers=HX)
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="entitlements-table"')
    assert "<html" not in body and 'id="entitlements-table-controls"' not in body
    assert "HX-Request" in response.headers["Vary"]


@pytest.mark.parametrize(("search", "keys"), [
    ("munich-cad", ["de_studio"]),  # host id of an active activation
    ("fabrikam-host", []),  # another customer's host
    ("us-sync", ["us_sync"]),
])
def test_search_by_host_id(admin_client, shop, search, keys):
    assert sorted(_codes(admin_client.get("/customer/entitlements", query_string={"q": search}))) == sorted(
        _code(shop, k) for k in keys)


def test_search_by_entitlement_code_and_activation_code(admin_client, shop):
    code = _code(shop, "munich_studio")
    assert _codes(admin_client.get("/customer/entitlements", query_string={"q": code.lower()[4:]})) == [code]
    activation_code = shop.line("us_sync").activation_code
    assert _codes(admin_client.get("/customer/entitlements", query_string={"q": activation_code})) == [
        _code(shop, "us_sync")]
    decoy = shop.line("fab_studio").activation_code
    assert _codes(admin_client.get("/customer/entitlements", query_string={"q": decoy})) == []
    # LIKE wildcards are searched for literally.
    assert _codes(admin_client.get("/customer/entitlements", query_string={"q": "%"})) == []


def _filtered(client, **args) -> set[str]:
    return set(_codes(client.get("/customer/entitlements", query_string=args)))


def test_filters(admin_client, shop):
    ours = {key: _code(shop, key) for key in OURS}
    studio = shop.line("de_studio").product_id
    assert _filtered(admin_client, product=studio) == {ours["de_studio"], ours["munich_studio"]}
    assert _filtered(admin_client, model="usage") == {ours["group_render"]}
    assert _filtered(admin_client, seller="direct") == {ours["group_render"]}
    assert _filtered(admin_client, seller=shop.orgs["redrock"].id) == {ours["us_sync"], ours["munich_studio"]}
    assert _filtered(admin_client, seller=shop.orgs["northwind"].id) == {ours["de_studio"]}  # an upper tier too
    assert _filtered(admin_client, org=shop.orgs["germany"].id) == {ours["de_studio"], ours["munich_studio"]}
    assert _filtered(admin_client, ending="30") == {ours["us_sync"]}
    assert _filtered(admin_client, partner=shop.orgs["initech"].id) == {ours["de_studio"]}
    assert _filtered(admin_client, status="active") == set(ours.values())
    assert _filtered(admin_client, usage="over") == set()
    # Filters combine.
    assert _filtered(admin_client, product=studio, seller=shop.orgs["redrock"].id) == {ours["munich_studio"]}


def test_status_filter_and_badge(admin_client, shop, make):
    begin_write()
    set_entitlement_status(make.system, shop.entitlements["munich_studio"], "suspended")
    db.session.commit()
    assert _filtered(admin_client, status="suspended") == {_code(shop, "munich_studio")}
    assert "Suspended" in admin_client.get("/customer/entitlements?status=suspended").get_data(as_text=True)


@pytest.mark.parametrize("query", [
    {"org": "999999"}, {"product": "abc"}, {"seller": "-1"}, {"sort": "owner_id"}, {"page": "x"},
    {"q": "a\x00b"}, {"q": "x" * 500}, {"status": "deleted"}, {"ending": "365"},
])
def test_hostile_or_unknown_arguments_answer_400(admin_client, query):
    assert admin_client.get("/customer/entitlements", query_string=query).status_code == 400
    assert admin_client.get("/customer/entitlements.csv", query_string=query).status_code == 400


def test_another_customers_sub_organization_or_partner_is_no_filter(admin_client, shop):
    assert admin_client.get(f"/customer/entitlements?org={shop.orgs['fabrikam'].id}").status_code == 400
    assert admin_client.get(f"/customer/entitlements?partner={shop.orgs['zephyr'].id}").status_code == 400


def test_sort_and_pages_keep_their_state_in_the_url(admin_client, shop, make):
    customer = shop.orgs["usa"]
    for _ in range(26):
        make.entitlement(customer, [shop.orgs["redrock"]], seats=1)
    first = admin_client.get("/customer/entitlements?sort=code", headers=HX)
    codes = _codes(first)
    assert len(codes) == 25 and codes == sorted(codes)
    body = first.get_data(as_text=True)
    assert "30 entitlements" in body and "Page 1 of 2" in body
    assert 'id="entitlements-table-next"' in body and 'href="/customer/entitlements?sort=code&amp;page=2"' in body
    second = _codes(admin_client.get("/customer/entitlements?sort=code&page=2"))
    assert len(second) == 5 and second[0] > codes[-1]
    backwards = _codes(admin_client.get("/customer/entitlements?sort=-code"))
    assert backwards[:5] == sorted(codes + second, reverse=True)[:5]
    assert 'aria-sort="descending"' in admin_client.get("/customer/entitlements?sort=-code").get_data(as_text=True)
    # The sort travels with the search form (which lives outside the table).
    assert '<input type="hidden" name="sort" value="-code" form="entitlements-table-controls">' in (
        admin_client.get("/customer/entitlements?sort=-code").get_data(as_text=True))
    by_org = _codes(admin_client.get("/customer/entitlements?sort=organization&q=" + _code(shop, "de_studio")))
    assert by_org == [_code(shop, "de_studio")]
    # A page past the end says so and links back.
    beyond = admin_client.get("/customer/entitlements?page=9").get_data(as_text=True)
    assert "There is no page 9." in beyond


def test_csv_of_what_is_shown(admin_client, shop):
    response = admin_client.get("/customer/entitlements.csv", query_string={"seller": shop.orgs["redrock"].id})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert sorted(row["code"] for row in rows) == sorted([_code(shop, "us_sync"), _code(shop, "munich_studio")])
    assert {row["owner_path"] for row in rows} == {"Contoso Group > Contoso USA",
                                                    "Contoso Group > Contoso Germany > Contoso Munich Plant"}
    body = admin_client.get("/customer/entitlements.csv").get_data(as_text=True)
    everything = list(csv.DictReader(io.StringIO(body)))
    assert len(everything) == 4 and "Zephyr" not in str(everything)
    # The list links to it with its own search and filters.
    page = admin_client.get("/customer/entitlements?model=usage&sort=code").get_data(as_text=True)
    assert 'href="/customer/entitlements.csv?model=usage&amp;sort=code"' in page


# --- one entitlement --------------------------------------------------------------------------


def test_entitlement_page_shows_lines_chain_activations_and_partners(admin_client, shop):
    code = _code(shop, "de_studio")
    page = admin_client.get(f"/customer/entitlements/{code}").get_data(as_text=True)
    text = _text(page)
    assert "Contoso Group > Contoso Germany" in text
    assert "3 used · 7 free of 10" in text
    assert "Northwind Distribution BlueSky Resellers (seller)" in text
    assert "munich-cad-01" in text and "CAD 1" in text
    partners = re.findall(r"<li class=\"list-group-item\">\s*<strong>([^<]+)</strong>", page)
    assert partners == ["Northwind Distribution", "BlueSky Resellers", "Initech Services"]
    assert f'href="/customer/activations/{shop.activations["de_cad"].id}.lic"' in page
    assert 'aria-current="page">' + code in page  # the breadcrumb's last item
    assert "Maintenance until" in text


def test_entitlement_page_of_a_usage_line_and_a_direct_sale(admin_client, shop, make):
    begin_write()
    from portal.services.activations import record_usage
    record_usage(make.system, shop.line("group_render"), 650)
    db.session.commit()
    page = admin_client.get(f"/customer/entitlements/{_code(shop, 'group_render')}").get_data(as_text=True)
    text = _text(page)
    assert "1050 of 1000 units" in text and "Over by 50" in text
    assert "Direct from Acme Software" in text
    assert "Activate seats" not in text  # usage is recorded, not activated


def test_revoked_partners_are_not_listed(admin_client, shop, make):
    attachment = db.session.scalar(select(Attachment).where(Attachment.partner_id == shop.orgs["initech"].id))
    begin_write()
    revoke_attachment(make.system, attachment)
    db.session.commit()
    page = admin_client.get(f"/customer/entitlements/{_code(shop, 'de_studio')}").get_data(as_text=True)
    assert "Initech" not in page


@pytest.mark.parametrize("who", ["admin", "member"])
def test_what_the_user_may_not_see_is_404_like_nothing(admin_client, member_client, shop, who):
    client = admin_client if who == "admin" else member_client
    missing = client.get("/customer/entitlements/ENT-NOPE-NOPE-NOPE")
    assert missing.status_code == 404
    hidden = ["fab_studio"] + (["us_sync", "group_render"] if who == "member" else [])
    for key in hidden:
        response = client.get(f"/customer/entitlements/{_code(shop, key)}")
        assert response.status_code == 404
        assert page_without_csrf(response) == page_without_csrf(missing)


@pytest.mark.parametrize("code", ["ENT%00X", "ENT\x01", "A" * 33, "ENT DEMO", "ENT'--", "%E2%80%AE"])
def test_hostile_codes_are_404(admin_client, code):
    assert admin_client.get(f"/customer/entitlements/{code}").status_code == 404


# --- "who can see this", a panel on the entitlement's page -----------------------------------------


def test_the_entitlement_page_loads_who_can_see_this_inline_with_a_link_without_javascript(admin_client, shop):
    code = _code(shop, "munich_studio")
    page = admin_client.get(f"/customer/entitlements/{code}").get_data(as_text=True)
    url = f"/customer/entitlements/{code}/visibility"
    panel = re.search(r'<section class="card mb-4 visibility" id="visibility"[^>]*>', page).group(0)
    assert f'hx-get="{url}"' in panel and 'hx-trigger="load"' in panel and 'hx-swap="outerHTML"' in panel
    assert re.search(rf'<a href="{url}" id="visibility-link">Who can see this', page)  # the page without JavaScript
    fragment = admin_client.get(url, headers=HX)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body and "HX-Request" in fragment.headers["Vary"]
    assert body.startswith('<section class="card mb-4 visibility" id="visibility"')  # replaces the placeholder
    assert "<html" in admin_client.get(url).get_data(as_text=True)


def test_who_can_see_this_explains_every_party_and_why(admin_client, member_client, shop, make):
    code = _code(shop, "munich_studio")
    make.attach(shop.entitlements["munich_studio"], shop.orgs["initech"], permissions=("view", "download"))
    text = _text(admin_client.get(f"/customer/entitlements/{code}/visibility", headers=HX).get_data(as_text=True))
    # The owner and each organization above it, in the hierarchy's order, with its users counted.
    assert re.findall(r"(Contoso [\w ]+?) (owns it|is above Contoso Munich Plant in your hierarchy)", text) == [
        ("Contoso Group", "is above Contoso Munich Plant in your hierarchy"),
        ("Contoso Germany", "is above Contoso Munich Plant in your hierarchy"),
        ("Contoso Munich Plant", "owns it")]
    above = "is above Contoso Munich Plant in your hierarchy. Its users see it"
    assert f"Contoso Group {above}: 1 admin and no members." in text
    assert f"Contoso Germany {above}: no admins and 1 member." in text
    # Each live attachment: its relation, why, and what its users may do.
    assert ("RedRock IT Seller sold it to you (from the sales chain). Its users may: View, Download, Activate . "
            "Attached") in text
    assert "Initech Services Services works on it for you. Its users may: View, Download . Attached" in text
    assert "Acme" in text and "runs the portal: its admins and staff see every entitlement" in text
    # Not a party: another customer's partner, a sibling subsidiary, another customer.
    for absent in ("Zephyr", "Contoso USA", "Fabrikam", "BlueSky", "Northwind"):
        assert absent not in text
    # The subsidiary's member: the same parties; Contoso Group's users are not its to count.
    member = _text(member_client.get(f"/customer/entitlements/{code}/visibility", headers=HX).get_data(as_text=True))
    assert "Contoso Group is above Contoso Munich Plant in your hierarchy. Its users see it." in member
    assert "Initech Services" in member and "Attach or revoke partners" not in member
