"""Customer hierarchies (materialized paths), the channel, and organization audit."""

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEvent, ChannelRelationship, Organization
from portal.services.errors import Conflict, NotAllowed, ServiceError
from portal.services.orgs import (
    add_channel_relationship,
    create_organization,
    delete_organization,
    move_organization,
    update_organization,
)


@pytest.fixture
def tree(make):
    group = make.customer("Contoso Group")
    germany = make.customer("Contoso Germany", parent=group)
    munich = make.customer("Contoso Munich Plant", parent=germany)
    usa = make.customer("Contoso USA", parent=group)
    return {"group": group, "germany": germany, "munich": munich, "usa": usa}


def test_paths_follow_the_hierarchy(tree):
    group, germany, munich = tree["group"], tree["germany"], tree["munich"]
    assert group.path == f"/{group.id}/"
    assert germany.path == f"/{group.id}/{germany.id}/"
    assert munich.path == f"/{group.id}/{germany.id}/{munich.id}/"
    assert munich.ancestor_ids == [group.id, germany.id, munich.id]


def test_moving_a_subtree_rewrites_every_descendant_path(tree, make):
    admin = make.actor(tree["group"], "admin")
    move_organization(admin, tree["germany"], tree["usa"])
    db.session.commit()
    group, usa, germany, munich = (
        db.session.get(Organization, tree[k].id) for k in ("group", "usa", "germany", "munich")
    )
    assert germany.parent_id == usa.id
    assert germany.path == f"/{group.id}/{usa.id}/{germany.id}/"
    assert munich.path == f"/{group.id}/{usa.id}/{germany.id}/{munich.id}/"
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "organization.move"))
    assert event.details == {"from_parent_id": group.id, "to_parent_id": usa.id}


def test_no_cycles(tree, make):
    admin = make.actor(tree["group"], "admin")
    with pytest.raises(ServiceError, match="under itself"):
        move_organization(admin, tree["germany"], tree["munich"])
    with pytest.raises(ServiceError, match="under itself"):
        move_organization(admin, tree["germany"], tree["germany"])
    db.session.rollback()
    assert db.session.get(Organization, tree["germany"].id).parent_id == tree["group"].id


def test_customer_admin_edits_only_its_subtree(tree, make):
    germany_admin = make.actor(tree["germany"], "admin")
    child = create_organization(germany_admin, kind="customer", name="Contoso Berlin Office", parent=tree["germany"])
    db.session.commit()
    assert child.path.startswith(tree["germany"].path)
    with pytest.raises(NotAllowed):
        create_organization(germany_admin, kind="customer", name="Sneaky", parent=tree["usa"])
    with pytest.raises(NotAllowed):
        update_organization(germany_admin, tree["group"], name="Renamed")
    with pytest.raises(NotAllowed):  # its own top organization stays anchored
        move_organization(germany_admin, tree["germany"], tree["usa"])
    with pytest.raises(NotAllowed):  # cannot move its sites out of its subtree
        move_organization(germany_admin, tree["munich"], tree["usa"])
    member = make.actor(tree["germany"], "member")
    with pytest.raises(NotAllowed):
        update_organization(member, tree["munich"], name="Renamed")


def test_rename_and_contacts_are_audited(tree, make):
    admin = make.actor(tree["group"], "admin")
    update_organization(admin, tree["munich"], name="Contoso Munich Works", phone="+49 89 1234")
    db.session.commit()
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "organization.update"))
    assert event.details == {"name": ["Contoso Munich Plant", "Contoso Munich Works"], "phone": [None, "+49 89 1234"]}
    with pytest.raises(ServiceError):
        update_organization(admin, tree["munich"], name="   ")


def test_delete_only_empty_organizations(tree, make):
    admin = make.actor(tree["group"], "admin")
    with pytest.raises(Conflict, match="subsidiaries"):
        delete_organization(admin, tree["germany"])
    make.entitlement(tree["munich"])
    with pytest.raises(Conflict, match="entitlements"):
        delete_organization(admin, tree["munich"])
    delete_organization(admin, tree["usa"])
    db.session.commit()
    assert db.session.get(Organization, tree["usa"].id) is None
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "organization.delete")) == 1


def test_channel_edges_are_unique_and_directed(make):
    system = make.system
    northwind = make.org("distributor", "Northwind")
    bluesky = make.org("reseller", "BlueSky")
    first = add_channel_relationship(system, northwind, bluesky)
    again = add_channel_relationship(system, northwind, bluesky)
    db.session.commit()
    assert first.id == again.id
    with pytest.raises(ServiceError):
        add_channel_relationship(system, bluesky, bluesky)
    customer = make.customer()
    with pytest.raises(ServiceError):
        add_channel_relationship(system, northwind, customer)
    with pytest.raises(NotAllowed):
        add_channel_relationship(make.actor(northwind), northwind, bluesky)
    assert db.session.scalar(select(func.count(ChannelRelationship.id))) == 1


def test_only_one_producer(make):
    make.producer()
    with pytest.raises(Conflict):
        create_organization(make.system, kind="producer", name="Second Producer")


def test_database_refuses_a_second_producer(make):
    make.producer()
    db.session.add(Organization(id=999, kind="producer", name="Rogue", path="/999/"))
    with pytest.raises(Exception, match="(?i)unique"):
        db.session.flush()
    db.session.rollback()


def test_audit_trail_is_append_only(tree):
    event = db.session.scalar(select(AuditEvent).limit(1))
    event.action = "tampered"
    with pytest.raises(Exception, match="append-only"):
        db.session.flush()
    db.session.rollback()
    db.session.delete(db.session.scalar(select(AuditEvent).limit(1)))
    with pytest.raises(Exception, match="append-only"):
        db.session.flush()
    db.session.rollback()
