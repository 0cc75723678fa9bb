"""Property test: the access policy agrees with spec section 4 on random worlds.

Hypothesis draws a *plan* (plain data): a channel (producer -> distributors -> resellers,
producer -> resellers, service providers without a channel edge), customer hierarchies of
depth up to 3, entitlements sold directly, through a valid one- or two-tier chain, or into
a stocking partner's stock, then a sequence of operations (extra attachments with random
relation and permissions granted by producer staff or a customer admin, revocations of any
attachment, the seller's included, assignments of stock) and final entitlement statuses.

The plan is applied through the real services (``create_entitlement``, ``attach_partner``,
``revoke_attachment``, ``assign_stock``...), and at the same time to a small in-memory
model. Then, for every actor (producer staff, every customer organization as admin and as
member, every partner organization, and every partner scoped to each customer), the
policy's answers are compared with a REFERENCE written below straight from spec section 4
in plain Python over that model, never by calling the policy:

- ``visible_entitlements`` (exact ids, no duplicates, and the SQL count views use);
- ``customers_served_by`` for partners;
- ``visible_attachments`` per entitlement (a partner only its own);
- ``can(actor, action, entitlement)`` for EVERY action of ``policy.ENTITLEMENT_ACTIONS``,
  ``can(actor, action, attachment)`` for every action of ``policy.ATTACHMENT_ACTIONS`` and
  ``can(actor, action, activation)`` for every action of ``policy.ACTIVATION_ACTIONS`` (one
  seat is active on every entitlement a customer owns, also after it is suspended or
  returned). The reference answers from a table per action and fails with KeyError for an
  action it does not know, so an action added to the policy's vocabulary cannot go untested;
- ``load_entitlement`` answering 404 exactly for what the actor may not see.

Isolation between examples: the function-scoped ``app`` fixture gives one clean, migrated
database for the whole test; every example builds its world inside ONE database transaction
and rolls it back at the end. The services only flush (house style: views commit), the
policy only reads, so everything an example wrote, audit events included, disappears with
the rollback: no DELETE ever touches the append-only ``audit_event`` table, and no new app
or fresh database copy (``make_test_app`` + ``fresh_url``) is paid for on every example.
Reads inside the transaction see its own writes on both SQLite and PostgreSQL, and the
policy has no cache that could outlive it. Each example starts by asserting the database is empty, so a
service that ever commits shows up as a failure instead of leaking into the next example.

Beyond section 4 the reference assumes what a user would expect and what section 3 implies:
only an ``active`` entitlement owned by a customer can be activated (stock cannot); only an
``active`` entitlement can be downloaded by customers and partners or assigned from stock;
the stock holder may download its own active stock even without an attachment; producer
staff may do everything else (they "see everything" and edit entitlements).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from werkzeug.exceptions import NotFound

from portal import policy
from portal.extensions import db
from portal.models import Activation, Attachment, Entitlement, Membership, Organization, Product, User, utcnow
from portal.services.entitlements import (
    LineSpec,
    assign_stock,
    attach_partner,
    create_entitlement,
    revoke_attachment,
    set_entitlement_status,
)
from portal.services.errors import ServiceError
from portal.services.orgs import add_channel_relationship, bootstrap_producer, create_organization

PRODUCER = "P"
ENTITLEMENT_ACTIONS = sorted(policy.ENTITLEMENT_ACTIONS)
ACTIVATION_ACTIONS = sorted(policy.ACTIVATION_ACTIONS)
ATTACHMENT_ACTIONS = sorted(policy.ATTACHMENT_ACTIONS)
RELATIONS = ("sold", "distributed", "services")
STATUSES = ("active", "suspended", "returned")
GRANTERS = ("producer", "owner_admin", "root_admin")
MAX_CUSTOMERS = 8


# --- the plan: plain data drawn by hypothesis -------------------------------------------------


@dataclass(frozen=True)
class PartnerPlan:
    key: str  # also the organization's name: D1, R2, S1
    kind: str
    suppliers: tuple[str, ...]  # channel edges supplier -> this partner ("P" is the producer)
    stocking: bool


@dataclass(frozen=True)
class EntitlementPlan:
    owner: str  # a customer key, or for stock the holding partner (the seller)
    chain: tuple[str, ...]
    fulfilment: str


@dataclass(frozen=True)
class Attach:
    entitlements: tuple[int, ...]
    partner: str
    relation: str
    permissions: frozenset[str]
    by: str


@dataclass(frozen=True)
class Revoke:
    entitlement: int
    pick: int  # which of the entitlement's active attachments (modulo their number)
    by: str


@dataclass(frozen=True)
class Assign:
    entitlement: int  # assigned only while it is in stock; otherwise the step is a no-op
    customer: str


@dataclass(frozen=True)
class Plan:
    partners: tuple[PartnerPlan, ...]
    customers: tuple[tuple[str, str | None], ...]  # (key, parent key), parents first
    entitlements: tuple[EntitlementPlan, ...]
    operations: tuple[Attach | Revoke | Assign, ...]
    statuses: tuple[str, ...]


def chains_of(partners: tuple[PartnerPlan, ...]) -> list[tuple[str, ...]]:
    """Every sales chain that follows channel edges from the producer (one or two tiers)."""
    by_key = {p.key: p for p in partners}
    chains = [(p.key,) for p in partners if PRODUCER in p.suppliers]
    for p in partners:
        for supplier in p.suppliers:
            if supplier != PRODUCER and PRODUCER in by_key[supplier].suppliers:
                chains.append((supplier, p.key))
    return chains


@st.composite
def customer_forests(draw) -> tuple[tuple[str, str | None], ...]:
    customers: list[tuple[str, str | None]] = []
    frontier = [(f"C{i}", None, 1) for i in range(1, draw(st.integers(1, 3)) + 1)]
    while frontier and len(customers) < MAX_CUSTOMERS:
        key, parent, depth = frontier.pop(0)
        customers.append((key, parent))
        if depth < 3:
            children = draw(st.integers(0, 2))
            frontier.extend((f"{key}.{n}", key, depth + 1) for n in range(1, children + 1))
    return tuple(customers)


@st.composite
def plans(draw) -> Plan:
    distributors = [f"D{i}" for i in range(1, draw(st.integers(0, 2)) + 1)]
    resellers = [f"R{i}" for i in range(1, draw(st.integers(1, 3)) + 1)]
    providers = [f"S{i}" for i in range(1, draw(st.integers(0, 2)) + 1)]
    partners = [PartnerPlan(d, "distributor", (PRODUCER,), draw(st.booleans())) for d in distributors]
    for r in resellers:
        suppliers = draw(st.sets(st.sampled_from([PRODUCER, *distributors]), min_size=1))
        partners.append(PartnerPlan(r, "reseller", tuple(sorted(suppliers)), draw(st.booleans())))
    partners += [PartnerPlan(s, "service_provider", (), False) for s in providers]
    partners = tuple(partners)

    customers = draw(customer_forests())
    customer_keys = [key for key, _ in customers]
    chains = chains_of(partners)
    stocking = {p.key for p in partners if p.stocking}
    stock_chains = [c for c in chains if c[-1] in stocking]

    entitlements = []
    for _ in range(draw(st.integers(1, 7))):
        if stock_chains and draw(st.booleans()):
            chain = draw(st.sampled_from(stock_chains))
            entitlements.append(EntitlementPlan(chain[-1], chain, "stocking"))
        else:
            chain = draw(st.sampled_from([(), *chains]))
            entitlements.append(EntitlementPlan(draw(st.sampled_from(customer_keys)), chain, "drop_ship"))

    index = st.integers(0, len(entitlements) - 1)
    attach = st.builds(
        Attach,
        entitlements=st.sets(index, min_size=1, max_size=2).map(lambda s: tuple(sorted(s))),
        partner=st.sampled_from([p.key for p in partners]),
        relation=st.sampled_from(RELATIONS),
        permissions=st.sets(st.sampled_from(("download", "activate"))).map(lambda s: frozenset({"view", *s})),
        by=st.sampled_from(GRANTERS),
    )
    revoke = st.builds(Revoke, entitlement=index, pick=st.integers(0, 3), by=st.sampled_from(GRANTERS))
    assign = st.builds(Assign, entitlement=index, customer=st.sampled_from(customer_keys))
    operations = draw(st.lists(st.one_of(attach, revoke, assign), max_size=8))
    statuses = draw(st.lists(st.sampled_from(STATUSES), min_size=len(entitlements), max_size=len(entitlements)))
    return Plan(partners, customers, tuple(entitlements), tuple(operations), tuple(statuses))


# --- the in-memory model the reference reads ------------------------------------------------


@dataclass
class ModelAttachment:
    partner: str
    relation: str
    permissions: frozenset[str]
    active: bool = True
    db_id: int = 0


@dataclass
class ModelEntitlement:
    owner: str
    chain: tuple[str, ...]
    status: str = "active"
    attachments: list[ModelAttachment] = field(default_factory=list)
    db_id: int = 0
    code: str = ""
    activation_id: int | None = None  # one active seat while a customer owns it


@dataclass
class Model:
    kinds: dict[str, str]  # org key -> kind
    parents: dict[str, str | None]  # customer key -> parent key
    entitlements: list[ModelEntitlement]

    def ancestors(self, key: str) -> list[str]:
        """The key itself and its ancestors, bottom-up."""
        result = []
        while key is not None:
            result.append(key)
            key = self.parents.get(key)
        return result


@dataclass(frozen=True)
class Who:
    """The reference's view of an actor: its kind, organization, role and customer scope."""

    kind: str  # producer, customer or partner
    org: str
    admin: bool
    customer: str | None = None

    def __str__(self) -> str:
        role = "admin" if self.admin else ("staff" if self.kind == "producer" else "member")
        scope = f" working for {self.customer}" if self.customer else ""
        return f"{self.kind} {role} of {self.org}{scope}"


