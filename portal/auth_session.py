"""Who is signed in, and as which organization: Flask-Login plus the active-org choice.

The session cookie holds ``user_id:session_version``; bumping the user's version (logout,
disable, membership removal) makes every older cookie useless at its next request.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask, current_app, g, has_app_context, request, session
from flask_login import current_user, logout_user
from sqlalchemy import and_, bindparam, event, select
from sqlalchemy.orm import Session, aliased, contains_eager

from portal.extensions import db, login_manager
from portal.models import Membership, Organization, User
from portal.policy import Actor, customers_served_by

SEEN_AT_STEP = 60  # seconds: how often a request moves the session's last-seen time on


def init_app(app: Flask) -> None:
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    login_manager.session_protection = None  # the session version does this job

    @login_manager.user_loader
    def load_user(token: str) -> User | None:
        try:
            user_id, version = (int(part) for part in token.split(":", 1))
        except ValueError:
            return None
        user = _load_with_memberships(user_id)
        if user is None or not user.active or user.session_version != version:
            g.pop("_memberships", None)
            return None
        return user

    @app.before_request
    def _enforce_session_lifetime():
        if "_user_id" not in session:
            return
        now = datetime.now(UTC).timestamp()
        idle = _seconds(current_app.config["SESSION_IDLE_TIMEOUT"])
        lifetime = _seconds(current_app.config["PERMANENT_SESSION_LIFETIME"])
        seen_at = session.get("seen_at", now)
        if now - seen_at > idle or now - session.get("login_at", now) > lifetime:
            logout_user()
            session.clear()
            return
        # Activity is noted to the minute: a session left alone ends between IDLE_TIMEOUT less a
        # minute and IDLE_TIMEOUT after its last request. Meanwhile the session is unchanged and
        # the cookie is not signed and sent again (SESSION_REFRESH_EACH_REQUEST is off).
        if "seen_at" not in session or now - seen_at >= SEEN_AT_STEP:
            session["seen_at"] = now


@event.listens_for(Session, "after_commit")
def _forget_memberships(_session) -> None:
    """A commit may have changed the signed-in user's memberships: the switcher reads them again."""
    if has_app_context():
        g.pop("_memberships", None)


def _seconds(value: timedelta | int | float) -> float:
    """Config durations: a timedelta in instance/config.py, seconds from PORTAL_* variables."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


_KIND_ORDER = {"producer": 0, "distributor": 1, "reseller": 2, "service_provider": 3, "customer": 4}
# A membership counts while its organization is active.
_ACTIVE_MEMBERSHIPS = Membership.__table__.join(
    Organization.__table__, and_(Organization.id == Membership.org_id, Organization.status == "active")
)


def _remember_memberships(user_id: int, memberships: list[Membership]) -> list[Membership]:
    memberships.sort(key=lambda m: (_KIND_ORDER[m.org.kind], m.org.name))
    g._memberships = (user_id, memberships)
    return memberships


# The session's user row left-joined to its memberships in active organizations and their
# organizations: every signed-in request needs both. Built once (building the statement
# cost more than running it); the user id is its parameter. The organization's state is
# asked per membership (EXISTS by primary key), not as a parenthesised inner join on the
# right of the LEFT JOIN: SQLite materialises such a join whole, every membership of every
# active organization, 160-270 ms at 20,000 customers, where this reads the user's own rows.
_active_org = aliased(Organization)
_USER_WITH_MEMBERSHIPS = (
    select(User, Membership)
    .outerjoin(Membership, and_(
        Membership.user_id == User.id,
        select(_active_org.id).where(_active_org.id == Membership.org_id, _active_org.status == "active").exists(),
    ))
    .outerjoin(Membership.org)
    .options(contains_eager(Membership.org))
    .where(User.id == bindparam("user_id"))
)
_MEMBERSHIPS = (
    select(Membership).select_from(_ACTIVE_MEMBERSHIPS).options(contains_eager(Membership.org))
    .where(Membership.user_id == bindparam("user_id"))
)


def _load_with_memberships(user_id: int) -> User | None:
    """The session's user with its memberships (see ``memberships_of``), in one statement."""
    rows = db.session.execute(_USER_WITH_MEMBERSHIPS, {"user_id": user_id}).all()
    if not rows:
        return None
    user = rows[0][0]
    _remember_memberships(user.id, [m for _, m in rows if m is not None])
    return user


def memberships_of(user: User) -> list[Membership]:
    """The user's memberships in active organizations, producer first, then by name.

    One statement with their organizations, once per request: the actor and the top bar's
    organization switcher ask for the same list (cached in ``g`` for that user). For the
    signed-in user the user loader read them with the user row, in the same statement.
    """
    cached = g.get("_memberships")
    if cached is not None and cached[0] == user.id:
        return cached[1]
    rows = db.session.scalars(_MEMBERSHIPS, {"user_id": user.id}).all()
    return _remember_memberships(user.id, list(rows))


def current_actor() -> Actor | None:
    """The signed-in user in its active organization (cached per request)."""
    if "actor" in g:
        return g.actor
    actor = None
    if current_user.is_authenticated:
        memberships = memberships_of(current_user)
        chosen = next((m for m in memberships if m.org_id == session.get("org_id")), None)
        if chosen is None and memberships:
            chosen = memberships[0]
            session["org_id"] = chosen.org_id
        if chosen is not None:
            actor = Actor(
                user=current_user._get_current_object(),
                org=chosen.org,
                role=chosen.role,
                request_id=g.get("request_id"),
                client_addr=request.remote_addr,
            )
            actor = actor.for_customer(_still_served(actor, session.get("customer_id")))
    g.actor = actor
    return actor


def _still_served(actor: Actor, customer_id: int | None) -> int | None:
    """The customer a partner chose, while it still serves it (attachments can be revoked)."""
    if customer_id is None or not actor.is_partner:
        return None
    served = db.session.scalar(
        customers_served_by(actor).where(Organization.id == customer_id).with_only_columns(Organization.id)
    )
    if served is None:
        session.pop("customer_id", None)
    return served


def start_session(user: User) -> None:
    """A fresh session at sign-in: nothing from before survives (no fixation)."""
    from flask_login import login_user

    session.clear()
    login_user(user)
    now = datetime.now(UTC).timestamp()
    session["login_at"] = now
    session["seen_at"] = now
    session.permanent = True


def end_session(user: User | None) -> None:
    """Logout: the server forgets this session by bumping the user's session version."""
    if user is not None and user.is_authenticated:
        from portal.services.accounts import sign_out

        sign_out(user, request_id=g.get("request_id"), client_addr=request.remote_addr)
        db.session.commit()
    logout_user()
    session.clear()
