"""The whole audit trail for producer staff: search by actor, organization, on-behalf-of, action,
subject and time range; pages; CSV of everything selected. Read-only: the portal has no way to
edit or delete an event. Labels, summaries and CSV cells are the customer audit's
(``portal.blueprints.customer.audit``), so both trails read alike.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

from flask import Response, abort, request
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer.audit import ACTIONS, CSV_CHUNK, _cell, _day, action_label, summary
from portal.blueprints.producer import bp
from portal.blueprints.producer.paging import CheapTable, paginate
from portal.extensions import db
from portal.models import AuditEvent, Entitlement, Organization, User
from portal.ui import Column, Filter, ListState, parse_list_args
from portal.web import query_text, render

PRODUCER_ACTIONS = [*ACTIONS, ("entitlement.correct", "Entitlement corrected"), ("mail.requeue", "Mail requeued"),
                    ("session.login", "Signed in"), ("session.logout", "Signed out")]
FILTERS = [Filter("action", "Action", PRODUCER_ACTIONS, all_label="All actions")]
TEXT_FIELDS = {"org": "organization", "behalf": "on behalf of", "subject": "subject"}
SUBJECT = re.compile(r"(?:(?P<type>[a-z_]+)[ :#]+)?(?P<id>[A-Za-z0-9-]{1,64})")


def _state(args) -> ListState:
    state = parse_list_args(args, endpoint="producer.audit", sorts={"at", "action"}, default_sort="-at",
                            filters=FILTERS)
    extra = {name: query_text(name, max_length=100) for name in TEXT_FIELDS}
    days = {name: _day(name) for name in ("from", "to")}
    extra |= {k: v.isoformat() for k, v in days.items() if v}
    return replace(state, filters={**state.filters, **{k: v for k, v in extra.items() if v}})


def _orgs_named(text: str):
    return select(Organization.id).where(Organization.name.icontains(text, autoescape=True))


def _subject_clause(text: str):
    """'ENT-7F3K-…' (an entitlement), 'portal_request 12', 'entitlement:5', or a bare id."""
    match = SUBJECT.fullmatch(text.strip())
    if match is None:
        abort(400, "Name a subject as an entitlement code, or as a type and an id (“portal_request 12”).")
    kind, ident = match["type"], match["id"]
    if kind is None and ident.upper().startswith("ENT-"):
        found = db.session.scalar(select(Entitlement.id).where(Entitlement.code == ident.upper()))
        return (AuditEvent.subject_type == "entitlement") & (AuditEvent.subject_id == str(found or -1))
    clause = AuditEvent.subject_id == ident
    return clause & (AuditEvent.subject_type == kind) if kind else clause


def _query(actor, state: ListState):
    query = (policy.visible_audit_events(actor)
             .options(joinedload(AuditEvent.user), joinedload(AuditEvent.org), joinedload(AuditEvent.on_behalf_of)))
    chosen = state.filters
    if state.q:
        users = select(User.id).where(User.display_name.icontains(state.q, autoescape=True)
                                      | User.email.icontains(state.q.lower(), autoescape=True))
        query = query.where(AuditEvent.user_id.in_(users))
    if "org" in chosen:
        query = query.where(AuditEvent.org_id.in_(_orgs_named(chosen["org"])))
    if "behalf" in chosen:
        query = query.where(AuditEvent.on_behalf_of_org_id.in_(_orgs_named(chosen["behalf"])))
    if "subject" in chosen:
        query = query.where(_subject_clause(chosen["subject"]))
    if "action" in chosen:
        query = query.where(AuditEvent.action == chosen["action"])
    if "from" in chosen:
        query = query.where(AuditEvent.at >= datetime.combine(date.fromisoformat(chosen["from"]), time(), tzinfo=UTC))
    if "to" in chosen:
        end = date.fromisoformat(chosen["to"]) + timedelta(days=1)
        query = query.where(AuditEvent.at < datetime.combine(end, time(), tzinfo=UTC))
    key = AuditEvent.at if state.sort == "at" else AuditEvent.action
    tie = AuditEvent.id.desc() if state.descending else AuditEvent.id
    return query.order_by(key.desc() if state.descending else key, tie)


def _allowed(actor) -> None:
    if not policy.can(actor, "view_audit"):
        abort(403)


@bp.get("/audit")
def audit():
    """Every event, newest first, narrowed by the search fields (the table is the htmx fragment)."""
    actor = current_actor()
    _allowed(actor)
    state = _state(request.args)
    table = CheapTable(
        id="audit", pagination=paginate(_query(actor, state), page=state.page), state=state, noun="event",
        nouns="events", caption="Every change made through the portal",
        columns=[Column("at", "When", sortable=True), Column("who", "Who"), Column("action", "Action", sortable=True),
                 Column("subject", "Subject"), Column("details", "Details")],
        csv_url=state.url("producer.audit_csv", page=1),
        empty_text="Every change made through the portal appears here.",
    )
    return render("producer/audit.html", fragment="producer/_audit_table.html", audit=table, filters=FILTERS,
                  text_fields=TEXT_FIELDS, summary=summary, action_label=action_label)


@bp.get("/audit.csv")
def audit_csv():
    """Every event the search selects (all pages), in the list's order, as CSV."""
    actor = current_actor()
    _allowed(actor)
    state = _state(request.args)
    query = _query(actor, state).execution_options(yield_per=CSV_CHUNK)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["time", "who", "user_email", "organization", "on_behalf_of", "action", "subject", "details",
                     "request_id", "client_addr"])
    for event in db.session.scalars(query):
        writer.writerow([_cell(v) for v in (
            event.at.isoformat(), event.describe(), event.user.email if event.user else "",
            event.org.name if event.org else "", event.on_behalf_of.name if event.on_behalf_of else "",
            event.action, f"{event.subject_type} {event.subject_id}", summary(event), event.request_id,
            event.client_addr)])
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="audit.csv"'
    return response
