"""A customer with a hierarchy, next to another customer (the decoy every list must leave out).

Contoso Group > Contoso Germany > Contoso Munich Plant, and Contoso Group > Contoso USA;
Tailspin Toys > Tailspin Site, another customer. Contoso Germany bought through Northwind ->
BlueSky with Initech attached (services, view and activate); Contoso Group bought direct;
Tailspin bought through Northwind -> BlueSky too.
"""

from __future__ import annotations

from dataclasses import dataclass

from portal.models import Entitlement, Organization, User


@dataclass
class TreeWorld:
    orgs: dict[str, Organization]
    entitlements: dict[str, Entitlement]
    admin: User  # admin of Contoso Group
    member: User  # member of Contoso Germany: sees its subtree only
    decoy_admin: User  # admin of Tailspin Toys
    initech_admin: User

    def __getattr__(self, name: str) -> Organization:
        try:
            return self.__dict__["orgs"][name]
        except KeyError:
            raise AttributeError(name) from None


def build_tree_world(make) -> TreeWorld:
    orgs = {}
    orgs["northwind"] = make.partner("distributor", "Northwind Distribution")
    orgs["bluesky"] = make.partner("reseller", "BlueSky Resellers", supplied_by=orgs["northwind"])
    orgs["initech"] = make.partner("service_provider", "Initech Services")
    orgs["contoso"] = make.customer("Contoso Group", email="it@contoso.example")
    orgs["germany"] = make.customer("Contoso Germany", parent=orgs["contoso"])
    orgs["munich"] = make.customer("Contoso Munich Plant", parent=orgs["germany"])
    orgs["usa"] = make.customer("Contoso USA", parent=orgs["contoso"])
    orgs["tailspin"] = make.customer("Tailspin Toys")
    orgs["tailspin_site"] = make.customer("Tailspin Site", parent=orgs["tailspin"])
    entitlements = {
        "germany": make.entitlement(orgs["germany"], [orgs["northwind"], orgs["bluesky"]]),
        "group": make.entitlement(orgs["contoso"]),
        "tailspin": make.entitlement(orgs["tailspin"], [orgs["northwind"], orgs["bluesky"]]),
    }
    make.attach(entitlements["germany"], orgs["initech"], permissions=("view", "activate"))
    return TreeWorld(
        orgs=orgs, entitlements=entitlements,
        admin=make.user(orgs["contoso"], "admin", email="admin@contoso.example"),
        member=make.user(orgs["germany"], "member", email="it@contoso-de.example"),
        decoy_admin=make.user(orgs["tailspin"], "admin", email="admin@tailspin.example"),
        initech_admin=make.user(orgs["initech"], "admin", email="admin@initech.example"),
    )
