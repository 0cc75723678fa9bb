"""Subtrees are index ranges of the materialized path, never a LIKE the index cannot serve, and
the range finds exactly the organizations whose path starts with the root's (/2/ is not /20/)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from portal.extensions import db
from portal.models import Organization
from portal.policy import path_within, subtree_org_ids


@pytest.fixture
def forest(make):
    """Enough organizations that ids 2 and 20..29 both exist, nested three deep in places."""
    orgs = []
    while len(orgs) < 30:
        parent = None
        if orgs and len(orgs) % 3:
            parent = orgs[-1] if len(orgs) % 3 == 2 else orgs[len(orgs) // 2]
        orgs.append(make.customer(parent=parent))
    for root in (orgs[0], orgs[1]):
        child = make.customer(parent=root)
        make.customer(parent=child)
    # The tricky neighbours, whatever ids the database hands out: /7/ and /70/, /71/, a child of
    # /7/ whose id starts with 0's neighbour digits, and one of /70/.
    base = 9_000_007
    tricky = [(base, None), (base * 10, None), (base * 10 + 1, None), (base * 100, base), (base * 10 + 2, base * 10)]
    paths: dict[int, str] = {}
    for org_id, parent_id in tricky:
        paths[org_id] = Organization.path_under(None, org_id) if parent_id is None else f"{paths[parent_id]}{org_id}/"
        db.session.add(Organization(id=org_id, kind="customer", name=f"Tricky {org_id}", parent_id=parent_id,
                                    path=paths[org_id]))
    db.session.commit()
    return db.session.scalars(select(Organization)).all()


def test_range_finds_exactly_the_prefix_matches(forest):
    base = 9_000_007
    for root in forest:
        found = set(db.session.scalars(subtree_org_ids(root)))
        expected = {org.id for org in forest if org.path.startswith(root.path)}
        assert found == expected, root.path
    by_id = {org.id: org for org in forest}
    assert set(db.session.scalars(subtree_org_ids(by_id[base]))) == {base, base * 100}
    assert set(db.session.scalars(subtree_org_ids(by_id[base * 10]))) == {base * 10, base * 10 + 2}


def test_only_organization_paths_are_accepted(app):
    for bad in ("", "/2", "2/", "2"):
        with pytest.raises(ValueError, match="not an organization path"):
            path_within(bad)


def test_the_path_index_serves_the_subtree(forest):
    root = next(org for org in forest if org.parent_id is None and any(o.parent_id == org.id for o in forest))
    query = subtree_org_ids(root)
    compiled = query.compile(db.engine, compile_kwargs={"literal_binds": True})
    connection = db.session.connection()
    if db.engine.dialect.name == "postgresql":
        connection.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(connection.execute(text(f"EXPLAIN {compiled}")).scalars())
        assert "ix_organization_path" in plan and "Filter" not in plan, plan
    else:
        plan = " ".join(str(row[-1]) for row in connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
        assert "ix_organization_path" in plan, plan
    assert "LIKE" not in str(compiled).upper()