# --- THE REFERENCE: spec section 4 in plain Python over the model ----------------------------


def ref_own_attachment(who: Who, e: ModelEntitlement) -> ModelAttachment | None:
    return next((a for a in e.attachments if a.active and a.partner == who.org), None)


def ref_sees(m: Model, who: Who, e: ModelEntitlement) -> bool:
    if who.kind == "producer":
        return True  # producer admin / staff: everything
    if who.kind == "customer":
        return who.org in m.ancestors(e.owner)  # owned by its organization or a descendant
    # A partner: what its org owns (stock) and what it has an active attachment on; working
    # for one customer scopes every page to that customer.
    seen = e.owner == who.org or ref_own_attachment(who, e) is not None
    return seen and (who.customer is None or e.owner == who.customer)


def ref_can(m: Model, who: Who, action: str, e: ModelEntitlement) -> bool:
    if not ref_sees(m, who, e):
        return False
    active = e.status == "active"
    owned_by_customer = m.kinds[e.owner] == "customer"
    usable = active and owned_by_customer  # new seats and usage need both
    if who.kind == "producer":
        return {
            "view": True, "download": True, "activate": usable, "record_usage": usable,
            "assign": not owned_by_customer,  # stock only: moving a customer's entitlement is a transfer
            "attach": True, "revoke": True, "suspend": True, "edit": True,
            "request_transfer": False,  # producer staff decide transfers, they do not ask
        }[action]
    if who.kind == "customer":
        return {
            "view": True, "download": active, "activate": active, "record_usage": active, "assign": False,
            "attach": who.admin, "revoke": who.admin,  # attach/revoke partners: admins only
            "suspend": False, "edit": False, "request_transfer": who.admin,
        }[action]
    own = ref_own_attachment(who, e)
    permissions = own.permissions if own is not None else frozenset()
    holds = e.owner == who.org
    return {
        "view": True,
        "download": active and (holds or "download" in permissions),
        "activate": usable and "activate" in permissions,
        "record_usage": usable and "activate" in permissions,
        "assign": active and holds,  # assign its stock
        "attach": False, "revoke": False, "suspend": False, "edit": False, "request_transfer": False,
    }[action]


