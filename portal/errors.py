"""Error pages: plain pages for browsers, short fragments for htmx, never a stack trace."""

from __future__ import annotations

from flask import Flask, render_template, request
from werkzeug.exceptions import HTTPException

from portal.extensions import db
from portal.services.errors import ServiceError


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if error.code and error.code >= 500:
            db.session.rollback()
        template = "errors/fragment.html" if request.headers.get("HX-Request") else "errors/page.html"
        return render_template(template, error=error), error.code or 500

    @app.errorhandler(ServiceError)
    def _service_error(error: ServiceError):
        # Views show field errors next to the field; this is the backstop for the rest.
        db.session.rollback()
        template = "errors/fragment.html" if request.headers.get("HX-Request") else "errors/page.html"
        fake = HTTPException(description=error.message)
        fake.code = error.status
        fake.name = "Not possible"
        return render_template(template, error=fake), error.status
