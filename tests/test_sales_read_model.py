"""The ``partner_sales`` read model (``portal.models.sales``) equals what the tables say after
every operation, and the partner report read from it equals the report computed live.

Hypothesis draws a few orders and activations, then a sequence of operations on a small channel, and applies
each through the real services: orders entered (drop-ship or into stock, with perpetual, subscription and pay-per-use
lines, bought in any of the last 15 months or next month, subscriptions ending around the
report's 90 days), attachments granted and revoked, stock assigned, entitlements transferred
and moved within a hierarchy, suspended and returned, corrected (a line's quantity and end),
seats activated, returned and rehosted, plus changes no service makes but the ORM allows (view
rights taken away, an attachment deleted, a purchase date changed, an activation's seats
changed). After EVERY operation, inside the same transaction (nothing is committed; each example
rolls back):

- the read model equals what ``rebuild_sales`` derives from the tables (in a savepoint);
- ``build_report`` (from the read model) equals ``live_report`` (tests/partner/report_oracle.py,
  the live computation the page made before) for every partner and for partners working for one
  customer, per month (and at the end per quarter too).
"""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from portal.blueprints.customer import queries as q
from portal.blueprints.partner.reports import build_report
from portal.database import begin_write
from portal.extensions import db
from portal.models import Activation, Attachment, Entitlement, Organization, Product
from portal.models.sales import PartnerSale, PartnerSaleEnd, rebuild_sales
from portal.policy import Actor, system_actor
from portal.services.activations import activate, rehost, return_activation
from portal.services.entitlements import (
    LineSpec,
    assign_stock,
    attach_partner,
    correct_entitlement,
    create_entitlement,
    move_within_tree,
    revoke_attachment,
    set_entitlement_status,
    transfer_entitlement,
)
from portal.services.errors import ServiceError
from portal.services.orgs import add_channel_relationship, bootstrap_producer, create_organization
from tests.factories import write_transaction
from tests.partner.report_oracle import live_report

CHAINS = (("R1",), ("R2",), ("D", "R1"), ("D", "R2"), ("D",), ())
CUSTOMERS = ("C1", "C1.1", "C1.2", "C2", "C3")
PARTNERS = ("D", "R1", "R2", "S")
# (partner, customer it works for): the report narrowed to one customer.
WORKING_FOR = (("R1", "C1"), ("D", "C1.1"), ("R2", "C2"))
ENDS = (-5, 0, 45, 90, 91, 400)  # a subscription's end, in days from today

lines = st.lists(st.tuples(st.sampled_from(("perpetual", "subscription", "usage")), st.integers(1, 20),
                           st.sampled_from(ENDS)), min_size=1, max_size=3)
months = st.integers(-1, 14)  # bought that many months ago (-1: next month)
index = st.integers(0, 40)

activating = st.tuples(st.just("activate"), index, st.integers(1, 4))
orders = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(CUSTOMERS), st.sampled_from(CHAINS), months, lines),
    st.tuples(st.just("stock"), st.sampled_from((("R1",), ("D", "R1"))), months, lines),
)
operations = st.lists(
    st.one_of(
        orders,
        st.tuples(st.just("attach"), st.lists(index, min_size=1, max_size=3), st.sampled_from(PARTNERS)),
        st.tuples(st.just("revoke"), index),
        st.tuples(st.just("hide"), index),
        st.tuples(st.just("delete"), index),
        st.tuples(st.just("assign"), index, st.sampled_from(CUSTOMERS)),
        st.tuples(st.just("transfer"), index, st.sampled_from(CUSTOMERS)),
        st.tuples(st.just("move"), index, st.sampled_from(("C1", "C1.1", "C1.2"))),
        st.tuples(st.just("status"), index, st.sampled_from(("active", "suspended", "returned"))),
        st.tuples(st.just("correct"), index, st.integers(1, 30), st.sampled_from(ENDS)),
        st.tuples(st.just("purchase"), index, months),
        activating,
        st.tuples(st.just("return"), index),
        st.tuples(st.just("rehost"), index),
        st.tuples(st.just("seats"), index, st.integers(1, 3)),
    ),
    min_size=1,
    max_size=12,
)


def _world() -> dict[str, Organization]:
    producer = bootstrap_producer("Acme Software")
    system = system_actor(producer)
    orgs = {"P": producer}
    for key in ("C1", "C2", "C3"):
        orgs[key] = create_organization(system, kind="customer", name=f"Customer {key}")
    for key in ("C1.1", "C1.2"):
        orgs[key] = create_organization(system, kind="customer", name=f"Customer {key}", parent=orgs["C1"])
    orgs["D"] = create_organization(system, kind="distributor", name="Dist")
    orgs["R1"] = create_organization(system, kind="reseller", name="Reseller One", stocking=True)
    orgs["R2"] = create_organization(system, kind="reseller", name="reseller two")
    orgs["S"] = create_organization(system, kind="service_provider", name="Services")
    for supplier, buyer in (("P", "D"), ("D", "R1"), ("D", "R2"), ("P", "R1"), ("P", "R2")):
        add_channel_relationship(system, orgs[supplier], orgs[buyer])
    return orgs


