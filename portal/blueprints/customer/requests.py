"""Requests of the customer portal: those we made (transfers, partner invitations) and those
waiting for us (joining one of our organizations, partner access to our entitlements), with
their state; ask producer staff to transfer an entitlement to an organization outside our tree;
withdraw a pending request of ours; approve or reject one addressed to us, with a note.

Thin views as in ``partners``: the list comes from ``policy.visible_requests``, a single
request from ``policy.load_request`` (404 when it is not ours to see), then the action is
checked (403: members see, admins act; 409: decided or withdrawn already).
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, request, url_for
from sqlalchemy import func, or_, select
from sqlalchemy.orm import aliased, joinedload

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer import bp
from portal.blueprints.customer.forms_partners import ActionForm, DecisionForm, TransferForm
from portal.blueprints.customer.partners import (
    answer,
    attachment_rows,
    attachments_table,
    partners_page,
    plural,
    request_cards,
    show_error,
)
from portal.extensions import db
from portal.models import Entitlement, Organization, PortalRequest, User
from portal.services.errors import Conflict, NotAllowed, ServiceError
from portal.services.requests import decide_request, request_transfer, withdraw_request
from portal.ui import Column, Filter, Table, parse_list_args
from portal.web import is_htmx, query_text, render

KIND_LABELS = {"transfer": "Transfer", "partner_application": "Partner invitation", "join_org": "Joining",
               "partner_access": "Partner access"}
STATE_LABELS = {"pending": "Pending", "approved": "Approved", "rejected": "Rejected", "withdrawn": "Withdrawn"}
WAITING_SHOWN = 20
COLUMNS = [
    Column("kind", "Request", sortable=True),
    Column("from", "From"),
    Column("about", "About"),
    Column("state", "State", sortable=True),
    Column("created", "Asked", sortable=True),
    Column("actions", "Actions", label_hidden=True),
]
SORTS = {"kind": PortalRequest.kind, "state": PortalRequest.state, "created": PortalRequest.created_at}
FILTERS = [
    Filter("direction", "Direction", [("ours", "Made by us"), ("to_us", "Addressed to us")], all_label="Both"),
    Filter("kind", "Kind", list(KIND_LABELS.items()), all_label="Any"),
    Filter("state", "State", list(STATE_LABELS.items()), all_label="Any"),
]
LOADED = (joinedload(PortalRequest.requester), joinedload(PortalRequest.requester_org),
          joinedload(PortalRequest.target_org), joinedload(PortalRequest.entitlement),
          joinedload(PortalRequest.decided_by))


@bp.context_processor
def _request_words() -> dict:
    return {"kind_labels": KIND_LABELS}


def requests_table(actor, args=None) -> Table:
    """One page of the requests we see, as the URL's search, filters and sort ask."""
    state = parse_list_args(request.args if args is None else args, endpoint="customer.requests", sorts=SORTS,
                            default_sort="-created", filters=FILTERS)
    query = policy.visible_requests(actor).options(*LOADED)
    chosen = state.filters
    if chosen.get("direction") == "ours":
        query = query.where(PortalRequest.requester_org_id.in_(policy.subtree_org_ids(actor.org)))
    elif chosen.get("direction") == "to_us":
        query = query.where(policy.addressed_to_customer(actor.org))
    if "kind" in chosen:
        query = query.where(PortalRequest.kind == chosen["kind"])
    if "state" in chosen:
        query = query.where(PortalRequest.state == chosen["state"])
    if state.q:
        requester, from_org, to_org = aliased(User), aliased(Organization), aliased(Organization)
        query = (query.join(requester, requester.id == PortalRequest.requester_user_id)
                 .outerjoin(from_org, from_org.id == PortalRequest.requester_org_id)
                 .outerjoin(to_org, to_org.id == PortalRequest.target_org_id)
                 .outerjoin(Entitlement, Entitlement.id == PortalRequest.entitlement_id)
                 .where(or_(*(column.icontains(state.q, autoescape=True) for column in (
                     requester.email, requester.display_name, from_org.name, to_org.name, Entitlement.code)))))
    order = SORTS[state.sort]
    query = query.order_by(order.desc() if state.descending else order, PortalRequest.id.desc())
    pagination = db.paginate(query, page=state.page, per_page=current_app.config["PAGE_SIZE"], error_out=False)
    return Table(id="requests", columns=COLUMNS, pagination=pagination, state=state, noun="request",
                 nouns="requests", caption="Requests made by your organization or addressed to it",
                 empty_text="Your organization has made no request, and none is addressed to it.")


