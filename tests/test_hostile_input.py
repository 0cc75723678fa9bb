"""Hostile input against every route: whatever arrives, the answer is never a 5xx.

The routes are found in ``app.url_map`` and their fields in the pages themselves (every
``<form>`` of every page, as each identity sees it), so a route or a field added later is
covered without editing this file. Each case below is one test; it sends its hostile
requests to every route, as anonymous and as signed-in users of the route's area, and
collects every 5xx (or exception) into one failure message.

A route's ordinary values (URL parts, a valid form) come from the authorization matrix,
which must name every route anyway; a route it does not name gets ``1`` / ``x``.

All cases share one app and one world (``prober``, module scope): building them per case
would multiply the runtime by the number of cases. Each case gets new users for its roles
(a probe may have changed the last ones), and a client signs in afresh after any request
that may have changed its session.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from flask import url_for
from sqlalchemy import select
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import IntegerConverter

from portal.extensions import db
from portal.models import User
from portal.services.accounts import create_user
from tests.conftest import IsolatedClient, make_test_app, sign_in
from tests.factories import Factory
from tests.test_authz_matrix import ANONYMOUS, MATRIX, MEMBER_ROLES, NO_MEMBERSHIP, World, build_world

# Query parameters every route gets, besides those its pages' GET forms name.
COMMON_QUERY = ("q", "page", "next", "sort", "order", "per_page", "status", "id", "org_id", "customer_id")
# One signed-in user per area tries the area's routes; routes outside the areas are tried by
# anonymous, a user without membership and a partner (whose session carries the most state).
AREA_ROLE = {"producer": "producer_admin", "customer": "customer_admin", "partner": "reseller_admin"}
OUTSIDE_AREAS_ROLES = (ANONYMOUS, NO_MEMBERSHIP, "reseller_admin")
NUL = "Con\x00toso"
CONTROLS = "a\x01b\x08c\x0bd\x1be\x7ff\x85g"
HUGE = 25 * 1024 * 1024
BAD_IDS = ("0", "-1", "99999999999999999999999999", "abc", "%00",
           "\u0661")  # an Arabic-Indic digit: str.isdigit() and int() say yes, the database says no


@dataclass
class Target:
    """One route and method, with ordinary values to fill in around the hostile one."""

    endpoint: str
    method: str
    rule: Any
    area: str | None
    values: Callable[[World, str], dict[str, Any]] | dict[str, Any]
    form: Callable[[World, str], dict[str, Any]] | None
    fields: dict[str, str] = field(default_factory=dict)  # form field -> default value from the page
    query: set[str] = field(default_factory=set)

    def path(self, world: World, role: str, **forged: str) -> str:
        """The URL path; ``forged`` URL parts are put in raw (percent-quoted), unchecked by converters."""
        values = self.values(world, role) if callable(self.values) else dict(self.values)
        for name, converter in self.rule._converters.items():
            values.setdefault(name, 1 if isinstance(converter, IntegerConverter) else "x")
        if not forged:
            return urlsplit(url_for(self.endpoint, **values)).path
        path = self.rule.rule
        for name in self.rule.arguments:
            raw = forged.get(name, str(values[name]))
            path = re.sub(r"<(?:[^<>:]+:)?" + name + r">", quote(raw, safe="%"), path)
        return path

    def ordinary_form(self, world: World, role: str) -> dict[str, str]:
        form = dict(self.fields)
        if self.form:
            form |= {k: str(v) for k, v in self.form(world, role).items()}
        return form


class _Forms(HTMLParser):
    """The forms of a page: (method, action, {field: default})."""

    def __init__(self, page_path: str):
        super().__init__()
        self.page_path = page_path
        self.forms: list[tuple[str, str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append(((attrs.get("method") or "get").upper(), attrs.get("action") or self.page_path, {}))
        elif tag in ("input", "textarea", "select", "button") and attrs.get("name") and self.forms:
            self.forms[-1][2].setdefault(attrs["name"], attrs.get("value") or "")
        # Attributes of htmx requests sent outside a form (hx-get="..." on an input) name GET routes too.
        for attr in ("hx-get", "hx-post"):
            if attrs.get(attr) and attrs.get("name"):
                self.forms.append((attr[3:].upper(), attrs[attr], {attrs["name"]: ""}))


def _targets(app) -> list[Target]:
    rows = {}
    for row in MATRIX:
        if row.relation in ("-", "own"):
            rows.setdefault((row.endpoint, row.method), row)
    targets = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            row = rows.get((rule.endpoint, method))
            area = rule.endpoint.split(".")[0]
            targets.append(Target(
                rule.endpoint, method, rule, area if area in AREA_ROLE else None,
                values=row.values if row else {}, form=row.form if row else None,
            ))
    return targets


def _roles_for(target: Target) -> list[str]:
    if target.area:
        return [ANONYMOUS, AREA_ROLE[target.area]]
    return list(OUTSIDE_AREAS_ROLES)


class Prober:
    """Sends requests as each identity and remembers every 5xx."""

    def __init__(self, app):
        self.app = app
        self.world = build_world()
        self.cases_run = 0
        self._new_users()
        with app.test_request_context():
            self.targets = _targets(app)
        self.failures: list[str] = []
        self.sent = 0
        self._discover_fields()

    def _new_users(self) -> None:
        """Users for every role, new for each case: a probe may have changed the last ones
        (an invitation accepted gives the user without membership one)."""
        make, tag = Factory(), f"case{self.cases_run}"
        self.users: dict[str, int] = {
            role: make.user(self.world.orgs[org_key], membership_role, email=f"{role}.{tag}@example.com").id
            for role, (_, org_key, membership_role) in MEMBER_ROLES.items()
        }
        self.users[NO_MEMBERSHIP] = create_user(f"lonely.{tag}@example.com", "No Membership Yet").id
        db.session.commit()
        self._clients: dict[str, Any] = {}

    def client(self, role: str):
        """A client of ``role``; signed in afresh after anything that may have changed its session."""
        if role == ANONYMOUS:
            return self.app.test_client()
        if role not in self._clients:
            db.session.expire_all()  # a sign-out among the probes bumps the session version
            user = db.session.scalar(select(User).where(User.id == self.users[role]))
            self._clients[role] = sign_in(self.app.test_client(), user, self.world.org_of(role))
        return self._clients[role]

    def run(self, case: Callable[[Prober], None]) -> tuple[list[str], int]:
        self.cases_run += 1
        self._new_users()
        self.failures, self.sent = [], 0
        case(self)
        return self.failures, self.sent

    def _discover_fields(self) -> None:
        """GET every page as every identity and read its forms: which fields each route takes."""
        adapter = self.app.url_map.bind("localhost")
        by_route = {(t.endpoint, t.method): t for t in self.targets}
        for target in [t for t in self.targets if t.method == "GET"]:
            for role in _roles_for(target):
                with self.app.test_request_context():
                    path = target.path(self.world, role)
                client = self.client(role)
                db.session.rollback()  # no stale snapshot: a GET may write (downloads are audited)
                with client.get(path) as response:
                    if response.mimetype != "text/html":
                        continue
                    parser = _Forms(path)
                    parser.feed(response.get_data(as_text=True))
                for method, action, fields in parser.forms:
                    try:
                        endpoint, _ = adapter.match(urlsplit(action).path, method=method)
                    except (NotFound, MethodNotAllowed):
                        continue
                    found = by_route.get((endpoint, method))
                    if found is None:
                        continue
                    if method == "GET":
                        found.query.update(fields)
                    else:
                        for name, value in fields.items():
                            found.fields.setdefault(name, value)

    def send(self, target: Target, role: str, description: str, **kwargs) -> None:
        kwargs.setdefault("method", target.method)
        self.sent += 1
        client = self.client(role)
        if kwargs["method"] != "GET":
            self._clients.pop(role, None)  # the next request signs in again
        db.session.rollback()  # hold no SQLite lock while the request runs
        try:
            response = client.open(**kwargs)
        except Exception as error:  # noqa: BLE001  (TESTING propagates exceptions: that is a 500)
            self.failures.append(f"{target.method} {target.endpoint} as {role}, {description}: "
                                 f"{type(error).__name__}: {str(error)[:200]}")
            db.session.rollback()
            return
        if response.status_code >= 500:
            self.failures.append(f"{target.method} {target.endpoint} as {role}, {description}: "
                                 f"{response.status_code}")
        response.close()

    def each(self) -> Iterator[tuple[Target, str]]:
        for target in self.targets:
            for role in _roles_for(target):
                yield target, role


# --- the cases ------------------------------------------------------------------------------
# Each takes the prober and sends its requests; ids name what is hostile.


def _query_names(target: Target) -> list[str]:
    return sorted(set(COMMON_QUERY) | target.query)


def _in_every_query_parameter(value: str, **headers: str):
    def case(p: Prober) -> None:
        for target, role in p.each():
            with p.app.test_request_context():
                path = target.path(p.world, role)
                form = target.ordinary_form(p.world, role) if target.method != "GET" else None
            query = dict.fromkeys(_query_names(target), value)
            p.send(target, role, f"every query parameter={value!r}", path=path, query_string=query, data=form,
                   headers=headers)
    return case


def _in_each_form_field(value: str, *, one_at_a_time: bool):
    def case(p: Prober) -> None:
        for target, role in p.each():
            if target.method == "GET":
                continue
            with p.app.test_request_context():
                path = target.path(p.world, role)
                form = target.ordinary_form(p.world, role)
            names = sorted(form)
            if one_at_a_time:
                for name in names:
                    p.send(target, role, f"{name}={value!r}", path=path, data=form | {name: value})
            else:
                p.send(target, role, f"every field={value!r}", path=path, data=dict.fromkeys(names, value))
    return case


def _with_headers(**headers: str):
    def case(p: Prober) -> None:
        for target, role in p.each():
            with p.app.test_request_context():
                path = target.path(p.world, role)
                form = target.ordinary_form(p.world, role) if target.method != "GET" else None
            p.send(target, role, f"headers {headers!r}"[:80], path=path, data=form, headers=headers)
    return case


def _json_body(p: Prober) -> None:
    bodies = ['{"email": 5, "password": ["x"], "organization": {"a": 1}, "org_id": [1], "customer_id": null}',
              "[1, 2, 3]", '"just a string"', "{not json"]
    for target, role in p.each():
        if target.method == "GET":
            continue
        with p.app.test_request_context():
            path = target.path(p.world, role)
        for body in bodies:
            p.send(target, role, f"JSON {body[:30]!r}", path=path, data=body, content_type="application/json")


def _huge_body(p: Prober) -> None:
    form = b"organization=" + b"x" * HUGE
    multipart = b"--b\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\n" + b"x" * HUGE + b"\r\n--b--\r\n"
    for target, role in p.each():
        with p.app.test_request_context():
            path = target.path(p.world, role)
        p.send(target, role, "25 MB form", path=path, data=form, content_type="application/x-www-form-urlencoded")
        if target.method != "GET":
            p.send(target, role, "25 MB multipart", path=path, data=multipart,
                   content_type="multipart/form-data; boundary=b")


def _malformed_bodies(p: Prober) -> None:
    bodies = [
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nno end"),
        ("multipart/form-data", b"--\r\n\r\n"),  # no boundary at all
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--xyz--\r\n"),
        ("multipart/form-data; boundary=xyz",
         b"--xyz\r\nContent-Disposition: form-data; name=\"organization\"\r\n\r\nA\x00B\r\n--xyz--\r\n"),
        ("application/x-www-form-urlencoded", b"organization=%ff%fe&email=%c3%28&message=%e2%82&%%%=%"),
        ("application/x-www-form-urlencoded", b"organization=" + b"&" * 5000),  # more parts than allowed
        ("text/plain", b"organization=Contoso"),
    ]
    for target, role in p.each():
        if target.method == "GET":
            continue
        with p.app.test_request_context():
            path = target.path(p.world, role)
        for content_type, body in bodies:
            p.send(target, role, f"{content_type} {body[:30]!r}", path=path, data=body, content_type=content_type)


def _forged_ids(p: Prober) -> None:
    for target, role in p.each():
        with p.app.test_request_context():
            form = target.ordinary_form(p.world, role) if target.method != "GET" else None
        for bad in BAD_IDS:
            for name in target.rule.arguments:
                with p.app.test_request_context():
                    path = target.path(p.world, role, **{name: bad})
                p.send(target, role, f"<{name}>={bad[:20]!r}", path=path, data=form)
            if form:
                with p.app.test_request_context():
                    path = target.path(p.world, role)
                for name in [n for n in form if n == "id" or n.endswith("_id")]:
                    p.send(target, role, f"{name}={bad[:20]!r}", path=path, data=form | {name: bad})


def _overlong_page(p: Prober) -> None:
    for target, role in p.each():
        if target.method != "GET":
            continue
        with p.app.test_request_context():
            path = target.path(p.world, role)
        for page in ("9" * 5000, "99999999999999999999", "-5"):
            p.send(target, role, f"page={page[:20]!r}", path=path, query_string={"page": page, "per_page": page})


def _invalid_utf8(p: Prober) -> None:
    for target, role in p.each():
        with p.app.test_request_context():
            path = target.path(p.world, role)
            form = target.ordinary_form(p.world, role) if target.method != "GET" else None
        raw = "&".join(f"{name}=%ff%fe%c3%28" for name in _query_names(target))
        p.send(target, role, "invalid UTF-8 query", path=f"{path}?{raw}", data=form)
        p.send(target, role, "invalid UTF-8 and NUL in the path", path=path.rstrip("/") + "/%ff%fe%00", data=form)
        if form:
            body = urlencode(dict.fromkeys(form, "x")).encode() + b"&" + raw.encode()
            p.send(target, role, "invalid UTF-8 form", path=path, data=body,
                   content_type="application/x-www-form-urlencoded")


CASES: dict[str, Callable[[Prober], None]] = {
    "nul-in-every-query-parameter": _in_every_query_parameter(NUL),
    "control-chars-in-every-query-parameter": _in_every_query_parameter(CONTROLS),
    "nul-in-each-form-field": _in_each_form_field(NUL, one_at_a_time=True),
    "control-chars-in-every-form-field": _in_each_form_field(CONTROLS, one_at_a_time=False),
    "overlong-text-in-every-form-field": _in_each_form_field("x" * 100_000, one_at_a_time=False),
    "request-id-65-chars": _with_headers(**{"X-Request-ID": "r" * 65}),
    "request-id-control-chars": _with_headers(**{"X-Request-ID": "abc\x01\x7fdef"}),
    "request-id-spaces-and-latin1": _with_headers(**{"X-Request-ID": "a b\u00e9"}),
    "htmx-nul-in-every-query-parameter": _in_every_query_parameter(NUL, **{"HX-Request": "true"}),
    "json-body": _json_body,
    "25mb-body": _huge_body,
    "malformed-bodies": _malformed_bodies,
    "forged-ids": _forged_ids,
    "overlong-page-number": _overlong_page,
    "invalid-utf8-escapes": _invalid_utf8,
}


@pytest.fixture(scope="module")
def prober(test_database, signing_key_dir, tmp_path_factory) -> Iterator[Prober]:
    """One app and one world with every role, for all the cases."""
    app = make_test_app(test_database.fresh_url(tmp_path_factory.mktemp("hostile")), signing_key_dir)
    app.test_client_class = IsolatedClient
    with app.app_context():
        yield Prober(app)
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_hostile_input_never_gets_a_5xx(prober, case):
    failures, sent = prober.run(CASES[case])
    assert sent > 0
    assert not failures, f"{len(failures)} of {sent} requests failed:\n" + "\n".join(failures[:40])


def test_the_probe_finds_routes_and_fields(prober):
    """The discovery works: known routes, their form fields and GET parameters are found."""
    found = {(t.endpoint, t.method): t for t in prober.targets}
    assert {"email", "password", "next"} <= set(found["auth.login", "POST"].fields)
    assert {"organization", "message"} <= set(found["public.no_access", "POST"].fields)
    assert "customer_id" in found["partner.switch_customer", "POST"].fields
    assert "q" in found["partner.customers", "GET"].query
    rules = {(r.endpoint, m) for r in prober.app.url_map.iter_rules() for m in r.methods - {"HEAD", "OPTIONS"}}
    assert set(found) == rules
    # A route with URL parts gets real ones from a matrix row of its own side ("own" or "-"):
    # made-up parts (1, "x") would stop every hostile request at a 404 before the view reads it.
    guessed = sorted(f"{t.method} {t.endpoint}" for t in prober.targets if t.rule.arguments and not t.values)
    assert guessed == [], "give these a matrix row with relation 'own' or '-' and its values"
