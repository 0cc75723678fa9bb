"""The catalog: products, their releases, and the files of each release.

Producer staff manage it (``Action.MANAGE_CATALOG``). A release file is streamed in chunks
into a temporary file under the instance folder's ``RELEASE_FILES_DIR`` while its size and
SHA-256 are computed, then renamed atomically to a content-addressed path
(``ab/abcdef...``). A file whose name or content the release already holds is refused with
a message, and nothing of it stays on disk; a transaction that rolls back removes the stored
content it brought, and a deleted file's content goes once no release file refers to it
(after the commit). Every change is audited in the caller's transaction; downloads too.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from datetime import date
from pathlib import Path
from typing import BinaryIO

from flask import current_app
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session
from werkzeug.utils import secure_filename

from portal.extensions import db
from portal.forms import has_control_characters
from portal.models import Entitlement, Organization, Product, Release, ReleaseFile
from portal.models.catalog import RELEASE_KINDS
from portal.policy import Action, Actor, can
from portal.services.audit import record
from portal.services.errors import Conflict, NotAllowed, ServiceError

CHUNK_SIZE = 1024 * 1024
SKU = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,63}")
VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,49}")
KIND_LABELS = {"release": "Release", "service_pack": "Service pack", "security_patch": "Security patch",
               "hotfix": "Hotfix"}
_PENDING = "catalog.stored_blobs"  # session.info: blobs this transaction wrote (removed on rollback)
_ORPHANS = "catalog.orphan_blobs"  # session.info: blobs to remove after the commit if unreferenced


# --- where files live -------------------------------------------------------------------------


def files_root() -> Path:
    root = Path(current_app.instance_path) / current_app.config["RELEASE_FILES_DIR"]
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_path(release_file: ReleaseFile) -> Path:
    """The file's bytes on disk (its storage path is relative to the files folder)."""
    root = files_root().resolve()
    path = (root / release_file.storage_path).resolve()
    if root not in path.parents:  # a storage path is always ours, but never trust a path blindly
        raise ServiceError("The file's storage path is invalid.")
    return path


def _storage_path(sha256: str) -> str:
    return f"{sha256[:2]}/{sha256}"


@event.listens_for(Session, "after_rollback")
def _remove_blobs_of_rolled_back_uploads(session: Session) -> None:
    for path in session.info.pop(_PENDING, []):
        _unlink(path)
    session.info.pop(_ORPHANS, None)


@event.listens_for(Session, "after_commit")
def _remove_orphaned_blobs(session: Session) -> None:
    session.info.pop(_PENDING, None)
    for path in session.info.pop(_ORPHANS, []):
        _unlink(path)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


# --- products ---------------------------------------------------------------------------------


def _require(actor: Actor) -> None:
    if not can(actor, Action.MANAGE_CATALOG):
        raise NotAllowed("Only producer staff manage the catalog.")


def _text(value: str | None, *, field: str, label: str, max_length: int, required: bool = True) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            raise ServiceError(f"Enter {label}.", field=field)
        return None
    if len(value) > max_length:
        raise ServiceError(f"Keep {label} under {max_length} characters.", field=field)
    if has_control_characters(value, multiline=field in ("description", "notes")):
        raise ServiceError("Remove control characters from this field.", field=field)
    return value


def _sku(value: str) -> str:
    sku = (value or "").strip().upper()
    if not SKU.fullmatch(sku):
        raise ServiceError("Enter a SKU of 1-64 letters, digits, dots, dashes or underscores.", field="sku")
    return sku


def create_product(actor: Actor, *, name: str, sku: str, description: str | None = None) -> Product:
    _require(actor)
    product = Product(name=_text(name, field="name", label="a name", max_length=200), sku=_sku(sku),
                      description=_text(description, field="description", label="the description",
                                        max_length=5000, required=False))
    if db.session.scalar(select(Product.id).where(Product.sku == product.sku)) is not None:
        raise Conflict(f"A product with SKU {product.sku} exists already.", field="sku")
    db.session.add(product)
    db.session.flush()
    record(actor, "product.create", product, details={"name": product.name, "sku": product.sku})
    return product


