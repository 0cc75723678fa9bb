"""Activate, return, rehost and usage: seat limits, dates, idempotency, audit."""

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Activation, AuditEvent
from portal.services.activations import activate, record_usage, rehost, return_activation, seats_used
from portal.services.errors import Conflict, NotAllowed, ServiceError
from tests.factories import write_transaction


@pytest.fixture
def world(make):
    customer = make.customer("Contoso")
    reseller = make.partner("reseller", "BlueSky")
    other_reseller = make.partner("reseller", "RedRock")
    entitlement = make.entitlement(customer, [reseller], seats=10)
    member = make.actor(customer, "member")
    return {"customer": customer, "reseller": reseller, "other": other_reseller,
            "entitlement": entitlement, "line": entitlement.lines[0], "member": member}


def test_activation_counts_seats_and_audits(world):
    write_transaction()
    activation, created = activate(world["member"], world["line"], "host-a", seats=4, friendly_name="CAD 1")
    db.session.commit()
    assert created
    assert activation.active and activation.seats == 4
    assert activation.certificate and activation.certificate.count(".") == 2
    assert seats_used(world["line"].id) == 4
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "activation.create"))
    assert event.user_id == world["member"].user.id
    assert event.subject_id == str(activation.id)
    assert event.on_behalf_of_org_id is None  # the customer acted for itself
    assert event.details["host_id"] == "host-a"


def test_same_host_twice_returns_the_existing_activation(world):
    write_transaction()
    first, created_first = activate(world["member"], world["line"], "host-a", seats=2)
    db.session.commit()
    write_transaction()
    again, created_again = activate(world["member"], world["line"], "host-a", seats=2)
    db.session.commit()
    assert created_first and not created_again
    assert again.id == first.id
    assert seats_used(world["line"].id) == 2
    assert db.session.scalar(select(func.count(Activation.id))) == 1


def test_never_more_seats_than_the_line_has(world):
    write_transaction()
    activate(world["member"], world["line"], "host-a", seats=8)
    db.session.commit()
    write_transaction()
    with pytest.raises(Conflict, match="Only 2 of 10 seats are free"):
        activate(world["member"], world["line"], "host-b", seats=3)
    db.session.rollback()
    write_transaction()
    activate(world["member"], world["line"], "host-b", seats=2)
    db.session.commit()
    assert seats_used(world["line"].id) == 10


@pytest.mark.parametrize("host_id", ["", "has space", "x" * 129, "semi;colon", "ümlaut"])
def test_bad_host_ids_are_refused(world, host_id):
    write_transaction()
    with pytest.raises(ServiceError) as error:
        activate(world["member"], world["line"], host_id)
    assert error.value.field == "host_id"
    db.session.rollback()
    assert db.session.scalar(select(func.count(Activation.id))) == 0


def test_host_id_edge_cases_accepted(world):
    write_transaction()
    activation, _ = activate(world["member"], world["line"], "a" * 128)
    other, _ = activate(world["member"], world["line"], "AA:bb.cc_dd-01")
    db.session.commit()
    assert len(activation.host_id) == 128 and other.host_id == "AA:bb.cc_dd-01"


def test_subscription_outside_its_dates_cannot_activate(make):
    customer = make.customer()
    past = make.entitlement(customer, model="subscription", start=date.today() - timedelta(days=400),
                            end=date.today() - timedelta(days=35))
    future = make.entitlement(customer, model="subscription", start=date.today() + timedelta(days=5),
                              end=date.today() + timedelta(days=370))
    actor = make.actor(customer, "member")
    write_transaction()
    with pytest.raises(ServiceError, match="ended"):
        activate(actor, past.lines[0], "host-a")
    with pytest.raises(ServiceError, match="starts"):
        activate(actor, future.lines[0], "host-a")
    db.session.rollback()
    assert db.session.scalar(select(func.count(Activation.id))) == 0


