"""What every page shares: the render helper, template globals and security headers, the
checks every request gets before anything reads it, and the query-string readers.

Reading input:
- a text parameter of the query string: ``query_text("q", max_length=100)`` (control
  characters answer 400); a number: ``query_int("page", default=1, maximum=100_000)``;
- a form: a ``portal.forms.PortalForm``;
- request bodies: form-encoded or multipart only (415 otherwise, outside the JSON API),
  at most ``MAX_CONTENT_LENGTH`` (413); a view that takes file uploads is marked
  ``@accepts_upload`` and may receive up to ``UPLOAD_MAX_CONTENT_LENGTH``;
- ``<int:...>`` in a URL matches only numbers an INTEGER column can hold (else 404).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, abort, current_app, g, make_response, render_template, request
from flask.globals import _cv_request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import generate_csrf
from werkzeug.routing import IntegerConverter, UnicodeConverter

from portal import policy
from portal.auth_session import current_actor, memberships_of
from portal.forms import INTEGER_MAX, has_control_characters
from portal.markdown import render_markdown
from portal.ui import filter_options, status_badge

View = TypeVar("View", bound=Callable[..., Any])

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


# --- reading the query string ------------------------------------------------------------------


def query_text(name: str, *, max_length: int = 100, default: str = "") -> str:
    """A text parameter of the query string, stripped and cut to ``max_length`` characters.

    A control character answers 400 with a message (PostgreSQL refuses NUL in text; nothing
    a person types holds the others).
    """
    value = request.args.get(name, default)
    if has_control_characters(value):
        abort(400, description=f"Remove control characters from the “{name}” parameter.")
    return value.strip()[:max_length]


def query_int(name: str, *, default: int = 1, minimum: int = 1, maximum: int = 100_000) -> int:
    """A whole number of the query string, kept within [minimum, maximum]; anything else is ``default``."""
    raw = request.args.get(name, "").strip()
    digits = raw.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        return default
    value = int(raw) if len(digits) <= 18 else (minimum if raw.startswith("-") else maximum)
    return min(max(value, minimum), maximum)


# --- what every request gets before anything reads it ------------------------------------------

FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
JSON_BLUEPRINTS = frozenset({"api"})  # the JSON API (when it comes) reads JSON bodies itself
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REQUEST_ID = re.compile(r"[\x21-\x7e]{1,64}")  # printable ASCII, no spaces: fits audit_event.request_id


def accepts_upload(view: View) -> View:
    """Mark a view that takes file uploads: its requests may carry ``UPLOAD_MAX_CONTENT_LENGTH``.

    A mark, not code in the view: the limit must be set before anything reads the body, and
    CSRF protection reads the form in a ``before_request``.
    """
    view.accepts_upload = True  # type: ignore[attr-defined]
    return view


def request_id() -> str:
    """The client's ``X-Request-ID`` when it is short and printable, else a new one."""
    given = request.headers.get("X-Request-ID", "")
    return given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _check_request() -> None:
    g.request_id = request_id()
    if request.routing_exception is not None:
        return  # 404 or 405 says more than anything about the body
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "accepts_upload", False):
        request.max_content_length = current_app.config["UPLOAD_MAX_CONTENT_LENGTH"]
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        abort(413)  # before reading a byte of it
    if request.method in BODY_METHODS and request.blueprint not in JSON_BLUEPRINTS:
        has_body = (request.content_length or 0) > 0 or "Transfer-Encoding" in request.headers
        if has_body and request.mimetype not in FORM_TYPES:
            abort(415, description="Send the form as application/x-www-form-urlencoded or multipart/form-data.")


def init_request_checks(app: Flask) -> None:
    """Install the checks that run before anything reads the request (call before ``csrf.init_app``)."""
    app.url_map.converters["int"] = DatabaseIntegerConverter  # before any route is added
    app.before_request(_check_request)

    @app.after_request
    def _echo_request_id(response):
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response


