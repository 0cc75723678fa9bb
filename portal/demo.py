"""The demo story (docs/concepts.md, "The demo story"): deterministic, so every rule can be seen at work."""

from __future__ import annotations

import io
import zipfile
from datetime import date, timedelta

from sqlalchemy import select

from portal.extensions import db
from portal.models import Activation, Organization, Product, Release, User, utcnow
from portal.policy import Actor, system_actor
from portal.services.accounts import create_user
from portal.services.activations import activate, record_usage
from portal.services.catalog import add_release_file
from portal.services.entitlements import LineSpec, attach_partner, create_entitlement
from portal.services.orgs import add_channel_relationship, add_member, bootstrap_producer, create_organization
from portal.services.requests import (
    apply_as_partner,
    request_partner_access,
    request_to_join,
    request_transfer,
)

DEMO_PASSWORD = "demo-password-2026"  # noqa: S105  (printed for the demo on purpose)

# (email, display name, org key, role)
DEMO_USERS = [
    ("admin@acme.example", "Ada Admin", "acme", "admin"),
    ("staff@acme.example", "Sam Staff", "acme", "staff"),
    ("admin@northwind.example", "Nora Northwind", "northwind", "admin"),
    ("admin@bluesky.example", "Ben BlueSky", "bluesky", "admin"),
    ("admin@redrock.example", "Rita RedRock", "redrock", "admin"),
    ("admin@initech.example", "Ian Initech", "initech", "admin"),
    ("admin@contoso.example", "Carla Contoso", "contoso", "admin"),
    ("it@contoso-de.example", "Dieter IT", "contoso_de", "member"),
    ("admin@fabrikam.example", "Fiona Fabrikam", "fabrikam", "admin"),
    ("admin@tailspin.example", "Tom Tailspin", "tailspin", "admin"),
]
# Two people with the demo password and no organization yet: what each is waiting for.
DEMO_NEWCOMERS = [
    ("newhire@contoso.example", "Nina Newhire", "no organization yet; asked to join Contoso Group"),
    ("founder@globex.example", "Grace Globex", "no organization yet; applied to become a partner (Globex Solutions)"),
]


def org_kind_in_words(kind: str) -> str:
    return kind.replace("_", " ")


def demo_logins(orgs: dict[str, Organization]) -> list[tuple[str, str]]:
    """Each demo login with what it is, in words: ("it@contoso-de.example", "member of Contoso Germany (customer)")."""
    logins = [(email, f"{role} of {orgs[key].name} ({org_kind_in_words(orgs[key].kind)})")
              for email, _, key, role in DEMO_USERS]
    return logins + [(email, what) for email, _, what in DEMO_NEWCOMERS]


def demo_release_files(release: Release) -> list[tuple[str, bytes]]:
    """Each demo release's files, made the same way at every load: release notes as text and
    a small zip (fixed timestamps, so its SHA-256 never changes)."""
    slug = f"{release.product.sku.lower()}-{release.version}"
    notes = (f"{release.product.name} {release.version} ({release.kind.replace('_', ' ')}), "
             f"released {release.released_on.isoformat()}.\n\n{release.notes or ''}\n").encode()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, text in [("README.txt", notes),
                             ("install.sh", f"#!/bin/sh\necho 'Installing {slug} (demo)'\n".encode())]:
            info = zipfile.ZipInfo(f"{slug}/{member}", date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, text)
    return [(f"{slug}.zip", archive.getvalue()), (f"{slug}-release-notes.txt", notes)]


