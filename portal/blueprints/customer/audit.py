"""``/customer/audit``: what happened to the customer's entitlements and organizations, who did
it, and for whom: "Ian Initech of Initech Services on behalf of Contoso Germany" when a partner
acted for the customer. The events come from the policy (``visible_audit_events``: a customer
admin sees those on its hierarchy's objects); members have no audit trail (403).

Filters (action, who, from, to), sort and page are in the URL; the CSV holds every event the
filters select, in the same order.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple

from flask import Response, abort, request
from sqlalchemy import Select, or_, select

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer import bp
from portal.exchange import FORMULA_START
from portal.extensions import db
from portal.models import AuditEvent, Organization, User
from portal.models.audit import describe_actor
from portal.paging import StatementPage, count_of, paged, statement_page
from portal.ui import Column, Filter, ListState, Table, parse_list_args
from portal.web import query_text, render

ACTIONS = [
    ("activation.create", "Seats activated"),
    ("activation.return", "Seats returned"),
    ("activation.rehost", "Seats moved to another host"),
    ("usage.record", "Usage recorded"),
    ("attachment.grant", "Partner attached"),
    ("attachment.update", "Partner's permissions changed"),
    ("attachment.revoke", "Partner's access revoked"),
    ("entitlement.create", "Entitlement entered"),
    ("entitlement.assign", "Entitlement handed over from stock"),
    ("entitlement.move", "Entitlement moved within the hierarchy"),
    ("entitlement.transfer", "Entitlement transferred"),
    ("entitlement.status", "Entitlement status changed"),
    ("organization.create", "Organization added"),
    ("organization.update", "Organization renamed or contacts changed"),
    ("organization.move", "Organization moved"),
    ("organization.delete", "Organization deleted"),
    ("invitation.create", "Invitation sent"),
    ("invitation.accept", "Invitation accepted"),
    ("membership.set", "Role given"),
    ("membership.remove", "Member removed"),
    ("request.create", "Request made"),
    ("request.approved", "Request approved"),
    ("request.rejected", "Request rejected"),
    ("request.withdraw", "Request withdrawn"),
    ("notification.read", "Notice read"),
    ("notification.read_all", "All notices read"),
]
ACTION_LABELS = dict(ACTIONS)
# The details worth a glance, in this order ("code: ENT-… · host: munich-01 · seats: 2").
DETAIL_KEYS = ("code", "codes", "host_id", "host", "from_host", "to_host", "seats", "quantity", "partner",
               "relation", "permissions", "kind", "name", "email", "user", "role", "from", "to", "title", "count",
               "note", "reason", "organization")
CSV_CHUNK = 500


def action_label(action: str) -> str:
    return ACTION_LABELS.get(action, action.replace(".", " ").replace("_", " ").capitalize())


def summary(event: AuditEvent) -> str:
    """The event's details as one short line."""
    details = event.details if isinstance(event.details, dict) else {}
    if event.action == "organization.update":  # {field: [before, after]}
        changes = [(k, v) for k, v in details.items() if isinstance(v, list) and len(v) == 2]
        text = " · ".join(f"{k.replace('_', ' ')}: {v[0] or '—'} → {v[1] or '—'}" for k, v in changes)
        return text if len(text) <= 240 else text[:239] + "…"
    parts = []
    for key in DETAIL_KEYS:
        value = details.get(key)
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, dict):
            continue
        parts.append(f"{key.replace('_', ' ')}: {value}")
    text = " · ".join(parts)
    return text if len(text) <= 240 else text[:239] + "…"


def _day(name: str) -> date | None:
    raw = query_text(name, max_length=20)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        abort(400, f"Enter the “{name}” date as YYYY-MM-DD.")


def audit_state(args, endpoint: str = "customer.audit") -> tuple[ListState, list[Filter]]:
    """An audit list's search, action filter, dates, sort and page (the partner's trail too)."""
    filters = [Filter("action", "Action", ACTIONS, all_label="All actions")]
    state = parse_list_args(args, endpoint=endpoint, sorts={"at", "action"}, default_sort="-at",
                            filters=filters)
    days = {name: _day(name) for name in ("from", "to")}
    return replace(state, filters={**state.filters, **{k: v.isoformat() for k, v in days.items() if v}}), filters


