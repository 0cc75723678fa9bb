"""THE authorization matrix: every route, every role, every relation, through the real client.

``MATRIX`` is a list of ``Row``s, one per (endpoint, method, relation). A row names the
expected answer for EVERY role in ``ROLES``; each (row, role) becomes one test case, with
an id such as ``partner.switch_customer POST another_partner reseller_admin``. Roles:
producer admin and staff, customer admin and member, partner admins (distributor,
reseller, service provider), anonymous, and a signed-in user without any membership.
The relation says whose object the request names: ``own`` (the actor's own, or for a
partner a customer it serves), ``another_partner`` (served by another partner only),
``another_customer`` (nobody's of the actor's), or ``-`` for routes without an object.

Rules the rows encode (spec section 4, STYLE habits 3 and 4): a role-area page answers
its own roles; every other signed-in role gets 404 (exactly like a page that does not
exist, which is checked too); anonymous is redirected to sign in (302 to /login); a
signed-in user without membership is sent to /no-access. Nothing of another partner's or
another customer's is ever anything but 404.

The meta-tests walk ``app.url_map`` and fail for any endpoint that is neither in
``MATRIX`` nor in the ``PUBLIC`` allow-list, for any method of a matrix endpoint without a
row, for rows or allow-list entries naming endpoints that no longer exist, for a role area
endpoint listed as public, and for a non-public row that does not send anonymous to sign in.

HOW TO EXTEND (every new route MUST be added here, or the meta-test fails):
1. Add one ``Row`` per method and relation. For a page of one role area use
   ``area_route("customer", OK)``; for anything else spell out the roles with ``signed_in(...)``
   or a dict over ``ROLES`` (``everyone(...)`` for truly public routes). Use ``Expect(302, "/path")``
   for redirects (the path of the Location is compared) and ``Expect(204)`` etc. as needed.
2. Routes that take an object: add the object to ``World`` (built through the services in
   ``build_world``), e.g. an entitlement of Contoso sold through BlueSky (``own`` for the
   customer roles and the partner roles attached to it), one of Fabrikam sold through
   RedRock (``another_partner``) and one of Tailspin sold direct (``another_customer``);
   then give the row ``values=lambda w, role: {"code": ...}`` for URL parts and/or
   ``form=lambda w, role: {...}`` for the POST body. ``w.org_of(role)`` is the role's org.
3. A route anonymous may open (an asset, a public key, the sign-in page) also goes into
   ``PUBLIC`` with the reason; role areas (customer., partner., producer.) never do.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import url_for
from sqlalchemy import select, text

from portal import policy
from portal.database import begin_write
from portal.extensions import db
from portal.models import Activation, Attachment, Entitlement, Membership, Organization, Product
from portal.policy import system_actor
from portal.services.accounts import create_user, invite_user
from portal.services.activations import activate
from portal.services.entitlements import LineSpec, attach_partner, create_entitlement
from portal.services.orgs import add_channel_relationship, bootstrap_producer, create_organization
from tests.conftest import IsolatedClient, make_test_app, sign_in
from tests.factories import page_without_csrf

# --- roles ------------------------------------------------------------------------------------

ANONYMOUS = "anonymous"
NO_MEMBERSHIP = "no_membership"
# role -> (area, organization in the world, membership role)
MEMBER_ROLES: dict[str, tuple[str, str, str]] = {
    "producer_admin": ("producer", "acme", "admin"),
    "producer_staff": ("producer", "acme", "staff"),
    "customer_admin": ("customer", "contoso", "admin"),
    "customer_member": ("customer", "contoso", "member"),
    "distributor_admin": ("partner", "northwind", "admin"),
    "reseller_admin": ("partner", "bluesky", "admin"),
    "service_provider_admin": ("partner", "initech", "admin"),
}
ROLES = (*MEMBER_ROLES, ANONYMOUS, NO_MEMBERSHIP)
# Roles only the rows that name them in ``Row.extra`` run as (their routes care about them):
# a member of Contoso Germany, a subsidiary of Contoso Group, sees only its own subtree.
EXTRA_ROLES: dict[str, tuple[str, str, str]] = {
    "subsidiary_member": ("customer", "contoso_de", "member"),
}
SUBSIDIARY = "subsidiary_member"  # every customer.* row names its answer (a meta-test checks)
GUARDED_AREAS = ("customer", "partner", "producer")  # blueprints with a require_area guard


@dataclass(frozen=True)
class Expect:
    status: int
    location: str | None = None  # for redirects: the path the Location header points to

    def __str__(self) -> str:
        return f"{self.status} -> {self.location}" if self.location else str(self.status)


OK = Expect(200)
NOT_FOUND = Expect(404)
TO_LOGIN = Expect(302, "/login")
TO_NO_ACCESS = Expect(302, "/no-access")
HOME = {"producer": Expect(302, "/producer/"), "customer": Expect(302, "/customer/"),
        "partner": Expect(302, "/partner/")}


def everyone(expect: Expect) -> dict[str, Expect]:
    return dict.fromkeys(ROLES, expect)


def signed_in(*, producer: Expect, customer: Expect, partner: Expect,
              anonymous: Expect = TO_LOGIN, no_membership: Expect = NOT_FOUND) -> dict[str, Expect]:
    """Expectations by the area each member role works in, plus the two roles without one."""
    by_area = {"producer": producer, "customer": customer, "partner": partner}
    expect = {role: by_area[area] for role, (area, _, _) in MEMBER_ROLES.items()}
    return expect | {ANONYMOUS: anonymous, NO_MEMBERSHIP: no_membership}


def area_route(area: str, ok: Expect) -> dict[str, Expect]:
    """A route of a guarded role area: its roles get ``ok``, every other signed-in role 404."""
    areas = {a: ok if a == area else NOT_FOUND for a in GUARDED_AREAS}
    return signed_in(**areas, no_membership=TO_NO_ACCESS)


# --- the world every cell runs in -------------------------------------------------------------


@dataclass
class World:
    orgs: dict[str, Organization]
    # Keyed like the orgs that own them: "contoso" (own), "fabrikam" (another_partner), "tailspin".
    entitlements: dict[str, Entitlement] = field(default_factory=dict)
    activations: dict[str, Activation] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Organization:
        try:
            return self.__dict__["orgs"][name]
        except KeyError:
            raise AttributeError(name) from None

    def org_of(self, role: str) -> Organization | None:
        roles = MEMBER_ROLES | EXTRA_ROLES
        return self.orgs[roles[role][1]] if role in roles else None


def build_world() -> World:
    """Acme -> Northwind -> BlueSky and Acme -> RedRock; Initech services Contoso.

    Contoso (our customer roles) bought through Northwind -> BlueSky with Initech attached,
    so every partner role serves Contoso; it has two subsidiaries, Contoso Germany and Contoso
    USA, that own nothing; Fabrikam bought through RedRock (another
    partner's customer); Tailspin bought direct (nobody's).
    """
    acme = bootstrap_producer("Acme Software")
    system = system_actor(acme)
    orgs = {"acme": acme}
    for key, kind, name in [
        ("northwind", "distributor", "Northwind Distribution"), ("bluesky", "reseller", "BlueSky Resellers"),
        ("redrock", "reseller", "RedRock IT"), ("initech", "service_provider", "Initech Services"),
        ("contoso", "customer", "Contoso Group"), ("fabrikam", "customer", "Fabrikam Inc"),
        ("tailspin", "customer", "Tailspin Toys"),
    ]:
        orgs[key] = create_organization(system, kind=kind, name=name)
    for key, name in [("contoso_de", "Contoso Germany"), ("contoso_us", "Contoso USA")]:
        orgs[key] = create_organization(system, kind="customer", name=name, parent=orgs["contoso"])
    for supplier, buyer in [("acme", "northwind"), ("northwind", "bluesky"), ("acme", "redrock")]:
        add_channel_relationship(system, orgs[supplier], orgs[buyer])
    product = Product(sku="STUDIO", name="Acme Studio")
    db.session.add(product)
    line = LineSpec(product, "perpetual", 10, maintenance_end=date(2099, 12, 31))
    bought = {}
    for owner, chain in [("contoso", ["northwind", "bluesky"]), ("fabrikam", ["redrock"]), ("tailspin", [])]:
        bought[owner] = create_entitlement(system, owner=orgs[owner], lines=[line],
                                           sales_chain=[orgs[k] for k in chain])
    attach_partner(system, [bought["contoso"]], orgs["initech"], relation="services")
    db.session.commit()
    begin_write()  # seats change under the write lock
    activations = {owner: activate(system, entitlement.lines[0], f"{owner}-host", seats=2)[0]
                   for owner, entitlement in bought.items()}
    db.session.commit()
    return World(orgs, bought, activations)


# --- THE MATRIX -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    endpoint: str
    method: str
    expect: dict[str, Expect]
    relation: str = "-"
    values: Callable[[World, str], dict[str, Any]] | dict[str, Any] = field(default_factory=dict)
    form: Callable[[World, str], dict[str, Any]] | None = None
    extra: dict[str, Expect] = field(default_factory=dict)  # expectations for EXTRA_ROLES this row runs as

    def url(self, world: World, role: str) -> str:
        values = self.values(world, role) if callable(self.values) else self.values
        return url_for(self.endpoint, **values)


def _own_org(w: World, role: str) -> dict[str, Any]:
    # A user without membership has no organization of its own: it names Contoso's.
    return {"org_id": (w.org_of(role) or w.contoso).id}


def _email_of(role: str) -> str:
    """The email ``_client_for`` gives the role's user."""
    return "lonely@example.com" if role == NO_MEMBERSHIP else f"{role}@example.com"


