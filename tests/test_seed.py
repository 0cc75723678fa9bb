"""``flask portal seed``: exact sizes, determinism, and the invariants the services would keep."""

from __future__ import annotations

import hashlib
import io
from collections import Counter, defaultdict
from datetime import date

import pytest
from sqlalchemy import func, select

from portal.blueprints.partner.reports import build_report
from portal.exchange import export_entitlements_csv
from portal.extensions import db
from portal.models import (
    Activation,
    Attachment,
    AuditEvent,
    ChannelRelationship,
    Entitlement,
    EntitlementLine,
    Membership,
    Notification,
    NotificationMessage,
    Organization,
    OutboxEmail,
    Product,
    Release,
    SalesChainLink,
    UsageRecord,
    User,
)
from portal.models.sales import PartnerSale
from portal.policy import Actor, system_actor
from portal.seed import NICHE_PRODUCT, PRODUCTS, seed
from tests.conftest import make_test_app
from tests.partner.report_oracle import live_report

TODAY = date(2026, 11, 1)
SMALL = {"customers": 20, "partners": 10, "entitlements": 300}
MODELS = {
    "organizations": Organization,
    "channel_relationships": ChannelRelationship,
    "users": User,
    "memberships": Membership,
    "products": Product,
    "releases": Release,
    "entitlements": Entitlement,
    "lines": EntitlementLine,
    "sales_chain_links": SalesChainLink,
    "attachments": Attachment,
    "activations": Activation,
    "usage_records": UsageRecord,
}


def _count(model, *criteria) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*criteria))


@pytest.fixture
def seeded(app):
    return seed(**SMALL, random_seed=7, today=TODAY)


def test_counts_are_exact_and_match_the_database(seeded):
    assert list(seeded) == list(MODELS)
    for name, model in MODELS.items():
        assert _count(model) == seeded[name], name
    assert seeded["entitlements"] == 300
    kinds = Counter(db.session.scalars(select(Organization.kind)))
    assert kinds["producer"] == 1
    assert kinds["distributor"] + kinds["reseller"] + kinds["service_provider"] == 10
    assert (kinds["distributor"], kinds["reseller"], kinds["service_provider"]) == (1, 7, 2)
    assert _count(Organization, Organization.kind == "customer", Organization.parent_id.is_(None)) == 20
    assert kinds["customer"] > 20  # subsidiaries and sites
    # One admin per organization, plus the producer's staff user.
    assert seeded["users"] == seeded["organizations"] + 1
    assert seeded["products"] == len(PRODUCTS) + 1 == 7  # and the niche one
    # One audit event for the bulk load, none per row (after the producer's creation); then the
    # notification's own events, and one for its mail marked sent.
    events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [e.action for e in events] == ["organization.create", "seed.run", "notification.create",
                                          "notification.send", "notification.sent", "seed.notification_mail_sent"]
    assert events[1].details["rows"] == seeded


