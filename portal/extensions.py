"""Flask extensions: created here, bound to the app in ``create_app``."""

import ipaddress

from flask import request
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names, so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()


def client_network() -> str:
    """Who a rate limit counts: the client's address; for IPv6 its /64, which one client
    usually holds whole (else every address in it would be a new client)."""
    address = request.remote_addr or ""
    if ":" in address:
        try:
            return str(ipaddress.IPv6Network(f"{address.split('%')[0]}/64", strict=False))
        except ValueError:
            pass
    return address


class _Limiter(Limiter):
    """Flask-Limiter, with its storage and key prefix taken from each app's configuration.

    The storage comes from ``RATELIMIT_STORAGE_URI`` (never from here: a URI given to the
    constructor would win over the configuration). Flask-Limiter keeps one storage and one key
    prefix on the extension object and keeps the first prefix it saw; a process serves one app,
    but a test process builds many, each with its own prefix.
    """

    def init_app(self, app) -> None:
        self._key_prefix = app.config.get("RATELIMIT_KEY_PREFIX", "")
        super().init_app(app)


limiter = _Limiter(key_func=client_network, default_limits=[])
