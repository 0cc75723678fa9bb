"""A stocking partner's stock: what it owns and has not assigned, with its age; assigning one or
several entitlements at once to a customer it serves or to one named exactly (the directory
reveals nothing else), all or nothing, audited per entitlement; the sales chain stays."""

from __future__ import annotations

import json
import re

from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Entitlement
from tests.partner.conftest import HX

ROWS = re.compile(r'name="assign-entitlements" value="(\d+)"')


def _ids(pworld, *keys) -> list[str]:
    return sorted(str(pworld.entitlements[k].id) for k in keys)


def _assign(client, pworld, keys, headers=HX, **customer):
    data = {"assign-entitlements": [pworld.entitlements[k].id for k in keys]}
    data.update({f"assign-{name}": value for name, value in customer.items()})
    return client.post("/partner/stock/assign", data=data, headers=headers)


def _owner(pworld, key: str) -> str:
    db.session.rollback()  # see what the request committed
    return db.session.get(Entitlement, pworld.entitlements[key].id).owner.name


def test_stock_lists_what_we_hold_oldest_first_with_its_age(pworld, as_partner):
    body = as_partner("bluesky").get("/partner/stock").get_data(as_text=True)
    assert ROWS.findall(body) == [str(pworld.entitlements["stock_old"].id), str(pworld.entitlements["stock_new"].id)]
    assert "40 days" in body and "5 days" in body
    assert "2 entitlements in stock" in body
    # Nobody else's stock; nothing for a partner without any.
    assert ROWS.findall(as_partner("northwind").get("/partner/stock").get_data(as_text=True)) == []
    assert ROWS.findall(as_partner("redrock").get("/partner/stock").get_data(as_text=True)) == []
    searched = as_partner("bluesky").get("/partner/stock", query_string={"q": pworld.code("stock_new")}, headers=HX)
    assert ROWS.findall(searched.get_data(as_text=True)) == [str(pworld.entitlements["stock_new"].id)]


def test_the_nav_offers_stock_to_stocking_partners_only(pworld, as_partner):
    assert 'href="/partner/stock"' in as_partner("bluesky").get("/partner/entitlements").get_data(as_text=True)
    assert 'href="/partner/stock"' not in as_partner("redrock").get("/partner/entitlements").get_data(as_text=True)


def test_assign_several_to_a_customer_we_serve(pworld, as_partner):
    bluesky = as_partner("bluesky")
    response = _assign(bluesky, pworld, ["stock_old", "stock_new"], customer=pworld.orgs["fabrikam"].id)
    assert response.status_code == 200, response.get_data(as_text=True)
    toast = json.loads(response.headers["HX-Trigger"])["portal:toast"]["message"]
    assert toast.startswith("Assigned 2 entitlements to Fabrikam Inc")
    assert ROWS.findall(response.get_data(as_text=True)) == []  # gone from the stock
    assert _owner(pworld, "stock_old") == _owner(pworld, "stock_new") == "Fabrikam Inc"
    stock = db.session.get(Entitlement, pworld.entitlements["stock_old"].id)
    assert [link.partner.name for link in stock.chain] == ["Northwind Distribution", "BlueSky Resellers"]
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "entitlement.assign")).all()
    assert sorted(e.subject_id for e in events) == _ids(pworld, "stock_old", "stock_new")
    assert {(e.org_id, e.subject_org_id) for e in events} == {(pworld.orgs["bluesky"].id, pworld.orgs["fabrikam"].id)}
    # Now it is Fabrikam's, sold by us: on our entitlement list, no longer in stock.
    listed = bluesky.get("/partner/entitlements", query_string={"access": "sold"}).get_data(as_text=True)
    assert pworld.code("stock_old") in listed


def test_assign_to_a_customer_found_by_its_exact_name(pworld, as_partner):
    bluesky = as_partner("bluesky")
    response = _assign(bluesky, pworld, ["stock_old"], customer_name="  tailspin toys ")
    assert response.status_code == 200
    assert _owner(pworld, "stock_old") == "Tailspin Toys"


def test_an_inexact_name_reveals_nothing_and_writes_nothing(pworld, as_partner):
    bluesky = as_partner("bluesky")
    for name in ("Tailspin", "tailspin toys inc", "RedRock IT", "Contoso"):
        response = _assign(bluesky, pworld, ["stock_old", "stock_new"], customer_name=name)
        body = response.get_data(as_text=True)
        assert response.status_code == 422
        assert "No customer with exactly that name." in body
        assert "Tailspin Toys" not in body and "Contoso Group" not in body.split("assign-customer_name")[1]
    assert _owner(pworld, "stock_old") == "BlueSky Resellers"
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "entitlement.assign")) is None


