"""The activation race: 1,000 activations over 8 connections on lines with few seats.

A fresh database (``portal_bench_race`` on PostgreSQL, a file on SQLite) gets, through the
services, a customer with 50 entitlements of two lines of 3 to 8 seats each; 8 processes,
each with its own app and database connection and its actor (the customer's admin, loaded
once), then activate one seat for 1,000 distinct hosts through
``portal.services.activations.activate`` (``begin_write`` first, the line loaded, one commit
per activation, as a view would). The 8 processes hit the same line at the same time. Afterwards
the database is asked whether any line has more seats activated than it has.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import func, select

from bench import datasets

ATTEMPTS = 1000
CONNECTIONS = 8
ENTITLEMENTS = 50


@dataclass
class RaceResult:
    kind: str
    attempts: int
    activated: int
    refused: int  # no free seat left: the expected answer once a line is full
    errors: int  # anything else (deadlocks, lock timeouts...): should be 0
    seconds: float
    seats: int
    oversubscribed_lines: int

    @property
    def per_second(self) -> float:
        return self.attempts / self.seconds if self.seconds else 0.0


def _url(kind: str) -> str:
    if kind == "postgresql":
        return datasets.postgres_url(f"{datasets.PREFIX}_race")
    return f"sqlite:///{datasets.DATA / 'portal_bench_race.db'}"


def _prepare(kind: str) -> tuple[str, list[int], int, int, int]:
    """A fresh database with the lines to race on: (url, line ids, seats, user id, org id)."""
    from flask_migrate import upgrade

    from bench.actors import BENCH_PASSWORD
    from portal.extensions import db
    from portal.models import Product
    from portal.policy import system_actor
    from portal.services.accounts import create_user
    from portal.services.entitlements import LineSpec, create_entitlement
    from portal.services.licenses import signing_key
    from portal.services.orgs import add_member, bootstrap_producer, create_organization

    url = _url(kind)
    datasets._recreate(kind, url)
    app = datasets.make_app(url)
    with app.app_context():
        upgrade()
        signing_key()  # made once here, not by 8 processes at the same time
        producer = bootstrap_producer("Acme Software")
        system = system_actor(producer)
        customer = create_organization(system, kind="customer", name="Race Customer")
        user = create_user("race-admin@bench.example.com", "Race admin", password=BENCH_PASSWORD, actor=system)
        add_member(system, customer, user, "admin")
        product = Product(sku="RACE-1", name="Race Studio")
        db.session.add(product)
        lines, seats = [], 0
        for number in range(ENTITLEMENTS):
            specs = [LineSpec(product, "perpetual", 3 + (number + k) % 6,
                              maintenance_end=date.today() + timedelta(days=365)) for k in range(2)]
            entitlement = create_entitlement(system, owner=customer, lines=specs)
            lines += [line.id for line in entitlement.lines]
            seats += sum(spec.quantity for spec in specs)
        db.session.commit()
        ids = (user.id, customer.id)
        db.session.remove()
        db.engine.dispose()
    return url, lines, seats, *ids


def _worker(url: str, tasks: list[tuple[int, str]], user_id: int, org_id: int, barrier, results) -> None:
    from portal.database import begin_write
    from portal.extensions import db
    from portal.models import EntitlementLine, Organization, User
    from portal.policy import actor_for
    from portal.services.activations import activate
    from portal.services.errors import Conflict

    app = datasets.make_app(url)
    activated = refused = errors = 0
    with app.app_context():
        # Who activates is resolved once per connection (a client signed in once), then kept
        # out of the session so that commits do not expire it.
        actor = actor_for(db.session.get(User, user_id), db.session.get(Organization, org_id))
        db.session.expunge_all()
        db.session.rollback()
        barrier.wait()
        for line_id, host in tasks:
            try:
                begin_write()
                line = db.session.get(EntitlementLine, line_id)
                _, created = activate(actor, line, host)
                db.session.commit()
                activated += created
            except Conflict:
                db.session.rollback()
                refused += 1
            except Exception:  # noqa: BLE001  (counted and reported, never hidden)
                db.session.rollback()
                errors += 1
        db.session.remove()
        db.engine.dispose()
    results.put((activated, refused, errors))


def run(kind: str, *, attempts: int = ATTEMPTS, connections: int = CONNECTIONS) -> RaceResult:
    url, lines, seats, user_id, org_id = _prepare(kind)
    # Task i goes to process i % 8, and the 8 tasks of each round aim at the same line.
    tasks = [(lines[(i // connections) % len(lines)], f"race-host-{i}") for i in range(attempts)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(connections + 1)
    results = context.Queue()
    processes = [context.Process(target=_worker, args=(url, tasks[n::connections], user_id, org_id, barrier,
                                                        results)) for n in range(connections)]
    for process in processes:
        process.start()
    barrier.wait(timeout=120)
    started = time.perf_counter()
    totals = [results.get(timeout=600) for _ in processes]
    seconds = time.perf_counter() - started
    for process in processes:
        process.join()
    activated, refused, errors = (sum(column) for column in zip(*totals, strict=True))
    return RaceResult(kind, attempts, activated, refused, errors, seconds, seats, _oversubscribed(url))


def _oversubscribed(url: str) -> int:
    from portal.extensions import db
    from portal.models import Activation, EntitlementLine

    app = datasets.make_app(url)
    with app.app_context():
        used = (select(Activation.line_id, func.sum(Activation.seats).label("used"))
                .where(Activation.active.is_(True)).group_by(Activation.line_id).subquery())
        count = db.session.scalar(
            select(func.count()).select_from(EntitlementLine)
            .join(used, used.c.line_id == EntitlementLine.id)
            .where(used.c.used > EntitlementLine.quantity))
        db.session.remove()
        db.engine.dispose()
    return count
