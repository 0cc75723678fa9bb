"""``/producer/import``: orders from a CSV file (validate, preview, commit all or nothing), and the
entitlements CSV export.

The upload is stored under the instance folder keyed by its SHA-256 and validated; the page
shows every error with its line number, or a preview of what would be created. "Import" posts
only the hash: the stored file is validated again before anything is written, so a re-posted or
edited preview is never trusted, and a file that no longer validates (a customer suspended
meanwhile, an order imported twice) writes nothing.

Progress: validating and committing 10,000 rows takes a few seconds (timed in
tests/producer/test_import.py), so each step is one request; htmx swaps the result in place and
shows a spinner meanwhile (without JavaScript the form posts and the page comes back).
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, request, url_for
from wtforms import FileField, HiddenField
from wtforms.validators import DataRequired, Length

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.listing import csv_stream
from portal.blueprints.producer import bp
from portal.extensions import db
from portal.forms import PortalForm
from portal.services.errors import ServiceError
from portal.services.imports import (
    COLUMNS,
    commit_orders,
    load_upload,
    store_upload,
    validate_orders,
)
from portal.web import accepts_upload, render

PREVIEW_ORDERS = 50
MAX_IMPORT_BYTES = 20 * 1024 * 1024


class UploadForm(PortalForm):
    file = FileField("CSV file of orders", validators=[DataRequired("Choose a CSV file.")])


class CommitForm(PortalForm):
    sha256 = HiddenField(validators=[DataRequired(), Length(min=64, max=64)])


def _require_import() -> None:
    if not policy.can(current_actor(), "import_orders"):
        abort(403)


def _page(*, form=None, plan=None, status: int = 200, committed: int | None = None):
    return render("producer/import.html", fragment="producer/_import_result.html", status=status,
                  form=form or UploadForm(formdata=None), plan=plan, preview=PREVIEW_ORDERS, columns=COLUMNS,
                  commit_form=CommitForm(formdata=None, sha256=plan.sha256) if plan is not None else None,
                  committed=committed)


@bp.get("/import")
def import_orders():
    """The upload form and what the file's columns mean."""
    return _page()


@bp.post("/import")
@accepts_upload
def upload_orders():
    """Validate an uploaded CSV of orders: line-numbered errors, or a preview."""
    _require_import()
    form = UploadForm()
    if not form.validate():
        return _page(form=form, status=422)
    upload = form.file.data
    try:
        data = upload.stream.read(MAX_IMPORT_BYTES + 1) if hasattr(upload, "stream") else b""
    finally:
        if hasattr(upload, "close"):
            upload.close()  # a large upload is spooled to a temporary file
    if len(data) > MAX_IMPORT_BYTES:
        form.file.errors = [f"A file of orders is at most {MAX_IMPORT_BYTES // (1024 * 1024)} MB; split it."]
        return _page(form=form, status=413)
    if not data:
        form.file.errors = ["The file is empty."]
        return _page(form=form, status=422)
    plan = validate_orders(data)
    db.session.rollback()  # validation reads only
    if plan.ok:
        store_upload(current_app.instance_path, data)
    return _page(form=form, plan=plan, status=200 if plan.ok else 422)


@bp.post("/import/commit")
def commit_import():
    """Import a previewed file: validated again from the stored copy, then written all or nothing."""
    actor = current_actor()
    _require_import()
    form = CommitForm()
    if not form.validate():
        abort(422, "Upload the file again.")
    data = load_upload(current_app.instance_path, form.sha256.data)
    if data is None:
        abort(422, "This file is not on record any more; upload it again.")
    plan = validate_orders(data)
    if not plan.ok:
        db.session.rollback()
        return _page(plan=plan, status=422)
    try:
        ids = commit_orders(actor, plan)
    except ServiceError as error:
        db.session.rollback()
        abort(error.status, error.message)
    db.session.commit()
    message = f"Imported {len(ids)} entitlement{'s' if len(ids) != 1 else ''} with {plan.line_count} lines."
    if request.headers.get("HX-Request") == "true":
        return _page(committed=len(ids))
    flash(message)
    return redirect(url_for("producer.import_orders"))


@bp.get("/export/entitlements.csv")
def export_entitlements():
    """Every entitlement as CSV (code, owner with its path, chain, attachments, lines).

    Streamed: a fixed number of statements whatever the number of entitlements, each read
    through its cursor as the rows are sent (``portal.exchange``).
    """
    return csv_stream(current_actor())
