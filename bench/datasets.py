"""The data sets: seeded once per size and database, reused while nothing they depend on changed.

A size is a number of entitlements; customers and partners are proportional to the
producer-scale set of issue 7 (200,000 entitlements, 20,000 customers, 600 partners).
PostgreSQL gets one database per size (``portal_bench_1k``...), SQLite one file per size
under ``bench/.data``. A seeded database is reused when its fingerprint (seed parameters,
the month the dates count back from, the schema revision and the seed generator's source)
matches; otherwise it is dropped and seeded again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / ".data"
POSTGRES_SERVER = os.environ.get("PORTAL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
RANDOM_SEED = 1
# The PostgreSQL databases are named <prefix>_1k, <prefix>_race...: set PORTAL_BENCH_PREFIX when
# several checkouts share one server, so that one checkout's seed never drops another's.
PREFIX = os.environ.get("PORTAL_BENCH_PREFIX", "portal_bench")
# Bench users sign in with this local password (set through the services, see bench/actors.py).
BENCH_SECRET_KEY = "bench-secret-key-not-for-production"  # noqa: S105


@dataclass(frozen=True)
class Size:
    label: str
    entitlements: int

    @property
    def customers(self) -> int:
        return max(1, self.entitlements // 10)  # 20,000 per 200,000

    @property
    def partners(self) -> int:
        return max(3, round(self.entitlements * 600 / 200_000))


def parse_size(label: str) -> Size:
    match = re.fullmatch(r"(\d+)(k?)", label.strip().lower())
    if not match:
        raise ValueError(f"a size is a number of entitlements like 1k, 20k or 5000, not {label!r}")
    number = int(match.group(1)) * (1000 if match.group(2) else 1)
    return Size(f"{number // 1000}k" if number % 1000 == 0 else str(number), number)


def postgres_url(database: str) -> str:
    base = POSTGRES_SERVER.replace("postgresql://", "postgresql+psycopg://", 1)
    return base.rsplit("/", 1)[0] + "/" + database


def database_url(kind: str, size: Size) -> str:
    if kind == "postgresql":
        return postgres_url(f"{PREFIX}_{size.label}")
    return f"sqlite:///{DATA / f'portal_bench_{size.label}.db'}"


def seed_today() -> date:
    """Dates count back from the first of this month: the same data all month, then fresh."""
    return date.today().replace(day=1)


def _schema_head() -> str:
    versions = ROOT / "portal" / "migrations" / "versions"
    revisions = set()
    downs = set()
    for path in versions.glob("*.py"):
        source = path.read_text()
        revision = re.search(r"^revision = ['\"](\w+)['\"]", source, re.M)
        down = re.search(r"^down_revision = ['\"](\w+)['\"]", source, re.M)
        if revision:
            revisions.add(revision.group(1))
        if down:
            downs.add(down.group(1))
    return ",".join(sorted(revisions - downs))


def fingerprint(size: Size) -> dict:
    """Everything the seeded data depends on."""
    sources = [ROOT / "portal" / "seed.py", *sorted((ROOT / "portal" / "migrations" / "versions").glob("*.py"))]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    return {
        "entitlements": size.entitlements, "customers": size.customers, "partners": size.partners,
        "random_seed": RANDOM_SEED, "today": seed_today().isoformat(), "schema": _schema_head(),
        "sources": digest,
    }


def _marker(kind: str, size: Size) -> Path:
    return DATA / f"{kind}_{size.label}.json"


def make_app(url: str, **overrides):
    from portal import create_app

    DATA.mkdir(parents=True, exist_ok=True)
    config = {"SECRET_KEY": BENCH_SECRET_KEY, "DATABASE_URL": url, "INSTANCE_PATH": str(DATA / "instance"),
              "LOCAL_LOGIN_ENABLED": True}
    config.update(overrides)
    return create_app(config)


def _postgres_exists(name: str) -> bool:
    admin = create_engine(postgres_url("postgres"), poolclass=NullPool)
    try:
        with admin.connect() as conn:
            return conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}) is not None
    finally:
        admin.dispose()


def _recreate(kind: str, url: str) -> None:
    if kind == "postgresql":
        name = url.rsplit("/", 1)[1]
        admin = create_engine(postgres_url("postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
    else:
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def is_current(kind: str, size: Size) -> bool:
    """A seeded database with this very fingerprint exists (and its marker tells the truth)."""
    marker = _marker(kind, size)
    if not marker.exists() or json.loads(marker.read_text()) != fingerprint(size):
        return False
    url = database_url(kind, size)
    if kind == "postgresql":
        if not _postgres_exists(url.rsplit("/", 1)[1]):
            return False
    elif not Path(url.removeprefix("sqlite:///")).exists():
        return False
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            revision = conn.scalar(text("SELECT version_num FROM alembic_version"))
            seeded = conn.scalar(text("SELECT count(*) FROM entitlement"))
    except Exception:  # noqa: BLE001  (no schema, half a database: seed again)
        return False
    finally:
        engine.dispose()
    return revision == fingerprint(size)["schema"] and seeded == size.entitlements


def _progress(label: str):
    started = time.monotonic()
    interactive = sys.stdout.isatty()
    shown = ["", 0]  # the stage and tenth last printed (not on a terminal: one line per tenth)

    def report(stage: str, done: int, total: int) -> None:
        elapsed = time.monotonic() - started
        line = f"  seeding {label}: {stage} {done:,}/{total:,} ({elapsed:.0f} s)"
        if interactive:
            print("\r" + line.ljust(70), end="\n" if stage == "finishing" and done == total else "", flush=True)
        elif stage != shown[0] or done == total or done * 10 // total > shown[1]:
            shown[:] = [stage, done * 10 // total]
            print(line, flush=True)

    return report


def ensure(kind: str, size: Size, *, log=print) -> str:
    """The URL of a seeded database of this size, seeding it first when needed."""
    url = database_url(kind, size)
    label = f"{size.label} on {kind}"
    if is_current(kind, size):
        log(f"  {label}: seeded database reused ({url.rsplit('/', 1)[1]})")
        return url
    _marker(kind, size).unlink(missing_ok=True)
    _recreate(kind, url)
    seed_into(url, size, progress=_progress(label))
    settle(url)
    _marker(kind, size).write_text(json.dumps(fingerprint(size), indent=2))
    return url


def settle(url: str) -> None:
    """What the database does by itself after a bulk load, done now: PostgreSQL's autovacuum
    (``VACUUM ANALYZE``: planner statistics, and the visibility map that index-only scans
    need; this machine's server runs with autovacuum off), SQLite's ``ANALYZE``."""
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))
    finally:
        engine.dispose()


def seed_into(url: str, size: Size, *, progress=None) -> float:
    """Migrate and seed; returns the seconds the seed took."""
    from flask_migrate import upgrade

    from portal.extensions import db
    from portal.seed import seed

    app = make_app(url)
    with app.app_context():
        upgrade()
        started = time.monotonic()
        seed(customers=size.customers, partners=size.partners, entitlements=size.entitlements,
             random_seed=RANDOM_SEED, today=seed_today(), progress=progress)
        elapsed = time.monotonic() - started
        db.session.remove()
        db.engine.dispose()
    return elapsed
