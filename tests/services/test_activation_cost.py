"""One activation costs a fixed, small number of SQL statements (the bench's activation race
depends on it: the line stays locked from the first of them to the commit), and the
certificate it issues is the one the .lic download serves."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Activation, AuditEvent, EntitlementLine
from portal.services.activations import activate
from portal.services.licenses import issue_certificate
from tests.factories import write_transaction

# The line locked with its entitlement and owner in one statement, the seats used and an
# existing activation of the host in one more, then the INSERTs of the activation and its
# audit event, and one UPDATE each of the seats activated in the two read models: the channel's
# monthly sums of the partners of the line's sales chain (``portal.models.channel``) and the
# sellers' figures (``partner_sales``). The certificate is not written: it is signed when downloaded.
ACTIVATE_STATEMENTS = 6


@pytest.fixture
def world(make):
    customer = make.customer("Contoso")
    site = make.customer("Contoso Site", parent=customer)
    reseller = make.partner("reseller", "BlueSky")
    entitlement = make.entitlement(site, [reseller], seats=5)
    decoy = make.entitlement(make.customer("Decoy"), [reseller], seats=5)
    return {"customer": customer, "site": site, "reseller": reseller, "line_id": entitlement.lines[0].id,
            "decoy_line_id": decoy.lines[0].id}


def _signed_in(make, org):
    """An actor as a request holds it: loaded once, then kept out of the session's expiry."""
    actor = make.actor(org, "admin")
    db.session.refresh(actor.org)
    db.session.refresh(actor.user)
    db.session.expunge_all()
    return actor


@pytest.mark.parametrize("who", ["customer", "reseller"])
def test_one_activation_runs_a_fixed_number_of_statements(make, count_queries, world, who):
    actor = _signed_in(make, world[who])
    extra = 1 if who == "reseller" else 0  # a partner's own attachment, read by the policy
    for number in range(3):
        db.session.expunge_all()  # as a fresh request: nothing loaded yet
        write_transaction()
        line = db.session.get(EntitlementLine, world["line_id"])
        with count_queries() as counter:
            activation, created = activate(actor, line, f"host-{number}")
            db.session.commit()
        assert created
        assert counter.count == ACTIVATE_STATEMENTS + extra, "\n".join(counter.statements)
        updates = [s for s in counter.statements if s.lstrip().upper().startswith("UPDATE")]
        assert len(updates) == 2, updates
        assert {u.lstrip().split()[1] for u in updates} == {"channel_month", "partner_sales"}, updates
    assert db.session.scalar(select(AuditEvent.subject_id).where(AuditEvent.action == "activation.create")
                             .order_by(AuditEvent.id.desc()).limit(1)) == str(activation.id)


def test_repeat_of_a_host_returns_its_activation_without_writing(make, count_queries, world):
    actor = _signed_in(make, world["customer"])
    write_transaction()
    first, _ = activate(actor, db.session.get(EntitlementLine, world["line_id"]), "host-a")
    db.session.commit()
    first_id = first.id
    db.session.expunge_all()
    write_transaction()
    line = db.session.get(EntitlementLine, world["line_id"])
    with count_queries() as counter:
        again, created = activate(actor, line, "host-a")
        db.session.commit()
    assert not created and again.id == first_id
    assert not any(s.lstrip().upper().startswith(("INSERT", "UPDATE")) for s in counter.statements)


def test_the_certificate_is_signed_on_demand_and_always_the_same(make, world):
    actor = _signed_in(make, world["customer"])
    write_transaction()
    activation, _ = activate(actor, db.session.get(EntitlementLine, world["line_id"]), "host-a", seats=2)
    db.session.commit()
    first = activation.certificate
    db.session.expunge_all()
    stored = db.session.get(Activation, activation.id)
    assert first.count(".") == 2
    assert stored.certificate == first  # deterministic: Ed25519 over the same claims
    assert first == issue_certificate(stored, now=stored.activated_at)
