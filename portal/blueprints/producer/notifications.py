"""``/producer/notifications``: compose a notice, preview who gets what, send it, watch it go.

A notification is composed as a draft; its page previews how many customer organizations and
mailboxes it reaches and the exact message one chosen customer will get. "Send" hands it to the
worker, which checks every message and then queues them in batches (``services.notifications``);
the page follows the job's progress (htmx polling) and then shows each recipient's mail status.
"""

from __future__ import annotations

from functools import cache

from flask import abort, current_app, redirect, request, url_for
from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import joinedload
from wtforms import BooleanField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.producer import bp
from portal.extensions import db
from portal.forms import PortalForm
from portal.markdown import render_markdown
from portal.models import Notification, NotificationMessage, Organization, OutboxEmail, Product, Release
from portal.models.notifications import MANDATORY_KINDS, NOTIFICATION_KINDS
from portal.paging import contains, contains_param, count_of, paged, statement_page
from portal.policy import Action
from portal.services import notifications as notices
from portal.services.errors import ServiceError
from portal.ui import Column, Filter, Table, parse_list_args
from portal.web import is_htmx, query_text, render

KIND_CHOICES = [(kind, notices.KIND_LABELS[kind]) for kind in NOTIFICATION_KINDS]
KIND_SELECT = [SelectChoice(kind, label) for kind, label in KIND_CHOICES]
STATE_LABELS = {"draft": "Draft", "checking": "Checking", "queuing": "Queuing", "sent": "Sent",
                "stopped": "Stopped"}
MAIL_STATES = [("queued", "Queued"), ("sent", "Sent"), ("failed", "Failed")]


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class ComposeForm(PortalForm):
    class Meta:
        csrf = False  # CSRFProtect checks every POST of the app

    kind = SelectField("Kind", choices=KIND_SELECT, default="security_patch",
                       description="Security patches and critical notices are always mailed and are acknowledged.")
    title = StringField("Title", filters=[_strip], validators=[Length(max=notices.MAX_TITLE)])
    body = TextAreaField("Message", validators=[Length(max=notices.MAX_BODY)],
                         description="Markdown: **bold**, lists, links. Shown in the inbox and sent by email.",
                         render_kw={"rows": 8})
    product_id = SelectField("Product", coerce=int, validators=[InputRequired("Choose the product.")])
    release_id = SelectField("Release", coerce=lambda v: int(v) if v not in (None, "", "None") else None,
                             validators=[Optional()], description="What to install, if it is one release.")
    version_from = StringField("From version", filters=[_strip], validators=[Optional(), Length(max=50)])
    version_to = StringField("To version", filters=[_strip], validators=[Optional(), Length(max=50)])
    remind_after_days = IntegerField(
        "Remind after (days)", validators=[Optional(), NumberRange(min=1, max=notices.MAX_REMIND_DAYS,
                                                                   message="Remind after 1 to 365 days.")],
        description="Security patches and critical notices: recall them to customers who have not acknowledged.")
    remind_partners = BooleanField("Remind the partners attached to the entitlements too")


class SendForm(PortalForm):
    class Meta:
        csrf = False


def _require_sender():
    actor = current_actor()
    if not policy.can(actor, Action.SEND_NOTIFICATION):
        abort(404)
    return actor


def _compose_form(formdata=None) -> ComposeForm:
    form = ComposeForm(formdata=formdata)
    products = db.session.execute(select(Product.id, Product.name).order_by(Product.name)).all()
    form.product_id.choices = [SelectChoice(str(pid), name) for pid, name in products]
    releases = db.session.execute(
        select(Release.id, Product.name, Release.version, Release.kind).join(Product)
        .order_by(Product.name, Release.released_on.desc())).all()
    form.release_id.choices = [SelectChoice("", "No particular release")] + [
        SelectChoice(str(rid), f"{version} ({kind.replace('_', ' ')})", optgroup=name)
        for rid, name, version, kind in releases]
    return form


_NOTIFICATION = select(Notification).where(Notification.id == bindparam("notification_id"))
# The page names the product and the release: read with the notification, not one by one.
_NOTIFICATION_PAGE = _NOTIFICATION.options(joinedload(Notification.product), joinedload(Notification.release))


def _load(notification_id: int, statement: Select = _NOTIFICATION) -> Notification:
    notification = db.session.scalar(statement, {"notification_id": notification_id}) \
        if notification_id < 2**31 else None
    if notification is None:
        abort(404)
    return notification


