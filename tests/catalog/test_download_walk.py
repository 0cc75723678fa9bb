"""What a partner may download, decided two ways that must agree (``policy.download_rights``):

- a partner that may download from few entitlements aggregates their lines;
- one that may download from more than ``DOWNLOAD_WALK_FROM`` walks each product's lines in an
  index's order and stops at the first line of an entitlement it may download.

The partner here may download from a dozen entitlements; with ``DOWNLOAD_WALK_FROM`` at 0 it
walks. Both see the same products with the same dates, and the page is the same, among decoys
that a walk finds first in every index order: a later maintenance end, a running subscription
and a running pay-per-use line each on an entitlement the partner may not download from (another
partner's, viewed without the download permission, revoked, suspended), and a product only
others hold.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from portal import policy
from portal.extensions import db
from portal.models import Attachment, Release
from portal.services import catalog
from portal.services.entitlements import LineSpec, create_entitlement, revoke_attachment, set_entitlement_status

TODAY = date.today()


def days(n: int) -> date:
    return TODAY + timedelta(days=n)


@pytest.fixture
def world(make):
    staff = make.actor(make.producer(), "staff")
    names = ("studio", "sync", "credits", "meter", "suite", "gateway", "vault", "decoy")
    products = {name: catalog.create_product(staff, name=f"Acme {name.title()}", sku=name.upper()) for name in names}
    for k, name in enumerate(names):
        for n, released in enumerate((days(-700), days(-60), days(-25), days(5 + k))):
            catalog.add_release(staff, products[name], version=f"{n}.0", released_on=released)
    db.session.commit()
    seller = make.partner("reseller", "Seller", stocking=True)
    other = make.partner("reseller", "Other Seller")
    customer, stranger = make.customer("Contoso"), make.customer("Stranger")

    def order(product, model, *, owner=customer, via=(seller,), start=None, end=None, maintenance=None, **kw):
        line = LineSpec(products[product], model, 5, start_date=start, end_date=end, maintenance_end=maintenance,
                        usage_period="month" if model == "usage" else None)
        entitlement = create_entitlement(make.system, owner=owner, lines=[line], sales_chain=list(via), **kw)
        db.session.commit()
        return entitlement

    # Studio: the latest maintenance end of the seller's lines is day 100 (a stranger's runs to 900).
    order("studio", "perpetual", maintenance=days(-30))
    order("studio", "perpetual", maintenance=days(100))
    order("studio", "perpetual", owner=stranger, via=(other,), maintenance=days(900))
    # Sync: subscriptions ended (the last on day -20) or not begun (the first on day 10); the
    # running ones are not the seller's to download from.
    order("sync", "subscription", start=days(-400), end=days(-50))
    order("sync", "subscription", start=days(-300), end=days(-20))
    order("sync", "subscription", start=days(40), end=days(400))
    order("sync", "subscription", start=days(10), end=days(375))
    order("sync", "subscription", owner=stranger, via=(other,), start=days(-10), end=days(355))
    order("sync", "subscription", owner=stranger, via=(other,), start=days(-100), end=days(-1))
    viewed = order("sync", "subscription", via=(other,), start=days(-10), end=days(355))
    make.attach(viewed, seller, permissions=("view",))
    suspended = order("sync", "subscription", start=days(-10), end=days(355))
    set_entitlement_status(make.system, suspended, "suspended")
    db.session.commit()
    # Credits: one pay-per-use line running (without an end), one over, one not begun.
    order("credits", "usage", start=days(-10))
    order("credits", "usage", start=days(-90), end=days(-5))
    order("credits", "usage", start=days(5))
    # Meter: pay-per-use lines, none running: listed, nothing entitled.
    order("meter", "usage", start=days(-90), end=days(-5))
    order("meter", "usage", owner=stranger, via=(other,), start=days(-10))
    # Suite: a perpetual line without a maintenance end beside one that ended.
    order("suite", "perpetual", maintenance=days(-500))
    order("suite", "perpetual")
    # Gateway: the seller's stock only.
    order("gateway", "perpetual", owner=seller, fulfilment="stocking", maintenance=days(-40))
    # Vault: its attachment revoked; Decoy: another's customer only.
    revoked = order("vault", "subscription", start=days(-10), end=days(355))
    attachment = db.session.scalar(select(Attachment).where(Attachment.entitlement_id == revoked.id,
                                                            Attachment.partner_id == seller.id))
    revoke_attachment(make.system, attachment)
    db.session.commit()
    order("decoy", "perpetual", owner=stranger, via=(other,), maintenance=days(900))
    return {"products": products, "seller": seller, "customer": customer}


@pytest.fixture
def walk(monkeypatch):
    """Every partner with something to download walks."""
    monkeypatch.setattr(policy, "DOWNLOAD_WALK_FROM", 0)


def _decisions(rights) -> dict[int, list]:
    releases = db.session.scalars(select(Release).order_by(Release.id)).all()
    return {pid: [r.decide(release.released_on) for release in releases if release.product_id == pid]
            for pid, r in rights.items()}


def _rights(make, world):
    actor = policy.Actor(user=None, org=world["seller"], role="admin")
    return policy.download_rights(actor, TODAY)


def test_the_aggregate_decides_with_the_partners_lines_only(make, world):
    rights = _rights(make, world)
    p = world["products"]
    assert set(rights) == {p[name].id for name in ("studio", "sync", "credits", "meter", "suite", "gateway")}
    assert rights[p["studio"].id] == policy.ProductRights(p["studio"].id, perpetual=True, maintenance_end=days(100))
    assert rights[p["sync"].id] == policy.ProductRights(p["sync"].id, subscription_ended=days(-20),
                                                        subscription_starts=days(10))
    assert rights[p["credits"].id] == policy.ProductRights(p["credits"].id, usage_active=True)
    assert rights[p["meter"].id] == policy.ProductRights(p["meter"].id)
    assert rights[p["suite"].id] == policy.ProductRights(p["suite"].id, perpetual=True, perpetual_unlimited=True)
    assert rights[p["gateway"].id] == policy.ProductRights(p["gateway"].id, perpetual=True,
                                                           maintenance_end=days(-40))
    assert rights[p["sync"].id].decide(days(-25)) == (
        False, f"Your subscription ended on {days(-20).isoformat()}. "
               f"Your subscription starts on {days(10).isoformat()}.")
    assert rights[p["meter"].id].decide(days(-25)) == (False, "No active line of yours covers this release.")


def test_the_walk_decides_the_same(make, world, monkeypatch):
    aggregated = _rights(make, world)
    monkeypatch.setattr(policy, "DOWNLOAD_WALK_FROM", 0)
    walked = _rights(make, world)
    assert walked == aggregated
    assert _decisions(walked) == _decisions(aggregated)


def test_the_walk_finds_a_running_subscription_and_pay_per_use_line(make, world, monkeypatch):
    p = world["products"]
    # The seller's own running subscription of Sync, and a pay-per-use line of Meter ending today.
    create_entitlement(make.system, owner=world["customer"], sales_chain=[world["seller"]],
                       lines=[LineSpec(p["sync"], "subscription", 1, start_date=days(-5), end_date=days(1)),
                              LineSpec(p["meter"], "usage", 1, start_date=days(-5), end_date=TODAY,
                                       usage_period="month")])
    db.session.commit()
    aggregated = _rights(make, world)
    monkeypatch.setattr(policy, "DOWNLOAD_WALK_FROM", 0)
    walked = _rights(make, world)
    assert walked[p["sync"].id] == policy.ProductRights(p["sync"].id, subscription_active=True)
    assert walked[p["meter"].id] == policy.ProductRights(p["meter"].id, usage_active=True)
    assert walked == aggregated


def _page(client) -> str:
    """The page's content (the layout around it carries a CSRF token that changes each second)."""
    page = client.get("/partner/downloads").get_data(as_text=True)
    return re.search(r"<main.*</main>", page, re.S).group(0)


def test_the_page_is_the_same_walked(make, login_as, world, monkeypatch):
    client = login_as(make.user(world["seller"], "admin"), world["seller"])
    aggregated = _page(client)
    assert "Acme Gateway" in aggregated and "Acme Vault" not in aggregated and "Acme Decoy" not in aggregated
    monkeypatch.setattr(policy, "DOWNLOAD_WALK_FROM", 0)
    assert _page(client) == aggregated


def test_a_partner_with_nothing_to_download_gets_nothing(make, world, walk):
    bystander = make.partner("reseller", "Bystander")
    assert policy.download_rights(policy.Actor(user=None, org=bystander, role="admin"), TODAY) == {}
