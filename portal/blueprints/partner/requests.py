"""``/partner/requests``: asking a customer to attach us to some of its entitlements, and our
requests' state. The customer gives us its exact name and the entitlement codes; the look-up
(``policy.access_request_target``) reveals nothing else, and the codes are checked only when the
customer decides. A pending request can be withdrawn by the user who made it or our admins.
"""

from __future__ import annotations

import re

from flask import abort, current_app, request, url_for
from sqlalchemy import or_
from sqlalchemy.orm import joinedload
from wtforms import BooleanField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer.replies import current_query, done, fragment, list_state, refuse, show_error
from portal.blueprints.partner import bp
from portal.blueprints.partner.home import our_requests
from portal.extensions import db
from portal.forms import PortalForm
from portal.models import Organization, PortalRequest
from portal.services.errors import NotAllowed, ServiceError
from portal.services.requests import request_partner_access, withdraw_request
from portal.ui import Column, Filter, Table, parse_list_args, push_url
from portal.web import is_htmx, render

STATES = [("pending", "Pending"), ("approved", "Approved"), ("rejected", "Rejected"), ("withdrawn", "Withdrawn")]
CODE = re.compile(r"[A-Za-z0-9-]{1,32}")
MAX_CODES = 50


def _codes(form, field) -> None:
    """Codes separated by commas, spaces or lines; each one of letters, digits and dashes."""
    parts = [p for p in re.split(r"[\s,;]+", field.data or "") if p]
    if len(parts) > MAX_CODES:
        raise ValidationError(f"Name at most {MAX_CODES} entitlement codes at once.")
    for part in parts:
        if not CODE.fullmatch(part):
            raise ValidationError(f"“{part[:40]}” is not an entitlement code (like ENT-7F3K-Q9D2-XM4P).")
    field.data = ", ".join(dict.fromkeys(p.upper() for p in parts))


class AccessRequestForm(PortalForm):
    """Built with the prefix "ask"."""

    customer = StringField("Customer's exact name", validators=[
        DataRequired("Enter the customer's name as the customer gave it to you."), Length(max=200)],
        description="As the customer gave it to you; nothing is suggested.")
    codes = TextAreaField("Entitlement codes", validators=[
        DataRequired("Enter the codes of the entitlements you want to work on."), Length(max=4000), _codes],
        description="The codes the customer gave you, separated by commas or lines.")
    download = BooleanField("Download software")
    activate = BooleanField("Activate licenses")
    message = TextAreaField("Message to the customer", validators=[Optional(), Length(max=2000)])


class WithdrawForm(PortalForm):
    pass


def _requests_table(actor, args, *, after_change: bool = False) -> Table:
    filters = [Filter("state", "State", STATES, all_label="All states")]

    def parse(given):
        return parse_list_args(given, endpoint="partner.requests", sorts={"created", "customer", "state"},
                               default_sort="-created", filters=filters)

    state = list_state(parse, args) if after_change else parse(args)
    query = (our_requests(actor).join(Organization, Organization.id == PortalRequest.target_org_id)
             .options(joinedload(PortalRequest.requester), joinedload(PortalRequest.target_org),
                      joinedload(PortalRequest.decided_by)))
    if state.q:
        query = query.where(or_(Organization.name.icontains(state.q, autoescape=True),
                                PortalRequest.message.icontains(state.q, autoescape=True)))
    if "state" in state.filters:
        query = query.where(PortalRequest.state == state.filters["state"])
    key = {"created": PortalRequest.created_at, "customer": Organization.name, "state": PortalRequest.state}[state.sort]
    tie = PortalRequest.id.desc() if state.descending else PortalRequest.id
    query = query.order_by(key.desc() if state.descending else key, tie)
    pagination = db.paginate(query, page=state.page, per_page=current_app.config["PAGE_SIZE"], error_out=False)
    columns = [Column("customer", "Customer", sortable=True), Column("codes", "Entitlements"),
               Column("permissions", "Permissions"), Column("state", "State", sortable=True),
               Column("created", "Asked", sortable=True), Column("actions", "Actions", label_hidden=True)]
    table = Table(id="requests", columns=columns, pagination=pagination, state=state, noun="request",
                  nouns="requests", caption="Our requests for access to customers' entitlements",
                  empty_text="Ask a customer for access with the form above.")
    table.filters = filters  # type: ignore[attr-defined]
    return table


def _withdrawable(actor, table: Table) -> set[int]:
    return {r.id for r in table.rows if r.state == "pending" and policy.can(actor, "withdraw", r)}


def _page(actor, *, status: int = 200, form: AccessRequestForm | None = None, args=None):
    table = _requests_table(actor, request.args if args is None else args)
    ask = form or AccessRequestForm(formdata=None, prefix="ask")
    return render("partner/requests.html", fragment="partner/_requests_table.html", status=status, ask=ask,
                  our=table, filters=table.filters, withdrawable=_withdrawable(actor, table))


@bp.get("/requests")
def requests():
    """Our requests for access, newest first, with the form to ask a customer for more."""
    actor = current_actor()
    table = _requests_table(actor, request.args)
    response = render("partner/requests.html", fragment="partner/_requests_table.html",
                      ask=AccessRequestForm(formdata=None, prefix="ask"), our=table, filters=table.filters,
                      withdrawable=_withdrawable(actor, table))
    return push_url(response, table.state)


@bp.post("/requests")
def ask_for_access():
    """Ask a customer, named exactly, to attach us to the entitlements whose codes it gave us."""
    actor = current_actor()
    if not policy.can(actor, "request_access"):
        refuse(NotAllowed("Your organization may not request access."))
    form = AccessRequestForm(prefix="ask")
    if not form.validate():
        return _page(actor, status=422, form=form, args={})
    customer = policy.access_request_target(actor, form.customer.data)
    if customer is None:
        form.customer.errors = [*form.customer.errors, "No single customer has exactly this name: check it with "
                                                       "your customer (spelling, legal form)."]
        return _page(actor, status=422, form=form, args={})
    permissions = ["view"] + [p for p in ("download", "activate") if getattr(form, p).data]
    try:
        request_partner_access(actor, customer, form.codes.data.split(", "), permissions=permissions,
                               message=form.message.data)
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error, fields={"entitlements": "codes"})
        return _page(actor, status=422, form=form, args={})
    db.session.commit()
    return done(url_for("partner.requests"), f"Asked {customer.name} for access. Its admins decide; "
                                             "the request's state shows here.")


@bp.post("/requests/<int:request_id>/withdraw")
def withdraw(request_id: int):
    """Withdraw one of our pending requests (its maker or our admins)."""
    actor = current_actor()
    req = policy.load_request(actor, request_id)
    if req.kind != "partner_access" or req.requester_org_id != actor.org.id:
        abort(404)
    if not WithdrawForm().validate():
        abort(400)
    try:
        withdraw_request(actor, req)
    except ServiceError as error:
        refuse(error)
    name = req.target_org.name if req.target_org else "the customer"
    db.session.commit()
    message = f"Withdrew the request to {name}."
    if is_htmx():
        table = _requests_table(actor, current_query(), after_change=True)
        return fragment("partner/_requests_table.html", message=message, our=table,
                        withdrawable=_withdrawable(actor, table))
    return done(url_for("partner.requests"), message)