def _invite(w: World, email: str = "invitee@example.com") -> str:
    """A fresh invitation into Contoso (made while the cell builds its URL)."""
    _, token = invite_user(system_actor(w.acme), w.contoso, email, "member")
    db.session.commit()
    return token


def _join_request(w: World, email: str) -> dict[str, Any]:
    """A pending join request of the user with ``email`` (made while the cell builds its URL)."""
    from portal.models import User
    from portal.services.requests import request_to_join

    user = db.session.scalar(select(User).where(User.email == email)) or create_user(email, "Someone Else")
    req = request_to_join(user, w.tailspin, organization_name="Tailspin Toys")
    db.session.commit()
    return {"request_id": req.id}


def _code(key: str) -> Callable[[World, str], dict[str, Any]]:
    return lambda w, role: {"code": w.entitlements[key].code}


def _line(key: str) -> Callable[[World, str], dict[str, Any]]:
    return lambda w, role: {"line_id": w.entitlements[key].lines[0].id}


def _activation(key: str) -> Callable[[World, str], dict[str, Any]]:
    return lambda w, role: {"activation_id": w.activations[key].id}


def _activate_form(key: str) -> Callable[[World, str], dict[str, Any]]:
    def form(w: World, role: str) -> dict[str, Any]:
        prefix = f"line-{w.entitlements[key].lines[0].id}"
        return {f"{prefix}-host_id": "matrix-host", f"{prefix}-seats": "1"}
    return form


def _rehost_form(key: str) -> Callable[[World, str], dict[str, Any]]:
    return lambda w, role: {f"activation-{w.activations[key].id}-host_id": "matrix-new-host"}


# The customer portal's entitlement pages and activations. Relations: Contoso's entitlement
# ("own": customer roles see it), Fabrikam's ("another_partner") and Tailspin's ("another_customer"):
# never anything but 404 for our customer roles. Members activate, return and rehost like admins.
# "subtree": Contoso Germany's entitlement, seen by Contoso's roles and by the subsidiary member, to
# whom Contoso Group's own ("own") is 404 like another customer's.
_RELATION_OWNERS = {"own": "contoso", "another_partner": "fabrikam", "another_customer": "tailspin",
                    "subtree": "contoso_de"}


def _subtree_entitlement(w: World) -> Entitlement:
    """Contoso Germany's entitlement (the subsidiary member's subtree), sold direct, with Initech
    attached and one activation; made when a cell first asks for it, so that the world of every
    other row stays as it counts on (Contoso Germany owns nothing, and can be deleted)."""
    if "contoso_de" not in w.entitlements:
        system = system_actor(w.acme)
        line = LineSpec(db.session.scalar(select(Product)), "perpetual", 10, maintenance_end=date(2099, 12, 31))
        entitlement = create_entitlement(system, owner=w.contoso_de, lines=[line], sales_chain=[])
        attach_partner(system, [entitlement], w.initech, relation="services")
        db.session.commit()
        begin_write()
        w.activations["contoso_de"] = activate(system, entitlement.lines[0], "contoso_de-host", seats=2)[0]
        db.session.commit()
        w.entitlements["contoso_de"] = entitlement
    return w.entitlements["contoso_de"]


def _object_values(make: Callable[[str], Callable[[World, str], dict[str, Any]]], key: str):
    """``make(key)``'s values, after making the subtree's entitlement when the key names it."""
    def values(w: World, role: str) -> dict[str, Any]:
        if key == "contoso_de":
            _subtree_entitlement(w)
        return make(key)(w, role)
    return values


def _customer_object_rows() -> list[Row]:
    rows = []
    for relation, key in _RELATION_OWNERS.items():
        seen = relation in ("own", "subtree")

        def ok(expect: Expect, seen: bool = seen) -> dict[str, Expect]:
            return area_route("customer", expect if seen else NOT_FOUND)

        def sub(expect: Expect, relation: str = relation) -> dict[str, Expect]:
            return {SUBSIDIARY: expect if relation == "subtree" else NOT_FOUND}

        rows += [
            Row("customer.entitlement", "GET", ok(OK), relation=relation, values=_object_values(_code, key),
                extra=sub(OK)),
            Row("customer.activate_seats", "POST", ok(Expect(302)), relation=relation,
                values=_object_values(_line, key), form=_activate_form(key), extra=sub(Expect(302))),
            Row("customer.return_seats", "POST", ok(Expect(302)), relation=relation,
                values=_object_values(_activation, key), extra=sub(Expect(302))),
            Row("customer.rehost_seats", "POST", ok(Expect(302)), relation=relation,
                values=_object_values(_activation, key), form=_rehost_form(key), extra=sub(Expect(302))),
            Row("customer.certificate", "GET", ok(OK), relation=relation, values=_object_values(_activation, key),
                extra=sub(OK)),
        ]
    return rows


# --- the customer's partner and request pages (issue 8, items 4 and 9) ----------------------
# "own": Contoso's entitlement (Initech attached as services), a request addressed to Contoso or
# made by it; "another_partner": Fabrikam's (RedRock the seller); "another_customer": Tailspin's.
# Admins act, members see (403 on an action); anything not ours is 404; a form that names an
# entitlement not ours is refused at the field (422), like any other bad value.


def _customer(admin: Expect, member: Expect | None = None) -> dict[str, Expect]:
    expect = area_route("customer", admin)
    expect["customer_member"] = member or admin
    return expect


def _entitlement_of(w: World, key: str):
    """The world's entitlement of that customer (by reference: another cell may have moved it
    within the customer's tree since); Contoso Germany's is made when first asked for."""
    return _subtree_entitlement(w) if key == "contoso_de" else w.entitlements[key]


def _attachment_of(w: World, key: str) -> dict[str, Any]:
    """Initech's attachment on Contoso's entitlement, RedRock's (the seller) on Fabrikam's, and
    one made now on Tailspin's."""
    from portal.models import Attachment

    entitlement = _entitlement_of(w, key)
    partner = {"contoso": w.initech, "fabrikam": w.redrock, "tailspin": w.initech, "contoso_de": w.initech}[key]
    if key == "tailspin":
        attach_partner(system_actor(w.acme), [entitlement], partner)
        db.session.commit()
    attachment = db.session.scalar(select(Attachment).where(Attachment.entitlement_id == entitlement.id,
                                                            Attachment.partner_id == partner.id))
    return {"attachment_id": attachment.id}


def _user_in(org: Organization, email: str, role: str = "admin"):
    from portal.models import User

    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        user = create_user(email, "Someone")
        db.session.add(Membership(user=user, org=org, role=role))
        db.session.flush()
    return user


def _access_request(w: World, key: str) -> dict[str, Any]:
    """A partner asks a customer for access: RedRock asks Contoso, BlueSky Fabrikam, Initech Tailspin."""
    from portal.models import PortalRequest
    from portal.services.requests import request_partner_access

    partner = {"contoso": w.redrock, "fabrikam": w.bluesky, "tailspin": w.initech,
               "contoso_de": w.redrock}[key]
    pending = db.session.scalar(select(PortalRequest.id).where(  # the hostile-input probe asks again and again
        PortalRequest.requester_org_id == partner.id, PortalRequest.target_org_id == w.orgs[key].id,
        PortalRequest.kind == "partner_access", PortalRequest.state == "pending"))
    if pending is None:
        asker = _user_in(partner, f"asker@{key.replace('_', '-')}.example")
        actor = policy.Actor(user=asker, org=partner, role="admin")
        pending = request_partner_access(actor, w.orgs[key], [_entitlement_of(w, key).code], permissions=["view"]).id
        db.session.commit()
    return {"request_id": pending}


def _transfer_request(w: World, key: str, role: str) -> dict[str, Any]:
    """A pending transfer made by the customer: by the cell's own user when it is that customer's admin."""
    from portal.models import PortalRequest
    from portal.services.requests import request_transfer

    entitlement = _entitlement_of(w, key)
    pending = db.session.scalar(select(PortalRequest.id).where(  # the hostile-input probe asks again and again
        PortalRequest.entitlement_id == entitlement.id, PortalRequest.state == "pending"))
    if pending is None:
        own_admin = key == "contoso" and role == "customer_admin"
        email = _email_of(role) if own_admin else f"other.admin@{key.replace('_', '-')}.example"
        actor = policy.Actor(user=_user_in(w.orgs[key], email), org=w.orgs[key], role="admin")
        pending = request_transfer(actor, entitlement, w.fabrikam).id
        db.session.commit()
    return {"request_id": pending}


def _attach_form(key: str) -> Callable[[World, str], dict[str, Any]]:
    return lambda w, role: {"attach-partner": w.redrock.id, "attach-view": "y",
                            "attach-entitlements": _entitlement_of(w, key).id}


def _invite_form(key: str) -> Callable[[World, str], dict[str, Any]]:
    return lambda w, role: {"invite-company": "Litware Support", "invite-email": "boss@litware.example",
                            "invite-view": "y", "invite-entitlements": _entitlement_of(w, key).id}


def _decision_form(key: str) -> Callable[[World, str], dict[str, Any]]:
    """Reject the pending access request to ``key`` (made while the cell built its URL)."""
    def form(w: World, role: str) -> dict[str, Any]:
        from portal.models import PortalRequest

        req_id = db.session.scalar(select(PortalRequest.id).where(PortalRequest.target_org_id == w.orgs[key].id,
                                                                 PortalRequest.kind == "partner_access"))
        return {f"request-{req_id}-decision": "reject", f"request-{req_id}-note": "Not now."}
    return form


def _transfer_form(key: str) -> Callable[[World, str], dict[str, Any]]:
    return lambda w, role: {"transfer-code": _entitlement_of(w, key).code, "transfer-recipient": "Fabrikam Inc"}


