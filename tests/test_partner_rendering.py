"""Rule 3 in HTML: no page or fragment shown to a partner names another partner attached to
the same entitlements.

Every GET route of the partner portal is found in ``app.url_map`` (a page added later is
checked without editing this file; a new kind of path parameter fails until it gets a
filler below), rendered as each partner, as a full page and as an htmx fragment, working
for all its customers and for each one. Decoy service providers are attached to every
entitlement, so anything that walks an entitlement's attachments or its customer's other
partners shows their names or contacts, and fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import url_for
from sqlalchemy import select

from portal import policy
from portal.extensions import db
from portal.models import Activation, Attachment, Entitlement, EntitlementLine, Membership, Organization, ReleaseFile
from portal.services.accounts import create_user
from portal.services.activations import activate
from tests.factories import write_transaction

PARTNERS = {
    # key: (kind, name, email, phone)
    "northwind": ("distributor", "Northwind Distribution", "sales@northwind.example", "+1 555 0100"),
    "bluesky": ("reseller", "BlueSky Resellers", "hello@bluesky.example", "+1 555 0111"),
    "redrock": ("reseller", "RedRock IT", "desk@redrock.example", "+1 555 0122"),
    "initech": ("service_provider", "Initech Services", "ops@initech.example", "+1 555 0133"),
    "decoy1": ("service_provider", "Zephyr Decoy Services", "zephyr@decoy.example", "+1 555 0144"),
    "decoy2": ("service_provider", "Quasar Decoy Partners", "quasar@decoy.example", "+1 555 0155"),
}

# How to fill each kind of path parameter for a partner: a value the partner may see.
FILLERS = {
    "code": lambda actor: db.session.scalar(policy.visible_entitlements(actor)
                                            .with_only_columns(Entitlement.code).order_by(Entitlement.id).limit(1)),
    "customer_id": lambda actor: db.session.scalar(policy.customers_served_by(actor)
                                                   .with_only_columns(Organization.id).limit(1)),
    # An activation whose certificate the partner may download (none: nothing to render).
    "activation_id": lambda actor: next((a.id for a in db.session.scalars(
        select(Activation).join(EntitlementLine).join(Entitlement).where(policy.entitlement_scope(actor))
        .order_by(Activation.id)) if policy.can(actor, "download", a)), None),
    # A release file: its bytes are the producer's, naming no partner (this world has none).
    "file_id": lambda actor: db.session.scalar(select(ReleaseFile.id).order_by(ReleaseFile.id).limit(1)),
}


@pytest.fixture
def world(make):
    orgs = {}
    for key, (kind, name, email, phone) in PARTNERS.items():
        supplier = orgs.get("northwind") if key == "bluesky" else None
        orgs[key] = make.partner(kind, name, supplied_by=supplier, email=email, phone=phone,
                                 stocking=key == "bluesky")
    contoso = make.customer("Contoso Group", email="it@contoso.example")
    germany = make.customer("Contoso Germany", parent=contoso)
    fabrikam = make.customer("Fabrikam Inc", email="it@fabrikam.example")
    bought = [
        make.entitlement(germany, [orgs["northwind"], orgs["bluesky"]]),
        make.entitlement(contoso, [orgs["redrock"]]),
        make.entitlement(fabrikam, [orgs["redrock"]]),
        make.entitlement(fabrikam, [orgs["northwind"], orgs["bluesky"]]),
        make.entitlement(orgs["bluesky"], [orgs["northwind"], orgs["bluesky"]], fulfilment="stocking"),
    ]
    make.attach(bought[0], orgs["initech"], permissions=("view", "activate"))
    for decoy in ("decoy1", "decoy2"):
        make.attach(bought, orgs[decoy], permissions=("view", "download", "activate"))
    # A decoy activated hosts on the customers' entitlements: a line card that says who
    # activated them must not name it to anyone but the decoy itself.
    decoy = policy.Actor(user=make.user(orgs["decoy1"]), org=orgs["decoy1"], role="admin")
    write_transaction()
    for entitlement in bought[:4]:
        activate(decoy, entitlement.lines[0], f"decoy-host-{entitlement.id}")
    db.session.commit()
    return orgs


def _strings(org: Organization) -> list[str]:
    return [s for s in (org.name, org.email, org.phone) if s]


def _forbidden(partner: Organization) -> dict[str, list[str]]:
    """Other partners attached to entitlements this partner sees, that it may not learn of:
    everyone except itself and, on an entitlement whose chain it is in, that chain's tiers."""
    actor = policy.Actor(user=None, org=partner, role="admin")
    allowed = {partner.id}
    forbidden = {}
    for entitlement in db.session.scalars(policy.visible_entitlements(actor)):
        chain = [link.partner_id for link in entitlement.chain]
        if partner.id in chain:
            allowed.update(chain)
        for attachment in db.session.scalars(select(Attachment).where(Attachment.entitlement_id == entitlement.id)):
            forbidden[attachment.partner_id] = attachment.partner
    return {org.name: _strings(org) for org_id, org in forbidden.items() if org_id not in allowed}


