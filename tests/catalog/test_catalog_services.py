"""The catalog's service verbs: products, releases, and release files streamed to the instance
folder with their size and SHA-256; duplicates and bad files are refused and leave nothing on
disk; every change is audited; only producer staff manage the catalog."""

from __future__ import annotations

import hashlib
import io
from datetime import date

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEvent, ReleaseFile
from portal.services import catalog
from portal.services.errors import Conflict, NotAllowed, ServiceError


class ChunkCounter(io.BytesIO):
    """A stream that counts how often it is read (the upload is read in chunks, never whole)."""

    reads = 0

    def read(self, size=-1):
        assert size != -1 and size <= catalog.CHUNK_SIZE
        self.reads += 1
        return super().read(size)


@pytest.fixture
def staff(make):
    return make.actor(make.producer(), "staff")


@pytest.fixture
def release(staff):
    product = catalog.create_product(staff, name="Acme Studio", sku="acme-studio", description="Design.")
    made = catalog.add_release(staff, product, version="5.1.1", released_on=date(2026, 10, 12),
                               kind="security_patch", notes="**Install now.**")
    db.session.commit()
    return made


def _stored(files_dir) -> list[str]:
    return sorted(str(p.relative_to(files_dir)) for p in files_dir.rglob("*") if p.is_file())


def test_product_and_release_are_created_and_audited(staff, release):
    assert release.product.sku == "ACME-STUDIO"
    actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-2:] == ["product.create", "release.create"]


def test_sku_and_version_are_unique(staff, release):
    with pytest.raises(Conflict) as sku:
        catalog.create_product(staff, name="Other", sku="ACME-STUDIO")
    assert sku.value.field == "sku"
    with pytest.raises(Conflict) as version:
        catalog.add_release(staff, release.product, version="5.1.1", released_on=date(2026, 11, 1))
    assert version.value.field == "version" and "5.1.1" in version.value.message
    other = catalog.create_product(staff, name="Acme Sync", sku="ACME-SYNC")
    assert catalog.add_release(staff, other, version="5.1.1", released_on=date(2026, 11, 1)).version == "5.1.1"


@pytest.mark.parametrize(("field", "values"), [
    ("version", {"version": "5 1"}),
    ("version", {"version": ""}),
    ("kind", {"kind": "beta"}),
    ("released_on", {"released_on": None}),
    ("notes", {"notes": "bad\x00notes"}),
])
def test_bad_release_values_are_refused_at_their_field(staff, release, field, values):
    given = {"version": "6.0", "released_on": date(2027, 1, 1), "kind": "release", "notes": None} | values
    with pytest.raises(ServiceError) as refused:
        catalog.add_release(staff, release.product, **given)
    assert refused.value.field == field


def test_a_file_is_streamed_in_chunks_with_size_and_sha256(staff, release, files_dir, monkeypatch):
    monkeypatch.setattr(catalog, "CHUNK_SIZE", 1000)
    data = bytes(range(256)) * 20  # 5,120 bytes: six chunks
    stream = ChunkCounter(data)
    stored = catalog.add_release_file(staff, release, "studio-5.1.1.zip", stream)
    db.session.commit()
    assert stream.reads == 7  # six chunks and the empty read that ends it
    sha = hashlib.sha256(data).hexdigest()
    assert (stored.name, stored.size, stored.sha256) == ("studio-5.1.1.zip", 5120, sha)
    assert stored.storage_path == f"{sha[:2]}/{sha}"
    assert catalog.file_path(stored).read_bytes() == data
    assert _stored(files_dir) == [f"{sha[:2]}/{sha}"]  # no temporary file left behind
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "release_file.add"))
    assert event.details["sha256"] == sha and event.details["size"] == 5120


def test_a_duplicate_name_is_refused_and_leaves_nothing(staff, release, files_dir):
    catalog.add_release_file(staff, release, "setup.exe", io.BytesIO(b"one"))
    db.session.commit()
    before = _stored(files_dir)
    with pytest.raises(Conflict) as refused:
        catalog.add_release_file(staff, release, "setup.exe", io.BytesIO(b"two"))
    db.session.rollback()
    assert refused.value.field == "file" and "setup.exe" in refused.value.message
    assert _stored(files_dir) == before
    assert db.session.scalar(select(func.count(ReleaseFile.id))) == 1