def _partner_page_rows() -> list[Row]:
    # "subtree": Contoso Germany's entitlement, an attachment on it, requests to and by Contoso
    # Germany: Contoso's admin acts, its members (and the subsidiary's) get 403. Contoso Group's
    # own objects are 404 to the subsidiary member; forms it may not send at all are 403.
    owners = {"own": "contoso", "another_partner": "fabrikam", "another_customer": "tailspin",
              "subtree": "contoso_de"}
    seen_by_all = {SUBSIDIARY: OK}
    rows = [
        Row("customer.partners", "GET", _customer(OK), values={"q": "Init", "state": "any", "sort": "partner"},
            extra=seen_by_all),
        Row("customer.partner_entitlement_choices", "GET", _customer(OK), values={"form": "attach", "eq": "ENT"},
            extra=seen_by_all),
        Row("customer.requests", "GET", _customer(OK), values={"q": "a", "direction": "ours", "sort": "state"},
            extra=seen_by_all),
    ]
    for relation, key in owners.items():
        ours = relation in ("own", "subtree")
        # The subsidiary member: an admin action on its subtree's object is 403, anything else's 404.
        acts = {SUBSIDIARY: Expect(403) if relation == "subtree" else NOT_FOUND}
        forbidden = {SUBSIDIARY: Expect(403)}  # forms of admins only: refused before they are read
        rows += [
            Row("customer.attach_partner", "POST", _customer(Expect(302) if ours else Expect(422), Expect(403)),
                relation=relation, form=_attach_form(key), extra=forbidden),
            Row("customer.attachment_permissions", "POST",
                _customer(Expect(302), Expect(403)) if ours else _customer(NOT_FOUND), relation=relation,
                values=lambda w, role, key=key: _attachment_of(w, key),
                form=lambda w, role, key=key: {f"attachment-{_attachment_of(w, key)['attachment_id']}-view": "y"},
                extra=acts),
            Row("customer.revoke_attachment", "POST",
                _customer(Expect(302), Expect(403)) if ours else _customer(NOT_FOUND), relation=relation,
                values=lambda w, role, key=key: _attachment_of(w, key), extra=acts),
            Row("customer.entitlement_visibility", "GET", _customer(OK if ours else NOT_FOUND), relation=relation,
                values=lambda w, role, key=key: {"code": _entitlement_of(w, key).code},
                extra={SUBSIDIARY: OK if relation == "subtree" else NOT_FOUND}),
            Row("customer.decide_request", "POST",
                _customer(Expect(302), Expect(403)) if ours else _customer(NOT_FOUND), relation=relation,
                values=lambda w, role, key=key: _access_request(w, key), form=_decision_form(key), extra=acts),
        ]
        if relation != "another_partner":
            rows += [
                Row("customer.invite_partner", "POST", _customer(Expect(302) if ours else Expect(422), Expect(403)),
                    relation=relation, form=_invite_form(key), extra=forbidden),
                Row("customer.request_transfer", "POST",
                    _customer(Expect(302) if ours else Expect(422), Expect(403)), relation=relation,
                    form=_transfer_form(key), extra=forbidden),
                Row("customer.withdraw_request", "POST",
                    _customer(Expect(302), Expect(403)) if ours else _customer(NOT_FOUND), relation=relation,
                    values=lambda w, role, key=key: _transfer_request(w, key, role), extra=acts),
            ]
    return rows


MATRIX: list[Row] = [
    # The front door sends everyone where it belongs.
    Row("public.index", "GET", signed_in(producer=HOME["producer"], customer=HOME["customer"],
                                         partner=HOME["partner"], no_membership=TO_NO_ACCESS)),
    Row("public.no_access", "GET", signed_in(producer=Expect(302, "/"), customer=Expect(302, "/"),
                                             partner=Expect(302, "/"), no_membership=OK)),
    Row("public.no_access", "POST", form=lambda w, role: {"organization": "Contoso Group", "message": "Hi"},
        expect=signed_in(producer=Expect(302, "/"), customer=Expect(302, "/"), partner=Expect(302, "/"),
                         no_membership=Expect(302, "/no-access"))),
    # A requester withdraws its own join request; anyone else's is 404.
    Row("public.withdraw_join_request", "POST", relation="own",
        values=lambda w, role: _join_request(w, _email_of(role)),
        expect=signed_in(producer=TO_NO_ACCESS, customer=TO_NO_ACCESS, partner=TO_NO_ACCESS,
                         no_membership=TO_NO_ACCESS)),
    Row("public.withdraw_join_request", "POST", relation="another_customer",
        values=lambda w, role: _join_request(w, "someone.else@example.com"),
        expect=signed_in(producer=NOT_FOUND, customer=NOT_FOUND, partner=NOT_FOUND)),
    Row("public.jwks", "GET", everyone(OK)),
    Row("public.healthz", "GET", everyone(OK)),
    Row("static", "GET", everyone(OK), values={"filename": "portal.css"}),
    Row("auth.login", "GET", everyone(OK)),
    Row("auth.login", "POST", everyone(Expect(401)),
        form=lambda w, role: {"email": "nobody@example.com", "password": "not the password"}),
    Row("auth.logout", "POST", everyone(TO_LOGIN)),
    # OIDC: no provider is configured in this world, so every name is unknown (tests/oidc run the flows).
    Row("auth.oidc_start", "GET", everyone(NOT_FOUND), values={"name": "nowhere"}),
    Row("auth.oidc_callback", "GET", everyone(NOT_FOUND), values={"name": "nowhere"}),
    # Invitations: a valid link shows its page to anyone; accepting needs a signed-in user, or
    # (local sign-in on, as here) a new password: an empty one is 422 at the form.
    Row("auth.invitation", "GET", everyone(OK), relation="own", values=lambda w, role: {"token": _invite(w)}),
    Row("auth.invitation", "POST", relation="own", values=lambda w, role: {"token": _invite(w, _email_of(role))},
        expect=signed_in(producer=Expect(302, "/"), customer=Expect(302, "/"), partner=Expect(302, "/"),
                         no_membership=Expect(302, "/"), anonymous=Expect(422))),
    # Someone else's invitation (a forwarded link) joins nobody else. ("another_partner": the
    # relation slot for "someone else's valid object"; another_customer is the invalid link.)
    Row("auth.invitation", "POST", relation="another_partner", values=lambda w, role: {"token": _invite(w)},
        expect=signed_in(producer=Expect(403), customer=Expect(403), partner=Expect(403),
                         no_membership=Expect(403), anonymous=Expect(422))),
    # An unknown, used or expired link: 410 with a page that says so, the same for all three.
    Row("auth.invitation", "GET", everyone(Expect(410)), relation="another_customer", values={"token": "not-a-token"}),
    Row("auth.invitation", "POST", everyone(Expect(410)), relation="another_customer",
        values={"token": "not-a-token"}),
    # Switching the active organization: only among one's own memberships.
    Row("auth.switch_org", "POST", relation="own", form=_own_org,
        expect=signed_in(producer=HOME["producer"], customer=HOME["customer"], partner=HOME["partner"])),
    Row("auth.switch_org", "POST", relation="another_customer", form=lambda w, role: {"org_id": w.tailspin.id},
        expect=signed_in(producer=NOT_FOUND, customer=NOT_FOUND, partner=NOT_FOUND)),
    Row("auth.switch_org", "POST", relation="another_partner", form=lambda w, role: {"org_id": w.redrock.id},
        expect=signed_in(producer=NOT_FOUND, customer=NOT_FOUND, partner=NOT_FOUND)),
    # The three portals.
    Row("producer.home", "GET", area_route("producer", OK)),
    Row("customer.home", "GET", area_route("customer", OK), extra={SUBSIDIARY: OK}),
    *[Row(f"customer.panel_{panel}", "GET", area_route("customer", OK), extra={SUBSIDIARY: OK})
      for panel in ("seats", "expiring", "usage", "activations", "partners", "requests", "inbox")],
    Row("customer.entitlements", "GET", area_route("customer", OK), values={"q": "ENT", "sort": "code"},
        extra={SUBSIDIARY: OK}),
    # A filter value the page never offered (another customer's sub-organization, say) is refused.
    Row("customer.entitlements", "GET", area_route("customer", Expect(400)), relation="another_customer",
        values=lambda w, role: {"org": w.tailspin.id}, extra={SUBSIDIARY: Expect(400)}),
    # ... and so is, for the subsidiary member, Contoso Group above it (it never offers it).
    Row("customer.entitlements", "GET", area_route("customer", OK), relation="own",
        values=lambda w, role: {"org": w.contoso.id}, extra={SUBSIDIARY: Expect(400)}),
    Row("customer.entitlements_csv", "GET", area_route("customer", OK), extra={SUBSIDIARY: OK}),
    *_customer_object_rows(),
    *_partner_page_rows(),
]

# --- the customer's hierarchy, users, inbox and audit (issue 8, items 5, 6 and 8) ---------------
# Customer admins act; customer members see (403 on any change); the member of the subsidiary
# Contoso Germany sees its own subtree (Contoso Group's objects are 404 to it). Another
# customer's objects are 404; a tampered organization in a form field is 422 with a message.

FORBIDDEN = Expect(403)
CHANGED = Expect(302)  # a change without JavaScript redirects back to its page
_SEQ = itertools.count(1)  # unique emails: the hostile-input probe builds these URLs again and again


def customer_roles(admin: Expect, member: Expect) -> dict[str, Expect]:
    """A customer page: ``admin`` for the customer admin, ``member`` for the member; 404 elsewhere."""
    return area_route("customer", admin) | {"customer_member": member}


