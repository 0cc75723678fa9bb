"""Two worlds of partners, each with decoys.

``pworld``: The partner's world: Fabrikam bought one entitlement through RedRock and one through
Northwind -> BlueSky; Contoso Germany through Northwind -> BlueSky with Initech servicing it;
Tailspin direct; BlueSky holds two entitlements in stock (one 40 days old, one 5). A decoy
service provider (Zephyr) is attached to every customer entitlement, and RedRock activated a
host on its Fabrikam entitlement: none of it may reach another partner's pages.

``channel``: A channel with decoys: Northwind -> BlueSky (stocking) and RedRock sell to the same customers;
Initech services one entitlement; Zephyr, a decoy service provider, is attached to everything.
Every figure and list of BlueSky's must leave out what it is not attached to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pytest

from portal.extensions import db
from portal.models import Activation, Entitlement, Organization, User
from portal.policy import Actor
from portal.services.activations import activate
from portal.services.entitlements import LineSpec, create_entitlement
from tests.factories import write_transaction

HX = {"HX-Request": "true"}


@dataclass
class PartnerWorld:
    orgs: dict[str, Organization]
    entitlements: dict[str, Entitlement]
    activations: dict[str, Activation]
    users: dict[str, User]

    def code(self, key: str) -> str:
        return self.entitlements[key].code


@pytest.fixture
def pworld(make) -> PartnerWorld:
    today = date.today()
    orgs = {}
    orgs["northwind"] = make.partner("distributor", "Northwind Distribution")
    orgs["bluesky"] = make.partner("reseller", "BlueSky Resellers", supplied_by=orgs["northwind"], stocking=True)
    orgs["redrock"] = make.partner("reseller", "RedRock IT")
    orgs["initech"] = make.partner("service_provider", "Initech Services")
    orgs["zephyr"] = make.partner("service_provider", "Zephyr Decoy Services")
    orgs["contoso"] = make.customer("Contoso Group")
    orgs["germany"] = make.customer("Contoso Germany", parent=orgs["contoso"])
    orgs["fabrikam"] = make.customer("Fabrikam Inc")
    orgs["tailspin"] = make.customer("Tailspin Toys")
    nw, bs, rr = orgs["northwind"], orgs["bluesky"], orgs["redrock"]
    studio = make.product("STUDIO", "Acme Studio")
    ents = {
        "de_studio": make.entitlement(orgs["germany"], [nw, bs], seats=10, product=studio),
        "fab_redrock": make.entitlement(orgs["fabrikam"], [rr], seats=20, product=studio),
        "fab_bluesky": make.entitlement(orgs["fabrikam"], [nw, bs], seats=7, product=studio),
        "tailspin": make.entitlement(orgs["tailspin"], [], seats=3, product=studio),
    }
    system = make.system
    for key, days in (("stock_old", 40), ("stock_new", 5)):
        ents[key] = create_entitlement(
            system, owner=bs, fulfilment="stocking", sales_chain=[nw, bs], purchase_date=today - timedelta(days=days),
            lines=[LineSpec(studio, "perpetual", 5, maintenance_end=today + timedelta(days=300))])
    db.session.commit()
    make.attach(ents["de_studio"], orgs["initech"], permissions=("view", "activate"))
    make.attach([ents[k] for k in ("de_studio", "fab_redrock", "fab_bluesky", "tailspin")], orgs["zephyr"],
                permissions=("view", "download", "activate"))
    users = {key: make.user(orgs[key], "admin", email=f"admin@{key}.example")
             for key in ("northwind", "bluesky", "redrock", "initech", "zephyr", "fabrikam", "contoso")}
    write_transaction()
    redrock = Actor(user=users["redrock"], org=rr, role="admin")
    zephyr = Actor(user=users["zephyr"], org=orgs["zephyr"], role="admin")
    activations = {
        "fab_rr_host": activate(redrock, ents["fab_redrock"].lines[0], "fab-rr-host", seats=2)[0],
        "de_cad": activate(system, ents["de_studio"].lines[0], "munich-cad-01", seats=3)[0],
        "de_zephyr": activate(zephyr, ents["de_studio"].lines[0], "zephyr-node", seats=1)[0],
        "fab_bs_host": activate(system, ents["fab_bluesky"].lines[0], "fab-bs-host", seats=1)[0],
    }
    db.session.commit()
    return PartnerWorld(orgs, ents, activations, users)


@pytest.fixture
def as_partner(pworld, login_as):
    """``as_partner("bluesky")``: a client signed in as that organization's admin."""
    def client(key: str, working_for: str | None = None):
        c = login_as(pworld.users[key], pworld.orgs[key])
        if working_for is not None:
            assert c.post("/partner/customer", data={"customer_id": pworld.orgs[working_for].id}).status_code == 302
        return c
    return client


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