def _months_ago(n: int) -> date:
    today = q.today()
    i = today.year * 12 + today.month - 1 - n
    return date(i // 12, i % 12 + 1, min(today.day, 28))


def _specs(product: Product, drawn) -> list[LineSpec]:
    today = q.today()
    specs = []
    for model, quantity, end in drawn:
        if model == "subscription":
            ends = today + timedelta(days=end)
            specs.append(LineSpec(product, model, quantity, start_date=ends - timedelta(days=365), end_date=ends))
        elif model == "usage":
            specs.append(LineSpec(product, model, quantity * 100, usage_period="month"))
        else:
            specs.append(LineSpec(product, model, quantity, maintenance_end=today + timedelta(days=365)))
    return specs


def _pick(items, i):
    return items[i % len(items)] if items else None


def _apply(orgs, product, operation) -> None:
    system = system_actor(orgs["P"])
    entitlements = db.session.scalars(select(Entitlement).order_by(Entitlement.id)).all()
    attachments = db.session.scalars(select(Attachment).order_by(Attachment.id)).all()
    live = [a for a in attachments if a.active]
    activations = db.session.scalars(select(Activation).where(Activation.active.is_(True))
                                     .order_by(Activation.id)).all()
    kind, *args = operation
    chosen = _pick(entitlements, args[0]) if args and isinstance(args[0], int) else None
    applied = True
    try:
        if kind == "create":
            owner, chain, months_ago, drawn = args
            create_entitlement(system, owner=orgs[owner], lines=_specs(product, drawn),
                               sales_chain=[orgs[k] for k in chain], purchase_date=_months_ago(months_ago))
        elif kind == "stock":
            chain, months_ago, drawn = args
            create_entitlement(system, owner=orgs[chain[-1]], lines=_specs(product, drawn),
                               sales_chain=[orgs[k] for k in chain], fulfilment="stocking",
                               purchase_date=_months_ago(months_ago))
        elif kind == "attach" and entitlements:
            attach_partner(system, [_pick(entitlements, i) for i in args[0]], orgs[args[1]], permissions=("view",))
        elif kind == "revoke" and live:
            revoke_attachment(system, _pick(live, args[0]))
        elif kind == "hide" and live:  # no service takes view rights away; the ORM may
            attachment = _pick(live, args[0])
            attachment.can_view = attachment.can_download = attachment.can_activate = False
        elif kind == "delete" and attachments:  # nor deletes an attachment
            db.session.delete(_pick(attachments, args[0]))
        elif kind == "assign" and chosen is not None:
            assign_stock(Actor(user=None, org=chosen.owner, role="admin"), chosen, orgs[args[1]])
        elif kind == "transfer" and chosen is not None:
            transfer_entitlement(system, chosen, orgs[args[1]])
        elif kind == "move" and chosen is not None:
            move_within_tree(system, chosen, orgs[args[1]])
        elif kind == "status" and chosen is not None:
            set_entitlement_status(system, chosen, args[1])
        elif kind == "correct" and chosen is not None:
            line = chosen.lines[0]
            wanted = {"quantity": args[1]}
            if line.license_model == "subscription":
                wanted["end_date"] = q.today() + timedelta(days=args[2])
            correct_entitlement(system, chosen, order_ref=chosen.order_ref, notes=chosen.notes,
                                lines={line.id: wanted})
        elif kind == "purchase" and chosen is not None:  # no service changes it; the ORM may
            chosen.purchase_date = _months_ago(args[1])
        elif kind == "activate" and (seated := [line for e in entitlements for line in e.lines
                                                 if e.owner.kind == "customer" and e.status == "active"
                                                 and line.license_model != "usage"]):
            activate(system, _pick(seated, args[0]), f"host-{len(activations)}", seats=args[1])
        elif kind == "return" and activations:
            return_activation(system, _pick(activations, args[0]))
        elif kind == "rehost" and activations:
            activation = _pick(activations, args[0])
            rehost(system, activation, f"{activation.host_id}-moved")
        elif kind == "seats" and activations:  # nor an activation's seats
            _pick(activations, args[0]).seats = args[1]
        else:
            applied = False
    except ServiceError:  # refused (not allowed, no free seats, ...): nothing changed
        event(f"{kind}: refused")
    else:
        event(f"{kind}: {'applied' if applied else 'nothing to apply'}")
    db.session.flush()


def _rows() -> tuple[set, set]:
    sale, end = PartnerSale.__table__, PartnerSaleEnd.__table__
    return set(db.session.execute(select(sale)).all()), set(db.session.execute(select(end)).all())


def _check(orgs, step: str, kinds=("month",)) -> None:
    db.session.expire_all()
    kept = _rows()
    savepoint = db.session.begin_nested()
    rebuild_sales(db.session.connection())
    derived = _rows()
    savepoint.rollback()
    assert kept == derived, f"after {step}"
    actors = [Actor(user=None, org=orgs[key], role="admin") for key in PARTNERS]
    actors += [Actor(user=None, org=orgs[partner], role="admin", customer_id=orgs[customer].id)
               for partner, customer in WORKING_FOR]
    for actor in actors:
        for kind in kinds:
            assert build_report(actor, kind) == live_report(actor, kind), f"{actor.org.name} {kind} after {step}"


def _new_example():
    db.session.rollback()
    begin_write()  # SQLite: seat changes need the write lock from the transaction's start
    assert db.session.scalar(select(func.count(Organization.id))) == 0, "an earlier example committed"
    orgs = _world()
    product = Product(sku="SKU-1", name="Acme Studio")
    db.session.add(product)
    db.session.flush()
    return orgs, product


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(orders, min_size=2, max_size=5), seats=st.lists(activating, max_size=3), steps=operations)
def test_read_model_and_report_equal_the_live_computation_after_every_operation(app, first, seats, steps):
    try:
        orgs, product = _new_example()
        for operation in first + seats:
            _apply(orgs, product, operation)
        for number, operation in enumerate(steps):
            _apply(orgs, product, operation)
            _check(orgs, f"step {number}: {operation}")
        _check(orgs, "the last step, per quarter", kinds=("quarter",))
    finally:
        db.session.rollback()