def load_demo(today: date | None = None) -> dict[str, object]:
    """Create the whole story in the current transaction; the caller commits.

    Dates are relative to ``today`` (the real date unless given), so the story always reads the
    same: a subscription ends in 65 days, this month's usage is 420 units, stock is 30 days old."""
    if db.session.scalar(select(Organization.id).limit(1)) is not None:
        raise RuntimeError("The database is not empty; the demo loads into an empty database only.")
    today = today or utcnow().date()
    acme = bootstrap_producer("Acme Software", email="channel@acme.example", phone="+1 555 0100",
                              website="https://acme.example")
    system = system_actor(acme)

    def org(kind: str, name: str, parent: Organization | None = None, **kw) -> Organization:
        return create_organization(system, kind=kind, name=name, parent=parent, **kw)

    orgs: dict[str, Organization] = {"acme": acme}
    orgs["northwind"] = org("distributor", "Northwind Distribution", email="sales@northwind.example",
                            phone="+1 555 0200", website="https://northwind.example")
    orgs["bluesky"] = org("reseller", "BlueSky Resellers", email="hello@bluesky.example",
                          phone="+1 555 0300", website="https://bluesky.example", stocking=True)
    orgs["redrock"] = org("reseller", "RedRock IT", email="team@redrock.example", phone="+1 555 0400",
                          website="https://redrock.example")
    orgs["initech"] = org("service_provider", "Initech Services", email="support@initech.example",
                          phone="+1 555 0500", website="https://initech.example")
    orgs["contoso"] = org("customer", "Contoso Group", email="it@contoso.example",
                          notification_emails="it@contoso.example")
    orgs["contoso_de"] = org("customer", "Contoso Germany", parent=orgs["contoso"],
                             email="it@contoso-de.example", notification_emails="it@contoso-de.example")
    orgs["munich"] = org("customer", "Contoso Munich Plant", parent=orgs["contoso_de"])
    orgs["contoso_us"] = org("customer", "Contoso USA", parent=orgs["contoso"], email="it@contoso-us.example")
    orgs["fabrikam"] = org("customer", "Fabrikam Inc", email="it@fabrikam.example",
                           notification_emails="it@fabrikam.example")
    orgs["tailspin"] = org("customer", "Tailspin Toys", email="it@tailspin.example",
                           notification_emails="it@tailspin.example")

    add_channel_relationship(system, acme, orgs["northwind"])
    add_channel_relationship(system, orgs["northwind"], orgs["bluesky"])
    add_channel_relationship(system, acme, orgs["redrock"])

    users: dict[str, User] = {}
    for email, name, key, role in DEMO_USERS:
        user = create_user(email, name, password=DEMO_PASSWORD, actor=system)
        users[email] = user
        add_member(system, orgs[key], user, role)
    db.session.flush()

    studio = Product(name="Acme Studio", sku="ACME-STUDIO",
                     description="Desktop design studio, perpetual licenses with maintenance.")
    sync = Product(name="Acme Cloud Sync", sku="ACME-SYNC", description="File synchronization, by subscription.")
    credits = Product(name="Acme Render Credits", sku="ACME-RENDER", description="Cloud rendering, pay per use.")
    db.session.add_all([studio, sync, credits])
    releases = [
        Release(product=studio, version="5.0", released_on=date(2026, 3, 2), kind="release",
                notes="First release of the **5.x** line."),
        Release(product=studio, version="5.1", released_on=date(2026, 7, 6), kind="service_pack",
                notes="Service pack 1: faster rendering, 40 fixes."),
        Release(product=studio, version="5.1.1", released_on=date(2026, 10, 12), kind="security_patch",
                notes="Fixes a file-parsing vulnerability. **Install now.**"),
        Release(product=sync, version="2026.10", released_on=date(2026, 10, 1), kind="release", notes="October build."),
    ]
    db.session.add_all(releases)
    db.session.flush()
    for release in releases:  # small files, so that downloads work after `make demo`
        for name, data in demo_release_files(release):
            add_release_file(system, release, name, io.BytesIO(data))

    def perpetual(seats: int) -> LineSpec:
        return LineSpec(studio, "perpetual", seats, start_date=today - timedelta(days=200),
                        maintenance_end=today + timedelta(days=165))

    def subscription(seats: int) -> LineSpec:
        return LineSpec(sync, "subscription", seats, start_date=today - timedelta(days=300),
                        end_date=today + timedelta(days=65))

    nw, bs, rr = orgs["northwind"], orgs["bluesky"], orgs["redrock"]
    ents = {}
    ents["contoso_de_studio"] = create_entitlement(
        system, owner=orgs["contoso_de"], lines=[perpetual(10)], sales_chain=[nw, bs],
        order_ref="PO-CDE-1001", purchase_date=today - timedelta(days=200), code="ENT-DEMO-CDE1-0001")
    attach_partner(system, [ents["contoso_de_studio"]], orgs["initech"], relation="services",
                   permissions=["view", "download", "activate"])
    ents["contoso_us_sync"] = create_entitlement(
        system, owner=orgs["contoso_us"], lines=[subscription(50)], sales_chain=[rr],
        order_ref="PO-CUS-2001", purchase_date=today - timedelta(days=300), code="ENT-DEMO-CUS1-0002")
    ents["contoso_credits"] = create_entitlement(
        system, owner=orgs["contoso"], lines=[LineSpec(credits, "usage", 1000, start_date=today - timedelta(days=90),
                                                       usage_period="month")],
        order_ref="PO-CG-3001", purchase_date=today - timedelta(days=90), code="ENT-DEMO-CGR1-0003")
    ents["fabrikam_sync"] = create_entitlement(
        system, owner=orgs["fabrikam"], lines=[subscription(20)], sales_chain=[rr],
        order_ref="FAB-77", purchase_date=today - timedelta(days=120), code="ENT-DEMO-FAB1-0004")
    ents["fabrikam_studio"] = create_entitlement(
        system, owner=orgs["fabrikam"], lines=[perpetual(5)], sales_chain=[nw, bs],
        order_ref="FAB-78", purchase_date=today - timedelta(days=100), code="ENT-DEMO-FAB2-0005")
    ents["tailspin_studio"] = create_entitlement(
        system, owner=orgs["tailspin"], lines=[perpetual(3)], sales_chain=[nw, bs],
        order_ref="TS-9", purchase_date=today - timedelta(days=60), code="ENT-DEMO-TSP1-0006")
    for number in (1, 2):
        ents[f"stock_{number}"] = create_entitlement(
            system, owner=bs, fulfilment="stocking", lines=[perpetual(5)], sales_chain=[nw, bs],
            order_ref=f"BS-STOCK-{number}", purchase_date=today - timedelta(days=30),
            code=f"ENT-DEMO-STK{number}-000{6 + number}")

    # A few activations, as the people who would make them.
    contoso_de_member = Actor(user=users["it@contoso-de.example"], org=orgs["contoso_de"], role="member")
    line = ents["contoso_de_studio"].lines[0]
    activate(contoso_de_member, line, "munich-cad-01", seats=2, friendly_name="Munich CAD workstation 1", today=today)
    activate(contoso_de_member, line, "munich-cad-02", seats=1, friendly_name="Munich CAD workstation 2", today=today)
    initech = Actor(user=users["admin@initech.example"], org=orgs["initech"], role="admin")
    activate(initech, line, "munich-render-node", seats=1, friendly_name="Render node (Initech)", today=today)
    contoso_admin = Actor(user=users["admin@contoso.example"], org=orgs["contoso"], role="admin")
    activate(contoso_admin, ents["contoso_us_sync"].lines[0], "us-sync-gw", seats=25,
             friendly_name="US sync gateway", today=today)
    record_usage(contoso_admin, ents["contoso_credits"].lines[0], 420, used_on=today, note="Renders this month")

    # One pending request of each kind.
    (newcomer_email, newcomer_name, _), (applicant_email, applicant_name, _) = DEMO_NEWCOMERS
    newcomer = create_user(newcomer_email, newcomer_name, password=DEMO_PASSWORD)
    request_to_join(newcomer, orgs["contoso"], message="I joined Contoso's design team.")
    redrock = Actor(user=users["admin@redrock.example"], org=rr, role="admin")
    request_partner_access(redrock, orgs["fabrikam"], [ents["fabrikam_studio"].code],
                           permissions=["view", "download"], message="We now handle Fabrikam's desktop support.")
    request_transfer(contoso_admin, ents["contoso_credits"], orgs["fabrikam"],
                     message="Fabrikam took over our render farm.")
    applicant = create_user(applicant_email, applicant_name, password=DEMO_PASSWORD)
    apply_as_partner(applicant, company="Globex Solutions", kind="reseller", email="sales@globex.example",
                     message="We resell design software in the Nordics.")
    db.session.flush()
    return {"orgs": orgs, "users": users, "entitlements": ents,
            "activations": db.session.scalars(select(Activation)).all()}
