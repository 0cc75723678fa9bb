"""Fixtures shared by the whole suite.

The same tests run on SQLite (default) and PostgreSQL (``PORTAL_TEST_DB=postgres``; the
server from ``PORTAL_TEST_POSTGRES_URL``, default 127.0.0.1:5432). The schema is built
once per session through the Alembic migration; each test then gets a clean database:
a fresh copy of the migrated SQLite file, or TRUNCATE on PostgreSQL.
"""

from __future__ import annotations

import contextvars
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool
from werkzeug.serving import make_server

from portal import create_app
from portal.extensions import db
from tests import factories, route_builders

route_builders.install()

# The real OIDC provider fixtures (``oidc_providers``, ``portal_port``).
pytest_plugins = ["tests.oidc.provider"]

TEST_DB = os.environ.get("PORTAL_TEST_DB", "sqlite")
POSTGRES_SERVER = os.environ.get("PORTAL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def pytest_report_header(config):
    return f"portal test database: {TEST_DB}"


def _postgres_url(database: str) -> str:
    base = POSTGRES_SERVER.replace("postgresql://", "postgresql+psycopg://", 1)
    return base.rsplit("/", 1)[0] + "/" + database


def _migrate(url: str, instance: Path) -> None:
    from flask_migrate import upgrade

    app = create_app({"TESTING": True, "SECRET_KEY": "test", "DATABASE_URL": url, "INSTANCE_PATH": str(instance)})
    with app.app_context():
        upgrade()
        db.engine.dispose()


@dataclass
class TestDatabase:
    """Where the per-test databases come from."""

    kind: str
    template_url: str
    tables: list[str] = field(default_factory=list)
    template_file: Path | None = None
    _cleaner: object = None

    def fresh_url(self, tmp_path: Path) -> str:
        if self.kind == "sqlite":
            target = tmp_path / "portal.db"
            shutil.copyfile(self.template_file, target)
            return f"sqlite:///{target}"
        # DELETE is much faster than TRUNCATE on small tables. Replica mode skips user
        # triggers (the audit trail's append-only guard) and foreign-key checks meanwhile.
        with self._engine().begin() as conn:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            for table in self.tables:
                conn.execute(text(f'DELETE FROM "{table}"'))
        return self.template_url

    def _engine(self):
        if self._cleaner is None:
            self._cleaner = create_engine(self.template_url, poolclass=NullPool)
        return self._cleaner


@pytest.fixture(scope="session")
def test_database(tmp_path_factory) -> Iterator[TestDatabase]:
    root = tmp_path_factory.mktemp("db")
    if TEST_DB == "sqlite":
        template = root / "template.db"
        _migrate(f"sqlite:///{template}", root / "instance")
        yield TestDatabase("sqlite", f"sqlite:///{template}", template_file=template)
        return
    if TEST_DB != "postgres":
        raise pytest.UsageError(f"PORTAL_TEST_DB must be sqlite or postgres, not {TEST_DB!r}")
    name = f"portal_test_{os.getpid()}"
    admin = create_engine(_postgres_url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
        # Tests commit often; waiting for each WAL flush only slows them down.
        conn.execute(text(f"ALTER DATABASE {name} SET synchronous_commit = off"))
    url = _postgres_url(name)
    _migrate(url, root / "instance")
    engine = create_engine(url)
    with engine.connect() as conn:
        tables = [
            row[0]
            for row in conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
            )
        ]
    engine.dispose()
    yield TestDatabase("postgres", url, tables=tables)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(scope="session")
def signing_key_dir(tmp_path_factory) -> Path:
    """One instance folder (signing key) for the session: generating keys is not what we test."""
    return tmp_path_factory.mktemp("instance")


def make_test_app(database_url: str, instance: Path, **overrides):
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": str(instance),
        "LOCAL_LOGIN_ENABLED": True,
        "WTF_CSRF_ENABLED": False,
        "BASE_URL": "http://127.0.0.1:5000",
        "RATELIMIT_ENABLED": False,
    }
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def app_config() -> dict:
    """Override per test module: ``@pytest.fixture def app_config(): return {...}``."""
    return {}


@pytest.fixture
def database_url(test_database, tmp_path) -> str:
    return test_database.fresh_url(tmp_path)


class IsolatedClient(FlaskClient):
    """Each request runs in a fresh context, as in production.

    The ``app`` fixture keeps an app context pushed for the test body; without this,
    requests would reuse it and share ``g`` (Flask-Login's cached user, the actor) and
    the test's SQLAlchemy session across requests, hiding real bugs.
    """

    def open(self, *args, **kwargs):
        # Buffered: a streamed body (the CSV exports) is read within the request's context, as
        # the server reads it, not later in the test's own.
        kwargs.setdefault("buffered", True)
        return contextvars.Context().run(super().open, *args, **kwargs)


@pytest.fixture
def app(database_url, signing_key_dir, app_config):
    app = make_test_app(database_url, signing_key_dir, **app_config)
    app.test_client_class = IsolatedClient
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make(app):
    """Factories that build consistent data through the real services."""
    return factories.Factory()


def sign_in(client: FlaskClient, user, org=None) -> FlaskClient:
    """Give ``client`` the session a sign-in as ``user`` (working in ``org``) would leave."""
    now = datetime.now(UTC).timestamp()
    with client.session_transaction() as session:
        session["_user_id"] = user.get_id()
        session["_fresh"] = True
        session["login_at"] = now
        session["seen_at"] = now
        if org is not None:
            session["org_id"] = org.id
    return client


@pytest.fixture
def login_as(app):
    """``login_as(user, org=None)`` returns a test client signed in as that user."""

    def _login(user, org=None, client=None):
        return sign_in(client or app.test_client(), user, org)

    return _login


class QueryCounter:
    def __init__(self):
        self.statements: list[str] = []

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def count_queries(app):
    """``with count_queries() as counter: ...`` then ``counter.count`` SQL statements ran."""

    @contextmanager
    def _count():
        counter = QueryCounter()

        def _before(conn, cursor, statement, parameters, context, executemany):
            if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
                counter.statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", _before)
        try:
            yield counter
        finally:
            event.remove(db.engine, "before_cursor_execute", _before)

    return _count


@pytest.fixture
def live_server(app, portal_port) -> Iterator[str]:
    """The test's app served on 127.0.0.1:``portal_port`` in a daemon thread.

    A fixed port, because the test identity providers know the portal's redirect URIs.
    The server shares the test's database.
    """
    server = make_server("127.0.0.1", portal_port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{portal_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
