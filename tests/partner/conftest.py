"""A channel with decoys: Northwind -> BlueSky (stocking) and RedRock sell to the same customers;
Initech services one entitlement; Zephyr, a decoy service provider, is attached to everything.
Every figure and list of BlueSky's must leave out what it is not attached to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pytest

from portal.extensions import db
from portal.models import Entitlement, Organization, User
from portal.services.activations import activate
from tests.factories import write_transaction

HX = {"HX-Request": "true"}


@dataclass
class Channel:
    orgs: dict[str, Organization]
    entitlements: dict[str, Entitlement]
    users: dict[str, User]


@pytest.fixture
def channel(make) -> Channel:
    today = date.today()
    o = {}
    o["northwind"] = make.partner("distributor", "Northwind Distribution")
    o["bluesky"] = make.partner("reseller", "BlueSky Resellers", supplied_by=o["northwind"], stocking=True)
    o["redrock"] = make.partner("reseller", "RedRock IT")
    o["initech"] = make.partner("service_provider", "Initech Services")
    o["zephyr"] = make.partner("service_provider", "Zephyr Decoy Services")
    o["contoso"] = make.customer("Contoso Group")
    o["germany"] = make.customer("Contoso Germany", parent=o["contoso"])
    o["fabrikam"] = make.customer("Fabrikam Inc")
    o["tailspin"] = make.customer("Tailspin Toys")
    o["wingtip"] = make.customer("Wingtip Decoy")  # RedRock's only
    nb = [o["northwind"], o["bluesky"]]
    e = {}
    e["germany"] = make.entitlement(o["germany"], nb, seats=10)
    e["fabrikam_sub"] = make.entitlement(o["fabrikam"], nb, model="subscription", seats=20,
                                         end=today + timedelta(days=30))
    e["fabrikam_rr"] = make.entitlement(o["fabrikam"], [o["redrock"]], model="subscription", seats=7,
                                        end=today + timedelta(days=20))
    e["tailspin"] = make.entitlement(o["tailspin"], nb, seats=5)
    e["tailspin_late"] = make.entitlement(o["tailspin"], nb, model="subscription", seats=3,
                                          end=today + timedelta(days=200))
    e["wingtip"] = make.entitlement(o["wingtip"], [o["redrock"]], seats=50)
    e["stock1"] = make.entitlement(o["bluesky"], nb, fulfilment="stocking")
    e["stock2"] = make.entitlement(o["bluesky"], nb, fulfilment="stocking")
    make.attach(e["germany"], o["initech"], permissions=("view", "activate"))
    make.attach(list(e.values()), o["zephyr"], permissions=("view", "download", "activate"))
    # Stock ages: one bought 100 days ago.
    e["stock1"].purchase_date = today - timedelta(days=100)
    db.session.commit()
    write_transaction()
    activate(make.system, e["germany"].lines[0], "de-host-1", seats=4)
    activate(make.system, e["fabrikam_sub"].lines[0], "fab-host-1", seats=5)
    activate(make.system, e["wingtip"].lines[0], "wing-host", seats=30)
    db.session.commit()
    users = {
        "bluesky_admin": make.user(o["bluesky"], "admin", email="admin@bluesky.example"),
        "bluesky_member": make.user(o["bluesky"], "member", email="member@bluesky.example"),
        "northwind_admin": make.user(o["northwind"], "admin", email="admin@northwind.example"),
        "redrock_admin": make.user(o["redrock"], "admin", email="admin@redrock.example"),
        "initech_admin": make.user(o["initech"], "admin", email="admin@initech.example"),
    }
    return Channel(o, e, users)


@pytest.fixture
def bluesky(channel, login_as):
    return login_as(channel.users["bluesky_admin"])