def _query(actor, state: ListState) -> Select:
    """``select(AuditEvent)``: the visible events the state selects, in its order (``event_rows``
    reads them with who did them)."""
    query = policy.visible_audit_events(actor)
    if state.q:
        # Events by a person or of an organization whose name matches (an IN of each, not an
        # outer join of every event with its user and organization).
        users = select(User.id).where(or_(User.display_name.icontains(state.q, autoescape=True),
                                          User.email.icontains(state.q.lower(), autoescape=True)))
        orgs = select(Organization.id).where(Organization.name.icontains(state.q, autoescape=True))
        query = query.where(or_(AuditEvent.user_id.in_(users), AuditEvent.org_id.in_(orgs)))
    if "action" in state.filters:
        query = query.where(AuditEvent.action == state.filters["action"])
    if "from" in state.filters:
        query = query.where(AuditEvent.at >= datetime.combine(date.fromisoformat(state.filters["from"]), time(),
                                                             tzinfo=UTC))
    if "to" in state.filters:
        end = date.fromisoformat(state.filters["to"]) + timedelta(days=1)
        query = query.where(AuditEvent.at < datetime.combine(end, time(), tzinfo=UTC))
    key = AuditEvent.at if state.sort == "at" else AuditEvent.action
    tie = AuditEvent.id.desc() if state.descending else AuditEvent.id
    return query.order_by(key.desc() if state.descending else key, tie)


class EventRow(NamedTuple):
    """One event as the trail's table and CSV show it: its columns and the names of who did it."""

    id: int
    at: datetime
    action: str
    details: dict
    subject_type: str
    subject_id: str
    org_id: int | None
    on_behalf_of_org_id: int | None
    request_id: str | None
    user_name: str | None
    user_email: str | None
    org_name: str | None
    behalf_name: str | None

    def describe(self) -> str:
        return describe_actor(self.user_name, self.org_name, self.behalf_name, self.org_id, self.on_behalf_of_org_id)


def _name(column, key):
    """``column`` of the row whose id is ``key`` (an event's column), looked up per event."""
    return select(column).where(column.class_.id == key).correlate(AuditEvent).scalar_subquery()


# The names of who did each event, as correlated look-ups: one primary-key probe per event read,
# whatever the planner believes of the trail's size (joined, a trail it believes small was
# merge-joined with a walk of every user: 9 ms for two events at 200k entitlements).
_ROW_COLUMNS = (
    AuditEvent.id, AuditEvent.at, AuditEvent.action, AuditEvent.details, AuditEvent.subject_type,
    AuditEvent.subject_id, AuditEvent.org_id, AuditEvent.on_behalf_of_org_id, AuditEvent.request_id,
    _name(User.display_name, AuditEvent.user_id), _name(User.email, AuditEvent.user_id),
    _name(Organization.name, AuditEvent.org_id), _name(Organization.name, AuditEvent.on_behalf_of_org_id),
)


def event_rows(query: Select) -> Select:
    """The events ``query`` (``_query``) selects, as the columns of ``EventRow``."""
    return query.with_only_columns(*_ROW_COLUMNS)


def event_page(query: Select, page: int) -> StatementPage:
    """One page of the events ``query`` selects, as ``EventRow``s, and how many it selects."""
    pagination = statement_page(paged(event_rows(query)), {}, page=page,
                                count=count_of(query.with_only_columns(AuditEvent.id)))
    pagination.items = [EventRow(*row) for row in pagination.items]
    return pagination


def csv_events(query: Select):
    """Every event ``query`` selects, in its order, as ``EventRow``s read a chunk at a time."""
    for row in db.session.execute(event_rows(query).execution_options(yield_per=CSV_CHUNK)):
        yield EventRow(*row)


def require_audit_access(actor) -> None:
    if not policy.can(actor, "view_audit"):
        abort(403, "Only your organization's admins see its audit trail.")


@bp.get("/audit")
def audit():
    """The audit trail of the hierarchy's entitlements and organizations, newest first."""
    actor = current_actor()
    require_audit_access(actor)
    state, filters = audit_state(request.args)
    pagination = event_page(_query(actor, state), state.page)
    table = Table(
        id="audit", pagination=pagination, state=state, noun="event", nouns="events",
        caption="What happened to your entitlements and organizations",
        columns=[Column("at", "When", sortable=True), Column("who", "Who"), Column("action", "Action", sortable=True),
                 Column("details", "Details")],
        csv_url=state.url("customer.audit_csv", page=1),
        empty_text="Changes to your entitlements and organizations appear here.",
    )
    return render("customer/audit.html", fragment="customer/_audit_table.html", audit=table, filters=filters,
                  summary=summary, action_label=action_label)


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_cells(event: EventRow) -> list[str]:
    """An event's row of the customer's and the partner's CSV."""
    return [_cell(v) for v in (
        event.at.isoformat(), event.describe(), event.user_email or "", event.org_name or "",
        event.behalf_name or "", event.action, f"{event.subject_type} {event.subject_id}", summary(event),
        event.request_id)]


@bp.get("/audit.csv")
def audit_csv():
    """Every event the filters select (all pages), in the list's order, as CSV."""
    actor = current_actor()
    require_audit_access(actor)
    state, _ = audit_state(request.args)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["time", "who", "user_email", "organization", "on_behalf_of", "action", "subject", "details",
                     "request_id"])
    for event in csv_events(_query(actor, state)):
        writer.writerow(csv_cells(event))
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="audit.csv"'
    return response