def ref_can_activation(m: Model, who: Who, action: str, e: ModelEntitlement) -> bool:
    """On the one active seat of an entitlement a customer owns."""
    if not ref_sees(m, who, e):
        return False
    own = ref_own_attachment(who, e)
    handles_seats = who.kind != "partner" or (own is not None and "activate" in own.permissions)
    return {
        "view": True,
        # Seats can always be given back, also on a suspended or returned entitlement.
        "return": handles_seats,
        "rehost": ref_can(m, who, "activate", e),  # a new activation
        "download": ref_can(m, who, "download", e),  # the .lic file
    }[action]


def ref_visible_attachments(m: Model, who: Who, e: ModelEntitlement) -> list[ModelAttachment]:
    if not ref_sees(m, who, e):
        return []
    if who.kind == "partner":
        return [a for a in e.attachments if a.partner == who.org]  # only its own, never others'
    return list(e.attachments)


def ref_can_attachment(m: Model, who: Who, action: str, e: ModelEntitlement, a: ModelAttachment) -> bool:
    sees = ref_sees(m, who, e)
    if who.kind == "partner":
        return action == "view" and sees and a.partner == who.org
    return {
        "view": sees,
        # producer staff and customer admins for their entitlements, any active attachment
        "revoke": sees and a.active and (who.kind == "producer" or who.admin),
    }[action]


