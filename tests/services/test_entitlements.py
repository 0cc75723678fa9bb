"""Entering entitlements, sales chains, stock, attachments."""

import re
from datetime import date

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEvent, Entitlement
from portal.services.entitlements import (
    LineSpec,
    assign_stock,
    create_entitlement,
)
from portal.services.errors import NotAllowed, ServiceError


@pytest.fixture
def channel(make):
    northwind = make.partner("distributor", "Northwind")
    bluesky = make.partner("reseller", "BlueSky", supplied_by=northwind, stocking=True)
    redrock = make.partner("reseller", "RedRock")
    initech = make.partner("service_provider", "Initech")
    return {"northwind": northwind, "bluesky": bluesky, "redrock": redrock, "initech": initech,
            "customer": make.customer("Contoso"), "product": make.product("STUDIO", "Studio")}


def _line(channel, seats=10):
    return [LineSpec(channel["product"], "perpetual", seats, maintenance_end=date(2027, 6, 30))]


def test_multi_tier_sale_creates_chain_and_attachments(channel, make):
    entitlement = create_entitlement(make.system, owner=channel["customer"], lines=_line(channel),
                                     sales_chain=[channel["northwind"], channel["bluesky"]], order_ref="PO-1")
    db.session.commit()
    assert re.fullmatch(r"ENT-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", entitlement.code)
    assert [link.partner.name for link in entitlement.chain] == ["Northwind", "BlueSky"]
    attachments = {a.partner.name: (a.relation, a.permissions) for a in entitlement.attachments}
    assert attachments == {
        "Northwind": ("distributed", ["view"]),
        "BlueSky": ("sold", ["view", "download", "activate"]),
    }
    assert entitlement.lines[0].activation_code.startswith("ACT-")
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "entitlement.create"))
    assert event.details["sales_chain"] == ["Northwind", "BlueSky"]
    assert event.on_behalf_of_org_id is None


def test_direct_sale_has_no_chain_and_no_attachments(channel, make):
    entitlement = make.entitlement(channel["customer"])
    assert entitlement.chain == [] and entitlement.attachments == []


def test_chain_must_follow_channel_edges(channel, make):
    # BlueSky is supplied by Northwind, not directly by the producer.
    with pytest.raises(ServiceError, match="BlueSky is not supplied by the producer") as error:
        create_entitlement(make.system, owner=channel["customer"], lines=_line(channel),
                           sales_chain=[channel["bluesky"]])
    assert error.value.field == "sales_chain"
    with pytest.raises(ServiceError, match="RedRock is not supplied by Northwind"):
        create_entitlement(make.system, owner=channel["customer"], lines=_line(channel),
                           sales_chain=[channel["northwind"], channel["redrock"]])
    with pytest.raises(ServiceError, match="not a partner"):
        create_entitlement(make.system, owner=channel["customer"], lines=_line(channel),
                           sales_chain=[channel["customer"]])
    db.session.rollback()
    assert db.session.scalar(select(func.count(Entitlement.id))) == 0


@pytest.mark.parametrize(("spec", "field"), [
    ({"license_model": "lease"}, "lines-0-license_model"),
    ({"quantity": 0}, "lines-0-quantity"),
    ({"license_model": "subscription"}, "lines-0-end_date"),
    ({"license_model": "usage"}, "lines-0-usage_period"),
    ({"start_date": date(2026, 5, 1), "end_date": date(2026, 4, 1)}, "lines-0-end_date"),
])
def test_bad_lines_are_refused_with_the_field(channel, make, spec, field):
    values = {"product": channel["product"], "license_model": "perpetual", "quantity": 5} | spec
    with pytest.raises(ServiceError) as error:
        create_entitlement(make.system, owner=channel["customer"], lines=[LineSpec(**values)])
    assert error.value.field == field


def test_only_producer_staff_enter_entitlements(channel, make):
    for org in (channel["customer"], channel["bluesky"]):
        with pytest.raises(NotAllowed):
            create_entitlement(make.actor(org), owner=channel["customer"], lines=_line(channel))


def test_stock_is_held_by_the_seller_and_assigned_to_a_customer(channel, make):
    bluesky = channel["bluesky"]
    with pytest.raises(ServiceError, match="stocking partner"):
        create_entitlement(make.system, owner=channel["redrock"], fulfilment="stocking", lines=_line(channel),
                           sales_chain=[channel["redrock"]])
    stock = create_entitlement(make.system, owner=bluesky, fulfilment="stocking", lines=_line(channel),
                               sales_chain=[channel["northwind"], bluesky])
    db.session.commit()
    bluesky_admin = make.actor(bluesky)
    with pytest.raises(NotAllowed):
        assign_stock(make.actor(channel["redrock"]), stock, channel["customer"])
    with pytest.raises(ServiceError):
        assign_stock(bluesky_admin, stock, channel["redrock"])
    assign_stock(bluesky_admin, stock, channel["customer"])
    db.session.commit()
    assert stock.owner_id == channel["customer"].id
    assert [link.partner.name for link in stock.chain] == ["Northwind", "BlueSky"]  # the chain stays
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "entitlement.assign"))
    # Selling from its own stock is the partner's own act, unless it works for a customer.
    assert event.org_id == bluesky.id and event.on_behalf_of_org_id is None
    with pytest.raises(NotAllowed):  # no longer in stock
        assign_stock(bluesky_admin, stock, channel["customer"])


def test_on_behalf_of_is_set_only_for_a_partner_acting_for_a_customer(channel, make):
    customer, bluesky = channel["customer"], channel["bluesky"]
    partner = make.actor(bluesky)
    assert partner.on_behalf_of(customer) == customer.id  # the object's owner
    assert partner.on_behalf_of(bluesky) is None  # its own object, working for nobody
    assert partner.for_customer(customer.id).on_behalf_of(bluesky) == customer.id  # the chosen customer
    assert make.system.on_behalf_of(customer) is None  # producer staff act in their own name
    assert make.actor(customer, "admin").on_behalf_of(customer) is None