@bp.get("/notifications")
def notifications():
    """Every notification, newest first, with its state and reach."""
    _require_sender()
    filters = [Filter("kind", "Kind", KIND_CHOICES, all_label="All kinds"),
               Filter("state", "State", list(STATE_LABELS.items()), all_label="Any state")]
    state = parse_list_args(request.args, endpoint="producer.notifications", sorts={"created", "title"},
                            default_sort="-created", filters=filters)
    query = select(Notification).options(joinedload(Notification.product))
    if state.q:
        query = query.where(Notification.title.icontains(state.q, autoescape=True))
    for name in ("kind", "state"):
        if name in state.filters:
            query = query.where(getattr(Notification, name) == state.filters[name])
    key = Notification.created_at if state.sort == "created" else Notification.title
    query = query.order_by(key.desc() if state.descending else key, Notification.id.desc())
    pagination = db.paginate(query, page=state.page, per_page=current_app.config["PAGE_SIZE"], error_out=False)
    table = Table(id="notifications", pagination=pagination, state=state, noun="notification", nouns="notifications",
                  caption="Notifications to customers",
                  columns=[Column("title", "Notification", sortable=True), Column("kind", "Kind"),
                           Column("state", "State"), Column("reach", "Organizations", numeric=True),
                           Column("emails", "Mails", numeric=True), Column("created", "Composed", sortable=True)],
                  empty_text="Compose a notice to tell customers about a service pack or a security patch.")
    return render("producer/notifications.html", fragment="producer/_notifications_table.html", table=table,
                  filters=filters, state_labels=STATE_LABELS, kind_labels=notices.KIND_LABELS)


@bp.route("/notifications/new", methods=["GET", "POST"])
def new_notification():
    """Compose a draft; nothing is sent until its page's "Send"."""
    actor = _require_sender()
    form = _compose_form(request.form if request.method == "POST" else None)
    if request.method == "POST" and form.validate():
        product = db.session.get(Product, form.product_id.data)
        release = db.session.get(Release, form.release_id.data) if form.release_id.data else None
        try:
            notification = notices.compose(
                actor, kind=form.kind.data, title=form.title.data, body=form.body.data, product=product,
                release=release, version_from=form.version_from.data, version_to=form.version_to.data,
                remind_after_days=form.remind_after_days.data, remind_partners=form.remind_partners.data)
        except ServiceError as error:
            db.session.rollback()
            field = getattr(form, error.field, None) if error.field else None
            (field.errors.append if field is not None else form.form_errors.append)(error.message)
        else:
            db.session.commit()
            return redirect(url_for("producer.notification", notification_id=notification.id))
    status = 422 if request.method == "POST" else 200
    return render("producer/notification_new.html", form=form, status=status)


@bp.get("/notifications/<int:notification_id>")
def notification(notification_id: int):
    """A draft's preview and "Send"; afterwards the job's progress and each recipient's mail."""
    _require_sender()
    # htmx asks for the recipients' table alone, which names neither the product nor the release
    # (an htmx request for a draft gets the whole page, which then reads them one by one).
    notification = _load(notification_id, _NOTIFICATION if is_htmx() else _NOTIFICATION_PAGE)
    if notification.state != "draft" and is_htmx():
        # The recipients' table in place (search, filter, page): nothing else of the page is read or rendered.
        return render("producer/_notification_recipients.html",
                      **_recipients(notification, notices.recipient_counts(notification)))
    context = {"notification": notification, "kind_labels": notices.KIND_LABELS, "state_labels": STATE_LABELS,
               "body_html": render_markdown(notification.body)}
    if notification.state == "draft":
        customer, preview_error = None, None
        name = query_text("customer", max_length=200)
        if name:
            customer = db.session.scalar(select(Organization).where(
                Organization.kind == "customer", func.lower(Organization.name) == name.lower()).limit(1))
            if customer is None:
                preview_error = "No customer organization has exactly that name."
        shown = notices.preview(notification, customer=customer, first_if_none=not name)
        return render("producer/notification.html", preview=shown, preview_name=name, preview_error=preview_error,
                      form=SendForm(), **context)
    progress = _progress(notification)
    return render("producer/notification.html", **context, **progress,
                  **_recipients(notification, progress["counts"]))


def _progress(notification: Notification) -> dict:
    acknowledged = None
    if notification.kind in MANDATORY_KINDS and notification.state == "sent":
        acknowledged = dict(db.session.execute(
            select(NotificationMessage.acknowledged_at.is_not(None), func.count())
            .where(NotificationMessage.notification_id == notification.id)
            .group_by(NotificationMessage.acknowledged_at.is_not(None))).all())
    return {"counts": notices.recipient_counts(notification), "acknowledged": acknowledged}


