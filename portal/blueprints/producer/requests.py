"""The producer's moderation queue: every request of every kind, oldest pending first, with age,
requester and target; approve or reject with a note, one by one or in bulk; a request's page with
its history.

A bulk decision decides each selected row in its own savepoint: a row the policy or the service
refuses (decided meanwhile, joining the producer for staff, nothing left to attach...) is rolled
back alone and shows why, the others stay decided. ``decide_request`` audits each decision and
queues the requester's mail in the same transaction.
"""

from __future__ import annotations

from datetime import timedelta

from flask import abort, current_app, flash, redirect, request, url_for
from sqlalchemy import func, or_, select
from sqlalchemy.orm import aliased, joinedload
from wtforms import SelectMultipleField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.producer import bp
from portal.extensions import db
from portal.forms import INTEGER_MAX, PortalForm
from portal.models import AuditEvent, Entitlement, Organization, PortalRequest, User, utcnow
from portal.services.errors import NotAllowed, ServiceError
from portal.services.requests import decide_request
from portal.ui import Column, Filter, Table, parse_list_args, push_url, toast
from portal.web import is_htmx, render

KIND_LABELS = {"join_org": "Joining", "partner_access": "Partner access", "transfer": "Transfer",
               "partner_application": "Partner application"}
AGES = {"1": "Older than a day", "7": "Older than a week", "30": "Older than 30 days"}
STATES = [("approved", "Approved"), ("rejected", "Rejected"), ("withdrawn", "Withdrawn"), ("all", "Any state")]
FILTERS = [
    Filter("kind", "Kind", list(KIND_LABELS.items()), all_label="Every kind"),
    Filter("age", "Age", list(AGES.items()), all_label="Any age"),
    Filter("state", "State", STATES, all_label="Pending"),
]
SORTS = {"created": PortalRequest.created_at, "kind": PortalRequest.kind}
COLUMNS = [
    Column("select", "Select", label_hidden=True),
    Column("kind", "Request", sortable=True),
    Column("state", "State"),
    Column("from", "Requester"),
    Column("about", "Target"),
    Column("created", "Age", sortable=True),
    Column("actions", "Actions", label_hidden=True),
]
LOADED = (joinedload(PortalRequest.requester), joinedload(PortalRequest.requester_org),
          joinedload(PortalRequest.target_org), joinedload(PortalRequest.entitlement),
          joinedload(PortalRequest.decided_by))
MAX_BULK = 100
NOTE_MAX = 2000


class DecisionForm(PortalForm):
    """Approve or reject one request, with an optional note for the requester."""

    decision = StringField("Decision", validators=[DataRequired("Choose Approve or Reject.")])
    note = TextAreaField("Note to the requester", validators=[
        Optional(), Length(max=NOTE_MAX, message=f"Keep the note under {NOTE_MAX:,} characters.")])

    def validate_decision(self, field) -> None:
        if field.data not in ("approve", "reject"):
            raise ValidationError("Choose Approve or Reject.")


class BulkDecisionForm(DecisionForm):
    """The same decision for every selected request."""

    ids = SelectMultipleField("Requests", coerce=int, validate_choice=False)

    def validate_ids(self, field) -> None:
        if not field.data:
            raise ValidationError("Tick the requests to decide first.")
        if len(field.data) > MAX_BULK:
            raise ValidationError(f"Decide at most {MAX_BULK} requests at once.")
        if any(not 0 < i <= INTEGER_MAX for i in field.data):
            raise ValidationError("There is no such request.")