def edit_product(actor: Actor, product: Product, *, name: str, sku: str, description: str | None = None) -> Product:
    _require(actor)
    new = {"name": _text(name, field="name", label="a name", max_length=200), "sku": _sku(sku),
           "description": _text(description, field="description", label="the description", max_length=5000,
                                required=False)}
    if new["sku"] != product.sku and db.session.scalar(
            select(Product.id).where(Product.sku == new["sku"], Product.id != product.id)) is not None:
        raise Conflict(f"A product with SKU {new['sku']} exists already.", field="sku")
    changes = {key: [getattr(product, key), value] for key, value in new.items() if getattr(product, key) != value}
    for key, value in new.items():
        setattr(product, key, value)
    record(actor, "product.update", product, details={"changes": changes})
    return product


# --- releases ---------------------------------------------------------------------------------


def _release_fields(version: str, released_on: date | None, kind: str, notes: str | None) -> dict:
    version = (version or "").strip()
    if not VERSION.fullmatch(version):
        raise ServiceError("Enter a version of 1-50 letters, digits, dots, dashes, plus signs or underscores "
                           "(e.g. 5.1.1).", field="version")
    if not isinstance(released_on, date):
        raise ServiceError("Enter the release date.", field="released_on")
    if kind not in RELEASE_KINDS:
        raise ServiceError("Choose release, service pack, security patch or hotfix.", field="kind")
    return {"version": version, "released_on": released_on, "kind": kind,
            "notes": _text(notes, field="notes", label="the notes", max_length=20_000, required=False)}


def _version_taken(product: Product, version: str, *, other_than: int | None = None) -> bool:
    query = select(Release.id).where(Release.product_id == product.id, func.lower(Release.version) == version.lower())
    if other_than is not None:
        query = query.where(Release.id != other_than)
    return db.session.scalar(query) is not None


def add_release(actor: Actor, product: Product, *, version: str, released_on: date | None, kind: str = "release",
                notes: str | None = None) -> Release:
    """A new release of ``product``; its version is unique within the product."""
    _require(actor)
    fields = _release_fields(version, released_on, kind, notes)
    if _version_taken(product, fields["version"]):
        raise Conflict(f"{product.name} has a release {fields['version']} already.", field="version")
    release = Release(product=product, **fields)
    db.session.add(release)
    db.session.flush()
    record(actor, "release.create", release, details={"product": product.sku, "version": release.version,
                                                      "kind": release.kind,
                                                      "released_on": release.released_on.isoformat()})
    return release


def edit_release(actor: Actor, release: Release, *, version: str, released_on: date | None, kind: str,
                 notes: str | None = None) -> Release:
    _require(actor)
    fields = _release_fields(version, released_on, kind, notes)
    if _version_taken(release.product, fields["version"], other_than=release.id):
        raise Conflict(f"{release.product.name} has a release {fields['version']} already.", field="version")
    changes = {key: [str(getattr(release, key)), str(value)] for key, value in fields.items()
               if getattr(release, key) != value}
    for key, value in fields.items():
        setattr(release, key, value)
    record(actor, "release.update", release, details={"product": release.product.sku, "changes": changes})
    return release


# --- release files ----------------------------------------------------------------------------


def clean_filename(filename: str | None) -> str:
    """A safe file name (``secure_filename``), or a message: none given, control characters,
    or nothing left once made safe."""
    filename = filename or ""
    if has_control_characters(filename):
        raise ServiceError("The file name holds control characters; rename the file.", field="file")
    # Only the last part of a path (some browsers send the whole path), made safe.
    name = secure_filename(re.split(r"[\\/]", filename)[-1])[:255]
    if not name:
        raise ServiceError("Choose a file with a name made of letters, digits, dots, dashes or underscores.",
                           field="file")
    return name