# The recipients' table: the columns it shows (never the bodies or headers, kilobytes a mail) and
# the organization each message is for; built once per shape (search, status filter, order).
RECIPIENT_COLUMNS = (OutboxEmail.id, OutboxEmail.to_addr, OutboxEmail.category, OutboxEmail.status,
                     OutboxEmail.attempts, OutboxEmail.last_error, OutboxEmail.sent_at, OutboxEmail.next_attempt_at)


@cache
def _recipient_statements(searched: bool, by_status: bool, descending: bool) -> tuple[Select, Select]:
    """(one page of rows, their count) of a notification's mail: parameters ``notification_id``,
    ``q`` (``contains_param``) when ``searched``, ``status`` when ``by_status`` (and the page's)."""
    query = select(*RECIPIENT_COLUMNS).where(OutboxEmail.notification_id == bindparam("notification_id"))
    if searched:
        query = query.where(contains(OutboxEmail.to_addr, "q"))
    if by_status:
        query = query.where(OutboxEmail.status == bindparam("status"))
    count = count_of(query)
    # The page first, then the names of its 25 (joined before the LIMIT, PostgreSQL would join every
    # mail of the notification to its organization and only then keep 25).
    to_addr = OutboxEmail.to_addr.desc() if descending else OutboxEmail.to_addr
    page = paged(query.add_columns(OutboxEmail.notification_message_id).order_by(to_addr, OutboxEmail.id)).subquery()
    rows = (select(page, Organization.name.label("org_name"))
            .outerjoin(NotificationMessage, NotificationMessage.id == page.c.notification_message_id)
            .outerjoin(Organization, Organization.id == NotificationMessage.org_id)
            .order_by(page.c.to_addr.desc() if descending else page.c.to_addr, page.c.id))
    return rows, count


def _recipients(notification: Notification, counts: dict[str, int]) -> dict:
    """The recipients' table; ``counts`` (mail by status) already gives its total unless searched."""
    filters = [Filter("status", "Mail status", MAIL_STATES, all_label="Every status")]
    state = parse_list_args(request.args, endpoint="producer.notification", sorts={"to"}, default_sort="to",
                            filters=filters, url_values={"notification_id": notification.id})
    status = state.filters.get("status")
    rows, count = _recipient_statements(bool(state.q), status is not None, state.descending)
    params = {"notification_id": notification.id}
    if state.q:
        params["q"] = contains_param(state.q)
    if status is not None:
        params["status"] = status
    # Unsearched, the status counts above are the table's total: no second count.
    total = None if state.q else (counts.get(status, 0) if status is not None else sum(counts.values()))
    pagination = statement_page(rows, params, page=state.page, total=total, count=count)
    table = Table(id="recipients", pagination=pagination, state=state, noun="mail", nouns="mails",
                  caption="Mail of this notification, per recipient",
                  columns=[Column("to", "Recipient", sortable=True), Column("org", "For"),
                           Column("category", "Mail"), Column("status", "Status"),
                           Column("attempts", "Attempts", numeric=True), Column("when", "Last change")],
                  empty_text="No mail yet: the worker queues it as it goes.")
    return {"recipients": table, "recipient_filters": filters}


@bp.get("/notifications/<int:notification_id>/progress")
def notification_progress(notification_id: int):
    """The job's progress, polled by the notification's page while the worker expands it."""
    _require_sender()
    notification = _load(notification_id)
    if is_htmx() and request.args.get("polling") == "1" and notification.state not in ("checking", "queuing"):
        # The job ended while the page watched: show it whole (the recipients' table too).
        return "", 204, {"HX-Refresh": "true"}
    return render("producer/_notification_progress.html", notification=notification, state_labels=STATE_LABELS,
                  **_progress(notification))


@bp.post("/notifications/<int:notification_id>/send")
def send_notification(notification_id: int):
    """Hand the draft to the worker: it checks every message, then queues them."""
    actor = _require_sender()
    notification = _load(notification_id)
    if not SendForm().validate_on_submit():
        abort(400)
    try:
        notices.send(actor, notification)
    except ServiceError as error:
        db.session.rollback()
        abort(error.status, error.message)
    db.session.commit()
    target = url_for("producer.notification", notification_id=notification.id)
    if is_htmx():  # the whole page changes: draft -> progress
        return "", 204, {"HX-Redirect": target}
    return redirect(target)