def _org(key: str) -> Callable[[World, str], dict[str, Any]]:
    return lambda w, role: {"org_id": w.orgs[key].id}


def _membership_in(w: World, key: str) -> dict[str, Any]:
    """A new member of ``w.orgs[key]`` (made while the cell builds its URL)."""
    user = create_user(f"someone.{key}.{next(_SEQ)}@example.com", "Someone There")
    membership = Membership(user=user, org=w.orgs[key], role="member")
    db.session.add(membership)
    db.session.commit()
    return {"membership_id": membership.id}


def _join_request_to(w: World, key: str) -> dict[str, Any]:
    from portal.services.requests import request_to_join

    user = create_user(f"joiner.{key}.{next(_SEQ)}@example.com", "Jo Joiner")
    req = request_to_join(user, w.orgs[key], organization_name=w.orgs[key].name)
    db.session.commit()
    return {"request_id": req.id}


def _message_to(w: World, key: str) -> dict[str, Any]:
    from portal.models import Notification, NotificationMessage

    notification = Notification(kind="security_patch", title="Patch 5.1.1", body="Install it.",
                                product=db.session.scalar(select(Product)))
    message = NotificationMessage(notification=notification, org=w.orgs[key], content=[])
    db.session.add_all([notification, message])
    db.session.commit()
    return {"message_id": message.id}


def _code_of(w: World, key: str) -> str:
    from portal.models import Entitlement

    return db.session.scalar(select(Entitlement.code).where(Entitlement.owner_id == w.orgs[key].id))


CUSTOMER_TREE_ROWS: list[Row] = []
for _endpoint in ("customer.organization", "customer.users", "customer.inbox"):
    CUSTOMER_TREE_ROWS.append(Row(_endpoint, "GET", area_route("customer", OK), extra={SUBSIDIARY: OK}))
for _endpoint in ("customer.audit", "customer.audit_csv"):
    CUSTOMER_TREE_ROWS.append(Row(_endpoint, "GET", customer_roles(OK, FORBIDDEN), extra={SUBSIDIARY: FORBIDDEN}))
# One organization: its page; each change of it. Own: Contoso Germany (in every customer role's tree).
CUSTOMER_TREE_ROWS += [
    Row("customer.organization_detail", "GET", area_route("customer", OK), relation="own", values=_org("contoso_de"),
        extra={SUBSIDIARY: OK}),
    Row("customer.organization_detail", "GET", area_route("customer", NOT_FOUND), relation="another_customer",
        values=_org("tailspin"), extra={SUBSIDIARY: NOT_FOUND}),
    Row("customer.organization_detail", "GET", area_route("customer", NOT_FOUND), relation="another_partner",
        values=_org("fabrikam"), extra={SUBSIDIARY: NOT_FOUND}),
]
_ORG_CHANGES = {
    "customer.edit_organization": lambda w, prefix: {f"{prefix}-name": "Contoso Deutschland"},
    "customer.add_subsidiary": lambda w, prefix: {f"{prefix}-name": "Contoso Berlin"},
    "customer.move": lambda w, prefix: {f"{prefix}-parent_id": w.contoso_us.id},
    "customer.delete": lambda w, prefix: {},
}
_PREFIX = {"customer.edit_organization": "org", "customer.add_subsidiary": "child", "customer.move": "move",
           "customer.delete": "delete"}
for _endpoint, _form in _ORG_CHANGES.items():
    for _relation, _key, _admin, _sub in [("own", "contoso_de", CHANGED, FORBIDDEN),
                                          ("another_customer", "tailspin", NOT_FOUND, NOT_FOUND),
                                          ("another_partner", "fabrikam", NOT_FOUND, NOT_FOUND)]:
        CUSTOMER_TREE_ROWS.append(Row(
            _endpoint, "POST", relation=_relation, values=_org(_key),
            form=lambda w, role, _form=_form, _key=_key, _p=_PREFIX[_endpoint]: _form(w, f"{_p}-{w.orgs[_key].id}"),
            expect=customer_roles(_admin, FORBIDDEN if _admin == CHANGED else NOT_FOUND), extra={SUBSIDIARY: _sub}))
CUSTOMER_TREE_ROWS += [
    # Contoso Group's entitlement to Contoso Germany (Contoso Group is not the subsidiary member's: 404).
    Row("customer.move_entitlement", "POST", relation="own", values=_org("contoso"),
        form=lambda w, role: {f"ent-{w.contoso.id}-code": _code_of(w, "contoso"),
                              f"ent-{w.contoso.id}-org_id": w.contoso_de.id},
        expect=customer_roles(CHANGED, FORBIDDEN), extra={SUBSIDIARY: NOT_FOUND}),
    Row("customer.move_entitlement", "POST", relation="another_customer", values=_org("tailspin"),
        form=lambda w, role: {f"ent-{w.tailspin.id}-code": _code_of(w, "tailspin"),
                              f"ent-{w.tailspin.id}-org_id": w.contoso_de.id},
        expect=customer_roles(NOT_FOUND, NOT_FOUND), extra={SUBSIDIARY: NOT_FOUND}),
    # Users: invite into one's own tree; another customer's organization in the form is a field error.
    Row("customer.invite", "POST", relation="own",
        form=lambda w, role: {"invite-email": "new.person@example.com", "invite-org_id": w.contoso_de.id,
                              "invite-role": "member"},
        expect=customer_roles(CHANGED, FORBIDDEN), extra={SUBSIDIARY: FORBIDDEN}),
    Row("customer.invite", "POST", relation="another_customer",
        form=lambda w, role: {"invite-email": "new.person@example.com", "invite-org_id": w.tailspin.id,
                              "invite-role": "member"},
        expect=customer_roles(Expect(422), FORBIDDEN), extra={SUBSIDIARY: FORBIDDEN}),
]
for _endpoint, _form in [("customer.change_role", lambda w, role, m: {f"m-{m}-role": "admin"}),
                         ("customer.remove", lambda w, role, m: {})]:
    for _relation, _key, _admin in [("own", "contoso_de", CHANGED), ("another_customer", "tailspin", NOT_FOUND)]:
        CUSTOMER_TREE_ROWS.append(Row(
            _endpoint, "POST", relation=_relation, values=lambda w, role, _key=_key: _membership_in(w, _key),
            form=lambda w, role, _form=_form, _key=_key: _form(w, role, db.session.scalar(
                select(Membership.id).where(Membership.org_id == w.orgs[_key].id).order_by(Membership.id.desc()))),
            expect=customer_roles(_admin, FORBIDDEN if _admin == CHANGED else NOT_FOUND),
            extra={SUBSIDIARY: FORBIDDEN if _admin == CHANGED else NOT_FOUND}))
CUSTOMER_TREE_ROWS += [
    Row("customer.decide_join", "POST", relation="own", values=lambda w, role: _join_request_to(w, "contoso_de"),
        form=lambda w, role: {f"r-{_last_request()}-decision": "approve"},
        expect=customer_roles(CHANGED, FORBIDDEN), extra={SUBSIDIARY: FORBIDDEN}),
    Row("customer.decide_join", "POST", relation="another_customer",
        values=lambda w, role: _join_request_to(w, "tailspin"),
        form=lambda w, role: {f"r-{_last_request()}-decision": "approve"},
        expect=customer_roles(NOT_FOUND, NOT_FOUND), extra={SUBSIDIARY: NOT_FOUND}),
    # The inbox: every user of the tree reads its messages (read state is the user's own).
    Row("customer.inbox_message", "GET", area_route("customer", OK), relation="own",
        values=lambda w, role: _message_to(w, "contoso_de"), extra={SUBSIDIARY: OK}),
    Row("customer.inbox_message", "GET", area_route("customer", NOT_FOUND), relation="another_customer",
        values=lambda w, role: _message_to(w, "tailspin"), extra={SUBSIDIARY: NOT_FOUND}),
    Row("customer.inbox_message", "GET", area_route("customer", NOT_FOUND), relation="another_partner",
        values=lambda w, role: _message_to(w, "fabrikam"), extra={SUBSIDIARY: NOT_FOUND}),
    Row("customer.inbox_read", "POST", area_route("customer", CHANGED), relation="own",
        values=lambda w, role: _message_to(w, "contoso_de"), extra={SUBSIDIARY: CHANGED}),
    Row("customer.inbox_read", "POST", area_route("customer", NOT_FOUND), relation="another_customer",
        values=lambda w, role: _message_to(w, "tailspin"), extra={SUBSIDIARY: NOT_FOUND}),
    Row("customer.inbox_read_all", "POST", area_route("customer", CHANGED), extra={SUBSIDIARY: CHANGED}),
]


def _last_request() -> int:
    from portal.models import PortalRequest

    return db.session.scalar(select(PortalRequest.id).order_by(PortalRequest.id.desc()))


MATRIX.extend(CUSTOMER_TREE_ROWS)

# --- the catalog and software downloads (issue 10 item 5, issue 8 item 7, issue 9 item 4) ----------
# Producer staff and admins manage products, releases and files; everyone else gets 404.
# Downloads: each relation has a product of its own with a release file. "own": Contoso Germany's
# perpetual entitlement (so the subsidiary member holds it too), sold Northwind -> BlueSky (the
# seller may download, the distributor only view) with Initech attached view-only; its release
# 2.0 came after maintenance ended ("own_not_entitled": visible, not covered: 403).
# "another_partner": Fabrikam's, sold by RedRock; "another_customer": Tailspin's, direct: 404.
_CATALOG_OWNERS = {"own": "contoso_de", "own_not_entitled": "contoso_de", "another_partner": "fabrikam",
                   "another_customer": "tailspin"}


