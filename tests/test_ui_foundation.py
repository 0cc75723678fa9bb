"""The UI foundation every portal shares: Bootstrap and htmx from static/vendor under the strict
CSP, the area layouts, and the list state in the URL (portal/ui.py)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Response
from werkzeug.exceptions import BadRequest

from portal.ui import Filter, ListState, parse_list_args, toast

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "portal" / "templates"


def _template_lines():
    for path in sorted(TEMPLATES.rglob("*.html")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            yield f"{path.relative_to(TEMPLATES)}:{number}", line


def test_templates_have_no_inline_style_or_script():
    """The CSP ignores style="..." silently and blocks inline scripts and handlers: use classes
    and static/portal.js. Mail (templates/mail/) is read in mail clients, which know no portal
    stylesheet and no CSP: its HTML styles itself inline, and never has scripts."""
    inline_style = re.compile(r"\sstyle\s*=", re.IGNORECASE)
    inline_script = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.IGNORECASE)
    handler = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
    offenders = [f"{where}: {line.strip()}" for where, line in _template_lines()
                 if (inline_style.search(line) and not str(where).startswith("mail/"))
                 or inline_script.search(line) or handler.search(line)]
    assert offenders == []


def test_every_page_loads_bootstrap_and_htmx_from_our_own_static_folder(client):
    page = client.get("/login").get_data(as_text=True)
    for asset in ("vendor/bootstrap.min.css", "vendor/htmx.min.js", "portal.css", "portal.js"):
        assert f'/static/{asset}"' in page
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200, f"{asset}: run `make setup` (it copies the vendor files)"
        response.close()
    assert "cdn" not in page.lower()
    # The sign-in page needs no Bootstrap JS; the portal areas load it for their nav bar and toasts.
    assert "bootstrap.bundle" not in page


def test_setup_copies_bootstrap_like_htmx():
    makefile = (ROOT / "Makefile").read_text()
    package = json.loads((ROOT / "package.json").read_text())
    assert package["dependencies"]["bootstrap"].startswith("5.3")
    for asset in ("htmx.min.js", "bootstrap.min.css", "bootstrap.bundle.min.js"):
        assert f"$(VENDOR)/{asset}" in makefile
    assert "portal/static/vendor/" in (ROOT / ".gitignore").read_text().splitlines()


def test_area_layout_marks_the_current_page_and_names_the_user(make, login_as):
    customer = make.customer("Contoso Group")
    client = login_as(make.user(customer, "admin"))
    page = client.get("/customer/").get_data(as_text=True)
    assert re.search(r'<a class="nav-link active" href="/customer/" aria-current="page">Overview</a>', page)
    assert page.count('aria-current="page"') == 1
    assert '<span class="org fw-semibold">Contoso Group</span>' in page
    assert "vendor/bootstrap.bundle.min.js" in page


# --- the list state in the URL ---------------------------------------------------------------

PRODUCTS = Filter("product", "Product", [("1", "Acme Studio"), ("2", "Acme Cloud Sync")])


def _parse(app, query: dict):
    with app.test_request_context():
        return parse_list_args(query, endpoint="customer.home", sorts={"code", "purchased"},
                               default_sort="-purchased", filters=[PRODUCTS])


def test_list_state_round_trips_through_the_url(app):
    state = _parse(app, {"q": " ent-1 ", "product": "2", "sort": "code", "page": "3"})
    assert (state.q, dict(state.filters), state.sort, state.descending, state.page) == ("ent-1", {"product": "2"},
                                                                                         "code", False, 3)
    with app.test_request_context():
        assert state.url(page=4) == "/customer/?q=ent-1&product=2&sort=code&page=4"
        # Any other change starts at page 1; the default sort is left out of the URL.
        assert state.url(sort="purchased", descending=True) == "/customer/?q=ent-1&product=2"
        assert state.sorted_by("code") == "/customer/?q=ent-1&product=2&sort=-code"
        assert state.filter_url(product="1") == "/customer/?product=1"
    default = _parse(app, {})
    assert (default.sort, default.descending, default.page, default.narrowed) == ("purchased", True, 1, False)


@pytest.mark.parametrize("query", [
    {"q": "abc\x00"}, {"q": "tab\there"}, {"q": "x" * 101}, {"product": "3"}, {"product": "1\x7f"},
    {"sort": "password"}, {"sort": "-owner_id"}, {"page": "two"}, {"page": "-1"}, {"page": "9" * 13},
])
def test_hostile_list_arguments_answer_400(app, query):
    with pytest.raises(BadRequest):
        _parse(app, query)


def test_huge_page_numbers_are_capped(app):
    assert _parse(app, {"page": "999999999999"}).page == 100_000
    assert _parse(app, {"page": "0"}).page == 1


def test_toast_travels_in_hx_trigger_as_ascii():
    response = toast(Response(), "Returned 2 seats of host-ä")
    header = response.headers["HX-Trigger"]
    assert header.isascii()
    assert json.loads(header) == {"portal:toast": {"message": "Returned 2 seats of host-ä", "kind": "success"}}


def test_list_state_is_immutable():
    state = ListState(endpoint="customer.home")
    with pytest.raises(AttributeError):
        state.page = 2  # type: ignore[misc]


def test_templates_url_for_remembers_only_urls_that_depend_on_nothing(app):
    """Templates' url_for remembers argument-free URLs (and static files) per script root;
    anything else is built each time, exactly as Flask's url_for builds it."""
    from flask import url_for

    template_url_for = app.jinja_env.globals["url_for"]
    for script_root in ("", "/portal"):
        with app.test_request_context("/customer/", base_url=f"http://localhost{script_root}/"):
            for endpoint, values in [("customer.home", {}), ("static", {"filename": "portal.css"}),
                                     ("customer.entitlement", {"code": "E-1"}),
                                     ("customer.entitlements", {"q": "x", "page": 2}),
                                     ("public.index", {"_external": True})]:
                for _ in range(2):  # built, then remembered
                    assert template_url_for(endpoint, **values) == url_for(endpoint, **values)
            assert template_url_for("customer.home") == f"{script_root}/customer/"


