"""Who the bench signs in as, chosen from the data, with users made through the services.

- a customer admin of the largest hierarchy (most organizations, then most entitlements);
- a customer member of that hierarchy's subsidiary with the most entitlements;
- the reseller serving the most customers;
- the distributor attached to the most entitlements;
- producer staff.

Each gets a user of its own (``bench-<label>-<org id>@bench.example.com``) with a local password, made
with ``create_user`` and given its role with ``add_member``; the bench then signs in through
``POST /login`` like a browser.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import distinct, func, select

from portal.extensions import db
from portal.models import Attachment, Entitlement, Organization, User
from portal.policy import system_actor
from portal.services.accounts import create_user
from portal.services.orgs import add_member

BENCH_PASSWORD = "bench-password-2026"  # noqa: S105  (bench users on bench databases only)


@dataclass(frozen=True)
class BenchActor:
    label: str  # "customer admin", "reseller"...
    area: str  # the blueprint it works in: customer, partner or producer
    org_id: int
    org_name: str
    role: str
    email: str

    @property
    def slug(self) -> str:
        return self.label.replace(" ", "-")


def _largest_hierarchy() -> tuple[Organization, Organization | None]:
    """(top-level customer of the largest hierarchy, its subsidiary with the most entitlements)."""
    rows = db.session.execute(select(Organization.id, Organization.path).where(Organization.kind == "customer")).all()
    if not rows:
        raise RuntimeError("the bench database has no customers: seed it first")
    owned = dict(db.session.execute(select(Entitlement.owner_id, func.count()).group_by(Entitlement.owner_id)).all())
    orgs_per_root: Counter[int] = Counter()
    ents_per_root: Counter[int] = Counter()
    ents_below: Counter[int] = Counter()  # entitlements in each organization's subtree
    for org_id, path in rows:
        ids = [int(part) for part in path.strip("/").split("/")]
        orgs_per_root[ids[0]] += 1
        ents_per_root[ids[0]] += owned.get(org_id, 0)
        for ancestor in ids:
            ents_below[ancestor] += owned.get(org_id, 0)
    root_id = max(orgs_per_root, key=lambda r: (orgs_per_root[r], ents_per_root[r], -r))
    root = db.session.get(Organization, root_id)
    children = db.session.scalars(select(Organization).where(Organization.parent_id == root_id)).all()
    child = max(children, key=lambda c: (ents_below[c.id], -c.id), default=None)
    return root, child


def _partner_most(kind: str, measure) -> Organization | None:
    row = db.session.execute(
        select(Attachment.partner_id, measure.label("n"))
        .join(Entitlement, Entitlement.id == Attachment.entitlement_id)
        .join(Organization, Organization.id == Attachment.partner_id)
        .where(Attachment.active.is_(True), Attachment.can_view.is_(True), Organization.kind == kind)
        .group_by(Attachment.partner_id)
        .order_by(measure.desc(), Attachment.partner_id)
        .limit(1)
    ).first()
    return db.session.get(Organization, row[0]) if row else None


def choose_orgs() -> list[tuple[str, Organization, str]]:
    """(label, organization, role) for every bench actor the data has."""
    root, child = _largest_hierarchy()
    reseller = _partner_most("reseller", func.count(distinct(Entitlement.owner_id)))
    distributor = _partner_most("distributor", func.count())
    producer = db.session.scalar(select(Organization).where(Organization.kind == "producer"))
    chosen = [("customer admin", root, "admin"), ("customer member", child or root, "member"),
              ("reseller", reseller, "admin"), ("distributor", distributor, "admin"),
              ("producer staff", producer, "staff")]
    return [(label, org, role) for label, org, role in chosen if org is not None]


def _ensure_user(org: Organization, role: str, email: str) -> None:
    """The bench user with a membership of ``role`` in ``org``, made through the services."""
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        return  # made by an earlier run (the email names the organization)
    system = system_actor(db.session.scalar(select(Organization).where(Organization.kind == "producer")))
    user = create_user(email, f"Bench {role}", password=BENCH_PASSWORD, actor=system)
    add_member(system, org, user, role)


def prepare_actors() -> list[BenchActor]:
    """Choose the actors and make sure their users exist; commits."""
    actors = []
    for label, org, role in choose_orgs():
        email = f"bench-{label.replace(' ', '-')}-{org.id}@bench.example.com"
        _ensure_user(org, role, email)
        area = "partner" if org.is_partner else org.kind
        actors.append(BenchActor(label, area, org.id, org.name, role, email))
    db.session.commit()
    return actors