def age_text(created, now) -> str:
    """'3 days', '5 hours', 'minutes'."""
    seconds = max((now - created).total_seconds(), 0)
    days, hours = int(seconds // 86400), int(seconds // 3600)
    if days:
        return f"{days} day{'s' if days != 1 else ''}"
    if hours:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return "under an hour"


@bp.context_processor
def _request_words() -> dict:
    return {"kind_labels": KIND_LABELS, "age_text": age_text}


def queue_state(args=None):
    return parse_list_args(request.args if args is None else args, endpoint="producer.requests", sorts=SORTS,
                           default_sort="created", filters=FILTERS)


def queue_table(actor, args=None) -> Table:
    """One page of the queue as the URL asks: pending by default, oldest first."""
    state = queue_state(args)
    query = policy.visible_requests(actor).options(*LOADED)
    chosen = state.filters
    wanted = chosen.get("state", "pending")
    if wanted != "all":
        query = query.where(PortalRequest.state == wanted)
    if "kind" in chosen:
        query = query.where(PortalRequest.kind == chosen["kind"])
    if "age" in chosen:
        query = query.where(PortalRequest.created_at <= utcnow() - timedelta(days=int(chosen["age"])))
    if state.q:
        requester, from_org, to_org = aliased(User), aliased(Organization), aliased(Organization)
        query = (query.join(requester, requester.id == PortalRequest.requester_user_id)
                 .outerjoin(from_org, from_org.id == PortalRequest.requester_org_id)
                 .outerjoin(to_org, to_org.id == PortalRequest.target_org_id)
                 .outerjoin(Entitlement, Entitlement.id == PortalRequest.entitlement_id)
                 .where(or_(*(column.icontains(state.q, autoescape=True) for column in (
                     requester.email, requester.display_name, from_org.name, to_org.name, Entitlement.code)))))
    order = SORTS[state.sort]
    tie = PortalRequest.id.desc() if state.descending else PortalRequest.id
    query = query.order_by(order.desc() if state.descending else order, tie)
    pagination = db.paginate(query, page=state.page, per_page=current_app.config["PAGE_SIZE"], error_out=False)
    noun = "pending request" if wanted == "pending" else "request"
    return Table(id="queue", columns=COLUMNS, pagination=pagination, state=state, noun=noun, nouns=noun + "s",
                 caption="Requests to moderate, oldest first",
                 empty_text="Nothing waits for a decision. New requests appear here, oldest first.")


def row_context(actor, rows: list[PortalRequest], results: dict | None = None) -> dict:
    """Which rows the actor may decide (one query), and the results of a bulk decision."""
    ids = [r.id for r in rows if r.state == "pending"]
    decidable = set(db.session.scalars(
        policy.decidable_requests(actor).where(PortalRequest.id.in_(ids)).with_only_columns(PortalRequest.id)
    )) if ids else set()
    return {"decidable": decidable, "results": results or {}, "now": utcnow()}


@bp.get("/requests")
def requests():
    """The moderation queue (the table is the htmx fragment: filters, sort and pages in place)."""
    actor = current_actor()
    table = queue_table(actor)
    response = render("producer/requests.html", fragment="producer/_queue_table.html", table=table,
                      filters=FILTERS, rows=row_context(actor, table.rows))
    return push_url(response, table.state)


def _refusal(actor, req: PortalRequest) -> str | None:
    """Why this row cannot be decided now, or None."""
    if req.state != "pending":
        return f"It was {req.state} already."
    if not policy.can(actor, "decide", req):
        return "Only producer admins decide who joins the producer."
    return None


def _decide_one(actor, req: PortalRequest, *, approve: bool, note: str | None) -> tuple[str, str]:
    """Decide one request in a savepoint of its own: ('approved'|'rejected'|'refused', text)."""
    reason = _refusal(actor, req)
    if reason:
        return "refused", reason
    try:
        with db.session.begin_nested():
            decide_request(actor, req, approve=approve, note=note)
    except (ServiceError, NotAllowed) as error:
        db.session.refresh(req)
        return "refused", error.message
    return req.state, decided_text(req)


def decided_text(req: PortalRequest) -> str:
    if req.state == "rejected":
        return "Rejected; the requester is told by mail."
    if req.kind == "join_org":
        return f"Approved: now a member of {req.target_org.name}."
    if req.kind == "transfer":
        return f"Approved: {req.entitlement.code} now belongs to {req.target_org.name}."
    if req.kind == "partner_application":
        return f"Approved: {req.target_org.name} is a partner now."
    return f"Approved: {req.requester_org.name} is attached."


@bp.post("/requests/decide", endpoint="bulk_decide")
def bulk_decide():
    """Approve or reject every selected request; each row shows its own result."""
    actor = current_actor()
    if not policy.can(actor, "moderate"):
        abort(403)
    form = BulkDecisionForm()
    if not form.validate():
        message = " ".join(e for errors in form.errors.values() for e in errors)
        if is_htmx():
            response = render("producer/_bulk_result.html", status=422, form=form, outcome=None)
            return toast(response, message, "error")
        flash(message, "error")
        return redirect(url_for("producer.requests"))
    approve = form.decision.data == "approve"
    # Loaded plainly: ``decide_request`` locks each row with a refresh, which would repeat joined
    # loads (PostgreSQL refuses FOR UPDATE on the nullable side of an outer join).
    found = {r.id: r for r in db.session.scalars(
        policy.visible_requests(actor).where(PortalRequest.id.in_(form.ids.data)))}
    results: dict[int, tuple[str, str]] = {}
    for request_id in sorted(set(form.ids.data)):
        req = found.get(request_id)
        results[request_id] = ("refused", "No such request.") if req is None else _decide_one(
            actor, req, approve=approve, note=form.note.data)
    db.session.commit()
    counts = {word: sum(1 for outcome, _ in results.values() if outcome == word)
              for word in ("approved", "rejected", "refused")}
    summary = ", ".join(f"{n} {word}" for word, n in counts.items() if n) or "Nothing decided"
    if not is_htmx():
        flash(summary + ".")
        return redirect(url_for("producer.requests"))
    decided = list(db.session.scalars(select(PortalRequest).where(PortalRequest.id.in_(list(found)))
                                      .options(*LOADED).order_by(PortalRequest.id)))
    response = render("producer/_bulk_result.html", form=BulkDecisionForm(formdata=None), outcome=summary,
                      decided=decided, rows=row_context(actor, decided, results))
    return toast(response, summary + ".", "error" if counts["refused"] and not (
        counts["approved"] or counts["rejected"]) else "success")


def request_history(req: PortalRequest) -> list[AuditEvent]:
    """The audit events of a request, oldest first (its creation by a user outside any
    organization is the request row itself)."""
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.subject_type == PortalRequest.__tablename__,
                                 AuditEvent.subject_id == str(req.id))
        .options(joinedload(AuditEvent.user), joinedload(AuditEvent.org), joinedload(AuditEvent.on_behalf_of))
        .order_by(AuditEvent.at, AuditEvent.id)))


