"""How the customer pages of the hierarchy, users and inbox answer a form: one shape for all.

- htmx: the changed part of the page (a fragment) with a toast, or with the form's errors
  next to their fields (422, which the portal's htmx config swaps);
- without JavaScript: a redirect to the page with a flash message after a change, or the
  whole page with the errors.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from flask import abort, flash, make_response, redirect, render_template, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest

from portal.extensions import db
from portal.services.errors import ServiceError
from portal.ui import toast
from portal.web import is_htmx


def show_error(form, error: ServiceError, *, fields: dict[str, str] | None = None) -> None:
    """A service's refusal next to the field it names (``fields`` maps a service's field name
    to the form's), or above the form."""
    name = (fields or {}).get(error.field, error.field) if error.field else None
    field = getattr(form, name, None) if name else None
    if field is None:
        form.form_errors.append(error.message)
    else:
        field.errors = [*field.errors, error.message]


def refuse(error: ServiceError):
    """A refusal that is not about what was typed: 403 (not allowed) or 409 (state)."""
    db.session.rollback()
    abort(error.status, error.message)


def fragment(template: str, *, status: int = 200, message: str | None = None, kind: str = "success",
             **context):
    """An htmx answer: ``template`` rendered, with a toast when there is a message."""
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return toast(response, message, kind) if message else response


def done(url: str, message: str):
    """Without JavaScript: back to the page, the result in a flash message."""
    flash(message)
    return redirect(url)


def current_query() -> MultiDict:
    """The query string of the page an htmx request came from (``HX-Current-URL``), so that a
    list re-rendered after a change keeps its search, filters, sort and page. Only the query is
    read; it goes through the list's own checks like any other."""
    if not is_htmx():
        return MultiDict(request.args)
    url = request.headers.get("HX-Current-URL", "")
    return MultiDict(parse_qsl(urlsplit(url).query)[:50]) if url else MultiDict()


def list_state(parse, args):
    """``parse(args)`` for a list re-rendered after a change; a page URL it refuses (a forged
    header: the change is made already) shows the list as it starts instead of answering 400."""
    try:
        return parse(args)
    except BadRequest:
        return parse(MultiDict())