def test_the_same_content_twice_in_a_release_is_refused_and_leaves_nothing(staff, release, files_dir):
    catalog.add_release_file(staff, release, "setup.exe", io.BytesIO(b"same bytes"))
    db.session.commit()
    before = _stored(files_dir)
    with pytest.raises(Conflict) as refused:
        catalog.add_release_file(staff, release, "setup-copy.exe", io.BytesIO(b"same bytes"))
    db.session.rollback()
    assert "already in 5.1.1 as setup.exe" in refused.value.message
    assert _stored(files_dir) == before
    assert db.session.scalar(select(func.count(ReleaseFile.id))) == 1


def test_the_same_content_in_two_releases_is_stored_once_and_kept_while_used(staff, release, files_dir):
    other = catalog.add_release(staff, release.product, version="5.1.2", released_on=date(2026, 11, 2))
    first = catalog.add_release_file(staff, release, "a.txt", io.BytesIO(b"shared"))
    second = catalog.add_release_file(staff, other, "a.txt", io.BytesIO(b"shared"))
    db.session.commit()
    assert first.storage_path == second.storage_path and len(_stored(files_dir)) == 1
    catalog.delete_release_file(staff, first)
    db.session.commit()
    assert len(_stored(files_dir)) == 1  # still used by 5.1.2
    catalog.delete_release_file(staff, second)
    db.session.commit()
    assert _stored(files_dir) == []
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "release_file.delete")) == 2


def test_a_file_over_the_limit_is_refused_and_leaves_nothing(staff, release, files_dir):
    with pytest.raises(ServiceError) as refused:
        catalog.add_release_file(staff, release, "big.bin", io.BytesIO(b"x" * 101), max_size=100)
    db.session.rollback()
    assert "larger than the limit of 100 bytes" in refused.value.message
    assert _stored(files_dir) == []
    assert catalog.add_release_file(staff, release, "ok.bin", io.BytesIO(b"x" * 100), max_size=100).size == 100


def test_an_empty_file_is_refused(staff, release, files_dir):
    with pytest.raises(ServiceError, match="empty"):
        catalog.add_release_file(staff, release, "empty.txt", io.BytesIO(b""))
    assert _stored(files_dir) == []


def test_a_rolled_back_upload_removes_its_bytes(staff, release, files_dir):
    catalog.add_release_file(staff, release, "notes.txt", io.BytesIO(b"rolled back"))
    assert len(_stored(files_dir)) == 1
    db.session.rollback()
    assert _stored(files_dir) == []


@pytest.mark.parametrize(("name", "expected"), [
    ("../../etc/passwd", "passwd"),
    ("C:\\Windows\\evil.dll", "evil.dll"),
    ("studio 5.1.zip", "studio_5.1.zip"),
    ("Zoë.txt", "Zoe.txt"),
])
def test_file_names_are_made_safe(name, expected):
    assert catalog.clean_filename(name) == expected


@pytest.mark.parametrize("name", ["", None, "..", "/", "文件", "bad\x00name.txt", "tab\tname"])
def test_unsafe_or_empty_names_are_refused(name):
    with pytest.raises(ServiceError) as refused:
        catalog.clean_filename(name)
    assert refused.value.field == "file"


def test_only_producer_staff_manage_the_catalog(make, release, files_dir):
    customer = make.actor(make.customer(), "admin")
    partner = make.actor(make.partner(), "admin")
    for actor in (customer, partner):
        with pytest.raises(NotAllowed):
            catalog.create_product(actor, name="X", sku="X")
        with pytest.raises(NotAllowed):
            catalog.add_release(actor, release.product, version="9", released_on=date(2027, 1, 1))
        with pytest.raises(NotAllowed):
            catalog.add_release_file(actor, release, "x.txt", io.BytesIO(b"x"))
    assert _stored(files_dir) == []


def test_edit_product_and_release_are_audited_with_their_changes(staff, release):
    catalog.edit_product(staff, release.product, name="Acme Studio Pro", sku="ACME-STUDIO", description=None)
    catalog.edit_release(staff, release, version="5.1.2", released_on=date(2026, 10, 13), kind="hotfix",
                         notes="Fixed.")
    db.session.commit()
    events = {e.action: e.details for e in db.session.scalars(select(AuditEvent))}
    assert events["product.update"]["changes"]["name"] == ["Acme Studio", "Acme Studio Pro"]
    assert events["release.update"]["changes"]["version"] == ["5.1.1", "5.1.2"]
    other = catalog.add_release(staff, release.product, version="6.0", released_on=date(2027, 1, 1))
    with pytest.raises(Conflict):
        catalog.edit_release(staff, other, version="5.1.2", released_on=date(2027, 1, 1), kind="release")
