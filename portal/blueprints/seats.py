"""Seats in place on an entitlement's page, shared by the customer portal and the partner portal
(which acts on behalf of the customer, within its attachment): each line's card with its seats,
usage and active activations, and the views behind its controls: activate seats of a line on a
host, return them, move them to another host (rehost), download an activation's certificate.

Thin views: form -> service verb -> one commit (POSTs run in a write transaction from their
first statement: the app begins it before any view runs). For htmx each answers with the
line's card, its seats updated, and a toast; a bad host id or too many seats answer 422 with
the card's form showing the error next to its field. Without JavaScript a success redirects
to the entitlement's page of the actor's area and an error renders that page with the error.

The area's module registers the routes and passes its entitlement page (``page``); the line
template (``customer/_line.html``) names its endpoints after the actor's area, so the same
card serves both portals. The services record a partner's act as on behalf of the owner.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from flask import Response, abort, flash, make_response, redirect, render_template, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer import queries as q
from portal.blueprints.customer.forms import ActivateForm, RehostForm
from portal.extensions import db
from portal.models import Activation, Entitlement, EntitlementLine
from portal.services.activations import activate, rehost, return_activation
from portal.services.errors import Conflict, NotAllowed, ServiceError
from portal.services.licenses import issue_certificate
from portal.ui import toast
from portal.web import is_htmx

MAX_ID = 2**31 - 1  # larger ids exist nowhere: 404 before any SQL
# The entitlement's page of an area: page(actor, entitlement, status=..., forms=..., rehost_forms=...).
Page = Callable[..., Response]


@dataclass
class LineView:
    """One line of an entitlement as its card shows it, with its forms."""

    line: EntitlementLine
    used: int
    activations: list[Activation]
    form: ActivateForm
    rehost_forms: dict[int, RehostForm]
    usage: int = 0

    @property
    def free(self) -> int:
        return max(self.line.quantity - self.used, 0)

    @property
    def is_seat_line(self) -> bool:
        return self.line.license_model in q.SEAT_MODELS


def line_views(actor, lines: list[EntitlementLine], *, forms: dict | None = None,
               rehost_forms: dict | None = None) -> list[LineView]:
    """Cards for ``lines`` (of one entitlement): seats used, usage this period and the active
    activations of all of them (with who activated each) in three queries."""
    forms, rehost_forms = forms or {}, rehost_forms or {}
    ids = [line.id for line in lines]
    used = dict(db.session.execute(
        select(Activation.line_id, func.sum(Activation.seats))
        .where(Activation.line_id.in_(ids), Activation.active.is_(True)).group_by(Activation.line_id)
    ).all())
    usage_lines = [line.id for line in lines if line.license_model == "usage"]
    # Asked whether or not there are usage lines: the page costs the same for every entitlement.
    usage = dict(db.session.execute(
        select(EntitlementLine.id, q.usage_in_period(q.today())).where(EntitlementLine.id.in_(usage_lines))
    ).all())
    activations = defaultdict(list)
    for activation in db.session.scalars(
        select(Activation).where(Activation.line_id.in_(ids), Activation.active.is_(True))
        .options(joinedload(Activation.activated_by), joinedload(Activation.activated_by_org))
        .order_by(Activation.activated_at.desc(), Activation.id.desc())
    ):
        activations[activation.line_id].append(activation)
    views = []
    for line in lines:
        views.append(LineView(
            line=line, used=used.get(line.id, 0), usage=usage.get(line.id, 0),
            activations=activations[line.id],
            form=forms.get(line.id) or ActivateForm(prefix=f"line-{line.id}", formdata=None),
            rehost_forms={a.id: rehost_forms.get(a.id) or RehostForm(prefix=f"activation-{a.id}", formdata=None)
                          for a in activations[line.id]},
        ))
    return views


def lines_of(entitlement: Entitlement) -> list[EntitlementLine]:
    return db.session.scalars(
        select(EntitlementLine).where(EntitlementLine.entitlement_id == entitlement.id)
        .options(joinedload(EntitlementLine.product)).order_by(EntitlementLine.id)
    ).all()


# --- the controls ---------------------------------------------------------------------------


def _seats(n: int) -> str:
    return f"{n} seat{'' if n == 1 else 's'}"


def _answer(actor, line: EntitlementLine, page: Page, *, message: str | None = None, status: int = 200,
            forms: dict | None = None, rehost_forms: dict | None = None):
    """The line's card for htmx (with a toast), else the entitlement's page."""
    if is_htmx():
        view = line_views(actor, [line], forms=forms, rehost_forms=rehost_forms)[0]
        response = make_response(render_template("customer/_line.html", view=view, today=q.today()), status)
        response.vary.add("HX-Request")
        return toast(response, message) if message else response
    if status < 400:
        if message:
            flash(message)
        return redirect(url_for(f"{actor.area}.entitlement", code=line.entitlement.code, _anchor=f"line-{line.id}"))
    return page(actor, line.entitlement, status=status, forms=forms, rehost_forms=rehost_forms)


def _show_error(form, error: ServiceError) -> None:
    """A service's refusal next to the field it names, or above the form."""
    field = getattr(form, error.field, None) if error.field else None
    if field is None:
        form.form_errors.append(error.message)
    else:
        field.errors = [*field.errors, error.message]


