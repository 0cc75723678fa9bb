"""Engine set-up for the two supported databases and the write-transaction helper.

SQLite is the embedded default and PostgreSQL the production database. Seat counting
needs the line row locked: PostgreSQL gets ``SELECT ... FOR UPDATE``; on SQLite, where
``FOR UPDATE`` compiles to nothing, a state-changing transaction starts with
``BEGIN IMMEDIATE`` so that writers are serialized before they read.
"""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine

from portal.extensions import db

IMMEDIATE = "portal_immediate"


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def configure_engine(engine: Engine) -> None:
    """Install SQLite pragmas and begin handling; PostgreSQL needs nothing."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection, _record):
        # Let SQLAlchemy emit BEGIN itself, so we can choose DEFERRED or IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(connection):
        immediate = connection.get_execution_options().get(IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
        connection.info[IMMEDIATE] = immediate


def begin_write() -> None:
    """Start the session's transaction as a write transaction.

    Call it before the first query of a unit of work that changes state (the app does it
    for every POST). A no-op when a transaction is already open or on PostgreSQL.
    """
    if db.session().in_transaction():
        return
    db.session.connection(execution_options={IMMEDIATE: True})


def holds_write_lock() -> bool:
    """True when the current transaction may safely read-then-write seat counts."""
    connection = db.session.connection()
    if connection.dialect.name != "sqlite":
        return True
    return bool(connection.info.get(IMMEDIATE))
