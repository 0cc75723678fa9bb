"""A small channel for the producer's channel pages: two tiers, decoys of every kind.

Acme -> Northwind (distributor) -> BlueSky (stocking reseller); Acme -> RedRock (reseller);
Initech (service provider, no edge); Zephyr (suspended reseller). Contoso Group (with
Contoso Germany under it) bought through Northwind -> BlueSky and through RedRock; Fabrikam
through RedRock; Tailspin direct; BlueSky holds one entitlement in stock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pytest

from portal.extensions import db
from portal.models import Entitlement, Organization, User
from portal.services.activations import activate
from tests.factories import write_transaction

TODAY = date.today()


@dataclass
class Channel:
    orgs: dict[str, Organization]
    entitlements: dict[str, Entitlement]
    staff: User
    admin: User


def build_channel(make) -> Channel:
    o = {}
    o["northwind"] = make.partner("distributor", "Northwind Distribution")
    o["bluesky"] = make.partner("reseller", "BlueSky Resellers", supplied_by=o["northwind"], stocking=True)
    o["redrock"] = make.partner("reseller", "RedRock IT")
    o["initech"] = make.partner("service_provider", "Initech Services")
    o["zephyr"] = make.partner("reseller", "Zephyr Decoy Resellers")
    o["contoso"] = make.customer("Contoso Group")
    o["germany"] = make.customer("Contoso Germany", parent=o["contoso"])
    o["fabrikam"] = make.customer("Fabrikam Inc")
    o["tailspin"] = make.customer("Tailspin Toys")
    studio = make.product("STUDIO", "Acme Studio")
    sync = make.product("SYNC", "Acme Cloud Sync")
    nw, bs, rr = o["northwind"], o["bluesky"], o["redrock"]
    e = {
        "de_studio": make.entitlement(o["germany"], [nw, bs], seats=10, product=studio),
        "group_sync": make.entitlement(o["contoso"], [rr], seats=50, model="subscription", product=sync,
                                       end=TODAY + timedelta(days=30)),
        "fab_studio": make.entitlement(o["fabrikam"], [rr], seats=7, product=studio),
        "tail_studio": make.entitlement(o["tailspin"], [], seats=3, product=studio),
        "stock": make.entitlement(bs, [nw, bs], seats=5, product=studio, fulfilment="stocking"),
    }
    make.attach(e["de_studio"], o["initech"], permissions=("view", "activate"))
    write_transaction()
    activate(make.system, e["de_studio"].lines[0], "de-host", seats=4)
    activate(make.system, e["group_sync"].lines[0], "sync-host", seats=10)
    db.session.commit()
    from portal.services.channel import set_partner_status
    set_partner_status(make.system, o["zephyr"], "suspended")
    db.session.commit()
    producer = make.producer()
    return Channel(o, e, make.user(producer, "staff"), make.user(producer, "admin"))


@pytest.fixture
def channel(make) -> Channel:
    return build_channel(make)


@pytest.fixture
def staff_client(channel, login_as):
    client = login_as(channel.staff, channel.staff.memberships[0].org)
    fresh()
    return client


def fresh() -> None:
    """End the test's read transaction, so it sees what the requests committed (SQLite WAL
    keeps a reader on its snapshot)."""
    db.session.commit()
