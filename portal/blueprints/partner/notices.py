"""``/partner/notices``: a partner gets no producer notices unless it asks for a copy.

A copy lists only the entitlements the partner is attached to (never another partner's), for
the kinds its admins choose. Customers are told directly; this is for partners who want to know
what their customers were told.
"""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.partner import bp
from portal.extensions import db
from portal.forms import PortalForm
from portal.models.notifications import NOTIFICATION_KINDS
from portal.policy import Action
from portal.services import notifications as notices
from portal.web import render


class _Form(PortalForm):
    class Meta:
        csrf = False  # CSRFProtect checks every POST of the app


@bp.route("/notices", methods=["GET", "POST"])
def notice_settings():
    """Which kinds of notice the partner's contacts get a copy of."""
    actor = current_actor()
    org = actor.org
    may_edit = policy.can(actor, Action.EDIT, org)
    if request.method == "POST":
        if not may_edit:
            abort(403)
        if not _Form().validate_on_submit():
            abort(400)
        chosen = set(request.form.getlist("copy"))
        if not chosen <= set(NOTIFICATION_KINDS):
            abort(400)
        for kind in NOTIFICATION_KINDS:
            notices.set_partner_copy(actor, org, kind, kind in chosen)
        db.session.commit()
        flash("Saved: the copies you get.")
        return redirect(url_for("partner.notice_settings"))
    preferences = notices.preferences_of(org)
    copied = {kind: kind in preferences and preferences[kind].partner_copy for kind in NOTIFICATION_KINDS}
    return render("partner/notices.html", org=org, may_edit=may_edit, copied=copied, kinds=NOTIFICATION_KINDS,
                  labels=notices.KIND_LABELS, contacts=notices.contact_addresses(org))