def test_one_sent_security_patch_reaches_every_holder_of_the_least_held_product(seeded):
    notification = db.session.scalars(select(Notification)).one()
    assert (notification.kind, notification.state) == ("security_patch", "sent")
    assert notification.product.sku == NICHE_PRODUCT[0]
    staff = db.session.scalar(select(Membership).where(Membership.user_id == notification.created_by_id))
    assert staff.role == "staff" and staff.org.kind == "producer"
    # Computed here from the entitlements, not with the service's query.
    holders = defaultdict(set)
    for product_id, owner_id in db.session.execute(
        select(EntitlementLine.product_id, Entitlement.owner_id)
        .join(Entitlement, Entitlement.id == EntitlementLine.entitlement_id)
        .join(Organization, Organization.id == Entitlement.owner_id)
        .where(Entitlement.status == "active", Organization.kind == "customer")
    ):
        holders[product_id].add(owner_id)
    assert len(holders) == 7
    assert min(holders, key=lambda p: len(holders[p])) == notification.product_id
    told = set(db.session.scalars(select(NotificationMessage.org_id)
                                  .where(NotificationMessage.notification_id == notification.id)))
    assert told == holders[notification.product_id]
    assert _count(NotificationMessage) == notification.organizations_done == notification.organizations_total
    assert 0 < len(told) < len(min((holders[p] for p in holders if p != notification.product_id), key=len)) / 4
    # Its mail went out (marked sent): nothing queued is left behind.
    mail = db.session.execute(select(OutboxEmail.status, OutboxEmail.attempts, OutboxEmail.sent_at)).all()
    assert len(mail) == notification.emails_queued > 0
    assert {(status, attempts) for status, attempts, _ in mail} == {("sent", 1)}
    assert all(sent_at is not None for _, _, sent_at in mail)
    # The bench's customer admin (the largest hierarchy) and customer member (its subsidiary with
    # the most entitlements) both have a message to read.
    from bench.actors import _largest_hierarchy

    paths = [db.session.get(Organization, org_id).path for org_id in told]
    for org in _largest_hierarchy():
        assert org is not None and any(path.startswith(org.path) for path in paths), org.name


def test_hierarchy_paths_are_consistent_with_parents(seeded):
    orgs = {o.id: o for o in db.session.scalars(select(Organization))}
    depths = Counter()
    for org in orgs.values():
        expected = (orgs[org.parent_id].path if org.parent_id else "/") + f"{org.id}/"
        assert org.path == expected
        if org.parent_id is not None:
            assert org.kind == "customer"
            assert orgs[org.parent_id].kind == "customer"
        depths[len(org.ancestor_ids)] += 1
    assert depths[3] > 0  # group > subsidiary > site at least


def test_every_chain_follows_channel_edges_and_attachments_match(seeded):
    producer_id = db.session.scalar(select(Organization.id).where(Organization.kind == "producer"))
    kinds = dict(db.session.execute(select(Organization.id, Organization.kind)).all())
    stocking = set(db.session.scalars(select(Organization.id).where(Organization.stocking.is_(True))))
    edges = set(db.session.execute(
        select(ChannelRelationship.supplier_id, ChannelRelationship.buyer_id)).all())
    chains = defaultdict(list)
    for link in db.session.scalars(select(SalesChainLink).order_by(SalesChainLink.entitlement_id,
                                                                   SalesChainLink.position)):
        chains[link.entitlement_id].append(link.partner_id)
    attachments = defaultdict(set)
    services = defaultdict(list)
    for a in db.session.scalars(select(Attachment)):
        assert a.active or a.revoked_at is not None
        if a.relation == "services":
            assert kinds[a.partner_id] == "service_provider"
            services[a.entitlement_id].append(a)
        else:
            assert a.active
            attachments[a.entitlement_id].add((a.partner_id, a.relation, a.can_view, a.can_download,
                                               a.can_activate))
    shapes = Counter()
    for entitlement in db.session.scalars(select(Entitlement)):
        chain = chains.get(entitlement.id, [])
        shapes[len(chain)] += 1
        pairs = [(producer_id, chain[0])] + list(zip(chain, chain[1:], strict=False)) if chain else []
        assert all(pair in edges for pair in pairs), (entitlement.code, chain)
        assert len(set(chain)) == len(chain)
        expected = {(p, "sold" if i == len(chain) - 1 else "distributed", True, i == len(chain) - 1,
                     i == len(chain) - 1) for i, p in enumerate(chain)}
        assert attachments.get(entitlement.id, set()) == expected
        if kinds[entitlement.owner_id] != "customer":
            assert entitlement.fulfilment == "stocking"
            assert entitlement.owner_id == chain[-1]
            assert entitlement.owner_id in stocking
            assert not services.get(entitlement.id)
        if entitlement.fulfilment == "stocking":
            assert chain
            assert chain[-1] in stocking
    assert min(shapes[0], shapes[1], shapes[2]) > 0  # direct, single tier, two tiers
    assert _count(Entitlement, Entitlement.owner_id.in_(stocking)) > 0
    assert any(not a.active for rows in services.values() for a in rows)
    assert any(a.active for rows in services.values() for a in rows)