def _catalog_file(w: World, relation: str) -> dict[str, Any]:
    """The release file a download row names (made once per world: the probe asks again and again)."""
    import io

    from portal.models import Release, ReleaseFile
    from portal.services import catalog

    key = _CATALOG_OWNERS[relation]
    sku = f"SOFT-{key.upper()}"
    product = db.session.scalar(select(Product).where(Product.sku == sku))
    if product is None:
        system = system_actor(w.acme)
        product = catalog.create_product(system, name=f"Software of {key}", sku=sku)
        for version, released in [("1.0", date(2025, 6, 1)), ("2.0", date(2026, 6, 1))]:
            release = catalog.add_release(system, product, version=version, released_on=released)
            catalog.add_release_file(system, release, f"{sku}-{version}.zip", io.BytesIO(f"{sku} {version}".encode()))
        chain = {"contoso_de": [w.northwind, w.bluesky], "fabrikam": [w.redrock], "tailspin": []}[key]
        entitlement = create_entitlement(system, owner=w.orgs[key], sales_chain=chain, lines=[
            LineSpec(product, "perpetual", 5, maintenance_end=date(2026, 1, 1))])
        if key == "contoso_de":
            attach_partner(system, [entitlement], w.initech, relation="services", permissions=["view"])
        db.session.commit()
    version = "2.0" if relation == "own_not_entitled" else "1.0"
    release = db.session.scalar(select(Release).where(Release.product_id == product.id, Release.version == version))
    file_id = db.session.scalar(select(ReleaseFile.id).where(ReleaseFile.release_id == release.id))
    if file_id is None:  # a probe deleted it (forged ids): upload it again
        file_id = catalog.add_release_file(system_actor(w.acme), release, f"again-{next(_SEQ)}.zip",
                                           io.BytesIO(f"{sku} {version} {next(_SEQ)}".encode())).id
        db.session.commit()
    return {"file_id": file_id}


def _catalog_product(w: World, role: str) -> dict[str, Any]:
    """The world's Acme Studio (the first product: a probe may have renamed it)."""
    return {"product_id": db.session.scalar(select(Product.id).order_by(Product.id))}


def _studio_release(w: World) -> int:
    from portal.models import Release
    from portal.services import catalog

    product = db.session.get(Product, _catalog_product(w, "")["product_id"])
    release_id = db.session.scalar(select(Release.id).where(Release.product_id == product.id))
    if release_id is None:
        release_id = catalog.add_release(system_actor(w.acme), product, version="5.0",
                                         released_on=date(2026, 3, 2)).id
        db.session.commit()
    return release_id


def _studio_file(w: World, role: str) -> dict[str, Any]:
    """A file to delete, made anew for each cell (a delete removes it)."""
    import io

    from portal.models import Release
    from portal.services import catalog

    release = db.session.get(Release, _studio_release(w))
    made = catalog.add_release_file(system_actor(w.acme), release, f"delete-me-{next(_SEQ)}.txt",
                                    io.BytesIO(f"delete me {next(_SEQ)}".encode()))
    db.session.commit()
    return {"file_id": made.id}


def _upload_form(w: World, role: str) -> dict[str, Any]:
    import io

    class Rewound(io.BytesIO):
        """A file the test client may send twice (a 404 cell sends the same form to a missing page)."""

        def close(self):
            self.seek(0)

    release_id = _studio_release(w)
    n = next(_SEQ)
    return {f"upload-{release_id}-file": (Rewound(f"matrix upload {n}".encode()), f"matrix-{n}.zip")}


def _download(relation: str) -> Expect:
    """What the customer's users and the seller get for a file of that relation (the rest: 404)."""
    return {"own": OK, "own_not_entitled": FORBIDDEN}.get(relation, NOT_FOUND)


PRODUCER_CATALOG = area_route("producer", OK)
CATALOG_ROWS: list[Row] = [
    Row("producer.products", "GET", PRODUCER_CATALOG, values={"q": "stu", "sort": "-sku"}),
    Row("producer.create_product", "POST", area_route("producer", CHANGED),
        form=lambda w, role: {"product-name": "Matrix Product", "product-sku": f"MATRIX-{next(_SEQ)}"}),
    Row("producer.product", "GET", PRODUCER_CATALOG, relation="own", values=_catalog_product),
    Row("producer.edit_product", "POST", area_route("producer", CHANGED), relation="own", values=_catalog_product,
        form=lambda w, role: {"product-name": "Acme Studio", "product-sku": "STUDIO"}),
    Row("producer.add_release", "POST", area_route("producer", CHANGED), relation="own", values=_catalog_product,
        form=lambda w, role: {"release-version": f"9.{next(_SEQ)}", "release-released_on": "2026-11-02",
                              "release-kind": "hotfix"}),
    Row("producer.upload_file", "POST", area_route("producer", CHANGED), relation="own",
        values=lambda w, role: {"release_id": _studio_release(w)}, form=_upload_form),
    Row("producer.delete_file", "POST", area_route("producer", CHANGED), relation="own", values=_studio_file),
    Row("customer.downloads", "GET", area_route("customer", OK), extra={SUBSIDIARY: OK}),
    Row("partner.downloads", "GET", area_route("partner", OK)),
]
for _relation in _CATALOG_OWNERS:
    CATALOG_ROWS += [
        Row("customer.download_file", "GET", area_route("customer", _download(_relation)), relation=_relation,
            values=lambda w, role, _r=_relation: _catalog_file(w, _r), extra={SUBSIDIARY: _download(_relation)}),
        Row("partner.download_file", "GET", area_route("partner", NOT_FOUND) | {"reseller_admin": _download(_relation)},
            relation=_relation, values=lambda w, role, _r=_relation: _catalog_file(w, _r)),
    ]
MATRIX.extend(CATALOG_ROWS)

# --- notifications: compose and send (producer), acknowledge and email settings (customer),
# copies on request (partner) ---------------------------------------------------------------


def _draft(w: World, role: str) -> dict[str, Any]:
    from portal.services.notifications import compose

    staff = policy.Actor(user=None, org=w.acme, role="staff")
    notification = compose(staff, kind="security_patch", title="Patch 5.1.1", body="Install it.",
                           product=db.session.scalar(select(Product)))
    db.session.commit()
    return {"notification_id": notification.id}


_COMPOSE = {"kind": "general", "title": "Maintenance window", "body": "Saturday 02:00 UTC."}
NOTIFICATION_ROWS: list[Row] = [
    Row("producer.notifications", "GET", area_route("producer", OK)),
    Row("producer.new_notification", "GET", area_route("producer", OK)),
    Row("producer.new_notification", "POST", area_route("producer", CHANGED),
        form=lambda w, role: {**_COMPOSE, "product_id": db.session.scalar(select(Product.id))}),
    Row("producer.notification", "GET", area_route("producer", OK), values=_draft),
    Row("producer.notification_progress", "GET", area_route("producer", OK), values=_draft),
    Row("producer.send_notification", "POST", area_route("producer", CHANGED), values=_draft),
    # The message to Contoso Germany (in every customer role's tree): admins acknowledge it.
    Row("customer.inbox_acknowledge", "POST", customer_roles(CHANGED, FORBIDDEN), relation="own",
        values=lambda w, role: _message_to(w, "contoso_de"), extra={SUBSIDIARY: FORBIDDEN}),
    Row("customer.inbox_acknowledge", "POST", area_route("customer", NOT_FOUND), relation="another_customer",
        values=lambda w, role: _message_to(w, "tailspin"), extra={SUBSIDIARY: NOT_FOUND}),
    Row("customer.inbox_acknowledge", "POST", area_route("customer", NOT_FOUND), relation="another_partner",
        values=lambda w, role: _message_to(w, "fabrikam"), extra={SUBSIDIARY: NOT_FOUND}),
    Row("customer.inbox_settings", "GET", area_route("customer", OK), extra={SUBSIDIARY: OK}),
    Row("customer.inbox_settings", "POST", customer_roles(CHANGED, FORBIDDEN),
        form=lambda w, role: {"email": "general"},
        extra={SUBSIDIARY: FORBIDDEN}),
    Row("partner.notice_settings", "GET", area_route("partner", OK)),
    Row("partner.notice_settings", "POST", area_route("partner", CHANGED),
        form=lambda w, role: {"copy": "security_patch"}),
]
MATRIX.extend(NOTIFICATION_ROWS)
# --- the producer portal (issue 10): moderation, entitlements, audit, mail --------------------
# Every producer route answers producer admins and staff; customers and partners get 404 on every
# one of them (anonymous: sign in; no membership: /no-access). Staff and admin differ where the
# policy says so: only admins decide who joins the producer. The producer sees every customer's
# objects: "own" is Contoso's (a customer served by partners), "another_customer" Tailspin's.

def producer_only(staff: Expect, admin: Expect | None = None) -> dict[str, Expect]:
    return area_route("producer", staff) | {"producer_admin": admin or staff}


def _producer_join(w: World) -> dict[str, Any]:
    from portal.services.requests import request_to_join

    user = create_user(f"hire.{next(_SEQ)}@acme.example", "New Hire")
    req = request_to_join(user, w.acme, organization_name=w.acme.name)
    db.session.commit()
    return {"request_id": req.id}


# --- Producer: channel, customers, import, reports (issue 10, items 3, 4, 7, 9) -------------------
# Producer staff and admins alike run these (only admins manage the producer's own users);
# customers and partners get 404 on every one, as on a page that does not exist. The changes leave
# the world as the other rows expect it (the hostile-input probe shares one world): a partner set
# active again, a site of its own moved.


