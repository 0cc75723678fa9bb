"""The suite's cache of Werkzeug's URL builders (``tests/route_builders.py``) changes nothing."""

from __future__ import annotations

from werkzeug.routing.rules import Rule

from tests import route_builders


def _code(function) -> tuple:
    code = getattr(function, "__func__", function).__code__
    return code.co_code, code.co_consts, code.co_names, code.co_varnames


def test_the_cache_is_in_use_and_shared_between_apps(app):
    assert Rule._compile_builder is route_builders._cached
    rule = app.url_map._rules_by_endpoint["customer.entitlement"][0]
    again = Rule(rule.rule, endpoint="x")
    app.url_map.add(again)
    assert again._build.__func__ is rule._build.__func__


def test_every_route_gets_the_builder_werkzeug_would_compile(app):
    rules = list(app.url_map.iter_rules())
    assert len(rules) > 100
    for rule in rules:
        for append_unknown, built in ((False, rule._build), (True, rule._build_unknown)):
            assert _code(built) == _code(route_builders.uncached(rule, append_unknown)), rule.rule
            assert built.__self__ is rule


def test_each_route_builds_the_same_urls_either_way(app):
    for rule in app.url_map.iter_rules():
        values = {name: "7" for name in rule.arguments}
        for append_unknown, built in ((False, rule._build), (True, rule._build_unknown)):
            fresh = route_builders.uncached(rule, append_unknown).__get__(rule, None)
            extra = {"q": "a b", "page": "2"} if append_unknown else {}
            assert built(**values, **extra) == fresh(**values, **extra), rule.rule
