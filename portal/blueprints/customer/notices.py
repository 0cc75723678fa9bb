"""Acknowledging producer notices and choosing which ones come by email.

- ``POST /customer/inbox/<id>/acknowledge``: an admin of the hierarchy confirms a security patch
  or critical notice (members read it; the producer sees who acknowledged and when);
- ``/customer/inbox/settings``: which optional kinds of notice (service packs, end of life,
  general) the organization's notification contacts get by email. Security patches and critical
  notices always come; the inbox always gets everything.
"""

from __future__ import annotations

from flask import abort, request, url_for

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer import bp
from portal.blueprints.customer.replies import done, fragment, refuse
from portal.extensions import db
from portal.forms import PortalForm
from portal.models.notifications import MANDATORY_KINDS, OPTIONAL_KINDS
from portal.policy import Action
from portal.services import notifications as notices
from portal.services.errors import ServiceError
from portal.services.inbox import mark_read
from portal.web import is_htmx, render


class _Form(PortalForm):
    class Meta:
        csrf = False  # CSRFProtect checks every POST of the app


@bp.post("/inbox/<int:message_id>/acknowledge")
def inbox_acknowledge(message_id: int):
    """Confirm, for the organization, that a security patch or critical notice was read."""
    actor = current_actor()
    message = policy.load_message(actor, message_id)
    if not _Form().validate_on_submit():
        abort(400)
    try:
        changed = notices.acknowledge(actor, message)
        mark_read(actor, message)  # whoever acknowledges it has read it
    except ServiceError as error:
        refuse(error)
    db.session.commit()
    text = "Acknowledged for your organization." if changed else "This notice was acknowledged already."
    if is_htmx():
        return fragment("customer/_acknowledgement.html", message=text, notice=message, needs_acknowledgement=True,
                        can_acknowledge=False)
    return done(url_for("customer.inbox_message", message_id=message.id), text)


@bp.route("/inbox/settings", methods=["GET", "POST"])
def inbox_settings():
    """Which optional notices the organization's notification contacts get by email."""
    actor = current_actor()
    org = actor.org
    may_edit = policy.can(actor, Action.EDIT, org)
    preferences = notices.preferences_of(org)
    if request.method == "POST":
        if not may_edit:
            abort(403)
        if not _Form().validate_on_submit():
            abort(400)
        chosen = set(request.form.getlist("email"))
        if not chosen <= set(OPTIONAL_KINDS):
            abort(400)
        for kind in OPTIONAL_KINDS:
            notices.set_email(actor, org, kind, kind in chosen)
        db.session.commit()
        return done(url_for("customer.inbox_settings"), "Saved: your notices by email.")
    emailed = {kind: preferences[kind].email if kind in preferences else True for kind in OPTIONAL_KINDS}
    return render("customer/inbox_settings.html", org=org, may_edit=may_edit, emailed=emailed,
                  optional=OPTIONAL_KINDS, labels=notices.KIND_LABELS,
                  contacts=notices.contact_addresses(org))


def acknowledgement_context(actor, message) -> dict:
    """What the message page shows about acknowledging it."""
    return {"needs_acknowledgement": message.notification.kind in MANDATORY_KINDS,
            "can_acknowledge": policy.can(actor, Action.ACKNOWLEDGE, message) and message.acknowledged_at is None}
