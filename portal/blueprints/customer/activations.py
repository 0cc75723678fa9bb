"""Activations in place on an entitlement's page: activate seats of a line on a host, return
them, move them to another host (rehost), and download an activation's license certificate.

Thin views: form -> service verb -> one commit (POSTs run in a write transaction from their
first statement: the app begins it before any view runs). For htmx each answers with the
line's card, its seats updated, and a toast; a bad host id or too many seats answer 422 with
the card's form showing the error next to its field. Without JavaScript a success redirects
to the entitlement's page and an error renders that page with the error.
"""

from __future__ import annotations

from flask import Response, abort, flash, make_response, redirect, render_template, url_for

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer import bp
from portal.blueprints.customer import queries as q
from portal.blueprints.customer.entitlements import entitlement_page, line_views
from portal.blueprints.customer.forms import ActivateForm, RehostForm
from portal.extensions import db
from portal.models import EntitlementLine
from portal.services.activations import activate, rehost, return_activation
from portal.services.errors import Conflict, NotAllowed, ServiceError
from portal.services.licenses import issue_certificate
from portal.ui import toast
from portal.web import is_htmx

MAX_ID = 2**31 - 1  # larger ids exist nowhere: 404 before any SQL


def _seats(n: int) -> str:
    return f"{n} seat{'' if n == 1 else 's'}"


def _answer(actor, line: EntitlementLine, *, message: str | None = None, status: int = 200,
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
        return redirect(url_for("customer.entitlement", code=line.entitlement.code, _anchor=f"line-{line.id}"))
    return entitlement_page(actor, line.entitlement, status=status, forms=forms, rehost_forms=rehost_forms)


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


@bp.post(f"/lines/<int(max={MAX_ID}):line_id>/activations")
def activate_seats(line_id: int):
    """Activate seats of a line on a host."""
    actor = current_actor()
    line = policy.load_line(actor, line_id)
    if not policy.can(actor, "activate", line):
        abort(403, "You may not activate seats of this entitlement.")
    form = ActivateForm(prefix=f"line-{line.id}")
    if not form.validate():
        return _answer(actor, line, status=422, forms={line.id: form})
    try:
        activation, created = activate(actor, line, form.host_id.data, seats=form.seats.data,
                                       friendly_name=form.friendly_name.data)
    except NotAllowed as error:
        _refused(error)
    except ServiceError as error:
        db.session.rollback()
        _show_error(form, error)
        return _answer(actor, line, status=422, forms={line.id: form})
    db.session.commit()
    if created:
        message = f"Activated {_seats(activation.seats)} of {line.product.name} on {activation.host_id}."
    else:
        message = (f"{activation.host_id} was already activated on this line ({_seats(activation.seats)}): "
                   "nothing changed.")
    return _answer(actor, line, message=message)


@bp.post(f"/activations/<int(max={MAX_ID}):activation_id>/return")
def return_seats(activation_id: int):
    """Return an activation's seats: they are free again at once."""
    actor = current_actor()
    activation = policy.load_activation(actor, activation_id)
    try:
        return_activation(actor, activation)
    except ServiceError as error:
        _refused(error)
    db.session.commit()
    return _answer(actor, activation.line,
                   message=f"Returned {_seats(activation.seats)} of {activation.host_id}.")


@bp.post(f"/activations/<int(max={MAX_ID}):activation_id>/rehost")
def rehost_seats(activation_id: int):
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
        return _answer(actor, line, status=422, rehost_forms={activation.id: form})
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
        return _answer(actor, line, status=422, rehost_forms={activation_id: form})
    db.session.commit()
    return _answer(actor, line, message=f"Moved {_seats(new.seats)} from {old_host} to {new.host_id}.")


@bp.get(f"/activations/<int(max={MAX_ID}):activation_id>.lic")
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
