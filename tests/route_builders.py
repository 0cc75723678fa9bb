"""Every test builds a new app, and Werkzeug compiles two URL builders per route for it.

``Rule.compile`` turns each route into two small Python functions (with and without the
query-string tail) through ``ast`` and ``compile()``: about 130 ms of CPU for the portal's
142 routes, on every one of the suite's thousands of ``create_app`` calls, far more than
any test spends on its own work. A builder depends only on the rule's parsed parts, its
defaults and which of the two it is; the converters are looked up through the bound rule
when a URL is built. So the suite compiles each distinct builder once and binds it to
every rule that needs it, as Werkzeug itself binds it (``__get__``).

Only the tests do this (``install()`` from ``conftest``); the product builds its app once.
``tests/test_route_builders.py`` checks that every cached builder is the code Werkzeug
would have compiled, and that each route builds the same URLs either way.
"""

from __future__ import annotations

from werkzeug.routing.rules import Rule

_compile = Rule._compile_builder
_builders: dict[tuple, object] = {}


def key(rule: Rule, append_unknown: bool) -> tuple:
    return (tuple(rule._trace), repr(sorted((rule.defaults or {}).items())), append_unknown)


def _cached(self: Rule, append_unknown: bool = True):
    k = key(self, append_unknown)
    builder = _builders.get(k)
    if builder is None:
        builder = _builders[k] = _compile(self, append_unknown)
    return builder


def install() -> None:
    """Compile each distinct route builder once per test process (a no-op if Werkzeug changed)."""
    if "_trace" in Rule.compile.__code__.co_names:
        Rule._compile_builder = _cached


def uncached(rule: Rule, append_unknown: bool = True):
    """What Werkzeug compiles for ``rule``, bypassing the cache."""
    return _compile(rule, append_unknown)