def ref_customers_served(m: Model, who: Who) -> set[str]:
    return {
        e.owner for e in m.entitlements
        if m.kinds[e.owner] == "customer" and ref_own_attachment(who, e) is not None
    }


# --- applying a plan through the real services ----------------------------------------------


@dataclass
class World:
    plan: Plan
    model: Model
    orgs: dict[str, Organization]
    actors: dict[Who, policy.Actor]

    def actor(self, who: Who) -> policy.Actor:
        return self.actors[who]


def _actors(orgs: dict[str, Organization], roles: dict[Who, str]) -> dict[Who, policy.Actor]:
    """One user with a membership per actor (added in one flush), as ``actor_for`` sees them."""
    users = {}
    for who, role in roles.items():
        email = f"{role}-{who.org.replace('.', '-')}@example.com".lower()
        users[who] = User(email=email, display_name=f"{role} of {who.org}")
        db.session.add(Membership(user=users[who], org=orgs[who.org], role=role))
    db.session.flush()
    actors = {who: policy.actor_for(users[who], orgs[who.org]) for who in roles}
    assert None not in actors.values()
    return actors


def build(plan: Plan) -> World:
    producer = bootstrap_producer("Acme Software")
    orgs: dict[str, Organization] = {PRODUCER: producer}
    staff = Who("producer", PRODUCER, admin=False)
    by_staff = _actors(orgs, {staff: "staff"})[staff]

    kinds = {PRODUCER: "producer"}
    parents: dict[str, str | None] = {}
    roles: dict[Who, str] = {}
    for key, parent in plan.customers:
        orgs[key] = create_organization(by_staff, kind="customer", name=key, parent=orgs.get(parent))
        kinds[key], parents[key] = "customer", parent
        roles[Who("customer", key, True)] = "admin"
        roles[Who("customer", key, False)] = "member"
    for p in plan.partners:
        orgs[p.key] = create_organization(by_staff, kind=p.kind, name=p.key, stocking=p.stocking)
        kinds[p.key] = p.kind
        roles[Who("partner", p.key, True)] = "admin"
    for p in plan.partners:
        for supplier in p.suppliers:
            add_channel_relationship(by_staff, orgs[supplier], orgs[p.key])
    actors = {staff: by_staff, **_actors(orgs, roles)}

    product = Product(sku="SKU-1", name="Acme Studio")
    db.session.add(product)
    model = Model(kinds, parents, [])
    for spec in plan.entitlements:
        entitlement = create_entitlement(
            by_staff, owner=orgs[spec.owner], sales_chain=[orgs[k] for k in spec.chain],
            fulfilment=spec.fulfilment,
            lines=[LineSpec(product, "perpetual", 5, maintenance_end=date(2099, 1, 1))],
        )
        db_ids = {a.partner_id: a.id for a in entitlement.attachments}
        e = ModelEntitlement(spec.owner, spec.chain, db_id=entitlement.id, code=entitlement.code)
        for position, key in enumerate(spec.chain):
            seller = position == len(spec.chain) - 1
            e.attachments.append(ModelAttachment(
                key, "sold" if seller else "distributed",
                frozenset({"view", "download", "activate"} if seller else {"view"}), db_id=db_ids[orgs[key].id],
            ))
        model.entitlements.append(e)

    world = World(plan, model, orgs, actors)
    for operation in plan.operations:
        _apply(world, operation)
    for e in model.entitlements:
        if kinds[e.owner] == "customer":  # a seat in use (inserted: the seat service is tested elsewhere)
            line = db.session.get(Entitlement, e.db_id).lines[0]
            activation = Activation(line=line, host_id=f"host-{e.db_id}", seats=1, active=True, activated_at=utcnow())
            db.session.add(activation)
            db.session.flush()
            e.activation_id = activation.id
    for e, status in zip(model.entitlements, plan.statuses, strict=True):
        if status != "active":
            set_entitlement_status(by_staff, db.session.get(Entitlement, e.db_id), status)
            e.status = status
    db.session.flush()
    return world


