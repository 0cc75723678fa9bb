"""The Entitlement Portal application package."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request

from portal.config import Defaults
from portal.database import begin_write, configure_engine, normalize_database_url
from portal.extensions import csrf, db, limiter, login_manager, migrate


def create_app(config_overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then instance/config.py, then PORTAL_* variables, then overrides."""
    overrides = dict(config_overrides or {})
    instance_path = overrides.pop("INSTANCE_PATH", None) or os.environ.get("PORTAL_INSTANCE_PATH")
    app = Flask(__name__, instance_relative_config=True, instance_path=instance_path)
    app.config.from_object(Defaults)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("PORTAL")
    app.config.update(overrides)
    os.makedirs(app.instance_path, exist_ok=True)

    if not app.config.get("SECRET_KEY"):
        raise RuntimeError(
            "No SECRET_KEY: set PORTAL_SECRET_KEY or SECRET_KEY in instance/config.py "
            "(`make demo` writes one for you)."
        )
    url = app.config.get("DATABASE_URL") or app.config.get("SQLALCHEMY_DATABASE_URI")
    if not url:
        url = "sqlite:///" + os.path.join(app.instance_path, "portal.db")
    app.config["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(url)
    # Our own cookie name (an identity provider on the same host may use "_session"), with
    # the __Host- prefix under https: Secure, Path=/, no Domain.
    https = app.config["BASE_URL"].startswith("https://")
    if app.config["SESSION_COOKIE_NAME"] == "session":
        app.config["SESSION_COOKIE_NAME"] = "__Host-portal_session" if https else "portal_session"
    if https:
        app.config["SESSION_COOKIE_SECURE"] = True
        app.config["REMEMBER_COOKIE_SECURE"] = True
        app.config["PREFERRED_URL_SCHEME"] = "https"
    if app.debug or app.testing:
        import jinja2

        app.jinja_env.undefined = jinja2.StrictUndefined

    if app.config["PROXY_HOPS"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = int(app.config["PROXY_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine)
    from portal import models  # noqa: F401  (register the mappers for Alembic)

    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(__file__), "migrations"), render_as_batch=True)
    from portal import web

    # First of all (CSRF reads the form): the request id, and the body's type and size.
    web.init_request_checks(app)
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    from portal import oidc

    oidc.init_app(app)

    @app.before_request
    def _request_context():
        # SQLite: a state-changing request takes the write lock before its first read.
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            begin_write()

    from portal import auth_session, errors

    auth_session.init_app(app)
    errors.init_app(app)
    web.init_app(app)

    from portal.blueprints.auth import bp as auth_bp
    from portal.blueprints.customer import bp as customer_bp
    from portal.blueprints.partner import bp as partner_bp
    from portal.blueprints.producer import bp as producer_bp
    from portal.blueprints.public import bp as public_bp

    app.register_blueprint(public_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(customer_bp, url_prefix="/customer")
    app.register_blueprint(partner_bp, url_prefix="/partner")
    app.register_blueprint(producer_bp, url_prefix="/producer")

    from portal.cli import register_cli

    register_cli(app)
    return app
