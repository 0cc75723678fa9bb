"""Error pages: plain pages for browsers, short fragments for htmx, never a stack trace."""

from __future__ import annotations

from flask import Flask, render_template, request
from werkzeug.exceptions import HTTPException

from portal.extensions import db
from portal.services.errors import ServiceError


def _template() -> str:
    return "errors/fragment.html" if request.headers.get("HX-Request") else "errors/page.html"


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MB" if n >= 1024 * 1024 else f"{n // 1024} KB"


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if error.code and error.code >= 500:
            db.session.rollback()
        if error.code == 413:
            limit = request.max_content_length
            if limit and (request.content_length or 0) > limit:
                error.description = f"What you sent is larger than this page accepts ({_size(limit)} at most)."
            else:  # Werkzeug's form parser: MAX_FORM_MEMORY_SIZE or MAX_FORM_PARTS
                error.description = "The form holds more text or more fields than the portal accepts."
        # The exception's own headers say how to go on: Allow (405), Retry-After (429, 503),
        # WWW-Authenticate (401). Only its Content-Type is the template's business.
        headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
        return render_template(_template(), error=error), error.code or 500, headers

    @app.errorhandler(ServiceError)
    def _service_error(error: ServiceError):
        # Views show field errors next to the field; this is the backstop for the rest.
        db.session.rollback()
        fake = HTTPException(description=error.message)
        fake.code = error.status
        fake.name = "Not possible"
        return render_template(_template(), error=fake), error.status
