"""The producer's channel pages: partners' directory, a partner's page, the channel's edges."""

from __future__ import annotations

import re

from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, ChannelRelationship, Organization
from portal.services.requests import apply_as_partner
from tests.producer.channel_world import fresh

HX = {"HX-Request": "true"}


def summary(html: str) -> str:
    return re.search(r'class="mb-0 table-summary"[^>]*>([^<]*)<', html).group(1)


def test_directory_lists_partners_only_with_filters(staff_client, channel):
    html = staff_client.get("/producer/partners").get_data(as_text=True)
    assert summary(html) == "5 partners"
    assert "Contoso Group" not in html  # customers are not partners
    assert summary(staff_client.get("/producer/partners?kind=reseller").get_data(as_text=True)) == "3 partners"
    assert summary(staff_client.get("/producer/partners?status=suspended").get_data(as_text=True)) == "1 partner"
    assert summary(staff_client.get("/producer/partners?stocking=yes").get_data(as_text=True)) == "1 partner"
    answer = staff_client.get("/producer/partners?q=north", headers=HX)
    assert answer.status_code == 200 and summary(answer.get_data(as_text=True)) == "1 partner matching “north”"
    assert "<html" not in answer.get_data(as_text=True)
    assert staff_client.get("/producer/partners?kind=customer").status_code == 400


def test_create_partner_with_supplier(staff_client, channel):
    northwind = channel.orgs["northwind"]
    answer = staff_client.post("/producer/partners", data={
        "name": "Globex Resale", "kind": "reseller", "stocking": "y", "supplier_id": str(northwind.id),
        "email": "sales@globex.example"})
    assert answer.status_code == 302
    fresh()
    globex = db.session.scalar(select(Organization).where(Organization.name == "Globex Resale"))
    assert (globex.kind, globex.stocking, globex.status) == ("reseller", True, "active")
    assert db.session.scalar(select(ChannelRelationship).where(
        ChannelRelationship.supplier_id == northwind.id, ChannelRelationship.buyer_id == globex.id)) is not None
    actions = set(db.session.scalars(select(AuditEvent.action).where(AuditEvent.subject_org_id == globex.id)))
    assert {"organization.create", "channel.add"} <= actions


def test_create_partner_bad_input_is_422_and_writes_nothing(staff_client, channel):
    before = db.session.scalar(select(db.func.count()).select_from(Organization))
    answer = staff_client.post("/producer/partners", data={"name": "", "kind": "customer"})
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert "Enter a name." in html and "Not a valid choice" in html
    answer = staff_client.post("/producer/partners", data={"name": "X", "kind": "reseller",
                                                           "supplier_id": str(channel.orgs["contoso"].id)})
    assert answer.status_code == 422 and "Choose the producer or a distributor." in answer.get_data(as_text=True)
    assert db.session.scalar(select(db.func.count()).select_from(Organization)) == before


def test_partner_page_figures_attachments_and_customers(staff_client, channel):
    bluesky = channel.orgs["bluesky"]
    html = staff_client.get(f"/producer/partners/{bluesky.id}").get_data(as_text=True)
    assert re.search(r'id="fig-sold">2<', html)  # de_studio and its own stock, both sold by it
    assert re.search(r'id="fig-stock">1<', html)
    assert re.search(r'id="fig-seats">15<', html)
    assert re.search(r'id="fig-customers">1<', html)  # Contoso Germany only
    assert "Contoso Germany" in html and "Fabrikam Inc" not in html
    assert summary(html) == "2 attachments"  # de_studio and its own stock
    assert channel.entitlements["fab_studio"].code not in html


def test_partner_page_404_for_customer_and_missing(staff_client, channel):
    assert staff_client.get(f"/producer/partners/{channel.orgs['contoso'].id}").status_code == 404
    assert staff_client.get("/producer/partners/999999").status_code == 404


