"""The access policy (spec section 4) on small, readable examples, with decoys present.

The story follows the demo: Acme Software sells through Northwind Distribution -> BlueSky
Resellers (a stocking partner) and directly through RedRock IT; Initech Services is a
service provider; Contoso Group has subsidiaries Contoso Germany (site Contoso Munich
Plant) and Contoso USA. Every list assertion is an exact set or count, with records the
actor must not see sitting next to those it must.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import func, select
from werkzeug.exceptions import NotFound

from portal import policy
from portal.extensions import db
from portal.models import Attachment, Entitlement, Organization
from portal.services.activations import activate
from portal.services.entitlements import assign_stock, attach_partner, revoke_attachment
from tests.factories import write_transaction


@pytest.fixture
def actor_in(make):
    """``actor_in(org, role=None)``: a new user of ``org``, as the policy sees it signed in."""

    def _actor_in(org: Organization, role: str | None = None) -> policy.Actor:
        user = make.user(org, role)
        actor = policy.actor_for(user, org)
        assert actor is not None
        return actor

    return _actor_in


def visible_codes(actor: policy.Actor) -> set[str]:
    codes = db.session.scalars(policy.visible_entitlements(actor).with_only_columns(Entitlement.code)).all()
    assert len(codes) == len(set(codes)), "an entitlement is listed twice"
    return set(codes)


def visible_count(actor: policy.Actor) -> int:
    """The count a paginated list shows: computed by the database."""
    return db.session.scalar(select(func.count()).select_from(policy.visible_entitlements(actor).subquery()))


def served_names(actor: policy.Actor) -> list[str]:
    return [org.name for org in db.session.scalars(policy.customers_served_by(actor))]


def attachment_partners(actor: policy.Actor, entitlement: Entitlement) -> list[str]:
    return [a.partner.name for a in db.session.scalars(policy.visible_attachments(actor, entitlement))]


def attachment_of(entitlement: Entitlement, partner: Organization) -> Attachment:
    return db.session.scalar(
        select(Attachment).where(Attachment.entitlement_id == entitlement.id, Attachment.partner_id == partner.id)
    )


def codes(*entitlements: Entitlement) -> set[str]:
    return {e.code for e in entitlements}


@pytest.fixture
def channel(make):
    """Acme -> Northwind -> BlueSky (stocking), Acme -> RedRock, and Initech (services)."""
    northwind = make.partner("distributor", "Northwind Distribution")
    return SimpleNamespace(
        producer=make.producer(),
        northwind=northwind,
        bluesky=make.partner("reseller", "BlueSky Resellers", supplied_by=northwind, stocking=True),
        redrock=make.partner("reseller", "RedRock IT"),
        initech=make.partner("service_provider", "Initech Services"),
    )


@pytest.fixture
def contoso(make):
    """Contoso Group > (Contoso Germany > Contoso Munich Plant, Contoso USA), one entitlement each."""
    group = make.customer("Contoso Group")
    germany = make.customer("Contoso Germany", parent=group)
    munich = make.customer("Contoso Munich Plant", parent=germany)
    usa = make.customer("Contoso USA", parent=group)
    return SimpleNamespace(
        group=group, germany=germany, munich=munich, usa=usa,
        group_e=make.entitlement(group), germany_e=make.entitlement(germany),
        munich_e=make.entitlement(munich), usa_e=make.entitlement(usa),
    )


# --- rule 3: partners are connected to entitlements, never to customers -----------------------


def test_reseller_never_sees_an_entitlement_bought_through_another_reseller(actor_in, make, channel):
    fabrikam = make.customer("Fabrikam Inc")
    via_redrock = make.entitlement(fabrikam, [channel.redrock])
    via_bluesky = make.entitlement(fabrikam, [channel.northwind, channel.bluesky])
    direct = make.entitlement(fabrikam)
    elsewhere = make.entitlement(make.customer("Tailspin Toys"), [channel.northwind, channel.bluesky])
    redrock, bluesky = actor_in(channel.redrock), actor_in(channel.bluesky)

    assert visible_codes(redrock) == codes(via_redrock)
    assert visible_count(redrock) == 1
    assert visible_codes(bluesky) == codes(via_bluesky, elsewhere)
    # Both serve Fabrikam, and that gives neither anything of the other's.
    assert served_names(redrock) == ["Fabrikam Inc"]
    assert served_names(bluesky) == ["Fabrikam Inc", "Tailspin Toys"]
    for action in ("view", "download", "activate"):
        assert not policy.can(redrock, action, via_bluesky)
        assert not policy.can(redrock, action, direct)
    with pytest.raises(NotFound):
        policy.load_entitlement(redrock, via_bluesky.code)
    with pytest.raises(NotFound):
        policy.load_line(redrock, via_bluesky.lines[0].id)
    # Working for the shared customer changes nothing about that.
    assert visible_codes(redrock.for_customer(fabrikam.id)) == codes(via_redrock)
    assert visible_codes(bluesky.for_customer(fabrikam.id)) == codes(via_bluesky)
    # The customer sees all it bought, whoever sold it.
    assert visible_codes(actor_in(fabrikam)) == codes(via_redrock, via_bluesky, direct)


def test_partner_sees_only_its_own_attachment(actor_in, make, channel, contoso):
    entitlement = make.entitlement(contoso.germany, [channel.northwind, channel.bluesky])
    make.attach(entitlement, channel.initech, "services", ["view", "download"])
    decoy = make.entitlement(contoso.germany, [channel.redrock])
    everyone = ["Northwind Distribution", "BlueSky Resellers", "Initech Services"]

    assert sorted(attachment_partners(actor_in(channel.producer), entitlement)) == sorted(everyone)
    assert sorted(attachment_partners(actor_in(contoso.group, "member"), entitlement)) == sorted(everyone)
    assert attachment_partners(actor_in(contoso.usa), entitlement) == []  # not its entitlement
    for partner in (channel.northwind, channel.bluesky, channel.initech):
        actor = actor_in(partner)
        assert attachment_partners(actor, entitlement) == [partner.name]
        assert attachment_partners(actor, decoy) == []
        for other in (channel.northwind, channel.bluesky, channel.initech):
            if other is not partner:
                with pytest.raises(NotFound):
                    policy.load_attachment(actor, attachment_of(entitlement, other).id)
        assert policy.load_attachment(actor, attachment_of(entitlement, partner).id).partner_id == partner.id

    # Each acts within its own attachment's permissions.
    initech, northwind, bluesky = (actor_in(p) for p in (channel.initech, channel.northwind, channel.bluesky))
    assert policy.can(initech, "download", entitlement)
    assert not policy.can(initech, "activate", entitlement)
    assert not policy.can(northwind, "download", entitlement)
    assert policy.can(bluesky, "activate", entitlement)
    assert not any(policy.can(a, act, entitlement) for a in (initech, bluesky) for act in ("attach", "revoke"))
    # RedRock is attached to another of Contoso Germany's entitlements only.
    redrock = actor_in(channel.redrock)
    assert attachment_partners(redrock, entitlement) == []
    with pytest.raises(NotFound):
        policy.load_attachment(redrock, attachment_of(entitlement, channel.bluesky).id)


# --- customers and their hierarchy ----------------------------------------------------------


def test_customer_admin_of_the_parent_sees_every_descendant(actor_in, make, contoso):
    decoy = make.entitlement(make.customer("Fabrikam Inc"))
    admin = actor_in(contoso.group, "admin")

    assert visible_codes(admin) == codes(contoso.group_e, contoso.germany_e, contoso.munich_e, contoso.usa_e)
    assert visible_count(admin) == 4
    assert not policy.can(admin, "view", decoy)
    for entitlement in (contoso.group_e, contoso.munich_e):
        assert all(policy.can(admin, action, entitlement)
                   for action in ("view", "download", "activate", "attach", "revoke"))
        assert not policy.can(admin, "assign", entitlement)


@pytest.mark.parametrize("role", ["member", "admin"])
def test_user_of_a_subsidiary_sees_only_its_subtree(actor_in, make, contoso, role):
    make.entitlement(make.customer("Fabrikam Inc"))
    actor = actor_in(contoso.germany, role)

    assert visible_codes(actor) == codes(contoso.germany_e, contoso.munich_e)
    assert visible_count(actor) == 2
    for hidden in (contoso.group_e, contoso.usa_e):  # the parent's and a sibling's
        assert not policy.can(actor, "view", hidden)
        with pytest.raises(NotFound):
            policy.load_entitlement(actor, hidden.code)
    with pytest.raises(NotFound):
        policy.load_organization(actor, contoso.usa.id)
    assert policy.load_organization(actor, contoso.munich.id) == contoso.munich


def test_member_activates_and_downloads_but_does_not_manage_partners(actor_in, contoso):
    member = actor_in(contoso.group, "member")
    assert policy.can(member, "activate", contoso.munich_e)
    assert policy.can(member, "download", contoso.munich_e)
    assert not policy.can(member, "attach", contoso.munich_e)
    assert not policy.can(member, "revoke", contoso.munich_e)


def test_subtree_is_not_fooled_by_an_id_that_shares_a_prefix(actor_in, make):
    """'/2/' must not match '/20/': the materialized path ends every id with a slash."""
    root = make.customer("Root")
    child = make.customer("Child", parent=root)
    # Ids come from a sequence we do not control, so the decoy gets its id chosen: root 7 ->
    # lookalike 7001 (path '/7001/' starts with '/7'). Otherwise it is an ordinary customer.
    lookalike_id = root.id * 1000 + 1
    lookalike = Organization(id=lookalike_id, kind="customer", name="Lookalike", status="active",
                             path=Organization.path_under(None, lookalike_id))
    db.session.add(lookalike)
    db.session.commit()
    owned = make.entitlement(child)
    decoy = make.entitlement(lookalike)

    admin = actor_in(root)
    assert visible_codes(admin) == codes(owned)
    assert visible_codes(actor_in(lookalike)) == codes(decoy)
    assert policy.can(admin, "view", owned)
    assert not policy.can(admin, "view", decoy)
    with pytest.raises(NotFound):
        policy.load_organization(admin, lookalike.id)


# --- revocation and stock --------------------------------------------------------------------


def test_revoking_the_sellers_attachment_ends_its_access_at_once_and_keeps_the_chain(
    actor_in, make, channel, contoso
):
    entitlement = make.entitlement(contoso.germany, [channel.northwind, channel.bluesky])
    other = make.entitlement(contoso.usa, [channel.northwind, channel.bluesky])
    bluesky = actor_in(channel.bluesky)  # signed in before, still signed in after
    admin = actor_in(contoso.group, "admin")
    assert visible_codes(bluesky) == codes(entitlement, other)

    sold = attachment_of(entitlement, channel.bluesky)
    revoke_attachment(admin, sold)
    db.session.commit()

    assert visible_codes(bluesky) == codes(other)
    assert served_names(bluesky) == ["Contoso USA"]
    assert not policy.can(bluesky, "view", entitlement)
    assert not policy.can(bluesky, "activate", entitlement)
    with pytest.raises(NotFound):
        policy.load_entitlement(bluesky, entitlement.code)
    with pytest.raises(NotFound):
        policy.load_attachment(bluesky, sold.id)
    # The chain stays for reporting; the upstream distributor keeps its own attachment.
    db.session.expire_all()
    assert [link.partner.name for link in entitlement.chain] == ["Northwind Distribution", "BlueSky Resellers"]
    assert entitlement.seller == channel.bluesky
    assert visible_codes(actor_in(channel.northwind)) == codes(entitlement, other)
    # The customer still sees the revoked attachment (history); it can no longer be revoked.
    assert sorted(attachment_partners(admin, entitlement)) == ["BlueSky Resellers", "Northwind Distribution"]
    assert not policy.can(admin, "revoke", sold)

    # Attached again (by the customer: as a service provider), BlueSky sees it again: rights
    # come from attachments only.
    attach_partner(admin, [entitlement], channel.bluesky, relation="services", permissions=["view"])
    db.session.commit()
    assert visible_codes(bluesky) == codes(entitlement, other)
    assert not policy.can(bluesky, "download", entitlement)


def test_stock_is_visible_to_its_holder_and_upstream_distributors_only(actor_in, make, channel, contoso):
    stock = make.entitlement(channel.bluesky, [channel.northwind, channel.bluesky], fulfilment="stocking")
    other_holder = make.partner("reseller", "Stockists Ltd", stocking=True)
    decoy_stock = make.entitlement(other_holder, [other_holder], fulfilment="stocking")
    bluesky, northwind = actor_in(channel.bluesky), actor_in(channel.northwind)

    assert visible_codes(bluesky) == codes(stock)
    assert visible_codes(northwind) == codes(stock)
    for outsider in (channel.redrock, channel.initech):
        assert visible_codes(actor_in(outsider)) == set()
    assert visible_codes(actor_in(contoso.group)) == codes(
        contoso.group_e, contoso.germany_e, contoso.munich_e, contoso.usa_e
    )
    assert visible_codes(actor_in(channel.producer)) == codes(
        stock, decoy_stock, contoso.group_e, contoso.germany_e, contoso.munich_e, contoso.usa_e
    )
    assert served_names(bluesky) == []  # stock has no customer yet
    assert policy.can(bluesky, "assign", stock)
    assert policy.can(bluesky, "download", stock)
    assert not policy.can(bluesky, "activate", stock)  # nothing is activated from stock
    assert not policy.can(northwind, "assign", stock)
    assert not policy.can(bluesky, "assign", decoy_stock)

    assign_stock(bluesky, stock, contoso.usa)
    db.session.commit()

    # Ownership moved, the chain (and with it BlueSky's 'sold' attachment) stayed.
    assert stock.code in visible_codes(actor_in(contoso.usa))
    assert visible_codes(bluesky) == codes(stock)
    assert served_names(bluesky) == ["Contoso USA"]
    assert not policy.can(bluesky, "assign", stock)
    assert policy.can(bluesky, "activate", stock)
    assert [link.partner.name for link in stock.chain] == ["Northwind Distribution", "BlueSky Resellers"]


def test_stock_holder_downloads_its_stock_even_when_its_own_attachment_is_revoked(actor_in, make, channel):
    stock = make.entitlement(channel.bluesky, [channel.northwind, channel.bluesky], fulfilment="stocking")
    producer, bluesky = actor_in(channel.producer), actor_in(channel.bluesky)
    revoke_attachment(producer, attachment_of(stock, channel.bluesky))
    db.session.commit()

    assert visible_codes(bluesky) == codes(stock)
    assert policy.can(bluesky, "download", stock)
    assert policy.can(bluesky, "assign", stock)
    # A view-only attachment does not take away what holding it gives.
    attach_partner(producer, [stock], channel.bluesky, relation="sold", permissions=["view"])
    db.session.commit()
    assert policy.can(bluesky, "download", stock)


# --- 404 for anything the actor may not see ---------------------------------------------------


def test_loaders_answer_invisible_exactly_like_missing(actor_in, make, channel, contoso):
    entitlement = make.entitlement(contoso.germany, [channel.redrock])
    admin = actor_in(contoso.germany, "admin")
    write_transaction()
    activation, _ = activate(admin, entitlement.lines[0], "host-1")
    db.session.commit()
    stranger = actor_in(channel.bluesky)
    sold = attachment_of(entitlement, channel.redrock)

    loaders = [
        (policy.load_entitlement, entitlement.code, "ENT-0000-0000-0000"),
        (policy.load_line, entitlement.lines[0].id, 999_999),
        (policy.load_activation, activation.id, 999_999),
        (policy.load_attachment, sold.id, 999_999),
        (policy.load_organization, contoso.germany.id, 999_999),
    ]
    for loader, key, missing in loaders:
        assert loader(admin, key) is not None
        with pytest.raises(NotFound) as invisible:
            loader(stranger, key)
        with pytest.raises(NotFound) as absent:
            loader(stranger, missing)
        assert invisible.value.description == absent.value.description, loader.__name__
    # The seller sees what it sold, and the customer it sold to, nothing more of theirs.
    redrock = actor_in(channel.redrock)
    assert policy.load_activation(redrock, activation.id) == activation
    assert policy.load_organization(redrock, contoso.germany.id) == contoso.germany
    with pytest.raises(NotFound):
        policy.load_organization(redrock, contoso.usa.id)
    with pytest.raises(NotFound):
        policy.load_entitlement(redrock, contoso.germany_e.code)