# The macro ``status_badge`` was before it became portal.ui.status_badge: the same HTML, always.
_BADGE_MACRO = """{% set BADGE_CLASSES = classes %}
{%- macro status_badge(status, label=None) -%}
<span class="badge status-badge {{ BADGE_CLASSES.get(status, 'text-bg-light border') }}">
{{- label or status|replace('_', ' ')|capitalize }}</span>
{%- endmacro -%}
{{ status_badge(status, label) }}"""


@pytest.mark.parametrize("status", ["active", "ending soon", "over allowance", "queued", "partner_access",
                                    "SENT", "<b>&", "security_patch"])
@pytest.mark.parametrize("label", [None, "", "Ends 2026-01-31", "Over by 3", "<i>x</i> & y"])
def test_status_badge_renders_what_the_macro_rendered(app, status, label):
    from markupsafe import Markup

    from portal.ui import BADGE_CLASSES, status_badge

    macro = app.jinja_env.from_string(_BADGE_MACRO)
    exported = app.jinja_env.from_string('{% from "components/feedback.html" import status_badge %}'
                                         "{{ status_badge(status, label) }}")
    for shown in (label, Markup(label) if label else label):  # noqa: S704 (a label already HTML)
        expected = macro.render(classes=BADGE_CLASSES, status=status, label=shown)
        assert str(status_badge(status, shown)) == expected
        assert exported.render(status=status, label=shown) == expected
        assert status_badge(status, shown) == status_badge(status, shown)  # remembered: the same again


@pytest.mark.parametrize("script_root", ["", "/portal"])
def test_list_urls_are_the_urls_url_for_builds(app, script_root):
    """ListState builds its list's URL once a request and appends each link's query string: the
    very URLs url_for builds (quoting, order, path values, another script root)."""
    from flask import url_for

    state = ListState(endpoint="producer.notification", q="a b/ü&=+%?", filters={"status": "sent"}, sort="to",
                      descending=True, page=3, default_sort="to", url_values={"notification_id": 7})
    extra = ListState(endpoint="customer.home", q="x", url_values={"view": "all"})  # not a path value
    for _ in range(2):  # a second request: not the first one's URL
        with app.test_request_context("/", base_url=f"http://localhost{script_root}/"):
            for _ in range(2):
                for made, changes in [(state.url(), {}), (state.url(page=4), {"page": 4}),
                                      (state.url(q=""), {"q": "", "page": 1}),
                                      (state.sorted_by("to"), {"descending": False, "page": 1})]:
                    args = replace(state, **changes).args()
                    assert made == url_for("producer.notification", notification_id=7, **args)
                assert state.url("customer.home", page=2) == url_for("customer.home", notification_id=7,
                                                                    **replace(state, page=2).args())
                assert extra.url(page=2) == url_for("customer.home", view="all", q="x", page=2)
            assert state.url(page=2).startswith(f"{script_root}/producer/notifications/7?")


def test_templates_url_for_builds_one_value_urls_around_the_value_as_url_for_does(app):
    """A link to a row's page (one path value) is the rule's prefix and suffix around the value
    converted as the rule converts it: the very URL url_for builds, whatever the value."""
    from flask import url_for

    template_url_for = app.jinja_env.globals["url_for"]
    cases = [("customer.entitlement", "code", ["ENT-7F3K", "a b/ü%?#&+", "zq0marker0qz", 7, "-"]),
             ("producer.notification", "notification_id", [1, 2_147_483_647, "12"]),
             ("customer.inbox_message", "message_id", [5, 6]),
             ("customer.entitlements", "page", [2, "x y"]),  # not a path value: a query string
             ("customer.entitlements", "_anchor", ["x"])]
    for script_root in ("", "/portal"):
        with app.test_request_context("/", base_url=f"http://localhost{script_root}/"):
            for endpoint, name, values in cases:
                for value in values:
                    for _ in range(2):
                        assert template_url_for(endpoint, **{name: value}) == url_for(endpoint, **{name: value})
            assert template_url_for("customer.entitlement", code="E 1") == f"{script_root}/customer/entitlements/E%201"