def row_context(actor, rows: list[PortalRequest]) -> dict:
    """Per row: may the actor withdraw it, does it wait for our decision, is its entitlement still
    ours to link to (a constant number of queries)."""
    ids = [r.id for r in rows]
    waiting = set(db.session.scalars(
        policy.visible_requests(actor).where(PortalRequest.id.in_(ids), PortalRequest.state == "pending",
                                             policy.addressed_to_customer(actor.org))
        .with_only_columns(PortalRequest.id))) if ids else set()
    entitlement_ids = {r.entitlement_id for r in rows if r.entitlement_id is not None}
    ours = set(db.session.scalars(
        policy.visible_entitlements(actor).where(Entitlement.id.in_(entitlement_ids))
        .with_only_columns(Entitlement.id))) if entitlement_ids else set()
    return {"withdrawable": {r.id for r in rows if policy.can(actor, "withdraw", r)}, "waiting_ids": waiting,
            "our_entitlements": ours}


def waiting_requests(actor) -> tuple[list[PortalRequest], int]:
    """Pending requests addressed to us (what our admins decide), oldest first, and how many."""
    waiting = policy.visible_requests(actor).where(PortalRequest.state == "pending",
                                                   policy.addressed_to_customer(actor.org))
    count = db.session.scalar(select(func.count()).select_from(waiting.subquery()))
    shown = list(db.session.scalars(waiting.options(*LOADED).order_by(PortalRequest.created_at, PortalRequest.id)
                                    .limit(WAITING_SHOWN)))
    return shown, count


def requests_page(actor, *, status: int = 200, transfer: TransferForm | None = None,
                  decision_forms: dict | None = None):
    table = requests_table(actor)
    admin = policy.can(actor, "request_transfer")
    if is_htmx() and request.method == "GET":  # the table's search, filters, sort or pages: only the table
        return render("customer/requests.html", fragment="customer/_requests_table.html", table=table,
                      rows=row_context(actor, table.rows))
    waiting, waiting_count = waiting_requests(actor)
    if admin and transfer is None:
        transfer = TransferForm(formdata=None, prefix="transfer",
                                code=query_text("transfer", max_length=32).upper() if request.method == "GET" else "")
    return render("customer/requests.html", fragment="customer/_requests_table.html", status=status, table=table,
                  filters=FILTERS, rows=row_context(actor, table.rows), waiting=waiting, waiting_count=waiting_count,
                  cards=request_cards(actor, waiting, decision_forms), return_to="requests", admin=admin,
                  transfer_form=transfer if admin else None)


@bp.get("/requests")
def requests():
    """Requests we made and those waiting for us, with their state; the transfer form (admins).
    The table is the fragment for htmx (search, filters, sort and pages in place)."""
    return requests_page(current_actor())


@bp.post("/requests/transfer", endpoint="request_transfer")
def transfer():
    """Ask producer staff to move one of our entitlements to an organization outside our tree."""
    actor = current_actor()
    if not policy.can(actor, "request_transfer"):
        abort(403, "Only your organization's admins ask for transfers.")
    form = TransferForm(prefix="transfer")
    entitlement = recipient = None
    if form.validate():
        entitlement = db.session.scalar(
            policy.visible_entitlements(actor).where(Entitlement.code == form.code.data.upper()))
        if entitlement is None:
            form.code.errors = ["None of your entitlements has this code."]
        recipient = policy.transfer_recipient_by_exact_name(actor, form.recipient.data)
        if recipient is None:
            form.recipient.errors = ["No customer organization outside your own has exactly this name on the portal. "
                                     "Check the spelling, or ask producer staff."]
    if entitlement is None or recipient is None:
        return _transfer_refused(actor, form)
    try:
        req = request_transfer(actor, entitlement, recipient, message=form.message.data)
    except NotAllowed as error:
        db.session.rollback()
        abort(403, error.message)
    except ServiceError as error:
        db.session.rollback()
        if isinstance(error, Conflict) and not error.field:
            error.field = "code"
        show_error(form, error)
        return _transfer_refused(actor, form)
    db.session.commit()
    message = (f"Asked producer staff to transfer {entitlement.code} to {recipient.name}. "
               "You can withdraw the request while it waits.")
    if not is_htmx():
        flash(message)
        return redirect(url_for("customer.requests"))
    table = requests_table(actor, args={})
    response = answer("customer/_transfer_answer.html", message=message,
                      form=TransferForm(formdata=None, prefix="transfer"), table=table, filters=FILTERS,
                      rows=row_context(actor, table.rows), new_id=req.id)
    response.headers["HX-Replace-Url"] = url_for("customer.requests")
    return response