def _application(w: World, role: str) -> dict[str, Any]:
    """A pending application to become a partner (made while the cell builds its URL)."""
    from sqlalchemy import func

    from portal.models import PortalRequest
    from portal.services.requests import apply_as_partner

    # A new applicant each time: the hostile-input probe asks again and again.
    number = db.session.scalar(select(func.count()).select_from(PortalRequest)) + 1
    req = apply_as_partner(create_user(f"applicant-{role}-{number}@example.com", "Applicant"), company="Matrix Co",
                           kind="reseller")
    db.session.commit()
    return {"request_id": req.id}


def _failed_mail(w: World) -> dict[str, Any]:
    from portal.services.mail import queue_email

    mail = queue_email(to="bounce@example.com", subject="Bounced", body="b")
    mail.status, mail.last_error = "failed", "550 no such user"
    db.session.commit()
    return {"ids": [mail.id]}


def _new_order(w: World, role: str) -> dict[str, Any]:
    product = db.session.scalar(select(Product))
    return {"fulfilment": "drop_ship", "customer": "Tailspin Toys", "tiers-0": str(w.redrock.id),
            "lines-0-product_id": str(product.id), "lines-0-license_model": "perpetual", "lines-0-quantity": "3"}


PRODUCER_ROWS: list[Row] = [
    *[Row(endpoint, "GET", producer_only(OK)) for endpoint in (
        "producer.requests", "producer.entitlements", "producer.entitlements_csv", "producer.new_entitlement",
        "producer.audit", "producer.audit_csv", "producer.mail")],
    Row("producer.new_entitlement", "POST", producer_only(CHANGED), form=_new_order),
    Row("producer.requeue_mail", "POST", producer_only(CHANGED), form=lambda w, role: _failed_mail(w)),
    # The queue: a bulk decision redirects back without JavaScript; each row is checked on its own.
    Row("producer.bulk_decide", "POST", producer_only(CHANGED),
        form=lambda w, role: {"ids": [_join_request_to(w, "tailspin")["request_id"]], "decision": "reject"}),
    Row("producer.request_detail", "GET", producer_only(OK), relation="another_customer",
        values=lambda w, role: _join_request_to(w, "tailspin")),
    Row("producer.decide_request", "POST", producer_only(CHANGED), relation="another_customer",
        values=lambda w, role: _join_request_to(w, "tailspin"), form=lambda w, role: {"decide-decision": "approve"}),
    # Joining the producer makes producer staff: admins decide, staff see the request but may not.
    Row("producer.request_detail", "GET", producer_only(OK), relation="own",
        values=lambda w, role: _producer_join(w)),
    Row("producer.decide_request", "POST", producer_only(FORBIDDEN, CHANGED), relation="own",
        values=lambda w, role: _producer_join(w), form=lambda w, role: {"decide-decision": "approve"}),
]
for _relation, _key in [("own", "contoso"), ("another_customer", "tailspin")]:
    PRODUCER_ROWS += [
        Row("producer.entitlement", "GET", producer_only(OK), relation=_relation, values=_code(_key)),
        Row("producer.entitlement_status", "POST", producer_only(CHANGED), relation=_relation, values=_code(_key),
            form=lambda w, role: {"status-status": "suspended"}),
        Row("producer.correct_entitlement", "POST", producer_only(CHANGED), relation=_relation, values=_code(_key),
            form=lambda w, role: {"correct-order_ref": "PO-1", "correct-lines-0-quantity": "12",
                                  "correct-lines-0-maintenance_end": "2099-12-31"}),
        Row("producer.attach_partner", "POST", producer_only(CHANGED), relation=_relation, values=_code(_key),
            form=lambda w, role: {"attach-partner_id": str(w.initech.id), "attach-relation": "services"}),
    ]
PRODUCER_ROWS.append(Row(
    "producer.revoke_attachment", "POST", producer_only(CHANGED), relation="own",
    values=lambda w, role: {"code": w.entitlements["contoso"].code, "attachment_id": db.session.scalar(
        select(Attachment.id).where(Attachment.entitlement_id == w.entitlements["contoso"].id,
                                    Attachment.partner_id == w.initech.id))}))
MATRIX.extend(PRODUCER_ROWS)


def _unused_edge(w: World, role: str) -> dict[str, Any]:
    """A channel edge no sales chain runs along (removable)."""
    edge = add_channel_relationship(system_actor(w.acme), w.northwind, w.initech)
    db.session.commit()
    return {"edge_id": edge.id}


def _movable_site(w: World, role: str) -> dict[str, Any]:
    """A site of its own to move: the probe may post the page's form as it comes (the top level),
    which must not take anything another row relies on out of its tree."""
    site = create_organization(system_actor(w.acme), kind="customer", name="Matrix Site", parent=w.tailspin)
    db.session.commit()
    return {"customer_id": site.id}


_PRODUCER_CHANGE = area_route("producer", CHANGED)
PRODUCER_CHANNEL_ROWS = [
    Row("producer.partners", "GET", area_route("producer", OK), values={"q": "Blue", "kind": "reseller"}),
    Row("producer.create_partner", "POST", _PRODUCER_CHANGE,
        form=lambda w, role: {"name": f"Matrix Partner {role}", "kind": "reseller"}),
    Row("producer.decide_application", "POST", _PRODUCER_CHANGE, values=_application,
        form=lambda w, role: {f"r-{_last_request()}-decision": "reject"}),
    Row("producer.partner", "GET", area_route("producer", OK), relation="own",
        values=lambda w, role: {"partner_id": w.bluesky.id}),
    Row("producer.edit_partner", "POST", _PRODUCER_CHANGE, relation="own",
        values=lambda w, role: {"partner_id": w.bluesky.id},
        form=lambda w, role: {"name": "BlueSky Resellers", "phone": "+1 555"}),
    Row("producer.partner_status", "POST", _PRODUCER_CHANGE, relation="own",
        values=lambda w, role: {"partner_id": w.redrock.id}, form=lambda w, role: {"status": "active"}),
    Row("producer.channel", "GET", area_route("producer", OK), values=lambda w, role: {"focus": w.northwind.id}),
    Row("producer.add_edge", "POST", _PRODUCER_CHANGE,
        form=lambda w, role: {"supplier_id": w.acme.id, "buyer_id": w.initech.id}),
    Row("producer.remove_edge", "POST", _PRODUCER_CHANGE, values=_unused_edge),
    Row("producer.customers", "GET", area_route("producer", OK), values=lambda w, role: {"under": w.contoso.id}),
    Row("producer.customer", "GET", area_route("producer", OK), relation="own",
        values=lambda w, role: {"customer_id": w.contoso.id}),
    Row("producer.edit_customer", "POST", _PRODUCER_CHANGE, relation="own",
        values=lambda w, role: {"customer_id": w.tailspin.id}, form=lambda w, role: {"org-name": "Tailspin Toys"}),
    Row("producer.add_customer_subsidiary", "POST", _PRODUCER_CHANGE, relation="own",
        values=lambda w, role: {"customer_id": w.tailspin.id}, form=lambda w, role: {"sub-name": "Tailspin West"}),
    Row("producer.move_customer", "POST", _PRODUCER_CHANGE, relation="own", values=_movable_site,
        form=lambda w, role: {"move-parent": "Tailspin Toys"}),
    Row("producer.import_orders", "GET", area_route("producer", OK)),
    Row("producer.upload_orders", "POST", area_route("producer", Expect(422))),  # no file chosen
    Row("producer.commit_import", "POST", area_route("producer", Expect(422)),
        form=lambda w, role: {"sha256": "0" * 64}),  # no such stored file
    Row("producer.export_entitlements", "GET", area_route("producer", OK)),
    Row("producer.reports", "GET", area_route("producer", OK), values={"group": "tier", "period": "quarter"}),
    Row("producer.reports_csv", "GET", area_route("producer", OK)),
]
MATRIX.extend(PRODUCER_CHANNEL_ROWS)


# --- the partner's entitlements, acting on behalf, and stock (issue 9, items 3, 4 and 5) ----------
# "own": Contoso's entitlement (Northwind distributed it: view only; BlueSky sold it: view, download,
# activate; Initech services it: view only); "another_partner": Fabrikam's via RedRock;
# "another_customer": Tailspin's, sold direct; "revoked": one of Contoso's via Northwind -> BlueSky
# with Initech, every attachment revoked since. A partner acts within its own attachment: a
# view-only one gets 403 for a forged activate, return, rehost or .lic; anything it does not see
# (another partner's, nobody's, revoked) is 404. Stock: BlueSky holds some; it assigns it to a
# customer it serves or one named exactly; any other stock, or a customer it does not serve, is
# refused at the field (422) like any other bad value.


def _partner(distributor: Expect, reseller: Expect, service_provider: Expect) -> dict[str, Expect]:
    expect = area_route("partner", reseller)
    expect["distributor_admin"], expect["service_provider_admin"] = distributor, service_provider
    return expect


def _revoked_entitlement(w: World) -> None:
    """Contoso's entitlement via Northwind -> BlueSky with Initech and a live activation, every
    attachment revoked by producer staff (made once per cell, when its URL is built)."""
    from portal.services.entitlements import revoke_attachment

    if "revoked" in w.entitlements:
        return
    system = system_actor(w.acme)
    line = LineSpec(db.session.scalar(select(Product)), "perpetual", 10, maintenance_end=date(2099, 12, 31))
    entitlement = create_entitlement(system, owner=w.contoso, lines=[line], sales_chain=[w.northwind, w.bluesky])
    attach_partner(system, [entitlement], w.initech, relation="services")
    db.session.commit()
    begin_write()
    w.activations["revoked"] = activate(system, entitlement.lines[0], "revoked-host", seats=1)[0]
    for attachment in list(entitlement.attachments):
        revoke_attachment(system, attachment)
    db.session.commit()
    w.entitlements["revoked"] = entitlement