class DatabaseIntegerConverter(IntegerConverter):
    """``<int:...>``: larger numbers than an INTEGER column holds do not match (404, not an overflow)."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = INTEGER_MAX,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


class CacheSafeSessionInterface(SecureCookieSessionInterface):
    """The signed-cookie session, never saved on a response shared caches may keep.

    A ``public`` (or ``s-maxage``) response with a Set-Cookie would hand one visitor's session
    to the next one the cache serves; such a response leaves the session as it was.
    """

    def save_session(self, app, session, response) -> None:
        cache = response.cache_control
        if cache.public or cache.s_maxage is not None:
            return
        super().save_session(app, session, response)


# --- pages --------------------------------------------------------------------------------------


def constant_url_for(app: Flask) -> Callable[..., str]:
    """``url_for`` for templates, remembering what a URL does not owe to its arguments.

    Every page builds the same links to the area's pages and the same static asset URLs; in
    a request, without arguments (or a static file name) such a URL is the endpoint's rule
    under the request's script root, so it is built once per endpoint and script root.

    A table links each row to its page (``url_for("customer.entitlement", code=e.code)``): with
    one path value and nothing else, the URL is the same prefix and suffix around that value
    converted for the URL (``Converter.to_url``, as the rule would), so the rule is built once
    and each row only converts its value. Any other call (more arguments, a query string, a
    scheme, external, relative to the blueprint) builds as before.
    """
    build = app.url_for
    built: dict[tuple[str, str, str | None], str] = {}
    around: dict[tuple[str, str, str], tuple[str, Callable[[Any], str], str] | None] = {}

    def url_for(endpoint: str, **values: Any) -> str:
        ctx = _cv_request.get(None)  # the request context, without going through the proxy
        if endpoint[:1] == "." or app.url_default_functions or ctx is None:
            return build(endpoint, **values)  # url_defaults functions could depend on the request
        if values and (endpoint != "static" or len(values) != 1 or "filename" not in values):
            if len(values) != 1:
                return build(endpoint, **values)
            ((name, value),) = values.items()
            key = (ctx.request.script_root, endpoint, name)
            recipe = around.get(key, _UNKNOWN)
            if recipe is _UNKNOWN:
                if len(around) > 2000:
                    around.clear()
                recipe = around[key] = _one_value_recipe(app, build, endpoint, name)
            if recipe is None or value is None:
                return build(endpoint, **values)
            prefix, to_url, suffix = recipe
            return prefix + to_url(value) + suffix
        key = (ctx.request.script_root, endpoint, values.get("filename"))
        url = built.get(key)
        if url is None:
            if len(built) > 2000:  # endpoints x script roots: a handful; never grows without bound
                built.clear()
            url = built[key] = build(endpoint, **values)
        return url

    return url_for


_UNKNOWN = object()


def _one_value_recipe(app: Flask, build: Callable[..., str], endpoint: str, name: str):
    """(prefix, converter, suffix) of ``endpoint``'s URLs with only the path value ``name``, when
    its one rule is a plain path with that one argument (else None: build each URL)."""
    rules = list(app.url_map.iter_rules(endpoint)) if endpoint in app.view_functions else []
    if len(rules) != 1 or app.url_map.host_matching:
        return None
    rule = rules[0]
    converter = rule._converters.get(name)  # noqa: SLF001 (Werkzeug keeps the rule's converters there)
    if rule.arguments != {name} or rule.defaults or rule.subdomain or rule.websocket or converter is None \
            or rule.rule.startswith("/<"):  # (a leading value would lose its slashes to the join)
        return None
    if isinstance(converter, IntegerConverter):
        marker: Any = 1_234_567_891
    elif type(converter) is UnicodeConverter:
        marker = "zq0marker0qz"
    else:
        return None
    url = build(endpoint, **{name: marker})  # a value the converter leaves as it is, found once in the URL
    converted = converter.to_url(marker)
    if url.count(converted) != 1:
        return None
    prefix, suffix = url.split(converted)
    return prefix, converter.to_url, suffix


def init_app(app: Flask) -> None:
    app.session_interface = CacheSafeSessionInterface()
    app.jinja_env.globals["url_for"] = constant_url_for(app)
    app.jinja_env.globals["status_badge"] = status_badge  # components/feedback.html exports it
    app.jinja_env.globals["filter_options"] = filter_options  # components/table.html's filters
    app.add_template_filter(render_markdown, "markdown")  # sanitized Markdown (portal/markdown.py)

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