def _transfer_refused(actor, form: TransferForm):
    db.session.rollback()
    if not is_htmx():
        return requests_page(actor, status=422, transfer=form)
    return answer("customer/_transfer_form.html", status=422, form=form)


def _back(return_to: str | None):
    return redirect(url_for("customer.partners" if return_to == "partners" else "customer.requests"))


def _card_answer(actor, req: PortalRequest, *, status: int = 200, message: str | None = None,
                 form: DecisionForm | None = None):
    """The request's card for htmx; else back to the page it was decided on."""
    return_to = "partners" if request.form.get("return_to") == "partners" else "requests"
    if is_htmx():
        cards = request_cards(actor, [req], {req.id: form} if form is not None else None)
        if status >= 400:
            return answer("customer/_request_card.html", status=status, req=req, cards=cards, return_to=return_to)
        # Decided: the card says so, and the page's table shows it too (in its first state again).
        if return_to == "partners":
            table, filters = attachments_table(actor, args={})
            region = {"region": "attachments", "table": table, "filters": filters,
                      "rows": attachment_rows(table.rows), "admin": True}
        else:
            table = requests_table(actor, args={})
            region = {"region": "requests", "table": table, "filters": FILTERS, "rows": row_context(actor, table.rows)}
        response = answer("customer/_decision_answer.html", message=message, req=req, cards=cards,
                          return_to=return_to, **region)
        response.headers["HX-Replace-Url"] = url_for(f"customer.{return_to}")
        return response
    if status < 400:
        if message:
            flash(message)
        return _back(return_to)
    if return_to == "partners":
        return partners_page(actor, status=status, decision_forms={req.id: form})
    return requests_page(actor, status=status, decision_forms={req.id: form})


def _decided_message(req: PortalRequest) -> str:
    who = req.requester_org.name if req.kind == "partner_access" and req.requester_org else req.requester.display_name
    if req.state == "rejected":
        return f"Rejected the request of {who}; they are told by mail."
    if req.kind == "join_org":
        return f"Approved: {who} is now a member of {req.target_org.name}."
    codes = req.details.get("codes", [])
    return (f"Approved: {who} is attached to those of the {plural(len(codes), 'requested entitlement')} "
            f"that are yours ({', '.join(req.details.get('permissions', ['view']))}).")


@bp.post("/requests/<int:request_id>/decide", endpoint="decide_request")
def decide(request_id: int):
    """Approve or reject a pending request addressed to us (joining, partner access), with a note."""
    actor = current_actor()
    req = policy.load_request(actor, request_id)
    if req.state != "pending":
        abort(409, f"This request was {req.state} already.")
    if not policy.can(actor, "decide", req):
        abort(403, "Only your organization's admins decide this request." if req.kind in (
            "join_org", "partner_access") else "Producer staff decide this request.")
    form = DecisionForm(prefix=f"request-{req.id}")
    if not form.validate():
        return _card_answer(actor, req, status=422, form=form)
    try:
        decide_request(actor, req, approve=form.decision.data == "approve", note=form.note.data)
    except NotAllowed as error:
        db.session.rollback()
        abort(403, error.message)
    except Conflict as error:
        db.session.rollback()
        abort(409, error.message)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error)
        return _card_answer(actor, db.session.get(PortalRequest, request_id), status=422, form=form)
    db.session.commit()
    return _card_answer(actor, req, message=_decided_message(req))


@bp.post("/requests/<int:request_id>/withdraw", endpoint="withdraw_request")
def withdraw(request_id: int):
    """Withdraw a pending request our organization made."""
    actor = current_actor()
    req = policy.load_request(actor, request_id)
    if req.state != "pending":
        abort(409, f"This request was {req.state} already.")
    if not policy.can(actor, "withdraw", req):
        abort(403, "Only the person who asked, or your organization's admins, withdraw this request.")
    ActionForm()  # the CSRF token was checked with the request; nothing else to read
    try:
        withdraw_request(actor, req)
    except (NotAllowed, Conflict) as error:
        db.session.rollback()
        abort(error.status, error.message)
    db.session.commit()
    message = f"Withdrew your {KIND_LABELS[req.kind].lower()} request #{req.id}."
    if is_htmx():
        return answer("customer/_request_row.html", message=message, r=req, rows=row_context(actor, [req]))
    flash(message)
    return redirect(url_for("customer.requests"))
