"""Activate, return and rehost seats; record usage. Seats are never oversubscribed."""

from __future__ import annotations

import re
from datetime import date

from sqlalchemy import case, func, select
from sqlalchemy.orm import joinedload

from portal.database import holds_write_lock
from portal.extensions import db
from portal.models import Activation, Entitlement, EntitlementLine, UsageRecord, utcnow
from portal.policy import Actor, can
from portal.services.audit import record
from portal.services.errors import Conflict, NotAllowed, ServiceError

HOST_ID = re.compile(r"[A-Za-z0-9:._-]{1,128}")


def clean_host_id(host_id: str | None) -> str:
    host_id = (host_id or "").strip()
    if not HOST_ID.fullmatch(host_id):
        raise ServiceError(
            "A host id is 1 to 128 characters: letters, digits and : . _ -", field="host_id"
        )
    return host_id


def seats_used(line_id: int) -> int:
    return db.session.scalar(
        select(func.coalesce(func.sum(Activation.seats), 0)).where(
            Activation.line_id == line_id, Activation.active.is_(True)
        )
    )


def _lock_line(line: EntitlementLine) -> EntitlementLine:
    """Serialize seat changes on one line across processes; returns the line, read again.

    PostgreSQL: ``SELECT ... FOR UPDATE`` on the line row. SQLite: the transaction must
    have begun IMMEDIATE (``begin_write``), which already holds the database's write lock.
    The same statement (re)loads the line's quantity and dates as they are under the lock, with
    its entitlement and owner, which the policy check and the audit event need next.
    """
    if not holds_write_lock():
        raise RuntimeError("seat changes on SQLite need begin_write() before the transaction's first query")
    return db.session.scalars(
        select(EntitlementLine)
        .options(joinedload(EntitlementLine.entitlement, innerjoin=True).joinedload(Entitlement.owner, innerjoin=True))
        .where(EntitlementLine.id == line.id)
        .with_for_update(of=EntitlementLine)
        .execution_options(populate_existing=True)
    ).one()


def _check_line_usable(line: EntitlementLine, today: date) -> None:
    if line.license_model == "usage":
        raise ServiceError("Pay-per-use lines are not activated; usage is recorded against them.")
    if line.entitlement.status != "active":
        raise ServiceError(f"The entitlement is {line.entitlement.status}.")
    if line.start_date and today < line.start_date:
        raise ServiceError(f"This line starts on {line.start_date.isoformat()}.")
    if line.license_model == "subscription" and line.end_date and today > line.end_date:
        raise ServiceError(f"This subscription ended on {line.end_date.isoformat()}.")


def activate(
    actor: Actor,
    line: EntitlementLine,
    host_id: str,
    *,
    seats: int = 1,
    friendly_name: str | None = None,
    today: date | None = None,
) -> tuple[Activation, bool]:
    """Bind seats of a line to a host; returns (activation, created).

    Activating the same host on the same line again returns the existing activation.
    """
    # Locked first: the policy then reads the line, entitlement and owner of that one statement
    # (nothing is written before the checks; a refusal rolls the lock back with the rest).
    line = _lock_line(line)
    if not can(actor, "activate", line):
        raise NotAllowed("You may not activate seats of this entitlement.")
    host_id = clean_host_id(host_id)
    if not isinstance(seats, int) or seats < 1:
        raise ServiceError("Activate at least one seat.", field="seats")
    friendly_name = (friendly_name or "").strip() or None
    if friendly_name and len(friendly_name) > 200:
        raise ServiceError("Keep the name under 200 characters.", field="friendly_name")
    today = today or utcnow().date()
    _check_line_usable(line, today)
    # Seats in use and this host's live activation, in one statement after the lock (in the
    # locking statement itself they would come from its snapshot, taken before the wait).
    used, existing_id = db.session.execute(
        select(func.coalesce(func.sum(Activation.seats), 0),
               func.max(case((Activation.host_id == host_id, Activation.id))))
        .where(Activation.line_id == line.id, Activation.active.is_(True))
    ).one()
    if existing_id is not None:
        return db.session.get(Activation, existing_id), False
    free = line.quantity - used
    if seats > free:
        raise Conflict(f"Only {max(free, 0)} of {line.quantity} seats are free.", field="seats")
    activation = Activation(
        line=line,
        host_id=host_id,
        friendly_name=friendly_name,
        seats=seats,
        active=True,
        activated_at=utcnow(),
        activated_by_id=actor.user.id if actor.user else None,
        activated_by_org_id=actor.org.id,
    )
    db.session.add(activation)
    db.session.flush()
    owner = line.entitlement.owner
    record(actor, "activation.create", activation, subject_org=owner, on_behalf_of=actor.on_behalf_of(owner), details={
        "code": line.entitlement.code, "line_id": line.id, "host_id": host_id, "seats": seats,
    })
    return activation, True