def test_all_or_nothing(pworld, as_partner):
    bluesky = as_partner("bluesky")
    # One of the ticked is not ours (RedRock's customer's entitlement): nothing moves.
    response = bluesky.post("/partner/stock/assign", headers=HX, data={
        "assign-entitlements": [pworld.entitlements["stock_old"].id, pworld.entitlements["fab_redrock"].id],
        "assign-customer": pworld.orgs["fabrikam"].id})
    assert response.status_code == 422 and "Choose entitlements of your stock only." in response.get_data(as_text=True)
    assert _owner(pworld, "stock_old") == "BlueSky Resellers" and _owner(pworld, "fab_redrock") == "Fabrikam Inc"
    # The ticks stay, so the partner fixes the one thing wrong.
    assert ROWS.findall(response.get_data(as_text=True)) == [str(pworld.entitlements["stock_old"].id),
                                                             str(pworld.entitlements["stock_new"].id)]
    old_id = pworld.entitlements["stock_old"].id
    assert f'value="{old_id}" id="stock-{old_id}" checked' in response.get_data(as_text=True)
    nothing = _assign(bluesky, pworld, [], customer=pworld.orgs["fabrikam"].id)
    assert nothing.status_code == 422 and "Tick at least one entitlement" in nothing.get_data(as_text=True)
    nobody = _assign(bluesky, pworld, ["stock_old"])
    assert nobody.status_code == 422 and "Choose a customer you serve" in nobody.get_data(as_text=True)


def test_a_customer_we_do_not_serve_cannot_be_chosen_by_id(pworld, as_partner):
    # Tailspin is nobody's of ours: by id it is refused (by its exact name it would be found).
    response = _assign(as_partner("bluesky"), pworld, ["stock_old"], customer=pworld.orgs["tailspin"].id)
    assert response.status_code == 422 and "Choose one of the customers you serve." in response.get_data(as_text=True)
    assert _assign(as_partner("bluesky"), pworld, ["stock_old"], customer="junk").status_code == 422
    assert _owner(pworld, "stock_old") == "BlueSky Resellers"


def test_other_partners_cannot_assign_our_stock(pworld, as_partner):
    for key in ("northwind", "redrock"):
        response = _assign(as_partner(key), pworld, ["stock_old"], customer_name="Fabrikam Inc")
        assert response.status_code == 422
    assert _owner(pworld, "stock_old") == "BlueSky Resellers"


def test_the_chooser_searches_the_customers_we_serve(pworld, as_partner):
    bluesky = as_partner("bluesky")
    body = bluesky.get("/partner/stock/customers", query_string={"customer_q": "fab"},
                       headers=HX).get_data(as_text=True)
    assert "<html" not in body
    assert re.findall(r'<label class="form-check-label"[^>]*>([^<]*)</label>', body) == ["Fabrikam Inc"]
    everyone = bluesky.get("/partner/stock/customers", headers=HX).get_data(as_text=True)
    assert re.findall(r'<label class="form-check-label"[^>]*>([^<]*)</label>', everyone) == [
        "Contoso Germany", "Fabrikam Inc"]  # not Tailspin (direct), not RedRock's
    assert "No customer you serve matches" in bluesky.get(
        "/partner/stock/customers", query_string={"customer_q": "tailspin"}, headers=HX).get_data(as_text=True)
    # Without JavaScript the stock page answers the chooser's search itself.
    page = bluesky.get("/partner/stock", query_string={"customer_q": "fab"}).get_data(as_text=True)
    assert "<html" in page and f'id="assign-customer-{pworld.orgs["fabrikam"].id}"' in page


def test_working_for_a_customer_assigns_to_it_on_its_behalf(pworld, as_partner):
    bluesky = as_partner("bluesky", working_for="germany")
    page = bluesky.get("/partner/stock").get_data(as_text=True)
    assert "To Contoso Germany, the customer you work for." in page
    assert "assign-customer_name" not in page
    refused = _assign(bluesky, pworld, ["stock_old"], customer_name="Tailspin Toys")
    assert refused.status_code == 422
    other = _assign(bluesky, pworld, ["stock_old"], customer=pworld.orgs["fabrikam"].id)
    assert other.status_code == 422
    done = _assign(bluesky, pworld, ["stock_old"], headers={}, customer=pworld.orgs["germany"].id)
    assert done.status_code == 302 and done.location.endswith("/partner/stock")
    assert _owner(pworld, "stock_old") == "Contoso Germany"
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "entitlement.assign"))
    assert event.on_behalf_of_org_id == pworld.orgs["germany"].id