def _refused(error: ServiceError):
    """Refusals that are not about what was typed: 403 (not allowed) or 409 (state changed)."""
    db.session.rollback()
    abort(error.status, error.message)


def activate_seats(line_id: int, page: Page):
    """Activate seats of a line on a host."""
    actor = current_actor()
    line = policy.load_line(actor, line_id)
    if not policy.can(actor, "activate", line):
        abort(403, "You may not activate seats of this entitlement.")
    form = ActivateForm(prefix=f"line-{line.id}")
    if not form.validate():
        return _answer(actor, line, page, status=422, forms={line.id: form})
    try:
        activation, created = activate(actor, line, form.host_id.data, seats=form.seats.data,
                                       friendly_name=form.friendly_name.data)
    except NotAllowed as error:
        _refused(error)
    except ServiceError as error:
        db.session.rollback()
        _show_error(form, error)
        return _answer(actor, line, page, status=422, forms={line.id: form})
    db.session.commit()
    if created:
        message = f"Activated {_seats(activation.seats)} of {line.product.name} on {activation.host_id}."
    else:
        message = (f"{activation.host_id} was already activated on this line ({_seats(activation.seats)}): "
                   "nothing changed.")
    return _answer(actor, line, page, message=message)


def return_seats(activation_id: int, page: Page):
    """Return an activation's seats: they are free again at once."""
    actor = current_actor()
    activation = policy.load_activation(actor, activation_id)
    try:
        return_activation(actor, activation)
    except ServiceError as error:
        _refused(error)
    db.session.commit()
    return _answer(actor, activation.line, page,
                   message=f"Returned {_seats(activation.seats)} of {activation.host_id}.")


def rehost_seats(activation_id: int, page: Page):
    """Move an activation's seats to a new host: return and activate in one transaction."""
    actor = current_actor()
    activation = policy.load_activation(actor, activation_id)
    line = activation.line
    if not activation.active:
        abort(409, "This activation was already returned.")
    if not policy.can(actor, "rehost", activation):
        abort(403, "You may not move seats of this entitlement.")
    form = RehostForm(prefix=f"activation-{activation.id}")
    if not form.validate():
        return _answer(actor, line, page, status=422, rehost_forms={activation.id: form})
    old_host = activation.host_id
    try:
        new = rehost(actor, activation, form.host_id.data)
    except NotAllowed as error:
        _refused(error)
    except ServiceError as error:
        if isinstance(error, Conflict) and not error.field:
            _refused(error)
        db.session.rollback()
        _show_error(form, error)
        return _answer(actor, line, page, status=422, rehost_forms={activation_id: form})
    db.session.commit()
    return _answer(actor, line, page, message=f"Moved {_seats(new.seats)} from {old_host} to {new.host_id}.")


def certificate(activation_id: int):
    """The license certificate of an active activation: a compact JWS, verifiable offline."""
    actor = current_actor()
    activation = policy.load_activation(actor, activation_id)
    if not activation.active:
        abort(410, "This activation was returned; its certificate is no longer valid.")
    if not policy.can(actor, "download", activation):
        abort(403, "You may not download this certificate.")
    # Activations loaded in bulk (the seed, an import) have none stored: sign one dated at the
    # activation. Ed25519 signatures are deterministic, so every download is the same file.
    certificate = activation.certificate or issue_certificate(activation, now=activation.activated_at)
    code = activation.line.entitlement.code
    response = Response(certificate, mimetype="application/jwt")
    filename = f"{code}-{activation.host_id}.lic".replace(":", "_")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