def _granter(world: World, by: str, e: ModelEntitlement) -> policy.Actor:
    """Producer staff, or an admin of the owning customer (of the owner itself or of its root)."""
    if by == "producer" or world.model.kinds[e.owner] != "customer":
        return world.actor(Who("producer", PRODUCER, False))
    chain_up = world.model.ancestors(e.owner)
    return world.actor(Who("customer", chain_up[0] if by == "owner_admin" else chain_up[-1], True))


def _apply(world: World, operation: Attach | Revoke | Assign) -> None:
    model = world.model
    if isinstance(operation, Attach):
        targets = [model.entitlements[i] for i in operation.entitlements]
        actor = _granter(world, operation.by, targets[0])
        if not actor.is_producer:
            targets = targets[:1]  # a customer admin attaches on its own entitlements only
            if operation.relation != "services":  # sold and distributed are the channel's, not the customer's
                with pytest.raises(ServiceError, match="services"):
                    attach_partner(actor, [db.session.get(Entitlement, e.db_id) for e in targets],
                                   world.orgs[operation.partner], relation=operation.relation,
                                   permissions=operation.permissions)
                return
        attachments = attach_partner(
            actor, [db.session.get(Entitlement, e.db_id) for e in targets], world.orgs[operation.partner],
            relation=operation.relation, permissions=operation.permissions,
        )
        for e, attachment in zip(targets, attachments, strict=True):
            live = next((a for a in e.attachments if a.active and a.partner == operation.partner), None)
            if live is None:  # a live attachment of that partner is updated, not duplicated
                e.attachments.append(ModelAttachment(operation.partner, operation.relation,
                                                     operation.permissions, db_id=attachment.id))
            else:
                assert live.db_id == attachment.id
                live.permissions = operation.permissions
                if actor.is_producer:  # only producer staff change a relation (the channel's figures)
                    live.relation = operation.relation
                assert attachment.relation == live.relation
    elif isinstance(operation, Revoke):
        e = model.entitlements[operation.entitlement]
        live = [a for a in e.attachments if a.active]
        if live:
            chosen = live[operation.pick % len(live)]
            revoke_attachment(_granter(world, operation.by, e), db.session.get(Attachment, chosen.db_id))
            chosen.active = False
    else:
        e = model.entitlements[operation.entitlement]
        if model.kinds[e.owner] != "customer":  # still in stock: its holder assigns it
            holder = world.actor(Who("partner", e.owner, True))
            entitlement = db.session.get(Entitlement, e.db_id)
            assign_stock(holder, entitlement, world.orgs[operation.customer])
            e.owner = operation.customer


# --- comparing the policy with the reference -------------------------------------------------