def _with_revoked(values: Callable[[World, str], dict[str, Any]]) -> Callable[[World, str], dict[str, Any]]:
    def build(w: World, role: str) -> dict[str, Any]:
        _revoked_entitlement(w)
        return values(w, role)
    return build


def _stock_form(customer: Callable[[World], dict[str, Any]]) -> Callable[[World, str], dict[str, Any]]:
    """Assign a fresh entitlement of BlueSky's stock (BlueSky stocks from now on) to ``customer``."""
    def form(w: World, role: str) -> dict[str, Any]:
        w.bluesky.stocking = True
        line = LineSpec(db.session.scalar(select(Product)), "perpetual", 5, maintenance_end=date(2099, 12, 31))
        stock = create_entitlement(system_actor(w.acme), owner=w.bluesky, fulfilment="stocking", lines=[line],
                                   sales_chain=[w.northwind, w.bluesky])
        db.session.commit()
        return {"assign-entitlements": stock.id, **customer(w)}
    return form


PARTNER_ENTITLEMENT_ROWS = [
    Row("partner.entitlements", "GET", area_route("partner", OK),
        values={"q": "ENT", "access": "sold", "sort": "customer", "status": "active"}),
    Row("partner.entitlements_csv", "GET", area_route("partner", OK), values={"q": "ENT", "model": "perpetual"}),
    Row("partner.stock", "GET", area_route("partner", OK), values={"q": "ENT", "customer_q": "Con"}),
    Row("partner.stock_customers", "GET", area_route("partner", OK), values={"customer_q": "Con"}),
    Row("partner.assign", "POST", _partner(Expect(422), CHANGED, Expect(422)), relation="own",
        form=_stock_form(lambda w: {"assign-customer": w.contoso.id})),
    Row("partner.assign", "POST", _partner(Expect(422), Expect(422), Expect(422)), relation="another_partner",
        form=_stock_form(lambda w: {"assign-customer": w.fabrikam.id})),
    Row("partner.assign", "POST", _partner(Expect(422), CHANGED, Expect(422)), relation="another_customer",
        form=_stock_form(lambda w: {"assign-customer_name": "tailspin toys"})),
]
for _relation, _key in [("own", "contoso"), ("another_partner", "fabrikam"), ("another_customer", "tailspin"),
                        ("revoked", "revoked")]:
    _own = _relation == "own"

    def _seen(reseller: Expect, view_only: Expect = FORBIDDEN, own: bool = _own) -> dict[str, Expect]:
        return _partner(view_only, reseller, view_only) if own else area_route("partner", NOT_FOUND)

    _wrap = _with_revoked if _key == "revoked" else (lambda values: values)
    PARTNER_ENTITLEMENT_ROWS += [
        Row("partner.entitlement", "GET", _seen(OK, OK), relation=_relation, values=_wrap(_code(_key))),
        Row("partner.activate_seats", "POST", _seen(CHANGED), relation=_relation, values=_wrap(_line(_key)),
            form=_activate_form(_key)),
        Row("partner.return_seats", "POST", _seen(CHANGED), relation=_relation, values=_wrap(_activation(_key))),
        Row("partner.rehost_seats", "POST", _seen(CHANGED), relation=_relation, values=_wrap(_activation(_key)),
            form=_rehost_form(_key)),
        Row("partner.certificate", "GET", _seen(OK), relation=_relation, values=_wrap(_activation(_key))),
    ]
MATRIX.extend(PARTNER_ENTITLEMENT_ROWS)


# --- the partner portal: single pane, customers, requests, organization, reports (issue 9, items 1, 2, 6-8)
# Every partner kind (all admins here) opens its pages; customers and producer staff get 404. "own":
# a customer it serves, its own request or user; "another_partner": RedRock's (404 to the others);
# "another_customer": nobody's. A customer named in a form that does not exist is 422 at the field.


def _own_access_request(w: World, role: str) -> dict[str, Any]:
    """A pending request of the cell's own partner organization (made by another of its users) to Tailspin."""
    from portal.models import PortalRequest
    from portal.services.requests import request_partner_access

    org = w.org_of(role)
    if org is None or not org.is_partner:
        return _access_request(w, "tailspin")  # Initech's: 404 to every role outside it anyway
    pending = db.session.scalar(select(PortalRequest.id).where(
        PortalRequest.requester_org_id == org.id, PortalRequest.target_org_id == w.tailspin.id,
        PortalRequest.state == "pending"))
    if pending is None:
        actor = policy.Actor(user=_user_in(org, f"asker@{org.id}.example"), org=org, role="member")
        pending = request_partner_access(actor, w.tailspin, ["ENT-ANY-CODE"]).id
        db.session.commit()
    return {"request_id": pending}


def _partner_membership(w: World, role: str, key: str | None = None) -> dict[str, Any]:
    """A member (not the cell's own user) of the cell's partner organization, or of ``key``'s."""
    org = w.orgs[key] if key else (w.org_of(role) if w.org_of(role) is not None else w.redrock)
    user = _user_in(org, f"colleague@{org.id}.example", "member")
    membership = db.session.scalar(select(Membership).where(Membership.user_id == user.id,
                                                            Membership.org_id == org.id))
    if membership is None:  # removed by an earlier probe of the same world
        membership = Membership(user=user, org=org, role="member")
        db.session.add(membership)
    db.session.commit()
    return {"membership_id": membership.id}


PARTNER_PORTAL_ROWS = [
    Row("partner.home", "GET", area_route("partner", OK)),
    *[Row(f"partner.panel_{panel}", "GET", area_route("partner", OK))
      for panel in ("customers", "expiring", "stock", "requests")],
    Row("partner.customers", "GET", area_route("partner", OK), values={"q": "Contoso", "page": 2}),
    Row("partner.choose_customer", "GET", area_route("partner", OK), values={"q": "Contoso"}),
    # A partner works for a customer it serves, never for another partner's or anyone else's.
    Row("partner.switch_customer", "POST", relation="own", form=lambda w, role: {"customer_id": w.contoso.id},
        expect=area_route("partner", HOME["partner"])),
    Row("partner.switch_customer", "POST", relation="another_partner",
        form=lambda w, role: {"customer_id": w.fabrikam.id}, expect=area_route("partner", NOT_FOUND)),
    Row("partner.switch_customer", "POST", relation="another_customer",
        form=lambda w, role: {"customer_id": w.tailspin.id}, expect=area_route("partner", NOT_FOUND)),
    Row("partner.switch_customer", "POST", relation="-", form=lambda w, role: {"customer_id": ""},
        expect=area_route("partner", HOME["partner"])),  # back to all customers served
    Row("partner.requests", "GET", area_route("partner", OK), values={"q": "a", "state": "pending", "sort": "state"}),
    Row("partner.ask_for_access", "POST", area_route("partner", Expect(302, "/partner/requests")), relation="own",
        form=lambda w, role: {"ask-customer": " contoso group ", "ask-codes": _code_of(w, "contoso")}),
    Row("partner.ask_for_access", "POST", area_route("partner", Expect(422)), relation="another_customer",
        form=lambda w, role: {"ask-customer": "Contoso", "ask-codes": "ENT-1234"}),  # no prefix search
    Row("partner.withdraw", "POST", area_route("partner", Expect(302, "/partner/requests")), relation="own",
        values=_own_access_request),
    Row("partner.withdraw", "POST", area_route("partner", NOT_FOUND), relation="another_partner",
        values=lambda w, role: _access_request(w, "contoso")),  # RedRock's request
    Row("partner.organization", "GET", area_route("partner", OK), values={"q": "a", "role": "admin"}),
    Row("partner.edit_contacts", "POST", area_route("partner", Expect(302, "/partner/organization")),
        form=lambda w, role: {"org-email": "desk@partner.example", "org-phone": "+1 555 0199"}),
    Row("partner.invite", "POST", area_route("partner", Expect(302, "/partner/organization")),
        form=lambda w, role: {"invite-email": "new.partner.user@example.com", "invite-role": "member"}),
    *[Row(endpoint, "POST", area_route("partner", expect), relation=relation,
          values=lambda w, role, key=key: _partner_membership(w, role, key),
          form=lambda w, role, key=key: {f"m-{_partner_membership(w, role, key)['membership_id']}-role": "admin"})
      for endpoint in ("partner.change_role", "partner.remove")
      for relation, key, expect in (("own", None, Expect(302, "/partner/organization")),
                                    ("another_partner", "redrock", NOT_FOUND),
                                    ("another_customer", "contoso", NOT_FOUND))],
    Row("partner.audit", "GET", area_route("partner", OK), values={"q": "a", "action": "request.create"}),
    Row("partner.audit_csv", "GET", area_route("partner", OK)),
    Row("partner.reports", "GET", area_route("partner", OK), values={"period": "quarter"}),
    Row("partner.reports", "GET", area_route("partner", Expect(400)), relation="another_customer",
        values={"period": "decade"}),
    Row("partner.reports_csv", "GET", area_route("partner", OK), values={"period": "month"}),
]
MATRIX.extend(PARTNER_PORTAL_ROWS)

# Endpoints anonymous may open (everything else is protected by default), with the reason.
PUBLIC: dict[str, str] = {
    "static": "stylesheets and scripts of the login page",
    "public.jwks": "the public key that verifies license certificates offline",
    "public.healthz": "load balancer health check, no data",
    "auth.login": "the sign-in page itself",
    "auth.oidc_start": "starts sign-in at an identity provider",
    "auth.oidc_callback": "where the identity provider sends the browser back",
    "auth.invitation": "an invitation link is opened before its invitee can sign in",
}