def _lock_release(release: Release) -> None:
    """Serialize uploads into one release (PostgreSQL: row lock; SQLite: the write transaction)."""
    if db.session.connection().dialect.name == "postgresql":
        db.session.execute(select(Release.id).where(Release.id == release.id).with_for_update())


def add_release_file(actor: Actor, release: Release, filename: str | None, stream: BinaryIO, *,
                     max_size: int | None = None) -> ReleaseFile:
    """Stream ``stream`` into the release's files: size and SHA-256 computed on the way.

    Refused with a message, leaving nothing on disk: an unsafe or empty name, a name or content
    the release holds already, an empty file, a file over ``max_size`` bytes (default
    ``UPLOAD_MAX_CONTENT_LENGTH``).
    """
    _require(actor)
    name = clean_filename(filename)
    max_size = max_size if max_size is not None else current_app.config["UPLOAD_MAX_CONTENT_LENGTH"]
    _lock_release(release)
    if db.session.scalar(select(ReleaseFile.id).where(ReleaseFile.release_id == release.id,
                                                      ReleaseFile.name == name)) is not None:
        raise Conflict(f"{release.version} has a file named {name} already.", field="file")

    root = files_root()
    digest, size = hashlib.sha256(), 0
    handle, temp_name = tempfile.mkstemp(prefix=".upload-", dir=root)
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            while chunk := stream.read(CHUNK_SIZE):
                size += len(chunk)
                if size > max_size:
                    raise ServiceError(f"The file is larger than the limit of {max_size:,} bytes.", field="file")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size == 0:
            raise ServiceError("The file is empty.", field="file")
        sha256 = digest.hexdigest()
        same = db.session.scalar(select(ReleaseFile.name).where(ReleaseFile.release_id == release.id,
                                                                ReleaseFile.sha256 == sha256))
        if same is not None:
            raise Conflict(f"This file is already in {release.version} as {same} (same SHA-256).", field="file")
        storage_path = _storage_path(sha256)
        target = root / storage_path
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            temp.unlink()  # the same bytes are stored already (another release has them)
        else:
            os.replace(temp, target)  # atomic: the content-addressed path is never half-written
            db.session.info.setdefault(_PENDING, []).append(target)
    except BaseException:
        _unlink(temp)
        raise

    release_file = ReleaseFile(release=release, name=name, size=size, sha256=sha256, storage_path=storage_path)
    db.session.add(release_file)
    db.session.flush()
    record(actor, "release_file.add", release_file, details={
        "product": release.product.sku, "version": release.version, "name": name, "size": size, "sha256": sha256})
    return release_file


def delete_release_file(actor: Actor, release_file: ReleaseFile) -> None:
    """Remove a file from its release; its bytes go after the commit unless another release
    file has the same content."""
    _require(actor)
    release = release_file.release
    record(actor, "release_file.delete", release_file, details={
        "product": release.product.sku, "version": release.version, "name": release_file.name,
        "sha256": release_file.sha256})
    path, storage_path = file_path(release_file), release_file.storage_path
    db.session.delete(release_file)
    db.session.flush()
    shared = db.session.scalar(select(ReleaseFile.id).where(ReleaseFile.storage_path == storage_path).limit(1))
    if shared is None:  # removed once the deletion is committed
        db.session.info.setdefault(_ORPHANS, []).append(path)


def record_download(actor: Actor, release_file: ReleaseFile, entitlement: Entitlement) -> None:
    """Audit one download: who, on behalf of whom, which file, under which entitlement."""
    owner: Organization = entitlement.owner
    release = release_file.release
    record(actor, "release_file.download", release_file, subject_org=owner,
           on_behalf_of=actor.on_behalf_of(owner), details={
               "product": release.product.sku, "version": release.version, "name": release_file.name,
               "sha256": release_file.sha256, "size": release_file.size, "entitlement": entitlement.code})