def _partner_get_routes(app) -> list:
    return sorted((rule for rule in app.url_map.iter_rules()
                   if rule.endpoint.startswith("partner.") and "GET" in rule.methods), key=lambda r: r.rule)


def _url(rule, actor) -> str:
    values = {}
    for argument in rule.arguments:
        assert argument in FILLERS, f"{rule.rule}: add a filler for <{argument}> to FILLERS in this test"
        values[argument] = FILLERS[argument](actor)
        if values[argument] is None:
            return ""  # nothing of that kind visible: nothing to render
    return url_for(rule.endpoint, **values)


@pytest.mark.parametrize("key", list(PARTNERS))
def test_no_partner_page_names_another_partner_on_the_same_entitlements(app, world, login_as, key):
    partner = world[key]
    forbidden = _forbidden(partner)
    if key != "decoy1":
        assert "Zephyr Decoy Services" in forbidden, "the decoys must be on entitlements this partner sees"
    user = create_user(f"admin-{key}@example.com", "Partner Admin")
    db.session.add(Membership(user=user, org=partner, role="admin"))
    db.session.commit()
    client = login_as(user, partner)
    actor = policy.Actor(user=user, org=partner, role="admin")
    served = db.session.scalars(policy.customers_served_by(actor).with_only_columns(Organization.id)).all()
    rendered = 0
    for customer_id in [None, *served]:
        client.post("/partner/customer", data={"customer_id": customer_id or ""})
        scoped = actor.for_customer(customer_id)
        for rule in _partner_get_routes(app):
            with app.test_request_context():
                url = _url(rule, scoped)
            if not url:
                continue
            for headers in ({}, {"HX-Request": "true"}):
                response = client.get(url, headers=headers)
                assert response.status_code == 200, f"{url} {headers}: {response.status_code}"
                body = response.get_data(as_text=True)
                rendered += 1
                for name, strings in forbidden.items():
                    for text in strings:
                        assert text not in body, f"{url} {headers} as {partner.name} names {name}: {text!r}"
    assert rendered >= 2 * len(_partner_get_routes(app))


TEMPLATES = Path(__file__).resolve().parents[1] / "portal" / "templates"
# Relationships that lead from what a partner may see to what it may not: templates get
# what the policy allows (``visible_attachments`` and friends) from their view instead.
RAW_GRAPH = re.compile(r"\.(attachments|memberships|children|chain)\b")


def test_templates_do_not_walk_the_raw_graph():
    # Producer staff see everything (every chain and attachment is theirs to see): their pages,
    # under producer/, are the one place the raw graph is what the policy allows.
    offenders = [f"{path.relative_to(TEMPLATES)}:{number}: {line.strip()}"
                 for path in sorted(TEMPLATES.rglob("*.html")) if path.relative_to(TEMPLATES).parts[0] != "producer"
                 for number, line in enumerate(path.read_text().splitlines(), 1) if RAW_GRAPH.search(line)]
    assert not offenders, "pass what the policy allows instead:\n" + "\n".join(offenders)
