"""Organizations, the channel between them, users and their memberships."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, enum_check, utcnow

ORG_KINDS = ("producer", "distributor", "reseller", "service_provider", "customer")
PARTNER_KINDS = ("distributor", "reseller", "service_provider")
ORG_STATUSES = ("pending", "active", "suspended")
ROLES_BY_KIND = {
    "producer": ("admin", "staff"),
    "customer": ("admin", "member"),
    "distributor": ("admin", "member"),
    "reseller": ("admin", "member"),
    "service_provider": ("admin", "member"),
}
ALL_ROLES = ("admin", "member", "staff")

_DIGITS_REMOVED = "path"
for _digit in "0123456789":
    _DIGITS_REMOVED = f"replace({_DIGITS_REMOVED}, '{_digit}', '')"
# "/<root id>/.../<own id>/": slashes around ids, nothing else, ending in the row's own id.
# An empty or malformed path would make a subtree prefix match see far too much.
PATH_FORM = (
    "path LIKE '/%/' AND path NOT LIKE '%//%' "
    f"AND replace({_DIGITS_REMOVED}, '/', '') = '' "
    "AND path LIKE ('%/' || CAST(id AS VARCHAR(20)) || '/')"
)


def path_below(parent_path: str | None, org_id: int) -> str:
    """THE way a materialized path is built: the parent's path (None: top level) and the id,
    "/<root id>/.../<org_id>/". Services use ``Organization.path_under``; the bulk seed, which
    has paths without rows, calls this."""
    return f"{parent_path if parent_path is not None else '/'}{int(org_id)}/"


def ids_on_path(path: str) -> list[int]:
    """The ids on a materialized path, root first: "/1/7/9/" -> [1, 7, 9]."""
    return [int(part) for part in path.strip("/").split("/") if part]


class Organization(db.Model):
    """A party of the channel. Customers form a hierarchy kept as a materialized path."""

    __tablename__ = "organization"
    __table_args__ = (
        CheckConstraint(enum_check("kind", ORG_KINDS), name="kind"),
        CheckConstraint(enum_check("status", ORG_STATUSES), name="status"),
        CheckConstraint("parent_id IS NULL OR kind = 'customer'", name="only_customers_nest"),
        CheckConstraint("parent_id IS NULL OR parent_id <> id", name="not_own_parent"),
        CheckConstraint(PATH_FORM, name="path_form"),
        # Exactly one producer per installation.
        Index(
            "uq_organization_one_producer",
            "kind",
            unique=True,
            sqlite_where=text("kind = 'producer'"),
            postgresql_where=text("kind = 'producer'"),
        ),
        # Subtree scans are prefix matches ("path LIKE '/3/7/%'"); PostgreSQL needs pattern ops.
        Index("ix_organization_path", "path", postgresql_ops={"path": "varchar_pattern_ops"}),
        # The directories' default order (customers, partners by name): a page of 25 of 57,000
        # customers is an index range, not a sort of all of them.
        Index("ix_organization_kind_name", "kind", "name", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="active", server_default="active")
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(50))
    website: Mapped[str | None] = mapped_column(String(300))
    address: Mapped[str | None] = mapped_column(Text)
    # Notification contacts: comma-separated addresses that receive producer notices by email.
    notification_emails: Mapped[str | None] = mapped_column(Text)
    stocking: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("organization.id"), index=True)
    # "/<root id>/.../<own id>/": a subtree is every path starting with the root's path.
    # Built only by ``path_below`` (the CHECK above refuses anything else).
    path: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    parent: Mapped[Organization | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Organization]] = relationship(back_populates="parent", order_by="Organization.name")

    @property
    def is_partner(self) -> bool:
        return self.kind in PARTNER_KINDS

    @staticmethod
    def path_under(parent: Organization | None, org_id: int) -> str:
        """The materialized path of organization ``org_id`` placed under ``parent``."""
        return path_below(parent.path if parent is not None else None, org_id)

    @property
    def ancestor_ids(self) -> list[int]:
        return ids_on_path(self.path)

    def __repr__(self) -> str:
        return f"<Organization {self.id} {self.kind} {self.name!r}>"


class ChannelRelationship(db.Model):
    """A directed supplier -> buyer edge of the sales channel."""

    __tablename__ = "channel_relationship"
    __table_args__ = (
        UniqueConstraint("supplier_id", "buyer_id"),
        CheckConstraint("supplier_id <> buyer_id", name="distinct_ends"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    buyer_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    supplier: Mapped[Organization] = relationship(foreign_keys=[supplier_id])
    buyer: Mapped[Organization] = relationship(foreign_keys=[buyer_id])


class User(UserMixin, db.Model):
    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased, so the unique constraint is case-insensitive.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(300))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    # Bumped on logout, disable or membership removal: every older session stops working.
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (CheckConstraint("email = lower(email)", name="email_lowercase"),)

    memberships: Mapped[list[Membership]] = relationship(back_populates="user")
    identities: Mapped[list[Identity]] = relationship(back_populates="user")

    @property
    def is_active(self) -> bool:  # Flask-Login
        return self.active

    def get_id(self) -> str:  # Flask-Login: the version makes old cookies useless
        return f"{self.id}:{self.session_version}"

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"


class Identity(db.Model):
    """An OIDC identity linked to a user, keyed by issuer and subject."""

    __tablename__ = "identity"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="identities")


class Membership(db.Model):
    __tablename__ = "membership"
    __table_args__ = (
        UniqueConstraint("user_id", "org_id"),
        CheckConstraint(enum_check("role", ALL_ROLES), name="role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships")
    org: Mapped[Organization] = relationship()


class Invitation(db.Model):
    """A single-use invitation link; only the token's hash is stored."""

    __tablename__ = "invitation"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254))
    org_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    org: Mapped[Organization] = relationship()