def return_activation(actor: Actor, activation: Activation) -> Activation:
    """Deactivate: the seats are free again, whatever the entitlement's status (a suspended or
    returned entitlement must not keep seats bound)."""
    _check_may(actor, "return", activation)
    _lock_line(activation.line)
    db.session.refresh(activation)
    if not activation.active:  # returned by someone else meanwhile
        raise Conflict("This activation was already returned.")
    _mark_returned(actor, activation)
    owner = activation.line.entitlement.owner
    record(actor, "activation.return", activation, subject_org=owner, on_behalf_of=actor.on_behalf_of(owner), details={
        "code": activation.line.entitlement.code, "host_id": activation.host_id, "seats": activation.seats,
    })
    return activation


def _check_may(actor: Actor, action: str, activation: Activation) -> None:
    """"Already returned" is a state, answered as such to whoever sees the activation."""
    if not activation.active and can(actor, "view", activation):
        raise Conflict("This activation was already returned.")
    if not can(actor, action, activation):
        raise NotAllowed(f"You may not {action} this activation.")


def _mark_returned(actor: Actor, activation: Activation) -> None:
    activation.active = False
    activation.returned_at = utcnow()
    activation.returned_by_id = actor.user.id if actor.user else None
    db.session.flush()


def rehost(
    actor: Actor, activation: Activation, new_host_id: str, *, friendly_name: str | None = None
) -> Activation:
    """Move an activation's seats to another host: return and activate in one transaction."""
    _check_may(actor, "rehost", activation)
    new_host_id = clean_host_id(new_host_id)
    if new_host_id == activation.host_id:
        raise ServiceError("Enter a different host id.", field="host_id")
    line = activation.line
    _check_line_usable(line, utcnow().date())
    _lock_line(line)
    db.session.refresh(activation)
    if not activation.active:
        raise Conflict("This activation was already returned.")
    _mark_returned(actor, activation)
    new, created = activate(
        actor, line, new_host_id, seats=activation.seats, friendly_name=friendly_name or activation.friendly_name
    )
    if not created:
        raise Conflict(f"{new_host_id} is already activated on this line.", field="host_id")
    owner = line.entitlement.owner
    record(actor, "activation.rehost", new, subject_org=owner, on_behalf_of=actor.on_behalf_of(owner), details={
        "code": line.entitlement.code, "from_host": activation.host_id, "to_host": new_host_id,
        "returned_activation_id": activation.id,
    })
    return new


def record_usage(
    actor: Actor, line: EntitlementLine, units: int, *, used_on: date | None = None, note: str | None = None
) -> UsageRecord:
    """Record units against a pay-per-use line; overage is allowed and shown."""
    if not can(actor, "record_usage", line):
        raise NotAllowed("You may not record usage on this entitlement.")
    if line.license_model != "usage":
        raise ServiceError("Usage is recorded on pay-per-use lines only.")
    if not isinstance(units, int) or units < 1:
        raise ServiceError("Record at least one unit.", field="units")
    usage = UsageRecord(
        line=line, units=units, used_on=used_on or utcnow().date(), note=(note or "").strip() or None,
        recorded_by_id=actor.user.id if actor.user else None,
    )
    db.session.add(usage)
    db.session.flush()
    owner = line.entitlement.owner
    record(actor, "usage.record", usage, subject_org=owner, on_behalf_of=actor.on_behalf_of(owner),
           details={"code": line.entitlement.code, "line_id": line.id, "units": units})
    return usage


def period_bounds(line: EntitlementLine, today: date) -> tuple[date, date]:
    """The current allowance period of a usage line (calendar month or year)."""
    if line.usage_period == "year":
        return date(today.year, 1, 1), date(today.year, 12, 31)
    start = today.replace(day=1)
    next_month = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return start, date.fromordinal(next_month.toordinal() - 1)


def usage_in_period(line: EntitlementLine, today: date | None = None) -> int:
    start, end = period_bounds(line, today or utcnow().date())
    return db.session.scalar(
        select(func.coalesce(func.sum(UsageRecord.units), 0)).where(
            UsageRecord.line_id == line.id, UsageRecord.used_on >= start, UsageRecord.used_on <= end
        )
    )
