"""A customer with a hierarchy, bought from several partners, next to another customer holding
the same products through the same partners (the decoys every list and figure must leave out)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pytest

from portal.extensions import db
from portal.models import Activation, Entitlement, Organization, User
from portal.services.activations import activate, record_usage
from tests.factories import write_transaction


@dataclass
class Shop:
    orgs: dict[str, Organization]
    entitlements: dict[str, Entitlement]
    activations: dict[str, Activation]
    admin: User
    member: User  # a member of Contoso Germany: sees its subtree only

    def line(self, key: str):
        return self.entitlements[key].lines[0]


@pytest.fixture
def shop(make) -> Shop:
    today = date.today()
    orgs = {}
    orgs["northwind"] = make.partner("distributor", "Northwind Distribution")
    orgs["bluesky"] = make.partner("reseller", "BlueSky Resellers", supplied_by=orgs["northwind"])
    orgs["redrock"] = make.partner("reseller", "RedRock IT")
    orgs["initech"] = make.partner("service_provider", "Initech Services")
    orgs["zephyr"] = make.partner("service_provider", "Zephyr Decoy Services")
    orgs["contoso"] = make.customer("Contoso Group")
    orgs["germany"] = make.customer("Contoso Germany", parent=orgs["contoso"])
    orgs["munich"] = make.customer("Contoso Munich Plant", parent=orgs["germany"])
    orgs["usa"] = make.customer("Contoso USA", parent=orgs["contoso"])
    orgs["fabrikam"] = make.customer("Fabrikam Inc")
    studio = make.product("STUDIO", "Acme Studio")
    sync = make.product("SYNC", "Acme Cloud Sync")
    render = make.product("RENDER", "Acme Render Credits")
    nw, bs, rr = orgs["northwind"], orgs["bluesky"], orgs["redrock"]
    ents = {
        "de_studio": make.entitlement(orgs["germany"], [nw, bs], seats=10, product=studio),
        "us_sync": make.entitlement(orgs["usa"], [rr], seats=50, model="subscription", product=sync,
                                    end=today + timedelta(days=30)),
        "group_render": make.entitlement(orgs["contoso"], [], seats=1000, model="usage", product=render),
        "munich_studio": make.entitlement(orgs["munich"], [rr], seats=5, product=studio),
        # Decoys: Fabrikam's, with the same products and partners.
        "fab_studio": make.entitlement(orgs["fabrikam"], [nw, bs], seats=7, product=studio),
        "fab_sync": make.entitlement(orgs["fabrikam"], [rr], seats=20, model="subscription", product=sync,
                                     end=today + timedelta(days=10)),
        "fab_render": make.entitlement(orgs["fabrikam"], [], seats=10, model="usage", product=render),
    }
    make.attach(ents["de_studio"], orgs["initech"], permissions=("view", "activate"))
    make.attach([ents["fab_studio"], ents["fab_sync"]], orgs["zephyr"], permissions=("view",))
    write_transaction()
    system = make.system
    activations = {
        "de_cad": activate(system, ents["de_studio"].lines[0], "munich-cad-01", seats=3, friendly_name="CAD 1")[0],
        "us_gw": activate(system, ents["us_sync"].lines[0], "us-sync-gw", seats=25)[0],
        "fab_host": activate(system, ents["fab_studio"].lines[0], "fabrikam-host", seats=7)[0],
    }
    record_usage(system, ents["group_render"].lines[0], 400)
    record_usage(system, ents["fab_render"].lines[0], 50)  # a decoy over its allowance
    db.session.commit()
    admin = make.user(orgs["contoso"], "admin", email="admin@contoso.example")
    member = make.user(orgs["germany"], "member", email="it@contoso-de.example")
    return Shop(orgs, ents, activations, admin, member)


@pytest.fixture
def admin_client(shop, login_as):
    return login_as(shop.admin, shop.orgs["contoso"])


@pytest.fixture
def member_client(shop, login_as):
    return login_as(shop.member, shop.orgs["germany"])


HX = {"HX-Request": "true"}
