"""Seats are never oversubscribed under concurrent requests, on either database.

40 activations of 40 different hosts race on one line with 10 seats: exactly 10 succeed.
PostgreSQL serializes them with a row lock on the line (threads, each with its own
connection, and separate processes); SQLite with BEGIN IMMEDIATE (separate processes).
"""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from portal.database import begin_write
from portal.extensions import db
from portal.models import Activation, EntitlementLine, User
from portal.policy import actor_for
from portal.services.activations import activate, seats_used
from portal.services.errors import Conflict

SEATS = 10
ATTEMPTS = 40


@pytest.fixture
def app_config():
    # One connection per racing thread, so nobody queues for the pool instead of the lock.
    return {"SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": ATTEMPTS + 5, "max_overflow": 0}}


@pytest.fixture
def race(make):
    customer = make.customer("Contoso")
    entitlement = make.entitlement(customer, seats=SEATS)
    user = make.user(customer, "member")
    return {"line_id": entitlement.lines[0].id, "user_id": user.id, "org_id": customer.id}


def _attempt(line_id: int, user_id: int, host: str) -> str:
    """One activation request in its own transaction; returns 'ok' or 'full'."""
    db.session.rollback()
    begin_write()
    user = db.session.get(User, user_id)
    actor = actor_for(user, user.memberships[0].org)
    line = db.session.get(EntitlementLine, line_id)
    try:
        activate(actor, line, host)
    except Conflict:
        db.session.rollback()
        return "full"
    db.session.commit()
    return "ok"


def _assert_exactly_ten(results: list[str], line_id: int) -> None:
    assert len(results) == ATTEMPTS
    assert results.count("ok") == SEATS
    assert results.count("full") == ATTEMPTS - SEATS
    db.session.expire_all()
    assert seats_used(line_id) == SEATS
    assert db.session.scalar(select(func.count(Activation.id)).where(Activation.active.is_(True))) == SEATS


def test_threads_race_for_seats(app, race):
    if db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite is raced from several processes below; threads share its one writer anyway")
    barrier = threading.Barrier(ATTEMPTS)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                results.append(_attempt(race["line_id"], race["user_id"], f"thread-host-{number}"))
            except BaseException as error:  # surfaced below with the test's failure
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(ATTEMPTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    _assert_exactly_ten(results, race["line_id"])


def _process_worker(database_url: str, instance: str, line_id: int, user_id: int, hosts: list[str],
                    barrier, queue) -> None:
    from tests.conftest import make_test_app

    app = make_test_app(database_url, Path(instance))
    with app.app_context():
        barrier.wait(timeout=60)
        for host in hosts:
            try:
                queue.put(_attempt(line_id, user_id, host))
            except Exception as error:  # reported to the parent, which fails the test
                queue.put(f"error: {error!r}")
        db.session.remove()
        db.engine.dispose()


def test_processes_race_for_seats(app, race, database_url, signing_key_dir):
    processes_count = 4
    # fork: the children start at once (spawn would re-import the app and pytest in each).
    # The parent's engine is disposed first so no connection is shared across processes.
    db.session.remove()
    db.engine.dispose()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(processes_count)
    queue = context.Queue()
    per_process = ATTEMPTS // processes_count
    processes = [
        context.Process(
            target=_process_worker,
            args=(database_url, str(signing_key_dir), race["line_id"], race["user_id"],
                  [f"proc{p}-host-{n}" for n in range(per_process)], barrier, queue),
        )
        for p in range(processes_count)
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=120) for _ in range(ATTEMPTS)]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert not [r for r in results if r.startswith("error")], results
    _assert_exactly_ten(results, race["line_id"])
