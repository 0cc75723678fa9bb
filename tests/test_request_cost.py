"""What every signed-in request pays before its page: the user with its memberships and their
organizations in one statement, once per request (the actor and the top bar's organization
switcher share them)."""

from __future__ import annotations

import re

import pytest

from portal.extensions import db

MEMBERSHIPS = re.compile(r"\b(?:FROM|JOIN)\s+\(?membership\b", re.I)
USERS = re.compile(r"\bFROM user_account\b", re.I)


@pytest.mark.parametrize("page", ["/customer/", "/customer/entitlements"])
def test_memberships_are_read_once_per_request_with_their_organizations(make, login_as, count_queries, page):
    group = make.customer("Contoso Group")
    other = make.customer("Fabrikam")
    partner = make.partner("reseller", "BlueSky")
    user = make.user(group, "admin")
    make.user(other, "member")  # a decoy user
    for org in (other, partner):  # three memberships: the switcher lists them all
        from portal.models import Membership

        db.session.add(Membership(user=user, org=org, role="member"))
    db.session.commit()
    client = login_as(user, group)
    for _ in range(2):  # the second request must not profit from the first
        db.session.expire_all()
        with count_queries() as counter:
            response = client.get(page)
        assert response.status_code == 200
        body = response.get_data(as_text=True)
        assert "Fabrikam" in body and "BlueSky" in body  # the switcher shows every membership
        membership_reads = [s for s in counter.statements if MEMBERSHIPS.search(s)]
        assert len(membership_reads) == 1, membership_reads
        # ... in the statement that reads the user: the session's user is read once, with them.
        assert [s for s in counter.statements if USERS.search(s)] == membership_reads
        # ... and their organizations came with them: none is read on its own by id.
        single_orgs = [s for s in counter.statements
                       if re.search(r"FROM organization\s+WHERE organization\.id = ", s)]
        assert single_orgs == [], single_orgs


def test_a_commit_in_the_request_reads_the_memberships_again(app, make):
    from flask import g

    from portal.auth_session import memberships_of

    group = make.customer("Contoso Group")
    user = make.user(group, "admin")
    with app.test_request_context():
        first = memberships_of(user)
        assert memberships_of(user) is first  # cached for the request
        db.session.commit()
        assert "_memberships" not in g
        assert [m.org_id for m in memberships_of(user)] == [group.id]