CELLS = [(row, role) for row in MATRIX for role in (*ROLES, *row.extra)]


def _cell_id(cell: tuple[Row, str]) -> str:
    row, role = cell
    return f"{row.endpoint} {row.method} {row.relation} {role}"


# --- running the cells ------------------------------------------------------------------------


class MatrixWorld:
    """One app and one built world for the whole module; every cell starts from that world.

    Building the world through the services and creating an app cost about half a second per
    cell, and there are thousands of cells. So the world is built once and its rows are kept:
    SQLite copies the world's database file back before each cell, PostgreSQL deletes every
    row and inserts the world's rows again (in replica mode: no triggers, no foreign-key
    order). Each cell then loads the world's objects afresh by id, in its own session, so a
    cell sees exactly the state a freshly built world would give it and nothing a previous
    cell wrote.
    """

    def __init__(self, test_database, instance, folder):
        self.kind = test_database.kind
        if self.kind == "sqlite":
            self.world_file = folder / "world.db"
            self.cell_file = folder / "cell.db"
            shutil.copyfile(test_database.template_file, self.world_file)
            url = f"sqlite:///{self.cell_file}"
        else:
            self.tables = test_database.tables
            url = test_database.fresh_url(folder)
        self.app = make_test_app(url, instance)
        self.app.test_client_class = IsolatedClient
        with self.app.app_context():
            if self.kind == "sqlite":
                shutil.copyfile(self.world_file, self.cell_file)
            world = build_world()
            self.ids = ({k: o.id for k, o in world.orgs.items()},
                        {k: e.id for k, e in world.entitlements.items()},
                        {k: a.id for k, a in world.activations.items()})
            if self.kind == "sqlite":
                db.session.remove()
                db.engine.dispose()  # the last connection's close checkpoints the WAL into the file
                shutil.copyfile(self.cell_file, self.world_file)
            else:
                with db.engine.connect() as conn:
                    self.rows = {table: [dict(row) for row in conn.execute(table.select()).mappings()]
                                 for table in db.metadata.sorted_tables}
                db.session.remove()

    def restore(self) -> None:
        """Put the world's rows back (called inside the cell's app context)."""
        db.session.remove()
        if self.kind == "sqlite":
            db.engine.dispose()
            for suffix in ("-wal", "-shm"):
                self.cell_file.with_name(self.cell_file.name + suffix).unlink(missing_ok=True)
            shutil.copyfile(self.world_file, self.cell_file)
            return
        with db.engine.begin() as conn:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            for table in self.tables:
                conn.execute(text(f'DELETE FROM "{table}"'))
            for table, rows in self.rows.items():
                if rows:
                    conn.execute(table.insert(), rows)

    def load(self) -> World:
        """The world's objects, each read by id in the cell's session when the cell first uses it."""
        org_ids, entitlement_ids, activation_ids = self.ids
        return World(ByIdOnUse(Organization, org_ids), ByIdOnUse(Entitlement, entitlement_ids),
                     ByIdOnUse(Activation, activation_ids))


class ByIdOnUse(MutableMapping):
    """``key -> object`` of the world, read by id on first use: a cell uses a few of them."""

    def __init__(self, model, ids: dict[str, int]):
        self.model, self.ids, self.objects = model, ids, {}

    def __getitem__(self, key: str):
        if key not in self.objects:
            self.objects[key] = db.session.get(self.model, self.ids[key])
        return self.objects[key]

    def __setitem__(self, key: str, value) -> None:
        self.objects[key] = value

    def __delitem__(self, key: str) -> None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self.ids, *self.objects]))

    def __len__(self) -> int:
        return len(set(self.ids) | set(self.objects))


@pytest.fixture(scope="module")
def matrix_world(test_database, signing_key_dir, tmp_path_factory) -> Iterator[MatrixWorld]:
    world = MatrixWorld(test_database, signing_key_dir, tmp_path_factory.mktemp("matrix"))
    yield world
    with world.app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def world_app(matrix_world):
    """The module's app in a context of the cell's own, over a freshly restored world."""
    with matrix_world.app.app_context():
        matrix_world.restore()
        yield matrix_world.app, matrix_world.load()
        db.session.remove()


def _client_for(app, world: World, role: str):
    if role == ANONYMOUS:
        return app.test_client()
    if role == NO_MEMBERSHIP:
        user = create_user("lonely@example.com", "No Membership Yet")
        db.session.commit()
        return sign_in(app.test_client(), user)
    _, org_key, membership_role = (MEMBER_ROLES | EXTRA_ROLES)[role]
    user = create_user(f"{role}@example.com", role.replace("_", " ").title())
    db.session.add(Membership(user=user, org=world.orgs[org_key], role=membership_role))
    db.session.commit()
    return sign_in(app.test_client(), user, world.orgs[org_key])


_page = page_without_csrf


@pytest.mark.parametrize("cell", CELLS, ids=_cell_id)
def test_authorization_matrix(world_app, cell):
    row, role = cell
    app, world = world_app
    client = _client_for(app, world, role)
    with app.test_request_context():
        url = row.url(world, role)
    form = row.form(world, role) if row.form else None

    response = client.open(url, method=row.method, data=form)
    try:
        expected = {**row.expect, **row.extra}[role]
        got = Expect(response.status_code, urlsplit(response.location).path if response.location else None)
        if expected.location is None:
            got = Expect(got.status)
        assert got == expected, f"{row.method} {url} as {role} ({row.relation}): got {got}, expected {expected}"
        if expected.status == 404:
            # Exactly like something that does not exist: same status, same page.
            missing = client.open("/no-such-page", method=row.method, data=form)
            assert _page(response) == _page(missing)
            missing.close()
    finally:
        response.close()


GUARDED_GET_ROWS = [row for row in MATRIX if row.endpoint.split(".")[0] in GUARDED_AREAS and row.method == "GET"]


@pytest.mark.parametrize("row", GUARDED_GET_ROWS, ids=lambda row: row.endpoint)
def test_htmx_request_without_sign_in_gets_hx_redirect(world_app, row):
    """An htmx request needing sign-in gets HX-Redirect, never a login page in a fragment."""
    app, world = world_app
    with app.test_request_context():
        url = row.url(world, ANONYMOUS)
    response = app.test_client().get(url, headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert urlsplit(response.headers["HX-Redirect"]).path == "/login"


# --- meta-tests: the matrix covers the app --------------------------------------------------


def _rules(app) -> dict[str, set[str]]:
    """endpoint -> methods that matter (HEAD and OPTIONS are answered by Flask itself)."""
    rules: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        rules.setdefault(rule.endpoint, set()).update(rule.methods - {"HEAD", "OPTIONS"})
    return rules


def test_every_endpoint_is_in_the_matrix_or_explicitly_public(app):
    covered = {row.endpoint for row in MATRIX} | set(PUBLIC)
    missing = sorted(set(_rules(app)) - covered)
    assert not missing, (
        f"Endpoints without authorization rows: {missing}. Add Rows to MATRIX in "
        "tests/test_authz_matrix.py (see its docstring), or, for what anonymous may open, to PUBLIC."
    )


def test_every_method_of_a_matrix_endpoint_has_rows(app):
    rows = {(row.endpoint, row.method) for row in MATRIX}
    missing = sorted(
        (endpoint, method) for endpoint, methods in _rules(app).items()
        if any(row.endpoint == endpoint for row in MATRIX) for method in methods if (endpoint, method) not in rows
    )
    assert not missing, f"Methods without authorization rows: {missing}"


def test_matrix_and_allow_list_name_existing_routes_only(app):
    rules = _rules(app)
    stale = sorted({(row.endpoint, row.method) for row in MATRIX
                    if row.method not in rules.get(row.endpoint, set())})
    assert not stale, f"Rows for routes that do not exist: {stale}"
    assert not sorted(set(PUBLIC) - set(rules)), "PUBLIC names endpoints that do not exist"


def test_role_areas_are_never_public_and_protected_by_default():
    assert not [e for e in PUBLIC if e.split(".")[0] in GUARDED_AREAS]
    open_to_anonymous = sorted({row.endpoint for row in MATRIX
                                if row.endpoint not in PUBLIC and row.expect[ANONYMOUS] != TO_LOGIN})
    assert not open_to_anonymous, f"Not in PUBLIC, yet anonymous is not sent to sign in: {open_to_anonymous}"


def test_every_row_names_every_role_once():
    for row in MATRIX:
        assert set(row.expect) == set(ROLES), f"{row.endpoint} {row.method} {row.relation}"
        assert set(row.extra) <= set(EXTRA_ROLES), f"{row.endpoint} {row.method} {row.relation}"
    keys = [(row.endpoint, row.method, row.relation) for row in MATRIX]
    assert len(keys) == len(set(keys)), "two rows for the same endpoint, method and relation"


def test_every_customer_row_names_the_subsidiary_member():
    """A member of a subsidiary sees only its subtree: every customer route says what it gets."""
    missing = [(row.endpoint, row.method, row.relation) for row in MATRIX
               if row.endpoint.startswith("customer.") and SUBSIDIARY not in row.extra]
    assert not missing, f"customer rows without an expectation for {SUBSIDIARY}: {missing}"


def test_world_serves_the_relations_it_claims(app):
    """own / another_partner / another_customer mean what the rows say they mean."""
    world = build_world()
    served = {}
    for role in ("distributor_admin", "reseller_admin", "service_provider_admin"):
        actor = policy.Actor(user=None, org=world.org_of(role), role="admin")
        served[role] = {o.name for o in db.session.scalars(policy.customers_served_by(actor))}
    assert served == dict.fromkeys(served, {"Contoso Group"})