def test_suspend_and_edit_partner(staff_client, channel):
    redrock = channel.orgs["redrock"]
    assert staff_client.post(f"/producer/partners/{redrock.id}/status", data={"status": "suspended"}).status_code == 302
    fresh()
    db.session.refresh(redrock)
    assert redrock.status == "suspended"
    answer = staff_client.post(f"/producer/partners/{redrock.id}/edit", data={
        "name": "RedRock IT", "phone": "+49 1", "stocking": "y"})
    assert answer.status_code == 302
    fresh()
    db.session.refresh(redrock)
    assert (redrock.phone, redrock.stocking) == ("+49 1", True)
    answer = staff_client.post(f"/producer/partners/{redrock.id}/edit", data={"name": "", "website": "nope"})
    assert answer.status_code == 422


def test_decide_partner_application(staff_client, channel, make):
    applicant = make.user(channel.orgs["tailspin"], "member")
    req = apply_as_partner(applicant, company="Umbrella Services", kind="service_provider")
    decoy = apply_as_partner(make.user(channel.orgs["fabrikam"], "member"), company="Decoy Co", kind="reseller")
    db.session.commit()
    html = staff_client.get("/producer/partners").get_data(as_text=True)
    assert "Umbrella Services" in html and "Decoy Co" in html
    answer = staff_client.post(f"/producer/partners/applications/{req.id}", data={
        f"r-{req.id}-decision": "approve", f"r-{req.id}-note": "Welcome"})
    assert answer.status_code == 302
    fresh()
    db.session.refresh(req)
    db.session.refresh(decoy)
    assert req.state == "approved" and decoy.state == "pending"
    umbrella = db.session.get(Organization, req.target_org_id)
    assert (umbrella.name, umbrella.kind) == ("Umbrella Services", "service_provider")
    again = staff_client.post(f"/producer/partners/applications/{req.id}", data={f"r-{req.id}-decision": "reject"})
    assert again.status_code == 409


def test_channel_edges_and_drawing(staff_client, channel):
    html = staff_client.get("/producer/channel").get_data(as_text=True)
    assert summary(html) == "4 channel relationships"
    assert '<title id="tiers-svg-title">' in html and "<desc" in html
    assert "Northwind Distribution supplies 1 reseller." in html
    focused = staff_client.get(f"/producer/channel?focus={channel.orgs['northwind'].id}").get_data(as_text=True)
    assert "BlueSky Resellers (Reseller)" in focused
    assert staff_client.get(f"/producer/channel?focus={channel.orgs['redrock'].id}").status_code == 404
    assert staff_client.get("/producer/channel?focus=abc").status_code == 400


def test_add_and_remove_edges(staff_client, channel):
    o = channel.orgs
    assert staff_client.post("/producer/channel", data={"supplier_id": o["northwind"].id,
                                                        "buyer_id": o["initech"].id}).status_code == 302
    fresh()
    edge = db.session.scalar(select(ChannelRelationship).where(ChannelRelationship.buyer_id == o["initech"].id))
    # Unused: removed.
    edge_id = edge.id
    assert staff_client.post(f"/producer/channel/{edge_id}/remove").status_code == 302
    fresh()
    assert db.session.scalar(select(ChannelRelationship).where(ChannelRelationship.id == edge_id)) is None
    # Used by de_studio and the stock: refused with the reason, kept.
    used = db.session.scalar(select(ChannelRelationship).where(ChannelRelationship.buyer_id == o["bluesky"].id))
    answer = staff_client.post(f"/producer/channel/{used.id}/remove")
    assert answer.status_code == 409 and "2 entitlements were sold along" in answer.get_data(as_text=True)
    assert db.session.get(ChannelRelationship, used.id) is not None
    # Bad input.
    assert staff_client.post("/producer/channel", data={"supplier_id": o["contoso"].id,
                                                        "buyer_id": o["initech"].id}).status_code == 422
    assert staff_client.post("/producer/channel", data={"supplier_id": o["redrock"].id,
                                                        "buyer_id": o["redrock"].id}).status_code == 422
