"""The producer's customer directory and a customer's page."""

from __future__ import annotations

import re

from sqlalchemy import select

from portal.extensions import db
from portal.models import Organization
from tests.producer.channel_world import fresh

HX = {"HX-Request": "true"}


def summary(html: str) -> str:
    return re.search(r'class="mb-0 table-summary"[^>]*>([^<]*)<', html).group(1)


def test_directory_search_levels_and_paths(staff_client, channel):
    html = staff_client.get("/producer/customers").get_data(as_text=True)
    assert summary(html) == "4 customers"  # no partner, no producer
    assert "Contoso Group &gt; Contoso Germany" in html
    assert summary(staff_client.get("/producer/customers?level=top").get_data(as_text=True)) == "3 customers"
    assert summary(staff_client.get("/producer/customers?level=nested").get_data(as_text=True)) == "1 customer"
    answer = staff_client.get("/producer/customers?q=contoso", headers=HX)
    assert summary(answer.get_data(as_text=True)) == "2 customers matching “contoso”"
    under = staff_client.get(f"/producer/customers?under={channel.orgs['contoso'].id}").get_data(as_text=True)
    assert summary(under) == "1 customer" and "Contoso Germany" in under
    assert staff_client.get(f"/producer/customers?under={channel.orgs['redrock'].id}").status_code == 404
    assert staff_client.get("/producer/customers?under=x").status_code == 400


def test_customer_page_shows_every_partner_and_why(staff_client, channel):
    e = channel.entitlements
    html = staff_client.get(f"/producer/customers/{channel.orgs['contoso'].id}").get_data(as_text=True)
    assert summary(html) == "2 entitlements"  # its own and Contoso Germany's
    assert e["de_studio"].code in html and e["group_sync"].code in html
    assert e["fab_studio"].code not in html and e["tail_studio"].code not in html
    assert "BlueSky Resellers</a> sold it (the seller of the sales chain)" in html
    assert "Northwind Distribution</a> distributed it (tier 1 of 2 in the sales chain)" in html
    assert "Initech Services</a> services it, attached by the producer" in html
    assert "RedRock IT</a> sold it" in html
    assert "Chain: Northwind Distribution &gt; BlueSky Resellers" in html
    germany = staff_client.get(f"/producer/customers/{channel.orgs['germany'].id}").get_data(as_text=True)
    assert summary(germany) == "1 entitlement"
    assert staff_client.get(f"/producer/customers/{channel.orgs['bluesky'].id}").status_code == 404


def test_edit_add_subsidiary_and_move(staff_client, channel):
    contoso, tailspin = channel.orgs["contoso"], channel.orgs["tailspin"]
    assert staff_client.post(f"/producer/customers/{contoso.id}/edit", data={
        "org-name": "Contoso Holding", "org-email": "it@contoso.example"}).status_code == 302
    assert staff_client.post(f"/producer/customers/{contoso.id}/subsidiaries",
                             data={"sub-name": "Contoso France"}).status_code == 302
    assert staff_client.post(f"/producer/customers/{tailspin.id}/move",
                             data={"move-parent": "contoso holding"}).status_code == 302
    fresh()
    france = db.session.scalar(select(Organization).where(Organization.name == "Contoso France"))
    tailspin = db.session.get(Organization, tailspin.id)
    assert france.parent_id == contoso.id and tailspin.parent_id == contoso.id
    assert db.session.get(Organization, contoso.id).name == "Contoso Holding"
    # Under its own descendant: refused next to the field, nothing moved.
    answer = staff_client.post(f"/producer/customers/{contoso.id}/move", data={"move-parent": "Contoso France"})
    assert answer.status_code == 422 and "cannot move under itself" in answer.get_data(as_text=True)
    answer = staff_client.post(f"/producer/customers/{contoso.id}/move", data={"move-parent": "Nobody Ltd"})
    assert answer.status_code == 422 and "No single active customer" in answer.get_data(as_text=True)
    assert staff_client.post(f"/producer/customers/{contoso.id}/edit", data={"org-name": ""}).status_code == 422


def test_directory_counts_from_the_read_model_and_stops_counting_a_search(staff_client, channel, make,
                                                                           count_queries, monkeypatch):
    """Every customer: the row_count read model's total (no count of the organizations); a
    narrowed list counts up to the cap and says "More than" beyond."""
    from portal.blueprints.producer import paging

    make.customer("Contoso Austria")
    make.partner("reseller", "Contoso Resellers")  # a decoy: a partner is no customer
    fresh()
    with count_queries() as counter:
        html = staff_client.get("/producer/customers").get_data(as_text=True)
    assert summary(html) == "5 customers"
    assert not [s for s in counter.statements if re.search(r"count\(\*\).*FROM organization", s, re.S)]
    monkeypatch.setattr(paging, "COUNT_CAP", 2)
    assert summary(staff_client.get("/producer/customers?q=contoso").get_data(as_text=True)) == \
        "More than 2 customers matching “contoso”"
    assert summary(staff_client.get("/producer/customers?q=fabrikam").get_data(as_text=True)) == \
        "1 customer matching “fabrikam”"
    assert summary(staff_client.get("/producer/customers").get_data(as_text=True)) == "5 customers"
