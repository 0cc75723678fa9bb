"""CI's part of ``make bench``: every page of the customer, partner and producer areas, found
the bench's way (``bench.pages``: routes from ``app.url_map``, parameters filled through the
policy's scopes, htmx fragments too), answers without an error for the bench's actors, and
runs the same number of SQL statements at 1k entitlements as at 3k.

No timing here (CI machines are too noisy for that); ``make bench`` does the timing.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event, select

from bench.actors import BENCH_PASSWORD, prepare_actors
from bench.datasets import parse_size
from bench.gunicorn_conf import TRANSACTION_CONTROL
from bench.pages import discover, errors, has_fragment
from portal import policy
from portal.extensions import db
from portal.models import Organization, User
from portal.seed import seed

pytestmark = pytest.mark.slow

SIZES = ("1k", "3k")


def _measure(app) -> tuple[dict[tuple[str, str], int], list[tuple[str, str, int]], list[str]]:
    """(actor, page) -> SQL statements; (actor, page, status) triples; pages the bench cannot fill."""
    counts: dict[tuple[str, str], int] = {}
    statuses: list[tuple[str, str, int]] = []
    unfillable: list[str] = []
    statements = [0]

    def _count(conn, cursor, statement, *args):
        if not statement.lstrip().upper().startswith(TRANSACTION_CONTROL):
            statements[0] += 1

    for bench_actor in prepare_actors():
        user = db.session.scalar(select(User).where(User.email == bench_actor.email))
        actor = policy.actor_for(user, db.session.get(Organization, bench_actor.org_id))
        pages, skipped = discover(app, bench_actor.area, actor)
        unfillable += [f"{s.key}: {s.reason}" for s in skipped if s.unfillable]
        db.session.commit()
        client = app.test_client()
        signed_in = client.post("/login", data={"email": bench_actor.email, "password": BENCH_PASSWORD})
        assert signed_in.status_code == 302, f"sign-in as {bench_actor.label} answered {signed_in.status_code}"
        for page in pages:
            full = client.get(page.url)
            variants = [(page.label, {})]
            if full.status_code == 200 and has_fragment(full.data, client.get(page.url, headers={
                    "HX-Request": "true"}).data):
                variants.append((page.label + " [HX]", {"HX-Request": "true"}))
            for label, headers in variants:
                statements[0] = 0
                event.listen(db.engine, "before_cursor_execute", _count)
                try:
                    response = client.get(page.url, headers=headers)
                finally:
                    event.remove(db.engine, "before_cursor_execute", _count)
                counts[(bench_actor.label, label)] = statements[0]
                statuses.append((bench_actor.label, label, response.status_code))
    return counts, statuses, unfillable


def test_every_page_answers_and_its_sql_count_does_not_grow_with_the_data(app):
    measured = {}
    seeded = (0, 0, 0)
    for label in SIZES:
        size = parse_size(label)
        # The second data set goes on top of the first: 1k, then 2k more makes 3k.
        seed(customers=size.customers - seeded[0], partners=size.partners - seeded[1],
             entitlements=size.entitlements - seeded[2], random_seed=len(measured) + 1)
        seeded = (size.customers, size.partners, size.entitlements)
        measured[label] = _measure(app)

    (small, small_statuses, unfillable), (large, large_statuses, _) = measured.values()
    assert not unfillable, "pages the bench cannot fill (teach bench/pages.py RESOLVERS):\n" + "\n".join(unfillable)
    problems = errors(small_statuses) + errors(large_statuses)
    assert not problems, "pages answering an error:\n" + "\n".join(problems)
    assert any(actor == "reseller" for actor, _ in small), "the bench signed in no reseller"
    grew = [f"{page} as {actor}: {small[(actor, page)]} statements at {SIZES[0]}, {large.get((actor, page))} at "
            f"{SIZES[1]}" for actor, page in small if small[(actor, page)] != large.get((actor, page))]
    assert not grew, "SQL statements per request change with the data:\n" + "\n".join(grew)