def check(world: World) -> list[str]:
    m = world.model
    problems: list[str] = []
    db.session.flush()
    db.session.expire_all()  # the policy reads what is in the database, like a fresh request
    entitlements = [(e, db.session.get(Entitlement, e.db_id)) for e in m.entitlements]
    key_of = {org.id: key for key, org in world.orgs.items()}

    def keys(ids) -> list[str]:
        return sorted(key_of.get(i, f"#{i}") for i in ids)

    def codes(ids) -> list[str]:
        by_id = {e.db_id: f"E{n}" for n, e in enumerate(m.entitlements)}
        return sorted(by_id.get(i, f"#{i}") for i in ids)

    def attachments(ids) -> list[str]:
        by_id = {a.db_id: f"{a.partner} {a.relation}{'' if a.active else ' (revoked)'}"
                 for e in m.entitlements for a in e.attachments}
        return [by_id.get(i, f"#{i}") for i in ids]

    whos = list(world.actors)
    customer_keys = [key for key, _ in world.plan.customers]
    scoped = []  # each partner working for each customer it serves, and for one it does not serve
    for who in (w for w in whos if w.kind == "partner"):
        served = ref_customers_served(m, who)
        others = [c for c in customer_keys if c not in served][:1]
        scoped += [Who("partner", who.org, True, customer=c) for c in sorted(served) + others]

    for who in whos + scoped:
        actor = world.actor(Who(who.kind, who.org, who.admin))
        if who.customer is not None:
            actor = actor.for_customer(world.orgs[who.customer].id)
        expected = sorted(e.db_id for e in m.entitlements if ref_sees(m, who, e))
        query = policy.visible_entitlements(actor)
        got = sorted(db.session.scalars(query.with_only_columns(Entitlement.id)).all())
        if got != expected:
            problems.append(f"{who}: visible_entitlements {codes(got)}, expected {codes(expected)}")
        count = db.session.scalar(select(func.count()).select_from(query.subquery()))
        if count != len(expected):
            problems.append(f"{who}: visible_entitlements counts {count}, expected {len(expected)}")
        if who.customer is not None:  # switching customers scopes the list and single objects
            for n, (e, entitlement) in enumerate(entitlements):
                if policy.can(actor, "view", entitlement) != ref_sees(m, who, e):
                    problems.append(f"{who}: can view E{n} (owner {e.owner}) is {not ref_sees(m, who, e)}")
            continue

        if who.kind == "partner":
            served = db.session.scalars(policy.customers_served_by(actor).with_only_columns(Organization.id)).all()
            expected_served = sorted(ref_customers_served(m, who))
            if keys(served) != expected_served:
                problems.append(f"{who}: customers_served_by {keys(served)}, expected {expected_served}")

        for n, (e, entitlement) in enumerate(entitlements):
            label = f"{who} on E{n} (owner {e.owner}, chain {'->'.join(e.chain) or 'direct'}, {e.status})"
            for action in ENTITLEMENT_ACTIONS:
                got_can, want = policy.can(actor, action, entitlement), ref_can(m, who, action, e)
                if got_can != want:
                    problems.append(f"{label}: can {action} is {got_can}, expected {want}")

            got_ids = sorted(a.id for a in db.session.scalars(policy.visible_attachments(actor, entitlement)))
            want_ids = sorted(a.db_id for a in ref_visible_attachments(m, who, e))
            if got_ids != want_ids:
                problems.append(f"{label}: visible_attachments {attachments(got_ids)}, "
                                f"expected {attachments(want_ids)}")

            for a in e.attachments:
                attachment = db.session.get(Attachment, a.db_id)
                for action in ATTACHMENT_ACTIONS:
                    got_can, want = policy.can(actor, action, attachment), ref_can_attachment(m, who, action, e, a)
                    if got_can != want:
                        state = "active" if a.active else "revoked"
                        problems.append(f"{label}: can {action} {a.partner}'s {state} {a.relation} "
                                        f"attachment is {got_can}, expected {want}")

            if e.activation_id is not None:
                activation = db.session.get(Activation, e.activation_id)
                for action in ACTIVATION_ACTIONS:
                    got_can, want = policy.can(actor, action, activation), ref_can_activation(m, who, action, e)
                    if got_can != want:
                        problems.append(f"{label}: can {action} its activation is {got_can}, expected {want}")

            try:
                policy.load_entitlement(actor, e.code)
                loaded = True
            except NotFound:
                loaded = False
            if loaded != ref_sees(m, who, e):
                problems.append(f"{label}: load_entitlement {'found' if loaded else '404'}")
    return problems


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=plans())
def test_policy_matches_spec_section_4_on_random_worlds(app, plan):
    db.session.rollback()
    assert db.session.scalar(select(func.count(Organization.id))) == 0, "an earlier example committed"
    try:
        problems = check(build(plan))
        assert not problems, f"{len(problems)} disagreements with spec section 4:\n" + "\n".join(problems[:40])
    finally:
        db.session.rollback()


def test_reference_chains_follow_the_channel():
    """The generator's own helper: chains start at the producer and follow edges."""
    partners = (
        PartnerPlan("D1", "distributor", (PRODUCER,), False),
        PartnerPlan("R1", "reseller", ("D1",), True),
        PartnerPlan("R2", "reseller", (PRODUCER, "D1"), False),
        PartnerPlan("S1", "service_provider", (), False),
    )
    assert sorted(chains_of(partners)) == [("D1",), ("D1", "R1"), ("D1", "R2"), ("R2",)]


@pytest.mark.parametrize(("key", "expected"), [("C1", ["C1"]), ("C1.2.1", ["C1.2.1", "C1.2", "C1"])])
def test_reference_ancestors(key, expected):
    model = Model({}, {"C1": None, "C1.2": "C1", "C1.2.1": "C1.2"}, [])
    assert model.ancestors(key) == expected
