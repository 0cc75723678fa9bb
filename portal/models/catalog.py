"""Products, their releases and the files of each release."""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import enum_check

RELEASE_KINDS = ("release", "service_pack", "security_patch", "hotfix")


class Product(db.Model):
    __tablename__ = "product"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(Text)

    releases: Mapped[list[Release]] = relationship(
        back_populates="product", order_by="Release.released_on.desc()"
    )


class Release(db.Model):
    __tablename__ = "release"
    __table_args__ = (
        UniqueConstraint("product_id", "version"),
        CheckConstraint(enum_check("kind", RELEASE_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"), index=True)
    version: Mapped[str] = mapped_column(String(50))
    released_on: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(20), default="release")
    notes: Mapped[str | None] = mapped_column(Text)  # Markdown, sanitized when rendered

    product: Mapped[Product] = relationship(back_populates="releases")
    files: Mapped[list[ReleaseFile]] = relationship(back_populates="release", order_by="ReleaseFile.name")


class ReleaseFile(db.Model):
    __tablename__ = "release_file"
    __table_args__ = (
        UniqueConstraint("release_id", "name"),
        CheckConstraint("size >= 0", name="size"),
        CheckConstraint("length(sha256) = 64", name="sha256"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("release.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # Relative to the instance folder's files directory.
    storage_path: Mapped[str] = mapped_column(String(500))

    release: Mapped[Release] = relationship(back_populates="files")
