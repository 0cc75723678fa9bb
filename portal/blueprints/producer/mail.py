"""The outbox for producer staff: every mail queued, sent or failed, with its attempts, next
attempt and the last error; requeue failed mail (one, the ticked ones, or all failed), through
``services.mail.requeue_failed`` (audited, one event per mail)."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from wtforms import SelectMultipleField, StringField
from wtforms.validators import Optional

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.producer import bp
from portal.blueprints.producer.paging import CheapTable, paginate
from portal.extensions import db
from portal.forms import INTEGER_MAX, PortalForm
from portal.models import OutboxEmail
from portal.models.notifications import OUTBOX_STATES
from portal.services.errors import NotAllowed, ServiceError
from portal.services.mail import outbox_counts, requeue_failed
from portal.ui import Column, Filter, parse_list_args, toast
from portal.web import is_htmx, render

FILTERS = [Filter("status", "Status", [(s, s.capitalize()) for s in OUTBOX_STATES], all_label="Any status")]
SORTS = {"created": OutboxEmail.id, "next": OutboxEmail.next_attempt_at}
MAX_REQUEUE = 500


class RequeueForm(PortalForm):
    """Requeue the ticked failed mails, or every failed one (``all``)."""

    ids = SelectMultipleField("Mails", coerce=int, validate_choice=False)
    all = StringField("All", validators=[Optional()])


def _allowed(actor) -> None:
    if not policy.can(actor, "manage_mail"):
        abort(403)


def mail_table(args=None) -> CheapTable:
    state = parse_list_args(request.args if args is None else args, endpoint="producer.mail", sorts=SORTS,
                            default_sort="-created", filters=FILTERS)
    query = db.select(OutboxEmail)
    if "status" in state.filters:
        query = query.where(OutboxEmail.status == state.filters["status"])
    if state.q:
        query = query.where(OutboxEmail.to_addr.icontains(state.q.lower(), autoescape=True)
                            | OutboxEmail.subject.icontains(state.q, autoescape=True))
    key = SORTS[state.sort]
    query = query.order_by(key.desc() if state.descending else key, OutboxEmail.id.desc())
    return CheapTable(
        id="mail", pagination=paginate(query, page=state.page), state=state, noun="mail", nouns="mails",
        caption="Mail in the outbox", empty_text="Mail the portal sends (decisions, invitations, notices) shows here.",
        columns=[Column("select", "Select", label_hidden=True), Column("created", "Queued", sortable=True),
                 Column("to", "To"), Column("subject", "Subject"), Column("status", "Status"),
                 Column("attempts", "Attempts", numeric=True), Column("next", "Next attempt", sortable=True)])


@bp.get("/mail")
def mail():
    """The outbox, newest first, by status (the table is the htmx fragment)."""
    actor = current_actor()
    _allowed(actor)
    return render("producer/mail.html", fragment="producer/_mail_table.html", table=mail_table(), filters=FILTERS,
                  counts=outbox_counts())


@bp.post("/mail/requeue", endpoint="requeue_mail")
def requeue():
    """Put failed mail back in the queue: due now, attempts from zero."""
    actor = current_actor()
    _allowed(actor)
    form = RequeueForm()
    if not form.validate():
        abort(422, "Tick the failed mails to requeue.")
    ids = None if form.all.data == "all" else [i for i in form.ids.data or () if 0 < i <= INTEGER_MAX]
    if ids is not None and not ids:
        message, kind = "Tick the failed mails to requeue first.", "error"
    elif ids is not None and len(ids) > MAX_REQUEUE:
        message, kind = f"Requeue at most {MAX_REQUEUE} mails at once.", "error"
    else:
        try:
            requeued = requeue_failed(actor, ids)
        except NotAllowed as error:
            db.session.rollback()
            abort(403, error.message)
        except ServiceError as error:
            db.session.rollback()
            message, kind = error.message, "error"
        else:
            db.session.commit()
            message = f"Requeued {len(requeued)} mail{'s' if len(requeued) != 1 else ''}; the worker sends them next."
            kind = "success"
    if not is_htmx():
        flash(message, "error" if kind == "error" else "message")
        return redirect(url_for("producer.mail", status="failed"))
    response = render("producer/_mail_region.html", table=mail_table(args={"status": "failed"}), filters=FILTERS,
                      counts=outbox_counts(), status=422 if kind == "error" else 200)
    response.headers["HX-Replace-Url"] = url_for("producer.mail", status="failed")
    return toast(response, message, kind)