def test_every_partner_report_from_the_read_model_equals_the_live_one(seeded):
    """The read models the seed derives at the end (``partner_sales``) give each partner the
    report the tables give, for itself and working for its biggest customer."""
    partners = db.session.scalars(select(Organization).where(Organization.kind.in_(
        ("distributor", "reseller", "service_provider"))).order_by(Organization.id)).all()
    figures = 0
    for partner in partners:
        actor = Actor(user=None, org=partner, role="admin")
        customer = db.session.scalar(select(PartnerSale.owner_id).where(
            PartnerSale.partner_id == partner.id, PartnerSale.owner_customer.is_(True))
            .group_by(PartnerSale.owner_id).order_by(func.count().desc(), PartnerSale.owner_id).limit(1))
        for who in (actor, actor.for_customer(customer)) if customer else (actor,):
            for kind in ("month", "quarter"):
                report = build_report(who, kind)
                assert report == live_report(who, kind), (partner.name, who.customer_id, kind)
                figures += report["total"].entitlements
    assert figures > 0


def test_customers_buy_from_several_sellers(seeded):
    """Bottom-up: some customer groups bought through more than one seller."""
    seller = (
        select(SalesChainLink.entitlement_id, func.max(SalesChainLink.position).label("last"))
        .group_by(SalesChainLink.entitlement_id)
        .subquery()
    )
    rows = db.session.execute(
        select(Organization.path, SalesChainLink.partner_id)
        .join(Entitlement, Entitlement.owner_id == Organization.id)
        .join(seller, seller.c.entitlement_id == Entitlement.id)
        .join(SalesChainLink, (SalesChainLink.entitlement_id == seller.c.entitlement_id)
              & (SalesChainLink.position == seller.c.last))
        .where(Organization.kind == "customer")
    ).all()
    sellers_per_group = defaultdict(set)
    for path, partner_id in rows:
        sellers_per_group[path.split("/")[1]].add(partner_id)
    assert sum(len(s) > 1 for s in sellers_per_group.values()) >= 3


def test_no_line_is_oversubscribed_and_hosts_are_unique(seeded):
    used = (
        select(Activation.line_id, func.sum(Activation.seats).label("seats"))
        .where(Activation.active.is_(True))
        .group_by(Activation.line_id)
        .subquery()
    )
    over = db.session.scalar(
        select(func.count()).select_from(used).join(EntitlementLine, EntitlementLine.id == used.c.line_id)
        .where(used.c.seats > EntitlementLine.quantity)
    )
    assert over == 0
    assert _count(Activation) > 0
    live = db.session.execute(
        select(Activation.line_id, Activation.host_id).where(Activation.active.is_(True))
    ).all()
    assert len(live) == len(set(live))
    # Only seats of usable lines: perpetual or subscription, active entitlement owned by a customer.
    wrong = db.session.scalar(
        select(func.count()).select_from(Activation)
        .join(EntitlementLine, EntitlementLine.id == Activation.line_id)
        .join(Entitlement, Entitlement.id == EntitlementLine.entitlement_id)
        .join(Organization, Organization.id == Entitlement.owner_id)
        .where((EntitlementLine.license_model == "usage") | (Entitlement.status != "active")
               | (Organization.kind != "customer"))
    )
    assert wrong == 0
    models = Counter(db.session.scalars(select(EntitlementLine.license_model)))
    assert set(models) == {"perpetual", "subscription", "usage"}