def _detail(actor, req: PortalRequest, *, form: DecisionForm | None = None, status: int = 200):
    from portal.blueprints.customer.audit import action_label, summary

    form = form or DecisionForm(formdata=None, prefix="decide")
    return render("producer/request.html", status=status, req=req, form=form, history=request_history(req),
                  may_decide=policy.can(actor, "decide", req), refusal=_refusal(actor, req),
                  action_label=action_label, summary=summary, now=utcnow())


@bp.get("/requests/<int:request_id>", endpoint="request_detail")
def request_detail(request_id: int):
    """One request: what was asked, by whom, its state and decision, and its history."""
    actor = current_actor()
    return _detail(actor, policy.load_request(actor, request_id))


@bp.post("/requests/<int:request_id>/decide", endpoint="decide_request")
def decide(request_id: int):
    """Approve or reject one request (its page, or a row of the queue for htmx)."""
    actor = current_actor()
    req = policy.load_request(actor, request_id)
    if req.state != "pending":
        abort(409, f"This request was {req.state} already.")
    if not policy.can(actor, "decide", req):
        abort(403, "Only producer admins decide who joins the producer.")
    from_queue = request.form.get("from") == "queue"
    form = DecisionForm(prefix="" if from_queue else "decide")
    if not form.validate():
        if from_queue and is_htmx():
            return toast(render("producer/_queue_row.html", status=422, r=req, rows=row_context(actor, [req])),
                         " ".join(e for errors in form.errors.values() for e in errors), "error")
        return _detail(actor, req, form=form, status=422)
    outcome, text = _decide_one(actor, req, approve=form.decision.data == "approve", note=form.note.data)
    if outcome == "refused":
        db.session.rollback()
        if from_queue and is_htmx():
            return toast(render("producer/_queue_row.html", status=422, r=req,
                                rows=row_context(actor, [req], {req.id: (outcome, text)})), text, "error")
        form.form_errors.append(text)
        return _detail(actor, req, form=form, status=422)
    db.session.commit()
    if from_queue and is_htmx():
        rows = row_context(actor, [req], {req.id: (outcome, text)})
        return toast(render("producer/_queue_row.html", r=req, rows=rows), f"Request #{req.id}: {text}")
    flash(f"Request #{req.id}: {text}")
    return redirect(url_for("producer.request_detail", request_id=req.id))


def pending_by_kind() -> tuple[dict[str, dict[str, int]], int]:
    """For the single pane: pending requests per kind, in all and older than 1 and 7 days (one query)."""
    now = utcnow()
    older = {age: now - timedelta(days=int(age)) for age in ("1", "7")}
    rows = db.session.execute(
        select(PortalRequest.kind, func.count(),
               *(func.count().filter(PortalRequest.created_at <= cut) for cut in older.values()))
        .where(PortalRequest.state == "pending").group_by(PortalRequest.kind)).all()
    figures = {kind: {"all": 0, "1": 0, "7": 0} for kind in KIND_LABELS}
    for kind, total, day, week in rows:
        figures[kind] = {"all": total, "1": day, "7": week}
    return figures, sum(f["all"] for f in figures.values())