def test_an_activation_and_its_return_are_one_update_of_the_read_model(make, count_queries):
    """The activation race stays what it was, plus one UPDATE of the sellers' rows (no derivation)."""
    distributor = make.partner("distributor", "Dist")
    reseller = make.partner("reseller", "Resell", supplied_by=distributor)
    decoy = make.entitlement(make.customer(), [distributor, reseller], seats=50)
    entitlement = make.entitlement(make.customer(), [distributor, reseller], seats=10)
    system = make.system

    def figures(of):
        return set(db.session.execute(select(PartnerSale.partner_id, PartnerSale.seats, PartnerSale.activated)
                                      .where(PartnerSale.entitlement_id == of.id)).all())

    assert figures(entitlement) == {(distributor.id, 10, 0), (reseller.id, 10, 0)}
    for action, expected in (("activate", 3), ("return", 0)):
        write_transaction()
        with count_queries() as counter:
            if action == "activate":
                activation, _ = activate(system, entitlement.lines[0], "host-a", seats=3)
            else:
                return_activation(system, activation)
        touching = [s for s in counter.statements if "partner_sales" in s]
        assert len(touching) == 1 and touching[0].lstrip().upper().startswith("UPDATE"), touching
        db.session.commit()
        assert figures(entitlement) == {(distributor.id, 10, expected), (reseller.id, 10, expected)}
        assert figures(decoy) == {(distributor.id, 50, 0), (reseller.id, 50, 0)}


def test_the_report_follows_a_change_in_the_same_transaction(make):
    """What the report says follows the change before it is even committed, and a rollback undoes it."""
    reseller = make.partner("reseller", "Resell")
    customer = make.customer("Contoso")
    kept = make.entitlement(customer, [reseller], seats=4)
    gone = make.entitlement(customer, [reseller], seats=6)
    actor = Actor(user=None, org=reseller, role="admin")
    assert build_report(actor, "month")["total"].seats == 10
    revoke_attachment(make.system, gone.attachments[0])
    assert build_report(actor, "month")["total"].seats == 4
    assert build_report(actor, "month") == live_report(actor, "month")
    db.session.rollback()
    assert build_report(actor, "month")["total"].seats == 10
    assert kept.id in db.session.scalars(select(PartnerSale.entitlement_id)).all()


def test_rebuild_derives_the_rows_the_flushes_kept(make):
    """The seed's way (``rebuild_sales`` after rows written without the ORM) agrees with the hooks'."""
    distributor = make.partner("distributor", "Dist")
    reseller = make.partner("reseller", "Resell", supplied_by=distributor, stocking=True)
    customer = make.customer("Contoso")
    make.entitlement(customer, [distributor, reseller], seats=4, model="subscription",
                     end=date.today() + timedelta(days=30))
    make.entitlement(customer, [distributor], seats=2)
    make.entitlement(reseller, [distributor, reseller], fulfilment="stocking")  # stock: the distributor's sale only
    kept = _rows()
    assert len(kept[0]) == 4 and len(kept[1]) == 2
    assert rebuild_sales(db.session.connection()) == 4
    assert _rows() == kept
    db.session.rollback()