def test_seeding_twice_adds_a_second_data_set(seeded):
    again = seed(customers=3, partners=4, entitlements=25, random_seed=7, today=TODAY)
    assert again["products"] == 0  # the catalog is reused
    assert _count(Organization, Organization.kind == "producer") == 1
    assert _count(Entitlement) == 325
    assert _count(select(Entitlement.code).distinct().subquery()) == 325


def _digest(database_url: str, signing_key_dir, random_seed: int) -> str:
    """Seed an empty database and fingerprint what was written, without the ids (PostgreSQL's
    clean database does not restart its sequences, so ids differ from run to run)."""
    app = make_test_app(database_url, signing_key_dir)
    with app.app_context():
        try:
            seed(**SMALL, random_seed=random_seed, today=TODAY)
            producer = db.session.scalar(select(Organization).where(Organization.kind == "producer"))
            out = io.StringIO()
            export_entitlements_csv(system_actor(producer), out)
            digest = hashlib.sha256(out.getvalue().encode())
            for query in (
                select(Organization.kind, Organization.name, Organization.stocking, Organization.created_at,
                       func.length(Organization.path) - func.length(func.replace(Organization.path, "/", "")))
                .order_by(Organization.id),
                select(EntitlementLine.activation_code).order_by(EntitlementLine.id),
                select(Activation.seats, Activation.active, Activation.activated_at, Activation.returned_at,
                       Activation.friendly_name).order_by(Activation.id),
                select(UsageRecord.units, UsageRecord.used_on).order_by(UsageRecord.id),
                select(Attachment.relation, Attachment.active, Attachment.granted_at, Attachment.revoked_at)
                .order_by(Attachment.id),
            ):
                for row in db.session.execute(query):
                    digest.update(repr(tuple(row)).encode())
            return digest.hexdigest()
        finally:
            db.session.remove()
            db.engine.dispose()


def test_same_seed_same_data(test_database, tmp_path, signing_key_dir):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    first = _digest(test_database.fresh_url(tmp_path / "a"), signing_key_dir, 11)
    second = _digest(test_database.fresh_url(tmp_path / "b"), signing_key_dir, 11)
    other = _digest(test_database.fresh_url(tmp_path / "c"), signing_key_dir, 12)
    assert first == second
    assert other != first


def test_cli_seed(app):
    result = app.test_cli_runner().invoke(
        args=["portal", "seed", "--customers", "3", "--partners", "4", "--entitlements", "20", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "20 entitlements" in result.output
    db.session.rollback()
    assert _count(Entitlement) == 20
    assert _count(Organization, Organization.kind.in_(("distributor", "reseller", "service_provider"))) == 4


@pytest.mark.parametrize(("partners", "split"), [(0, (0, 0, 0)), (1, (0, 1, 0)), (2, (1, 1, 0)), (3, (1, 1, 1))])
def test_small_channels(app, partners, split):
    counts = seed(customers=2, partners=partners, entitlements=15, random_seed=1, today=TODAY)
    assert counts["entitlements"] == 15
    kinds = Counter(db.session.scalars(select(Organization.kind)))
    assert (kinds["distributor"], kinds["reseller"], kinds["service_provider"]) == split
    if not partners:
        assert _count(SalesChainLink) == 0
        assert _count(Attachment) == 0


def test_a_failed_run_leaves_nothing_behind(app, monkeypatch):
    import portal.seed

    monkeypatch.setattr(portal.seed, "CHUNK_ROWS", 50)  # several chunks are written before the failure
    calls = []

    def fail_late(self):
        calls.append(1)
        if len(calls) == 120:
            raise RuntimeError("disk full")
        return original(self)

    original = portal.seed._Generator.make_entitlement
    monkeypatch.setattr(portal.seed._Generator, "make_entitlement", fail_late)
    with pytest.raises(RuntimeError, match="disk full"):
        seed(**SMALL, random_seed=7, today=TODAY)
    for model in MODELS.values():
        assert _count(model) == 0
    assert _count(AuditEvent) == 0
