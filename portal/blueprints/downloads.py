"""Software downloads, shared by the customer and partner portals (each registers its routes in
its own module: ``customer/downloads.py``, ``partner/downloads.py``).

What an actor may download is the policy's (``download_rights``, ``entitling_entitlement``):
releases of products it holds active lines of, within maintenance or an active subscription or
usage line; the rest is listed as not entitled with the reason. A file of a product the actor
holds nothing of answers 404 (as if it did not exist); a file of a visible product whose release
is not covered answers 403. Each download is audited (who, on behalf of whom, which file) and
streamed with ``send_file``: Content-Length, Range and conditional requests, the SHA-256 as
ETag and as ``Digest``/``Repr-Digest``, as an attachment.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from flask import abort, send_file
from sqlalchemy import exists, select
from sqlalchemy.orm import joinedload, selectinload

from portal import policy
from portal.database import begin_write
from portal.extensions import db
from portal.models import Entitlement, EntitlementLine, Product, Release, ReleaseFile, utcnow
from portal.services.catalog import KIND_LABELS, file_path, record_download


@dataclass(frozen=True)
class ReleaseView:
    release: Release
    entitled: bool
    reason: str


@dataclass(frozen=True)
class ProductDownloads:
    product: Product
    releases: list[ReleaseView]

    @property
    def entitled_count(self) -> int:
        return sum(1 for view in self.releases if view.entitled)


def downloads_for(actor: policy.Actor) -> list[ProductDownloads]:
    """The products the actor holds, each with its releases (newest first) and their files,
    entitled or not with the reason. Three statements and ``download_rights``' (one or two)
    whatever the number of entitlements."""
    today = utcnow().date()
    rights = policy.download_rights(actor, today)
    if not rights:
        return []
    products = db.session.scalars(select(Product).where(Product.id.in_(rights)).order_by(Product.name, Product.id))
    releases = db.session.scalars(
        select(Release).where(Release.product_id.in_(rights)).options(selectinload(Release.files))
        .order_by(Release.released_on.desc(), Release.id.desc())).all()
    by_product: dict[int, list[ReleaseView]] = {}
    for release in releases:
        entitled, reason = rights[release.product_id].decide(release.released_on)
        by_product.setdefault(release.product_id, []).append(ReleaseView(release, entitled, reason))
    return [ProductDownloads(product, by_product.get(product.id, [])) for product in products]


def _digest_headers(response, sha256: str) -> None:
    b64 = base64.b64encode(bytes.fromhex(sha256)).decode()
    response.headers["Digest"] = f"sha-256={b64}"
    response.headers["Repr-Digest"] = f"sha-256=:{b64}:"


def send_release_file(actor: policy.Actor, file_id: int):
    """The file's bytes for an entitled actor (audited); 404 when the actor holds nothing of its
    product, 403 when it does but the release is not covered."""
    # The download is audited: decide and write in one write transaction (SQLite: BEGIN
    # IMMEDIATE; a read snapshot could not be upgraded once another request has written).
    db.session.commit()
    begin_write()
    release_file = db.session.scalar(
        select(ReleaseFile).where(ReleaseFile.id == file_id)
        .options(joinedload(ReleaseFile.release).joinedload(Release.product)))
    if release_file is None:
        abort(404)
    release = release_file.release
    today = utcnow().date()
    entitlement = policy.entitling_entitlement(actor, release.product_id, release.released_on, today)
    if entitlement is None:
        holds_product = db.session.scalar(select(exists().where(
            EntitlementLine.product_id == release.product_id,
            EntitlementLine.entitlement_id == Entitlement.id,
            policy.download_entitlement_scope(actor))))
        if not holds_product:
            abort(404)
        rights = policy.download_rights(actor, today).get(release.product_id)
        reason = rights.decide(release.released_on)[1] if rights else "You are not entitled to this release."
        abort(403, description=reason)
    path = file_path(release_file)
    if not path.is_file():
        abort(404)
    record_download(actor, release_file, entitlement)
    db.session.commit()
    response = send_file(path, as_attachment=True, download_name=release_file.name, conditional=True,
                         etag=release_file.sha256, max_age=0, mimetype="application/octet-stream")
    response.headers["Cache-Control"] = "private, no-cache"
    _digest_headers(response, release_file.sha256)
    return response


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)
