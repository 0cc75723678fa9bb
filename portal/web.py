"""What every page shares: the render helper, template globals and security headers."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, make_response, render_template, request
from flask_wtf.csrf import generate_csrf

from portal import policy
from portal.auth_session import current_actor, memberships_of

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def render(template: str, *, fragment: str | None = None, status: int = 200, **context: Any):
    """Render a full page, or for an htmx request the page's ``_fragment`` include.

    Both paths get the same context; the response varies on ``HX-Request``.
    """
    name = fragment if (fragment and is_htmx()) else template
    response = make_response(render_template(name, **context), status)
    response.vary.add("HX-Request")
    return response


def init_app(app: Flask) -> None:
    @app.context_processor
    def _globals():
        actor = current_actor()
        return {
            "actor": actor,
            "can": lambda action, obj=None: policy.can(actor, action, obj),
            "memberships": memberships_of(actor.user) if actor and actor.user else [],
            "csrf_token": generate_csrf,
            "local_login_enabled": current_app.config["LOCAL_LOGIN_ENABLED"],
        }

    @app.after_request
    def _security_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if current_app.config["BASE_URL"].startswith("https://"):
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if "Cache-Control" not in headers and response.mimetype == "text/html":
            headers["Cache-Control"] = "no-store"
        return response