def test_return_frees_seats_and_rehost_moves_them(world):
    write_transaction()
    activation, _ = activate(world["member"], world["line"], "host-a", seats=6)
    db.session.commit()
    write_transaction()
    moved = rehost(world["member"], activation, "host-b")
    db.session.commit()
    assert moved.host_id == "host-b" and moved.seats == 6 and moved.active
    db.session.refresh(activation)
    assert not activation.active and activation.returned_at is not None
    assert seats_used(world["line"].id) == 6
    write_transaction()
    return_activation(world["member"], moved)
    db.session.commit()
    assert seats_used(world["line"].id) == 0
    actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-3:] == ["activation.create", "activation.rehost", "activation.return"]
    write_transaction()
    with pytest.raises(Conflict):
        return_activation(world["member"], moved)
    db.session.rollback()


def test_rehost_to_an_active_host_is_refused_atomically(world):
    write_transaction()
    a, _ = activate(world["member"], world["line"], "host-a", seats=2)
    activate(world["member"], world["line"], "host-b", seats=2)
    db.session.commit()
    write_transaction()
    with pytest.raises(Conflict):
        rehost(world["member"], a, "host-b")
    db.session.rollback()
    db.session.refresh(a)
    assert a.active  # nothing half-written
    assert seats_used(world["line"].id) == 4


def test_partner_activation_is_recorded_on_behalf_of_the_customer(world, make):
    reseller_actor = make.actor(world["reseller"])
    write_transaction()
    activation, _ = activate(reseller_actor, world["line"], "host-r")
    db.session.commit()
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "activation.create"))
    assert event.org_id == world["reseller"].id
    assert event.on_behalf_of_org_id == world["customer"].id
    assert event.describe() == "Test User of BlueSky on behalf of Contoso"
    assert activation.activated_by_org_id == world["reseller"].id


def test_partner_without_attachment_cannot_activate(world, make):
    other = make.actor(world["other"])
    write_transaction()
    with pytest.raises(NotAllowed):
        activate(other, world["line"], "host-x")
    db.session.rollback()


def test_view_only_attachment_cannot_activate(world, make):
    provider = make.partner("service_provider", "Initech")
    make.attach(world["entitlement"], provider, permissions=["view"])
    actor = make.actor(provider)
    write_transaction()
    with pytest.raises(NotAllowed):
        activate(actor, world["line"], "host-x")
    db.session.rollback()


def test_stock_cannot_be_activated_until_assigned(make):
    reseller = make.partner("reseller", "Stocky", stocking=True)
    stock = make.entitlement(reseller, [reseller], fulfilment="stocking")
    actor = make.actor(reseller)
    write_transaction()
    with pytest.raises(NotAllowed):
        activate(actor, stock.lines[0], "host-x")
    db.session.rollback()


def test_sqlite_refuses_seat_changes_outside_a_write_transaction(world, app):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("the guard is about SQLite's deferred transactions")
    db.session.commit()
    db.session.scalar(select(1))  # a deferred transaction is now open
    with pytest.raises(RuntimeError, match="begin_write"):
        activate(world["member"], world["line"], "host-a")
    db.session.rollback()


def test_usage_is_recorded_and_overage_allowed(make):
    customer = make.customer()
    entitlement = make.entitlement(customer, model="usage", seats=100)
    actor = make.actor(customer, "member")
    from portal.services.activations import usage_in_period

    record_usage(actor, entitlement.lines[0], 80)
    record_usage(actor, entitlement.lines[0], 50)
    db.session.commit()
    assert usage_in_period(entitlement.lines[0]) == 130  # 30 over, shown, not blocked
    write_transaction()
    with pytest.raises(ServiceError, match="not activated"):
        activate(actor, entitlement.lines[0], "host-a")
    db.session.rollback()
    with pytest.raises(ServiceError):
        record_usage(actor, entitlement.lines[0], 0)


def test_member_of_another_customer_cannot_activate(world, make):
    stranger = make.actor(make.customer("Fabrikam"), "admin")
    write_transaction()
    with pytest.raises(NotAllowed):
        activate(stranger, world["line"], "host-a")
    db.session.rollback()
